"""Submitting one job: estimate → cost guard → namespace → create (at most once) → follow.

Shared by `hfuv run`, `hfuv exec` and the replay of a prepared run, so it needs no click.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def status(message: str) -> None:
    if not message.isprintable():  # it may quote a job or the server: shown, not obeyed
        from hfuv.terminal import safe_message

        message = safe_message(message)
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def make_client(endpoint: str | None, token: str | None):
    from hfuv.client import JobsClient

    if token:
        status("warning: --token leaves the token in your shell history; prefer HF_TOKEN")
    return JobsClient(endpoint=endpoint, token=token)


def submit(
    body: Mapping[str, Any],
    *,
    flavor: str,
    max_cost: float | None,
    max_cost_origin: str,
    namespace: str | None,
    endpoint: str | None,
    token: str | None,
    detach: bool,
    submission_key: str | None = None,
) -> int:
    """Create the job; print its id (detach) or follow it. → the exit code for hfuv."""
    from hfuv import costs, remote

    group, (key,) = remote.submission_keys(submission_key, 1)
    with make_client(endpoint, token) as client:
        worst = costs.estimate(client, flavor, body["timeoutSeconds"])
        status(f"estimate: {worst.summary()}")
        costs.guard(worst, max_cost, max_cost_origin)
        namespace = client.namespace(namespace)
        earlier = remote.existing_submissions(client, namespace, group) if submission_key else {}
        if key in earlier:
            job_id = earlier[key]["id"]
            status(f"job {namespace}/{job_id} was already submitted with key {key}")
        else:
            job_id = client.create_job(namespace, remote.keyed(body, group, key))["id"]
            status(f"job {namespace}/{job_id} submitted: {client.job_url(namespace, job_id)}")
        if detach:
            sys.stdout.write(job_id + "\n")
            sys.stdout.flush()
            return 0
        try:
            return remote.follow_to_end(client, namespace, job_id, status=status)
        except KeyboardInterrupt:
            status(
                f"\nstopped following; job {namespace}/{job_id} is still running.\n"
                f"  re-attach: hfuv logs -f {namespace}/{job_id}\n"
                f"  cancel:    hfuv cancel {namespace}/{job_id}"
            )
            return 130
        except BrokenPipeError:  # `hfuv run … | head`: the reader has what it wanted
            from contextlib import suppress

            from hfuv.terminal import stdout_closed

            stdout_closed()
            with suppress(OSError):  # stderr may be the same closed pipe
                status(f"stopped following (stdout was closed); job {namespace}/{job_id} is "
                       f"still running: `hfuv logs -f {namespace}/{job_id}` re-attaches, "
                       f"`hfuv cancel {namespace}/{job_id}` stops it")  # fmt: skip
            return 0
