"""Shared fixtures: an isolated environment, a local wheel index, and a way to run the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from tests.helpers import build_wheel

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
WANTED_PYTHONS = ("3.11.7", "3.12.1", "3.13.0", "3.10.13")


def _pyenv_selection() -> str | None:
    """The installed pyenv versions among the ones the tests use (a missing one breaks shims)."""
    pyenv = shutil.which("pyenv")
    if not pyenv:
        return None
    out = subprocess.run([pyenv, "versions", "--bare"], capture_output=True, text=True)
    installed = set(out.stdout.split())
    chosen = [v for v in WANTED_PYTHONS if v in installed]
    return ":".join(chosen) or None


PYENV_VERSION = _pyenv_selection()


def python_available(minor: str) -> bool:
    if PYENV_VERSION and any(v.startswith(minor + ".") for v in PYENV_VERSION.split(":")):
        return True
    return shutil.which(f"python{minor}") is not None


def needs_python(minor: str):
    return pytest.mark.skipif(
        not python_available(minor), reason=f"Python {minor} is not installed on this machine"
    )


@pytest.fixture(scope="session")
def wheel_index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory of tiny wheels, so locking and installing need no network."""
    folder = tmp_path_factory.mktemp("wheels")
    build_wheel(folder, "hfuv-demo-a", "1.0.0", "VALUE = 'a-1.0.0'\n")
    build_wheel(folder, "hfuv-demo-a", "1.1.0", "VALUE = 'a-1.1.0'\n")
    build_wheel(folder, "hfuv-demo-b", "2.0.0", "VALUE = 'b-2.0.0'\n")
    return folder


@pytest.fixture(scope="session")
def uv_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uv-cache")


@pytest.fixture(autouse=True)
def isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, uv_cache: Path, wheel_index: Path
) -> Iterator[None]:
    """No user state, tokens or uv settings leak in; packages come from the local wheel index."""
    for key in list(os.environ):
        if key.startswith(("HFUV_", "UV_", "HF_", "HUGGING", "GITHUB_", "PIP_")):
            monkeypatch.delenv(key, raising=False)
    monkeypatch.delenv("VIRTUAL_ENV", raising=False)  # uv would run plain scripts inside it
    monkeypatch.setenv("HFUV_CACHE_DIR", str(tmp_path / "hfuv-cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("UV_CACHE_DIR", str(uv_cache))
    monkeypatch.setenv("UV_PYTHON_DOWNLOADS", "never")
    monkeypatch.setenv("HFUV_RETRY_MAX_SECONDS", "10")
    monkeypatch.setenv("UV_FIND_LINKS", str(wheel_index))
    monkeypatch.setenv("UV_NO_INDEX", "1")
    # Servers run jobs on the host (their images, e.g. ubuntu:22.04, cannot be pulled here)
    # unless a test picks a container runtime.
    monkeypatch.setenv("HFUV_RUNTIME", "host")
    if PYENV_VERSION:
        monkeypatch.setenv("PYENV_VERSION", PYENV_VERSION)
    yield


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def hfuv(
    *args: str,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    input: str | None = None,
    timeout: float = 300,
) -> Result:
    """Run the real CLI (`python -m hfuv`) in a subprocess, as a user would."""
    merged = dict(os.environ)
    merged.update(env or {})
    done = subprocess.run(
        [sys.executable, "-m", "hfuv", *args],
        cwd=cwd,
        env=merged,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return Result(done.returncode, done.stdout, done.stderr)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


DEMO_SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a", "hfuv-demo-b"]
# ///
import sys

import hfuv_demo_a
import hfuv_demo_b

print(hfuv_demo_a.VALUE, hfuv_demo_b.VALUE, "%d.%d" % sys.version_info[:2])
"""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    """A real `hfuv server` in a subprocess, on a free port of 127.0.0.1."""

    TOKENS: ClassVar[dict[str, str]] = {"me": "token-me", "other": "token-other"}

    def __init__(self, data_dir: Path, *extra: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, user: str = "me") -> dict[str, str]:
        return {"HF_ENDPOINT": self.url, "HF_TOKEN": self.TOKENS[user]}

    def start(self) -> ServerProcess:
        # Jobs run as the server's user, as before; tests/test_isolation.py runs them as their own.
        args = [sys.executable, "-m", "hfuv", "server", "--port", str(self.port), "--data-dir",
                str(self.data_dir), "--insecure-shared-host", *self.extra]  # fmt: skip
        for user, token in self.TOKENS.items():
            args += ["--token", f"{user}={token}"]
        env = dict(os.environ, HFUV_SERVER_KEEPALIVE="1")
        self.process = subprocess.Popen(
            args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.wait_until_up("token-me")  # also given by tests that replace TOKENS
        return self

    def wait_until_up(self, token: str) -> None:
        """Return once the server answers `token`; its stderr as the error if it exited."""
        import time
        import urllib.request

        assert self.process is not None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                request = urllib.request.Request(
                    f"{self.url}/api/whoami-v2", headers={"authorization": f"Bearer {token}"}
                )
                urllib.request.urlopen(request, timeout=1).read()
                return
            except OSError:
                if self.process.poll() is not None:
                    stderr = self.process.stderr.read() if self.process.stderr else ""
                    raise RuntimeError(stderr) from None
                time.sleep(0.1)
        raise RuntimeError("hfuv server did not start")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path / "server-data").start()
    yield process
    process.stop()
