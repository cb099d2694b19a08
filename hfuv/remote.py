"""Following jobs that run elsewhere: their logs on stdout, their end as an exit code."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from hfuv.client import (
    SUBMISSION_GROUP_LABEL,
    SUBMISSION_LABEL,
    TERMINAL_STAGES,
    JobsClient,
    exit_code_of,
)
from hfuv.errors import UsageError

JOB_STARTED = "===== Job started"
QUIET_SECONDS = 2.0  # a wait shorter than this shows no progress


class Progress:
    """One status line on stderr, redrawn in place on a terminal; nothing when piped."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.started = time.monotonic()
        self.shown = False

    def show(self, text: str) -> None:
        if self.live:
            from hfuv.terminal import safe_field

            shown = safe_field(text)  # it holds the server's words (stage, flavor)
            self.stream.write(f"\r\x1b[2K{shown} ({_clock(time.monotonic() - self.started)})")
            self.stream.flush()
            self.shown = True

    def clear(self) -> None:
        if self.shown:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()
            self.shown = False


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def wait_for_end(
    client: JobsClient,
    namespace: str,
    job_id: str,
    *,
    timeout: float | None = None,
    poll: float = 1.0,
    progress: Progress | None = None,
) -> dict[str, Any] | None:
    """The job once it is terminal; None if `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        while True:
            job = client.get_job(namespace, job_id)
            if job["status"]["stage"] in TERMINAL_STAGES:
                return job
            if deadline is not None and time.monotonic() >= deadline:
                return None
            if progress:
                progress.show(f"waiting for {namespace}/{job_id}: {job['status']['stage']}")
            time.sleep(poll)
    finally:
        if progress:
            progress.clear()


def wait_until_started(
    client: JobsClient, namespace: str, job_id: str, *, status: Callable[[str], None]
) -> None:
    """While the job waits for hardware, say so (with the time waited, on a terminal).

    Quiet for the first seconds: most jobs leave SCHEDULING in that time.
    """
    progress = Progress()
    said = False
    try:
        while True:
            job = client.get_job(namespace, job_id)
            if job["status"]["stage"] != "SCHEDULING":
                return
            if time.monotonic() - progress.started >= QUIET_SECONDS:
                waiting = f"waiting for {job.get('flavor')} hardware"
                if job["status"].get("message"):  # what for, e.g. hfuv server's GPUs
                    waiting += f" ({job['status']['message']})"
                if not progress.live and not said:  # once, when piped
                    status(f"job {namespace}/{job_id} is {waiting}")
                    said = True
                progress.show(waiting)
            time.sleep(0.5)
    finally:
        progress.clear()


def print_logs(
    client: JobsClient,
    namespace: str,
    job_id: str,
    *,
    follow: bool,
    tail: int | None = None,
    timestamps: bool = False,
    out: TextIO | None = None,
) -> None:
    """Each log line exactly as the job wrote it (with its timestamp only if asked); on a
    terminal, control sequences other than colours are shown instead of obeyed."""
    out = out or sys.stdout
    live = out.isatty()
    if live:
        from hfuv.terminal import safe_log
    for batch in client.follow_log_batches(namespace, job_id, tail=tail, follow=follow):
        if timestamps:
            text = "".join(f"{e.get('timestamp', '')} {e.get('data', '')}\n" for e in batch
                           if not e.get("data", "").startswith(JOB_STARTED))  # fmt: skip
        else:
            text = "".join(e.get("data", "") + "\n" for e in batch
                           if not e.get("data", "").startswith(JOB_STARTED))  # fmt: skip
        out.write(safe_log(text) if live else text)
        out.flush()


def follow_to_end(
    client: JobsClient,
    namespace: str,
    job_id: str,
    *,
    status: Callable[[str], None],
) -> int:
    """Stream the job's logs, wait for its end, and return the exit code it stands for."""
    wait_until_started(client, namespace, job_id, status=status)
    print_logs(client, namespace, job_id, follow=True)
    job = wait_for_end(client, namespace, job_id)
    assert job is not None
    code = exit_code_of(job)
    stage = job["status"]["stage"]
    message = job["status"].get("message")
    if stage != "COMPLETED":
        status(f"job {namespace}/{job_id} ended {stage}" + (f": {message}" if message else ""))
    return code


def _duration(job: dict[str, Any]) -> str:
    durations = job.get("durations") or {}
    return _clock(durations.get("runningSecs") or durations.get("totalSecs") or 0)


