"""`hfuv run`, `exec`, `check` and `lock`: from a script or an image to a job."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from hfuv.cli import (
    LaunchCommand,
    api_options,
    build_request,
    cli,
    cli_options,
    exec_options,
    max_cost_origin,
    script_options,
    submission_key_option,
    submit,
    submit_options,
    warn,
    warning_lines,
)
from hfuv.submission import make_client, status


@cli.command(cls=LaunchCommand)
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@script_options
@click.option("--file", "files", multiple=True, metavar="PATH", help="Ship a file or directory.")
@click.option("--refresh", is_flag=True, help="Resolve the lock again, not from hfuv's cache.")
@click.option("--local", is_flag=True, help="Run the job on this machine.")
@click.option(
    "--runtime",
    type=click.Choice(["host", "podman", "docker"]),
    help="With --local: run on this host's Python (default), or in the job's image with "
    "podman or docker [env: HFUV_RUNTIME].",
)
@click.option("--dry-run", is_flag=True, help="Print the request and its cost; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object.")
@click.option("-d", "--detach", is_flag=True, help="Submit, print the job id, and return.")
@click.option(
    "--matrix",
    multiple=True,
    metavar="K=V1,V2",
    help="Sweep: one job per combination; {K} in arguments and env is filled in.",
)
@click.option("--matrix-file", metavar="FILE", help="Sweep: one JSON object per line and job.")
@click.option(
    "--parallel",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Sweep: submissions in flight at once.",
)
@submission_key_option
@api_options
def run(script: str, args: tuple[str, ...], local: bool, runtime: str | None, dry_run: bool,
        as_json: bool, detach: bool, matrix: tuple[str, ...], matrix_file: str | None,
        parallel: int, submission_key: str | None, endpoint: str | None, token: str | None,
        **params: Any) -> None:  # fmt: skip
    """Run SCRIPT (a path, -, a URL, a gist or a GitHub/Hub page) as a job.

    SCRIPT may also be a command, run in a locked environment of the --with dependencies:
    `hfuv run --with lighteval lighteval tasks list`.

    Options may come before or after SCRIPT. Everything after `--` goes to the script untouched,
    and so do options hfuv does not know (`hfuv run s.py --lr 1e-4`), unless they look like a
    misspelled hfuv option (`--dryrun`). A script option whose name hfuv also uses (--name,
    --timeout, -e, …) must come after `--`.
    """
    from click.core import ParameterSource

    from hfuv.errors import UsageError

    if local and dry_run:
        raise UsageError("--local and --dry-run are exclusive", hint="pick one")
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if detach and (local or dry_run):
        raise UsageError("--detach goes with a remote run, not --local or --dry-run")
    if runtime and not local:
        raise UsageError("--runtime goes with --local", hint="add --local to run the job here")
    if local:
        runtime = runtime or os.environ.get("HFUV_RUNTIME") or "host"
        if runtime not in ("host", "podman", "docker"):
            raise UsageError(f"HFUV_RUNTIME={runtime} is not a runtime",
                             hint="set it to host, podman or docker")  # fmt: skip
    remote_only = {"--submission-key": submission_key, "--endpoint": endpoint, "--token": token}
    for flag, value in remote_only.items():
        if local and value is not None:
            raise UsageError(f"{flag} goes with a remote run, not --local")
    given = click.get_current_context().get_parameter_source("parallel")
    if given is not ParameterSource.DEFAULT and not (matrix or matrix_file):
        raise UsageError("--parallel goes with a sweep", hint="add --matrix or --matrix-file")
    from hfuv.job import prepare_job

    points = None
    if matrix or matrix_file:
        from hfuv.sweep import parse_grid

        if local:
            raise UsageError("a sweep runs as jobs", hint="list its jobs here with --dry-run")
        points = parse_grid(matrix, matrix_file)
    request = build_request(script, args, params)
    job = prepare_job(request, local=local, runtime=runtime or "host")
    warn(job.warnings)
    if points is not None:
        run_sweep(job, points, endpoint, token, dry_run=dry_run, as_json=as_json,
                  detach=detach, parallel=parallel, submission_key=submission_key)  # fmt: skip
    elif dry_run:
        print_dry_run(job, endpoint, as_json=as_json)
    elif local and runtime != "host":
        run_in_container(job, runtime)  # never recorded for replay: the engine has the say
    elif local:
        from hfuv import replay

        inputs = replay.recordable_inputs(request, job, token)
        run_here(job, inputs, replay.script_record(request, job) if inputs is not None else None)
    else:
        from hfuv import replay, submission

        options = submit_options(job.spec, job.inspection.config, endpoint, token,
                                 detach=detach, submission_key=submission_key)  # fmt: skip
        inputs = replay.recordable_inputs(request, job, token)
        if inputs is not None:
            record = replay.remote_record(warning_lines(job.warnings), job.spec.body, options,
                                          replay.script_record(request, job))  # fmt: skip
            replay.save(replay.args_of_this_run(), record, inputs)
        sys.exit(submission.submit(job.spec.body, **options))


def run_sweep(job: Any, points: list[dict[str, str]], endpoint: str | None, token: str | None,
              *, dry_run: bool, as_json: bool, detach: bool, parallel: int,
              submission_key: str | None) -> None:  # fmt: skip
    """Submit one job per point (one lock, one bundle), then follow them all."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from hfuv import costs
    from hfuv.remote import follow_sweep, sweep_summary
    from hfuv.sweep import expand, new_sweep_id, sameness_warnings

    spec, config = job.spec, job.inspection.config
    from hfuv import remote

    group, keys = remote.submission_keys(submission_key, len(points))
    sweep_id = hashlib.sha256(group.encode()).hexdigest()[:8] if submission_key else new_sweep_id()
    bodies = expand(spec.body, points, sweep_id, first_arg=3)
    warn(sameness_warnings(spec.body, points, bodies, first_arg=3))
    if dry_run:
        estimate = spec.estimate(jobs=len(bodies))
        if as_json:
            from hfuv.redact import shown

            click.echo(json.dumps({"method": "POST", "url": request_url(endpoint, config.namespace),
                                   "sweep": sweep_id, "bodies": [shown(b) for b in bodies],
                                   "estimate": estimate}, indent=2))  # fmt: skip
            return
        for index, (body, point) in enumerate(zip(bodies, points, strict=True)):
            values = " ".join(f"{k}={v}" for k, v in point.items())
            click.echo(f"[{index}] {values}: args {json.dumps(body['command'][3:])}")
        click.echo(f"estimate: {estimate['summary']}")
        return
    with make_client(endpoint, token) as client:
        worst = costs.estimate(client, spec.flavor.name, spec.body["timeoutSeconds"], len(bodies))
        status(f"estimate: {worst.summary()}")
        costs.guard(worst, config.max_cost, max_cost_origin(config))
        namespace = client.namespace(config.namespace)
        earlier = remote.existing_submissions(client, namespace, group) if submission_key else {}
        todo = [remote.keyed(body, group, key) for body, key in zip(bodies, keys, strict=True)
                if key not in earlier]  # fmt: skip
        with ThreadPoolExecutor(max_workers=parallel) as pool:
            list(pool.map(lambda body: client.create_job(namespace, body), todo))
        already = f" ({len(bodies) - len(todo)} were already there)" if earlier else ""
        status(f"sweep {sweep_id}: {len(todo)} jobs submitted to {namespace}{already}")
        created = bodies
        if detach:
            click.echo(sweep_id)
            return
        try:
            jobs = follow_sweep(client, namespace, sweep_id, len(created),
                                live=sys.stderr.isatty(), status=status)  # fmt: skip
        except KeyboardInterrupt:
            status(f"\nstopped following; the sweep goes on: hfuv sweep watch {sweep_id}")
            sys.exit(130)
    click.echo(sweep_summary(jobs))
    sys.exit(0 if all(j["status"]["stage"] == "COMPLETED" for j in jobs) else 1)


