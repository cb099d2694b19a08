"""Jobs that exist: `ps`, `logs`, `inspect`, `outputs`, `cancel`, `wait`, `stats`, `sweep`,
`hardware`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from hfuv.cli import (
    api_options,
    cli,
    job_ref,
    namespace_option,
)
from hfuv.submission import make_client, status


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@api_options
def hardware(as_json: bool, endpoint: str | None, token: str | None) -> None:
    """List the hardware flavors with their specs and price per hour."""
    from contextlib import suppress

    from hfuv.client import JobsClient
    from hfuv.costs import remember_hardware
    from hfuv.display import catalog_as_api, hardware_table
    from hfuv.errors import HfuvError, UsageError
    from hfuv.flavors import CATALOG

    try:
        with JobsClient(endpoint=endpoint, token=token) as client:
            items = client.hardware(patient=False)
        with suppress(KeyError, TypeError, ValueError):  # teaches hfuv flavors newer than it
            remember_hardware(client.endpoint, items)
    except UsageError:  # a bad --endpoint or setting is the user's to fix, not a fallback's
        raise
    except HfuvError as exc:
        status(f"note: using the built-in catalog ({exc.message})")
        items = catalog_as_api(list(CATALOG.values()))
    if as_json:
        click.echo(json.dumps(items, indent=2))
    else:
        click.echo(hardware_table(items))


@cli.command()
@click.option("-a", "--all", "show_all", is_flag=True, help="All jobs, not only running ones.")
@click.option("-l", "--label", "labels", multiple=True, metavar="K[=V]", help="Filter by label.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array of jobs.")
@click.option("--sweep", metavar="ID", help="Only the jobs of this sweep (all stages).")
@namespace_option
@api_options
def ps(show_all: bool, labels: tuple[str, ...], as_json: bool, sweep: str | None,
       namespace: str | None, endpoint: str | None, token: str | None) -> None:  # fmt: skip
    """List jobs (running and scheduling ones unless -a)."""
    from hfuv.display import jobs_table
    from hfuv.sweep import SWEEP_LABEL

    if sweep:
        labels, show_all = (*labels, f"{SWEEP_LABEL}={sweep}"), True
    stages = () if show_all else ("RUNNING", "SCHEDULING")
    with make_client(endpoint, token) as client:
        jobs = client.list_jobs(client.namespace(namespace), stages=stages, labels=labels)
    if as_json:
        from hfuv.redact import shown

        click.echo(json.dumps([shown(job) for job in jobs], indent=2))
    elif jobs:
        click.echo(jobs_table(jobs))
    else:
        status("no jobs" if show_all else "no running jobs (hfuv ps -a shows all)")


@cli.command()
@click.argument("job", required=False)
@click.option("-f", "--follow", is_flag=True, help="Keep following until the job ends.")
@click.option("-n", "--tail", type=click.IntRange(min=0), help="Only the last N lines.")
@click.option("-t", "--timestamps", is_flag=True, help="Prefix each line with its timestamp.")
@click.option("--sweep", metavar="ID", help="With --index: a job of this sweep.")
@click.option("--index", type=click.IntRange(min=0), help="The index of the job in --sweep.")
@namespace_option
@api_options
def logs(job: str | None, follow: bool, tail: int | None, timestamps: bool, sweep: str | None,
         index: int | None, namespace: str | None, endpoint: str | None,
         token: str | None) -> None:  # fmt: skip
    """Print a job's log so far (-f: until it ends), each line as the job wrote it.

    On a terminal, control sequences other than colours are shown as text, not obeyed."""
    from hfuv.errors import UsageError
    from hfuv.remote import print_logs

    if (job is None) == (sweep is None) or (sweep is None) != (index is None):
        raise UsageError("give a JOB, or --sweep ID --index K")
    from hfuv import remote

    with make_client(endpoint, token) as client:
        if sweep is not None:
            ns = client.namespace(namespace)
            members = remote.sweep_jobs(client, ns, sweep)
            if index not in members:
                raise UsageError(f"sweep {sweep} has no job {index} (it has {len(members)})")
            job_id = members[index]["id"]
        else:
            ns, job_id = job_ref(client, job, namespace)
        try:
            print_logs(client, ns, job_id, follow=follow, tail=tail, timestamps=timestamps)
        except KeyboardInterrupt:
            sys.exit(130)


@cli.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the job object as JSON.")
@namespace_option
@api_options
def inspect(job: str, as_json: bool, namespace: str | None, endpoint: str | None,
            token: str | None) -> None:  # fmt: skip
    """Show one job."""
    from hfuv.display import job_summary
    from hfuv.redact import shown

    with make_client(endpoint, token) as client:
        ns, job_id = job_ref(client, job, namespace)
        info = shown(client.get_job(ns, job_id))
        click.echo(json.dumps(info, indent=2) if as_json else
                   job_summary(info, client.job_url(ns, job_id)))  # fmt: skip


@cli.command()
@click.argument("job")
@click.argument("dest", required=False, type=click.Path(file_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace files here that differ.")
@namespace_option
@api_options
def outputs(job: str, dest: str | None, overwrite: bool, namespace: str | None,
            endpoint: str | None, token: str | None) -> None:  # fmt: skip
    """Download what JOB left in the buckets it mounted read-write into DEST (default: a
    folder named by the job's id), laid out as the job saw them: /out/a.txt → DEST/out/a.txt.
    Prints each file written."""
    from pathlib import Path

    from hfuv.client import TERMINAL_STAGES
    from hfuv.outputs import download, planned

    with make_client(endpoint, token) as client:
        ns, job_id = job_ref(client, job, namespace)
        info = client.get_job(ns, job_id)
        stage = (info.get("status") or {}).get("stage")
        if stage not in TERMINAL_STAGES:
            status(f"hfuv: job {ns}/{job_id} is {stage}: its buckets hold what it has "
                   "written back so far (hfuv server writes back when a job ends)")  # fmt: skip
        target = Path(dest or job_id)
        files = planned(client, info, target)
        counts = {"written": 0, "unchanged": 0}

        def done(output: Any, how: str) -> None:
            counts[how] += 1
            if how == "written":
                click.echo(str(output.target))

        download(client, files, overwrite=overwrite, done=done)
    size = sum(f.size for f in files) / 2**20
    status(f"hfuv: {len(files)} files ({size:.1f} MiB) of job {ns}/{job_id} in {target}: "
           f"{counts['written']} written, {counts['unchanged']} already here")  # fmt: skip


@cli.command()
@click.argument("jobs", nargs=-1, required=True)
@namespace_option
@api_options
def cancel(jobs: tuple[str, ...], namespace: str | None, endpoint: str | None,
           token: str | None) -> None:  # fmt: skip
    """Cancel jobs."""
    with make_client(endpoint, token) as client:
        for ref in jobs:
            ns, job_id = job_ref(client, ref, namespace)
            client.cancel_job(ns, job_id)
            status(f"canceled {ns}/{job_id}")


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("--timeout", help="Give up after this long (seconds, or 30m, 2h).")
@click.option("--sweep", metavar="ID", help="Wait for every job of this sweep.")
@namespace_option
@api_options
def wait(jobs: tuple[str, ...], timeout: str | None, sweep: str | None, namespace: str | None,
         endpoint: str | None, token: str | None) -> None:  # fmt: skip
    """Wait until jobs end; exit 0 only if every one COMPLETED."""
    import time

    from hfuv.display import table
    from hfuv.errors import UsageError
    from hfuv.plan import parse_timeout
    from hfuv.remote import Progress, wait_for_end

    if bool(jobs) == bool(sweep):
        raise UsageError("give job ids, or --sweep ID")
    limit = parse_timeout(timeout, "--timeout") if timeout else None
    deadline = None if limit is None else time.monotonic() + limit
    rows, ok = [], True
    from hfuv import remote

    with make_client(endpoint, token) as client:
        if sweep:
            ns = client.namespace(namespace)
            jobs = tuple(f"{ns}/{j['id']}" for j in remote.sweep_jobs(client, ns, sweep).values())
        for ref in jobs:
            ns, job_id = job_ref(client, ref, namespace)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            info = wait_for_end(client, ns, job_id, timeout=left, progress=Progress())
            if info is None:
                status(f"timed out waiting for {ns}/{job_id}")
                sys.exit(1)
            stage = info["status"]["stage"]
            ok = ok and stage == "COMPLETED"
            rows.append([f"{ns}/{job_id}", stage, info["status"].get("message") or ""])
    click.echo(table(["JOB", "STAGE", "MESSAGE"], rows))
    sys.exit(0 if ok else 1)


@cli.group(name="sweep")
def sweep_group() -> None:
    """Watch and retry sweeps (started with `hfuv run --matrix`)."""


@sweep_group.command(name="watch")
@click.argument("sweep")
@namespace_option
@api_options
def sweep_watch(sweep: str, namespace: str | None, endpoint: str | None,
                token: str | None) -> None:  # fmt: skip
    """Follow a sweep until every job ends, then print its summary."""
    from hfuv import remote
    from hfuv.remote import follow_sweep, sweep_summary

    with make_client(endpoint, token) as client:
        ns = client.namespace(namespace)
        jobs = follow_sweep(client, ns, sweep, len(remote.sweep_jobs(client, ns, sweep)),
                            live=sys.stderr.isatty(), status=status)  # fmt: skip
    click.echo(sweep_summary(jobs))
    sys.exit(0 if all(j["status"]["stage"] == "COMPLETED" for j in jobs) else 1)


@sweep_group.command(name="retry")
@click.argument("sweep")
@click.option("--failed", is_flag=True, required=True, help="Re-submit the failed jobs only.")
@click.option("--dry-run", is_flag=True, help="List the jobs it would re-submit; submit nothing.")
@namespace_option
@api_options
def sweep_retry(sweep: str, failed: bool, dry_run: bool, namespace: str | None,
                endpoint: str | None, token: str | None) -> None:  # fmt: skip
    """Re-submit the jobs of a sweep that failed or were canceled."""
    from hfuv import remote

    with make_client(endpoint, token) as client:
        ns = client.namespace(namespace)
        members = remote.sweep_jobs(client, ns, sweep)
        retried = 0
        for index, job in members.items():
            if job["status"]["stage"] in ("ERROR", "CANCELED"):
                if dry_run:
                    status(f"[{index}] {job['id']} {job['status']['stage']}")
                    click.echo(f"POST {client.endpoint}/api/jobs/{ns}/{job['id']}/duplicate")
                else:
                    copy = client.duplicate_job(ns, job["id"])
                    status(f"[{index}] {job['id']} {job['status']['stage']} -> {copy['id']}")
                    click.echo(copy["id"])
                retried += 1
        done = "would be re-submitted" if dry_run else "re-submitted"
        status(f"sweep {sweep}: {retried} of {len(members)} jobs {done}")


@cli.command()
@click.argument("jobs", nargs=-1)
@click.option("-f", "--follow", is_flag=True, help="Keep the table live until the jobs end.")
@namespace_option
@api_options
def stats(jobs: tuple[str, ...], follow: bool, namespace: str | None, endpoint: str | None,
          token: str | None) -> None:  # fmt: skip
    """CPU, memory, network and GPU use of JOBS (default: every running job)."""
    from hfuv import stats as job_stats

    with make_client(endpoint, token) as client:
        refs = [job_ref(client, job, namespace) for job in jobs]
        if not refs:
            ns = client.namespace(namespace)
            refs = [(ns, job["id"]) for job in client.list_jobs(ns, stages=("RUNNING",))]
        if not refs:
            status("no running jobs")
            return
        if len({ns for ns, _ in refs}) > 1:
            from hfuv.errors import UsageError

            raise UsageError("these jobs are in different namespaces; ask for one at a time")
        ns, ids = refs[0][0], [job_id for _, job_id in refs]
        if not follow:
            samples = job_stats.snapshot(client, ns, ids)
            for job_id in ids:
                if job_id not in samples:
                    status(f"job {ns}/{job_id} is not running")
            if samples:
                click.echo(job_stats.stats_table(samples))
            sys.exit(0 if samples else 1)
        try:
            job_stats.follow(client, ns, ids, live=sys.stdout.isatty(), out=sys.stdout,
                             status=status)  # fmt: skip
        except KeyboardInterrupt:
            sys.exit(130)
