"""Scripts saved with a UTF-8 byte-order mark: hfuv reads them as uv does and never ships a copy
that Python cannot run.

What the real uv (0.13) does, checked by tests/test_pep723.py's oracle cases: a block right after
the mark (line 1) is ignored, so `uv run` runs the script without its dependencies; a block after
a shebang on line 1 is found; a file with a mark and no block runs.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from hfuv.payload import read_bundle
from tests.conftest import ServerProcess, hfuv, needs_python

pytestmark = needs_python("3.12")

BOM = b"\xef\xbb\xbf"
BODY = b"import sys\nprint('body ran', sys.version_info[:2] >= (3, 10))\n"
IMPORTS = b"import hfuv_demo_a\nimport hfuv_demo_b\nprint(hfuv_demo_a.VALUE, hfuv_demo_b.VALUE)\n"
BLOCK = b'# /// script\n# requires-python = ">=3.10"\n# dependencies = ["hfuv-demo-a"]\n# ///\n'


def server_jobs(server: ServerProcess) -> list[dict]:
    request = urllib.request.Request(f"{server.url}/api/jobs/me",
                                     headers={"authorization": "Bearer token-me"})  # fmt: skip
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def shipped(script: Path, *args: str) -> bytes:
    result = hfuv("run", str(script), "--dry-run", "--json", *args)
    assert result.code == 0, result.stderr
    return read_bundle(result.json()["body"]["environment"])[script.name]


def test_a_mark_without_a_block_keeps_the_mark_first_and_runs(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_bytes(BOM + BODY)
    copy = shipped(script)
    assert copy.startswith(BOM + b'\n# /// script\n# requires-python = ">=3.12"\n')
    assert copy.endswith(b"# ///\n" + BODY)
    ran = hfuv("run", str(script), "--local")
    assert (ran.code, ran.stdout) == (0, "body ran True\n"), ran.stderr
    assert "warning" not in ran.stderr


def test_a_mark_without_a_block_and_with_adds_the_dependencies(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_bytes(BOM + IMPORTS)
    ran = hfuv("run", str(script), "--local", "--with", "hfuv-demo-a", "--with", "hfuv-demo-b")
    assert (ran.code, ran.stdout) == (0, "a-1.1.0 b-2.0.0\n"), ran.stderr


def test_a_block_right_after_the_mark_is_ignored_as_uv_does(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = tmp_path / "s.py"
    script.write_bytes(BOM + BLOCK + IMPORTS)
    ignored = "s.py:1: uv ignores this metadata block because the file starts with a UTF-8 "
    check = hfuv("check", "--json", str(script))
    assert check.code == 0
    assert check.json()["metadata_found"] is False and check.json()["dependencies"] is None
    assert check.stderr.startswith(f"warning: {ignored}")
    assert "save the file as UTF-8 without a byte-order mark" in check.stderr
    for args in (["--local"], ["--detach"], ["--local", "--with", "hfuv-demo-b"]):
        run = hfuv("run", str(script), *args, env=server.env())
        assert run.code == 2, run.output
        assert run.stderr.splitlines() == [
            f"error: {ignored}byte-order mark, right before `# /// script` "
            "(hint: save the file as UTF-8 without a byte-order mark)"
        ]
        assert run.stdout == ""
    assert server_jobs(server) == []
    assert script.read_bytes() == BOM + BLOCK + IMPORTS


def test_a_shebang_after_the_mark_keeps_its_block_and_with_rewrites_it(tmp_path: Path) -> None:
    shebang = b"#!/usr/bin/env python3\n"
    script = tmp_path / "s.py"
    script.write_bytes(BOM + shebang + BLOCK + IMPORTS)
    check = hfuv("check", "--json", str(script))
    assert check.json()["dependencies"] == ["hfuv-demo-a"] and check.stderr == ""
    assert shipped(script) == BOM + shebang + BLOCK + IMPORTS  # shipped as it is
    copy = shipped(script, "--with", "hfuv-demo-b")
    assert copy.startswith(BOM + shebang + b"# /// script\n")
    assert b'# dependencies = ["hfuv-demo-a", "hfuv-demo-b"]\n' in copy
    assert copy.endswith(b"# ///\n" + IMPORTS)
    ran = hfuv("run", str(script), "--local", "--with", "hfuv-demo-b")
    assert (ran.code, ran.stdout) == (0, "a-1.1.0 b-2.0.0\n"), ran.stderr


def test_an_added_block_goes_after_the_mark_the_shebang_and_the_encoding_line(
    tmp_path: Path,
) -> None:
    head = b"#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n"
    script = tmp_path / "s.py"
    script.write_bytes(BOM + head + IMPORTS)
    copy = shipped(script, "--with", "hfuv-demo-a", "--with", "hfuv-demo-b")
    assert copy.startswith(BOM + head + b"# /// script\n")
    ran = hfuv("run", str(script), "--local", "--with", "hfuv-demo-a", "--with", "hfuv-demo-b")
    assert (ran.code, ran.stdout) == (0, "a-1.1.0 b-2.0.0\n"), ran.stderr


def test_an_encoding_declaration_stays_in_force(tmp_path: Path) -> None:
    """Python honours `coding:` on line 1 or 2 only; the block must not push it down."""
    script = tmp_path / "s.py"
    script.write_bytes(b"# -*- coding: latin-1 -*-\nprint(repr('caf\xc3\xa9'))\n")
    ran = hfuv("run", str(script), "--local")
    assert (ran.code, ran.stdout) == (0, "'cafÃ©'\n"), ran.stderr
