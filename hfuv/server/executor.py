"""Runs the server's jobs through a runtime (`hfuv.runtime`): the queue, the records, the logs.

The executor decides everything about a job (its launch: image, argv, env, limits) and keeps its
record and log; the runtime only starts, watches, stops and re-attaches it. At most
`max_parallel` jobs run at once while the rest wait in SCHEDULING.
"""

from __future__ import annotations

import dataclasses
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from hfuv.flavors import CATALOG, DEFAULT_FLAVOR, Flavor
from hfuv.local import job_environment
from hfuv.runtime import Handle, Launch, Mount, Runtime, RuntimeFailure, Usage, get_runtime
from hfuv.server import volumes
from hfuv.server.logs import LogBook, LogWriter
from hfuv.server.store import JobRecord, Store

DEFAULT_TIMEOUT = 30 * 60
SHUTDOWN_GRACE_SECONDS = 3.0


def _copy_output(handle: Handle, writer: LogWriter) -> int:
    """The job's output into its log, until it ends; its exit code."""
    for raw in handle.output():
        writer.write(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
    return handle.wait()


def attempts_of(spec: Mapping[str, object]) -> int:
    """How many times a failed job runs in all (`attempts`; JobInfo's `retry` is one less)."""
    value = spec.get("attempts")
    return value if isinstance(value, int) and value > 1 else 1


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
        self._fetching: set[str] = set()  # jobs whose volumes are being fetched, not yet queued
        self._mounts: dict[str, tuple[Mount, ...]] = {}  # their fetched volumes, until they end
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
        record = self.store.get(job_id)
        if record is not None and record.spec.get("volumes"):
            with self._cond:
                self._fetching.add(job_id)
            threading.Thread(target=self._fetch_then_queue, args=(record,), daemon=True,
                             name=f"volumes-{job_id}").start()  # fmt: skip
            return
        with self._cond:
            self._queue.append(job_id)
            self._cond.notify_all()

    def _fetch_then_queue(self, record: JobRecord) -> None:
        """Volumes are fetched before the job is queued: no slot (or lock) waits for the Hub."""
        self.store.update(record.id, message="Fetching volumes from the Hub")
        try:
            mounts = volumes.mounts_for(record.spec, self.work_root.parent / "volumes",
                                        self.environ)  # fmt: skip
        except Exception as exc:  # the job ends with the reason, as when it cannot start
            with self._cond:
                wanted = record.id in self._fetching
                self._fetching.discard(record.id)
            if wanted:
                self._fail_to_start(record, str(exc) if isinstance(exc, RuntimeFailure)
                                    else f"{type(exc).__name__}: {exc}")  # fmt: skip
            return
        with self._cond:
            if record.id not in self._fetching:  # canceled meanwhile
                return
            self._fetching.discard(record.id)
            self._mounts[record.id] = mounts
            self.store.update(record.id, message=None)
            self._queue.append(record.id)
            self._cond.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._cond:
            if job_id in self._queue or job_id in self._fetching:
                if job_id in self._queue:
                    self._queue.remove(job_id)
                self._fetching.discard(job_id)
                self._mounts.pop(job_id, None)
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

    def address(self, job_id: str, port: int) -> tuple[str, int] | None:
        """Where the running job serves `port` (None when it does not run)."""
        with self._cond:
            handle = self._running.get(job_id)
        return handle.address(port) if handle else None

    def _recover(self) -> None:
        """Jobs running when the server died end as ERROR; queued ones are queued again."""
        for record in self.store.with_stage("RUNNING"):
            self.runtime.end_orphan(record.id)
            self.store.finish(
                record.id, "ERROR", "The server stopped while the job was running", None
            )
        for record in self.store.with_stage("SCHEDULING"):
            self.submit(record.id)

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
        """What the runtime gets for this job (its volumes fetched before it was queued)."""
        spec = record.spec
        flavor = flavor_of(spec)
        return Launch(
            job_id=record.id,
            image=str(spec.get("dockerImage") or spec.get("spaceId") or ""),
            argv=(*spec.get("command", []), *spec.get("arguments", [])),
            env=job_environment(spec, flavor, record.id),
            workdir=self.work_root / record.id,
            timeout_seconds=int(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT),
            ports=tuple((spec.get("expose") or {}).get("ports") or ()),
            mounts=self._mounts.get(record.id, ()),
        )

    def _start(self, record: JobRecord) -> Handle:
        launch = self.launch_of(record)
        message = None
        if self.runtime.kind == "host" and launch.image.split(":")[0] != "ghcr.io/astral-sh/uv":
            message = f"image {launch.image} is not used: hfuv server runs the command on its host"
        writer = self.logs.writer(record.id)
        writer.write(f"===== Job started at {time.strftime('%Y-%m-%d %H:%M:%S')} =====")
        if attempts_of(record.spec) > 1:
            writer.write(f"===== Attempt 1 of {attempts_of(record.spec)} =====")
        writer.close()
        handle = self.runtime.start(launch)
        self.store.update(record.id, stage="RUNNING", started_at=time.time(), message=message)
        return handle

    def _fail_to_start(self, record: JobRecord, reason: str) -> None:
        writer = self.logs.writer(record.id)
        writer.write(f"===== Job failed to start: {reason} =====")
        writer.close()
        self.store.update(record.id, started_at=time.time())
        self.store.finish(record.id, "ERROR", f"Job failed to start: {reason}", 127)

    def _watch(self, record: JobRecord, handle: Handle) -> None:
        timeout = record.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT
        timer = threading.Timer(timeout, self._time_out, args=(record.id,))
        timer.daemon = True
        timer.start()
        attempts, attempt, unstarted = attempts_of(record.spec), 1, None
        writer = self.logs.writer(record.id)
        try:
            code = _copy_output(handle, writer)
            while code != 0 and attempt < attempts:
                why = f"attempt {attempt} failed with exit code: {code}"
                try:
                    retried = self._retry(record, handle, writer, f"{attempt + 1} of {attempts}",
                                          why)  # fmt: skip
                except RuntimeFailure as exc:
                    unstarted = str(exc)
                    break
                if retried is None:
                    break
                handle, attempt = retried, attempt + 1
                code = _copy_output(handle, writer)
        finally:
            timer.cancel()
            writer.close()
            handle.release()
        with self._cond:
            ending = self._ending.pop(record.id, None)
            self._running.pop(record.id, None)
            self._mounts.pop(record.id, None)
            self._cond.notify_all()
        tries = f" (attempt {attempt} of {attempts})" if attempts > 1 else ""
        if ending == "cancel":
            self.store.finish(record.id, "CANCELED", "Job canceled", code)
        elif ending == "timeout":
            self.store.finish(record.id, "ERROR", f"Job timeout{tries}", code)
        elif ending == "shutdown":
            self.store.finish(record.id, "ERROR", "The server stopped while the job was running",
                              code)  # fmt: skip
        elif unstarted:
            self.store.finish(record.id, "ERROR", f"Job failed to start (attempt {attempt + 1} "
                              f"of {attempts}): {unstarted}", code)  # fmt: skip
        elif code == 0:
            self.store.finish(record.id, "COMPLETED", None, 0)
        else:
            self.store.finish(record.id, "ERROR", f"Job failed with exit code: {code}{tries}",
                              code)  # fmt: skip

    def _retry(self, record: JobRecord, ended: Handle, writer: LogWriter, attempt: str,
               why: str) -> Handle | None:  # fmt: skip
        """The failed job again, in the slot it holds and from a fresh work dir (None when it is
        being canceled, timed out or shut down); its log says which attempt follows and why."""
        with self._cond:
            if self._stopped or record.id in self._ending:
                return None
            current = self.store.get(record.id)
            launch = self.launch_of(record)
            started = (current and current.started_at) or time.time()
            left = int(started + launch.timeout_seconds - time.time())
            if left <= 0:  # the job's timeout covers all its attempts
                return None
            ended.release()
            writer.write(f"===== Attempt {attempt} ({why}) =====")
            launch = dataclasses.replace(launch, timeout_seconds=left)  # the runtime's own timer
            shutil.rmtree(launch.workdir, ignore_errors=True)
            try:
                handle = self.runtime.start(launch)
            except Exception as exc:  # the job ends with the reason, as when it cannot start
                reason = str(exc) if isinstance(exc, RuntimeFailure) else repr(exc)
                writer.write(f"===== Job failed to start: {reason} =====")
                raise RuntimeFailure(reason) from None
            self._running[record.id] = handle
        self.store.update(record.id, message=f"Attempt {attempt} ({why})")
        return handle

    def _time_out(self, job_id: str) -> None:
        with self._cond:
            self._ending.setdefault(job_id, "timeout")
            handle = self._running.get(job_id)
        if handle is not None:
            handle.terminate()
