"""Runs the server's jobs through a runtime (`hfuv.runtime`): the queue, the records, the logs.

The executor decides everything about a job (its launch: image, argv, env, limits) and keeps its
record and log; the runtime only starts, watches, stops and re-attaches it. At most
`max_parallel` jobs run at once while the rest wait in SCHEDULING.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from hfuv.flavors import CATALOG, DEFAULT_FLAVOR, Flavor
from hfuv.local import job_environment
from hfuv.runtime import Handle, Launch, Runtime, RuntimeFailure, Usage, get_runtime
from hfuv.server.logs import LogBook
from hfuv.server.store import JobRecord, Store

DEFAULT_TIMEOUT = 30 * 60
_HEADER = "===== Job started at"
SHUTDOWN_GRACE_SECONDS = 3.0


def flavor_of(spec: Mapping[str, object]) -> Flavor:
    return CATALOG.get(str(spec.get("flavor") or DEFAULT_FLAVOR), CATALOG[DEFAULT_FLAVOR])


class Executor:
    def __init__(
        self,
        store: Store,
        logs: LogBook,
        work_root: Path,
        *,
        max_parallel: int,
        environ: Mapping[str, str],
        runtime: Runtime | None = None,
    ) -> None:
        self.store = store
        self.logs = logs
        self.work_root = work_root
        self.max_parallel = max(1, max_parallel)
        self.environ = dict(environ)
        self.runtime = runtime or get_runtime("host", self.environ)
        self._queue: deque[str] = deque()
        self._running: dict[str, Handle] = {}
        self._ending: dict[str, str] = {}  # job id → "cancel" or "timeout"
        self._cond = threading.Condition()
        self._stopped = False
        self._dispatcher = threading.Thread(target=self._dispatch, daemon=True, name="dispatch")

    def start(self) -> None:
        self._recover()
        self._dispatcher.start()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
            running = list(self._running.items())
        if self.runtime.restartable:
            return  # the jobs go on; the next server re-attaches to them
        for job_id, handle in running:
            self._ending.setdefault(job_id, "shutdown")
            handle.terminate(SHUTDOWN_GRACE_SECONDS)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        with self._cond:
            while self._running and time.monotonic() < deadline:
                self._cond.wait(timeout=0.1)
            leftovers = list(self._running.values())
        for handle in leftovers:
            handle.kill()

    def submit(self, job_id: str) -> None:
        with self._cond:
            self._queue.append(job_id)
            self._cond.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._cond:
            if job_id in self._queue:
                self._queue.remove(job_id)
                self.store.finish(job_id, "CANCELED", "Job canceled", None)
                return
            handle = self._running.get(job_id)
            if handle is None:
                return
            self._ending.setdefault(job_id, "cancel")
        handle.terminate()

    def usage(self, job_id: str) -> Usage:
        """CPU and memory the job uses now (zeros when it does not run)."""
        with self._cond:
            handle = self._running.get(job_id)
        return handle.usage() if handle else Usage()

    def _recover(self) -> None:
        """Jobs running when the server stopped are re-attached where their runtime allows it
        (containers), else they end as ERROR; queued ones are queued again."""
        for record in self.store.with_stage("RUNNING"):
            kind, _, reference = (record.runtime_ref or f"host:{record.id}").partition(":")
            runtime = self.runtime if kind == self.runtime.kind else get_runtime(kind, self.environ)
            handle = None
            if runtime.restartable:
                with contextlib.suppress(RuntimeFailure):  # the engine is gone: so is the job
                    handle = runtime.reattach(reference, self._logged_lines(record.id))
            if handle is None:
                runtime.end_orphan(reference)
                message = "The server stopped while the job was running"
                if runtime.restartable:
                    message = f"The job's container was gone when the server restarted ({kind})"
                self.store.finish(record.id, "ERROR", message, None)
                continue
            self._running[record.id] = handle
            threading.Thread(
                target=self._watch, args=(record, handle), daemon=True, name=f"job-{record.id}"
            ).start()
        for record in self.store.with_stage("SCHEDULING"):
            self._queue.append(record.id)

    def _logged_lines(self, job_id: str) -> int:
        """How many of the job's own output lines its log has (not the executor's header)."""
        count, offset, first = 0, 0, None
        while True:
            lines, offset = self.logs.read(job_id, offset)
            if not lines:
                return count - (first is not None and first.startswith(_HEADER))
            first = first if first is not None else json.loads(lines[0]).get("data", "")
            count += len(lines)

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (
                    not self._queue or len(self._running) >= self.max_parallel
                ):
                    self._cond.wait()
                if self._stopped:
                    return
                job_id = self._queue.popleft()
                record = self.store.get(job_id)
                if record is None or record.terminal:
                    continue
                try:
                    handle = self._start(record)
                except RuntimeFailure as exc:
                    self._fail_to_start(record, str(exc))
                    continue
                except Exception as exc:  # any failure to start ends the job
                    self._fail_to_start(record, f"{type(exc).__name__}: {exc}")
                    continue
                self._running[job_id] = handle
            threading.Thread(
                target=self._watch, args=(record, handle), daemon=True, name=f"job-{job_id}"
            ).start()

    def launch_of(self, record: JobRecord) -> Launch:
        """What the runtime gets for this job."""
        spec = record.spec
        flavor = flavor_of(spec)
        return Launch(
            job_id=record.id,
            image=str(spec.get("dockerImage") or spec.get("spaceId") or ""),
            argv=(*spec.get("command", []), *spec.get("arguments", [])),
            env=job_environment(spec, flavor, record.id),
            workdir=self.work_root / record.id,
            timeout_seconds=int(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT),
        )

    def _start(self, record: JobRecord) -> Handle:
        launch = self.launch_of(record)
        message = None
        if self.runtime.kind == "host" and launch.image.split(":")[0] != "ghcr.io/astral-sh/uv":
            message = f"image {launch.image} is not used: hfuv server runs the command on its host"
        writer = self.logs.writer(record.id)
        writer.write(f"{_HEADER} {time.strftime('%Y-%m-%d %H:%M:%S')} =====")
        writer.close()
        started = time.time()  # before the runtime's own timer (podman's --timeout) starts
        handle = self.runtime.start(launch)
        reference = f"{self.runtime.kind}:{handle.reference}"
        self.store.update(record.id, stage="RUNNING", started_at=started, message=message,
                          runtime_ref=reference)  # fmt: skip
        return handle

    def _fail_to_start(self, record: JobRecord, reason: str) -> None:
        writer = self.logs.writer(record.id)
        writer.write(f"===== Job failed to start: {reason} =====")
        writer.close()
        self.store.update(record.id, started_at=time.time())
        self.store.finish(record.id, "ERROR", f"Job failed to start: {reason}", 127)

    def _watch(self, record: JobRecord, handle: Handle) -> None:
        timeout = record.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT
        current = self.store.get(record.id)
        deadline = ((current and current.started_at) or time.time()) + timeout
        timer = threading.Timer(max(0.0, deadline - time.time()), self._time_out,
                                args=(record.id, handle))  # fmt: skip
        timer.daemon = True
        timer.start()
        writer = self.logs.writer(record.id)
        try:
            for raw in handle.output():
                writer.write(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            code = handle.wait()
        finally:
            timer.cancel()
            writer.close()
        if self._stopped and self.runtime.restartable:
            return  # the next server re-attaches and records the end
        handle.release()
        with self._cond:
            ending = self._ending.pop(record.id, None)
            self._running.pop(record.id, None)
            self._cond.notify_all()
        if ending is None and code != 0 and time.time() >= deadline:
            ending = "timeout"  # the runtime's own timer (e.g. while no server ran) ended it
        if ending == "cancel":
            self.store.finish(record.id, "CANCELED", "Job canceled", code)
        elif ending == "timeout":
            self.store.finish(record.id, "ERROR", "Job timeout", code)
        elif ending == "shutdown":
            self.store.finish(record.id, "ERROR", "The server stopped while the job was running",
                              code)  # fmt: skip
        elif code == 0:
            self.store.finish(record.id, "COMPLETED", None, 0)
        else:
            self.store.finish(record.id, "ERROR", f"Job failed with exit code: {code}", code)

    def _time_out(self, job_id: str, handle: Handle) -> None:
        with self._cond:
            self._ending.setdefault(job_id, "timeout")
        handle.terminate()
