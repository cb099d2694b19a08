"""The `ray` runtime: each job is a Ray job on a Ray cluster, through the Ray Jobs REST API of
the cluster head's dashboard (`POST /api/jobs/`, its status, logs and stop); no `ray` import.

- The Ray job's submission id is the job's id (`ID-attempt-N` for the retries of `attempts`),
  so a submit sent twice (after an answer lost on the way, or by a server restarted while it
  started the job) finds the Ray job made the first time instead of making a second one.
- The entrypoint is the job's argv, each argument quoted for the shell Ray runs it with
  (`shlex.join`), under `timeout`, so that the job's timeout holds while no server runs, in a
  work dir of its own on the node that goes when the job ends or is stopped.
- The job's env (its secrets too) is the Ray job's `runtime_env.env_vars`: whoever can call the
  dashboard's API can read them (the README says more).
- The flavor's CPUs, memory and GPUs are the entrypoint's reservation: Ray starts the job on a
  node where they are free, and until then the job is SCHEDULING.
- The job's image is not used (Ray's `image_uri` runs a job in an image only when the image
  holds Ray itself, of the cluster's version, which uv's images do not); the job's status
  message says so, as on the host runtime.
- Logs: Ray gives a job's whole log at each request; the handle keeps how much of it it has
  given, so nothing is repeated or lost across reconnects, and it resumes after `seen_lines`
  when a new server re-attaches. Ray's own lines (its runtime env setup, the line that names
  the entrypoint) are not the job's output and are left out.
- A head that does not answer: the job stays, its message says since when; once the head
  answers again the job goes on, or, when the head restarted and lost it (Ray keeps no jobs
  across a head restart without GCS fault tolerance), ends as ERROR saying so.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import shlex
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from hfuv.runtime import (
    KILL_GRACE_SECONDS,
    MAX_LINE_BYTES,
    Capacity,
    Handle,
    Launch,
    Runtime,
    RuntimeFailure,
    lines_of,
)

ADDRESS_VARIABLE = "HFUV_RAY_ADDRESS"
TOKEN_VARIABLE = "RAY_AUTH_TOKEN"  # a cluster with token authentication (RAY_AUTH_MODE=token)
TERMINAL = frozenset(("SUCCEEDED", "FAILED", "STOPPED"))
ATTEMPT = "-attempt-"
RESERVED = "hfuv_reserved"  # metadata: what the entrypoint reserves (Ray's details omit it)
REQUEST_SECONDS = 30.0
START_RETRY_SECONDS = 15.0  # how long start() waits for a head that does not answer
STOP_RETRY_SECONDS = 30.0  # how long a stop is retried, and then the job given up
POLL_SECONDS = 0.5
MAX_POLL_SECONDS = 2.0
BIG_LOG_BYTES = 16 * 1024**2  # a log of this size waits one more second between reads
NODES_CACHE_SECONDS = 5.0
# Ray's own log records in a job's log: `2026-01-02 03:04:05,678<TAB>INFO job_manager.py:581 -- `
RAY_RECORD = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t(?:DEBUG|INFO|WARNING|ERROR|CRITICAL) \S+:\d+ -- "
)


class RayUnreachable(RuntimeFailure):
    """The head's dashboard did not answer (or answered with a server error)."""


def submission_id(job_id: str, attempt: int = 1) -> str:
    return job_id if attempt <= 1 else f"{job_id}{ATTEMPT}{attempt}"


def entrypoint(argv: list[str], timeout_seconds: int) -> str:
    """The shell command Ray runs: the job's argv, quoted, under `timeout` (the server's own
    timer plus its grace, as the host runtime's watchdog), in a work dir that goes with it
    (when it ends, and when Ray stops it: SIGTERM; not on a SIGKILL)."""
    grace = math.ceil(KILL_GRACE_SECONDS)
    limit = timeout_seconds + grace + 1
    return (
        'w=$(mktemp -d "${TMPDIR:-/tmp}/hfuv-job-XXXXXX") || exit 1; '
        """trap 'rm -rf "$w"' EXIT; trap 'exit 143' TERM; """
        f"HFUV_WORKDIR=$w timeout -k {grace} {limit} {shlex.join(argv)}"
    )


