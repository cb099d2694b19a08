"""Run a JobSpec on this machine, as the job would run it.

Same bootstrap, same bundle bytes, same argv, same env names, same uv version and Python X.Y.
The process gets the job's env, its secrets and the built-in variables (JOB_ID, ACCELERATOR,
CPU_CORES, MEMORY) plus only what uv and Python need on this host, not the whole shell
environment.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from hfuv.cache import cache_dir
from hfuv.errors import PythonNotFoundError, UsageError
from hfuv.flavors import Flavor, get_flavor
from hfuv.jobenv import new_job_id
from hfuv.payload import JobSpec, bootstrap_source
from hfuv.runtime import Launch, host_capacity
from hfuv.runtime.host import host_process

if TYPE_CHECKING:
    from hfuv.plan import LaunchConfig

UV_IMAGES = "ghcr.io/astral-sh/uv:"  # uv and Python, as here: the bootstrap checks uv's version


@dataclass(frozen=True)
class LocalRun:
    job_id: str
    workdir: Path
    argv: list[str]
    env: dict[str, str]
    timeout_seconds: int | None = None


def prepare(
    spec: JobSpec,
    *,
    environ: Mapping[str, str],
    job_id: str | None = None,
    workdir: Path | None = None,
) -> LocalRun:
    """The argv and environment the local process gets; nothing is started."""
    return prepare_body(spec.body, spec.flavor, environ=environ, job_id=job_id, workdir=workdir)


def prepare_body(
    body: Mapping[str, Any],
    flavor: Flavor,
    *,
    environ: Mapping[str, str],
    job_id: str | None = None,
    workdir: Path | None = None,
) -> LocalRun:
    """Like `prepare`, from the JSON body of a job (as `hfuv server` receives it)."""
    job_id = job_id or new_job_id()
    workdir = workdir or cache_dir() / "runs" / job_id
    env = job_environment(body, flavor, job_id)
    command = [*(body.get("command") or []), *(body.get("arguments") or [])]
    argv, env = host_process(command, env, environ, workdir)
    timeout = body.get("timeoutSeconds")
    return LocalRun(job_id=job_id, workdir=workdir, argv=argv, env=env, timeout_seconds=timeout)


def job_environment(body: Mapping[str, Any], flavor: Flavor, job_id: str) -> dict[str, str]:
    """The job's env, its secrets and the built-in variables the flavor gives, as in a job."""
    env = dict(body.get("environment") or {})
    env.update(body.get("secrets") or {})
    env.update(
        {
            "JOB_ID": job_id,
            "ACCELERATOR": flavor.accelerator,
            "CPU_CORES": str(flavor.cpu_cores),
            "MEMORY": flavor.memory,
        }
    )
    return env


def container_launch(spec: JobSpec, job_id: str | None = None) -> tuple[Launch, list[str]]:
    """The launch of `hfuv run --local --runtime ENGINE`: the JobSpec in its image, with the
    flavor's CPUs, memory and GPUs (capped at what this machine has), and what was capped."""
    body, flavor = spec.body, spec.flavor
    job_id = job_id or new_job_id()
    capacity = host_capacity()
    cpus = min(float(flavor.cpu_cores), capacity.cpus)
    wanted = flavor.ram_gb * 1024**3
    memory = min(wanted, capacity.memory_bytes) if capacity.memory_bytes else wanted
    gpus = tuple(str(index) for index in range(min(flavor.gpu_count, _nvidia_gpu_count())))
    notes = []
    if (cpus, memory) != (flavor.cpu_cores, wanted):
        notes.append(f"flavor {flavor.name} has {flavor.cpu_cores} vCPU and {flavor.ram_gb} GB; "
                     f"this machine has {capacity.describe()}, so the job gets {cpus:g} CPUs "
                     f"and {memory / 1024**3:.1f} GiB here")  # fmt: skip
    if 0 < len(gpus) < flavor.gpu_count:
        notes.append(f"flavor {flavor.name} has {flavor.gpu_count} GPUs; the job gets this "
                     f"machine's {len(gpus)}")  # fmt: skip
    launch = Launch(
        job_id=job_id,
        image=str(body.get("dockerImage") or ""),
        argv=(*(body.get("command") or []), *(body.get("arguments") or [])),
        env=job_environment(body, flavor, job_id),
        workdir=cache_dir() / "runs" / job_id,
        timeout_seconds=int(body["timeoutSeconds"]),
        cpus=cpus,
        memory_bytes=memory,
        gpus=gpus,
        interactive=True,
    )
    return launch, notes


def _nvidia_gpu_count() -> int:
    if not shutil.which("nvidia-smi"):
        return 0
    import subprocess

    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listed.stdout.splitlines())


