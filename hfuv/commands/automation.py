"""Jobs that start themselves: `hfuv schedule …` and `hfuv webhook …`."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import Any

import click

from hfuv.cli import (
    LaunchCommand,
    api_options,
    build_request,
    cli,
    cli_options,
    exec_options,
    job_ref,
    max_cost_origin,
    namespace_option,
    script_options,
    warn,
)
from hfuv.submission import make_client, status


@cli.group(name="schedule")
def schedule_group() -> None:
    """Scheduled jobs: cron (5 fields, UTC) or @hourly/@daily/@weekly/@monthly/@yearly."""


def create_schedule(spec: Any, config: Any, schedule: str, *, suspend: bool, concurrency: bool,
                    dry_run: bool, readable: bool, endpoint: str | None,
                    token: str | None) -> None:  # fmt: skip
    """Create the scheduled job; with `dry_run`, print the request instead (for reading when
    `readable`, else as JSON)."""
    from hfuv import costs

    extra = {"suspend": True} if suspend else {}
    if concurrency:
        extra["concurrency"] = True
    if dry_run:
        from hfuv import dryrun

        url = dryrun.api_url(endpoint, f"/api/scheduled-jobs/{config.namespace or '{namespace}'}")
        if readable:
            body = {"jobSpec": dryrun.readable_body(spec), "schedule": schedule, **extra}
            dryrun.print_readable(url, body, spec.estimate()["summary"] + " per run")
        else:
            body = {"jobSpec": spec.redacted(), "schedule": schedule, **extra}
            dryrun.print_request(url, body, spec.estimate())
        return
    with make_client(endpoint, token) as client:
        worst = costs.estimate(client, spec.flavor.name, spec.body["timeoutSeconds"])
        status(f"estimate per run: {worst.summary()}")
        costs.guard(worst, config.max_cost, max_cost_origin(config))
        namespace = client.namespace(config.namespace)
        body: dict[str, Any] = {"jobSpec": spec.body, "schedule": schedule, **extra}
        created = client.create_schedule(namespace, body)
    status(f"scheduled job {namespace}/{created['id']} created ({schedule}, UTC)")
    click.echo(created["id"])


def announce_next_runs(schedule: str) -> None:
    from hfuv.schedules import next_runs, utc

    status("next runs: " + ", ".join(utc(moment) for moment in next_runs(schedule, count=3)))


schedule_flags = [
    click.option("--suspend", is_flag=True, help="Create it suspended."),
    click.option("--concurrency", is_flag=True,
                 help="Allow a run to start while the previous one is still active."),
    click.option("--dry-run", is_flag=True, help="Print the request and its cost; send nothing."),
]  # fmt: skip


def with_schedule_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(schedule_flags):
        func = decorator(func)
    return func


@schedule_group.command(name="create", cls=LaunchCommand)
@click.argument("schedule")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@script_options
@click.option("--file", "files", multiple=True, metavar="PATH", help="Ship a file or directory.")
@with_schedule_flags
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object.")
@api_options
def schedule_create(schedule: str, script: str, args: tuple[str, ...], suspend: bool,
                    concurrency: bool, dry_run: bool, as_json: bool, endpoint: str | None,
                    token: str | None, **params: Any) -> None:  # fmt: skip
    """Run SCRIPT on SCHEDULE. Its bundle and lock are frozen now: every run is the same."""
    from hfuv.job import prepare_job
    from hfuv.plan import validate_flags
    from hfuv.schedules import validate

    if as_json and not dry_run:
        from hfuv.errors import UsageError

        raise UsageError("--json goes with --dry-run")
    validate(schedule)
    request = build_request(script, args, params)
    validate_flags(request.options)
    job = prepare_job(request)
    warn(job.warnings)
    announce_next_runs(schedule)  # once the job is known to be sound: errors stay one line
    create_schedule(job.spec, job.inspection.config, schedule, suspend=suspend,
                    concurrency=concurrency, dry_run=dry_run, readable=not as_json,
                    endpoint=endpoint, token=token)  # fmt: skip


@schedule_group.command(name="exec", cls=LaunchCommand, passes_to="command")
@click.argument("schedule")
@click.argument("exec_image", metavar="IMAGE")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@exec_options
@with_schedule_flags
@api_options
def schedule_exec(schedule: str, exec_image: str, command: tuple[str, ...], suspend: bool,
                  concurrency: bool, dry_run: bool, endpoint: str | None, token: str | None,
                  **params: Any) -> None:  # fmt: skip
    """Run COMMAND in IMAGE on SCHEDULE."""
    from hfuv.payload import build_exec_spec
    from hfuv.plan import resolve, validate_flags
    from hfuv.schedules import validate

    validate(schedule)
    options = cli_options(params)
    validate_flags(options)
    config = resolve(options, {}, where="hfuv schedule exec", environ=os.environ)
    warn(config.warnings)
    announce_next_runs(schedule)
    create_schedule(build_exec_spec(exec_image, command, config), config, schedule, suspend=suspend,
                    concurrency=concurrency, dry_run=dry_run, readable=False, endpoint=endpoint,
                    token=token)  # fmt: skip


@schedule_group.command(name="ps")
@click.option("-a", "--all", "show_all", is_flag=True, help="Include suspended ones.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@namespace_option
@api_options
def schedule_ps(show_all: bool, as_json: bool, namespace: str | None, endpoint: str | None,
                token: str | None) -> None:  # fmt: skip
    """List scheduled jobs (times in UTC)."""
    from hfuv.display import schedules_table

    with make_client(endpoint, token) as client:
        items = client.list_schedules(client.namespace(namespace))
    if not show_all:
        items = [item for item in items if not item.get("suspend")]
    if as_json:
        from hfuv.redact import shown

        click.echo(json.dumps([shown(item) for item in items], indent=2))
    elif items:
        click.echo(schedules_table(items))
    else:
        status("no scheduled jobs" + ("" if show_all else " (hfuv schedule ps -a shows all)"))


@schedule_group.command(name="inspect")
@click.argument("schedule_id")
@click.option("--json", "as_json", is_flag=True, help="Print the object as JSON.")
@namespace_option
@api_options
def schedule_inspect(schedule_id: str, as_json: bool, namespace: str | None,
                     endpoint: str | None, token: str | None) -> None:  # fmt: skip
    """Show one scheduled job (times in UTC)."""
    from hfuv.display import schedules_table
    from hfuv.redact import shown

    with make_client(endpoint, token) as client:
        ns, sid = job_ref(client, schedule_id, namespace)
        item = shown(client.get_schedule(ns, sid))
    click.echo(json.dumps(item, indent=2) if as_json else schedules_table([item]))


def schedule_verb(action: str, doc: str) -> None:
    @schedule_group.command(name=action, help=doc)
    @click.argument("schedule_id")
    @namespace_option
    @api_options
    def command(schedule_id: str, namespace: str | None, endpoint: str | None,
                token: str | None) -> None:  # fmt: skip
        with make_client(endpoint, token) as client:
            ns, sid = job_ref(client, schedule_id, namespace)
            if action == "delete":
                client.delete_schedule(ns, sid)
            else:
                answer = client.schedule_action(ns, sid, "run" if action == "trigger" else action)
                if action == "trigger":
                    click.echo(answer.json()["id"])
        status(f"{action}: {ns}/{sid}")


schedule_verb("suspend", "Stop a scheduled job's ticks.")
schedule_verb("resume", "Restart a scheduled job's ticks (from now; missed ones are skipped).")
schedule_verb("trigger", "Start one run now (refused while one runs, unless --concurrency).")
schedule_verb("delete", "Delete a scheduled job.")


@cli.group(name="webhook")
def webhook_group() -> None:
    """Webhooks that start a copy of a job on each Hub event on watched repos."""


@webhook_group.command(name="create")
@click.option(
    "--watch",
    "watched",
    multiple=True,
    required=True,
    metavar="TYPE:NAME",
    help="model:ORG/NAME, dataset:…, space:…, user:NAME or org:NAME (repeatable).",
)
@click.option(
    "--domain",
    "domains",
    multiple=True,
    type=click.Choice(["repo", "discussion"]),
    help="Events to react to (default: both).",
)
@click.option("--job-id", required=True, help="The job to copy on each event (NAMESPACE/ID).")
@click.option("--secret", help="Sent by the Hub as X-Webhook-Secret; the job sees WEBHOOK_SECRET.")
@click.option(
    "-s",
    "--secrets",
    "secret_items",
    multiple=True,
    metavar="K[=V]",
    help="Secrets for the triggered jobs (a source job's are not copied).",
)
@click.option("--dry-run", is_flag=True, help="Print the request; send nothing.")
@namespace_option
@api_options
def webhook_create(watched: tuple[str, ...], domains: tuple[str, ...], job_id: str,
                   secret: str | None, secret_items: tuple[str, ...], dry_run: bool,
                   namespace: str | None, endpoint: str | None,
                   token: str | None) -> None:  # fmt: skip
    """Create a webhook that runs a copy of --job-id on each event."""
    from hfuv import envfiles
    from hfuv.errors import UsageError

    items = []
    for watch in watched:
        kind, _, name = watch.partition(":")
        if kind not in ("model", "dataset", "space", "user", "org") or not name:
            raise UsageError(f"invalid --watch {watch!r}", hint="write e.g. dataset:ORG/NAME")
        items.append({"type": kind, "name": name})
    requested = dict(envfiles.split_assignment(item, "-s") for item in secret_items)
    values, missing = envfiles.resolve(requested, os.environ)
    envfiles.refuse_values_as_names("-s", missing, os.environ)
    if missing:
        raise UsageError(f"secret {missing[0]} is not set in your environment")

    def body_for(source: str, shown: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "watched": items,
            "domains": list(domains) or ["repo", "discussion"],
            "jobSourceId": source,
        }
        if secret:
            body["secret"] = "***" if shown else secret
        if values:
            body["secrets"] = {key: "***" for key in values} if shown else values
        return body

    if dry_run:
        from hfuv.client import split_job_ref
        from hfuv.dryrun import api_url, print_request

        _, source = split_job_ref(job_id, namespace)
        print_request(api_url(endpoint, "/api/settings/webhooks"), body_for(source, shown=True))
        return
    with make_client(endpoint, token) as client:
        _, source = job_ref(client, job_id, namespace)
        body = body_for(source)
        webhook = client.create_webhook(body)
        status(f"webhook {webhook['id']} created; events go to "
               f"{client.endpoint}/webhooks/{webhook['id']} on hfuv server")  # fmt: skip
    click.echo(webhook["id"])


@webhook_group.command(name="ps")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@api_options
def webhook_ps(as_json: bool, endpoint: str | None, token: str | None) -> None:
    """List your webhooks."""
    from hfuv.display import table

    with make_client(endpoint, token) as client:
        items = client.list_webhooks()
    if as_json:
        from hfuv.redact import shown

        click.echo(json.dumps([shown(item) for item in items], indent=2))
        return
    rows = [[w["id"], " ".join(f"{i['type']}:{i['name']}" for i in w["watched"]),
             ",".join(w["domains"]), w.get("jobSourceId") or "-",
             "disabled" if w["disabled"] else "enabled"] for w in items]  # fmt: skip
    click.echo(table(["ID", "WATCHED", "DOMAINS", "JOB", "STATE"], rows))


def webhook_verb(action: str, doc: str) -> None:
    @webhook_group.command(name=action, help=doc)
    @click.argument("webhook_id")
    @api_options
    def command(webhook_id: str, endpoint: str | None, token: str | None) -> None:
        with make_client(endpoint, token) as client:
            if action == "delete":
                client.delete_webhook(webhook_id)
            else:
                client.toggle_webhook(webhook_id, action)
        status(f"{action}: webhook {webhook_id}")


webhook_verb("enable", "Enable a webhook.")
webhook_verb("disable", "Disable a webhook (events start nothing).")
webhook_verb("delete", "Delete a webhook.")
