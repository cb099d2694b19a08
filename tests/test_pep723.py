"""hfuv reads PEP 723 metadata exactly as uv does: uv itself is the oracle for every edge case
listed in shared/reference/uv-scripts.md §1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfuv import pep723
from hfuv.errors import MetadataError
from hfuv.uv import find_uv
from tests.conftest import hfuv

BODY = "import sys\nprint('RAN', 'environments-v2' in sys.prefix)\n"
VALID = '# /// script\n# requires-python = ">=3.10"\n# dependencies = ["hfuv-demo-a"]\n# ///\n'
SCRIPT_BLOCK = '# /// script\n# dependencies = ["hfuv-demo-a"]\n# ///\n'


def block(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


CASES: dict[str, bytes] = {
    "valid block": (VALID + BODY).encode(),
    "crlf everywhere": (VALID + BODY).replace("\n", "\r\n").encode(),
    "mixed crlf and lf": (VALID.replace("\n", "\r\n", 2) + BODY).encode(),
    "cr-only newlines": (VALID + BODY).replace("\n", "\r").encode(),
    "bom before the tag": b"\xef\xbb\xbf" + (VALID + BODY).encode(),
    "bom and shebang, block on line 2": b"\xef\xbb\xbf#!/usr/bin/env python3\n"
    + (VALID + BODY).encode(),
    "trailing space on the opener": (
        VALID.replace("# /// script", "# /// script ") + BODY
    ).encode(),
    "trailing space on the closer": (VALID.replace("# ///\n", "# /// \n") + BODY).encode(),
    "closer with trailing words": (VALID.replace("# ///\n", "# /// end\n") + BODY).encode(),
    "closer without space": (VALID.replace("# ///\n", "#///\n") + BODY).encode(),
    "closer with two spaces": (VALID.replace("# ///\n", "#  ///\n") + BODY).encode(),
    "bare # line inside": (
        block("# /// script", "#", "# dependencies = []", "# ///") + BODY
    ).encode(),
    "blank line inside": (
        block("# /// script", "", "# dependencies = []", "# ///") + BODY
    ).encode(),
    "code line inside": (
        block("# /// script", "x = 1", "# dependencies = []", "# ///") + BODY
    ).encode(),
    "comment without space inside": (
        block("# /// script", "#dependencies = []", "# ///") + BODY
    ).encode(),
    "tab after #": (block("# /// script", "#\tdependencies = []", "# ///") + BODY).encode(),
    "nbsp after #": (block("# /// script", "#\u00a0dependencies = []", "# ///") + BODY).encode(),
    "spaces before #": (block("# /// script", "  # dependencies = []", "# ///") + BODY).encode(),
    "two blocks separated by code": (SCRIPT_BLOCK + "x = 1\n" + SCRIPT_BLOCK + BODY).encode(),
    "two blocks back to back": (SCRIPT_BLOCK + SCRIPT_BLOCK + BODY).encode(),
    "closer, comment, closer": (
        block("# /// script", "# dependencies = []", "# ///", "# a comment", "# ///") + BODY
    ).encode(),
    "block then comments": (VALID + "# just a comment\n# another\n" + BODY).encode(),
    "unclosed at end of file": block("# /// script", "# dependencies = []").encode(),
    "unclosed then code": (block("# /// script", "# dependencies = []") + BODY).encode(),
    "block after imports": ("import os\n" + VALID + BODY).encode(),
    "block at end, no final newline": (BODY + VALID.rstrip("\n")).encode(),
    "after shebang and coding line": (
        "#!/usr/bin/env python3\n# -*- coding: utf-8 -*-\n" + VALID + BODY
    ).encode(),
    "inside a docstring": ('"""\n' + VALID + '"""\n' + BODY).encode(),
    "indented block": (
        "if True:\n"
        + "".join("    " + ln + "\n" for ln in VALID.splitlines())
        + "    pass\n"
        + BODY
    ).encode(),
    "indented tag before a valid block": (
        "def f():\n    # /// script\n    pass\n" + VALID + BODY
    ).encode(),
    "tag in a string before a valid block": ('X = "# /// script"\n' + VALID + BODY).encode(),
    "tag quoted in a comment before a valid block": (
        '# see "# /// script"\n' + VALID + BODY
    ).encode(),
    "scripts block before a valid block": (
        block("# /// scripts", "# x = 1", "# ///") + VALID + BODY
    ).encode(),
    "stray tags after a valid block": (
        VALID + 'X = "# /// script"\n# /// scripts\n' + BODY
    ).encode(),
    "pyproject block, blank line, script block": (
        block("# /// pyproject", "# x = 1", "# ///") + "\n" + VALID + BODY
    ).encode(),
    "pyproject block directly followed by a script block": (
        block("# /// pyproject", "# x = 1", "# ///") + VALID + BODY
    ).encode(),
    "only a pyproject block": (block("# /// pyproject", "# x = 1", "# ///") + BODY).encode(),
    "empty block": (block("# /// script", "# ///") + BODY).encode(),
    "toml syntax error": (block("# /// script", '# dependencies = ["a"', "# ///") + BODY).encode(),
    "duplicate key": (
        block("# /// script", "# dependencies = []", "# dependencies = []", "# ///") + BODY
    ).encode(),
    "dependencies as a string": (
        block("# /// script", '# dependencies = "six"', "# ///") + BODY
    ).encode(),
    "dependencies as a table": (
        block("# /// script", "# [dependencies]", "# a = 1", "# ///") + BODY
    ).encode(),
    "dependency that is a number": (
        block("# /// script", "# dependencies = [1]", "# ///") + BODY
    ).encode(),
    "invalid operator": (
        block("# /// script", '# dependencies = ["six>>1"]', "# ///") + BODY
    ).encode(),
    "empty dependency": (block("# /// script", '# dependencies = [""]', "# ///") + BODY).encode(),
    "requires-python 3.x": (
        block("# /// script", '# requires-python = "3.x"', "# ///") + BODY
    ).encode(),
    "requires-python without operator": (
        block("# /// script", '# requires-python = "3.11"', "# ///") + BODY
    ).encode(),
    "requires-python as an array": (
        block("# /// script", '# requires-python = [">=3.8"]', "# ///") + BODY
    ).encode(),
    "tool is not a table": (block("# /// script", "# tool = 1", "# ///") + BODY).encode(),
    "tool.uv is not a table": (
        block("# /// script", "# [tool]", "# uv = 1", "# ///") + BODY
    ).encode(),
    "unknown tool.uv key": (
        block(
            "# /// script",
            "# dependencies = []",
            "# [tool.uv]",
            "# not-a-real-setting = 1",
            "# ///",
        )
        + BODY
    ).encode(),
    "other tool table": (
        block("# /// script", "# dependencies = []", "# [tool.black]", "# line-length = 1", "# ///")
        + BODY
    ).encode(),
    "unknown top-level key": (
        block("# /// script", '# name = "x"', "# dependencies = []", "# ///") + BODY
    ).encode(),
    "only requires-python": (
        block("# /// script", '# requires-python = ">=3.10"', "# ///") + BODY
    ).encode(),
    "oddly spaced dependency": (
        block("# /// script", '# dependencies = ["  hfuv-demo-a  >= 1.0 "]', "# ///") + BODY
    ).encode(),
    "dependency with marker and extra": (
        block(
            "# /// script",
            """# dependencies = ["hfuv-demo-a[x]; python_version >= '3'"]""",
            "# ///",
        )
        + BODY
    ).encode(),
    "latin-1 byte after the tag": (VALID + BODY).encode() + b"# caf\xe9\n",
    "latin-1 file without a tag": b"# -*- coding: latin-1 -*-\n# caf\xe9\n" + BODY.encode(),
    "second block with a crlf closer": (
        SCRIPT_BLOCK + "x = 1\n# /// script\n# dependencies = []\n# ///\r\n" + BODY
    ).encode(),
    "later lone opener without closer": (VALID + "x = 1\n# /// script\n" + BODY).encode(),
    "later block indented": (
        VALID + "if 1:\n    # /// script\n    # a = 1\n    # ///\n    pass\n" + BODY
    ).encode(),
    "no metadata at all": BODY.encode(),
    "large file with the block after 1 MB of comments": (
        "# filler line for size\n" * 45000 + VALID + BODY
    ).encode(),
}


