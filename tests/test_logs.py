"""Reading a job's output: `hfuv logs` returns with the lines so far, a closed pipe is a normal
end, and what others wrote is shown on a terminal, never obeyed by it."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import threading
import time
import tty
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, hfuv, needs_python, write
from tests.test_server import api, wait_stage

pytestmark = needs_python("3.12")

# A job's line with a title change, a clipboard write, a cursor move and a colour.
HOSTILE = "\x1b]0;pwned\x07 \x1b]52;c;ZXZpbA==\x07 \x1b[2A \x1b[31mred\x1b[0m end"
HOSTILE_SHOWN = "\\x1b]0;pwned\\x07 \\x1b]52;c;ZXZpbA==\\x07 \\x1b[2A \x1b[31mred\x1b[0m end"
HOSTILE_SCRIPT = f"import time\nprint({HOSTILE!r}, flush=True)\n"


def run_hfuv(*args: str, env: dict[str, str], terminal: str | None = None,
             timeout: float = 120) -> tuple[int, bytes, bytes]:  # fmt: skip
    """Run the CLI with stdout or stderr (`terminal`) on a pseudo-terminal; → code, out, err.

    The terminal is raw, so the bytes read are the bytes hfuv wrote.
    """
    streams: dict[str, int] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    master = slave = None
    if terminal:
        master, slave = pty.openpty()
        tty.setraw(slave)
        streams[terminal] = slave
    process = subprocess.Popen([sys.executable, "-m", "hfuv", *args], env={**os.environ, **env},
                               stdin=subprocess.DEVNULL, **streams)  # fmt: skip
    seen = b""
    if master is not None:
        os.close(slave)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # every writer has closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
        os.close(master)
    out, err = process.communicate(timeout=timeout)
    if terminal == "stdout":
        out = seen
    elif terminal == "stderr":
        err = seen
    return process.returncode, out, err


def sweep_of_one(server: ServerProcess, script: Path) -> tuple[str, str]:
    """A detached sweep with one job; → (sweep id, job id)."""
    result = hfuv("run", str(script), "--detach", "--matrix", "x=1", "--", "{x}", env=server.env())
    assert result.code == 0, result.stderr
    sweep_id = result.stdout.strip()
    (job,) = hfuv("ps", "--sweep", sweep_id, "--json", env=server.env()).json()
    return sweep_id, job["id"]


def test_logs_of_a_running_job_print_the_lines_so_far_and_return(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "slow.py", "import time\nfor i in range(3):\n"
                   "    print('line', i, flush=True)\ntime.sleep(120)\n")  # fmt: skip
    sweep_id, job_id = sweep_of_one(server, script)
    wait_stage(server, job_id, {"RUNNING"})
    deadline = time.monotonic() + 60
    while True:  # until uv has started the script; each call must return while the job runs
        logs = hfuv("logs", job_id, env=server.env(), timeout=30)
        assert logs.code == 0, logs.stderr
        if logs.stdout.endswith("line 2\n") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert logs.stdout.endswith("line 0\nline 1\nline 2\n") and logs.stderr == ""
    tail = hfuv("logs", job_id, "--tail", "1", env=server.env(), timeout=30)
    assert (tail.code, tail.stdout) == (0, "line 2\n")
    member = hfuv("logs", "--sweep", sweep_id, "--index", "0", env=server.env(), timeout=30)
    assert (member.code, member.stdout) == (0, logs.stdout)
    assert api(server, f"/api/jobs/me/{job_id}")[1]["status"]["stage"] == "RUNNING"
    assert hfuv("cancel", job_id, env=server.env()).code == 0


class HubLike(BaseHTTPRequestHandler):
    """Log streams as the Hub serves them: no mark after the replay, and they never close.

    `busy` keeps logging a line every 0.1 s; `quiet` goes silent after its past lines.
    `GET /api/jobs/me` is refused with an error text that carries escape sequences.
    """

    protocol_version = "HTTP/1.0"
    dates: list[str] = []  # noqa: RUF012 (the Date headers sent, for the test to check)

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.split("?")[0] == "/api/jobs/me":
            body = json.dumps({"error": "no \x1b]0;pwned\x07 access\x1b[2J"}).encode()
            self.send_response(403)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        job = self.path.split("/")[4]
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.end_headers()
        HubLike.dates.append(self.date_time_string())
        past = datetime.now(timezone.utc) - timedelta(minutes=1)
        try:
            for i in range(3):
                self._event(f"past {i}", past + timedelta(seconds=i))
            for i in range(600):
                time.sleep(0.1)
                if job == "busy":
                    self._event(f"new {i}", datetime.now(timezone.utc))
        except OSError:
            return

    def _event(self, line: str, at: datetime) -> None:
        stamp = at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"
        event = json.dumps({"data": line, "timestamp": stamp})
        self.wfile.write(f"data: {event}\n\n".encode())
        self.wfile.flush()


@pytest.fixture
def hub() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HubLike)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_logs_stop_where_hf_jobs_logs_stops_on_the_hub(hub: str) -> None:
    """The first line logged after the answer's Date + 1 s ends the replay; so do 5 s of silence."""
    env = {"HF_ENDPOINT": hub, "HF_TOKEN": "t"}
    busy = hfuv("logs", "-t", "me/busy", env=env, timeout=30)
    assert busy.code == 0, busy.stderr
    lines = busy.stdout.splitlines()
    assert [line.split(" ", 1)[1] for line in lines[:3]] == ["past 0", "past 1", "past 2"]
    end = parsedate_to_datetime(HubLike.dates[-1]) + timedelta(seconds=1)
    stamps = [datetime.fromisoformat(line.split()[0].replace("Z", "+00:00")) for line in lines]
    assert all(stamp <= end for stamp in stamps), "no line logged after the answer's Date + 1 s"
    assert [line.split(" ", 1)[1] for line in lines[3:]] == [
        f"new {i}" for i in range(len(lines) - 3)
    ]
    quiet = hfuv("logs", "me/quiet", env=env, timeout=30)
    assert (quiet.code, quiet.stdout, quiet.stderr) == (0, "past 0\npast 1\npast 2\n", "")


