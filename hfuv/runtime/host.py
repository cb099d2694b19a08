"""The `host` runtime: a job as processes on this machine, in a process group of its own.

No image: the command runs on this machine's Python and libraries, with the job's env plus only
what uv and Python need here (`hfuv.jobenv.host_environment`).

Given `Launch.user` (a root server's jobs), the job runs as that uid and gid, with no other
groups and umask 077, in its work dir (owned by it, 0700), which is also its HOME, with its own
TMPDIR and its user's own caches (uv's, and the uv the bootstrap installs). It sees only the
PATH entries every user can reach: a Python under a private home (pyenv in a 0700 /root) is not
one, so Pythons for such jobs go where all users can run them (`uv python install` with a shared
UV_PYTHON_INSTALL_DIR, or the system's).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from hfuv.jobenv import host_environment
from hfuv.runtime import (
    KILL_GRACE_SECONDS,
    Handle,
    Launch,
    Runtime,
    RuntimeFailure,
    Usage,
    lines_of,
)
from hfuv.uv import with_python_visible


def host_process(
    argv: list[str], job_env: Mapping[str, str], environ: Mapping[str, str], workdir: Path
) -> tuple[list[str], dict[str, str]]:
    """The argv and env a job's command gets on this machine: the job's env over the host's
    few variables, its command resolved on PATH, uv able to see the job's Python."""
    env = host_environment(environ)
    env.update(job_env)
    env["HFUV_WORKDIR"] = str(workdir)
    argv = list(argv)
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
    return argv, env


# The job's command runs under this: a watchdog in the job's own process group that kills the
# group at the timeout (plus the grace the server's own timer gives), or once the job's first
# process is gone and reaped, which the server does at once, and init when no server is left.
# It holds the group's id until then, so that no other process can be given it.
WATCHDOG = (
    '(end=$(($(date +%s) + $0)); while [ "$(date +%s)" -lt "$end" ] && kill -0 $$; do sleep 1; '
    'done; kill -KILL 0) </dev/null >/dev/null 2>&1 & exec "$@"'
)


def with_watchdog(argv: list[str], timeout_seconds: int, cwd: Path) -> list[str]:
    """`argv` under the watchdog; a command that cannot run fails here, as it would alone."""
    command = argv[0] if argv else ""
    path = cwd / command
    if "/" not in command or not path.is_file():
        raise RuntimeFailure(f"{command}: No such file or directory")
    if not os.access(path, os.X_OK):
        raise RuntimeFailure(f"{command}: Permission denied")
    limit = timeout_seconds + math.ceil(KILL_GRACE_SECONDS) + 1
    return ["/bin/sh", "-c", WATCHDOG, str(limit), *argv]


class HostRuntime(Runtime):
    kind = "host"

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = dict(environ)

    def describe(self) -> str:
        return "host (jobs run on this machine's Python; images are not used)"

    def start(self, launch: Launch) -> Handle:
        if launch.mounts:  # hfuv server refuses such jobs at create; a restarted one may differ
            raise RuntimeFailure(f"the host runtime cannot mount {launch.mounts[0].target}")
        environ = self.environ if launch.user is None else for_job_user(self.environ)
        argv, env = host_process(list(launch.argv), launch.env, environ, launch.workdir)
        if launch.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(launch.gpus)
        as_user: dict[str, Any] = {}
        if launch.user is None:
            launch.workdir.mkdir(parents=True, exist_ok=True)
        else:
            as_user = own_user(launch, argv, env)
        try:
            process = subprocess.Popen(
                with_watchdog(argv, launch.timeout_seconds, launch.workdir),
                env=env,
                cwd=launch.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **as_user,
            )
        except OSError as exc:
            raise RuntimeFailure(f"{argv[0]}: {exc.strerror}") from None
        return HostHandle(launch.job_id, process)

    def end_orphan(self, reference: str) -> None:
        """Kill every process carrying the job's JOB_ID (Linux: read from /proc)."""
        marker = f"JOB_ID={reference}".encode()
        for entry in Path("/proc").glob("[0-9]*"):
            try:
                if marker in (entry / "environ").read_bytes().split(b"\0"):
                    os.kill(int(entry.name), signal.SIGKILL)
            except (OSError, ValueError):
                continue


# What the server's own user has that a job's user must not share or inherit.
PRIVATE_VARIABLES = ("HOME", "TMPDIR", "XDG_CACHE_HOME", "USER", "LOGNAME")


def for_job_user(environ: Mapping[str, str]) -> dict[str, str]:
    """The server's environment as a job of a user of its own inherits it."""
    return {key: value for key, value in environ.items() if key not in PRIVATE_VARIABLES}