def entrypoint_marker(submission: str, command: str) -> str:
    """The line Ray writes into a job's log as it starts its entrypoint."""
    return f"Running entrypoint for job {submission}: {command}\n"


def submit_body(launch: Launch) -> dict[str, Any]:
    """POST /api/jobs/'s body for this launch."""
    argv, env = list(launch.argv), dict(launch.env)
    if env.pop("HFUV_INTERPRETER", None) and argv:  # an image's own Python: not on a node
        argv[0] = "python3"
    body: dict[str, Any] = {
        "submission_id": submission_id(launch.job_id, launch.attempt),
        "entrypoint": entrypoint(argv, launch.timeout_seconds),
        "runtime_env": {"env_vars": env},
        "metadata": {"hfuv_job": launch.job_id, "hfuv_attempt": str(launch.attempt),
                     RESERVED: shape(launch.cpus or 0, launch.memory_bytes or 0,
                                     launch.gpu_count)},
    }  # fmt: skip
    if launch.cpus:
        body["entrypoint_num_cpus"] = launch.cpus
    if launch.memory_bytes:
        body["entrypoint_memory"] = int(launch.memory_bytes)
    if launch.gpu_count:
        body["entrypoint_num_gpus"] = launch.gpu_count
    return body


def _gib(size: float) -> str:
    return f"{size / 1024**3:.1f}".removesuffix(".0") + " GiB"


def shape(cpus: float, memory: float, gpus: float) -> str:
    text = f"{cpus:g} CPUs, {_gib(memory)} memory"
    return text + (f", {gpus:g} GPU{'s' * (gpus != 1)}" if gpus else "")


def last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no reason given"


def clock(moment: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(moment))


