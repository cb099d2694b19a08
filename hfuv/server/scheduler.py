"""Scheduled jobs on `hfuv server`: cron ticks (UTC), triggers, suspend and resume.

Concurrency is off by default: a tick while the last run is still active is skipped, and a
trigger is refused. After a restart, missed ticks are not replayed: the next run is the next
tick from now.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from hfuv.schedules import next_runs
from hfuv.server.store import JobRecord, Store


class StillRunningError(Exception):
    """A trigger while a run is active and concurrency is off."""


def next_tick(schedule: str, after: float) -> float:
    moment = datetime.fromtimestamp(after, timezone.utc)
    return next_runs(schedule, moment)[0].timestamp()


class Scheduler:
    def __init__(
        self, store: Store, launch: Callable[[dict[str, Any]], JobRecord], poll: float = 0.5
    ) -> None:
        self.store = store
        self.launch = launch  # starts one run of a schedule, returns its job
        self.poll = poll
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="scheduler")

    def start(self) -> None:
        now = time.time()
        with self._lock:
            for schedule in self.store.docs("schedule"):
                if not schedule["suspend"] and (schedule["nextRunAt"] or 0) <= now:
                    schedule["nextRunAt"] = next_tick(schedule["schedule"], now)
                    self.store.put_doc("schedule", schedule)
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def create(self, namespace: str, owner: dict[str, str], spec: dict[str, Any], *,
               schedule: str, suspend: bool, concurrency: bool,
               created_by: dict[str, str] | None = None) -> dict[str, Any]:  # fmt: skip
        now = time.time()
        record = {
            "id": f"{int(now):08x}{secrets.token_hex(8)}",
            "namespace": namespace,
            "owner": owner,
            "createdBy": created_by,
            "spec": spec,
            "schedule": schedule,
            "suspend": suspend,
            "concurrency": concurrency,
            "createdAt": now,
            "lastJob": None,
            "nextRunAt": None if suspend else next_tick(schedule, now),
        }
        with self._lock:
            self.store.put_doc("schedule", record)
        return record

    def update(self, schedule_id: str, **changes: Any) -> dict[str, Any] | None:
        with self._lock:
            record = self.store.get_doc("schedule", schedule_id)
            if record is None:
                return None
            record.update(changes)
            if record["suspend"]:
                record["nextRunAt"] = None
            elif "suspend" in changes or "schedule" in changes or record["nextRunAt"] is None:
                record["nextRunAt"] = next_tick(record["schedule"], time.time())
            self.store.put_doc("schedule", record)
            return record

    def delete(self, schedule_id: str) -> None:
        with self._lock:
            self.store.delete_doc("schedule", schedule_id)

    def trigger(self, schedule_id: str) -> JobRecord:
        with self._lock:
            record = self.store.get_doc("schedule", schedule_id)
            if record is None:
                raise KeyError(schedule_id)
            if not record["concurrency"] and self._active(record):
                raise StillRunningError(record["lastJob"]["id"])
            return self._run(record)

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self._lock:
            for record in self.store.docs("schedule"):
                due = record["nextRunAt"]
                if record["suspend"] or due is None or due > now:
                    continue
                if record["concurrency"] or not self._active(record):
                    # A run refused (e.g. a bucket its creator may no longer mount) is skipped;
                    # the next is at its time.
                    with contextlib.suppress(Exception):
                        self._run(record)
                    record = self.store.get_doc("schedule", record["id"]) or record
                record["nextRunAt"] = next_tick(record["schedule"], now)
                self.store.put_doc("schedule", record)

    def _active(self, record: dict[str, Any]) -> bool:
        last = record.get("lastJob")
        if not last:
            return False
        job = self.store.get(last["id"])
        return job is not None and not job.terminal

    def _run(self, record: dict[str, Any]) -> JobRecord:
        job = self.launch(record)
        record["lastJob"] = {"id": job.id, "at": job.created_at}
        self.store.put_doc("schedule", record)
        return job

    def _loop(self) -> None:
        while not self._stopped.wait(self.poll):
            try:
                self.tick()
            except Exception:  # one bad schedule must not stop the others
                continue
