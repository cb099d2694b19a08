"""The `hfuv` command line: parse, call the core, print. No logic lives here.

Heavy modules are imported inside the commands that need them, so `hfuv --help` stays fast.
stdout carries results (JSON, job specs, the script's own output); stderr carries status.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from typing import Any

import click

from hfuv import __version__

RUN_CONTEXT = {
    "ignore_unknown_options": True,
    "allow_interspersed_args": True,
    "help_option_names": ["-h", "--help"],
}


class HfuvGroup(click.Group):
    """Maps hfuv's errors to one `error:` line on stderr and their exit code, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        from hfuv.errors import HfuvError, report

        try:
            return super().invoke(ctx)
        except HfuvError as exc:
            ctx.exit(report(exc))


@click.group(cls=HfuvGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="hfuv")
def cli() -> None:
    """Run uv scripts (PEP 723) as Hugging Face Jobs, or here, in one locked environment.

    \b
      hfuv check train.py                      what the script declares and what would run
      hfuv lock train.py                       write train.py.lock beside the script
      hfuv run train.py --local -- --lr 1e-4   run the job here, exactly as it would run remotely
      hfuv run train.py --flavor a10g-small --dry-run   print the request and its cost
    """


def script_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options that say where the script comes from and how it is launched."""
    decorators = [
        click.option("--flavor", help="Hardware flavor (default cpu-basic; see `hfuv hardware`)."),
        click.option("--image", help="Docker image (default: the uv image for the chosen Python)."),
        click.option("-p", "--python", help="Python X.Y, or an interpreter path in the image."),
        click.option("--timeout", help="Maximum duration: seconds or 30m, 1.5h, 2d (default 30m)."),
        click.option("--name", help="Job name (the `name` label)."),
        click.option("--namespace", help="User or organization that runs and pays for the job."),
        click.option("-e", "--env", "env", multiple=True, metavar="K=V", help="Env variable."),
        click.option("--env-file", multiple=True, metavar="FILE", help="dotenv file, or -."),
        click.option("-s", "--secrets", "secrets", multiple=True, metavar="K[=V]",
                     help="Secret; a bare name takes its value from your environment."),
        click.option("--secrets-file", multiple=True, metavar="FILE", help="dotenv file, or -."),
        click.option("-l", "--label", "labels", multiple=True, metavar="K[=V]", help="Label."),
        click.option("-v", "--volume", "volumes", multiple=True, metavar="hf://…:/PATH[:ro]",
                     help="Mount a Hub repo or bucket."),
        click.option("--network-group", help="Network group of the job."),
        click.option("--network-alias", "network_aliases", multiple=True,
                     help="Alias in the network group."),
        click.option("--max-cost", type=float, envvar="HFUV_MAX_COST", metavar="USD",
                     help="Refuse to submit if the worst case costs more [env: HFUV_MAX_COST]."),
        click.option("--with", "with_deps", multiple=True, metavar="REQ",
                     help="Extra dependency, locked with the script's own."),
        click.option("--gist-file", metavar="NAME", help="File to run from a multi-file gist."),
        click.option("--sha256", metavar="HEX", help="Refuse the script unless it has this hash."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def cli_options(params: dict[str, Any]):
    from hfuv.plan import CliOptions

    return CliOptions(
        image=params.get("image"),
        flavor=params.get("flavor"),
        python=params.get("python"),
        timeout=params.get("timeout"),
        name=params.get("name"),
        namespace=params.get("namespace"),
        env=params.get("env", ()),
        env_files=params.get("env_file", ()),
        secrets=params.get("secrets", ()),
        secrets_files=params.get("secrets_file", ()),
        labels=params.get("labels", ()),
        volumes=params.get("volumes", ()),
        network_group=params.get("network_group"),
        network_aliases=params.get("network_aliases", ()),
        max_cost=params.get("max_cost"),
    )


def build_request(script: str, args: tuple[str, ...], params: dict[str, Any]):
    from hfuv.job import ScriptRequest

    return ScriptRequest(
        script=script,
        args=args,
        options=cli_options(params),
        with_deps=params.get("with_deps", ()),
        files=params.get("files", ()),
        gist_file=params.get("gist_file"),
        sha256=params.get("sha256"),
        refresh=params.get("refresh", False),
    )


def warning_lines(messages: list[str]) -> list[str]:
    return [f"warning: {message}" for message in messages]


def warn(messages: list[str]) -> None:
    for line in warning_lines(messages):
        click.echo(line, err=True)


def api_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Where the Jobs API is and who is asking."""
    func = click.option(
        "--token", help="Hugging Face token (default: HF_TOKEN, then the saved login)."
    )(func)
    return click.option(
        "--endpoint", help="Jobs API base URL (default: HF_ENDPOINT, else huggingface.co)."
    )(func)


