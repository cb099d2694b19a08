"""`hfuv lock`, and how `run` treats a SCRIPT.lock beside a local script."""

from __future__ import annotations

from pathlib import Path

from hfuv.payload import read_bundle
from tests.conftest import DEMO_SCRIPT, hfuv, needs_python, write

pytestmark = needs_python("3.12")


def test_lock_writes_and_check_reports(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    lock = tmp_path / "s.py.lock"
    missing = hfuv("lock", "--check", str(script))
    assert missing.code == 1 and "missing" in missing.stderr
    written = hfuv("lock", str(script))
    assert written.code == 0, written.stderr
    assert lock.is_file() and 'name = "hfuv-demo-a"' in lock.read_text()
    assert hfuv("lock", "--check", str(script)).code == 0
    again = hfuv("lock", str(script))
    assert "up to date" in again.stderr


def test_run_uses_an_up_to_date_lock(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    assert hfuv("lock", str(script)).code == 0
    lock = tmp_path / "s.py.lock"
    pinned = (
        lock.read_text()
        .replace('version = "1.1.0"', 'version = "1.0.0"')
        .replace("hfuv_demo_a-1.1.0", "hfuv_demo_a-1.0.0")
    )
    lock.write_text(pinned)  # an older, still valid, pin for a
    result = hfuv("run", str(script), "--dry-run", "--json")
    assert result.code == 0, result.stderr
    shipped = read_bundle(result.json()["body"]["environment"])["s.py.lock"].decode()
    assert shipped == pinned
    local = hfuv("run", str(script), "--local")
    assert local.stdout.startswith("a-1.0.0 b-2.0.0"), local.stderr


def test_stale_lock_is_refused_and_nothing_is_rewritten(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    assert hfuv("lock", str(script)).code == 0
    lock = tmp_path / "s.py.lock"
    script.write_text(DEMO_SCRIPT.replace('"hfuv-demo-b"', '"hfuv-demo-b", "hfuv-demo-x"'))
    before = (script.read_bytes(), lock.read_bytes())
    result = hfuv("run", str(script), "--local")
    assert result.code == 1
    assert "s.py.lock is out of date with s.py" in result.stderr
    assert f"hfuv lock {script}" in result.stderr
    assert (script.read_bytes(), lock.read_bytes()) == before
    assert hfuv("lock", "--check", str(script)).code == 1
    check = hfuv("check", str(script))
    assert check.code == 0 and "out of date" in check.stderr


def test_run_never_writes_the_users_files(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    hfuv("run", str(script), "--local")
    hfuv("run", str(script), "--dry-run", "--with", "hfuv-demo-a")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "hfuv-cache") == ["s.py"]
    assert script.read_text() == DEMO_SCRIPT


def test_local_path_sources_cannot_travel(tmp_path: Path) -> None:
    script = write(
        tmp_path / "s.py",
        "# /// script\n# dependencies = ['mylib']\n# [tool.uv.sources]\n"
        "# mylib = { path = '../mylib' }\n# ///\nprint(1)\n",
    )
    result = hfuv("run", str(script), "--dry-run")
    assert result.code == 2
    assert "s.py:4: [tool.uv.sources] mylib points at the local path '../mylib'" in result.stderr


def test_lock_refuses_a_remote_script() -> None:
    for script in ("https://127.0.0.1:9/x.py", "-"):
        result = hfuv("lock", script, input="print(1)\n")
        assert result.code == 2
        assert result.stderr.startswith("error: hfuv lock writes SCRIPT.lock beside a local")


def test_uv_tool_settings_are_honoured(tmp_path: Path) -> None:
    script = write(
        tmp_path / "s.py",
        "# /// script\n# requires-python = '>=3.10'\n# dependencies = ['hfuv-demo-a']\n"
        "# [tool.uv]\n# constraint-dependencies = ['hfuv-demo-a<1.1']\n# ///\n"
        "import hfuv_demo_a\nprint(hfuv_demo_a.VALUE)\n",
    )
    assert hfuv("run", str(script), "--local").stdout == "a-1.0.0\n"


def test_locks_are_cached_by_content_and_refresh_resolves_again(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    first = hfuv("run", str(script), "--dry-run")
    assert "2 packages (fresh)" in first.stderr
    second = hfuv("run", str(script), "--dry-run")
    assert "2 packages (cached)" in second.stderr
    assert first.stdout == second.stdout
    refreshed = hfuv("run", str(script), "--dry-run", "--refresh")
    assert "2 packages (fresh)" in refreshed.stderr
    changed = write(tmp_path / "s.py", DEMO_SCRIPT.replace('"hfuv-demo-b"', '"hfuv-demo-b>=2"'))
    assert "(fresh)" in hfuv("run", str(changed), "--dry-run").stderr


def test_repeated_local_runs_reuse_one_environment(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    first = hfuv("run", str(script), "--local")
    second = hfuv("run", str(script), "--local")
    assert first.stdout == second.stdout == "a-1.1.0 b-2.0.0 3.12\n"
    assert "Installed 2 packages" in first.stderr
    assert "Installed" not in second.stderr, "the second run found its environment ready"
