"""The single place that finds and runs the uv binary."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hfuv.errors import UvError, UvNotFoundError


@functools.cache
def find_uv() -> str:
    """`HFUV_UV` if set, else the binary of the `uv` package, else `uv` on PATH."""
    explicit = os.environ.get("HFUV_UV")
    if explicit:
        if not Path(explicit).is_file():
            raise UvNotFoundError(f"HFUV_UV points at {explicit}, which does not exist")
        return explicit
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        pass
    found = shutil.which("uv")
    if found:
        return found
    raise UvNotFoundError(
        "uv was not found: neither the `uv` Python package nor a `uv` on PATH",
        hint="pip install 'uv>=0.13,<0.14', or install uv from https://docs.astral.sh/uv/",
    )


@functools.cache
def uv_version() -> str:
    """The version of the uv hfuv runs, e.g. `0.13.9` (remembered per binary)."""
    import json

    from hfuv.cache import cache_dir

    binary = Path(find_uv())
    stat = binary.stat()
    key = f"{binary.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = cache_dir() / "uv-version.json"
    try:
        known = json.loads(memo.read_text())
        if known.get("key") == key:
            return known["version"]
    except (OSError, ValueError, AttributeError):
        pass
    out = run_uv(["--version"]).stdout.split()
    if len(out) < 2:
        raise UvError(f"unexpected output from `uv --version`: {' '.join(out)!r}")
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"key": key, "version": out[1]}))
    except OSError:
        pass
    return out[1]


def run_uv(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> subprocess.CompletedProcess[str]:
    """Run uv with `args`, capturing output; raise UvError carrying uv's errors on failure."""
    argv = [find_uv(), *args]
    merged = dict(os.environ if env is None else env)
    merged.setdefault("UV_NO_PROGRESS", "1")
    result = subprocess.run(argv, cwd=cwd, env=merged, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise UvError(
            f"`uv {' '.join(args[:2])}` failed: {summarize_errors(result.stderr)}",
            detail=transcript(argv, result.stderr),
        )
    return result


@dataclass(frozen=True)
class UvFailure:
    """uv's error chain: its `error:` line and each `cause:` under it (continuations joined)."""

    error: str
    causes: tuple[str, ...] = ()

    @property
    def chain(self) -> tuple[str, ...]:
        return (self.error, *self.causes)


_CAUSE = re.compile(r"^\s*(?:cause:|Caused by:|╰─▶)\s*")


def parse_failure(stderr: str) -> UvFailure:
    """The error chain in uv's stderr (progress, warnings and hints before or after it dropped)."""
    items: list[str] = []
    for line in stderr.splitlines():
        if line.startswith("error:"):
            items = [line[len("error:") :].strip()]
        elif items and _CAUSE.match(line):
            items.append(_CAUSE.sub("", line).strip())
        elif items and line.startswith((" ", "\t")) and line.strip():
            items[-1] += "\n" + line.strip()
        elif items and line.strip():
            break  # `hint:` and whatever follows the chain
    if not items:
        lines = [line.strip() for line in stderr.splitlines() if line.strip()]
        return UvFailure(" ".join(lines[-3:]) or "no output")
    return UvFailure(items[0], tuple(items[1:]))


def summarize_errors(stderr: str, limit: int = 200) -> str:
    """uv's error and its innermost cause, on one line of at most `limit` characters."""
    failure = parse_failure(stderr)
    text = failure.error
    if failure.causes:
        text += f": {failure.causes[-1].splitlines()[0]}"
    return shorten(text, limit)


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters at a word boundary, with `…` where it was cut."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - 1, 0)]
    if " " in cut[limit // 2 :]:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:(") + "…"


def transcript(argv: Sequence[str], stderr: str) -> str:
    """What `HFUV_DEBUG=1` shows of a failed uv command: the command and all it printed."""
    return f"$ {' '.join(argv)}\n{stderr}"


def pyenv_versions(environ: Mapping[str, str]) -> Path:
    """Where pyenv keeps its Pythons (which may not exist)."""
    root = environ.get("PYENV_ROOT") or Path(environ.get("HOME", "~")).expanduser() / ".pyenv"
    return Path(root) / "versions"


def with_python_visible(environ: Mapping[str, str], python: str) -> dict[str, str]:
    """`environ`, with pyenv's Python `python` (X.Y) put on PATH when pyenv hides it.

    pyenv's shims for versions that are installed but not selected exit with 127, and uv treats
    that as a hard error instead of looking further. Putting the version's own bin directory
    first on PATH lets uv find it, as `pyenv shell` would.
    """
    env = dict(environ)
    versions = pyenv_versions(env)
    if not versions.is_dir():
        return env
    selected = env.get("PYENV_VERSION", "")
    if any(v == python or v.startswith(python + ".") for v in selected.split(":")):
        return env
    candidates = [
        path
        for path in versions.glob(f"{python}.*")
        if (path / "bin" / f"python{python}").exists() and path.name[len(python) + 1 :].isdigit()
    ]
    if not candidates:
        return env
    best = max(candidates, key=lambda p: int(p.name[len(python) + 1 :]))
    env["PATH"] = f"{best / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env
