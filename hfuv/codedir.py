"""The code dir of a local run: the folder from which uv runs the shipped script.

uv keeps one environment per script path. So the folder is named by what defines that
environment, not by the code: the user's script (its absolute path) and the bundle's other files
(the lock, `--file` files). An edit to the code rewrites the folder in place, and uv reuses its
environment as it is, since the lock did not change; new dependencies get a folder, and an
environment, of their own, so a run still going keeps its own.

Each run holds a shared lock on its folder until it ends. A run whose files differ rewrites the
folder only when no other run holds it; otherwise it takes the folder named by its bundle's
sha256, which only that bundle's code ever occupies (uv builds that one an environment). Standard
library only, and light: the replay of a prepared run imports it before anything else.
"""

from __future__ import annotations

import fcntl
import os

from hfuv.digest import sha256_hex

TYPE_CHECKING = False  # typing costs more to import than a replay takes
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_held: list[int] = []  # the lock of the folder this run uses, open until the process ends
_replaced: list[str] = []  # folders moved aside for new code, to remove


def folder_name(source: str | None, files: Mapping[str, bytes], script: str,
                bundle_sha256: str, python: str) -> str:  # fmt: skip
    """The folder for the bundle of `files` whose script `script` is the user's file `source`,
    run on `python` (runs on two Pythons at once would share, and fight over, one environment);
    without a file (a URL, stdin), the bundle's own."""
    if source is None:
        return bundle_sha256[:32]
    fields = [os.path.abspath(source), python]
    for name in sorted(files):
        if name != script:
            fields += [name, sha256_hex(files[name])]
    blob = "".join(f"{len(field)}:{field}" for field in fields)
    return sha256_hex(blob.encode("utf-8", "surrogateescape"))[:32]


def place(parent: str, names: Sequence[str], files: Mapping[str, bytes]) -> str:
    """A folder under `parent` that holds exactly `files`: the first of `names` that holds
    them, or that no other run uses and can be rewritten; else a private one. It stays locked
    (shared) until this process ends. Raises OSError when nothing can be written."""
    os.makedirs(parent, exist_ok=True)
    for name in names:
        folder = os.path.join(parent, name)
        lock = os.open(folder + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            for _ in range(3):  # a lock changes mode by release and take: check again after
                fcntl.flock(lock, fcntl.LOCK_SH)  # waits only while another run rewrites it
                if holds_exactly(folder, files):
                    _held.append(lock)
                    return folder
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:  # another run uses it
                    break
                _rewrite(folder, files)
        except BaseException:
            os.close(lock)  # never left held: this very process may try the folder again
            raise
        os.close(lock)
    import tempfile

    private = tempfile.mkdtemp(prefix=".private-", dir=parent)
    write_files(private, files)
    return private


def in_use(folder: str) -> bool:
    """Whether a run holds the code dir `folder` (which `hfuv cache prune` then keeps)."""
    try:
        lock = os.open(folder + ".lock", os.O_RDWR)
    except OSError:
        return False
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(lock)


def _rewrite(folder: str, files: Mapping[str, bytes]) -> None:
    """Replace `folder` with one holding `files`, atomically: a reader sees all or nothing.
    (Called with the folder's lock held alone, so no other run writes beside it.) The folder
    replaced is removed by `remove_replaced`, once the job has started."""
    staging, stale = folder + ".unpacking", folder + ".stale"
    for leftover in (staging, stale):  # of a run that was killed while it wrote
        if os.path.isdir(leftover) and not os.path.islink(leftover):
            _remove_tree(leftover)
        elif os.path.lexists(leftover):
            os.unlink(leftover)
    os.mkdir(staging, 0o700)
    try:
        write_files(staging, files)
        if os.path.lexists(folder):
            os.rename(folder, stale)
            _replaced.append(stale)
        os.rename(staging, folder)
    finally:
        if os.path.lexists(staging):
            _remove_tree(staging)


def remove_replaced() -> None:
    """Remove the folders `place` replaced (off the path to the job's start: shutil alone
    costs a few per cent of a replayed run)."""
    while _replaced:
        _remove_tree(_replaced.pop())


def _remove_tree(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def holds_exactly(folder: str, files: Mapping[str, bytes]) -> bool:
    """Whether `folder` has `files`, byte for byte, and nothing else (no link)."""
    if os.path.islink(folder) or not os.path.isdir(folder):
        return False
    found = 0
    for root, dirs, names in os.walk(folder):
        cache = os.path.join(root, "__pycache__")
        if (
            "__pycache__" in dirs
            and not os.path.islink(cache)
            and not _ships_a_pycache(files, os.path.relpath(root, folder))
        ):
            dirs.remove("__pycache__")  # Python's own, compiled from these very sources
        for name in names + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder).replace(os.sep, "/")
            if os.path.islink(path) or relative not in files:
                return False
            with open(path, "rb") as source:
                if source.read() != files[relative]:
                    return False
            found += 1
    return found == len(files)


def _ships_a_pycache(files: Mapping[str, bytes], relative: str) -> bool:
    prefix = "__pycache__/" if relative == "." else f"{relative}/__pycache__/"
    return any(name.startswith(prefix) for name in files)


def write_files(folder: str, files: Mapping[str, bytes]) -> None:
    for name, content in files.items():
        target = os.path.join(folder, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as out:
            out.write(content)
