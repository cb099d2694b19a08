"""The one directory that holds hfuv's user-level state (fetched scripts, locks)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def cache_dir() -> Path:
    """`HFUV_CACHE_DIR`, else the platform's cache directory + `/hfuv`."""
    explicit = os.environ.get("HFUV_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "hfuv"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hfuv"