def request_url(endpoint: str | None, namespace: str | None) -> str:
    from hfuv.dryrun import api_url

    return api_url(endpoint, f"/api/jobs/{namespace or '{namespace}'}")


def print_dry_run(job: Any, endpoint: str | None, *, as_json: bool) -> None:
    from hfuv import dryrun

    spec = job.spec
    config = job.inspection.config
    url = request_url(endpoint, config.namespace)
    estimate = spec.estimate()
    if config.max_cost is not None:
        estimate["max_cost_usd"] = config.max_cost
        estimate["within_max_cost"] = estimate["max_usd"] <= config.max_cost
        if not estimate["within_max_cost"]:
            warn([f"the worst case (${estimate['max_usd']:.2f}) is over the max cost "
                  f"(${config.max_cost:.2f}, {max_cost_origin(config)}); a submission "
                  "would be refused"])  # fmt: skip
    if as_json:
        dryrun.print_request(url, spec.redacted(), estimate)
        return
    dryrun.print_readable(url, dryrun.readable_body(spec), estimate["summary"])
    click.echo(
        f"locked: Python {job.env.python}, uv {job.env.uv_version}, "
        f"{len(job.env.locked_packages())} packages ({job.env.lock_origin}); "
        "the full body: --dry-run --json",
        err=True,
    )


