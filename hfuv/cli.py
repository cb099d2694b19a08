"""The `hfuv` command line: the group, the options and helpers its commands share, and `server`.

The commands themselves live in `hfuv.commands`, by theme. They parse, call the core and print;
no logic lives in them.

Heavy modules are imported inside the commands that need them, so `hfuv --help` stays fast.
stdout carries results (JSON, job specs, the script's own output); stderr carries status.
"""

from __future__ import annotations

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


class LaunchCommand(click.Command):
    """A command that launches a script or a command and passes it the options hfuv does not
    know, except those that look like a mistake (`hfuv.passthrough`)."""

    def __init__(self, *args: Any, passes_to: str = "script", **kwargs: Any) -> None:
        super().__init__(*args, context_settings=RUN_CONTEXT, **kwargs)
        self.passes_to = passes_to

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from hfuv.passthrough import check, negative_numbers_protected

        own = {
            name: None if option.is_flag or option.count else value_spelling(option)
            for option in options_of(self.get_params(ctx))
            for name in option_names(option)
        }
        others: dict[str, list[str]] = {}
        for path, command in launch_commands(cli, "hfuv"):
            for option in options_of(command.params):
                for name in option_names(option):
                    if name not in own:
                        others.setdefault(name, []).append(path)
        protected, restore = negative_numbers_protected(args)
        check(protected, own, others, where=ctx.command_path, target=self.passes_to)
        rest = restore(super().parse_args(ctx, protected))
        for name, value in ctx.params.items():
            if isinstance(value, (str, tuple)):
                ctx.params[name] = restore(value)
        self.refuse_options_as_arguments(ctx)
        return rest

    def refuse_options_as_arguments(self, ctx: click.Context) -> None:
        """`hfuv run --foo s.py`: click hands the unknown `--foo` on as SCRIPT (`-` is stdin)."""
        from hfuv.errors import UsageError

        arguments = [p for p in self.get_params(ctx) if isinstance(p, click.Argument)]
        single = [argument for argument in arguments if argument.nargs == 1]
        for argument in single:
            value = ctx.params.get(argument.name or "")
            if isinstance(value, str) and value.startswith("-") and value != "-":
                noun = argument.human_readable_name.lower()
                raise UsageError(
                    f"{value} is not {'an' if noun[0] in 'aeiou' else 'a'} {noun}: "
                    f"hfuv has no option {value}",
                    hint=f"options for the {self.passes_to} go after "
                    f"{single[-1].human_readable_name}, or after --",
                )


def options_of(params: list[click.Parameter]) -> list[click.Option]:
    return [param for param in params if isinstance(param, click.Option)]


def option_names(option: click.Option) -> list[str]:
    return [*option.opts, *option.secondary_opts]


def value_spelling(option: click.Option) -> str:
    """The name to attach an option's value to (`--label=V`, not `-l=V`, which means `=V`)."""
    return next((name for name in option.opts if name.startswith("--")), option.opts[0])


def launch_commands(group: click.Group, path: str) -> list[tuple[str, LaunchCommand]]:
    """Every LaunchCommand under `group`, with its full name (`hfuv schedule create`)."""
    found: list[tuple[str, LaunchCommand]] = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += launch_commands(command, f"{path} {name}")
        elif isinstance(command, LaunchCommand):
            found.append((f"{path} {name}", command))
    return found


class HfuvGroup(click.Group):
    """Maps hfuv's errors to one `error:` line on stderr and their exit code, Ctrl-C to exit
    130 (as a shell reports it; click would print `Aborted!` and exit 1), and a closed stdout
    to a quiet exit 0, in one place."""

    def invoke(self, ctx: click.Context) -> Any:
        from hfuv.errors import HfuvError, report

        try:
            return super().invoke(ctx)
        except HfuvError as exc:
            ctx.exit(report(exc))
        except BrokenPipeError:  # `hfuv logs ID | head`: a normal end for a pipe, as for cat
            from hfuv.terminal import stdout_closed

            stdout_closed()
            ctx.exit(0)
        except (KeyboardInterrupt, click.Abort):
            ctx.exit(130)
        except click.ClickException as exc:  # click's own: one line, as for hfuv's errors
            ctx.exit(report(click_error(exc)))


def click_error(exc: click.ClickException) -> Any:
    """click's usage error (its message, and where help is) as one of hfuv's errors."""
    from hfuv.errors import HfuvError, UsageError

    message = exc.format_message()
    message = (message[:1].lower() + message[1:]).replace(". (", " (").rstrip(".")
    if not isinstance(exc, click.UsageError):
        return HfuvError(message)
    command = exc.ctx.command_path if exc.ctx else "hfuv"
    return UsageError(message, hint=f"`{command} --help` lists what it takes")


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


