"""Jobs persisted in SQLite: a restarted server still knows every job it ran."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    namespace TEXT NOT NULL,
    owner TEXT NOT NULL,
    initiator TEXT NOT NULL,
    spec TEXT NOT NULL,
    stage TEXT NOT NULL,
    message TEXT,
    exit_code INTEGER,
    pid INTEGER,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    runtime_ref TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_namespace ON jobs (namespace, created_at);
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS job_users (
    namespace TEXT PRIMARY KEY,
    uid INTEGER NOT NULL UNIQUE
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    webhook_id TEXT NOT NULL,
    digest TEXT NOT NULL,
    at REAL NOT NULL,
    jobs TEXT NOT NULL,
    PRIMARY KEY (webhook_id, digest)
);
"""
# After the added columns exist: one job per namespace and submission key, whoever races.
_INDEXES = """
CREATE UNIQUE INDEX IF NOT EXISTS jobs_by_submission_key ON jobs (namespace, submission_key)
    WHERE submission_key IS NOT NULL;
"""


@dataclass
class JobRecord:
    id: str
    namespace: str
    owner: dict[str, str]
    initiator: dict[str, str]
    spec: dict[str, Any]  # the create body, secrets with their values (never returned by the API)
    stage: str = "SCHEDULING"
    message: str | None = None
    exit_code: int | None = None
    pid: int | None = None
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    finished_at: float | None = None
    runtime_ref: str | None = None  # what the runtime needs to find the job again (a container)

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES

    @property
    def labels(self) -> dict[str, str]:
        return self.spec.get("labels") or {}


_COLUMNS = (
    "id", "namespace", "owner", "initiator", "spec", "stage", "message", "exit_code", "pid",
    "created_at", "started_at", "finished_at", "runtime_ref",
)  # fmt: skip
# Columns added since the first schema: a data dir of an older server gets them on open.
_ADDED_COLUMNS = {"runtime_ref": "TEXT", "submission_key": "TEXT"}
_JSON_COLUMNS = {"owner", "initiator", "spec"}


class Store:
    """One SQLite connection shared by the app and the executor, behind a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        self._db.executescript(_INDEXES)
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, record: JobRecord, submission_key: str | None = None) -> JobRecord:
        """Store `record`; with a `submission_key` already used in its namespace, store nothing
        and return that key's job instead."""
        row = self._row(record)
        placeholders = ", ".join("?" * (len(_COLUMNS) + 1))
        with self._lock:
            try:
                self._db.execute(
                    f"INSERT INTO jobs ({', '.join(_COLUMNS)}, submission_key) "
                    f"VALUES ({placeholders})",
                    (*row, submission_key),
                )
                return record
            except sqlite3.IntegrityError:
                found = self._db.execute(
                    f"SELECT {', '.join(_COLUMNS)} FROM jobs "
                    "WHERE namespace = ? AND submission_key = ?",
                    (record.namespace, submission_key),
                ).fetchone()
                if found is None:
                    raise
        return self._record(found)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return self._record(found) if found else None

    def list(self, namespace: str) -> list[JobRecord]:
        """Every job of `namespace`, newest first."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE namespace = ? "
                "ORDER BY created_at DESC, id DESC",
                (namespace,),
            ).fetchall()
        return [self._record(row) for row in rows]

    def with_stage(self, *stages: str) -> list[JobRecord]:
        marks = ", ".join("?" for _ in stages)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_COLUMNS)} FROM jobs WHERE stage IN ({marks}) "
                "ORDER BY created_at, id",
                stages,
            ).fetchall()
        return [self._record(row) for row in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()]
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))

    def finish(self, job_id: str, stage: str, message: str | None, exit_code: int | None) -> bool:
        """Move a job that is not yet terminal to a terminal stage; False if it already was."""
        terminal = tuple(TERMINAL_STAGES)
        marks = ", ".join("?" for _ in terminal)
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE jobs SET stage = ?, message = COALESCE(?, message), exit_code = ?, "
                "finished_at = ? "
                f"WHERE id = ? AND stage NOT IN ({marks})",
                (stage, message, exit_code, time.time(), job_id, *terminal),
            )
        return cursor.rowcount == 1

    def job_uid(self, namespace: str, first: int) -> int:
        """The uid the jobs of `namespace` run as: its own, `first` or above, kept for good."""
        with self._lock:
            self._db.execute(
                "INSERT OR IGNORE INTO job_users (namespace, uid) "
                "SELECT ?, COALESCE(MAX(uid) + 1, ?) FROM job_users",
                (namespace, first),
            )
            (uid,) = self._db.execute(
                "SELECT uid FROM job_users WHERE namespace = ?", (namespace,)
            ).fetchone()
        return int(uid)

    # --- scheduled jobs and webhooks: one JSON document each, by kind ------------------------

    def put_doc(self, kind: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO documents (kind, id, namespace, data) VALUES (?, ?, ?, ?)",
                (kind, doc["id"], doc["namespace"], json.dumps(doc)),
            )

    def get_doc(self, kind: str, doc_id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM documents WHERE kind = ? AND id = ?", (kind, doc_id)
            ).fetchone()
        return json.loads(row[0]) if row else None

    def docs(self, kind: str, namespaces: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT namespace, data FROM documents WHERE kind = ? ORDER BY id", (kind,)
            ).fetchall()
        return [json.loads(d) for ns, d in rows if namespaces is None or ns in namespaces]

    def delete_doc(self, kind: str, doc_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM documents WHERE kind = ? AND id = ?", (kind, doc_id))

    # --- webhook deliveries: a replayed event answers the jobs its first delivery started ----

    def delivery(self, webhook_id: str, digest: str, since: float) -> list[str] | None:
        """The jobs a delivery with `digest` started at or after `since`; None if none did."""
        with self._lock:
            row = self._db.execute(
                "SELECT jobs FROM webhook_deliveries WHERE webhook_id = ? AND digest = ? "
                "AND at >= ?",
                (webhook_id, digest, since),
            ).fetchone()
        return json.loads(row[0]) if row else None

    def remember_delivery(
        self, webhook_id: str, digest: str, jobs: list[str], forget_before: float
    ) -> None:
        """Record a delivery, and forget those older than `forget_before`."""
        with self._lock:
            self._db.execute("DELETE FROM webhook_deliveries WHERE at < ?", (forget_before,))
            self._db.execute(
                "INSERT OR REPLACE INTO webhook_deliveries (webhook_id, digest, at, jobs) "
                "VALUES (?, ?, ?, ?)",
                (webhook_id, digest, time.time(), json.dumps(jobs)),
            )

    def _row(self, record: JobRecord) -> tuple[Any, ...]:
        return tuple(
            json.dumps(getattr(record, name)) if name in _JSON_COLUMNS else getattr(record, name)
            for name in _COLUMNS
        )

    def _record(self, row: tuple[Any, ...]) -> JobRecord:
        values = {
            name: json.loads(value) if name in _JSON_COLUMNS else value
            for name, value in zip(_COLUMNS, row, strict=True)
        }
        return JobRecord(**values)
