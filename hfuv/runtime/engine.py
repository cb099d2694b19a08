"""The `podman` and `docker` runtimes: a job as a container of its image, through the CLI both
engines share.

A job is the container `hfuv-job-ID` (label `hfuv.job=ID`), started detached, so it outlives the
server that started it and a new server re-attaches to it by name. The job's env reaches the
container by name only (`--env NAME`, the value in the engine process's environment), never in
an argv that `ps` shows. Its timeout holds while no server runs: podman's conmon kills the
container at `--timeout N`; docker has no such flag, so a detached watchdog process (`sleep N`,
then `docker kill`) does it, and a re-attaching server's own timer does too.
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
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from hfuv.runtime import (
    KILL_GRACE_SECONDS,
    Handle,
    Launch,
    Mount,
    Runtime,
    RuntimeFailure,
    Usage,
    lines_of,
)

NAME_PREFIX = "hfuv-job-"
# What the engine's own CLI reads from its environment: a job's variable of one of these names
# goes to the container through an env file instead, so that the engine still finds itself.
ENGINE_VARIABLES = frozenset(
    (
        "PATH", "HOME", "TMPDIR", "XDG_RUNTIME_DIR", "XDG_CONFIG_HOME", "XDG_DATA_HOME",
        "CONTAINERS_CONF", "CONTAINERS_STORAGE_CONF", "CONTAINERS_REGISTRIES_CONF",
        "CONTAINER_HOST", "CONTAINER_CONNECTION", "DOCKER_HOST", "DOCKER_CONFIG",
        "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY", "REGISTRY_AUTH_FILE",
    )
)  # fmt: skip
PROXY_VARIABLES = tuple(
    name
    for base in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    for name in (base.upper(), base)
)
# The host's certificate settings, mounted read-only and pointed at inside the container.
CERTIFICATE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SSL_CERT_DIR")
CERTIFICATES_IN_CONTAINER = "/run/hfuv/certs"


def container_name(job_id: str) -> str:
    return NAME_PREFIX + job_id


def certificate_mounts(launch: Launch, environ: Mapping[str, str]) -> dict[str, Mount]:
    """Each certificate setting of the host (that the job does not set itself) → its mount."""
    mounts = {}
    for name in CERTIFICATE_VARIABLES:
        path = environ.get(name)
        if path and name not in launch.env and os.path.exists(path):
            mounts[name] = Mount(Path(path), f"{CERTIFICATES_IN_CONTAINER}/{name.lower()}")
    return mounts


def container_env(launch: Launch, environ: Mapping[str, str]) -> dict[str, str]:
    """The container's env: the job's, plus the host's proxy and certificate settings when set
    (the job's own values win)."""
    env = {name: environ[name] for name in PROXY_VARIABLES if environ.get(name)}
    env.update({name: m.target for name, m in certificate_mounts(launch, environ).items()})
    env.update(launch.env)
    return env


def gpu_flags(kind: str, gpus: Iterable[str]) -> list[str]:
    """The engine's flags for exactly these GPUs: CDI devices (podman), `--gpus` (docker)."""
    gpus = list(gpus)
    if not gpus:
        return []
    if kind == "podman":
        return [flag for gpu in gpus for flag in ("--device", f"nvidia.com/gpu={gpu}")]
    # docker reads --gpus as CSV: a list of devices must be quoted to stay one field.
    return ["--gpus", f'"device={",".join(gpus)}"']


def engine_argv(
    kind: str, launch: Launch, environ: Mapping[str, str], *, env_file: Path | None = None
) -> list[str]:
    """`ENGINE run` for this launch. Pure: the values of the job's env are never in it (the
    engine takes them from its own environment by name, or from `env_file`)."""
    argv = [kind, "run", "-d", "--pull", "never", "--init", "--name",
            container_name(launch.job_id), "--label", f"hfuv.job={launch.job_id}"]  # fmt: skip
    if kind == "podman":
        argv += ["--timeout", str(launch.timeout_seconds)]
    else:  # docker stop's grace; the timeout itself is the watchdog's (see the module doc)
        argv += ["--stop-timeout", str(math.ceil(KILL_GRACE_SECONDS))]
    for name in container_env(launch, environ):
        if name not in ENGINE_VARIABLES:
            argv += ["--env", name]
    if env_file is not None:
        argv += ["--env-file", str(env_file)]
    if launch.cpus:
        argv += ["--cpus", f"{launch.cpus:g}"]
    if launch.memory_bytes:
        argv += ["--memory", str(launch.memory_bytes)]
    argv += gpu_flags(kind, launch.gpus)
    for port in launch.ports:
        argv += ["-p", f"127.0.0.1::{port}"]
    mounts = [*launch.mounts, *certificate_mounts(launch, environ).values()]
    for mount in mounts:
        argv += ["-v", f"{mount.source}:{mount.target}:{'ro' if mount.read_only else 'rw'}"]
    return [*argv, launch.image, *launch.argv]


def engine_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """What the engine's CLI needs of the server's environment, its proxies for pulls (and not
    the server's own secrets)."""
    return {name: environ[name] for name in (*ENGINE_VARIABLES, *PROXY_VARIABLES)
            if name in environ}  # fmt: skip


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("Error: ").removeprefix("error: ") if lines else "no output"


class EngineRuntime(Runtime):
    def __init__(self, kind: str, environ: Mapping[str, str]) -> None:
        self.kind = kind
        self.environ = dict(environ)
        self.binary = shutil.which(kind, path=environ.get("PATH")) or kind
        self.engine_env = engine_environment(self.environ)

    def command(self, *args: str, timeout: float | None = 60) -> subprocess.CompletedProcess[str]:
        """`ENGINE ARGS`, its output captured; a missing engine or a hang is a RuntimeFailure.
        In a session of its own, as every engine process here: a Ctrl-C that stops the server
        must not end the `wait` or `logs` of a container that outlives it."""
        try:
            return subprocess.run(
                [self.binary, *args], env=self.engine_env, capture_output=True, text=True,
                stdin=subprocess.DEVNULL, timeout=timeout, start_new_session=True,
            )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeFailure(f"{self.kind} is not installed (not found on PATH)") from None
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(f"`{self.kind} {args[0]}` did not answer in {timeout}s") from None

    def describe(self) -> str:
        done = self.command("version", "--format", "{{.Client.Version}}")
        if done.returncode != 0:
            raise RuntimeFailure(last_line(done.stderr))
        return f"{self.kind} {done.stdout.strip()}"

    def start(self, launch: Launch) -> Handle:
        if not launch.image:
            raise RuntimeFailure("the job has no image (dockerImage) to run")
        self.ensure_image(launch.image)
        env = container_env(launch, self.environ)
        in_file = {name: value for name, value in env.items() if name in ENGINE_VARIABLES}
        by_name = {name: value for name, value in env.items() if name not in in_file}
        env_file = self._write_env_file(launch.workdir, in_file) if in_file else None
        name = container_name(launch.job_id)
        argv = engine_argv(self.kind, launch, self.environ, env_file=env_file)
        try:
            done = subprocess.run(
                [self.binary, *argv[1:]], env={**self.engine_env, **by_name}, capture_output=True,
                text=True, stdin=subprocess.DEVNULL, timeout=120,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            self.end_orphan(name)
            raise RuntimeFailure(f"{self.kind} run failed: {exc}") from None
        finally:
            if env_file is not None:
                env_file.unlink(missing_ok=True)
        if done.returncode != 0:
            self.end_orphan(name)
            raise RuntimeFailure(f"{self.kind} could not start the job: {last_line(done.stderr)}")
        handle = EngineHandle(self, name)
        if self.kind == "docker":
            handle.watchdog = self._watchdog(name, launch.timeout_seconds)
        return handle

    def ensure_image(self, image: str) -> None:
        """Pull `image` when it is missing, with the engine's progress on a terminal."""
        if self.command("image", "inspect", "--format", "{{.Id}}", image).returncode == 0:
            return
        show = sys.stderr.isatty()
        if show:
            print(f"pulling {image} ...", file=sys.stderr, flush=True)
        try:
            pull = subprocess.Popen(
                [self.binary, "pull", *([] if show else ["--quiet"]), image],
                env=self.engine_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, start_new_session=True,
            )  # fmt: skip
        except FileNotFoundError:
            raise RuntimeFailure(f"{self.kind} is not installed (not found on PATH)") from None
        assert pull.stderr is not None
        tail = b""
        while chunk := pull.stderr.read1(4096):
            if show:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()
            tail = (tail + chunk)[-4096:]
        if pull.wait() != 0:
            reason = last_line(tail.decode("utf-8", errors="replace").replace("\r", "\n"))
            raise RuntimeFailure(
                f"image {image} not found locally and could not be pulled: {reason}"
            )

    def reattach(self, reference: str, seen_lines: int) -> Handle | None:
        if self.command("container", "inspect", "--format", "{{.Id}}", reference).returncode:
            return None
        return EngineHandle(self, reference, skip_lines=seen_lines)

    def end_orphan(self, reference: str) -> None:
        with contextlib.suppress(RuntimeFailure):
            self.command("rm", "-f", reference)

    @property
    def restartable(self) -> bool:
        return True

    def _write_env_file(self, workdir: Path, env: Mapping[str, str]) -> Path:
        for name, value in env.items():
            if "\n" in value:
                raise RuntimeFailure(f"the value of {name} has a line break, which {self.kind} "
                                     "cannot pass in a variable of that name")  # fmt: skip
        workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = workdir / ".container-env"
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            out.writelines(f"{name}={value}\n" for name, value in env.items())
        return path

    def _watchdog(self, name: str, seconds: int) -> subprocess.Popen[bytes]:
        """A detached process that kills the container at its timeout, server or not."""
        script = 'sleep "$0"; exec "$1" kill "$2" >/dev/null 2>&1'
        return subprocess.Popen(
            ["sh", "-c", script, str(seconds), self.binary, name], env=self.engine_env,
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip


class EngineHandle(Handle):
    def __init__(self, runtime: EngineRuntime, name: str, skip_lines: int = 0) -> None:
        self.runtime = runtime
        self.name = name
        self.job_id = name.removeprefix(NAME_PREFIX)
        self.skip_lines = skip_lines
        self.watchdog: subprocess.Popen[bytes] | None = None  # docker's timeout, see above

    @property
    def reference(self) -> str:
        return self.name

    def output(self) -> Iterator[bytes]:
        """`ENGINE logs -f`: stdout and stderr in the order the container wrote them, after
        the lines an earlier server already logged."""
        logs = self.follow(stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert logs.stdout is not None
        skip = self.skip_lines
        try:
            for line in lines_of(logs.stdout):
                if skip:
                    skip -= 1
                    continue
                yield line
        finally:
            logs.kill()
            logs.wait()

    def follow(self, **streams: int | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.runtime.binary, "logs", "-f", self.name], env=self.runtime.engine_env,
            stdin=subprocess.DEVNULL, start_new_session=True,
            **streams,  # type: ignore[call-overload]
        )  # fmt: skip

    def wait(self) -> int:
        done = self.runtime.command("wait", self.name, timeout=None)
        try:
            code = int(done.stdout.split()[-1])
        except (IndexError, ValueError):
            return 137  # gone without an exit code: removed, so killed
        return 137 if code < 0 else code  # podman reports a container its --timeout killed as -1

    def terminate(self, grace: float = KILL_GRACE_SECONDS) -> None:
        seconds = str(math.ceil(grace))
        threading.Thread(target=self._quietly, args=("stop", "-t", seconds), daemon=True).start()

    def kill(self) -> None:
        self._quietly("kill")

    def release(self) -> None:
        self._quietly("rm", "-f")
        if self.watchdog is not None:  # the job has ended: its watchdog goes (sh and sleep)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.watchdog.pid, signal.SIGKILL)
            self.watchdog.wait()

    def address(self, port: int) -> tuple[str, int] | None:
        done = self.runtime.command("port", self.name, f"{port}/tcp")
        for line in done.stdout.splitlines():
            host, _, published = line.strip().rpartition(":")
            if published.isdigit():
                return (host.strip("[]") or "127.0.0.1", int(published))
        return None

    def usage(self) -> Usage:
        try:
            done = self.runtime.command(
                "stats", "--no-stream", "--format", "{{.CPUPerc}}\t{{.MemUsage}}", self.name
            )
        except RuntimeFailure:
            return Usage()
        fields = done.stdout.strip().split("\t")
        if done.returncode != 0 or len(fields) != 2:
            return Usage()
        try:
            cpu = float(fields[0].strip().rstrip("%") or 0)
        except ValueError:
            cpu = 0.0
        return Usage(cpu_pct=cpu, memory_bytes=parse_size(fields[1].split("/")[0]))

    def _quietly(self, *args: str) -> None:
        with contextlib.suppress(RuntimeFailure):
            self.runtime.command(*args, self.name)


_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def parse_size(text: str) -> int:
    """`12.3MB` or `12.3MiB` (as the engines' stats print them) → bytes; 0 when unreadable."""
    text = text.strip().lower()
    number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
    try:
        return int(float(number) * _UNITS[text[len(number) :].strip()])
    except (KeyError, ValueError):
        return 0


def run_attached(runtime: EngineRuntime, launch: Launch) -> tuple[int, bool]:
    """`hfuv run --local --runtime ENGINE`: run the job's container with its output on this
    terminal (stdout to stdout, stderr to stderr); Ctrl-C stops it. → (the job's exit code,
    whether its timeout ended it)."""
    deadline = time.monotonic() + launch.timeout_seconds  # before the engine's own timer starts
    handle = runtime.start(launch)
    assert isinstance(handle, EngineHandle)
    timer = threading.Timer(deadline - time.monotonic(), handle.terminate)
    timer.daemon = True
    timer.start()
    try:
        logs = handle.follow()
        try:
            logs.wait()
            code = handle.wait()
        except KeyboardInterrupt:
            handle.terminate()
            handle.wait()
            return 130, False
        return code, code != 0 and time.monotonic() >= deadline
    finally:
        timer.cancel()
        handle.release()
