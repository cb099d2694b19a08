"""The `hfuv` command line: parse, call the core, print. No logic lives here.

Heavy modules are imported inside the commands that need them, so `hfuv --help` stays fast.
stdout carries results (JSON, job specs, the script's own output); stderr carries status.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
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
        from hfuv.errors import HfuvError

        try:
            return super().invoke(ctx)
        except HfuvError as exc:
            if os.environ.get("HFUV_DEBUG") == "1":
                traceback.print_exc()
            click.echo(f"error: {exc.message}", err=True, nl=not exc.hint)
            if exc.hint:
                click.echo(f" (hint: {exc.hint})", err=True)
            ctx.exit(exc.exit_code)


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


def build_request(script: str, args: tuple[str, ...], params: dict[str, Any]):
    from hfuv.job import ScriptRequest
    from hfuv.plan import CliOptions

    options = CliOptions(
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
    return ScriptRequest(
        script=script,
        args=args,
        options=options,
        with_deps=params.get("with_deps", ()),
        files=params.get("files", ()),
        gist_file=params.get("gist_file"),
        sha256=params.get("sha256"),
    )


def warn(messages: list[str]) -> None:
    for message in messages:
        click.echo(f"warning: {message}", err=True)


@cli.command(context_settings=RUN_CONTEXT)
@click.argument("script")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@script_options
@click.option("--file", "files", multiple=True, metavar="PATH", help="Ship a file or directory.")
@click.option("--local", is_flag=True, help="Run the job on this machine.")
@click.option("--dry-run", is_flag=True, help="Print the request and its cost; send nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: one JSON object.")
def run(script: str, args: tuple[str, ...], local: bool, dry_run: bool, as_json: bool,
        **params: Any) -> None:  # fmt: skip
    """Run SCRIPT (a path, -, a URL, a gist or a GitHub/Hub page) as a job.

    Options may come before or after SCRIPT. Everything after `--` goes to the script untouched,
    and so do options hfuv does not know (`hfuv run s.py --lr 1e-4`). A script option whose name
    hfuv also uses (--name, --timeout, -e, …) must come after `--`.
    """
    from hfuv.errors import NotAvailableError, UsageError

    if local and dry_run:
        raise UsageError("--local and --dry-run are exclusive", hint="pick one")
    if as_json and not dry_run:
        raise UsageError("--json goes with --dry-run")
    if not (local or dry_run):
        raise NotAvailableError(
            "remote submission is not available yet",
            hint="use --local to run here, or --dry-run to print the request",
        )
    from hfuv.job import prepare_job

    request = build_request(script, args, params)
    job = prepare_job(request)
    warn(job.warnings)
    if dry_run:
        print_dry_run(job, request, as_json=as_json)
        return
    run_here(job)


def request_url(namespace: str | None) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/api/jobs/{namespace or '{namespace}'}"


def print_dry_run(job: Any, request: Any, *, as_json: bool) -> None:
    spec = job.spec
    config = job.inspection.config
    url = request_url(config.namespace)
    estimate = spec.estimate()
    if config.max_cost is not None:
        estimate["max_cost_usd"] = config.max_cost
        estimate["within_max_cost"] = estimate["max_usd"] <= config.max_cost
        if not estimate["within_max_cost"]:
            warn([f"the worst case (${estimate['max_usd']:.2f}) is over the max cost "
                  f"(${config.max_cost:.2f}, {config.origin('max_cost')}); a submission "
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


def run_here(job: Any) -> None:
    from hfuv import local
    from hfuv.uv import with_python_visible

    local.check_python(job.env.python, with_python_visible(os.environ, job.env.python))
    prepared = local.prepare(job.spec, environ=os.environ)

    def announce(run: Any) -> None:
        click.echo(
            f"hfuv: running {job.inspection.source.name} here as job {run.job_id} "
            f"(Python {job.env.python}, uv {job.env.uv_version}, {job.spec.flavor.name}; "
            f"remotely: {job.spec.estimate()['summary']}); work dir {run.workdir}",
            err=True,
        )

    code = local.execute(prepared, on_start=announce)
    sys.exit(code)


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
    from hfuv.flavors import format_cost, format_duration, get_flavor

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
    row("cost", format_cost(get_flavor(config.flavor), config.timeout_seconds))
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
def hardware(as_json: bool) -> None:
    """List the hardware flavors with their specs and price per hour."""
    from hfuv.flavors import CATALOG

    if as_json:
        rows = [
            {
                "name": f.name, "prettyName": f.pretty_name, "cpu": f"{f.cpu_cores} vCPU",
                "ram": f"{f.ram_gb} GB", "ephemeralStorage": f"{f.disk_gb} GB",
                "accelerator": None if not f.is_gpu else {
                    "type": "gpu", "model": f.gpu_model, "quantity": str(f.gpu_count),
                    "vram": f"{f.vram_gb} GB",
                },
                "usdPerHour": f.usd_per_hour,
            }
            for f in CATALOG.values()
        ]  # fmt: skip
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'NAME':<16}{'CPU':>5}{'RAM':>8}  {'ACCELERATOR':<26}{'$/HOUR':>8}")
    for f in CATALOG.values():
        gpu = f"{f.gpu_count}x {f.gpu_model} ({f.vram_gb} GB)" if f.is_gpu else "-"
        click.echo(f"{f.name:<16}{f.cpu_cores:>5}{f.ram_gb:>5} GB  {gpu:<26}{f.usd_per_hour:>8.2f}")


def main() -> None:
    cli(prog_name="hfuv")
