"""A SCRIPT.lock that uv considers current is current for hfuv, and `hfuv lock` writes one that
`uv run` keeps, also for a script that declares no requires-python."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from hfuv.payload import read_bundle
from hfuv.uv import find_uv
from tests.conftest import DEMO_SCRIPT, hfuv, needs_python, write

NO_REQUIRES = """\
# /// script
# dependencies = ["hfuv-demo-a"]
# ///
import sys

import hfuv_demo_a

print(hfuv_demo_a.VALUE, "%d.%d" % sys.version_info[:2])
"""


def uv(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([find_uv(), *args], cwd=cwd, env=dict(os.environ), capture_output=True,
                          text=True)  # fmt: skip


def uv_default(cwd: Path) -> str:
    """The X.Y uv runs a script without requires-python with, here."""
    found = uv("python", "find", "--show-version", cwd=cwd)
    assert found.returncode == 0, found.stderr
    return ".".join(found.stdout.split(".")[:2])


@pytest.fixture
def default(tmp_path: Path) -> str:
    minor = uv_default(tmp_path)
    if minor == "3.12":
        pytest.skip("uv's default Python here is 3.12, which hides the difference")
    return minor


pytestmark = needs_python("3.12")


def test_a_lock_written_by_uv_is_current_for_hfuv(tmp_path: Path, default: str) -> None:
    script = write(tmp_path / "s.py", NO_REQUIRES)
    made = uv("lock", "--script", "s.py", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    lock = tmp_path / "s.py.lock"
    written = lock.read_bytes()
    assert f'requires-python = ">={default}"'.encode() in written

    checked = hfuv("lock", "--check", str(script))
    assert checked.code == 0 and checked.stderr == f"{script}.lock is up to date\n"
    rows = {line[:16].strip(): line[16:] for line in hfuv("check", str(script)).stdout.split("\n")}
    assert rows["lock"] == "lock file up to date"
    reason = f"preferred; requires-python '>={default}' of s.py.lock allows it"
    assert rows["python"] == f"3.12  ({reason})"

    dry = hfuv("run", str(script), "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    files = read_bundle(dry.json()["body"]["environment"])
    assert files["s.py.lock"] == written
    assert files["s.py"].decode() == NO_REQUIRES.replace(
        "# /// script\n", f'# /// script\n# requires-python = ">={default}"\n'
    )
    local = hfuv("run", str(script), "--local")
    assert local.code == 0, local.stderr
    assert local.stdout == "a-1.1.0 3.12\n"
    assert lock.read_bytes() == written


@pytest.mark.parametrize("text", [NO_REQUIRES, DEMO_SCRIPT], ids=["no-requires-python", "demo"])
def test_uv_run_keeps_the_lock_hfuv_lock_writes(tmp_path: Path, default: str, text: str) -> None:
    script = write(tmp_path / "s.py", text)
    lock = tmp_path / "s.py.lock"
    assert hfuv("lock", str(script)).stderr == f"wrote {lock}\n"
    written = lock.read_bytes()
    ran = uv("run", "s.py", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("a-1.1.0")
    assert lock.read_bytes() == written
    assert hfuv("lock", str(script)).stderr == f"up to date: {lock}\n"
    assert hfuv("run", str(script), "--local").stdout.startswith("a-1.1.0 b-2.0.0 3.12\n"
                                                                if text == DEMO_SCRIPT
                                                                else "a-1.1.0 3.12\n")  # fmt: skip


def test_hfuv_lock_refuses_a_python_that_uv_run_would_relock(tmp_path: Path, default: str) -> None:
    script = write(tmp_path / "s.py", NO_REQUIRES)
    older = f"3.{int(default.split('.')[1]) - 1}"
    result = hfuv("lock", str(script), "-p", older)
    assert result.code == 2
    assert result.stderr == (
        f"error: s.py declares no requires-python, so `uv run` locks it for Python >={default}, "
        f"the one it runs it with, and would rewrite a lock for python {older} (from --python) "
        f'(hint: add requires-python = ">={older}" to its metadata block)\n'
    )
    assert not (tmp_path / "s.py.lock").exists()