def run_here(job: Any, replay_inputs: list[str] | None, script: dict[str, Any] | None) -> None:
    """Run the job here; first record it for replay when `replay_inputs` says what it reads
    (and `script` how a replay checks the script, see `replay.script_record`)."""
    from hfuv import local
    from hfuv.flavors import format_duration
    from hfuv.uv import pyenv_versions

    python = local.check_python(job.env.python, os.environ)
    prepared = local.prepare(job.spec, environ=os.environ)
    timeout = format_duration(job.spec.body["timeoutSeconds"])
    announcement = (
        f"hfuv: running {job.inspection.source.name} here as job {prepared.job_id} "
        f"(Python {job.env.python}, uv {job.env.uv_version}, {job.spec.flavor.name}, "
        f"timeout {timeout}; "
        f"remotely: {job.spec.estimate()['summary']}); work dir {prepared.workdir}"
    )

    def record(uv: str, argv: list[str], files: dict[str, bytes], code_name: str) -> None:
        from hfuv import replay

        pythons = str(pyenv_versions(os.environ))  # a new pyenv Python can change PATH
        entry = replay.local_record(
            stderr=[*warning_lines(job.warnings), announcement], job_id=prepared.job_id,
            workdir=str(prepared.workdir), env=prepared.env, uv=uv, argv=argv,
            files=files, code_name=code_name, timeout_seconds=prepared.timeout_seconds,
            script=script,
        )  # fmt: skip
        replay.save(replay.args_of_this_run(), entry, [*replay_inputs, python, pythons, uv])

    source = job.inspection.source.path
    local.run_bootstrap(prepared, on_start=lambda _: status(announcement),
                        on_ready=record if replay_inputs is not None else None,
                        interpreter=python, source=source and str(source))  # fmt: skip


def run_in_container(job: Any, kind: str) -> None:
    """Run the job here in its image with `kind` (podman or docker); exit with its code."""
    from hfuv import local
    from hfuv.errors import HfuvError
    from hfuv.flavors import format_duration
    from hfuv.runtime import RuntimeFailure
    from hfuv.runtime.engine import EngineRuntime, run_attached
    from hfuv.supervisor import TIMEOUT_EXIT_CODE, TIMEOUT_MESSAGE

    launch, notes = local.container_launch(job.spec)
    warn(notes)
    status(
        f"hfuv: running {job.inspection.source.name} in {launch.image} with {kind} as job "
        f"{launch.job_id} (Python {job.env.python}, uv {job.env.uv_version}, "
        f"{job.spec.flavor.name}: {launch.cpus:g} CPUs, {launch.memory_bytes / 1024**3:g} GiB, "
        f"timeout {format_duration(launch.timeout_seconds)})"
    )
    try:
        code, timed_out = run_attached(EngineRuntime(kind, os.environ), launch)
    except RuntimeFailure as exc:
        hint = "check the image and the engine, or run on this host with --runtime host"
        raise HfuvError(f"{kind} could not run the job: {exc}", hint=hint) from None
    if timed_out:
        status(f"job {launch.job_id} {TIMEOUT_MESSAGE}")
        code = TIMEOUT_EXIT_CODE
    sys.exit(code)