class RayRuntime(Runtime):
    kind = "ray"
    unit = "Ray job"

    def __init__(self, address: str | None, token: str | None = None) -> None:
        self.address = (address or "").rstrip("/")
        self.token = token
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()
        self._nodes: tuple[float, list[dict[str, Any]]] | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> RayRuntime:
        return cls(environ.get(ADDRESS_VARIABLE), environ.get(TOKEN_VARIABLE) or None)

    @property
    def client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                headers = {"authorization": f"Bearer {self.token}"} if self.token else {}
                self._client = httpx.Client(base_url=self.address, headers=headers,
                                            timeout=REQUEST_SECONDS)  # fmt: skip
            return self._client

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The head's answer; RayUnreachable when there is none, or a server error."""
        if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", self.address):
            raise RuntimeFailure(
                f"no Ray cluster to run jobs on: --ray-address {self.address or '(none)'} is not "
                "the head's dashboard URL, e.g. http://HEAD:8265"
            )
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RayUnreachable(f"the Ray head at {self.address} does not answer "
                                 f"({type(exc).__name__}: {exc})") from None  # fmt: skip
        if response.status_code in (401, 403):
            raise RuntimeFailure(
                f"the Ray head at {self.address} refused hfuv server's request "
                f"({response.status_code}); give its token in {TOKEN_VARIABLE}"
            )
        if response.status_code >= 500 and "already exists" not in response.text:
            reason = f"{response.status_code}: {last_line(response.text)}"
            raise RayUnreachable(f"the Ray head at {self.address} failed to answer ({reason})")
        return response

    def job_info(self, submission: str) -> dict[str, Any] | None:
        """The Ray job's details; None when the cluster does not know it."""
        response = self.request("GET", f"/api/jobs/{submission}")
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise RuntimeFailure(f"Ray: {last_line(response.text)}")
        return response.json()

    def job_logs(self, submission: str) -> str | None:
        """The Ray job's whole log so far; None when Ray cannot give it now."""
        try:
            response = self.request("GET", f"/api/jobs/{submission}/logs")
            return response.json()["logs"] if response.status_code == 200 else None
        except (RuntimeFailure, ValueError, KeyError, TypeError):
            return None

    def stop(self, submission: str) -> None:
        self.request("POST", f"/api/jobs/{submission}/stop")

    def describe(self) -> str:
        try:
            version = self.request("GET", "/api/version").json()["ray_version"]
        except (ValueError, KeyError, TypeError):
            raise RuntimeFailure(f"{self.address} is not a Ray dashboard (GET /api/version "
                                 "gave no ray_version)") from None  # fmt: skip
        return (f"ray {version}, the cluster at {self.address} (jobs run on its nodes; images "
                "are not used)")  # fmt: skip

    def nodes(self) -> list[dict[str, Any]]:
        """The cluster's live nodes, each with its `resources_total` (the state API)."""
        now = time.monotonic()
        if self._nodes is not None and now - self._nodes[0] < NODES_CACHE_SECONDS:
            return self._nodes[1]
        response = self.request("GET", "/api/v0/nodes", params={"limit": 10000})
        try:
            rows = response.json()["data"]["result"]["result"]
        except (ValueError, KeyError, TypeError):
            raise RuntimeFailure(f"Ray: the node list could not be read "
                                 f"({last_line(response.text)})") from None  # fmt: skip
        alive = [row for row in rows if row.get("state") == "ALIVE"]
        self._nodes = (now, alive)
        return alive

    def capacity(self) -> Capacity:
        """What the cluster's live nodes have in all."""
        try:
            nodes = self.nodes()
        except RuntimeFailure:
            return Capacity(cpus=0.0, memory_bytes=0)
        totals = [node.get("resources_total") or {} for node in nodes]
        cpus = sum(float(total.get("CPU", 0)) for total in totals)
        memory = sum(float(total.get("memory", 0)) for total in totals)
        return Capacity(cpus=cpus, memory_bytes=int(memory))

    @property
    def places_jobs(self) -> bool:
        return True

    def fit_problem(self, flavor: str, cpus: float, memory_bytes: int, gpus: int) -> str | None:
        """Why no live node of the cluster could ever hold a job of `flavor` (an entrypoint
        runs on one node), or None; None too when the head does not answer (the job waits)."""
        try:
            nodes = self.nodes()
        except RuntimeFailure:
            return None
        shapes = []
        for node in nodes:
            total = node.get("resources_total") or {}
            have = (float(total.get("CPU", 0)), float(total.get("memory", 0)),
                    float(total.get("GPU", 0)))  # fmt: skip
            if have[0] >= cpus and have[1] >= memory_bytes and have[2] >= gpus:
                return None
            shapes.append(have)
        wanted = shape(cpus, memory_bytes, gpus)
        if not shapes:
            return f"flavor {flavor} needs {wanted}; the Ray cluster at {self.address} has no node"
        largest = "; ".join(shape(*have) for have in sorted(set(shapes), reverse=True)[:3])
        return (f"flavor {flavor} needs {wanted} on one node; no node of the Ray cluster at "
                f"{self.address} has that (its largest: {largest}); choose a smaller flavor, "
                "or add a node that fits")  # fmt: skip

    def start(self, launch: Launch) -> Handle:
        body = submit_body(launch)
        submission = body["submission_id"]
        deadline = time.monotonic() + START_RETRY_SECONDS
        while True:
            try:
                if self.job_info(submission) is None:  # else: submitted before, by us
                    self._submit(body)
                return RayHandle(self, submission)
            except RayUnreachable:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(1.0)

    def _submit(self, body: dict[str, Any]) -> None:
        response = self.request("POST", "/api/jobs/", json=body)
        if response.status_code == 200 or "already exists" in response.text:
            return  # an earlier try of this submit reached Ray: that Ray job is the job
        raise RuntimeFailure(f"Ray refused the job: {last_line(response.text)}")

    def reattach(self, reference: str, seen_lines: int) -> Handle | None:
        with contextlib.suppress(RayUnreachable):  # the handle waits for the head itself
            if self.job_info(reference) is None:
                return None
        return RayHandle(self, reference, skip_lines=seen_lines)

    def end_orphan(self, reference: str) -> None:
        with contextlib.suppress(RuntimeFailure):
            self.stop(reference)

    @property
    def restartable(self) -> bool:
        return True


