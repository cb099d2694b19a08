"""`hfuv server`: the Hugging Face Jobs API on this machine (needs `pip install 'hfuv[server]'`)."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hfuv.errors import ServerError, UsageError

if TYPE_CHECKING:
    from hfuv.runtime import Runtime


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    token_specs: tuple[str, ...],
    tokens_file: Path | None,
    max_parallel: int,
    gpus: str = "all",
    max_log_size: str = "256M",
    announce: Callable[[str], None],
    insecure_shared_host: bool = False,
    runtime_kind: str | None = None,
) -> None:
    """Run the server until interrupted; jobs still running then end as ERROR, unless their
    runtime keeps them (containers), for the next server to re-attach."""
    try:
        import uvicorn

        from hfuv.server.app import build_state, create_app
    except ImportError:
        raise UsageError(
            "hfuv server needs its extra dependencies",
            hint="pip install 'hfuv[server]'",
        ) from None
    from hfuv.runtime.gpus import GpuPool, pool_from_option
    from hfuv.server import tokens as token_store
    from hfuv.server.isolation import (
        check_cluster_users,
        closed_to_jobs,
        isolates_jobs,
        secure_data_dir,
    )

    gpu_pool = pool_from_option(gpus)
    log_cap = log_size_option(max_log_size)
    os.umask(0o077)  # everything the server writes (jobs.db, logs, work dirs) is its own
    # Listen first: a server that cannot must not touch the data dir's jobs (another server's).
    sock = listen(host, port)
    port = sock.getsockname()[1]
    warnings: list[str] = []  # said after the banner, whose line scripts read first
    tokens, generated = token_store.load(
        token_specs, tokens_file, data_dir,
        from_env=os.environ.get(token_store.ENV_VARIABLE, ""), warn=warnings.append,
    )  # fmt: skip
    runtime, described = choose_runtime(runtime_kind, warnings.append)
    if runtime.places_jobs:  # the cluster's GPUs, reserved by Ray; none of this machine's
        gpu_pool = GpuPool([], declared=True)
    if gpu_pool.size and (problem := runtime.gpu_problem()):
        warnings.append(f"warning: {problem}")
    users = {identity.name for identity in tokens.values()}
    if runtime.kind == "ray":
        check_cluster_users(users, insecure_shared_host=insecure_shared_host)
    # Containers keep jobs apart; on the host, jobs run as users of their own.
    isolate = runtime.kind == "host" and isolates_jobs(
        users, insecure_shared_host=insecure_shared_host
    )
    secure_data_dir(data_dir, jobs_pass_through=isolate)
    if isolate and (closed := closed_to_jobs(data_dir)):
        warnings.append(
            f"warning: jobs run as users of their own, and {closed} is closed to other users: "
            f"they cannot reach their work dirs in {data_dir} and will fail to start; give "
            "--data-dir a place every user can pass through, e.g. /var/lib/hfuv"
        )
    state = build_state(
        data_dir,
        tokens,
        max_parallel=max_parallel,
        job_users=isolate,
        gpus=gpu_pool,
        runtime=runtime,
        max_log_size=log_cap,
    )
    state.port = port
    state.executor.start()
    assert state.scheduler is not None
    state.scheduler.start()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    who = "each job as a user of its own" if isolate else f"jobs as uid {os.geteuid()}"
    if runtime.kind == "ray":
        who = "each job as a Ray job"
    elif runtime.kind != "host":
        who = "each job in a container"
    announce(f"hfuv server on {url} for {', '.join(sorted(users))}; data in {data_dir}; {who}")
    announce(f"runtime: {described}; capacity: {runtime.capacity().describe()}")
    announce("GPUs: the Ray cluster's, reserved for each job by its flavor" if runtime.places_jobs
             else gpu_pool.describe())  # fmt: skip
    if generated:
        announce(f"HF_ENDPOINT={url} HF_TOKEN={generated}")
    else:
        announce(f"HF_ENDPOINT={url} HF_TOKEN=<one of the tokens you gave>")
    for warning in warnings:
        announce(warning)
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        date_header=False,  # the logs route sets an exact one (clients cut replays at Date + 1s)
        server_header=False,  # an exposed port's answer carries the job's own, and only that
    )
    server = uvicorn.Server(config)
    try:
        server.run(sockets=[sock])
    finally:
        state.scheduler.stop()
        state.executor.stop()
        state.store.close()
    if not server.started:
        print(f"error: could not listen on {host}:{port}", file=sys.stderr)
        sys.exit(1)


def choose_runtime(kind: str | None, announce: Callable[[str], None]) -> tuple[Runtime, str]:
    """The runtime `kind` and its one-line description; by default the first container engine
    that works here, else the host (with a warning). A chosen engine that does not work is one
    clear error."""
    from hfuv.runtime import ENGINES, RuntimeFailure, get_runtime

    if kind is None:
        why = "no container engine (podman or docker) is installed"
        for engine in ENGINES:
            if shutil.which(engine):
                runtime = get_runtime(engine)
                try:
                    return runtime, runtime.describe()
                except RuntimeFailure as exc:
                    why = f"{engine} does not work here ({exc})"
        announce(f"warning: {why}: jobs run on this host and their images are not used; "
                 "install podman, or give --runtime")  # fmt: skip
        kind = "host"
    runtime = get_runtime(kind)
    try:
        return runtime, runtime.describe()
    except RuntimeFailure as exc:
        hint = f"install or repair {kind}, or pick another with --runtime (host, podman, docker)"
        if kind == "ray":
            hint = (
                "check that the cluster runs and --ray-address is its head's dashboard, port 8265"
            )
        raise ServerError(f"--runtime {kind} cannot run jobs here: {exc}", hint=hint) from None


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on HOST:PORT (port 0: a free one), or one clear error saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as exc:
        raise UsageError(
            f"cannot listen on --host {host}: {exc.strerror}",
            hint="give an address of this machine, e.g. 127.0.0.1, or 0.0.0.0 for all",
        ) from None
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ServerError(
                f"port {port} on {host} is already in use (another hfuv server?)",
                hint="stop what listens there, or pick another port with --port (0 picks a "
                "free one)",
            ) from None
        if exc.errno == errno.EACCES:
            raise ServerError(
                f"no permission to listen on port {port} on {host}",
                hint="ports below 1024 need privileges; pick another with --port",
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise UsageError(
                f"cannot listen on --host {host}: it is not an address of this machine",
                hint="give one of its addresses, e.g. 127.0.0.1, or 0.0.0.0 for all",
            ) from None
        raise ServerError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)  # uvicorn's backlog: clients that connect before it serves wait in it
    return sock


_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def log_size_option(text: str) -> int:
    """`--max-log-size`: a number of bytes, or of K, M, G or T (KiB, MiB, ...)."""
    from hfuv.server.logs import MIN_MAX_LOG_BYTES

    cleaned = text.strip().upper().removesuffix("IB").removesuffix("B")
    number, unit = (cleaned[:-1], cleaned[-1]) if cleaned[-1:].isalpha() else (cleaned, "")
    try:
        size = int(float(number) * _SIZE_UNITS[unit])
    except (KeyError, ValueError, OverflowError):
        size = -1
    if size < MIN_MAX_LOG_BYTES:
        raise UsageError(
            f"--max-log-size {text!r} is not a size of at least 64K",
            hint="give bytes or a number with K, M or G, e.g. --max-log-size 256M",
        )
    return size


def default_data_dir() -> Path:
    """HFUV_SERVER_DATA, else /var/lib/hfuv/server for root (a place the host runtime's job
    users can pass through, unlike /root), else the user's hfuv cache."""
    if os.environ.get("HFUV_SERVER_DATA"):
        return Path(os.environ["HFUV_SERVER_DATA"])
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/hfuv/server")
    from hfuv.cache import cache_dir

    return cache_dir() / "server"
