"""The one directory that holds hfuv's user-level state (fetched scripts, locks)."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # importing typing would slow down the replay of a prepared run
if TYPE_CHECKING:
    from pathlib import Path


def cache_root() -> str:
    """`HFUV_CACHE_DIR`, else the platform's cache directory + `/hfuv` (no pathlib: the
    replay of a prepared run reads it before anything heavy is imported)."""
    explicit = os.environ.get("HFUV_CACHE_DIR")
    if explicit:
        return os.path.expanduser(explicit)
    home = os.path.expanduser("~")
    if sys.platform == "darwin":
        return os.path.join(home, "Library", "Caches", "hfuv")
    return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"), "hfuv")


def cache_dir() -> Path:
    from pathlib import Path

    return Path(cache_root())
