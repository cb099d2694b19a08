"""From a SCRIPT argument to a JobSpec: source → metadata → launch config → lock → spec.

Every way of using a job (dry run, local run, submission) goes through `prepare_job`, so a local
run executes exactly the JobSpec a dry run prints.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from hfuv import lock, payload, pep723, plan, sources
from hfuv.cache import cache_dir
from hfuv.errors import ConfigError, UsageError


@dataclass(frozen=True)
class ScriptRequest:
    """What the user asked to run: the SCRIPT argument and everything about it."""

    script: str
    args: tuple[str, ...] = ()
    options: plan.CliOptions = field(default_factory=plan.CliOptions)
    with_deps: tuple[str, ...] = ()
    files: tuple[str, ...] = ()
    gist_file: str | None = None
    sha256: str | None = None
    refresh: bool = False  # resolve again instead of reusing a cached lock


@dataclass(frozen=True)
class Inspection:
    """What the script declares and what would run, before anything is locked."""

    source: sources.ScriptSource
    metadata: pep723.ScriptMetadata
    config: plan.LaunchConfig
    python: str | None  # None only when nothing satisfies requires-python (check reports it)
    interpreter: str | None
    python_choice: lock.PythonChoice | None = None
    requires_python: str | None = None  # the script's, else its SCRIPT.lock's (see lock.py)


@dataclass(frozen=True)
class PreparedJob:
    inspection: Inspection
    env: lock.EnvSpec
    spec: payload.JobSpec

    @property
    def warnings(self) -> list[str]:
        return self.inspection.config.warnings


def inspect_script(
    request: ScriptRequest,
    environ: Mapping[str, str] | None = None,
    *,
    require_python: bool = True,
    lock_says: bool = True,
) -> Inspection:
    """Read and parse the script and merge its launch config; nothing is locked or installed.

    With `require_python=False` (for `check`), a requires-python that no supported Python meets
    is a warning instead of an error: the metadata is valid, and `run` is where it fails. With
    `lock_says=False` (for `hfuv lock`), a SCRIPT.lock does not stand in for a requires-python
    the script lacks.
    """
    environ = os.environ if environ is None else environ
    plan.validate_flags(request.options)
    source = sources.load(
        request.script,
        environ=environ,
        gist_file=request.gist_file,
        sha256=request.sha256,
        cache=cache_dir(),
    )
    metadata = pep723.parse(source.content, source.name)
    config = plan.resolve(request.options, metadata.tool, where=source.name, environ=environ)
    requires_python, declared_in = metadata.requires_python, source.name
    if lock_says:
        requires_python, declared_in = lock.declared_requires_python(source, metadata)
    choice = None
    try:
        choice = lock.choose_python(requires_python, config.python, declared_in, environ=environ)
    except ConfigError as exc:
        if require_python:
            raise
        config.warnings.append(str(exc))
    python = choice.version if choice else None
    interpreter = config.python if config.python and config.python.startswith("/") else None
    if interpreter:
        config.warnings.append(
            f"python is the interpreter path {interpreter} inside the image; a local run uses "
            f"Python {python} (chosen from requires-python) instead"
        )
    if source.command and not request.with_deps and source.command not in ("python", "python3"):
        config.warnings.append(
            f"{source.command} is not a file here, so it runs as a command (give a path to run "
            "a script; --with adds the packages a command comes from)"
        )
    return Inspection(source, metadata, config, python, interpreter, choice, requires_python)


def prepare_job(
    request: ScriptRequest,
    environ: Mapping[str, str] | None = None,
    *,
    local: bool = False,
    runtime: str = "host",
) -> PreparedJob:
    """Inspect, lock and build the JobSpec for `request`; for a `local` run (on `runtime`),
    first refuse what only a job has."""
    inspection = inspect_script(request, environ)
    if local:
        from hfuv.local import check_runs_here

        check_runs_here(inspection.config, runtime)
    env_spec = lock.build_env(
        inspection.source,
        inspection.metadata,
        python=inspection.python,
        interpreter=inspection.interpreter,
        with_deps=request.with_deps,
        refresh=request.refresh,
        requires_python=inspection.requires_python,
    )
    command = inspection.source.command
    spec = payload.build_job_spec(
        source=inspection.source,
        env_spec=env_spec,
        config=inspection.config,
        args=(command, *request.args) if command else request.args,
        extra_files=payload.collect_extra_files(request.files),
    )
    return PreparedJob(inspection, env_spec, spec)


def input_files(request: ScriptRequest, job: PreparedJob) -> list[str] | None:
    """Every file whose content or presence shaped `job`, or None when something else did
    (a script fetched from a URL or stdin, a lock that is not on disk)."""
    from hfuv.flavors import CATALOG
    from hfuv.uv import find_uv

    source_path = job.inspection.source.path
    read_from_stdin = "-" in (*request.options.env_files, *request.options.secrets_files)
    if source_path is None or job.env.lock_file is None or read_from_stdin:
        return None
    paths = [str(source_path), str(lock.lock_path(source_path)), job.env.lock_file, find_uv()]
    choice = job.inspection.python_choice
    if choice is not None and choice.by_host:  # a Python installed since can change it
        from hfuv.pythons import search_locations

        paths += search_locations(os.environ)
    paths += [*request.options.env_files, *request.options.secrets_files]
    if job.spec.flavor.name not in CATALOG:  # a flavor learned from an endpoint's list
        folder = cache_dir() / "hardware"
        paths += [str(folder), *(str(path) for path in sorted(folder.glob("*.json")))]
    for given in request.files:
        paths.append(given)
        for folder, dirs, names in os.walk(given):
            dirs.sort()
            paths += [os.path.join(folder, name) for name in sorted(dirs + names)]
    return paths


def lock_status(inspection: Inspection) -> str:
    """`none`, `current`, `stale`, `remote` or `command` for the SCRIPT.lock beside a local
    script."""
    source = inspection.source
    if source.command:
        return "command"
    if source.path is None:
        return "remote"
    if inspection.python is None:
        return "unknown"
    path = lock.lock_path(source.path)
    if not path.is_file():
        return "none"
    script = lock.shipped_script(
        source, inspection.metadata, (), inspection.python, inspection.requires_python
    )
    current = lock.is_lock_current(
        source.name, script, path.read_text(encoding="utf-8"), inspection.python
    )
    return "current" if current else "stale"


def write_lock(
    request: ScriptRequest, environ: Mapping[str, str] | None = None
) -> tuple[str, bool]:
    """`hfuv lock`: write or refresh SCRIPT.lock beside a local script. → (path, changed)."""
    script = request.script
    if script == "-" or re.match(r"https?://", script) or sources.is_command(script):
        raise UsageError("hfuv lock writes SCRIPT.lock beside a local script; give a file path")
    inspection = inspect_script(request, environ, lock_says=False)
    source, metadata = inspection.source, inspection.metadata
    lock.reject_local_paths(metadata, source.name)
    path = lock.lock_path(source.path)
    previous = path.read_text(encoding="utf-8") if path.is_file() else None
    if metadata.found and not metadata.requires_python:
        # uv locks such a script for `>=` the Python it runs it with, and rewrites a lock made
        # for another one on the next `uv run`: lock for that Python, as uv would.
        script, python = source.content, lock.uv_python_for(source.path)
        asked, origin = inspection.config.python, inspection.config.origin("python")
        if asked and not asked.startswith("/") and not lock.python_allowed(f">={python}", asked):
            raise ConfigError(
                f"{source.name} declares no requires-python, so `uv run` locks it for Python "
                f">={python}, the one it runs it with, and would rewrite a lock for python "
                f"{asked} (from {'--python' if origin == 'flag' else origin})",
                hint=f'add requires-python = ">={asked}" to its metadata block',
            )
    else:
        script = lock.shipped_script(source, metadata, (), inspection.python)
        python = inspection.python
    text = lock.lock_script(source.name, script, python, previous=previous, metadata=metadata)
    if text == previous:
        return str(path), False
    path.write_text(text, encoding="utf-8")
    return str(path), True