def exec_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options of every job: hardware, limits, environment, labels, volumes, network, cost."""
    decorators = [
        click.option("--flavor", help="Hardware flavor (default cpu-basic; see `hfuv hardware`)."),
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
        click.option("--attempts", type=int, metavar="N",
                     help="Run a failed job up to N times in all (default 1)."),
        click.option("--expose", "expose", multiple=True, type=int, metavar="PORT",
                     help="Serve PORT at the job's URL, to holders of a token of its namespace."),
        click.option("--expose-public", "expose_public", multiple=True, type=int, metavar="PORT",
                     help="Serve PORT at the job's URL to anyone, without a token."),
        click.option("--network-group", help="Network group of the job."),
        click.option("--network-alias", "network_aliases", multiple=True,
                     help="Alias in the network group."),
        click.option("--max-cost", type=float, envvar="HFUV_MAX_COST", metavar="USD",
                     help="Refuse to submit if the worst case costs more [env: HFUV_MAX_COST]."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def script_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """`exec_options`, and where the script comes from and what runs it (which a job of an
    image and a command, `hfuv exec`, does not have)."""
    decorators = [
        click.option("--image", help="Docker image (default: the uv image for the chosen Python)."),
        click.option("-p", "--python", help="Python X.Y, or an interpreter path in the image."),
        click.option("--with", "with_deps", multiple=True, metavar="REQ",
                     help="Extra dependency, locked with the script's own."),
        click.option("--gist-file", metavar="NAME", help="File to run from a multi-file gist."),
        click.option("--sha256", metavar="HEX", help="Refuse the script unless it has this hash."),
    ]  # fmt: skip
    for decorator in reversed(decorators):
        func = decorator(func)
    return exec_options(func)


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
        attempts=params.get("attempts"),
        expose=params.get("expose", ()),
        expose_public=params.get("expose_public", ()),
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
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8790, show_default=True)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False),
    help="Where jobs and logs live [default: HFUV_SERVER_DATA, /var/lib/hfuv/server as root, "
    "else hfuv's cache dir].",
)
@click.option(
    "--token",
    "token_specs",
    multiple=True,
    metavar="NAME=TOKEN",
    help="A user and its token (NAME@ORG1,ORG2=TOKEN for org members); visible in the process "
    "list: prefer --tokens-file or HFUV_SERVER_TOKENS (specs separated by whitespace).",
)
@click.option("--tokens-file", type=click.Path(dir_okay=False), help="One NAME=TOKEN per line.")
@click.option(
    "--insecure-shared-host",
    is_flag=True,
    help="Run every job as this server's user, even for tokens of several users (their jobs "
    "can then read each other's secrets).",
)
@click.option(
    "--max-parallel",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Jobs running at once; the rest wait in SCHEDULING.",
)
@click.option(
    "--gpus",
    envvar="HFUV_SERVER_GPUS",
    default="all",
    show_default=True,
    metavar="all|none|0,1,...",
    help="GPUs jobs may have, each one job's at a time (all: those nvidia-smi -L lists).",
)
@click.option(
    "--max-log-size",
    default="256M",
    show_default=True,
    metavar="SIZE",
    help="Largest log a job keeps (K, M, G); beyond it, its first and newest lines are kept, "
    "with a marker where lines were dropped.",
)
@click.option(
    "--runtime",
    type=click.Choice(["host", "podman", "docker", "ray"]),
    envvar="HFUV_RUNTIME",
    help="What runs the jobs: a container engine (each job in its image), this host, or a Ray "
    "cluster (--ray-address) [default: podman or docker when installed, else host; env: "
    "HFUV_RUNTIME].",
)
@click.option(
    "--ray-address",
    envvar="HFUV_RAY_ADDRESS",
    metavar="URL",
    help="--runtime ray: the Ray head's dashboard, e.g. http://HEAD:8265 [env: HFUV_RAY_ADDRESS].",
)
def server(host: str, port: int, data_dir: str | None, token_specs: tuple[str, ...],
           tokens_file: str | None, insecure_shared_host: bool,
           max_parallel: int, gpus: str, max_log_size: str,
           runtime: str | None, ray_address: str | None) -> None:  # fmt: skip
    """Serve the Hugging Face Jobs API here and run its jobs on this machine (or a Ray
    cluster)."""
    import os
    from pathlib import Path

    from hfuv.errors import UsageError
    from hfuv.server import default_data_dir, serve

    given = click.get_current_context().get_parameter_source("ray_address")
    if runtime != "ray" and given == click.core.ParameterSource.COMMANDLINE:
        raise UsageError("--ray-address is for --runtime ray", hint="add --runtime ray")
    if runtime == "ray":
        if not ray_address:
            raise UsageError("--runtime ray needs the Ray head's dashboard URL",
                             hint="add --ray-address http://HEAD:8265")  # fmt: skip
        os.environ["HFUV_RAY_ADDRESS"] = ray_address  # the runtime, and a restarted one, read it

    serve(
        host=host,
        port=port,
        data_dir=Path(data_dir) if data_dir else default_data_dir(),
        token_specs=token_specs,
        tokens_file=Path(tokens_file) if tokens_file else None,
        max_parallel=max_parallel,
        gpus=gpus,
        max_log_size=max_log_size,
        runtime_kind=runtime,
        announce=lambda line: click.echo(line, err=not line.startswith("HF_ENDPOINT=")),
        insecure_shared_host=insecure_shared_host,
    )


def main() -> None:
    cli(prog_name="hfuv")


# The commands register themselves on `cli` when imported; they need the helpers above.
from hfuv.commands import automation, cache, jobs, scripts  # noqa: E402, F401
