"""The command line as a user meets it: help, version, and one clear line for each bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hfuv import __version__
from tests.conftest import EXAMPLES, Result, ServerProcess, hfuv, write
from tests.helpers import FakeHost

HELLO = str(EXAMPLES / "hello.py")


def test_version_and_help() -> None:
    version = hfuv("--version")
    assert version.code == 0 and version.stdout.strip() == f"hfuv, version {__version__}"
    help_text = hfuv("--help").stdout
    for command in ("check", "lock", "run", "hardware"):
        assert f"  {command} " in help_text
    run_help = " ".join(hfuv("run", "--help").stdout.split())
    assert "Everything after `--` goes to the script untouched" in run_help


def test_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "hfuv"
    assert script.exists()
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and __version__ in done.stdout


def one_error_line(result: Result, code: int = 2) -> str:
    assert result.code == code, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (
            ["--flavor", "a10g-smal"],
            "unknown flavor 'a10g-smal' (from --flavor) (hint: did you mean a10g-small",
        ),
        (["--timeout", "2x"], "invalid timeout '2x' (from --timeout)"),
        (["--timeout", "0"], "timeout must be positive"),
        (["-s", "NOPE_NOT_SET"], "secret NOPE_NOT_SET is not set in your environment"),
        (["-l", "bad label=x"], "invalid label"),
        (["--name", "a", "-l", "name=b"], "--name and --label name=... both set the job name"),
        (["--name", "bad name"], "invalid label name=bad name (from --name)"),
        (["-l", "name=bad name"], "invalid label name=bad name (from --label)"),
        (["-v", "./data:/data"], "unsupported volume './data:/data' (from -v)"),
        (["-v", "hf://datasets/org/ds:/ds:rw"], "dataset volumes are read-only"),
        (["-p", "python3"], "invalid python 'python3' (from --python)"),
        (["-e", "1BAD=x"], "invalid -e '1BAD=...'"),
        (["--network-alias", "a"], "network aliases need a network group"),
        (["--with", "six>>1"], "invalid --with 'six>>1'"),
        (["--local", "--dry-run"], "--local and --dry-run are exclusive"),
        (["--json"], "--json goes with --dry-run"),
        (["--file", "nope.txt"], "--file nope.txt: no such file or directory"),
        (["--env-file", "nope.env"], "cannot read nope.env"),
        (["--sha256", "abc"], "is not a sha256 hex digest"),
        (["--gist-file", "x.py"], "--gist-file only applies to gist.github.com URLs"),
    ],
)
def test_bad_options(args: list[str], words: str) -> None:
    extra = [] if "--local" in args or "--json" in args else ["--dry-run"]
    line = one_error_line(hfuv("run", HELLO, *extra, *args))
    assert words in line


def test_bad_timeout_fails_before_fetching() -> None:
    host = FakeHost()
    try:
        result = hfuv("run", f"{host.url}/s.py", "--dry-run", "--timeout", "soon")
        one_error_line(result)
        assert host.requests == []
    finally:
        host.close()


def test_missing_script_and_missing_argument(tmp_path: Path) -> None:
    assert "script not found" in one_error_line(hfuv("run", str(tmp_path / "x.py"), "--local"))
    assert hfuv("run").code == 2
    assert hfuv("check", str(tmp_path)).code == 2


def test_invalid_metadata_in_run_and_check(tmp_path: Path) -> None:
    script = write(tmp_path / "bad.py", "# /// script\n# dependencies = [1]\n# ///\n")
    for command in (["run", str(script), "--local"], ["check", str(script)]):
        line = one_error_line(hfuv(*command))
        assert line.startswith("error: bad.py:2: `dependencies` must hold PEP 508 strings")


def test_launch_table_errors(tmp_path: Path) -> None:
    unknown = write(tmp_path / "u.py", "# /// script\n# [tool.hfuv]\n# flavour = 'x'\n# ///\n")
    line = one_error_line(hfuv("check", str(unknown)))
    assert "unknown key 'flavour' in [tool.hfuv]" in line and "valid keys: image, flavor" in line
    table = write(tmp_path / "t.py", "# /// script\n# [tool.hf-jobs.secrets]\n# A = 'v'\n# ///\n")
    assert "secrets must list names only" in one_error_line(hfuv("check", str(table)))
    flavor = write(tmp_path / "f.py", "# /// script\n# [tool.hfuv]\n# flavor = 'a100'\n# ///\n")
    line = one_error_line(hfuv("check", str(flavor)))
    assert "unknown flavor 'a100' (from [tool.hfuv])" in line
    boolean = write(tmp_path / "b.py", "# /// script\n# [tool.hf-jobs]\n# timeout = true\n# ///\n")
    assert "timeout must be a string or an integer" in one_error_line(hfuv("check", str(boolean)))


def test_unsatisfiable_requires_python_warns_in_check_and_fails_in_run(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", "# /// script\n# requires-python = '>=3.99'\n# ///\n")
    check = hfuv("check", "--json", str(script))
    assert check.code == 0
    assert check.json()["python"] is None
    assert "no supported Python" in check.stderr
    run = hfuv("run", str(script), "--dry-run")
    assert "no supported Python (3.9, 3.10, 3.11, 3.12, 3.13, 3.14) satisfies" in one_error_line(
        run
    )


def test_debug_shows_the_traceback() -> None:
    result = hfuv("run", HELLO, "--dry-run", "--flavor", "nope", env={"HFUV_DEBUG": "1"})
    assert result.code == 2
    assert "Traceback" in result.stderr and "error: unknown flavor" in result.stderr


def test_python_dash_m_and_hardware() -> None:
    table = hfuv("hardware")
    assert table.code == 0
    assert "a100-large" in table.stdout and "2.50" in table.stdout
    rows = hfuv("hardware", "--json").json()
    assert {r["name"] for r in rows} >= {"cpu-basic", "h200x8", "rtx-pro-6000x8"}
    assert len(rows) == 26


def test_uv_missing_is_said_clearly(tmp_path: Path) -> None:
    result = hfuv("run", HELLO, "--dry-run", env={"HFUV_UV": str(tmp_path / "no-uv")})
    assert "HFUV_UV points at" in one_error_line(result, code=1)


def test_stdout_has_only_results(tmp_path: Path) -> None:
    result = hfuv("check", "--json", HELLO, "-s", "X=1")
    assert result.code == 0
    assert result.stdout.lstrip().startswith("{")
    assert "warning: -s X=...: the value stays in your shell history" in result.stderr
    assert os.environ.get("X") is None


def test_check_shows_what_would_run() -> None:
    result = hfuv("check", str(EXAMPLES / "configured.py"), "--timeout", "2h")
    assert result.code == 0, result.stderr
    rows = {line[:16].strip(): line[16:] for line in result.stdout.splitlines()}
    assert rows["requires-python"] == ">=3.11"
    assert (
        rows["python"] == "3.12  (preferred; requires-python '>=3.11' of configured.py allows it)"
    )
    assert rows["flavor"].startswith("Nvidia T4 - small: 4 vCPU, 15 GB RAM, 1x T4 (16 GB)")
    assert rows["flavor"].endswith("([tool.hfuv])")
    assert rows["timeout"] == "2h"
    assert rows["cost"] == "t4-small at $0.40/h × 2h timeout = at most $0.80"
    assert "APP_MODE=eval  ([tool.hfuv])" in rows["env"]


def test_exec_takes_its_image_as_an_argument() -> None:
    line = one_error_line(hfuv("exec", "--dry-run", "python:3.12", "--image", "x", "--", "true"))
    assert line.startswith("error: hfuv exec has no option --image (it is an option of ")
    ok = hfuv("exec", "--dry-run", "python:3.12", "--", "python", "-c", "print(1)")
    assert ok.code == 0 and ok.json()["body"]["dockerImage"] == "python:3.12"
    assert ok.json()["body"]["command"] == ["python", "-c", "print(1)"]


def test_an_unwritable_cache_is_one_error_line_not_a_traceback(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "not a directory\n")
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--local",
                  env={"HFUV_CACHE_DIR": str(blocker / "cache")})  # fmt: skip
    assert one_error_line(result, 1).startswith("error: Not a directory: ")
    debug = hfuv("run", str(EXAMPLES / "hello.py"), "--local",
                 env={"HFUV_CACHE_DIR": str(blocker / "cache"), "HFUV_DEBUG": "1"})  # fmt: skip
    assert "Traceback" in debug.stderr and debug.code == 1


def test_cache_dir_prune_and_clean(tmp_path: Path) -> None:
    cache = Path(os.environ["HFUV_CACHE_DIR"])
    script = str(EXAMPLES / "hello.py")
    for _ in range(2):
        assert hfuv("run", script, "--local").code == 0
    assert hfuv("cache", "dir").stdout == f"{cache}\n"
    runs = sorted((cache / "runs").iterdir())
    (code_dir, lock) = sorted((cache / "code").iterdir())  # one for both runs, and its lock
    assert len(runs) == 2 and lock.name == f"{code_dir.name}.lock"
    assert list((cache / "prepared").iterdir())

    old = runs[0].stat().st_mtime - 10 * 86400
    os.utime(runs[0], (old, old))
    for path in (code_dir, lock):
        os.utime(path, (old, old))
    pruned = hfuv("cache", "prune", "--older-than", "7d")
    assert pruned.code == 0 and pruned.stderr.startswith("removed ")
    assert sorted((cache / "runs").iterdir()) == runs[1:]
    assert list((cache / "code").iterdir()) == [] and (cache / "locks").is_dir()

    again = hfuv("run", script, "--local")  # its replay record points at the pruned code
    assert again.code == 0 and again.stdout.startswith("Hello from job ")

    assert hfuv("cache", "clean").code == 0 and not cache.exists()
    assert hfuv("run", script, "--local").code == 0
    bad = hfuv("cache", "prune", "--older-than", "soon")
    assert bad.code == 2 and "invalid age 'soon' (from --older-than)" in bad.stderr
    zero = one_error_line(hfuv("cache", "prune", "--older-than", "0"))
    assert zero == "error: age must be positive, got '0' (from --older-than)"


def test_flavor_suggestions_name_each_flavor_once(server: ServerProcess) -> None:
    assert hfuv("hardware", env=server.env()).code == 0  # learns the server's flavors too
    line = one_error_line(hfuv("run", HELLO, "--dry-run", "--flavor", "a10g-smal",
                               env=server.env()))  # fmt: skip
    suggested = line.split("did you mean ")[1].rstrip("?)").split(", ")
    assert suggested[0] == "a10g-small" and len(suggested) == len(set(suggested))


def test_ctrl_c_exits_130_everywhere(server: ServerProcess, tmp_path: Path) -> None:
    """SIGINT while a command waits (on a job, a sweep, stdin, or as the server) exits 130, as
    a shell reports an interrupted command; never click's `Aborted!` with exit 1."""
    sleepy = str(write(tmp_path / "sleepy.py", "import time\ntime.sleep(120)\n"))
    job = hfuv("run", sleepy, "--detach", env=server.env()).stdout.strip()
    sweep = hfuv("run", sleepy, "--detach", "--matrix", "x=1", env=server.env()).stdout.strip()
    other_server = ["server", "--port", "0", "--data-dir", str(tmp_path / "d"), "--token", "u=t"]
    commands = [["wait", job], ["logs", "-f", job], ["stats", "-f", job],
                ["sweep", "watch", sweep], ["run", HELLO, "--dry-run", "--env-file", "-"],
                ["run", sleepy], other_server]  # fmt: skip
    env = {**os.environ, **server.env()}
    waiting = [subprocess.Popen([sys.executable, "-m", "hfuv", *command], env=env, text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE) for command in commands]  # fmt: skip
    time.sleep(4)
    for process in waiting:
        process.send_signal(signal.SIGINT)
    for command, process in zip(commands, waiting, strict=True):
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 130, (command, stderr)
        assert "Aborted!" not in stderr and "Traceback" not in stderr, (command, stderr)
    assert hfuv("cancel", job, env=server.env()).code == 0


