"""A failed lock is one short line naming what failed and where the script declares it; the
failures are real ones, produced by the real uv against the local wheel index, closed ports on
127.0.0.1 and git repositories that do not exist."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.conftest import Result, ServerProcess, free_port, hfuv, needs_python, write

pytestmark = needs_python("3.12")

HINT = "HFUV_DEBUG=1 shows uv's output)"


def lock_error(result: Result) -> str:
    """The one `error:` line of a failed lock, checked for what every such line must be."""
    assert result.code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and lines[0].endswith(HINT), lines[0]
    assert len(lines[0]) <= 200, (len(lines[0]), lines[0])
    return lines[0]


def script_with(tmp_path: Path, *block: str) -> Path:
    lines = ["# /// script", '# requires-python = ">=3.10"', *block, "# ///", "print('ran')"]
    return write(tmp_path / "s.py", "\n".join(lines) + "\n")


def server_jobs(server: ServerProcess) -> list[dict]:
    request = urllib.request.Request(f"{server.url}/api/jobs/me",
                                     headers={"authorization": "Bearer token-me"})  # fmt: skip
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_an_unreachable_index_is_named_with_its_line(server: ServerProcess, tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/simple"
    script = script_with(tmp_path, '# dependencies = ["hfuv-demo-a"]', "# [[tool.uv.index]]",
                         '# name = "private"', f'# url = "{url}"')  # fmt: skip
    line = lock_error(hfuv("run", str(script), "--detach", env=server.env()))
    assert line.startswith(f"error: s.py:6: cannot fetch from the index private {url} "
                           "(Connection refused) (hint: check the URL and its host;")  # fmt: skip
    assert server_jobs(server) == [], "nothing was submitted"
    debug = hfuv("run", str(script), "--dry-run", env={"HFUV_DEBUG": "1", "UV_HTTP_RETRIES": "0"})
    assert debug.code == 1
    assert "lock --script" in debug.stderr and "--python 3.12" in debug.stderr
    assert f"error: Failed to fetch: {url}/hfuv-demo-a/" in debug.stderr  # uv's own output
    assert "cause: Connection refused (os error 111)" in debug.stderr
    assert debug.stderr.splitlines()[-1] == line, "the short line still comes last"


def test_credentials_in_an_index_url_are_never_printed(tmp_path: Path) -> None:
    port = free_port()
    index = f"http://alice:s3cret@127.0.0.1:{port}/simple"
    script = script_with(tmp_path, '# dependencies = ["hfuv-demo-a"]', "# [tool.uv]",
                         f'# extra-index-url = ["{index}"]')  # fmt: skip
    result = hfuv("run", str(script), "--dry-run", env={"UV_HTTP_RETRIES": "0"})
    line = lock_error(result)
    assert line.startswith(f"error: s.py:5: cannot fetch from the extra-index-url "
                           f"http://127.0.0.1:{port}/simple (Connection refused)")  # fmt: skip
    check = hfuv("check", str(script))
    assert f"http://***@127.0.0.1:{port}/simple  (s.py:5)" in check.stdout
    debug = hfuv("run", str(script), "--dry-run", env={"HFUV_DEBUG": "1", "UV_HTTP_RETRIES": "0"})
    for output in (result, check, debug):
        assert "s3cret" not in output.output


def test_a_package_missing_from_the_index(tmp_path: Path) -> None:
    script = script_with(tmp_path, "# dependencies = [", '#   "hfuv-demo-a",', '#   "hfuv-nope",',
                         "# ]")  # fmt: skip
    line = lock_error(hfuv("run", str(script), "--dry-run"))
    assert line == ("error: s.py:5: hfuv-nope was not found in the package registry (hint: check "
                    f"the name and the index it comes from; {HINT}")  # fmt: skip
    bare = write(tmp_path / "bare.py", "print('no block')\n")
    line = lock_error(hfuv("run", str(bare), "--dry-run", "--with", "hfuv-nope>=1"))
    assert line.startswith("error: --with hfuv-nope>=1: hfuv-nope was not found in the package")
    debug = hfuv("run", str(script), "--dry-run", env={"HFUV_DEBUG": "1"})
    assert "No solution found when resolving dependencies" in debug.stderr
    assert "you require hfuv-nope, we can conclude that your requirements are unsatisfiable" in (
        debug.stderr
    )


def test_a_version_that_cannot_be_satisfied_and_hfuv_lock_writes_nothing(tmp_path: Path) -> None:
    script = script_with(tmp_path, '# dependencies = ["hfuv-demo-b", "hfuv-demo-a>=5"]')
    expected = ("error: s.py:3: hfuv-demo-a>=5 cannot be satisfied: only hfuv-demo-a<=1.1.0 is "
                f"available (hint: correct or relax that requirement; {HINT}")  # fmt: skip
    assert lock_error(hfuv("run", str(script), "--local")) == expected
    assert lock_error(hfuv("lock", str(script))) == expected
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hfuv-cache") == ["s.py"]


def test_conflicting_requirements(tmp_path: Path) -> None:
    script = script_with(tmp_path, '# dependencies = ["hfuv-demo-a>=1.1", "hfuv-demo-a<1.1"]')
    line = lock_error(hfuv("run", str(script), "--dry-run"))
    assert line.startswith("error: s.py:3: conflicting requirements hfuv-demo-a>=1.1 and "
                           "hfuv-demo-a<1.1 (hint: correct or relax that requirement;")  # fmt: skip
    pinned = script_with(tmp_path, '# dependencies = ["hfuv-demo-a==1.0.0"]', "# [tool.uv]",
                         '# constraint-dependencies = ["hfuv-demo-a>1.0"]')  # fmt: skip
    line = lock_error(hfuv("run", str(pinned), "--dry-run"))
    assert "conflicting requirements hfuv-demo-a==1.0.0 and hfuv-demo-a>1.0" in line


def test_git_repositories_that_cannot_be_cloned(tmp_path: Path) -> None:
    missing = "file:///nonexistent/no-such-repo"
    script = script_with(tmp_path, '# dependencies = ["mylib"]', "# [tool.uv.sources]",
                         f'# mylib = {{ git = "{missing}" }}')  # fmt: skip
    line = lock_error(hfuv("run", str(script), "--dry-run"))
    assert line.startswith(f"error: s.py:5: cannot clone the git repository {missing} "
                           "(does not appear to be a git repository) (hint:")  # fmt: skip
    url = f"http://127.0.0.1:{free_port()}/org/mylib.git"
    direct = script_with(tmp_path, f'# dependencies = ["mylib @ git+{url}@v1"]')
    line = lock_error(hfuv("run", str(direct), "--dry-run"))
    assert line.startswith(f"error: s.py:3: cannot clone the git repository {url} "
                           "(Couldn't connect to server) (hint: check the URL")  # fmt: skip
    debug = hfuv("run", str(direct), "--dry-run", env={"HFUV_DEBUG": "1"})
    assert "cause: Git operation failed" in debug.stderr and "fatal: unable to access" in (
        debug.stderr
    )


def test_check_shows_the_indexes_sources_and_settings(tmp_path: Path) -> None:
    script = script_with(
        tmp_path,
        '# dependencies = ["mylib", "hfuv-demo-a"]',
        "# [tool.uv]",
        '# exclude-newer = "2024-01-01T00:00:00Z"',
        '# find-links = ["https://files.example/wheels/"]',
        "# [[tool.uv.index]]",
        '# name = "private"',
        '# url = "https://token@pkgs.example/simple"',
        "# explicit = true",
        "# [tool.uv.sources]",
        '# mylib = { git = "https://git.example/org/mylib", rev = "v1" }',
        '# hfuv-demo-a = { index = "private" }',
    )
    text = hfuv("check", str(script))
    assert text.code == 0, text.stderr
    rows = [line.split(maxsplit=1) for line in text.stdout.splitlines()
            if line.startswith(("index", "find-links", "source", "uv setting"))]  # fmt: skip
    assert [" ".join(row) for row in rows] == [
        'index https://***@pkgs.example/simple (name="private", explicit=true)  (s.py:9)',
        "find-links https://files.example/wheels/  (s.py:6)",
        'source mylib: git="https://git.example/org/mylib", rev="v1"  (s.py:12)',
        'source hfuv-demo-a: index="private"  (s.py:13)',
        'uv setting      exclude-newer = "2024-01-01T00:00:00Z"  (s.py:5)',
    ]
    data = hfuv("check", "--json", str(script)).json()["tool_uv"]
    assert data == {
        "indexes": [
            {"kind": "index", "name": "private", "url": "https://***@pkgs.example/simple",
             "explicit": True, "line": 9},
            {"kind": "find-links", "url": "https://files.example/wheels/", "line": 6},
        ],
        "sources": [
            {"package": "mylib", "git": "https://git.example/org/mylib", "rev": "v1", "line": 12},
            {"package": "hfuv-demo-a", "index": "private", "line": 13},
        ],
        "settings": {"exclude-newer": {"value": "2024-01-01T00:00:00Z", "line": 5}},
    }  # fmt: skip
    plain = hfuv("check", "--json", str(script_with(tmp_path, "# dependencies = []"))).json()
    assert plain["tool_uv"] == {"indexes": [], "sources": [], "settings": {}}