def max_cost_origin(config: Any) -> str:
    origin = config.origin("max_cost")
    return "--max-cost or HFUV_MAX_COST" if origin == "flag" else origin


def submission_key_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--submission-key", metavar="KEY",
        help="Idempotency key: a re-run with the same key creates no second job (or sweep job).",
    )(func)  # fmt: skip


def status(message: str) -> None:
    click.echo(message, err=True)


def make_client(endpoint: str | None, token: str | None):
    from hfuv.submission import make_client

    return make_client(endpoint, token)


def submit_options(spec: Any, config: Any, endpoint: str | None, token: str | None, *,
                   detach: bool, submission_key: str | None) -> dict[str, Any]:  # fmt: skip
    return {"flavor": spec.flavor.name, "max_cost": config.max_cost,
            "max_cost_origin": max_cost_origin(config), "namespace": config.namespace,
            "endpoint": endpoint, "token": token, "detach": detach,
            "submission_key": submission_key}  # fmt: skip


def submit(spec: Any, config: Any, endpoint: str | None, token: str | None, *,
           detach: bool, submission_key: str | None = None) -> None:  # fmt: skip
    """Create the job (at most once); then print its id (--detach) or follow it to its end."""
    from hfuv.submission import submit

    options = submit_options(spec, config, endpoint, token, detach=detach,
                             submission_key=submission_key)  # fmt: skip
    sys.exit(submit(spec.body, **options))


@cli.command(context_settings=RUN_CONTEXT)
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@script_options
@click.option("--file", "files", multiple=True, metavar="PATH", help="Ship a file or directory.")
@click.option("--refresh", is_flag=True, help="Resolve the lock again, not from hfuv's cache.")
@click.option("--local", is_flag=True, help="Run the job on this machine.")
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
def run(script: str, args: tuple[str, ...], local: bool, dry_run: bool, as_json: bool,
        detach: bool, matrix: tuple[str, ...], matrix_file: str | None, parallel: int,
        submission_key: str | None, endpoint: str | None, token: str | None,
        **params: Any) -> None:  # fmt: skip
    """Run SCRIPT (a path, -, a URL, a gist or a GitHub/Hub page) as a job.

    SCRIPT may also be a command, run in a locked environment of the --with dependencies:
    `hfuv run --with lighteval lighteval tasks list`.

    Options may come before or after SCRIPT. Everything after `--` goes to the script untouched,
    and so do options hfuv does not know (`hfuv run s.py --lr 1e-4`). A script option whose name
    hfuv also uses (--name, --timeout, -e, …) must come after `--`.
    """
    from hfuv.errors import UsageError

    if local and dry_run:
        raise UsageError("--local and --dry-run are exclusive", hint="pick one")
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if detach and (local or dry_run):
        raise UsageError("--detach goes with a remote run, not --local or --dry-run")
    from hfuv.job import prepare_job

    points = None
    if matrix or matrix_file:
        from hfuv.sweep import parse_grid

        if local:
            raise UsageError("a sweep runs as jobs", hint="list its jobs here with --dry-run")
        points = parse_grid(matrix, matrix_file)
    request = build_request(script, args, params)
    job = prepare_job(request)
    warn(job.warnings)
    if points is not None:
        run_sweep(job, points, endpoint, token, dry_run=dry_run, as_json=as_json,
                  detach=detach, parallel=parallel, submission_key=submission_key)  # fmt: skip
    elif dry_run:
        print_dry_run(job, endpoint, as_json=as_json)
    elif local:
        run_here(job, replay_inputs(request, job, token))
    else:
        from hfuv import replay, submission

        options = submit_options(job.spec, job.inspection.config, endpoint, token,
                                 detach=detach, submission_key=submission_key)  # fmt: skip
        inputs = replay_inputs(request, job, token)
        if inputs is not None:
            record = replay.remote_record(warning_lines(job.warnings), job.spec.body, options)
            replay.save(replay.args_of_this_run(), record, inputs)
        sys.exit(submission.submit(job.spec.body, **options))


