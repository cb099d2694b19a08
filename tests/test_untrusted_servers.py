"""Servers that misbehave: each ends the command with one clear line, in bounded time, and the
token never goes anywhere but where it belongs.

The misbehaving servers are real HTTP servers on 127.0.0.1 (`RawHost`) that write their answers
byte by byte: a slowloris, an endless body or log line, a page loop, links and redirects to
another host (another port of 127.0.0.1 is another host). The times asserted are correctness
bounds, generous for a loaded machine, not benchmarks.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO

import pytest

from tests.conftest import Result, hfuv
from tests.helpers import FakeHost, Recorded

TOKEN = "hf_canary_token_value"
GH_TOKEN = "gh_canary_token_value"
SCRIPT = b"# /// script\n# dependencies = []\n# ///\nprint('remote')\n"
Route = Callable[[Recorded, BinaryIO], None]


class RawHost:
    """An HTTP server on 127.0.0.1 whose routes write their answer as raw bytes, as slowly or
    as much as they like. It records every request and counts the bytes it sent."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Recorded] = []
        self.sent = 0
        self.stopped = threading.Event()
        host = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {key.lower(): value for key, value in self.headers.items()}
                record = Recorded(self.command, self.path, headers, body)
                host.requests.append(record)
                route = host.routes.get(self.path.split("?")[0], answer(404, b"not found"))
                with suppress(OSError):  # the client gave up: what these tests want of it
                    route(record, Counted(self.wfile, host))
                self.close_connection = True

            do_POST = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def paths(self, prefix: str = "/") -> list[str]:
        return [r.path for r in self.requests if r.path.startswith(prefix)]

    def close(self) -> None:
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()


class Counted:
    """The handler's output stream, counting what goes out; it ends when the host stops."""

    def __init__(self, out: BinaryIO, host: RawHost) -> None:
        self.out, self.host = out, host

    def write(self, data: bytes) -> None:
        if self.host.stopped.is_set():
            raise OSError("host stopped")
        self.out.write(data)
        self.out.flush()
        self.host.sent += len(data)


def answer(status: int, body: bytes, **headers: str) -> Route:
    def route(request: Recorded, out: BinaryIO) -> None:
        head = "".join(f"{k.replace('_', '-')}: {v}\r\n" for k, v in headers.items())
        out.write(f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
                  f"{head}\r\n".encode() + body)  # fmt: skip

    return route


def json_answer(data: object, **headers: str) -> Route:
    return answer(200, json.dumps(data).encode(), Content_Type="application/json", **headers)


def trickle(prefix: bytes, every: float = 1.0) -> Route:
    """`prefix`, then one more byte every `every` seconds, for ever: a slowloris."""

    def route(request: Recorded, out: BinaryIO) -> None:
        out.write(prefix)
        while True:
            time.sleep(every)
            out.write(b"x")

    return route


def flood(prefix: bytes, chunk: bytes) -> Route:
    """`prefix`, then `chunk` again and again, as fast as the client takes it, for ever."""

    def route(request: Recorded, out: BinaryIO) -> None:
        out.write(prefix)
        while True:
            out.write(chunk)

    return route


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n"
RUNNING = {"id": "job1", "status": {"stage": "RUNNING"}}
COMPLETED = {"id": "job1", "status": {"stage": "COMPLETED"}}


@pytest.fixture
def host() -> Iterator[RawHost]:
    server = RawHost()
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[FakeHost]:
    """Another host, which must never see a token: it records every request it gets."""
    server = FakeHost()
    yield server
    server.close()


def timed(*args: str, env: dict[str, str]) -> tuple[Result, float]:
    started = time.monotonic()
    result = hfuv(*args, env=env, timeout=120)
    return result, time.monotonic() - started


def api_env(host: RawHost, **extra: str) -> dict[str, str]:
    return {"HF_ENDPOINT": host.url, "HF_TOKEN": TOKEN, **extra}


def one_error_line(result: Result) -> str:
    """The command's stderr, which must be exactly one `error:` line and no traceback."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "bug in hfuv" not in lines[0]
    return lines[0]


# --- the endpoint ----------------------------------------------------------------------------


def test_an_endpoint_without_a_scheme_is_a_usage_error_at_once(other: FakeHost) -> None:
    port = other.url.rpartition(":")[2]
    result, took = timed("ps", env={"HF_ENDPOINT": f"127.0.0.1:{port}", "HF_TOKEN": TOKEN})
    assert result.code == 2
    assert one_error_line(result) == (
        f"error: HF_ENDPOINT '127.0.0.1:{port}' is not an http:// or https:// URL "
        f"(hint: set HF_ENDPOINT=http://127.0.0.1:{port})"
    )
    assert took < 10
    flag = hfuv("ps", "--endpoint", "jobs.example.org", env={"HF_TOKEN": TOKEN})
    assert flag.code == 2
    assert one_error_line(flag).endswith("(hint: pass --endpoint https://jobs.example.org)")
    other_scheme = hfuv("ps", env={"HF_ENDPOINT": "ftp://127.0.0.1", "HF_TOKEN": TOKEN})
    assert other_scheme.code == 2 and "use an https:// URL" in one_error_line(other_scheme)
    hardware = hfuv("hardware", env={"HF_ENDPOINT": "localhost:1", "HF_TOKEN": TOKEN})
    assert hardware.code == 2, "not hidden behind the built-in catalog"
    assert one_error_line(hardware).endswith("(hint: set HF_ENDPOINT=http://localhost:1)")
    assert other.requests == []
