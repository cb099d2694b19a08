"""Following jobs that run elsewhere: their logs on stdout, their end as an exit code."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from hfuv.client import TERMINAL_STAGES, JobsClient, exit_code_of

JOB_STARTED = "===== Job started"


def wait_for_end(
    client: JobsClient,
    namespace: str,
    job_id: str,
    *,
    timeout: float | None = None,
    poll: float = 1.0,
) -> dict[str, Any] | None:
    """The job once it is terminal; None if `timeout` seconds pass first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        job = client.get_job(namespace, job_id)
        if job["status"]["stage"] in TERMINAL_STAGES:
            return job
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(poll)


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
    """Each log line exactly as the job wrote it (with its timestamp only if asked)."""
    out = out or sys.stdout
    for event in client.follow_logs(namespace, job_id, tail=tail, follow=follow):
        line = event.get("data", "")
        if line.startswith(JOB_STARTED):
            continue
        if timestamps:
            out.write(f"{event.get('timestamp', '')} {line}\n")
        else:
            out.write(line + "\n")
        out.flush()


def follow_to_end(
    client: JobsClient,
    namespace: str,
    job_id: str,
    *,
    status: Callable[[str], None],
) -> int:
    """Stream the job's logs, wait for its end, and return the exit code it stands for."""
    print_logs(client, namespace, job_id, follow=True)
    job = wait_for_end(client, namespace, job_id)
    assert job is not None
    code = exit_code_of(job)
    stage = job["status"]["stage"]
    message = job["status"].get("message")
    if stage != "COMPLETED":
        status(f"job {namespace}/{job_id} ended {stage}" + (f": {message}" if message else ""))
    return code
