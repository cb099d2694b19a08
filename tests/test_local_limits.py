"""`hfuv run --local` runs the job you asked for: its timeout is enforced, the script keeps its
terminal, signals and exit code, and what only a job has (volumes, a job network) is refused."""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, hfuv, needs_python, write

pytestmark = [
    needs_python("3.12"),
    pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes in /proc"),
]

REPLAYED = "debug: replaying the prepared run"

# Sleeps a minute, with a child that ignores SIGTERM and sleeps too.
SLEEPER = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import os, subprocess, sys, time

code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
child = subprocess.Popen([sys.executable, "-c", code])
print(time.time(), os.getpid(), child.pid, flush=True)
time.sleep(60)
"""

# Counts the signals it gets, then exits with 40 + that count.
COUNTER = """\
import signal, sys, time

got = []
for signum in (signal.SIGINT, signal.SIGTERM):
    signal.signal(signum, lambda n, _: got.append(n))
print("ready", flush=True)
deadline = time.time() + 60
while not got and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)  # a second delivery would arrive meanwhile
print("signals", got, flush=True)
sys.exit(40 + len(got))
"""


def ended(pid: int) -> bool:
    """The process is gone (or a zombie nobody has reaped yet) within 2 s: SIGKILL is sent at
    once but takes effect when the process is next scheduled."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except FileNotFoundError:
            return True
        if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def test_the_timeout_ends_the_whole_process_tree_also_when_replayed(tmp_path: Path) -> None:
    script = write(tmp_path / "sleeper.py", SLEEPER)
    for attempt in range(2):
        result = hfuv("run", str(script), "--local", "--timeout", "3", env={"HFUV_DEBUG": "1"},
                      timeout=60)  # fmt: skip
        done = time.time()
        assert result.code == 124, result.stderr
        assert (REPLAYED in result.stderr) == (attempt == 1)
        started, script_pid, child_pid = result.stdout.split()
        assert done - float(started) < 10
        assert ended(int(script_pid)) and ended(int(child_pid))
        job_id = result.stderr.split(" here as job ")[1].split()[0]
        assert result.stderr.endswith(f"job {job_id} ended ERROR: Job timeout\n")


def test_the_launch_tables_timeout_counts_and_a_flag_wins(tmp_path: Path) -> None:
    script = write(
        tmp_path / "slow.py",
        "# /// script\n# dependencies = []\n# [tool.hfuv]\n# timeout = '2s'\n# ///\n"
        "import time\ntime.sleep(60)\n",
    )
    result = hfuv("run", str(script), "--local", timeout=60)
    assert result.code == 124 and "ended ERROR: Job timeout" in result.stderr
    quick = write(tmp_path / "quick.py", "import time\ntime.sleep(2.5)\nprint('done')\n")
    result = hfuv("run", str(quick), "--local", "--timeout", "30s")
    assert (result.code, result.stdout) == (0, "done\n")
    assert "Job timeout" not in result.stderr


