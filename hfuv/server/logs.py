"""Job logs on disk: one JSON line per log line, `{"data", "timestamp"}`, as the API serves them.

Each line is written and flushed on its own, so a server killed at any point leaves every
complete line readable; a torn last line is ignored by readers.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from pathlib import Path


def timestamp(at: float | None = None) -> str:
    """ISO 8601 in UTC with milliseconds and `Z`, the Hub's format."""
    moment = datetime.now(timezone.utc) if at is None else datetime.fromtimestamp(at, timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class LogBook:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, job_id: str) -> Path:
        return self.folder / f"{job_id}.jsonl"

    def writer(self, job_id: str) -> LogWriter:
        return LogWriter(self.path(job_id))

    def read(self, job_id: str, offset: int = 0, limit: int = 1 << 20) -> tuple[list[bytes], int]:
        """Complete lines (raw JSON bytes) from byte `offset`, at most about `limit` bytes of
        them (so a long log streams in flat memory), and the offset after them."""
        try:
            with self.path(job_id).open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read(limit)
                while b"\n" not in chunk and len(chunk) == limit:  # one very long line
                    more = handle.read(limit)
                    chunk += more
                    if not more:
                        break
        except FileNotFoundError:
            return [], offset
        end = chunk.rfind(b"\n")
        if end < 0:
            return [], offset
        lines = chunk[: end + 1].splitlines()
        return lines, offset + end + 1


class LogWriter:
    def __init__(self, path: Path) -> None:
        self._handle = path.open("ab", buffering=0)
        self._lock = threading.Lock()

    def write(self, line: str, at: float | None = None) -> None:
        record = json.dumps({"data": line, "timestamp": timestamp(at)}, ensure_ascii=False)
        with self._lock:
            self._handle.write(record.encode("utf-8") + b"\n")

    def close(self) -> None:
        self._handle.close()