@cli.command()
@click.argument("script")
@script_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(script: str, as_json: bool, **params: Any) -> None:
    """Show what SCRIPT declares and what would run. Resolves and installs nothing."""
    from hfuv import uv_table
    from hfuv.job import inspect_script, lock_status
    from hfuv.payload import default_image
    from hfuv.uv import uv_version

    inspection = inspect_script(build_request(script, (), params), require_python=False)
    meta = inspection.metadata
    config = inspection.config
    status = lock_status(inspection)
    warnings = list(config.warnings)
    ignored = meta.ignored_block(inspection.source.name)
    if ignored:
        warnings.append(f"{ignored.message}; {ignored.hint}")
    if status == "stale":
        warnings.append(
            f"{inspection.source.name}.lock is out of date; `hfuv run` will refuse it until you "
            f"run `hfuv lock {script}`"
        )
    python = inspection.python
    image = config.image or (default_image(uv_version(), python) if python else None)
    launch = {
        key: {"value": getattr(config, attr), "origin": config.origin(key)}
        for key, attr in (
            ("image", "image"), ("flavor", "flavor"), ("python", "python"),
            ("timeout", "timeout_seconds"), ("name", "name"), ("namespace", "namespace"),
            ("network_group", "network_group"), ("max_cost", "max_cost"),
            ("attempts", "attempts"), ("expose", "expose"), ("expose-public", "expose_public"),
        )
    }  # fmt: skip
    from hfuv import redact

    launch["env"] = {k: {"value": v, "origin": config.origin(f"env.{k}")}
                     for k, v in redact.env(config.env).items()}  # fmt: skip
    launch["secrets"] = {k: {"value": "***", "origin": config.origin(f"secrets.{k}")}
                         for k in config.secrets}  # fmt: skip
    launch["labels"] = {k: {"value": v, "origin": config.origin(f"labels.{k}")}
                        for k, v in config.labels.items()}  # fmt: skip
    launch["volumes"] = config.volumes
    report = {
        "script": inspection.source.name,
        "origin": inspection.source.origin,
        "sha256": inspection.source.sha256,
        "metadata_found": meta.found,
        "metadata_ignored_line": meta.shadowed_block_line,  # uv ignores that block
        "dependencies": meta.dependencies,
        "with": list(params.get("with_deps", ())),  # locked with the dependencies
        "tool_uv": {  # what the lock and the job will reach: indexes, sources, settings
            "indexes": uv_table.indexes(meta),
            "sources": uv_table.sources(meta),
            "settings": uv_table.settings(meta),
        },
        "command": inspection.source.command,
        "requires_python": meta.requires_python,
        "python": inspection.python,
        "python_reason": inspection.python_choice.reason if inspection.python_choice else None,
        "interpreter": inspection.interpreter,
        "image": image,
        "launch": launch,
        "lock": status,
        "warnings": warnings,
    }
    warn(warnings)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    print_check(report, config)