def test_exit_codes_and_deaths_by_signal_are_the_scripts(tmp_path: Path) -> None:
    killed = write(tmp_path / "killed.py", "import os, signal\nos.kill(os.getpid(), 9)\n")
    for _ in range(2):  # the full path, then the replay
        assert hfuv("run", str(killed), "--local").code == 128 + 9
        assert hfuv("run", str(EXAMPLES / "exit_code.py"), "--local", "--", "42").code == 42


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_to_hfuv_reaches_the_script_once(tmp_path: Path, signum: int) -> None:
    script = write(tmp_path / "counter.py", COUNTER)
    for _ in range(2):  # the full path, then the replay
        process = subprocess.Popen(
            [sys.executable, "-m", "hfuv", "run", str(script), "--local"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert process.stdout is not None
        assert process.stdout.readline() == "ready\n"
        os.kill(process.pid, signum)  # to hfuv's own process, not its group
        out, err = process.communicate(timeout=60)
        assert process.returncode == 41, out + err
        assert f"signals [{int(signum)}]" in out


# A shell with job control, in a new terminal: runs `hfuv ARGS` as its foreground job; when
# the job stops, says so, takes the terminal and waits for `fg`; exits with the job's code.
SHELL = """\
import fcntl, os, signal, sys, termios
fcntl.ioctl(0, termios.TIOCSCTTY, 0)
signal.signal(signal.SIGTTOU, signal.SIG_IGN)
pid = os.fork()
if pid == 0:
    os.setpgid(0, 0)
    os.tcsetpgrp(0, os.getpid())
    signal.signal(signal.SIGTTOU, signal.SIG_DFL)
    os.execv(sys.executable, [sys.executable, "-m", "hfuv", *sys.argv[1:]])
while True:
    _, status = os.waitpid(pid, os.WUNTRACED)
    if not os.WIFSTOPPED(status):
        sys.exit(os.waitstatus_to_exitcode(status))
    print(f"[stopped; hfuv holds the terminal: {os.tcgetpgrp(0) == pid}]")
    os.tcsetpgrp(0, os.getpgrp())
    assert input() == "fg"
    os.tcsetpgrp(0, pid)
    os.killpg(pid, signal.SIGCONT)
"""


class Terminal:
    """`hfuv ARGS` typed at a shell prompt in a new terminal (a pty)."""

    def __init__(self, *args: str) -> None:
        self.master, slave = os.openpty()
        self.process = subprocess.Popen(
            [sys.executable, "-c", SHELL, *args],
            stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        )  # fmt: skip
        os.close(slave)
        self.seen = ""

    def read_until(self, text: str | None, timeout: float = 120) -> None:
        """Read what the terminal shows until `text` (None: until it closes)."""
        deadline = time.monotonic() + timeout
        while (text is None or text not in self.seen) and time.monotonic() < deadline:
            if select.select([self.master], [], [], 0.1)[0]:
                try:
                    self.seen += os.read(self.master, 4096).decode(errors="replace")
                except OSError:  # closed: everything that ran in it has ended
                    break
        assert text is None or text in self.seen, self.seen

    def type(self, keys: bytes) -> None:
        os.write(self.master, keys)

    def close(self) -> int:
        try:
            code = self.process.wait(timeout=60)
        finally:
            self.process.kill()
        self.read_until(None, timeout=10)
        os.close(self.master)
        return code


def test_in_a_terminal_the_script_reads_it_and_ctrl_c_reaches_it_once(tmp_path: Path) -> None:
    script = write(
        tmp_path / "ask.py",
        "import os\nprint('foreground', os.tcgetpgrp(0) == os.getpgrp(), flush=True)\n"
        "print('hello', input('name? '), flush=True)\n" + COUNTER,
    )
    for _ in range(2):  # the full path, then the replay
        terminal = Terminal("run", str(script), "--local")
        terminal.read_until("name? ")
        terminal.type(b"world\n")
        terminal.read_until("ready")
        terminal.type(b"\x03")  # Ctrl-C
        assert terminal.close() == 41, terminal.seen
        assert "foreground True" in terminal.seen and "hello world" in terminal.seen
        assert f"signals [{int(signal.SIGINT)}]" in terminal.seen


def test_in_a_terminal_ctrl_z_stops_hfuv_and_fg_resumes_the_script(tmp_path: Path) -> None:
    script = write(tmp_path / "pause.py", "print('ready', flush=True)\nprint('got', input())\n")
    terminal = Terminal("run", str(script), "--local")
    terminal.read_until("ready")
    terminal.type(b"\x1a")  # Ctrl-Z
    terminal.read_until("[stopped; hfuv holds the terminal: True]")
    terminal.type(b"fg\n")
    terminal.type(b"again\n")
    terminal.read_until("got again")
    assert terminal.close() == 0


def test_volumes_and_a_job_network_are_refused_before_anything_is_locked(tmp_path: Path) -> None:
    # A dependency no index has: locking it would fail with another error.
    header = "# /// script\n# dependencies = ['no-such-package-anywhere']\n"
    table_volume = write(
        tmp_path / "mounts.py",
        header + "# [tool.hfuv]\n# volumes = ['hf://datasets/org/data:/data']\n# ///\n",
    )
    table_network = write(
        tmp_path / "peers.py",
        header + "# [tool.hf-jobs]\n# network_group = 'trainers'\n# ///\n",
    )
    plain = write(tmp_path / "plain.py", header + "# ///\n")
    cases = [
        ((str(table_volume),), "a local run cannot mount volumes: dataset org/data at /data "
         "(from [tool.hfuv]) is only mounted in a job (hint: run it as a job (without --local): "
         "the script would not find /data here)"),
        ((str(plain), "-v", "hf://org/model:/weights:ro"), "a local run cannot mount volumes: "
         "model org/model at /weights (from -v) is only mounted in a job (hint: drop -v here, "
         "or run it as a job (without --local))"),
        ((str(table_network),), "a local run has no job network: network group trainers (from "
         "[tool.hf-jobs]) exists only between jobs (hint: run it as a job (without --local))"),
        ((str(plain), "--network-group", "g", "--network-alias", "head"), "a local run has no "
         "job network: network group g (aliases head) (from --network-group) exists only "
         "between jobs (hint: drop --network-group here, or run it as a job (without --local))"),
    ]  # fmt: skip
    cache = Path(os.environ["HFUV_CACHE_DIR"])
    for args, message in cases:
        result = hfuv("run", *args, "--local")
        assert (result.code, result.stdout, result.stderr) == (2, "", f"error: {message}\n")
        assert not (cache / "locks").exists() and not (cache / "runs").exists()
    dry = hfuv("run", str(table_volume), "--dry-run", "--json")
    assert "no-such-package-anywhere" in dry.stderr, "a job would lock it (and fail here)"


def test_what_this_machine_gives_differently_is_said(tmp_path: Path) -> None:
    if Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA GPU")
    script = write(
        tmp_path / "img.py",
        "# /// script\n# dependencies = []\n# [tool.hfuv]\n# image = 'vllm/vllm-openai'\n# ///\n"
        "print('ran')\n",
    )
    result = hfuv("run", str(script), "--local", "--flavor", "a10g-small")
    assert (result.code, result.stdout) == (0, "ran\n"), result.stderr
    assert (
        "warning: flavor a10g-small has 1x A10G, and this machine has no NVIDIA GPU: the script "
        "runs on CPU here (ACCELERATOR is still a10g-small)\n"
    ) in result.stderr
    assert (
        "warning: image vllm/vllm-openai is not used here: a local run uses this machine's "
        "Python and system libraries\n"
    ) in result.stderr