def _track_last_lines(client: JobsClient, namespace: str, job_id: str,
                      last: dict[str, str]) -> None:  # fmt: skip
    try:
        for event in client.follow_logs(namespace, job_id):
            line = event.get("data", "")
            if line and not line.startswith("====="):
                last[job_id] = line
    except Exception:
        return


def follow_sweep(
    client: JobsClient,
    namespace: str,
    sweep_id: str,
    expected: int,
    *,
    live: bool,
    status: Callable[[str], None],
    poll: float = 1.0,
) -> list[dict[str, Any]]:
    """Watch a sweep until every job has ended; return the latest job of each index.

    On a terminal (`live`), one line per job is redrawn in place: index, stage, duration and
    the job's last log line. Otherwise a plain line is printed each time a job changes stage.
    """
    import threading

    from hfuv.display import redraw
    from hfuv.sweep import SWEEP_LABEL, latest_per_index
    from hfuv.terminal import safe_field

    stages: dict[str, str] = {}
    last_lines: dict[str, str] = {}
    drawn = 0
    while True:
        jobs = latest_per_index(client.list_jobs(namespace, labels=(f"{SWEEP_LABEL}={sweep_id}",)))
        for index, job in jobs.items():
            stage = job["status"]["stage"]
            if live and job["id"] not in stages:
                threading.Thread(
                    target=_track_last_lines,
                    args=(client, namespace, job["id"], last_lines),
                    daemon=True,
                ).start()
            if not live and stages.get(job["id"]) != stage:
                status(f"[{index}] {job['id']} {stage}")
            stages[job["id"]] = stage
        if live:
            rows = [
                safe_field(f"[{index}] {job['id']} {job['status']['stage']:<10} "
                           f"{_duration(job):>7}  {last_lines.get(job['id'], '')[:60]}")
                for index, job in jobs.items()
            ]  # fmt: skip
            drawn = redraw(sys.stderr, "\n".join(rows), drawn) if rows else drawn
        done = all(j["status"]["stage"] in TERMINAL_STAGES for j in jobs.values())
        if len(jobs) >= expected and done:
            return list(jobs.values())
        time.sleep(poll)


def sweep_summary(jobs: list[dict[str, Any]]) -> str:
    from hfuv.display import table
    from hfuv.sweep import INDEX_LABEL, values_of

    rows = [
        [
            job["labels"][INDEX_LABEL],
            job["id"],
            job["status"]["stage"],
            str(exit_code_of(job)),
            _duration(job),
            values_of(job),
        ]
        for job in jobs
    ]
    return table(["INDEX", "JOB ID", "STAGE", "EXIT", "TIME", "VALUES"], rows)


def submission_keys(explicit: str | None, count: int) -> tuple[str, list[str]]:
    """(group, one key per job): the user's --submission-key, or a fresh random one."""
    import re
    import secrets

    if explicit is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,90}", explicit):
        raise UsageError(f"invalid --submission-key {explicit!r}",
                         hint="use up to 90 letters, digits, '.', '-' and '_'")  # fmt: skip
    group = explicit or secrets.token_hex(8)
    return group, [group] if count == 1 else [f"{group}-{i}" for i in range(count)]


def keyed(body: dict[str, Any], group: str, key: str) -> dict[str, Any]:
    """The body with its submission key labels, which make retries and re-runs idempotent."""
    labels = {**body.get("labels", {}), SUBMISSION_LABEL: key, SUBMISSION_GROUP_LABEL: group}
    return {**body, "labels": labels}


def existing_submissions(
    client: JobsClient, namespace: str, group: str
) -> dict[str, dict[str, Any]]:
    """Submission key → job, for the jobs already created under `group`."""
    jobs = client.list_jobs(namespace, labels=(f"{SUBMISSION_GROUP_LABEL}={group}",))
    return {job["labels"][SUBMISSION_LABEL]: job for job in jobs}


def sweep_jobs(client: JobsClient, namespace: str, sweep: str) -> dict[int, dict[str, Any]]:
    """The latest job of each index of a sweep; a sweep without jobs is an error."""
    from hfuv.errors import HfuvError
    from hfuv.sweep import SWEEP_LABEL, latest_per_index

    found = latest_per_index(client.list_jobs(namespace, labels=(f"{SWEEP_LABEL}={sweep}",)))
    if not found:
        raise HfuvError(f"no jobs in sweep {sweep} (namespace {namespace})",
                        hint="check the sweep id and --namespace")  # fmt: skip
    return found
