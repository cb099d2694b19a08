"""Which Python X.Y a job gets when requires-python rules out 3.12, here and in the job."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hfuv.payload import read_bundle
from hfuv.uv import find_uv
from tests.conftest import ServerProcess, hfuv, needs_python, write

SCRIPT = """\
# /// script
# requires-python = "{spec}"
# dependencies = ["hfuv-demo-a"]
# ///
import sys

import hfuv_demo_a

print(hfuv_demo_a.VALUE, "%d.%d" % sys.version_info[:2])
"""


def uv_finds(python: str, env: dict[str, str] | None = None) -> str | None:
    found = subprocess.run([find_uv(), "python", "find", python], capture_output=True, text=True,
                           env={**os.environ, **(env or {})})  # fmt: skip
    return found.stdout.strip() if found.returncode == 0 else None


pytestmark = [
    needs_python("3.13"),
    pytest.mark.skipif(uv_finds("3.14") is not None, reason="this machine has Python 3.14"),
]


def rows_of(result) -> dict[str, str]:
    assert result.code == 0, result.stderr
    return {line[:16].strip(): line[16:] for line in result.stdout.splitlines()}


def job_of(server: ServerProcess, job_id: str) -> dict:
    inspected = hfuv("inspect", "--json", job_id, env=server.env())
    assert inspected.code == 0, inspected.stderr
    return inspected.json()


def test_a_script_that_rules_out_3_12_runs_on_the_installed_3_13(
    tmp_path: Path, server: ServerProcess
) -> None:
    script = write(tmp_path / "s.py", SCRIPT.format(spec=">=3.13"))
    check = rows_of(hfuv("check", str(script)))
    assert check["python"] == (
        "3.13  (the highest that requires-python '>=3.13' of s.py allows and that is installed "
        "here; 3.14 is not)"
    )
    assert check["image"].endswith("-python3.13-trixie  (default)")
    assert hfuv("check", "--json", str(script)).json()["python_reason"].startswith("the highest")

    local = hfuv("run", str(script), "--local")
    assert local.code == 0, local.stderr
    assert local.stdout == "a-1.1.0 3.13\n"

    body = hfuv("run", str(script), "--dry-run", "--json").json()["body"]
    assert body["environment"]["HFUV_PYTHON"] == "3.13"
    assert body["dockerImage"].endswith("-python3.13-trixie")

    remote = hfuv("run", str(script), env=server.env())
    assert remote.code == 0, remote.stderr
    assert remote.stdout.endswith("a-1.1.0 3.13\n")


def test_with_no_allowed_python_here_the_job_is_still_locked_and_submitted(
    tmp_path: Path, server: ServerProcess
) -> None:
    script = write(tmp_path / "s.py", SCRIPT.format(spec=">=3.14"))
    check = rows_of(hfuv("check", str(script)))
    assert check["python"] == (
        "3.14  (the highest that requires-python '>=3.14' of s.py allows; none of them is "
        "installed here, so a local run needs `uv python install 3.14`)"
    )
    dry = hfuv("run", str(script), "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    body = dry.json()["body"]
    assert body["environment"]["HFUV_PYTHON"] == "3.14"
    assert body["dockerImage"].endswith("-python3.14-trixie")
    lock = read_bundle(body["environment"])["s.py.lock"].decode()
    assert 'requires-python = ">=3.14"' in lock and 'name = "hfuv-demo-a"' in lock

    submitted = hfuv("run", str(script), "--detach", env=server.env())
    assert submitted.code == 0, submitted.stderr
    job = job_of(server, submitted.stdout.strip())
    assert job["environment"]["HFUV_PYTHON"] == "3.14"

    local = hfuv("run", str(script), "--local")
    assert local.code == 1
    assert local.stderr.strip().splitlines()[-1] == (
        "error: Python 3.14 is not installed on this machine, and the job runs on 3.14 (hint: "
        "install it with `uv python install 3.14`, or pick another with --python)"
    )


def test_a_python_installed_since_changes_a_repeated_submission(
    tmp_path: Path, server: ServerProcess
) -> None:
    """The choice depends on what is installed, so a replayed run must notice a new Python."""
    real_313 = uv_finds("3.13")
    assert real_313 is not None
    folder = tmp_path / "bin"
    folder.mkdir()
    # Only this folder and the system's own Pythons (3.11 here) are where uv looks.
    search_path = os.pathsep.join([str(folder), "/usr/bin", "/bin"])
    env = {**server.env(), "PATH": search_path, "PYENV_ROOT": str(tmp_path / "no-pyenv"),
           "PYENV_VERSION": "", "HFUV_DEBUG": "1"}  # fmt: skip
    assert uv_finds("3.13", env) is None
    script = write(tmp_path / "s.py", SCRIPT.format(spec=">=3.13"))

    def submit() -> tuple[str, bool]:
        result = hfuv("run", str(script), "--detach", env=env)
        assert result.code == 0, result.stderr
        replayed = "debug: replaying the prepared run" in result.stderr
        return job_of(server, result.stdout.strip())["environment"]["HFUV_PYTHON"], replayed

    assert submit() == ("3.14", False)
    assert submit() == ("3.14", True)
    (folder / "python3.13").symlink_to(real_313)
    assert submit() == ("3.13", False)
    assert submit() == ("3.13", True)
