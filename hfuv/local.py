"""Run a JobSpec on this machine, as the job would run it.

Same bootstrap, same bundle bytes, same argv, same env names, same uv version and Python X.Y.
The process gets the job's env, its secrets and the built-in variables (JOB_ID, ACCELERATOR,
CPU_CORES, MEMORY) plus only what uv and Python need on this host, not the whole shell
environment.
"""

from __future__ import annotations

import re
import secrets as _secrets
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfuv.cache import cache_dir
from hfuv.errors import PythonNotFoundError, UsageError
from hfuv.flavors import Flavor
from hfuv.payload import JobSpec
from hfuv.uv import run_uv, with_python_visible

HOST_VARIABLES = (
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM", "NO_COLOR",
    "FORCE_COLOR", "TMPDIR", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NIX_SSL_CERT_FILE", "PYENV_ROOT", "PYENV_VERSION",
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX", "PIP_CERT",
)  # fmt: skip
_HOST_PATTERNS = re.compile(r"(UV_.*|LC_.*|(?i:(https?|no|all)_proxy))")


@dataclass(frozen=True)
class LocalRun:
    job_id: str
    workdir: Path
    argv: list[str]
    env: dict[str, str]


def new_job_id() -> str:
    """24 hex characters, the shape of a Hugging Face job id."""
    return _secrets.token_hex(12)


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {
        key: value
        for key, value in environ.items()
        if key in HOST_VARIABLES or _HOST_PATTERNS.fullmatch(key)
    }


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


def check_python(python: str, environ: Mapping[str, str]) -> None:
    result = run_uv(["python", "find", python], env=environ, check=False)
    if result.returncode != 0:
        raise PythonNotFoundError(
            f"Python {python} is not installed on this machine, and the job runs on {python}",
            hint=f"install it with `uv python install {python}`, or pick another with --python",
        )


def execute(run: LocalRun, *, on_start: Callable[[LocalRun], None] | None = None) -> int:
    """Start the job's process, stream its output live, and return its exit code.

    Ctrl-C reaches the script directly (same process group, same terminal); hfuv itself ignores
    it and waits, so the script decides how to stop. SIGTERM to hfuv is passed on.
    """
    run.workdir.mkdir(parents=True, exist_ok=True)
    if on_start:
        on_start(run)
    try:
        process = subprocess.Popen(run.argv, env=run.env)
    except OSError as exc:
        raise UsageError(f"cannot start {run.argv[0]}: {exc.strerror}") from None
    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def forward(signum: int, _frame: object) -> None:
        process.send_signal(signum)

    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        code = process.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    return 128 - code if code < 0 else code
