"""The runtime layer: where a job's launch becomes running processes, and back.

`hfuv server`'s executor (and `hfuv run --local --runtime ...`) decides everything about a job:
its image, argv, env, limits, GPUs, ports and mounts, as one `Launch`. A runtime only starts it,
streams its output, waits for it, stops it, and finds it again after a server restart. Kinds:

- `host`: processes on this machine, one process group per job (no image);
- `podman`, `docker`: the job's image, through the engines' shared CLI (`hfuv.runtime.engine`);
- `ray`: a Ray cluster, through the Ray Jobs REST API (`hfuv.runtime.ray`); the cluster places
  the job on a node with its flavor's CPUs, memory and GPUs free.

A new kind is one module with a `Runtime` subclass; every kind passes the same contract tests.
"""

from __future__ import annotations

import os
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import BinaryIO

KINDS = ("host", "podman", "docker", "ray")
ENGINES = ("podman", "docker")
KILL_GRACE_SECONDS = 3.0


@dataclass(frozen=True)
class Mount:
    """A host path the job sees at `target`."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class Launch:
    """Everything a runtime needs to start one job. The executor decides every value."""

    job_id: str
    image: str
    argv: tuple[str, ...]  # the JobSpec's command + arguments, untouched
    env: dict[str, str]  # the JobSpec's environment + secrets + the built-in variables
    workdir: Path  # on the host: the job's own directory, that no other job can read
    timeout_seconds: int
    cpus: float | None = None  # a CPU limit (cores); None: no limit
    memory_bytes: int | None = None  # a memory limit; None: no limit
    gpus: tuple[str, ...] = ()  # device ids from the server's pool, this job's alone
    ports: tuple[int, ...] = ()  # ports the job serves on, published for `expose`
    mounts: tuple[Mount, ...] = ()
    user: tuple[int, int] | None = None  # host runtime: (uid, gid) to run the job as
    caches: Path | None = None  # with `user`: that user's own caches (uv's, the bootstrap's)
    interactive: bool = False  # `hfuv run --local`: the job keeps the terminal
    attempt: int = 1  # which run of the job this is (`attempts`): 2 and on are retries
    gpu_count: int = 0  # the GPUs a runtime that places jobs itself reserves (see places_jobs)


@dataclass(frozen=True)
class Capacity:
    """What this machine can give jobs in all."""

    cpus: float
    memory_bytes: int

    def describe(self) -> str:
        return f"{self.cpus:g} CPUs, {self.memory_bytes / 1024**3:.1f} GiB memory"


@dataclass
class Usage:
    cpu_pct: float = 0.0  # of one core, summed over the job's processes
    memory_bytes: int = 0
    extra: dict[str, object] = field(default_factory=dict)


# A job's output comes in lines of at most this many bytes: a longer line (a progress bar
# redrawn with \r and no newline, say) comes in pieces of this size, the last one shorter.
MAX_LINE_BYTES = 1024 * 1024


def lines_of(stream: BinaryIO) -> Iterator[bytes]:
    """The stream's lines, each (with its newline) at most MAX_LINE_BYTES long."""
    return iter(partial(stream.readline, MAX_LINE_BYTES), b"")


# What a runtime says about a started job while it runs: its stage (SCHEDULING while a cluster
# has not yet placed it, RUNNING once it runs; None: unchanged) and a message (None: the
# executor's own).
StatusReport = Callable[["str | None", "str | None"], None]


