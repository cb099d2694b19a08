"""Job logs on disk: one JSON line per log line, `{"data", "timestamp"}`, as the API serves them.

Each line is written and flushed on its own, so a server killed at any point leaves every
complete line readable; a torn last line is ignored by readers.

A job's log is capped (`--max-log-size`): its first half stays in `ID.jsonl`; after that the
newest lines go to numbered segments `ID.jsonl.1`, `ID.jsonl.2`, … of a quarter of the cap each,
of which the last two are kept. Readers serve the head, a marker line where segments were
dropped, then the kept segments. A read position is a `Cursor`: (segment, byte offset).
"""

from __future__ import annotations

import errno
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import BinaryIO

Cursor = tuple[int, int]
START: Cursor = (0, 0)
DEFAULT_MAX_LOG_BYTES = 256 * 1024 * 1024
MIN_MAX_LOG_BYTES = 64 * 1024
# Below this much free space in the logs' file system the disk counts as full, so the records
# saying so (SQLite's) can still be written.
RESERVE_BYTES = 1024 * 1024
_CHECK_EVERY = 64 * 1024  # bytes a writer writes between two looks at the free space
_SMALLEST_RECORD = len(json.dumps({"data": "", "timestamp": "2026-01-01T00:00:00.000Z"})) + 1
_BLOCK = 1 << 20
_FULL = "the server's disk is full"


class DiskFull(Exception):
    """The server's disk has no room for a log line."""


def timestamp(at: float | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, the Hub's format."""
    moment = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def record(line: str, at: float | None = None) -> bytes:
    """One log line as stored and served (without its newline)."""
    return json.dumps({"data": line, "timestamp": timestamp(at)}, ensure_ascii=False).encode()


def size_text(size: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.3g} {unit}"
    return f"{size} bytes"


class LogBook:
    def __init__(self, folder: Path, max_size: int = DEFAULT_MAX_LOG_BYTES) -> None:
        self.folder = folder
        self.max_size = max(MIN_MAX_LOG_BYTES, max_size)
        self.head_limit = self.max_size // 2
        self.segment_limit = self.max_size // 4
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str, segment: int = 0) -> Path:
        return self.folder / (f"{job_id}.jsonl" + (f".{segment}" if segment else ""))

    def writer(self, job_id: str) -> LogWriter:
        return LogWriter(self, job_id)

    def segments(self, job_id: str) -> list[int]:
        """The numbers of the job's kept tail segments, oldest first."""
        prefix = f"{job_id}.jsonl."
        return sorted(
            int(entry.name[len(prefix) :])
            for entry in os.scandir(self.folder)
            if entry.name.startswith(prefix) and entry.name[len(prefix) :].isdigit()
        )

    def disk_full(self) -> str | None:
        """Why no log can be written now (the disk is full), or None."""
        free = self.free_bytes()
        if free >= RESERVE_BYTES:
            return None
        return (
            f"the server's disk is full ({self.folder.parent} has {size_text(free)} free, "
            f"it keeps {size_text(RESERVE_BYTES)})"
        )

    def free_bytes(self) -> int:
        stats = os.statvfs(self.folder)
        return stats.f_bavail * stats.f_frsize

    def dropped_marker(self) -> bytes:
        return record(
            f"===== Older lines of this log were dropped: it is over the server's log size cap "
            f"of {size_text(self.max_size)} (hfuv server --max-log-size); its first and newest "
            "lines are kept ====="
        )

    def read(
        self, job_id: str, cursor: Cursor = START, limit: int = _BLOCK
    ) -> tuple[list[bytes], Cursor]:
        """Complete lines (raw JSON bytes) from `cursor`, at most about `limit` bytes of them
        unless one line is longer (so a long log streams in flat memory), and the cursor
        after them."""
        segment, offset = cursor
        lines, offset = _read_lines(self.path(job_id, segment), offset, limit)
        if lines:
            return lines, (segment, offset)
        if segment == 0 and offset < self.head_limit:
            return [], (segment, offset)  # the head is not full: nothing comes after it yet
        following = segment + 1
        if not self.path(job_id, following).exists():
            later = [number for number in self.segments(job_id) if number > segment]
            if not later:
                return [], (segment, offset)
            following = later[0]
        # The writer has moved on: what it wrote last here, before it did, comes first.
        lines, offset = _read_lines(self.path(job_id, segment), offset, limit)
        if lines:
            return lines, (segment, offset)
        lines, offset = _read_lines(self.path(job_id, following), 0, limit)
        if following > segment + 1:
            lines.insert(0, self.dropped_marker())
        return lines, (following, offset)

    def tail_start(self, job_id: str, count: int) -> Cursor:
        """Where the last `count` lines of the log start. Reads backwards, a block at a time,
        only as far as needed: memory stays flat whatever the log holds."""
        parts = [0, *self.segments(job_id)] if self._head_full(job_id) else [0]
        sizes = [_size(self.path(job_id, part)) for part in parts]
        if count * _SMALLEST_RECORD >= sum(sizes):
            return START  # the log cannot hold that many lines: all of it
        for part, size in zip(reversed(parts), reversed(sizes), strict=True):
            found, start = _start_of_last(self.path(job_id, part), size, count)
            if start is not None:
                return (part, start)
            count -= found
        return START

    def _head_full(self, job_id: str) -> bool:
        return _size(self.path(job_id)) >= self.head_limit