class LogStream:
    """A Ray job's output, from the whole log Ray gives at each request: what is new since the
    last, in lines (see MAX_LINE_BYTES), the first `skip` of them dropped. The job's output is
    what follows Ray's line naming the entrypoint, and any line of it written before that one
    (Ray writes it as the entrypoint starts) that is not one of Ray's own records."""

    def __init__(self, marker: str, skip: int = 0) -> None:
        self.marker = marker
        self.skip = skip
        self.body_at: int | None = None  # where the output after the marker starts in the log
        self.early = b""
        self.given = 0  # bytes of the output given so far

    def feed(self, log: str, final: bool) -> Iterator[bytes]:
        if self.body_at is None:
            at = log.find(self.marker)
            if at < 0 and not final:
                return
            before = log if at < 0 else log[:at]  # final with no marker: it never started
            kept = [line for line in before.splitlines(True) if not RAY_RECORD.match(line)]
            self.early = "".join(kept).encode("utf-8", "surrogateescape") if at >= 0 else b""
            self.body_at = len(log) if at < 0 else at + len(self.marker)
        data = self.early + log[self.body_at :].encode("utf-8", "surrogateescape")
        for piece in lines_of(io.BytesIO(data[self.given :])):
            if not final and not piece.endswith(b"\n") and len(piece) < MAX_LINE_BYTES:
                return  # the rest of this line has not been written yet
            self.given += len(piece)
            if self.skip:
                self.skip -= 1
                continue
            yield piece