class Handle(ABC):
    """One started (or re-attached) job."""

    job_id: str
    # Set by the executor before it reads output(): where the runtime reports a change.
    on_status: StatusReport | None = None

    @abstractmethod
    def output(self) -> Iterator[bytes]:
        """The job's output (stdout and stderr merged), line by line (see MAX_LINE_BYTES),
        until it ends."""

    @abstractmethod
    def wait(self) -> int:
        """The job's exit code once it has ended (128 + N for a signal N)."""

    @abstractmethod
    def terminate(self, grace: float = KILL_GRACE_SECONDS) -> None:
        """SIGTERM now and SIGKILL after `grace` seconds; returns at once."""

    @abstractmethod
    def kill(self) -> None:
        """Everything the job started ends now."""

    def address(self, port: int) -> tuple[str, int] | None:
        """Where the job's `port` is reachable from this machine, once it is."""
        return ("127.0.0.1", port)

    def usage(self) -> Usage:
        return Usage()

    def finished_at(self) -> float | None:
        """When the job ended, if the runtime knows (a container's own FinishedAt, which
        holds for a job that ended while no server ran); None: now."""
        return None

    def release(self) -> None:
        """Drop what the runtime keeps for an ended job (a container, say)."""
        return None

    def waiting(self) -> str | None:
        """What the just started job waits for before it runs (a cluster placing it), or None
        when it runs."""
        return None

    def lost(self) -> str | None:
        """Why the job ended with no exit code of its own (its runtime lost it: a cluster's head
        restarted, its node died), once it has ended; None when it ended by itself."""
        return None

    @property
    def reference(self) -> str:
        """What `Runtime.reattach` needs to find this job again (stored with the job)."""
        return self.job_id


class Runtime(ABC):
    kind: str
    unit = "process"  # what one job is on this runtime, for messages: a container, a Ray job

    @abstractmethod
    def describe(self) -> str:
        """One line for `hfuv server`'s start-up message: the kind, its version."""

    def capacity(self) -> Capacity:
        return host_capacity()

    @abstractmethod
    def start(self, launch: Launch) -> Handle:
        """Start the job; raise RuntimeFailure with a reason when it cannot start."""

    def reattach(self, reference: str, seen_lines: int) -> Handle | None:
        """The job started as `reference` by an earlier server, if it still runs or has
        ended since; its `output()` resumes after the `seen_lines` lines already logged."""
        return None

    def end_orphan(self, reference: str) -> None:
        """Kill what an earlier server's job left running, when it cannot be re-attached."""
        return None

    @property
    def restartable(self) -> bool:
        """Whether jobs survive a server restart (re-attached by `reattach`)."""
        return False

    def image_problem(self, image: str) -> str | None:
        """Why `image` can never be run by this runtime (not an image reference), or None."""
        return None

    def prepare(self, launch: Launch, status: Callable[[str], None]) -> None:
        """Get what the job needs to start (its image, pulled), before `start`, saying what it
        does with `status` when that takes a while."""
        return None

    def gpu_problem(self) -> str | None:
        """Why jobs given GPUs would fail to start with this runtime here, or None."""
        return None

    @property
    def places_jobs(self) -> bool:
        """Whether the runtime reserves each job's CPUs, memory and GPUs itself, on machines of
        its own (a cluster): the executor's GPU pool and host limits do not apply then."""
        return False

    def fit_problem(self, flavor: str, cpus: float, memory_bytes: int, gpus: int) -> str | None:
        """Why a job of `flavor` can never be placed (places_jobs runtimes), or None."""
        return None


class RuntimeFailure(Exception):
    """A job could not be started; the message says why, for the job's status."""


def host_capacity() -> Capacity:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 0
    return Capacity(cpus=float(cpus or 1), memory_bytes=int(memory))


def find_engine() -> str | None:
    """The first container engine on PATH, podman before docker."""
    for engine in ENGINES:
        if shutil.which(engine):
            return engine
    return None


def get_runtime(kind: str, environ: Mapping[str, str] | None = None) -> Runtime:
    """The runtime of `kind` ("host", "podman", "docker" or "ray": the cluster whose dashboard
    is at HFUV_RAY_ADDRESS)."""
    if kind == "host":
        from hfuv.runtime.host import HostRuntime

        return HostRuntime(dict(os.environ if environ is None else environ))
    if kind in ENGINES:
        from hfuv.runtime.engine import EngineRuntime

        return EngineRuntime(kind, dict(os.environ if environ is None else environ))
    if kind == "ray":
        from hfuv.runtime.ray import RayRuntime

        return RayRuntime.from_environment(dict(os.environ if environ is None else environ))
    raise ValueError(f"unknown runtime {kind!r}; one of {', '.join(KINDS)}")