class LogWriter:
    def __init__(self, book: LogBook, job_id: str) -> None:
        self._book = book
        self._job_id = job_id
        self._segment = 0
        if book._head_full(job_id):
            self._segment = (book.segments(job_id) or [1])[-1]
        self._handle = _append_to(book, book.path(job_id, self._segment))
        self._size = self._handle.tell()
        self._unchecked = _CHECK_EVERY  # look at the free space before the first line
        self._lock = threading.Lock()

    def write(self, line: str, at: float | None = None) -> None:
        """Append one line; DiskFull when the disk has no room for it (nothing is written)."""
        data = record(line, at) + b"\n"
        with self._lock:
            self._unchecked += len(data)
            if self._unchecked >= _CHECK_EVERY:
                self._unchecked = 0
                if (full := self._book.disk_full()) is not None:
                    raise DiskFull(full)
            limit = self._book.head_limit if self._segment == 0 else self._book.segment_limit
            if self._size >= limit:  # so a full head or segment is at least `limit` long
                self._next_segment()
            try:
                self._handle.write(data)
            except OSError as exc:
                if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                os.ftruncate(self._handle.fileno(), self._size)  # no torn line left behind
                raise DiskFull(self._book.disk_full() or _FULL) from None
            self._size += len(data)

    def _next_segment(self) -> None:
        """The head is full, or the current segment: go on in a new one, dropping the one
        before the current one (the head stays)."""
        self._handle.close()
        self._segment += 1
        self._handle = _append_to(self._book, self._book.path(self._job_id, self._segment))
        self._size = 0
        if self._segment >= 3:
            self._book.path(self._job_id, self._segment - 2).unlink(missing_ok=True)

    def close(self) -> None:
        self._handle.close()


def _append_to(book: LogBook, path: Path) -> BinaryIO:
    try:
        return path.open("ab", buffering=0)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        raise DiskFull(book.disk_full() or _FULL) from None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_lines(path: Path, offset: int, limit: int) -> tuple[list[bytes], int]:
    """Complete lines from `offset`: about `limit` bytes of them, or the one line there."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            chunk = handle.read(limit)
            while b"\n" not in chunk:  # one line longer than `limit` (the writer bounds it)
                more = handle.read(limit)
                if not more:
                    break
                chunk += more
    except FileNotFoundError:
        return [], offset
    end = chunk.rfind(b"\n")
    if end < 0:
        return [], offset
    return chunk[: end + 1].splitlines(), offset + end + 1


def _start_of_last(path: Path, size: int, count: int) -> tuple[int, int | None]:
    """Where the last `count` complete lines of the file start, reading from its end; or how
    many complete lines it has in all (and None), when it has no more than `count`."""
    newlines = 0  # the first one seen ends the last complete line; bytes after it are torn
    try:
        with path.open("rb") as handle:
            end = size
            while end > 0:
                start = max(0, end - _BLOCK)
                handle.seek(start)
                block = handle.read(end - start)
                position = len(block)
                while (position := block.rfind(b"\n", 0, position)) >= 0:
                    newlines += 1
                    if newlines == count + 1:
                        return count, start + position + 1
                end = start
    except FileNotFoundError:
        return 0, None
    return newlines, None