def uv_outcome(path: Path) -> str:
    """What uv does with the file: `found`, `none` or `error`.

    A script with metadata runs in a script environment under uv's cache (`environments-v2`);
    one without runs on the interpreter given.
    """
    python = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
    done = subprocess.run(
        [find_uv(), "run", "--no-project", "--offline", "--python", python, str(path)],
        cwd=path.parent,
        capture_output=True,
        text=True,
        env=os.environ,
    )
    if "RAN True" in done.stdout:
        return "found"
    if "RAN False" in done.stdout:
        return "none"
    assert done.returncode == 2, (done.returncode, done.stderr)
    return "error"


def hfuv_outcome(path: Path) -> tuple[str, dict | None, str]:
    result = hfuv("check", "--json", str(path))
    if result.code == 2:
        return "error", None, result.stderr
    assert result.code == 0, result.output
    data = result.json()
    return ("found" if data["metadata_found"] else "none"), data, result.stderr


@pytest.mark.parametrize("case", sorted(CASES))
def test_check_agrees_with_uv(case: str, tmp_path: Path) -> None:
    path = tmp_path / "case.py"
    path.write_bytes(CASES[case])
    expected = uv_outcome(path)
    outcome, data, stderr = hfuv_outcome(path)
    assert outcome == expected, stderr
    if outcome == "error":
        line = stderr.strip().splitlines()[-1]
        assert line.startswith(f"error: {path.name}:"), "the error names the file and line"
        assert len(stderr.strip().splitlines()) == 1, "one clear line"
        assert "Traceback" not in stderr
    elif outcome == "none":
        assert data["dependencies"] is None and data["requires_python"] is None


