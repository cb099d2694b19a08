"""Every example in examples/ runs here as its job would."""

from __future__ import annotations

import re

import pytest

from tests.conftest import EXAMPLES, hfuv, needs_python

pytestmark = needs_python("3.12")


def run_example(name: str, *args: str, **env: str):
    return hfuv("run", str(EXAMPLES / name), "--local", *args, env=env)


def test_hello() -> None:
    result = run_example("hello.py")
    assert result.code == 0, result.stderr
    assert re.fullmatch(r"Hello from job [0-9a-f]{24} on Python 3\.12\.\d+\n", result.stdout)


def test_with_dependencies_from_pypi(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one example that needs the package registry (PyPI), as a user's script would."""
    monkeypatch.delenv("UV_NO_INDEX")
    monkeypatch.delenv("UV_FIND_LINKS")
    result = run_example("with_deps.py")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("six 1.") and " idna 3." in lines[0]
    assert lines[1] == "xn--bcher-kva.example"


def test_show_args() -> None:
    result = run_example("show_args.py", "--", "one", "two")
    assert result.stdout.splitlines()[:2] == ["arg: one", "arg: two"]


def test_exit_code() -> None:
    result = run_example("exit_code.py", "--", "5")
    assert result.code == 5
    assert "exiting with 5" in result.stderr


@needs_python("3.11")
def test_configured() -> None:
    result = run_example("configured.py")
    assert result.code == 0, result.stderr
    assert result.stdout == "mode=eval accelerator=t4-small\n"
    assert "t4-small at $0.40/h × 45m timeout = at most $0.30" in result.stderr


def test_gpu_check_on_a_machine_without_gpu() -> None:
    result = run_example("gpu_check.py", "--flavor", "a10g-small")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("no GPU visible")
    assert "a10g-small" in result.stdout
