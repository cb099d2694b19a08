"""Runs the server's jobs through a runtime (`hfuv.runtime`): the queue, the records, the logs.

The executor decides everything about a job (its launch: image, argv, env, limits) and keeps its
record and log; the runtime only starts, watches, stops and re-attaches it. Jobs wait in
SCHEDULING, with a message saying for what, until their GPUs are free and fewer than
`max_parallel` jobs run (the rules: `hfuv.server.capacity`).
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import functools
import json
import shutil
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from hfuv.flavors import CATALOG, DEFAULT_FLAVOR, Flavor
from hfuv.local import UV_IMAGES, job_environment
from hfuv.runtime import (
    MAX_LINE_BYTES,
    Capacity,
    Handle,
    Launch,
    Mount,
    Runtime,
    RuntimeFailure,
    Usage,
    get_runtime,
)
from hfuv.runtime.gpus import GpuPool
from hfuv.runtime.gpus import metrics as gpu_metrics
from hfuv.server import bucket_mounts, capacity, volumes
from hfuv.server.buckets import Buckets
from hfuv.server.isolation import JOB_UID_BASE
from hfuv.server.logs import START, DiskFull, LogBook, LogWriter
from hfuv.server.store import JobRecord, Store

DEFAULT_TIMEOUT = 30 * 60
_HEADER = "===== Job started at"
_ATTEMPT = "===== Attempt "  # then "K of N"
SHUTDOWN_GRACE_SECONDS = 3.0
TIMEOUT_EXIT_CODE = 124  # a timed-out job's, as timeout(1)'s and `hfuv run`'s own exit code
GPU_HOLDS = "gpu-hold"  # store documents: which job holds which GPUs
CUT_MARK = " [line cut: continued on the next line]"


def _copy_output(handle: Handle, writer: LogWriter) -> int:
    """The job's output into its log, until it ends; its exit code. A line over
    MAX_LINE_BYTES is logged in pieces, each but the last ending with CUT_MARK; a character
    the cut splits goes whole into the next piece. DiskFull ends the copy."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    output = handle.output()
    try:
        for raw in output:
            cut = len(raw) == MAX_LINE_BYTES and not raw.endswith(b"\n")
            text = decoder.decode(raw, final=not cut)
            writer.write(text + CUT_MARK if cut else text.rstrip("\r\n"))
    finally:
        if hasattr(output, "close"):
            output.close()  # an engine's `logs -f` ends with it
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
        users_root: Path | None = None,
        gpus: GpuPool | None = None,
        buckets: Buckets | None = None,
    ) -> None:
        self.store = store
        self.buckets = buckets  # bucket volumes are mounted from (and written back to) these
        self.logs = logs
        self.work_root = work_root
        self.max_parallel = max(1, max_parallel)
        self.environ = dict(environ)
        self.runtime = runtime or get_runtime("host", self.environ)
        # Host runtime: each namespace's jobs run as a user of its own, its caches in here.
        self.users_root = users_root if self.runtime.kind == "host" else None
        self.gpus = gpus if gpus is not None else GpuPool([], declared=True)
        self._capacity: Capacity | None = None
        self._queue: deque[str] = deque()
        self._gpus_needed: dict[str, int] = {}  # queued job id → GPUs its flavor needs
        self._waiting_for: dict[str, str] = {}  # queued job id → the message it shows
        self._starting: set[str] = set()
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
        if self.runtime.restartable:
            return  # the jobs go on; the next server re-attaches to them
        for job_id, handle in running:
            self._ending.setdefault(job_id, "shutdown")
            handle.terminate(SHUTDOWN_GRACE_SECONDS)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        with self._cond:
            while (self._running or self._starting) and time.monotonic() < deadline:
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
                                        self.environ, self._bucket_lay_out(record))  # fmt: skip
        except Exception as exc:  # the job ends with the reason, as when it cannot start
            bucket_mounts.discard(self._bucket_root(record.id))
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

    def _bucket_root(self, job_id: str) -> Path:
        return self.work_root.parent / "bucket-mounts" / job_id

    def _bucket_lay_out(self, record: JobRecord):
        if self.buckets is None:
            return None
        buckets, root = self.buckets, self._bucket_root(record.id)
        return lambda index, volume: bucket_mounts.lay_out(buckets, volume, root / str(index))

    def _save_buckets(self, record: JobRecord) -> str | None:
        """What the job wrote to its read-write bucket volumes, into the buckets; why it
        could not be, or None. The laid-out folders are removed either way."""
        root = self._bucket_root(record.id)
        if self.buckets is None or not root.is_dir():
            return None
        try:
            for index, volume in enumerate(record.spec.get("volumes") or []):
                if volume["type"] == "bucket" and not bucket_mounts.read_only(volume):
                    bucket_mounts.write_back(self.buckets, volume, root / str(index))
        except Exception as exc:  # the job's status says so
            return str(exc) if isinstance(exc, RuntimeFailure) else f"{type(exc).__name__}: {exc}"
        finally:
            bucket_mounts.discard(root)
        return None

    def cancel(self, job_id: str) -> None:
        with self._cond:
            if job_id in self._queue or job_id in self._fetching:
                if job_id in self._queue:
                    self._unqueue(job_id)
                self._fetching.discard(job_id)
                self._mounts.pop(job_id, None)
                bucket_mounts.discard(self._bucket_root(job_id))
                self.store.finish(job_id, "CANCELED", "Job canceled", None)
                self._cond.notify_all()  # the jobs behind it may start now
                return
            if job_id in self._starting:  # ended by the dispatcher once it has started
                self._ending.setdefault(job_id, "cancel")
                return
            handle = self._running.get(job_id)
            if handle is None:
                return
            self._ending.setdefault(job_id, "cancel")
        handle.terminate()

    def usage(self, job_id: str) -> Usage:
        """CPU, memory and GPUs the job uses now (zeros when it does not run)."""
        with self._cond:
            handle = self._running.get(job_id)
            gpus = self.gpus.held_by(job_id)
        usage = handle.usage() if handle else Usage()
        if gpus:
            usage.extra["gpus"] = gpu_metrics(gpus)  # exactly the job's own devices
        return usage

    def limits(self, spec: Mapping[str, object]) -> tuple[float, int]:
        """A job's CPU and memory limits: its flavor's, capped at this host's (a runtime that
        places jobs on machines of its own reserves the flavor's whole)."""
        flavor = flavor_of(spec)
        if self.runtime.places_jobs:
            return float(flavor.cpu_cores), int(flavor.ram_gb * 1024**3)
        cpus, memory, _ = capacity.limits(flavor, self.capacity)
        return cpus, memory

    def refusal(self, spec: Mapping[str, object]) -> str | None:
        """Why a job of this spec can never run here (its image, its flavor's GPUs or, on a
        cluster, its flavor's size), or None."""
        image = spec.get("dockerImage")
        if isinstance(image, str) and (problem := self.runtime.image_problem(image)):
            return problem
        flavor = flavor_of(spec)
        if self.runtime.places_jobs:
            cpus, memory = self.limits(spec)
            return self.runtime.fit_problem(flavor.name, cpus, memory, flavor.gpu_count)
        return capacity.refusal(flavor, self.gpus)

    @property
    def capacity(self) -> Capacity:
        if self._capacity is None:
            self._capacity = self.runtime.capacity()
        return self._capacity

    def address(self, job_id: str, port: int) -> tuple[str, int] | None:
        """Where the running job serves `port` (None when it does not run)."""
        with self._cond:
            handle = self._running.get(job_id)
        return handle.address(port) if handle else None

    def _recover(self) -> None:
        """Jobs running when the server stopped are re-attached where their runtime allows it
        (containers, Ray jobs: also those a cluster had not placed yet), else they end as ERROR;
        queued ones are queued again."""
        handed = [r for r in self.store.with_stage("SCHEDULING") if r.runtime_ref]
        for record in [*self.store.with_stage("RUNNING"), *handed]:
            kind, _, reference = (record.runtime_ref or f"host:{record.id}").partition(":")
            runtime = self.runtime if kind == self.runtime.kind else get_runtime(kind, self.environ)
            handle = None
            if runtime.restartable:
                with contextlib.suppress(RuntimeFailure):  # the engine is gone: so is the job
                    seen, attempt = self._resume_point(record.id)
                    handle = runtime.reattach(reference, seen)
            if handle is None:
                runtime.end_orphan(reference)
                message = "The server stopped while the job was running"
                if runtime.restartable:
                    message = (f"The job's {runtime.unit} was gone when the server restarted "
                               f"({kind})")  # fmt: skip
                self.store.finish(record.id, "ERROR", message, None)
                continue
            handle.on_status = functools.partial(self._runtime_status, record.id,
                                                 self._notes(record, runtime))  # fmt: skip
            self._running[record.id] = handle
            threading.Thread(target=self._watch, args=(record, handle, attempt), daemon=True,
                             name=f"job-{record.id}").start()  # fmt: skip
        for record in self.store.with_stage("SCHEDULING"):
            if record.id not in self._running:
                self.submit(record.id)
        for held in self.store.docs(GPU_HOLDS):  # a re-attached job keeps its GPUs
            if held["id"] in self._running:
                self.gpus.hold(held["id"], held["gpus"])
            else:
                self.store.delete_doc(GPU_HOLDS, held["id"])

    def _resume_point(self, job_id: str) -> tuple[int, int]:
        """Where a re-attached job's output resumes: how many lines of its current attempt the
        log has (after the executor's last header or attempt line), and that attempt's number."""
        since, attempt, cursor = 0, 1, START
        while True:
            lines, cursor = self.logs.read(job_id, cursor)
            if not lines:
                return since, attempt
            for line in lines:
                data = json.loads(line).get("data", "")
                if data.startswith(_HEADER):
                    since = 0
                elif (
                    data.startswith(_ATTEMPT)
                    and (number := data[len(_ATTEMPT) :].split()[0]).isdigit()
                ):
                    since, attempt = 0, int(number)
                else:
                    since += 1

    def _dispatch(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and (picked := self._pick()) is None:
                    self._cond.wait()
                if self._stopped:
                    return
                record, gpus = picked
                self._starting.add(record.id)
            # Unlocked: an engine may take a while (a pull); cancel() marks the job meanwhile.
            try:
                handle = self._start(record, gpus)
            except Exception as exc:  # any failure to start ends the job
                with self._cond:
                    self._starting.discard(record.id)
                    self._ending.pop(record.id, None)
                    self._release_gpus(record.id)
                    self._cond.notify_all()
                known = isinstance(exc, (RuntimeFailure, DiskFull))
                reason = str(exc) if known else f"{type(exc).__name__}: {exc}"
                self._fail_to_start(record, reason)
                continue
            with self._cond:
                self._starting.discard(record.id)
                self._running[record.id] = handle
                if self._stopped:
                    self._ending.setdefault(record.id, "shutdown")
                ended_meanwhile = record.id in self._ending  # canceled while it started
            if ended_meanwhile:
                handle.terminate(SHUTDOWN_GRACE_SECONDS)
            threading.Thread(
                target=self._watch, args=(record, handle), daemon=True, name=f"job-{record.id}"
            ).start()

    def _pick(self) -> tuple[JobRecord, tuple[str, ...]] | None:
        """The first queued job that may start now, taken off the queue with its GPUs; every
        job passed over shows what it waits for. Called with the lock held."""
        busy = len(self._running) + len(self._starting)
        free = len(self.gpus.free())
        available, kept_for = free, None  # GPUs not kept for an older waiting job
        for job_id in list(self._queue):
            need = self._gpus_needed.get(job_id)
            if need is None and (need := self._admit(job_id)) is None:
                continue
            if need > available:
                waiting = capacity.gpu_wait(
                    need,
                    self.gpus,
                    kept_for if need <= free else None,
                    visible=lambda other, job=job_id: self._same_namespace(job, other),
                )
                self._show(job_id, waiting)
                kept_for, available = kept_for or job_id, 0
            elif busy >= self.max_parallel:
                self._show(job_id, capacity.slot_wait(busy, self.max_parallel))
            else:
                record = self.store.get(job_id)
                self._unqueue(job_id)
                if record is None or record.terminal:
                    continue
                gpus = self.gpus.take(job_id, need)
                assert gpus is not None  # need <= available <= free
                if gpus:  # kept in the store, for a server that re-attaches the job
                    hold = {"id": job_id, "namespace": record.namespace, "gpus": list(gpus)}
                    self.store.put_doc(GPU_HOLDS, hold)
                return record, gpus
        return None

    def _admit(self, job_id: str) -> int | None:
        """The GPUs a newly queued job needs; None (and off the queue) if it cannot run."""
        record = self.store.get(job_id)
        if record is None or record.terminal:
            self._unqueue(job_id)
            return None
        flavor = flavor_of(record.spec)
        if self.runtime.places_jobs:  # the cluster reserves its GPUs; none from the pool
            self._gpus_needed[job_id] = 0
            return 0
        reason = capacity.refusal(flavor, self.gpus)  # the pool shrank since it was created
        if reason is not None:
            self._unqueue(job_id)
            self.store.finish(job_id, "ERROR", reason, None)
            return None
        self._gpus_needed[job_id] = flavor.gpu_count
        return flavor.gpu_count

    def _release_gpus(self, job_id: str) -> None:
        if self.gpus.held_by(job_id):
            self.gpus.release(job_id)
            self.store.delete_doc(GPU_HOLDS, job_id)

    def _image_unused(self, image: str) -> bool:
        """On the host runtime an image is not used, but uv's (the bootstrap gives uv and the
        job's Python here too)."""
        return self.runtime.kind in ("host", "ray") and not image.startswith(UV_IMAGES)

    def _unused_image_note(self, record: JobRecord) -> str:
        image = str(record.spec.get("dockerImage") or record.spec.get("spaceId") or "")
        if not self._image_unused(image):
            return ""
        where = "on its host" if self.runtime.kind == "host" else "on a node of the Ray cluster"
        return f"; image {image} was not used: hfuv server ran the command {where}"

    def _same_namespace(self, job_id: str, other: str) -> bool:
        mine, theirs = self.store.get(job_id), self.store.get(other)
        return mine is not None and theirs is not None and mine.namespace == theirs.namespace

    def _show(self, job_id: str, message: str) -> None:
        if self._waiting_for.get(job_id) != message:
            self._waiting_for[job_id] = message
            self.store.update(job_id, message=message)

    def _unqueue(self, job_id: str) -> None:
        self._queue.remove(job_id)
        self._gpus_needed.pop(job_id, None)
        self._waiting_for.pop(job_id, None)

    def launch_of(self, record: JobRecord, gpus: tuple[str, ...] = ()) -> Launch:
        """What the runtime gets for this job (`gpus`: those the pool gave it)."""
        spec = record.spec
        flavor = flavor_of(spec)
        user, caches = None, None
        if self.users_root is not None:
            uid = self.store.job_uid(record.namespace, JOB_UID_BASE)
            user, caches = (uid, uid), self.users_root / str(uid)
        cpus, memory = self.limits(spec)
        return Launch(
            job_id=record.id,
            image=str(spec.get("dockerImage") or spec.get("spaceId") or ""),
            argv=(*spec.get("command", []), *spec.get("arguments", [])),
            env=job_environment(spec, flavor, record.id),
            workdir=self.work_root / record.id,
            timeout_seconds=int(spec.get("timeoutSeconds") or DEFAULT_TIMEOUT),
            user=user,
            caches=caches,
            cpus=cpus,
            memory_bytes=memory,
            gpus=gpus,
            ports=tuple((spec.get("expose") or {}).get("ports") or ()),
            mounts=self._mounts.get(record.id, ()),
            gpu_count=flavor.gpu_count if self.runtime.places_jobs else 0,
        )

    def _notes(self, record: JobRecord, runtime: Runtime, gpus: tuple[str, ...] = ()) -> str:
        """The running job's status message: its limits, and what of its spec is not used."""
        flavor = flavor_of(record.spec)
        image = str(record.spec.get("dockerImage") or record.spec.get("spaceId") or "")
        if runtime.places_jobs:
            cpus, memory = self.limits(record.spec)
            notes = [f"reserved on the Ray cluster: {capacity.shape(cpus, memory, flavor)}"]
            if runtime.kind == "ray" and not image.startswith(UV_IMAGES):
                notes.append(f"image {image} is not used: the Ray runtime runs the command on "
                             "a node of the cluster")  # fmt: skip
            return "; ".join(notes)
        notes = [capacity.limits(flavor, self.capacity)[2]]
        if gpus:
            notes[0] += f", GPU{'s' if len(gpus) > 1 else ''} {','.join(gpus)}"
        if runtime.kind == "host":
            notes.append("the host runtime does not enforce CPU and memory limits")
            if not image.startswith(UV_IMAGES):
                notes.append(f"image {image} is not used: hfuv server runs the command "
                             "on its host")  # fmt: skip
        return "; ".join(notes)

    def _runtime_status(self, job_id: str, notes: str, stage: str | None,
                        message: str | None) -> None:  # fmt: skip
        """A runtime's report on a started job: its stage (None: as it is), and a message
        (None: its notes)."""
        if self._stopped:  # a stopping server's store closes; the next one asks again
            return
        fields = {"message": message or notes}
        if stage is not None:
            fields["stage"] = stage
        self.store.update(job_id, **fields)

    def _start(self, record: JobRecord, gpus: tuple[str, ...] = ()) -> Handle:
        launch = self.launch_of(record, gpus)
        self.runtime.prepare(launch, lambda doing: self.store.update(record.id, message=doing))
        notes = self._notes(record, self.runtime, gpus)
        writer = self.logs.writer(record.id)
        try:
            writer.write(f"{_HEADER} {time.strftime('%Y-%m-%d %H:%M:%S')} =====")
            if attempts_of(record.spec) > 1:
                writer.write(f"{_ATTEMPT}1 of {attempts_of(record.spec)} =====")
        finally:
            writer.close()
        started = time.time()  # before the runtime's own timer (podman's --timeout) starts
        handle = self.runtime.start(launch)
        reference = f"{self.runtime.kind}:{handle.reference}"
        waiting = handle.waiting()  # a cluster that has not placed it yet: still SCHEDULING
        self.store.update(record.id, stage="SCHEDULING" if waiting else "RUNNING",
                          started_at=started, message=waiting or notes,
                          runtime_ref=reference)  # fmt: skip
        handle.on_status = functools.partial(self._runtime_status, record.id, notes)
        return handle

    def _fail_to_start(self, record: JobRecord, reason: str) -> None:
        with contextlib.suppress(DiskFull):  # the job's status says why, whatever the disk
            writer = self.logs.writer(record.id)
            try:
                writer.write(f"===== Job failed to start: {reason} =====")
            finally:
                writer.close()
        bucket_mounts.discard(self._bucket_root(record.id))
        self.store.update(record.id, started_at=time.time())
        self.store.finish(record.id, "ERROR", f"Job failed to start: {reason}", 127)

    def _watch(self, record: JobRecord, handle: Handle, attempt: int = 1) -> None:
        timeout = record.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT
        current = self.store.get(record.id)
        deadline = ((current and current.started_at) or time.time()) + timeout
        timer = threading.Timer(max(0.0, deadline - time.time()), self._time_out,
                                args=(record.id,))  # fmt: skip
        timer.daemon = True
        timer.start()
        attempts, unstarted, disk_full = attempts_of(record.spec), None, None
        writer = self.logs.writer(record.id)
        try:
            code = _copy_output(handle, writer)
            while code != 0 and attempt < attempts:
                why = f"attempt {attempt} failed with exit code: {code}"
                try:
                    retried = self._retry(record, handle, writer, attempt + 1, why)
                except RuntimeFailure as exc:
                    unstarted = str(exc)
                    break
                if retried is None:
                    break
                handle, attempt = retried, attempt + 1
                code = _copy_output(handle, writer)
        except DiskFull as exc:  # the job stops: its output would be lost
            disk_full = f"Job stopped: its log could not be written, {exc}"
            handle.kill()
            code = handle.wait()
        finally:
            timer.cancel()
            writer.close()
        if self._stopped and self.runtime.restartable:
            return  # the next server re-attaches and records the end
        ended_at = handle.finished_at() or time.time()  # before the release drops the container
        handle.release()
        with self._cond:
            ending = self._ending.pop(record.id, None)
            self._running.pop(record.id, None)
            self._release_gpus(record.id)
            self._mounts.pop(record.id, None)
            self._cond.notify_all()
        if ending is None and code != 0 and ended_at >= deadline:
            ending = "timeout"  # the runtime's own timer (e.g. while no server ran) ended it
        tries = f" (attempt {attempt} of {attempts})" if attempts > 1 else ""
        finish = functools.partial(self.store.finish, record.id, at=ended_at)
        unsaved = self._save_buckets(record)  # before the stage says the job has ended
        if unsaved:
            finish = functools.partial(self._finish_unsaved, finish, unsaved)
        if disk_full:
            finish("ERROR", disk_full, code)
        elif ending == "cancel":
            finish("CANCELED", "Job canceled", code)
        elif ending == "timeout":  # whichever timer (ours, the engine's) and signal ended it
            finish("ERROR", f"Job timeout{tries}", TIMEOUT_EXIT_CODE)
        elif ending == "shutdown":
            finish("ERROR", "The server stopped while the job was running", code)
        elif unstarted:
            finish("ERROR", f"Job failed to start (attempt {attempt + 1} of {attempts}): "
                   f"{unstarted}", code)  # fmt: skip
        elif (lost := handle.lost()) is not None:  # no exit code of the job's own
            finish("ERROR", f"Job lost{tries}: {lost}", None)
        elif code == 0:
            finish("COMPLETED", None, 0)
        else:
            unused = self._unused_image_note(record)  # the likely why, on the host runtime
            finish("ERROR", f"Job failed with exit code: {code}{tries}{unused}", code)

    @staticmethod
    def _finish_unsaved(finish, unsaved: str, stage: str, message: str | None,
                        code: int | None) -> None:  # fmt: skip
        """A job whose bucket outputs could not be saved ends as ERROR, saying why."""
        note = f"its bucket volume could not be saved: {unsaved}"
        if stage == "COMPLETED":
            finish("ERROR", f"Job completed, but {note}", code)
        else:
            finish(stage, f"{message or stage}; {note}", code)

    def _retry(self, record: JobRecord, ended: Handle, writer: LogWriter, number: int,
               why: str) -> Handle | None:  # fmt: skip
        """The failed job again, in the slot it holds and from a fresh work dir (None when it is
        being canceled, timed out or shut down); its log says which attempt follows and why."""
        with self._cond:
            if self._stopped or record.id in self._ending:
                return None
            current = self.store.get(record.id)
            launch = self.launch_of(record, self.gpus.held_by(record.id))  # the same GPUs
            started = (current and current.started_at) or time.time()
            left = int(started + launch.timeout_seconds - time.time())
            if left <= 0:  # the job's timeout covers all its attempts
                return None
            ended.release()
            attempt = f"{number} of {attempts_of(record.spec)}"
            writer.write(f"{_ATTEMPT}{attempt} ({why}) =====")
            # The runtime's own timer gets what is left; a cluster, a Ray job of its own.
            launch = dataclasses.replace(launch, timeout_seconds=left, attempt=number)
            shutil.rmtree(launch.workdir, ignore_errors=True)
            try:
                handle = self.runtime.start(launch)
            except Exception as exc:  # the job ends with the reason, as when it cannot start
                reason = str(exc) if isinstance(exc, RuntimeFailure) else repr(exc)
                writer.write(f"===== Job failed to start: {reason} =====")
                raise RuntimeFailure(reason) from None
            self._running[record.id] = handle
        self.store.update(record.id, message=f"Attempt {attempt} ({why})",
                          runtime_ref=f"{self.runtime.kind}:{handle.reference}")  # fmt: skip
        handle.on_status = functools.partial(self._runtime_status, record.id,
                                             f"Attempt {attempt} ({why})")  # fmt: skip
        return handle

    def _time_out(self, job_id: str) -> None:
        with self._cond:
            self._ending.setdefault(job_id, "timeout")
            handle = self._running.get(job_id)
        if handle is not None:
            handle.terminate()