def check_runs_here(config: LaunchConfig, runtime: str = "host") -> None:
    """Refuse, before anything is locked, what only a job on Hugging Face has; add a warning
    for what this machine gives differently (the image on `host`, the flavor's GPUs).

    The timeout is enforced here; env, secrets and the flavor's built-in variables are set;
    labels, name, namespace and max cost only matter to the Jobs API.
    """
    as_job = "run it as a job (without --local)"
    for volume in config.volumes:
        mount = volume["mountPath"]
        origin = config.origin(f"volumes.{mount}")
        raise UsageError(
            f"a local run cannot mount volumes: {volume['type']} {volume['source']} at {mount} "
            f"(from {_flag_or(origin, '-v')}) is only mounted in a job",
            hint=f"drop -v here, or {as_job}" if origin == "flag"
            else f"{as_job}: the script would not find {mount} here",
        )  # fmt: skip
    if config.network_group:
        origin = config.origin("network_group")
        aliases = f" (aliases {', '.join(config.network_aliases)})" * bool(config.network_aliases)
        raise UsageError(
            f"a local run has no job network: network group {config.network_group}{aliases} "
            f"(from {_flag_or(origin, '--network-group')}) exists only between jobs",
            hint=f"drop --network-group here, or {as_job}" if origin == "flag" else as_job,
        )
    if config.attempts is not None and config.attempts > 1:
        origin = config.origin("attempts")
        raise UsageError(
            f"a local run is not retried: attempts {config.attempts} (from "
            f"{_flag_or(origin, '--attempts')}) is honoured by the Jobs API only",
            hint=f"drop --attempts here, or {as_job}" if origin == "flag" else as_job,
        )
    ports = [*config.expose, *config.expose_public]
    if ports:
        origin = config.origin("expose" if config.expose else "expose-public")
        here = f"drop --expose here (the script's port is at 127.0.0.1:{ports[0]} anyway)"
        raise UsageError(
            f"a local run has no job URL: port {ports[0]} (from "
            f"{_flag_or(origin, '--expose')}) is exposed through the Jobs API only",
            hint=f"{here}, or {as_job}" if origin == "flag" else as_job,
        )
    flavor = get_flavor(config.flavor)
    if flavor.is_gpu and not _has_nvidia_gpu():
        config.warnings.append(
            f"flavor {flavor.name} has {flavor.gpu_count}x {flavor.gpu_model}, and this machine "
            f"has no NVIDIA GPU: the script runs on CPU here (ACCELERATOR is still {flavor.name})"
        )
    if runtime == "host" and config.image and not config.image.startswith(UV_IMAGES):
        config.warnings.append(
            f"image {config.image} is not used here: a local run uses this machine's Python and "
            "system libraries"
        )


def _flag_or(origin: str, flag: str) -> str:
    return flag if origin == "flag" else origin


def _has_nvidia_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def check_python(python: str, environ: Mapping[str, str]) -> str:
    """The interpreter uv finds for Python X.Y; fail clearly, before anything runs, when
    there is none."""
    from hfuv import pythons

    found = pythons.find(python, environ)
    if found is None:
        raise PythonNotFoundError(
            f"Python {python} is not installed on this machine, and the job runs on {python}",
            hint=f"install it with `uv python install {python}`, or pick another with --python",
        )
    return found


def is_bootstrap(argv: list[str]) -> bool:
    return len(argv) >= 3 and argv[1] == "-c" and argv[2] == bootstrap_source()


def run_bootstrap(
    run: LocalRun,
    on_start: Callable[[LocalRun], None] | None = None,
    on_ready: Callable[[str, list[str], dict[str, bytes], str], None] | None = None,
    interpreter: str | None = None,
    source: str | None = None,
) -> NoReturn:
    """Run the job here: the bootstrap's steps in this process, then its `uv run`, within the
    job's timeout (see `hfuv.supervisor`); exit with the job's exit code.

    The same code the job's first process runs, without starting one more interpreter; uv runs
    the script from a code dir named by `source`, the user's script (see `hfuv.codedir`).
    Given `interpreter`, the one uv finds for the job's X.Y (`check_python`), uv gets its path
    instead of X.Y: the same Python, without uv's search through pyenv's shims whenever it
    builds an environment. `on_ready` gets the uv and argv chosen, the bundle's files and the
    code dir's name.
    """
    from hfuv import bootstrap, codedir, supervisor

    if not is_bootstrap(run.argv):
        raise UsageError("this job's command is not hfuv's bootstrap; it cannot run locally")
    run.workdir.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(run)
    placed: dict[str, Any] = {}

    def place_code(files: dict[str, bytes]) -> str:
        digest = run.env["HFUV_BUNDLE_SHA256"]
        python = interpreter or run.env.get("HFUV_INTERPRETER") or run.env["HFUV_PYTHON"]
        name = codedir.folder_name(source, files, run.env["HFUV_SCRIPT"], digest, python)
        placed.update(files=files, name=name)
        return codedir.place(str(cache_dir() / "code"), dict.fromkeys([name, digest[:32]]),
                             files)  # fmt: skip

    uv, argv, workdir = bootstrap.prepare(run.env, run.argv[3:], place_code)
    if interpreter:
        argv[argv.index("--python") + 1] = interpreter
    if on_ready:
        on_ready(uv, argv, placed["files"], placed["name"])
    supervisor.run_job(uv, argv, run.env, cwd=workdir, job_id=run.job_id,
                       timeout_seconds=run.timeout_seconds,
                       once_started=codedir.remove_replaced)  # fmt: skip
