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


def remember(path: Path, text: str) -> None:
    """Write a cache file atomically; a failure is ignored, as a cache only saves time."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        partial.write_text(text, encoding="utf-8")
        partial.replace(path)
    except OSError:
        pass


# What `hfuv cache prune` removes: per-run state that only grows. Locks, fetched scripts and the
# other small caches stay (they are what makes the next run fast).
PRUNABLE = ("runs", "prepared", "code")


def _size_of(path: str) -> tuple[int, int]:
    """(files, bytes) under `path` (a file or a directory)."""
    if not os.path.isdir(path) or os.path.islink(path):
        try:
            return 1, os.lstat(path).st_size
        except OSError:
            return 0, 0
    files = size = 0
    for folder, _, names in os.walk(path):
        for name in names:
            try:
                size += os.lstat(os.path.join(folder, name)).st_size
                files += 1
            except OSError:
                pass
    return files, size


def _remove(path: str) -> tuple[int, int]:
    import shutil

    counted = _size_of(path)
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            os.unlink(path)
        except OSError:
            return 0, 0
    return counted


def prune(older_than_seconds: float) -> tuple[int, int]:
    """Remove local run dirs, replay records and unpacked code dirs not modified for
    `older_than_seconds`. → (files, bytes) removed."""
    import time

    cutoff = time.time() - older_than_seconds
    files = size = 0
    for kind in PRUNABLE:
        folder = os.path.join(cache_root(), kind)
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                old = entry.stat(follow_symlinks=False).st_mtime < cutoff
            except OSError:
                continue
            if old and (kind != "code" or _unused_code(entry.path)):
                removed = _remove(entry.path)
                if kind == "code" and not entry.name.endswith(".lock"):
                    lock = _remove(entry.path + ".lock")
                    removed = (removed[0] + lock[0], removed[1] + lock[1])
                files, size = files + removed[0], size + removed[1]
    return files, size


def _unused_code(path: str) -> bool:
    """Whether no run uses the code dir at `path` (or the one `path` is the lock of). A lock
    goes only with its folder, and a folder a run holds stays, however old."""
    from hfuv import codedir

    if path.endswith(".lock"):
        folder = path[: -len(".lock")]
        return not os.path.lexists(folder) and not codedir.in_use(folder)
    return not codedir.in_use(path)


def clean() -> tuple[int, int]:
    """Remove hfuv's whole cache. → (files, bytes) removed."""
    root = cache_root()
    return _remove(root) if os.path.exists(root) else (0, 0)
