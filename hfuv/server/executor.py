"""Runs the server's jobs on this machine, through the same preparation as `hfuv run --local`.

One process group per job (so cancel and timeout end the whole tree), a work directory per job,
output merged into the job's log line by line, at most `max_parallel` jobs running while the rest
wait in SCHEDULING.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Mapping
from pathlib import Path

from hfuv.flavors import CATALOG, DEFAULT_FLAVOR
from hfuv.local import prepare_body
from hfuv.server.logs import LogBook
from hfuv.server.store import JobRecord, Store

KILL_GRACE_SECONDS = 3.0
DEFAULT_TIMEOUT = 30 * 60
UV_IMAGE_PREFIX = "ghcr.io/astral-sh/uv"


class Executor:
    def __init__(
        self,
        store: Store,
        logs: LogBook,
        work_root: Path,
        *,
        max_parallel: int,
        environ: Mapping[str, str],
    ) -> None:
        self.store = store
        self.logs = logs
        self.work_root = work_root
        self.max_parallel = max(1, max_parallel)
        self.environ = dict(environ)
        self._queue: deque[str] = deque()
        self._running: dict[str, subprocess.Popen[bytes]] = {}
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
        for job_id, process in running:
            self._ending.setdefault(job_id, "shutdown")
            _kill_group(process, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        with self._cond:
            while self._running and time.monotonic() < deadline:
                self._cond.wait(timeout=0.1)
            leftovers = list(self._running.values())
        for process in leftovers:
            _kill_group(process, signal.SIGKILL)

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
            process = self._running.get(job_id)
            if process is None:
                return
            self._ending.setdefault(job_id, "cancel")
        _terminate(process)

    def _recover(self) -> None:
        """Jobs running when the server died end as ERROR; queued ones are queued again."""
        for record in self.store.with_stage("RUNNING"):
            _kill_orphan(record.id)
            self.store.finish(
                record.id, "ERROR", "The server stopped while the job was running", None
            )
        for record in self.store.with_stage("SCHEDULING"):
            self._queue.append(record.id)

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
                    process = self._start(record)
                except Exception as exc:  # any failure to start ends the job
                    self._fail_to_start(record, str(exc))
                    continue
                self._running[job_id] = process
            threading.Thread(
                target=self._watch, args=(record, process), daemon=True, name=f"job-{job_id}"
            ).start()

    def _start(self, record: JobRecord) -> subprocess.Popen[bytes]:
        spec = record.spec
        flavor = CATALOG.get(spec.get("flavor") or DEFAULT_FLAVOR, CATALOG[DEFAULT_FLAVOR])
        workdir = self.work_root / record.id
        workdir.mkdir(parents=True, exist_ok=True)
        run = prepare_body(spec, flavor, environ=self.environ, job_id=record.id, workdir=workdir)
        message = None
        image = spec.get("dockerImage") or spec.get("spaceId") or ""
        if not image.startswith(UV_IMAGE_PREFIX):
            message = f"image {image} is not used: hfuv server runs the command on its host"
        writer = self.logs.writer(record.id)
        writer.write(f"===== Job started at {time.strftime('%Y-%m-%d %H:%M:%S')} =====")
        writer.close()
        process = subprocess.Popen(
            run.argv,
            env=run.env,
            cwd=workdir,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.store.update(
            record.id, stage="RUNNING", started_at=time.time(), pid=process.pid, message=message
        )
        return process

    def _fail_to_start(self, record: JobRecord, reason: str) -> None:
        writer = self.logs.writer(record.id)
        writer.write(f"===== Job failed to start: {reason} =====")
        writer.close()
        self.store.update(record.id, started_at=time.time())
        self.store.finish(record.id, "ERROR", f"Job failed to start: {reason}", 127)

    def _watch(self, record: JobRecord, process: subprocess.Popen[bytes]) -> None:
        timeout = record.spec.get("timeoutSeconds") or DEFAULT_TIMEOUT
        timer = threading.Timer(timeout, self._time_out, args=(record.id, process))
        timer.daemon = True
        timer.start()
        writer = self.logs.writer(record.id)
        try:
            assert process.stdout is not None
            for raw in process.stdout:
                writer.write(raw.decode("utf-8", errors="replace").rstrip("\r\n"))
            code = process.wait()
        finally:
            timer.cancel()
            writer.close()
            # Whatever the job left behind in its process group goes with it.
            _kill_group(process, signal.SIGKILL)
        code = 128 - code if code < 0 else code
        with self._cond:
            ending = self._ending.pop(record.id, None)
            self._running.pop(record.id, None)
            self._cond.notify_all()
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

    def _time_out(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        with self._cond:
            self._ending.setdefault(job_id, "timeout")
        _terminate(process)


def _terminate(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the job's process group, SIGKILL after a grace period."""
    _kill_group(process, signal.SIGTERM)

    def finish() -> None:
        try:
            process.wait(timeout=KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            _kill_group(process, signal.SIGKILL)

    threading.Thread(target=finish, daemon=True).start()


def _kill_group(process: subprocess.Popen[bytes], signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _kill_orphan(job_id: str) -> None:
    """Kill what a dead server's job left running: every process carrying its JOB_ID (Linux)."""
    marker = f"JOB_ID={job_id}".encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ValueError):
            continue