def test_a_flavor_in_other_case_or_cut_short_is_suggested(server) -> None:
    upper = one_error_line(hfuv("run", HELLO, "--dry-run", "--flavor", "A10G-SMALL"))
    assert upper.endswith("(hint: did you mean a10g-small?)")
    short = one_error_line(hfuv("run", HELLO, "--dry-run", "--flavor", "t4"))
    assert "did you mean t4-small, t4-medium?" in short


def test_clicks_usage_errors_are_one_line() -> None:
    for args, expected in (
        (("ps", "--al"), "error: no such option '--al'"),
        (("run",), "error: missing argument 'SCRIPT'"),
        (("run", HELLO, "--max-cost", "abc"), "error: invalid value for '--max-cost'"),
        (("bogus",), "error: no such command 'bogus'"),
    ):
        result = hfuv(*args)
        assert result.code == 2, result.stderr
        assert result.stderr.startswith(expected) and result.stderr.count("\n") == 1, result.stderr
        assert "--help` lists what it takes" in result.stderr


def test_a_sweep_without_jobs_is_an_error(server) -> None:
    for args in (("sweep", "watch", "nosuch"), ("sweep", "retry", "nosuch", "--failed"),
                 ("wait", "--sweep", "nosuch")):  # fmt: skip
        result = hfuv(*args, env=server.env())
        assert result.code == 1, result.output
        assert result.stderr.startswith("error: no jobs in sweep nosuch (namespace me)")


@pytest.mark.parametrize("ref", ["me/a b", "me/../x", "ab\x01c", "/abc", "me/", "a?b=1"])
def test_a_job_ref_that_is_not_a_name_is_a_usage_error_before_any_request(ref: str) -> None:
    env = {"HF_TOKEN": "x", "HF_ENDPOINT": "http://127.0.0.1:9"}  # nothing listens there
    for command in (("inspect", ref), ("logs", ref), ("cancel", ref), ("outputs", ref)):
        result = hfuv(*command, env=env)
        assert result.code == 2, result.stderr
        assert one_error_line(result, 2).startswith("error: invalid ")
        assert "cannot reach" not in result.stderr