class RayHandle(Handle):
    def __init__(self, runtime: RayRuntime, submission: str, skip_lines: int = 0) -> None:
        self.runtime = runtime
        self.submission = submission
        self.job_id = submission.partition(ATTEMPT)[0]
        self.skip_lines = skip_lines
        self._stage: str | None = None  # as last reported
        self._unreachable_since: float | None = None
        self._final: dict[str, Any] | None = None
        self._lost: str | None = None
        self._code: int | None = None
        self._stopping = False
        self._give_up_at: float | None = None  # stopped, with a head that does not answer

    @property
    def reference(self) -> str:
        return self.submission

    def waiting(self) -> str | None:
        with contextlib.suppress(RuntimeFailure):
            info = self.runtime.job_info(self.submission)
            if info is not None and info.get("status") == "PENDING":
                self._stage = "SCHEDULING"
                return pending_message(info)
        self._stage = "RUNNING"
        return None

    def _report(self, stage: str | None, message: str | None) -> None:
        if self.on_status is not None:
            self.on_status(stage, message)

    def _poll(self) -> dict[str, Any] | None:
        """The Ray job's details, with its stage reported as it changes; None while the head
        does not answer (said once), or once the job has ended (then `_code` is set)."""
        now = time.time()
        try:
            info = self.runtime.job_info(self.submission)
        except RuntimeFailure as exc:
            if self._give_up_at is not None and time.monotonic() >= self._give_up_at:
                self._end(137, None)  # stopped by hfuv; the head never answered since
                return None
            if self._unreachable_since is None:
                self._unreachable_since = now
                self._report(self._stage,
                             f"{exc} since {clock(now)}; the job's state on the cluster is "
                             "unknown until it answers (its log goes on from where it "
                             "stopped)")  # fmt: skip
            return None
        if info is None:  # the cluster does not know it (any more)
            why = "it was deleted there, or its head restarted"
            if self._unreachable_since is not None:
                why = (f"its head did not answer from {clock(self._unreachable_since)} on, then "
                       "answered without it")  # fmt: skip
            self._end(1, f"the Ray cluster at {self.runtime.address} no longer knows the Ray job "
                      f"{self.submission} ({why}: a restarted head keeps no jobs unless Ray's "
                      "GCS fault tolerance is set up); what happened to the job after its last "
                      "logged line is unknown")  # fmt: skip
            return None
        status = info.get("status")
        stage = "SCHEDULING" if status == "PENDING" else "RUNNING"
        if stage != self._stage or self._unreachable_since is not None:
            self._stage, self._unreachable_since = stage, None
            self._report(stage, pending_message(info) if stage == "SCHEDULING" else None)
        if status in TERMINAL:
            self._final = info
        return info

    def _end(self, code: int, lost: str | None) -> None:
        if self._code is None:
            self._code, self._lost = code, lost

    def _finish(self, info: dict[str, Any]) -> None:
        status, code = info.get("status"), info.get("driver_exit_code")
        if status == "SUCCEEDED":
            self._end(0, None)
        elif isinstance(code, int):
            self._end(128 - code if code < 0 else code, None)
        elif status == "STOPPED":
            self._end(143, None if self._stopping else
                      "the Ray job was stopped on the cluster (ray job stop, or the dashboard), "
                      "not through hfuv")  # fmt: skip
        else:
            self._end(1, f"Ray: {last_line(info.get('message') or '')}")

    def output(self) -> Iterator[bytes]:
        stream: LogStream | None = None
        idle = 0
        while self._code is None:
            info = self._poll()
            if info is None:
                if self._code is None:
                    time.sleep(MAX_POLL_SECONDS)
                continue
            if info.get("status") == "PENDING":
                time.sleep(MAX_POLL_SECONDS)
                continue
            final = info.get("status") in TERMINAL
            log = self.runtime.job_logs(self.submission)
            if log is not None:
                if stream is None:
                    marker = entrypoint_marker(self.submission, info.get("entrypoint", ""))
                    stream = LogStream(marker, self.skip_lines)
                before = stream.given
                yield from stream.feed(log, final)
                idle = 0 if stream.given != before else idle + 1
            if final:
                self._finish(info)  # a log Ray cannot give any more ends with what it gave
                return
            # Ray reads the whole log at each request: a big one is read less often.
            size = len(log) if log is not None else 0
            time.sleep(min(MAX_POLL_SECONDS, POLL_SECONDS * 1.5**idle) + size / BIG_LOG_BYTES)

    def wait(self) -> int:
        while self._code is None:
            info = self._poll()
            if info is not None and info.get("status") in TERMINAL:
                self._finish(info)
            elif self._code is None:
                time.sleep(POLL_SECONDS)
        return self._code

    def lost(self) -> str | None:
        return self._lost

    def finished_at(self) -> float | None:
        end = (self._final or {}).get("end_time")
        return end / 1000 if isinstance(end, (int, float)) and end else None

    def terminate(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """Ray's stop: SIGTERM, then SIGKILL after its RAY_JOB_STOP_WAIT_TIME_S (3 s by
        default; `grace` is the cluster's to set). Retried while the head does not answer; the
        job is given up STOP_RETRY_SECONDS on."""
        self._stopping = True
        self._give_up_at = time.monotonic() + max(grace, STOP_RETRY_SECONDS)
        threading.Thread(target=self._stop, daemon=True, name=f"stop-{self.submission}").start()

    def _stop(self) -> None:
        assert self._give_up_at is not None
        while time.monotonic() < self._give_up_at:
            try:
                self.runtime.stop(self.submission)
                return
            except RayUnreachable:
                time.sleep(1.0)
            except RuntimeFailure:
                return

    def kill(self) -> None:
        self.terminate(0)

    def address(self, port: int) -> tuple[str, int] | None:
        return None  # hfuv server refuses `expose` on this runtime


def pending_message(info: dict[str, Any]) -> str:
    wanted = (info.get("metadata") or {}).get(RESERVED) or "its resources"
    return f"Waiting for the Ray cluster to start it on a node with {wanted} free (Ray: PENDING)"