def test_every_accepted_tool_uv_key_is_accepted_by_uv(tmp_path: Path) -> None:
    rejected_by_uv = []
    for key in sorted(pep723.UV_TOOL_KEYS):
        path = tmp_path / f"{key}.py"
        path.write_text(block("# /// script", "# dependencies = []", "# [tool.uv]", f"# {key} = 1",
                              "# ///") + BODY)  # fmt: skip
        done = subprocess.run(
            [find_uv(), "run", "--no-project", "--offline", str(path)],
            capture_output=True,
            text=True,
        )
        if "unknown field" in done.stderr:
            rejected_by_uv.append(key)
    assert rejected_by_uv == []


@pytest.mark.parametrize("key", ["environments", "managed", "package", "dev-dependencies",
                                 "default-groups", "conflicts", "add-bounds"])  # fmt: skip
def test_tool_uv_keys_uv_rejects_are_rejected(key: str, tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(block("# /// script", "# [tool.uv]", f"# {key} = 1", "# ///") + BODY)
    result = hfuv("check", str(path))
    assert result.code == 2
    assert f"s.py:3: unknown setting `{key}` in [tool.uv]" in result.stderr


def test_dependencies_reported_as_written(tmp_path: Path) -> None:
    path = tmp_path / "s.py"
    path.write_text(
        block("# /// script", '# requires-python = ">=3.11"',
              '# dependencies = ["hfuv-demo-a>=1", "hfuv-demo-b"]', "# ///") + BODY
    )  # fmt: skip
    data = hfuv("check", "--json", str(path)).json()
    assert data["dependencies"] == ["hfuv-demo-a>=1", "hfuv-demo-b"]
    assert data["requires_python"] == ">=3.11"
    assert data["metadata_found"] is True
    empty = tmp_path / "empty.py"
    empty.write_text(block("# /// script", '# requires-python = ">=3.11"', "# ///") + BODY)
    assert hfuv("check", "--json", str(empty)).json()["dependencies"] == []


def test_error_lines_point_into_the_file(tmp_path: Path) -> None:
    cases = {
        "unclosed": ("import os\n# /// script\n# dependencies = []\nx = 1\n", 2, "never closed"),
        "toml": ("\n\n# /// script\n# a = 1\n# b = [\n# ///\n", 5, "invalid TOML"),
        "dep": ('# /// script\n# dependencies = [\n#   "ok",\n#   "bad>>1",\n# ]\n# ///\n', 4,
                "invalid requirement 'bad>>1'"),
        "latin1": ("# /// script\n# ///\n", 3, "invalid UTF-8"),
    }  # fmt: skip
    for name, (text, line, words) in cases.items():
        path = tmp_path / f"{name}.py"
        content = text.encode() + (b"# caf\xe9\n" if name == "latin1" else b"")
        path.write_bytes(content)
        result = hfuv("check", str(path))
        assert result.code == 2, name
        assert result.stderr.startswith(f"error: {name}.py:{line}: "), result.stderr
        assert words in result.stderr
        assert "hint:" in result.stderr, "every error says how to fix it"


def test_parser_offsets_cover_the_block_exactly() -> None:
    text = "#!/usr/bin/env python3\n" + VALID + "print(1)\n"
    meta = pep723.parse(text.encode(), "s.py")
    assert text[meta.start : meta.end] == VALID
    assert (meta.opener_line, meta.closer_line) == (2, 5)


def test_requires_python_error_suggests_an_operator() -> None:
    with pytest.raises(MetadataError) as info:
        pep723.parse(b'# /// script\n# requires-python = "3.11"\n# ///\n', "s.py")
    assert info.value.where == "s.py:2"
    assert '"==3.11"' in str(info.value)


def test_shadowed_block_is_remembered() -> None:
    meta = pep723.parse(('X = "# /// script"\n' + VALID).encode(), "s.py")
    assert not meta.found
    assert meta.shadowed_block_line == 2
