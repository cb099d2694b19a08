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
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path

from hfuv.runtime import (
    KILL_GRACE_SECONDS,
    Handle,
    Launch,
    Mount,
    Runtime,
    RuntimeFailure,
    Usage,
    containerlog,
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


CDI_GPU_KIND = "nvidia.com/gpu"
CDI_SPEC_DIRS = ("/etc/cdi", "/var/run/cdi")  # where podman looks for CDI specs
_CDI_KIND = re.compile(r"""(?<![\w-])["']?kind["']?\s*:\s*["']?([\w./-]+)""")


def cdi_declares(kind: str, folders: Iterable[str] = CDI_SPEC_DIRS) -> bool:
    """Whether a CDI spec (YAML or JSON) in `folders` names the device kind `kind`."""
    for folder in folders:
        for spec in sorted(Path(folder).glob("*")) if os.path.isdir(folder) else ():
            if spec.suffix in (".yaml", ".yml", ".json"):
                with contextlib.suppress(OSError, UnicodeDecodeError):
                    if kind in _CDI_KIND.findall(spec.read_text()):
                        return True
    return False


# An image reference, as the engines parse it (github.com/distribution/reference's grammar):
# [HOST[:PORT]/]PATH[:TAG][@DIGEST], PATH of lowercase components joined by `/`.
_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_HOST = rf"{_LABEL}(?:\.{_LABEL})*"
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REFERENCE = re.compile(
    rf"(?:(?:{_HOST}|\[[a-fA-F0-9:]+\])(?::[0-9]+)?/)?(?P<name>{_COMPONENT}(?:/{_COMPONENT})*)"
    r"(?::[\w][\w.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?",
    re.ASCII,
)
IMAGE_EXAMPLE = "e.g. ubuntu:22.04 or ghcr.io/astral-sh/uv:debian"


def reference_problem(image: str) -> str | None:
    """Why `image` is not an image reference an engine can pull, or None when it is."""
    match = _REFERENCE.fullmatch(image)
    if match and match.end("name") <= 255:  # the engines' longest name, host included
        return None
    if image != image.lower() and _REFERENCE.fullmatch(image.lower()):
        return f"invalid image {image!r}: repository names must be lowercase ({IMAGE_EXAMPLE})"
    return (f"invalid image {image!r}: not an image reference [HOST[:PORT]/]NAME[:TAG][@DIGEST] "
            f"with a lowercase NAME of letters, digits and . _ - / ({IMAGE_EXAMPLE})")  # fmt: skip


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
    if kind == "podman":  # its log file is read directly (hfuv.runtime.containerlog)
        argv += ["--timeout", str(launch.timeout_seconds), "--log-driver", "k8s-file"]
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
    unit = "container"

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

    def image_problem(self, image: str) -> str | None:
        return reference_problem(image)

    def prepare(self, launch: Launch, status: Callable[[str], None]) -> None:
        if launch.image:  # else start() says the job has none
            self.ensure_image(launch.image, status)

    def ensure_image(self, image: str, status: Callable[[str], None] | None = None) -> None:
        """Pull `image` when it is missing, with the engine's progress on a terminal."""
        if self.command("image", "inspect", "--format", "{{.Id}}", image).returncode == 0:
            return
        if status is not None:
            status(f"Pulling image {image}")
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

    def gpu_problem(self) -> str | None:
        if self.kind != "podman" or cdi_declares(CDI_GPU_KIND):
            return None
        return (f"podman has no CDI spec for {CDI_GPU_KIND} (in {' or '.join(CDI_SPEC_DIRS)}), so "
                "GPU jobs will fail to start; generate one with `nvidia-ctk cdi generate "
                "--output=/etc/cdi/nvidia.yaml`")  # fmt: skip

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
        self._ended = threading.Event()
        self._code = 137
        self._waiter: threading.Thread | None = None
        self._published: dict[int, tuple[str, int]] = {}

    @property
    def reference(self) -> str:
        return self.name

    def output(self) -> Iterator[bytes]:
        """stdout and stderr in the order the container wrote them, after the lines an earlier
        server already logged: podman's log file, else `ENGINE logs -f`."""
        log = self.log_file()
        if log is not None:
            yield from containerlog.lines(self.records(log), self.skip_lines)
            return
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

    def log_file(self) -> Path | None:
        """The container's k8s-file log, where it has one (podman), else None."""
        if self.runtime.kind != "podman":
            return None
        done = self.runtime.command("container", "inspect", "--format",
                                    "{{.HostConfig.LogConfig.Type}} {{.HostConfig.LogConfig.Path}}",
                                    self.name)  # fmt: skip
        kind, _, path = done.stdout.strip().partition(" ")
        if done.returncode != 0 or kind != "k8s-file" or not os.path.isfile(path):
            return None
        return Path(path)

    def records(self, log: Path) -> Iterator[containerlog.Record]:
        self._start_waiting()
        return containerlog.records(log, self._ended.is_set)

    def follow(self, **streams: int | None) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [self.runtime.binary, "logs", "-f", self.name], env=self.runtime.engine_env,
            stdin=subprocess.DEVNULL, start_new_session=True,
            **streams,  # type: ignore[call-overload]
        )  # fmt: skip

    def wait(self) -> int:
        self._start_waiting()
        assert self._waiter is not None
        self._waiter.join()
        return self._code

    def finished_at(self) -> float | None:
        done = self.runtime.command("container", "inspect", "--format", "{{.State.FinishedAt}}",
                                    self.name)  # fmt: skip
        return parse_time(done.stdout) if done.returncode == 0 else None

    def _start_waiting(self) -> None:
        """`ENGINE wait` in a thread of its own, from the first call on: the log's reader
        learns from it that the container has exited."""
        if self._waiter is None:
            self._waiter = threading.Thread(target=self._wait, daemon=True,
                                            name=f"wait-{self.name}")  # fmt: skip
            self._waiter.start()

    def _wait(self) -> None:
        try:
            done = self.runtime.command("wait", self.name, timeout=None)
            code = int(done.stdout.split()[-1])
            # podman reports a container its --timeout killed as -1
            self._code = 137 if code < 0 else code
        except (RuntimeFailure, IndexError, ValueError):
            self._code = 137  # gone without an exit code: removed, so killed
        finally:
            self._ended.set()

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
        """Where the engine published `port`; asked once (a container's ports never move), not
        on every request the expose proxy passes on."""
        if port in self._published:
            return self._published[port]
        done = self.runtime.command("port", self.name, f"{port}/tcp")
        for line in done.stdout.splitlines():
            host, _, published = line.strip().rpartition(":")
            if published.isdigit():
                self._published[port] = (host.strip("[]") or "127.0.0.1", int(published))
                return self._published[port]
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


