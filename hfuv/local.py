"""Run a JobSpec on this machine, as the job would run it.

Same bootstrap, same bundle bytes, same argv, same env names, same uv version and Python X.Y.
The process gets the job's env, its secrets and the built-in variables (JOB_ID, ACCELERATOR,
CPU_CORES, MEMORY) plus only what uv and Python need on this host, not the whole shell
environment.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from hfuv.cache import cache_dir
from hfuv.errors import PythonNotFoundError, UsageError
from hfuv.flavors import Flavor
from hfuv.jobenv import host_environment, new_job_id
from hfuv.payload import JobSpec, bootstrap_source
from hfuv.uv import with_python_visible


@dataclass(frozen=True)
class LocalRun:
    job_id: str
    workdir: Path
    argv: list[str]
    env: dict[str, str]


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
    env = host_environment(environ)
    env.update(body.get("environment") or {})
    env.update(body.get("secrets") or {})
    env.update(
        {
            "JOB_ID": job_id,
            "ACCELERATOR": flavor.accelerator,
            "CPU_CORES": str(flavor.cpu_cores),
            "MEMORY": flavor.memory,
            "HFUV_WORKDIR": str(workdir),
        }
    )
    if env.get("HFUV_BUNDLE_SHA256"):
        env["HFUV_CODEDIR"] = str(cache_dir() / "code" / env["HFUV_BUNDLE_SHA256"][:32])
    argv = [*(body.get("command") or []), *(body.get("arguments") or [])]
    if env.pop("HFUV_INTERPRETER", None):
        argv[0] = "python3"
    if env.get("HFUV_PYTHON"):
        env = with_python_visible(env, env["HFUV_PYTHON"])
    if argv:
        found = shutil.which(argv[0], path=env.get("PATH"))
        if found:
            argv[0] = found
        elif argv[0] in ("python3", "python"):
            argv[0] = sys.executable
    return LocalRun(job_id=job_id, workdir=workdir, argv=argv, env=env)


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


def exec_bootstrap(
    run: LocalRun,
    on_start: Callable[[LocalRun], None] | None = None,
    on_ready: Callable[[str, list[str]], None] | None = None,
) -> NoReturn:
    """Become the job: run the bootstrap's steps in this process, then exec its `uv run`.

    The same code the job's first process runs, without starting one more interpreter; the
    script's exit code and signals (Ctrl-C included) are then the process's own.
    """
    from hfuv import bootstrap

    if not is_bootstrap(run.argv):
        raise UsageError("this job's command is not hfuv's bootstrap; it cannot run locally")
    run.workdir.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(run)
    uv, argv, workdir = bootstrap.prepare(run.env, run.argv[3:])
    if on_ready:
        on_ready(uv, argv)
    os.chdir(workdir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(uv, argv, run.env)