def print_check(report: dict[str, Any], config: Any) -> None:
    from hfuv.costs import estimate
    from hfuv.flavors import format_duration, get_flavor

    def row(label: str, value: Any, origin: str | None = None) -> None:
        suffix = f"  ({origin})" if origin and origin != "flag" else ""
        click.echo(f"{label:<16}{value}{suffix}")

    deps = report["dependencies"]
    row("script", f"{report['origin']} (sha256 {report['sha256'][:12]})")
    if report["metadata_found"]:
        row("metadata", "found")
    elif report["metadata_ignored_line"]:
        row("metadata", f"ignored by uv (line {report['metadata_ignored_line']}; see the warning): "
                        "`hfuv run` refuses the script until it is fixed")  # fmt: skip
    else:
        row("metadata", "none (a block is added to lock it)")
    row("requires-python", report["requires_python"] or "-")
    row("dependencies", ", ".join(deps) if deps else "none")
    if report["with"]:
        row("with", ", ".join(report["with"]), "--with")
    name = report["script"]
    for item in report["tool_uv"]["indexes"]:
        rest = ", ".join(f"{k}={json.dumps(v)}" for k, v in item.items()
                         if k not in ("kind", "url", "line"))  # fmt: skip
        row(item["kind"], f"{item['url']}{f' ({rest})' if rest else ''}", f"{name}:{item['line']}")
    for item in report["tool_uv"]["sources"]:
        entry = ", ".join(f"{k}={json.dumps(v)}" for k, v in item.items()
                          if k not in ("package", "line"))  # fmt: skip
        row("source", f"{item['package']}: {entry}", f"{name}:{item['line']}")
    for key, item in report["tool_uv"]["settings"].items():
        row("uv setting", f"{key} = {json.dumps(item['value'])}", f"{name}:{item['line']}")
    python_text = report["python"] or "none of 3.9-3.14 satisfies requires-python"
    row("python", python_text, report["python_reason"] if not config.python
        else config.origin("python"))  # fmt: skip
    row("image", report["image"], config.origin("image"))
    row("flavor", get_flavor(config.flavor).describe(), config.origin("flavor"))
    row("timeout", format_duration(config.timeout_seconds), config.origin("timeout"))
    row("cost", estimate(None, config.flavor, config.timeout_seconds).summary())
    if config.attempts is not None:
        row("attempts", config.attempts, config.origin("attempts"))
    for key, attr in (("expose", "expose"), ("expose-public", "expose_public")):
        if getattr(config, attr):
            row(key, ", ".join(map(str, getattr(config, attr))), config.origin(key))
    for key in ("env", "secrets", "labels"):
        for name, item in report["launch"][key].items():
            row(key, f"{name}={item['value']}", item["origin"])
    for volume in report["launch"]["volumes"]:
        row("volume", f"{volume['type']}:{volume['source']} -> {volume['mountPath']}")
    lock_text = {
        "none": "no lock file; a fresh lock is made when the job is prepared",
        "current": "lock file up to date",
        "stale": "lock file OUT OF DATE",
        "remote": "remote script; locked when the job is prepared",
        "command": "a command: its --with dependencies are locked when the job is prepared",
        "unknown": "not checked (no Python to lock for)",
    }[report["lock"]]
    row("lock", lock_text)


@cli.command(name="lock")
@click.argument("script")
@click.option("-p", "--python", help="Python X.Y to lock for (default: chosen as for run).")
@click.option("--check", "check_only", is_flag=True, help="Exit 1 if the lock is stale or missing.")
def lock_command(script: str, python: str | None, check_only: bool) -> None:
    """Write or refresh SCRIPT.lock beside a local script (`--check` only checks it)."""
    from hfuv.job import inspect_script, lock_status, write_lock

    request = build_request(script, (), {"python": python})
    if check_only:
        status = lock_status(inspect_script(request))
        if status == "current":
            click.echo(f"{script}.lock is up to date", err=True)
            return
        why = "missing" if status == "none" else "out of date"
        click.echo(f"{script}.lock is {why}; run `hfuv lock {script}`", err=True)
        sys.exit(1)
    path, changed = write_lock(request)
    click.echo(f"{'wrote' if changed else 'up to date:'} {path}", err=True)


@cli.command(name="exec", cls=LaunchCommand, passes_to="command")
@click.argument("exec_image", metavar="IMAGE")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@exec_options
@click.option("--dry-run", is_flag=True, help="Print the request and its cost; send nothing.")
@click.option("-d", "--detach", is_flag=True, help="Submit, print the job id, and return.")
@submission_key_option
@api_options
def exec_command(exec_image: str, command: tuple[str, ...], dry_run: bool, detach: bool,
                 submission_key: str | None, endpoint: str | None, token: str | None,
                 **params: Any) -> None:  # fmt: skip
    """Run COMMAND in IMAGE as a job, like `docker run` (and `hf jobs run`).

    Put `--` before the command: `hfuv exec python:3.12 -- python -c 'print(1)'`.
    """
    from hfuv.payload import build_exec_spec
    from hfuv.plan import resolve, validate_flags

    if detach and dry_run:
        from hfuv.errors import UsageError

        raise UsageError("--detach goes with a remote run, not --dry-run")
    options = cli_options(params)
    validate_flags(options)
    config = resolve(options, {}, where="hfuv exec", environ=os.environ)
    warn(config.warnings)
    spec = build_exec_spec(exec_image, command, config)
    if dry_run:
        from hfuv.dryrun import print_request

        print_request(request_url(endpoint, config.namespace), spec.redacted(), spec.estimate())
        return
    submit(spec, config, endpoint, token, detach=detach, submission_key=submission_key)
