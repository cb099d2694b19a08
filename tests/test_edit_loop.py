"""The edit-run loop: an edit to the code outside the metadata block never locks again."""

from __future__ import annotations

import shlex
from pathlib import Path

from hfuv.payload import read_bundle
from hfuv.uv import find_uv
from tests.conftest import hfuv, needs_python, write

pytestmark = needs_python("3.12")

SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import hfuv_demo_a

print("v1", hfuv_demo_a.VALUE)
"""


def counting_uv(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """HFUV_UV naming a wrapper that logs each command line, then runs the real uv."""
    log = tmp_path / "uv-calls.log"
    wrapper = tmp_path / "bin" / "uv"
    write(wrapper, f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
                   f'exec {shlex.quote(find_uv())} "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    return {"HFUV_UV": str(wrapper)}, log


def uv_locks(log: Path) -> list[str]:
    """Every `uv lock` hfuv ran (`--check` included)."""
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line for line in lines if line.startswith("lock ")]


def shipped_script(result) -> str:
    assert result.code == 0, result.stderr
    return read_bundle(result.json()["body"]["environment"])["s.py"].decode()


def test_a_code_edit_locks_nothing_and_a_block_edit_locks(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    script = write(tmp_path / "s.py", SCRIPT)
    dry_run = ("run", str(script), "--dry-run", "--json")
    assert "v1" in shipped_script(hfuv(*dry_run, env=env))
    assert len(uv_locks(log)) == 1

    script.write_text(SCRIPT.replace("v1", "v2") + "# a comment\n")
    assert shipped_script(hfuv(*dry_run, env=env)).endswith(
        '"v2", hfuv_demo_a.VALUE)\n# a comment\n'
    )
    assert len(uv_locks(log)) == 1

    script.write_text(SCRIPT.replace('"hfuv-demo-a"', '"hfuv-demo-a", "hfuv-demo-b"'))
    shipped = shipped_script(hfuv(*dry_run, env=env))
    assert '"hfuv-demo-b"' in shipped
    assert len(uv_locks(log)) == 2


def test_a_code_edit_keeps_the_verdict_on_a_lock_file(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    script = write(tmp_path / "s.py", SCRIPT)
    assert hfuv("lock", str(script), env=env).code == 0
    dry_run = ("run", str(script), "--dry-run", "--json")
    shipped_script(hfuv(*dry_run, env=env))
    checks = len(uv_locks(log))
    script.write_text(SCRIPT.replace("v1", "v2"))
    assert "v2" in shipped_script(hfuv(*dry_run, env=env))
    assert len(uv_locks(log)) == checks
