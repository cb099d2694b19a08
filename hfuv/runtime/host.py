"""The `host` runtime: a job as processes on this machine, in a process group of its own.

No image: the command runs on this machine's Python and libraries, with the job's env plus only
what uv and Python need here (`hfuv.jobenv.host_environment`).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from hfuv.jobenv import host_environment
from hfuv.runtime import KILL_GRACE_SECONDS, Handle, Launch, Runtime, RuntimeFailure, Usage
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
        argv, env = host_process(list(launch.argv), launch.env, self.environ, launch.workdir)
        if launch.gpus:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(launch.gpus)
        launch.workdir.mkdir(parents=True, exist_ok=True)
        try:
            process = subprocess.Popen(
                with_watchdog(argv, launch.timeout_seconds, launch.workdir),
                env=env,
                cwd=launch.workdir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
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


class HostHandle(Handle):
    def __init__(self, job_id: str, process: subprocess.Popen[bytes]) -> None:
        self.job_id = job_id
        self.process = process

    @property
    def reference(self) -> str:
        return self.job_id

    def output(self) -> Iterator[bytes]:
        assert self.process.stdout is not None
        yield from self.process.stdout

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