def replay_inputs(request: Any, job: Any, token: str | None) -> list[str] | None:
    """The files a replay of this run depends on; None when it must not be recorded (it
    would hold a secret, or the user asked for a fresh resolution)."""
    from hfuv.job import input_files

    body = job.spec.body
    if request.refresh or token or body.get("secrets") or "HF_TOKEN" in body["environment"]:
        return None
    return input_files(request, job)


def run_sweep(job: Any, points: list[dict[str, str]], endpoint: str | None, token: str | None,
              *, dry_run: bool, as_json: bool, detach: bool, parallel: int,
              submission_key: str | None) -> None:  # fmt: skip
    """Submit one job per point (one lock, one bundle), then follow them all."""
    import hashlib
    from concurrent.futures import ThreadPoolExecutor

    from hfuv import costs
    from hfuv.remote import follow_sweep, sweep_summary
    from hfuv.sweep import expand, new_sweep_id

    spec, config = job.spec, job.inspection.config
    from hfuv import remote

    group, keys = remote.submission_keys(submission_key, len(points))
    sweep_id = hashlib.sha256(group.encode()).hexdigest()[:8] if submission_key else new_sweep_id()
    bodies = expand(spec.body, points, sweep_id, first_arg=3)
    if dry_run:
        estimate = spec.estimate(jobs=len(bodies))
        if as_json:
            redacted = [dict(b, secrets={k: "***" for k in b["secrets"]}) if "secrets" in b
                        else b for b in bodies]  # fmt: skip
            click.echo(json.dumps({"method": "POST", "url": request_url(endpoint, config.namespace),
                                   "sweep": sweep_id, "bodies": redacted,
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
    base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return f"{base}/api/jobs/{namespace or '{namespace}'}"


def print_dry_run(job: Any, endpoint: str | None, *, as_json: bool) -> None:
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
        document = {"method": "POST", "url": url, "body": spec.redacted(), "estimate": estimate}
        click.echo(json.dumps(document, indent=2))
        return
    body = spec.redacted()
    environment = body["environment"]
    for key in [k for k in environment if k.removeprefix("HFUV_BUNDLE_").isdigit()]:
        environment[key] = f"<{len(environment[key])} chars of base64: {', '.join(spec.files)}>"
    lines = body["command"][2].count("\n")
    body["command"] = [body["command"][0], "-c", f"<hfuv bootstrap, {lines} lines>",
                       *body["command"][3:]]  # fmt: skip
    click.echo(f"POST {url}")
    click.echo(json.dumps(body, indent=2))
    click.echo(f"estimate: {estimate['summary']}")
    click.echo(
        f"locked: Python {job.env.python}, uv {job.env.uv_version}, "
        f"{len(job.env.locked_packages())} packages ({job.env.lock_origin}); "
        "the full body: --dry-run --json",
        err=True,
    )


def run_here(job: Any, replay_inputs: list[str] | None) -> None:
    """Become the job; first record it for replay when `replay_inputs` says what it reads."""
    from hfuv import local
    from hfuv.uv import pyenv_versions, with_python_visible

    python = local.check_python(job.env.python, with_python_visible(os.environ, job.env.python))
    prepared = local.prepare(job.spec, environ=os.environ)
    announcement = (
        f"hfuv: running {job.inspection.source.name} here as job {prepared.job_id} "
        f"(Python {job.env.python}, uv {job.env.uv_version}, {job.spec.flavor.name}; "
        f"remotely: {job.spec.estimate()['summary']}); work dir {prepared.workdir}"
    )

    def record(uv: str, argv: list[str]) -> None:
        from hfuv import replay

        codedir = prepared.env["HFUV_CODEDIR"]
        shipped = [codedir, *(os.path.join(codedir, name) for name in job.spec.files)]
        pythons = str(pyenv_versions(os.environ))  # a new pyenv Python can change PATH
        entry = replay.local_record(
            stderr=[*warning_lines(job.warnings), announcement], job_id=prepared.job_id,
            workdir=str(prepared.workdir), env=prepared.env, uv=uv, argv=argv,
            files=job.spec.files,
        )  # fmt: skip
        replay.save(replay.args_of_this_run(), entry,
                    [*replay_inputs, python, pythons, uv, *shipped])  # fmt: skip

    local.exec_bootstrap(prepared, on_start=lambda _: status(announcement),
                         on_ready=record if replay_inputs is not None else None)  # fmt: skip


@cli.command()
@click.argument("script")
@script_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def check(script: str, as_json: bool, **params: Any) -> None:
    """Show what SCRIPT declares and what would run. Resolves and installs nothing."""
    from hfuv.job import inspect_script, lock_status
    from hfuv.payload import default_image
    from hfuv.uv import uv_version

    inspection = inspect_script(build_request(script, (), params), require_python=False)
    meta = inspection.metadata
    config = inspection.config
    status = lock_status(inspection)
    warnings = list(config.warnings)
    if meta.shadowed_block_line:
        warnings.append(
            f"{inspection.source.name}:{meta.shadowed_block_line}: uv ignores this metadata "
            "block because `# /// script` appears earlier where it does not start a line"
        )
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
        )
    }  # fmt: skip
    launch["env"] = {k: {"value": v, "origin": config.origin(f"env.{k}")}
                     for k, v in config.env.items()}  # fmt: skip
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
        "dependencies": meta.dependencies,
        "requires_python": meta.requires_python,
        "python": inspection.python,
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
    row("metadata", "found" if report["metadata_found"] else "none (a block is added to lock it)")
    row("requires-python", report["requires_python"] or "-")
    row("dependencies", ", ".join(deps) if deps else "none")
    python_text = report["python"] or "none of 3.9-3.14 satisfies requires-python"
    row("python", python_text, "chosen" if not config.python else config.origin("python"))
    row("image", report["image"], config.origin("image"))
    row("flavor", get_flavor(config.flavor).describe(), config.origin("flavor"))
    row("timeout", format_duration(config.timeout_seconds), config.origin("timeout"))
    row("cost", estimate(None, config.flavor, config.timeout_seconds).summary())
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array.")
@api_options
def hardware(as_json: bool, endpoint: str | None, token: str | None) -> None:
    """List the hardware flavors with their specs and price per hour."""
    from contextlib import suppress

    from hfuv.client import JobsClient
    from hfuv.costs import remember_hardware
    from hfuv.display import catalog_as_api, hardware_table
    from hfuv.errors import HfuvError
    from hfuv.flavors import CATALOG

    try:
        with JobsClient(endpoint=endpoint, token=token) as client:
            items = client.hardware(patient=False)
        with suppress(KeyError, TypeError, ValueError):  # teaches hfuv flavors newer than it
            remember_hardware(client.endpoint, items)
    except HfuvError as exc:
        status(f"note: using the built-in catalog ({exc.message})")
        items = catalog_as_api(list(CATALOG.values()))
    if as_json:
        click.echo(json.dumps(items, indent=2))
    else:
        click.echo(hardware_table(items))


@cli.command(name="exec", context_settings=RUN_CONTEXT)
@click.argument("exec_image", metavar="IMAGE")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@script_options
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

    if params.get("image"):
        from hfuv.errors import UsageError

        raise UsageError("--image does not apply to exec", hint="give the image as IMAGE")
    options = cli_options(params)
    validate_flags(options)
    config = resolve(options, {}, where="hfuv exec", environ=os.environ)
    warn(config.warnings)
    spec = build_exec_spec(exec_image, command, config)
    if dry_run:
        url = request_url(endpoint, config.namespace)
        document = {"method": "POST", "url": url, "body": spec.redacted(),
                    "estimate": spec.estimate()}  # fmt: skip
        click.echo(json.dumps(document, indent=2))
        return
    submit(spec, config, endpoint, token, detach=detach, submission_key=submission_key)


def namespace_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--namespace", help="User or organization (default: the token's user).")(
        func
    )


def job_ref(client: Any, ref: str, namespace: str | None) -> tuple[str, str]:
    """`NAMESPACE/ID` or `ID` (in --namespace or the token's namespace) → (namespace, id)."""
    from hfuv.client import split_job_ref

    ns, job_id = split_job_ref(ref, namespace)
    return client.namespace(ns), job_id


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
        click.echo(json.dumps(jobs, indent=2))
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
    """Print a job's log, each line exactly as the job wrote it."""
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

    with make_client(endpoint, token) as client:
        ns, job_id = job_ref(client, job, namespace)
        info = client.get_job(ns, job_id)
        click.echo(json.dumps(info, indent=2) if as_json else
                   job_summary(info, client.job_url(ns, job_id)))  # fmt: skip


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
            if not jobs:
                raise UsageError(f"no jobs in sweep {sweep} (namespace {ns})")
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
@namespace_option
@api_options
def sweep_retry(sweep: str, failed: bool, namespace: str | None, endpoint: str | None,
                token: str | None) -> None:  # fmt: skip
    """Re-submit the jobs of a sweep that failed or were canceled."""
    from hfuv import remote

    with make_client(endpoint, token) as client:
        ns = client.namespace(namespace)
        members = remote.sweep_jobs(client, ns, sweep)
        if not members:
            from hfuv.errors import UsageError

            raise UsageError(f"no jobs in sweep {sweep} (namespace {ns})")
        retried = 0
        for index, job in members.items():
            if job["status"]["stage"] in ("ERROR", "CANCELED"):
                copy = client.duplicate_job(ns, job["id"])
                status(f"[{index}] {job['id']} {job['status']['stage']} -> {copy['id']}")
                click.echo(copy["id"])
                retried += 1
        status(f"sweep {sweep}: {retried} of {len(members)} jobs re-submitted")


@cli.group(name="schedule")
def schedule_group() -> None:
    """Scheduled jobs: cron (5 fields, UTC) or @hourly/@daily/@weekly/@monthly/@yearly."""


def create_schedule(spec: Any, config: Any, schedule: str, *, suspend: bool, concurrency: bool,
                    endpoint: str | None, token: str | None) -> None:  # fmt: skip
    from hfuv import costs

    with make_client(endpoint, token) as client:
        worst = costs.estimate(client, spec.flavor.name, spec.body["timeoutSeconds"])
        status(f"estimate per run: {worst.summary()}")
        costs.guard(worst, config.max_cost, max_cost_origin(config))
        namespace = client.namespace(config.namespace)
        body: dict[str, Any] = {"jobSpec": spec.body, "schedule": schedule}
        if suspend:
            body["suspend"] = True
        if concurrency:
            body["concurrency"] = True
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
]  # fmt: skip