_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d:\d\d:\d\d)(?:\.(\d+))?\s*(Z|[+-]\d\d:?\d\d)?")


def parse_time(text: str) -> float | None:
    """An engine's time (podman `2026-01-02 03:04:05.123456789 +0000 UTC`, docker
    `2026-01-02T03:04:05.123456789Z`) → a Unix time; None for none (year 1) or unreadable."""
    match = _TIME.match(text.strip())
    if match is None or match.group(1).startswith("0001"):
        return None
    day, clock, fraction, offset = match.groups()
    offset = (offset or "Z").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(f"{day}T{clock}{offset}")
    except ValueError:
        return None
    return moment.timestamp() + float(f"0.{fraction or 0}")


def run_attached(runtime: EngineRuntime, launch: Launch) -> tuple[int, bool]:
    """`hfuv run --local --runtime ENGINE`: run the job's container with its output on this
    terminal (stdout to stdout, stderr to stderr); Ctrl-C stops it. → (the job's exit code,
    whether its timeout ended it)."""
    runtime.ensure_image(launch.image)
    deadline = time.monotonic() + launch.timeout_seconds  # before the engine's own timer starts
    handle = runtime.start(launch)
    assert isinstance(handle, EngineHandle)
    timer = threading.Timer(deadline - time.monotonic(), handle.terminate)
    timer.daemon = True
    timer.start()
    try:
        try:
            show_output(handle)
            code = handle.wait()
        except KeyboardInterrupt:
            handle.terminate()
            handle.wait()
            return 130, False
        return code, code != 0 and time.monotonic() >= deadline
    finally:
        timer.cancel()
        handle.release()


def show_output(handle: EngineHandle) -> None:
    """The container's output on this terminal, stdout to stdout and stderr to stderr, until
    it ends: from podman's log file (partial lines at once), else through `ENGINE logs -f`."""
    log = handle.log_file()
    if log is None:
        handle.follow().wait()
        return
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    for record in handle.records(log):
        out = streams.get(record.stream, sys.stdout.buffer)
        out.write(record.text + b"\n" if record.complete else record.text)
        out.flush()
