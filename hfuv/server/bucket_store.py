"""Buckets and their files, in SQLite (`buckets.db` in the data dir): a bucket belongs to one
namespace; a file is a path in a bucket naming a file of the CAS by its Xet hash.

`file_owners` remembers which namespaces uploaded (a shard defining) each file hash: a batch may
add a file to a bucket only by a hash its namespace uploaded or already has in a bucket, so a
hash learnt elsewhere never reads another namespace's data. `xorb_owners` does the same for
xorbs: a namespace that did not upload a xorb is told it is absent (HEAD), may upload it (then
owns it too), and cannot name it in a shard.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hfuv.server.store import transaction

_SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    private INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (namespace, name)
);
CREATE TABLE IF NOT EXISTS bucket_files (
    namespace TEXT NOT NULL,
    bucket TEXT NOT NULL,
    path TEXT NOT NULL,
    xet_hash TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ms INTEGER,
    uploaded_at REAL NOT NULL,
    content_type TEXT,
    PRIMARY KEY (namespace, bucket, path)
);
CREATE INDEX IF NOT EXISTS bucket_files_by_hash ON bucket_files (namespace, xet_hash);
CREATE TABLE IF NOT EXISTS file_owners (
    xet_hash TEXT NOT NULL,
    namespace TEXT NOT NULL,
    PRIMARY KEY (xet_hash, namespace)
);
CREATE TABLE IF NOT EXISTS xorb_owners (
    xorb TEXT NOT NULL,
    namespace TEXT NOT NULL,
    PRIMARY KEY (xorb, namespace)
);
"""
_FILE_COLUMNS = "path, xet_hash, size, mtime_ms, uploaded_at, content_type"


def _file(row: tuple[Any, ...]) -> dict[str, Any]:
    path, xet_hash, size, mtime_ms, uploaded_at, content_type = row
    return {
        "path": path,
        "xetHash": xet_hash,
        "size": size,
        "mtime_ms": mtime_ms,
        "uploaded_at": uploaded_at,
        "content_type": content_type,
    }


class BucketStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.RLock()  # reentrant: a transaction runs the other methods

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Every change made in the block, or (when it raises) none of them."""
        with self._lock, transaction(self._db, "BEGIN IMMEDIATE"):
            yield

    def _all(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _run(self, sql: str, *args: Any) -> int:
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def create(self, namespace: str, name: str, private: bool) -> bool:
        """False when the bucket exists already."""
        try:
            self._run(
                "INSERT INTO buckets VALUES (?, ?, ?, ?)",
                namespace,
                name,
                int(private),
                time.time(),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        rows = self._all(
            "SELECT b.private, b.created_at, COUNT(f.path), COALESCE(SUM(f.size), 0) "
            "FROM buckets b LEFT JOIN bucket_files f ON f.namespace = b.namespace AND "
            "f.bucket = b.name WHERE b.namespace = ? AND b.name = ? GROUP BY b.name",
            namespace,
            name,
        )
        if not rows:
            return None
        private, created, count, size = rows[0]
        return {
            "namespace": namespace,
            "name": name,
            "private": bool(private),
            "created_at": created,
            "total_files": count,
            "size": size,
        }

    def exists(self, namespace: str, name: str) -> bool:
        return bool(
            self._all("SELECT 1 FROM buckets WHERE namespace = ? AND name = ?", namespace, name)
        )

    def holds(self, namespace: str, name: str, xet_hash: str) -> bool:
        """Whether a file of the bucket is the file `xet_hash`."""
        return bool(
            self._all(
                "SELECT 1 FROM bucket_files WHERE namespace = ? AND xet_hash = ? AND bucket = ? "
                "LIMIT 1",
                namespace,
                xet_hash,
                name,
            )
        )

    def names(self, namespace: str) -> list[str]:
        rows = self._all("SELECT name FROM buckets WHERE namespace = ? ORDER BY name", namespace)
        return [name for (name,) in rows]

    def delete(self, namespace: str, name: str) -> None:
        self._run("DELETE FROM bucket_files WHERE namespace = ? AND bucket = ?", namespace, name)
        self._run("DELETE FROM buckets WHERE namespace = ? AND name = ?", namespace, name)

    def set_private(self, namespace: str, name: str, private: bool) -> None:
        self._run(
            "UPDATE buckets SET private = ? WHERE namespace = ? AND name = ?",
            int(private),
            namespace,
            name,
        )

    def files(self, namespace: str, name: str, prefix: str = "") -> list[dict[str, Any]]:
        """The bucket's files whose path starts with `prefix`, by path."""
        rows = self._all(
            f"SELECT {_FILE_COLUMNS} FROM bucket_files WHERE namespace = ? AND bucket = ? "
            "AND substr(path, 1, ?) = ? ORDER BY path",
            namespace,
            name,
            len(prefix),
            prefix,
        )
        return [_file(row) for row in rows]

    def file(self, namespace: str, name: str, path: str) -> dict[str, Any] | None:
        rows = self._all(
            f"SELECT {_FILE_COLUMNS} FROM bucket_files WHERE namespace = ? AND bucket = ? "
            "AND path = ?",
            namespace,
            name,
            path,
        )
        return _file(rows[0]) if rows else None

    def put_file(
        self,
        namespace: str,
        name: str,
        path: str,
        xet_hash: str,
        size: int,
        mtime_ms: int | None,
        content_type: str | None,
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO bucket_files VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            namespace,
            name,
            path,
            xet_hash,
            size,
            mtime_ms,
            time.time(),
            content_type,
        )

    def clash(self, namespace: str, name: str, path: str) -> str | None:
        """A file of the bucket that `path` cannot live beside: one that is a folder of `path`
        (`a` for `a/b`), or one inside `path` taken as a folder (`a/b` for `a`)."""
        parts = path.split("/")
        folders = ["/".join(parts[:depth]) for depth in range(1, len(parts))]
        rows = self._all(
            "SELECT path FROM bucket_files WHERE namespace = ? AND bucket = ? AND (path IN "
            f"({', '.join('?' * len(folders))}) OR substr(path, 1, ?) = ?) LIMIT 1",
            namespace,
            name,
            *folders,
            len(path) + 1,
            f"{path}/",
        )
        return rows[0][0] if rows else None

    def delete_file(self, namespace: str, name: str, path: str) -> bool:
        return bool(
            self._run(
                "DELETE FROM bucket_files WHERE namespace = ? AND bucket = ? AND path = ?",
                namespace,
                name,
                path,
            )
        )

    def add_owner(self, xet_hash: str, namespace: str) -> None:
        self._run("INSERT OR IGNORE INTO file_owners VALUES (?, ?)", xet_hash, namespace)

    def add_xorb_owner(self, xorb: str, namespace: str) -> bool:
        """Record that `namespace` uploaded `xorb`; False when it had already."""
        return bool(self._run("INSERT OR IGNORE INTO xorb_owners VALUES (?, ?)", xorb, namespace))

    def owns_xorb(self, namespace: str, xorb: str) -> bool:
        """Whether `namespace` uploaded the xorb: to any other, it is as if absent."""
        return bool(
            self._all("SELECT 1 FROM xorb_owners WHERE xorb = ? AND namespace = ?", xorb, namespace)
        )

    def owns(self, namespace: str, xet_hash: str) -> bool:
        """Whether `namespace` uploaded the file `xet_hash` or has it in one of its buckets."""
        return bool(
            self._all(
                "SELECT 1 FROM file_owners WHERE xet_hash = ? AND namespace = ?",
                xet_hash,
                namespace,
            )
            or self._all(
                "SELECT 1 FROM bucket_files WHERE namespace = ? AND xet_hash = ? LIMIT 1",
                namespace,
                xet_hash,
            )
        )