def with_schedule_flags(func: Callable[..., Any]) -> Callable[..., Any]:
    for decorator in reversed(schedule_flags):
        func = decorator(func)
    return func


@schedule_group.command(name="create", context_settings=RUN_CONTEXT)
@click.argument("schedule")
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@script_options
@click.option("--file", "files", multiple=True, metavar="PATH", help="Ship a file or directory.")
@with_schedule_flags
@api_options
def schedule_create(schedule: str, script: str, args: tuple[str, ...], suspend: bool,
                    concurrency: bool, endpoint: str | None, token: str | None,
                    **params: Any) -> None:  # fmt: skip
    """Run SCRIPT on SCHEDULE. Its bundle and lock are frozen now: every run is the same."""
    from hfuv.job import prepare_job
    from hfuv.plan import validate_flags
    from hfuv.schedules import validate

    validate(schedule)
    request = build_request(script, args, params)
    validate_flags(request.options)
    announce_next_runs(schedule)
    job = prepare_job(request)
    warn(job.warnings)
    create_schedule(job.spec, job.inspection.config, schedule, suspend=suspend,
                    concurrency=concurrency, endpoint=endpoint, token=token)  # fmt: skip


@schedule_group.command(name="exec", context_settings=RUN_CONTEXT)
@click.argument("schedule")
@click.argument("exec_image", metavar="IMAGE")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@script_options
@with_schedule_flags
@api_options
def schedule_exec(schedule: str, exec_image: str, command: tuple[str, ...], suspend: bool,
                  concurrency: bool, endpoint: str | None, token: str | None,
                  **params: Any) -> None:  # fmt: skip
    """Run COMMAND in IMAGE on SCHEDULE."""
    from hfuv.payload import build_exec_spec
    from hfuv.plan import resolve, validate_flags
    from hfuv.schedules import validate

    validate(schedule)
    options = cli_options(params)
    validate_flags(options)
    announce_next_runs(schedule)
    config = resolve(options, {}, where="hfuv schedule exec", environ=os.environ)
    warn(config.warnings)
    create_schedule(build_exec_spec(exec_image, command, config), config, schedule, suspend=suspend,
                    concurrency=concurrency, endpoint=endpoint, token=token)  # fmt: skip


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
        click.echo(json.dumps(items, indent=2))
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

    with make_client(endpoint, token) as client:
        ns, sid = job_ref(client, schedule_id, namespace)
        item = client.get_schedule(ns, sid)
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
@namespace_option
@api_options
def webhook_create(watched: tuple[str, ...], domains: tuple[str, ...], job_id: str,
                   secret: str | None, secret_items: tuple[str, ...], namespace: str | None,
                   endpoint: str | None, token: str | None) -> None:  # fmt: skip
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
    if missing:
        raise UsageError(f"secret {missing[0]} is not set in your environment")
    with make_client(endpoint, token) as client:
        _, source = job_ref(client, job_id, namespace)
        body: dict[str, Any] = {
            "watched": items,
            "domains": list(domains) or ["repo", "discussion"],
            "jobSourceId": source,
        }
        if secret:
            body["secret"] = secret
        if values:
            body["secrets"] = values
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
        click.echo(json.dumps(items, indent=2))
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


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8790, show_default=True)
@click.option("--data-dir", type=click.Path(file_okay=False), help="Where jobs and logs live.")
@click.option(
    "--token",
    "token_specs",
    multiple=True,
    metavar="NAME=TOKEN",
    help="A user and its token (NAME@ORG1,ORG2=TOKEN for org members).",
)
@click.option("--tokens-file", type=click.Path(dir_okay=False), help="One NAME=TOKEN per line.")
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Jobs running at once; the rest wait in SCHEDULING.",
)
def server(host: str, port: int, data_dir: str | None, token_specs: tuple[str, ...],
           tokens_file: str | None, max_parallel: int) -> None:  # fmt: skip
    """Serve the Hugging Face Jobs API here and run its jobs on this machine."""
    from pathlib import Path

    from hfuv.server import default_data_dir, serve

    serve(
        host=host,
        port=port,
        data_dir=Path(data_dir) if data_dir else default_data_dir(),
        token_specs=token_specs,
        tokens_file=Path(tokens_file) if tokens_file else None,
        max_parallel=max_parallel,
        announce=lambda line: click.echo(line, err=not line.startswith("HF_ENDPOINT=")),
    )


def main() -> None:
    cli(prog_name="hfuv")