def test_an_error_quoting_the_server_shows_its_escapes(hub: str) -> None:
    refused = hfuv("ps", "--namespace", "me", env={"HF_ENDPOINT": hub, "HF_TOKEN": "t"})
    assert refused.code == 1
    assert refused.stderr.startswith("error: forbidden: no \\x1b]0;pwned\\x07 access\\x1b[2J")
    assert "\x1b" not in refused.stderr and len(refused.stderr.splitlines()) == 1


def test_job_output_on_a_terminal_is_shown_not_obeyed(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "hostile.py", HOSTILE_SCRIPT)
    code, out, err = run_hfuv("run", str(script), env=server.env(), terminal="stdout")
    assert code == 0, err
    assert (HOSTILE_SHOWN + "\n").encode() in out
    assert b"\x07" not in out and b"\x1b]" not in out and b"\x1b[2A" not in out
    job_id = err.decode().split("job me/")[1].split()[0]
    code, out, err = run_hfuv("logs", job_id, env=server.env(), terminal="stdout")
    assert code == 0 and out.endswith((HOSTILE_SHOWN + "\n").encode()), err
    piped = run_hfuv("logs", job_id, env=server.env())
    assert piped[0] == 0 and piped[1].endswith((HOSTILE + "\n").encode()), "byte-exact"


def test_ps_and_inspect_show_a_jobs_escapes_as_text(server: ServerProcess) -> None:
    job_id = hfuv("exec", "--detach", "python:3.12", "--", "python3", "-c", "import sys",
                  "\x1b]0;pwned\x07", env=server.env()).stdout.strip()  # fmt: skip
    listed = hfuv("ps", "-a", env=server.env())
    summary = hfuv("inspect", job_id, env=server.env())
    for shown in (listed, summary):
        assert shown.code == 0, shown.stderr
        assert "import sys \\x1b]0;pwned\\x07" in shown.stdout and "\x1b" not in shown.stdout
    as_json = hfuv("inspect", job_id, "--json", env=server.env()).json()
    assert as_json["command"][-1] == "\x1b]0;pwned\x07", "JSON keeps the value"


def test_the_live_sweep_view_shows_escapes_as_text(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "hostile.py", HOSTILE_SCRIPT + "time.sleep(4)\n")
    code, out, err = run_hfuv("run", str(script), "--matrix", "x=1", env=server.env(),
                              terminal="stderr")  # fmt: skip
    assert code == 0, err
    assert b"\\x1b]0;pwned\\x07" in err, "the job's last line is in the view"
    assert b"\x07" not in err and b"\x1b]" not in err and b"\x1b[2A" not in err
    assert b"\x1b[F\x1b[2K" in err, "the view itself still redraws"
    assert b"COMPLETED" in out


def test_a_closed_stdout_ends_logs_quietly(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "many.py", "for i in range(50000):\n    print('line', i)\n")
    job_id = hfuv("run", str(script), "--detach", env=server.env()).stdout.strip()
    assert hfuv("wait", job_id, env=server.env()).code == 0
    logs = subprocess.Popen([sys.executable, "-m", "hfuv", "logs", job_id],
                            env={**os.environ, **server.env()}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)  # fmt: skip
    head = subprocess.run(["head", "-1"], stdin=logs.stdout, capture_output=True, timeout=60)
    logs.stdout.close()
    assert head.stdout == b"line 0\n"
    assert logs.wait(timeout=60) == 0
    assert logs.stderr.read() == b""


def test_run_stops_following_a_closed_stdout_and_leaves_the_job_running(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "busy.py", "import time\nfor i in range(50000):\n"
                   "    print('line', i)\ntime.sleep(120)\n")  # fmt: skip
    for attempt in ("first", "replayed"):
        run = subprocess.Popen([sys.executable, "-m", "hfuv", "run", str(script)],
                               env={**os.environ, **server.env(), "HFUV_DEBUG": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        head = subprocess.run(["head", "-1"], stdin=run.stdout, capture_output=True, timeout=90)
        run.stdout.close()
        assert head.stdout == b"line 0\n"
        assert run.wait(timeout=60) == 0
        err = run.stderr.read().decode()
        assert ("debug: replaying" in err) == (attempt == "replayed"), err
        job_id = err.split("job me/")[1].split()[0]
        assert f"stopped following (stdout was closed); job me/{job_id} is still running" in err
        assert "error" not in err
        assert api(server, f"/api/jobs/me/{job_id}")[1]["status"]["stage"] == "RUNNING"
        assert hfuv("cancel", job_id, env=server.env()).code == 0
