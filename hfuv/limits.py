"""How much hfuv takes from a server: time per request, bytes per answer, log lines, pages.

Each limit has a default fit for real use and an environment variable, which the error for it
names. httpx bounds each socket read, not a whole request: a server that sends a byte a second
never times out. `bound_sockets` gives every socket operation of a client at most the time left
before the current request's deadline, so a trickle ends too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hfuv.errors import UsageError

if TYPE_CHECKING:
    import httpx

MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    timeout: float = 30.0  # HFUV_HTTP_TIMEOUT: seconds without progress (connecting, a read)
    deadline: float = 120.0  # HFUV_HTTP_DEADLINE: seconds for a whole request and its answer
    # HFUV_LOG_SILENCE: seconds a followed log may send nothing, not even the keep-alive that
    # the Hub and hfuv server send every 30 s while a job is quiet.
    silence: float = 120.0
    max_response: int = 100 * MIB  # HFUV_MAX_RESPONSE_MB: one API answer (a page of jobs)
    max_line: int = 8 * MIB  # HFUV_MAX_LOG_LINE_MB: one line of a log or metrics stream
    max_pages: int = 1000  # HFUV_MAX_PAGES: pages of one job list

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Limits:
        default = cls()
        return cls(
            timeout=_number(environ, "HFUV_HTTP_TIMEOUT", default.timeout),
            deadline=_number(environ, "HFUV_HTTP_DEADLINE", default.deadline),
            silence=_number(environ, "HFUV_LOG_SILENCE", default.silence),
            max_response=_mib(environ, "HFUV_MAX_RESPONSE_MB", default.max_response),
            max_line=_mib(environ, "HFUV_MAX_LOG_LINE_MB", default.max_line),
            max_pages=int(_number(environ, "HFUV_MAX_PAGES", default.max_pages)),
        )


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0 < value < float("inf"):
        raise UsageError(f"{name}={raw!r} is not a positive number",
                         hint=f"unset it, or set it like {name}={default:g}")  # fmt: skip
    return value


def _mib(environ: Mapping[str, str], name: str, default: int) -> int:
    return int(_number(environ, name, default / MIB) * MIB)


def mib(size: int) -> str:
    return f"{size / MIB:g} MiB"


def read_capped(response: httpx.Response, limit: int) -> bytes | None:
    """Read the (decoded) body of a streamed response, as `response.read()` does; None, having
    read at most `limit` bytes, when it is larger than that."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    body = b"".join(chunks)
    response._content = body  # what Response.read() keeps; .json() and .text read it
    return body


class Deadline:
    """When the current request on this thread must be done (each thread has its own)."""

    def __init__(self) -> None:
        self._local = threading.local()

    def left(self) -> float | None:
        ends = getattr(self._local, "ends", None)
        return None if ends is None else ends - time.monotonic()

    def expired(self) -> bool:
        left = self.left()
        return left is not None and left <= 0

    def restart(self, seconds: float | None) -> None:
        self._local.ends = None if seconds is None else time.monotonic() + seconds

    @contextmanager
    def within(self, seconds: float | None) -> Iterator[None]:
        previous = getattr(self._local, "ends", None)
        self.restart(seconds)
        try:
            yield
        finally:
            self._local.ends = previous


def bound_sockets(client: httpx.Client, deadline: Deadline) -> None:
    """Make every socket operation of `client` (direct or through a proxy) end by `deadline`.

    httpx offers no hook for this, so the network backend of each of its connection pools is
    wrapped; a transport without a pool (a test's MockTransport) is left as it is.
    """
    for transport in (client._transport, *client._mounts.values()):
        pool = getattr(transport, "_pool", None)
        if pool is not None and hasattr(pool, "_network_backend"):
            pool._network_backend = _Backend(pool._network_backend, deadline)


class _Backend:
    """An httpcore network backend whose connections keep to a deadline."""

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                    local_address: str | None = None,
                    socket_options: Any = None) -> _Stream:  # fmt: skip
        timeout = _capped(self.deadline, timeout, "ConnectTimeout")
        inner = self.inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(inner, self.deadline)

    def connect_unix_socket(self, path: str, timeout: float | None = None,
                            socket_options: Any = None) -> _Stream:  # fmt: skip
        timeout = _capped(self.deadline, timeout, "ConnectTimeout")
        inner = self.inner.connect_unix_socket(path, timeout, socket_options)
        return _Stream(inner, self.deadline)

    def sleep(self, seconds: float) -> None:
        self.inner.sleep(seconds)


class _Stream:
    """An httpcore network stream whose reads and writes keep to a deadline."""

    def __init__(self, inner: Any, deadline: Deadline) -> None:
        self.inner = inner
        self.deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self.inner.read(max_bytes, _capped(self.deadline, timeout, "ReadTimeout"))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.inner.write(buffer, _capped(self.deadline, timeout, "WriteTimeout"))

    def close(self) -> None:
        self.inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None,
                  timeout: float | None = None) -> _Stream:  # fmt: skip
        timeout = _capped(self.deadline, timeout, "ConnectTimeout")
        return _Stream(self.inner.start_tls(ssl_context, server_hostname, timeout), self.deadline)

    def get_extra_info(self, info: str) -> Any:
        return self.inner.get_extra_info(info)


def _capped(deadline: Deadline, timeout: float | None, error: str) -> float | None:
    """`timeout`, shortened to the time the deadline leaves; httpcore's `error` once it passed."""
    left = deadline.left()
    if left is None:
        return timeout
    if left <= 0:
        import httpcore

        raise getattr(httpcore, error)("the request's deadline has passed")
    return left if timeout is None else min(timeout, left)
