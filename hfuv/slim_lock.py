"""The part of a uv lock that a job can install: wheels for Linux x86_64 and for this machine.

uv locks a script for every platform, and a script cannot narrow that (uv 0.13 refuses
`[tool.uv] environments` and `required-environments` in a script's block, and in uv.toml). Most
of a big lock is then wheels for macOS, Windows, ARM and other Pythons. The job runs on Linux
x86_64 with one Python X.Y, and a local run uses this machine with the same X.Y, so the shipped
lock keeps only the wheels one of those can install. Every package, version, hash, sdist and
marker stays as uv wrote them, so `uv run --frozen` makes the same environment from it.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sys
from urllib.parse import unquote

from hfuv.cache import cache_dir, remember

FORMAT = "1"  # bump when what is kept changes: memos of another format are not used
# The job's image is Linux x86_64 (glibc by default; musl wheels kept for other images).
JOB_PLATFORM = re.compile(r"(linux|manylinux(1|2010|2014|_\d+_\d+)|musllinux_\d+_\d+)_x86_64")
WHEEL = re.compile(r'^\s*\{ (?:url|path|filename) = "([^"]*\.whl)"')


def for_job(lock_text: str, python: str | None) -> str:
    """`lock_text` without the wheels that neither the job nor this machine can install with
    Python `python` (X.Y; None when the job's interpreter is not known: any Python then)."""
    if "wheels = [" not in lock_text:
        return lock_text
    key = "\0".join([FORMAT, python or "", *_machine_identity(), lock_text])
    memo = cache_dir() / "slim-locks" / hashlib.sha256(key.encode()).hexdigest()
    try:
        return memo.read_text(encoding="utf-8")
    except OSError:
        pass
    interpreters = _interpreters(python) if python else None
    kept, in_wheels = [], False
    for line in lock_text.split("\n"):
        if in_wheels:
            if line == "]":
                in_wheels = False
            else:
                found = WHEEL.match(line)
                if found and not _installable(unquote(found.group(1)), interpreters):
                    continue
        elif line == "wheels = [":
            in_wheels = True
        kept.append(line)
    slim = "\n".join(kept)
    remember(memo, slim)
    return slim


def _installable(url: str, interpreters: frozenset[tuple[str, str]] | None) -> bool:
    """Whether the wheel at `url` fits the job or this machine (a name hfuv cannot read does)."""
    parts = url.rsplit("/", 1)[-1][: -len(".whl")].split("-")
    if len(parts) < 5:
        return True
    pythons, abis, platforms = (part.split(".") for part in parts[-3:])
    if interpreters is not None and not any(
        (py, abi) in interpreters for py in pythons for abi in abis
    ):
        return False
    here = _this_machine()
    return any(p == "any" or p in here or JOB_PLATFORM.fullmatch(p) for p in platforms)


@functools.cache
def _interpreters(python: str) -> frozenset[tuple[str, str]]:
    """The (python tag, abi tag) pairs CPython X.Y installs."""
    from packaging import tags

    version = tuple(int(n) for n in python.split("."))
    cp = f"cp{version[0]}{version[1]}"
    found = [*tags.cpython_tags(version, abis=[cp], platforms=["any"]),
             *tags.compatible_tags(version, cp, platforms=["any"])]  # fmt: skip
    return frozenset((tag.interpreter, tag.abi) for tag in found)


@functools.cache
def _this_machine() -> frozenset[str]:
    """This machine's wheel platforms (working them out takes ~50 ms: only on a memo miss)."""
    from packaging import tags

    return frozenset(tags.platform_tags())


def _machine_identity() -> list[str]:
    """What this machine's wheel platforms follow from: OS, CPU, kernel and C library."""
    system = os.uname()
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        libc = ""
    return [sys.platform, system.machine, system.release, libc]
