"""Jobs persisted in SQLite: a restarted server still knows every job it ran."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
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
DROP INDEX IF EXISTS jobs_by_namespace;
-- A listing walks this index alone, newest first: it never reads a spec it does not return.
CREATE INDEX IF NOT EXISTS jobs_listing ON jobs (namespace, created_at, id, stage);
-- Each job's labels, out of its spec, so a listing filters on them in SQL.
CREATE TABLE IF NOT EXISTS job_labels (
    job_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (job_id, key)
);
CREATE INDEX IF NOT EXISTS job_labels_by_key ON job_labels (namespace, key, value, job_id);
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
-- Each job's history: its stage and status message from creation on, as they changed.
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL,
    at REAL NOT NULL,
    stage TEXT NOT NULL,
    message TEXT
);
CREATE INDEX IF NOT EXISTS job_events_by_job ON job_events (job_id, seq);
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
    created_by: dict[str, str] | None = None  # the user whose request made it (None: before)

    @property
    def terminal(self) -> bool:
        return self.stage in TERMINAL_STAGES

    @property
    def labels(self) -> dict[str, str]:
        return labels_of(self.spec)


def labels_of(spec: dict[str, Any]) -> dict[str, str]:
    labels = spec.get("labels")
    if not isinstance(labels, dict):
        return {}
    return {k: v for k, v in labels.items() if isinstance(k, str) and isinstance(v, str)}


@dataclass(frozen=True)
class LabelFilter:
    """`key`, or `key=value`: a job must have the label (with that value, when given)."""

    key: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> LabelFilter:
        key, sep, value = text.partition("=")
        return cls(key, value if sep else None)


_COLUMNS = (
    "id", "namespace", "owner", "initiator", "spec", "stage", "message", "exit_code", "pid",
    "created_at", "started_at", "finished_at", "runtime_ref", "created_by",
)  # fmt: skip
# Columns added since the first schema: a data dir of an older server gets them on open.
# `environment` is the spec's, kept apart as JSON text (most of a spec is its bundle): a listing
# copies that text into its answer without parsing it. NULL in a row from before: in `spec`.
_ADDED_COLUMNS = {
    "runtime_ref": "TEXT",
    "environment": "TEXT",
    "submission_key": "TEXT",
    "created_by": "TEXT",
}
_STORED = (*_COLUMNS, "environment")
_JSON_COLUMNS = {"owner", "initiator", "created_by"}


def _stored_spec(spec: dict[str, Any]) -> tuple[str, str | None]:
    """`spec` as its two columns: all but its environment, and its environment (or None)."""
    rest = {key: value for key, value in spec.items() if key != "environment"}
    environment = spec.get("environment")
    return json.dumps(rest), None if environment is None else json.dumps(environment)


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Store:
    """One SQLite connection shared by the app and the executor, behind a lock."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._lock = threading.Lock()
        had_labels = self._has_table("job_labels")
        self._db.executescript(_SCHEMA)
        present = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
        for name, kind in _ADDED_COLUMNS.items():
            if name not in present:
                self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        if not had_labels:  # a data dir of an older server: its jobs' labels, once
            with self._transaction():
                for job_id, namespace, spec in self._db.execute(
                    "SELECT id, namespace, spec FROM jobs"
                ).fetchall():
                    self._put_labels(job_id, namespace, json.loads(spec))
        self._db.executescript(_INDEXES)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def create(self, record: JobRecord, submission_key: str | None = None) -> JobRecord:
        """Store `record`; with a `submission_key` already used in its namespace, store nothing
        and return that key's job instead."""
        row = self._row(record)
        placeholders = ", ".join("?" * (len(_STORED) + 1))
        with self._lock:
            try:
                with self._transaction():
                    self._db.execute(
                        f"INSERT INTO jobs ({', '.join(_STORED)}, submission_key) "
                        f"VALUES ({placeholders})",
                        (*row, submission_key),
                    )
                    self._put_labels(record.id, record.namespace, record.spec)
                    self._put_event(record.id, record.created_at, record.stage, record.message)
                return record
            except sqlite3.IntegrityError:
                found = self._db.execute(
                    f"SELECT {', '.join(_STORED)} FROM jobs "
                    "WHERE namespace = ? AND submission_key = ?",
                    (record.namespace, submission_key),
                ).fetchone()
                if found is None:
                    raise
        return self._record(found)

    def get(self, job_id: str) -> JobRecord | None:
        with self._lock:
            found = self._db.execute(
                f"SELECT {', '.join(_STORED)} FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        return self._record(found) if found else None

    def page(
        self,
        namespace: str,
        *,
        stages: Sequence[str] = (),
        labels: Sequence[LabelFilter] = (),
        after: str | None = None,
        limit: int = 50,
    ) -> tuple[list[tuple[JobRecord, bytes]], bool]:
        """Up to `limit` jobs of `namespace`, newest first, that have one of `stages` (any
        when empty) and every label of `labels`, from the one after job `after`; and whether
        more follow. Raises KeyError when `after` is no job of `namespace`.

        Each job comes as its record, without `environment` in its spec, and that environment
        as ASCII JSON. The ids come from indexes alone; only the page's rows are read in full.
        """
        where, params = ["namespace = ?"], [namespace]
        if stages:
            where.append(f"stage IN ({', '.join('?' for _ in stages)})")
            params.extend(stages)
        for label in labels:
            value = "" if label.value is None else " AND value = ?"
            where.append(
                f"id IN (SELECT job_id FROM job_labels WHERE namespace = ? AND key = ?{value})"
            )
            params.extend([namespace, label.key] + ([] if label.value is None else [label.value]))
        with self._lock:
            if after is not None:
                found = self._db.execute(
                    "SELECT created_at FROM jobs WHERE id = ? AND namespace = ?", (after, namespace)
                ).fetchone()
                if found is None:
                    raise KeyError(after)
                where.append("(created_at, id) < (?, ?)")
                params.extend([found[0], after])
            ids = [
                row[0]
                for row in self._db.execute(
                    f"SELECT id FROM jobs INDEXED BY jobs_listing WHERE {' AND '.join(where)} "
                    "ORDER BY created_at DESC, id DESC LIMIT ?",
                    (*params, limit + 1),
                )
            ]
            marks = ", ".join("?" for _ in ids[:limit])
            rows = self._db.execute(  # the environment as bytes: copied as it is, not decoded
                f"SELECT {', '.join(_COLUMNS)}, CAST(environment AS BLOB) FROM jobs "
                f"WHERE id IN ({marks})",
                ids[:limit],
            ).fetchall()
        by_id = {row[0]: row for row in rows}
        listed = []
        for job_id in ids[:limit]:
            record, environment = self._listed(by_id[job_id])
            if not isinstance(environment, bytes):  # a row from before the column
                environment = (environment or "{}").encode("ascii")
            listed.append((record, environment))
        return listed, len(ids) > limit

    def with_stage(self, *stages: str) -> list[JobRecord]:
        marks = ", ".join("?" for _ in stages)
        with self._lock:
            rows = self._db.execute(
                f"SELECT {', '.join(_STORED)} FROM jobs WHERE stage IN ({marks}) "
                "ORDER BY created_at, id",
                stages,
            ).fetchall()
        return [self._record(row) for row in rows]

    def update(self, job_id: str, **fields: Any) -> None:
        if not fields:
            return
        if "spec" in fields:
            fields["spec"], fields["environment"] = _stored_spec(fields["spec"])
        sets = ", ".join(f"{name} = ?" for name in fields)
        values = [json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()]
        with self._lock, self._transaction():
            self._db.execute(f"UPDATE jobs SET {sets} WHERE id = ?", (*values, job_id))
            if "stage" in fields or "message" in fields:
                found = self._db.execute(
                    "SELECT stage, message FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                if found:
                    self._put_event(job_id, fields.get("started_at") or time.time(), *found)
            if "spec" in fields:
                self._db.execute("DELETE FROM job_labels WHERE job_id = ?", (job_id,))
                found = self._db.execute(
                    "SELECT namespace FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                if found:
                    self._put_labels(job_id, found[0], json.loads(fields["spec"]))

    def finish(self, job_id: str, stage: str, message: str | None, exit_code: int | None,
               at: float | None = None) -> bool:  # fmt: skip
        """Move a job that is not yet terminal to a terminal stage (ended `at`, else now); False
        if it already was."""
        terminal = tuple(TERMINAL_STAGES)
        marks = ", ".join("?" for _ in terminal)
        ended = at or time.time()
        with self._lock, self._transaction():
            cursor = self._db.execute(
                f"UPDATE jobs SET stage = ?, message = COALESCE(?, message), exit_code = ?, "
                "finished_at = ? "
                f"WHERE id = ? AND stage NOT IN ({marks})",
                (stage, message, exit_code, ended, job_id, *terminal),
            )
            if cursor.rowcount == 1:
                (kept,) = self._db.execute(
                    "SELECT message FROM jobs WHERE id = ?", (job_id,)
                ).fetchone()
                self._put_event(job_id, ended, stage, kept)
        return cursor.rowcount == 1

    def events(self, job_id: str, after: int = 0) -> list[tuple[int, float, str, str | None]]:
        """The job's history after event number `after`: (number, at, stage, message), oldest
        first. A job of an older server starts with the events recorded since."""
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, at, stage, message FROM job_events WHERE job_id = ? AND seq > ? "
                "ORDER BY seq",
                (job_id, after),
            ).fetchall()
        return [(int(n), float(at), stage, message) for n, at, stage, message in rows]

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

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        return transaction(self._db)

    def _has_table(self, name: str) -> bool:
        found = self._db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def _put_event(self, job_id: str, at: float, stage: str, message: str | None) -> None:
        """One step of the job's history, unless it repeats the last one."""
        last = self._db.execute(
            "SELECT stage, message FROM job_events WHERE job_id = ? ORDER BY seq DESC LIMIT 1",
            (job_id,),
        ).fetchone()
        if last != (stage, message):
            self._db.execute(
                "INSERT INTO job_events (job_id, at, stage, message) VALUES (?, ?, ?, ?)",
                (job_id, at, stage, message),
            )

    def _put_labels(self, job_id: str, namespace: str, spec: dict[str, Any]) -> None:
        """`spec`'s labels, for filters; but one SQLite cannot hold (a lone surrogate, which
        an older server let in and no query string can name)."""
        self._db.executemany(
            "INSERT OR REPLACE INTO job_labels (job_id, namespace, key, value) VALUES (?, ?, ?, ?)",
            [(job_id, namespace, key, value) for key, value in labels_of(spec).items()
             if _is_utf8(key) and _is_utf8(value)],
        )  # fmt: skip

    def _row(self, record: JobRecord) -> tuple[Any, ...]:
        values = {
            name: json.dumps(getattr(record, name))
            if name in _JSON_COLUMNS
            else getattr(record, name)
            for name in _COLUMNS
        }
        values["spec"], values["environment"] = _stored_spec(record.spec)
        return tuple(values[name] for name in _STORED)

    def _record(self, row: tuple[Any, ...]) -> JobRecord:
        record, environment = self._listed(row)
        if environment is not None:
            record.spec["environment"] = json.loads(environment)
        return record

    def _listed(self, row: tuple[Any, ...]) -> tuple[JobRecord, str | bytes | None]:
        """The record of `row` without its spec's environment, and that as JSON."""
        values = dict(zip(_STORED, row, strict=True))
        environment = values.pop("environment")
        for name in _JSON_COLUMNS:
            values[name] = None if values[name] is None else json.loads(values[name])
        spec = json.loads(values.pop("spec"))
        if environment is None and "environment" in spec:  # a row from before the column
            environment = json.dumps(spec.pop("environment"))
        return JobRecord(spec=spec, **values), environment


@contextmanager
def transaction(db: sqlite3.Connection, begin: str = "BEGIN") -> Iterator[None]:
    """Every change made on `db` in the block, or (when it raises) none of them."""
    db.execute(begin)
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