def own_user(launch: Launch, argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Prepare the job's own dirs and env for `launch.user`; the Popen arguments that run it so.
    (`argv` and `env` are changed in place.)"""
    assert launch.user is not None
    uid, gid = launch.user
    home = launch.workdir
    caches = launch.caches or home / ".cache"
    for parent in dict.fromkeys((home.parent, caches.parent)):  # in order: work dir first
        if closed := blocker(str(parent)):
            raise RuntimeFailure(
                f"the job's own user (uid {uid}) cannot reach its folders in {parent}: "
                f"{closed} is closed to other users; give hfuv server a "
                "--data-dir that every user can pass through, e.g. /var/lib/hfuv"
            )
    for folder in (home, home / ".tmp", caches):
        folder.mkdir(exist_ok=True)
        os.chown(folder, uid, gid)
        folder.chmod(0o700)
    own = {"HOME": home, "TMPDIR": home / ".tmp", "XDG_CACHE_HOME": caches,
           "UV_CACHE_DIR": caches / "uv"}  # fmt: skip
    for key, value in own.items():
        if key not in launch.env:  # the job's own settings stand: its user writes nowhere else
            env[key] = str(value)
    env["PATH"] = reachable_path(env.get("PATH", ""))
    if argv and blocker(argv[0]):
        found = which_reachable(os.path.basename(launch.argv[0]), env["PATH"])
        if not found:
            raise RuntimeFailure(
                f"{launch.argv[0]} cannot be run by the job's own user (uid {uid}): "
                f"{argv[0]} is in {blocker(argv[0])}, which other users cannot enter, and no "
                "PATH entry they can reach has one; install it where every user can run it"
            )
        argv[0] = found
    as_user = {"user": uid, "group": gid, "extra_groups": [], "umask": 0o077}
    if env.get("HFUV_PYTHON"):
        check_python(env["HFUV_PYTHON"], env, home, as_user)
    return as_user


def check_python(python: str, env: dict[str, str], home: Path, as_user: dict[str, Any]) -> None:
    """Fail the start, saying why, when uv finds no Python `python` (X.Y) this user can run."""
    uv = which_reachable("uv", env.get("PATH", ""))
    if uv is None:
        return  # the bootstrap installs uv, and uv then says what is missing
    try:
        command = [uv, "python", "find", python]
        found = subprocess.run(
            command, env=env, cwd=home, capture_output=True, timeout=60, **as_user
        )
    except (OSError, subprocess.SubprocessError):
        return
    if found.returncode != 0:
        raise RuntimeFailure(
            f"Python {python} is not installed where the job's own user can run it (a Python "
            "in a private home, such as pyenv's in a 0700 /root, is out of its reach); install "
            f"it for all users: the system's python{python}, or `uv python install {python}` "
            "with a UV_PYTHON_INSTALL_DIR every user can read, set for hfuv server too"
        )


def blocker(path: str) -> str | None:
    """What keeps a user with no rights of its own here from `path`: the first directory on
    the way (links resolved) that others cannot search, or `path` itself; None if nothing."""
    real = Path(os.path.realpath(path))
    for place in (*reversed(real.parents), real):
        try:
            if not place.stat().st_mode & stat.S_IXOTH:
                return str(place)
        except OSError:
            return str(place)
    return None


def reachable_path(path: str) -> str:
    return os.pathsep.join(
        entry for entry in path.split(os.pathsep) if entry and not blocker(entry)
    )


def which_reachable(name: str, path: str) -> str | None:
    for folder in path.split(os.pathsep):
        candidate = os.path.join(folder, name)
        if os.path.isfile(candidate) and not blocker(candidate):
            return candidate
    return None


class HostHandle(Handle):
    def __init__(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        self.job_id = job_id
        self.process = process

    @property
    def reference(self) -> str:
        return self.job_id

    def output(self) -> Iterator[bytes]:
        assert self.process.stdout is not None
        yield from lines_of(self.process.stdout)

    def wait(self) -> int:
        code = self.process.wait()
        # Whatever the job left behind in its process group goes with it.
        self._signal(signal.SIGKILL)
        return 128 - code if code < 0 else code

    def terminate(self, grace: float = KILL_GRACE_SECONDS) -> None:
        self._signal(signal.SIGTERM)

        def finish() -> None:
            try:
                self.process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)

        threading.Thread(target=finish, daemon=True).start()

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def usage(self) -> Usage:
        """CPU and memory of the job's process group, from ps."""
        try:
            out = subprocess.run(
                ["ps", "-A", "-o", "pgid=,rss=,pcpu="], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return Usage()
        usage = Usage()
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] == str(self.process.pid):
                usage.memory_bytes += int(fields[1]) * 1024
                usage.cpu_pct += float(fields[2])
        return usage

    def _signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)
