"""Which Python X.Y uv finds on this machine, remembered so that asking is nearly free.

`uv python find` takes a quarter to half a second here (pyenv's shims are shell scripts), and the
Python choice asks on every `hfuv run` of a script that does not allow 3.12. So each answer is
remembered: a found interpreter while it exists, a missing one until one of the places a new
Python would appear in (the PATH directories, pyenv's versions, uv's own installs) changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path

from hfuv.cache import cache_dir
from hfuv.uv import pyenv_versions, run_uv, with_python_visible


def find(python: str, environ: Mapping[str, str]) -> str | None:
    """The interpreter uv finds for Python X.Y, looking as a local run does; None if none."""
    env = with_python_visible(environ, python)
    settings = sorted((k, v) for k, v in env.items() if k.startswith("UV_") and "PYTHON" in k)
    key = json.dumps([python, env.get("PATH", ""), env.get("PYENV_VERSION", ""), settings])
    memo = cache_dir() / "pythons" / hashlib.sha256(key.encode()).hexdigest()[:24]
    places = _fingerprint(environ)
    try:
        known = json.loads(memo.read_text())
        if known["found"] and Path(known["found"]).exists():
            return known["found"]
        if not known["found"] and known["places"] == places:
            return None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    result = run_uv(["python", "find", python], env=env, check=False)
    found = result.stdout.strip() if result.returncode == 0 else None
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        memo.write_text(json.dumps({"found": found, "places": places}))
    except OSError:
        pass  # remembering only saves time
    return found


def search_locations(environ: Mapping[str, str]) -> list[str]:
    """The directories whose change can make a Python appear: a new one means asking again."""
    data_home = environ.get("XDG_DATA_HOME") or os.path.join(environ.get("HOME", "~"), ".local",
                                                              "share")  # fmt: skip
    managed = environ.get("UV_PYTHON_INSTALL_DIR") or os.path.join(data_home, "uv", "python")
    folders = [p for p in environ.get("PATH", "").split(os.pathsep) if p]
    return list(dict.fromkeys([*folders, str(pyenv_versions(environ)), managed]))


def _fingerprint(environ: Mapping[str, str]) -> list[int]:
    stamps = []
    for folder in search_locations(environ):
        try:
            stamps.append(os.stat(folder).st_mtime_ns)
        except OSError:
            stamps.append(0)
    return stamps
