"""Servers that misbehave: each ends the command with one clear line, in bounded time, and the
token never goes anywhere but where it belongs.

The misbehaving servers are real HTTP servers on 127.0.0.1 (`RawHost`) that write their answers
byte by byte: a slowloris, an endless body or log line, a page loop, links and redirects to
another host (another port of 127.0.0.1 is another host). The times asserted are correctness
bounds, generous for a loaded machine, not benchmarks.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import BinaryIO

import pytest

from tests.conftest import Result, hfuv
from tests.helpers import FakeHost, Recorded, Reply

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


def test_a_limit_set_to_nonsense_is_a_usage_error(host: RawHost) -> None:
    result = hfuv("ps", "--namespace", "me", env=api_env(host, HFUV_HTTP_DEADLINE="soon"))
    assert result.code == 2
    assert one_error_line(result) == (
        "error: HFUV_HTTP_DEADLINE='soon' is not a positive number "
        "(hint: unset it, or set it like HFUV_HTTP_DEADLINE=120)"
    )
    assert host.requests == []


# --- time ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "slow",
    [
        pytest.param(JSON_HEAD + b"X-Slow: ", id="headers"),
        pytest.param(JSON_HEAD + b"Content-Length: 1000\r\n\r\n[", id="body"),
    ],
)
def test_a_slowloris_api_server_is_cut_off_at_the_deadline(host: RawHost, slow: bytes) -> None:
    host.routes["/api/jobs/me"] = trickle(slow)
    result, took = timed("ps", "--namespace", "me", env=api_env(host, HFUV_HTTP_DEADLINE="3"))
    assert result.code == 1
    assert one_error_line(result) == (
        f"error: {host.url} took more than 3s to answer GET /api/jobs/me (HFUV_HTTP_DEADLINE) "
        "(hint: the server is stuck or very slow; retry later, or raise HFUV_HTTP_DEADLINE)"
    )
    assert 3 <= took < 20
    assert host.paths() == ["/api/jobs/me?stage=RUNNING&stage=SCHEDULING"], "tried once"


def test_a_log_stream_that_trickles_after_the_end_is_given_up(host: RawHost) -> None:
    host.routes["/api/jobs/me/job1"] = json_answer(COMPLETED)
    host.routes["/api/jobs/me/job1/logs"] = trickle(SSE_HEAD + b'data: {"data": "', every=0.2)
    result, took = timed("logs", "-f", "me/job1", env=api_env(host, HFUV_LOG_SILENCE="1"))
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: the stream from {host.url} sent no line for 1s (HFUV_LOG_SILENCE), though "
        "the job has ended"
    )
    assert took < 20
    assert len(host.paths("/api/jobs/me/job1/logs")) == 2, "the last pass is redone once"


def test_keep_alives_keep_a_quiet_log_stream_open(host: RawHost) -> None:
    """A job may be quiet for longer than the silence limit; the server's keep-alives say the
    stream is alive, so it is not cut (only blank lines would not count)."""

    def quiet_then_done(request: Recorded, out: BinaryIO) -> None:
        out.write(SSE_HEAD + b'data: {"data": "start"}\n\n')
        for _ in range(8):
            time.sleep(0.5)
            out.write(b": keep-alive\n\n")
        out.write(b'data: {"data": "done"}\n\n')

    host.routes["/api/jobs/me/job1"] = json_answer(COMPLETED)
    host.routes["/api/jobs/me/job1/logs"] = quiet_then_done
    result = hfuv("logs", "-f", "me/job1", env=api_env(host, HFUV_LOG_SILENCE="1.5"))
    assert result.code == 0, result.stderr
    assert result.stdout == "start\ndone\n"
    assert len(host.paths("/api/jobs/me/job1/logs")) == 1


# --- size ------------------------------------------------------------------------------------


def test_a_huge_declared_answer_is_refused_unread(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = flood(JSON_HEAD + b"Content-Length: 5000000000\r\n\r\n[", b" ")
    result, took = timed("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert one_error_line(result) == (
        f"error: {host.url} answered GET /api/jobs/me with more than 100 MiB "
        "(HFUV_MAX_RESPONSE_MB) (hint: raise HFUV_MAX_RESPONSE_MB if so big an answer is "
        "expected, else check HF_ENDPOINT)"
    )
    assert took < 20


def test_an_endless_answer_is_cut_at_the_limit(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = flood(JSON_HEAD + b"\r\n[", b" " * 65536)
    env = api_env(host, HFUV_MAX_RESPONSE_MB="2")
    result, took = timed("ps", "--namespace", "me", env=env)
    assert result.code == 1
    assert "answered GET /api/jobs/me with more than 2 MiB (HFUV_MAX_RESPONSE_MB)" in (
        one_error_line(result)
    )
    assert took < 20
    assert host.sent < 64 * 1024 * 1024, "the client stopped reading"


def test_a_compressed_answer_is_bounded_by_its_decoded_size(host: RawHost) -> None:
    body = gzip.compress(b"[" + b" " * (200 * 1024 * 1024) + b"]", compresslevel=1)
    host.routes["/api/jobs/me"] = answer(200, body, Content_Type="application/json",
                                         Content_Encoding="gzip")  # fmt: skip
    result, took = timed("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert "with more than 100 MiB (HFUV_MAX_RESPONSE_MB)" in one_error_line(result)
    assert took < 30


def test_an_endless_log_line_is_refused(host: RawHost) -> None:
    host.routes["/api/jobs/me/job1"] = json_answer(RUNNING)
    host.routes["/api/jobs/me/job1/logs"] = flood(SSE_HEAD + b'data: {"data": "', b"x" * 65536)
    env = api_env(host, HFUV_MAX_LOG_LINE_MB="1")
    result, took = timed("logs", "-f", "me/job1", env=env)
    assert result.code == 1
    assert one_error_line(result) == (
        f"error: {host.url} sent a line longer than 1 MiB on GET /api/jobs/me/job1/logs "
        "(HFUV_MAX_LOG_LINE_MB) (hint: raise HFUV_MAX_LOG_LINE_MB if the job writes such lines)"
    )
    assert took < 20
    assert host.sent < 64 * 1024 * 1024
    assert len(host.paths("/api/jobs/me/job1/logs")) == 1, "not retried"


def test_a_long_log_line_passes_the_default_limit(host: RawHost) -> None:
    line = "y" * (3 * 1024 * 1024)
    events = SSE_HEAD + b"".join(
        b"data: " + json.dumps({"data": text}).encode() + b"\n\n" for text in ("a", line, "b")
    )
    host.routes["/api/jobs/me/job1"] = json_answer(COMPLETED)
    host.routes["/api/jobs/me/job1/logs"] = lambda request, out: out.write(events)
    result = hfuv("logs", "-f", "me/job1", env=api_env(host))
    assert result.code == 0, result.stderr
    assert result.stdout == f"a\n{line}\nb\n"


def test_an_answer_that_is_not_json_is_one_clear_line(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = answer(200, b"<html>login</html>", Content_Type="text/html")
    host.routes["/api/whoami-v2"] = json_answer({"nickname": "no name here"})
    result = hfuv("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: {host.url} answered GET /api/jobs/me with something that is not JSON "
        "(text/html: '<html>login</html>')"
    )
    whoami = hfuv("ps", env=api_env(host))
    assert whoami.code == 1
    assert one_error_line(whoami).startswith(f"error: {host.url} answered whoami without a user")


# --- pages -----------------------------------------------------------------------------------


def paged(host: RawHost, next_cursor: Callable[[int], str | None]) -> Route:
    """A page of one job per cursor, linking to the cursor `next_cursor` gives."""

    def route(request: Recorded, out: BinaryIO) -> None:
        cursor = int(request.path.partition("cursor=")[2] or 0)
        after = next_cursor(cursor)
        link = {"Link": f'<{host.url}/api/jobs/me?cursor={after}>; rel="next"'} if after else {}
        json_answer([{"id": f"job{cursor}", "status": {"stage": "RUNNING"}}], **link)(request, out)

    return route


def test_a_page_loop_is_caught_at_once(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = paged(host, lambda cursor: "2" if cursor != 2 else "1")
    result, took = timed("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: the list of jobs from {host.url} loops: page 4 links back to an earlier page"
    )
    assert len(host.requests) == 3
    assert took < 20


def test_endless_pages_stop_at_the_page_limit(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = paged(host, lambda cursor: str(cursor + 1))
    result = hfuv("ps", "--namespace", "me", env=api_env(host, HFUV_MAX_PAGES="5"))
    assert result.code == 1
    assert one_error_line(result) == (
        f"error: the list of jobs from {host.url} has more than 5 pages (HFUV_MAX_PAGES) "
        "(hint: narrow it (--label, --status) or raise HFUV_MAX_PAGES)"
    )
    assert len(host.requests) == 5


def test_pages_within_the_limit_are_all_listed(host: RawHost) -> None:
    host.routes["/api/jobs/me"] = paged(
        host, lambda cursor: str(cursor + 1) if cursor < 4 else None
    )
    result = hfuv("ps", "--json", "--namespace", "me", env=api_env(host, HFUV_MAX_PAGES="5"))
    assert result.code == 0, result.stderr
    assert [job["id"] for job in result.json()] == [f"job{n}" for n in range(5)]


@pytest.mark.parametrize("elsewhere", ["other host", "https on the same port"])
def test_a_page_link_to_another_host_gets_no_request(
    host: RawHost, other: FakeHost, elsewhere: str
) -> None:
    target = other.url if elsewhere == "other host" else host.url.replace("http:", "https:")
    link = f'<{target}/api/jobs/me?cursor=1>; rel="next"'
    host.routes["/api/jobs/me"] = json_answer([RUNNING], Link=link)
    result = hfuv("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: {host.url} linked the next page of jobs to {target}, which is not the "
        "endpoint; hfuv sends the token only to the endpoint"
    )
    assert host.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert len(host.requests) == 1
    assert other.requests == [], "the other host never heard from hfuv"


def test_an_api_redirect_is_not_followed(host: RawHost, other: FakeHost) -> None:
    host.routes["/api/jobs/me"] = answer(307, b"", Location=f"{other.url}/api/jobs/me")
    result = hfuv("ps", "--namespace", "me", env=api_env(host))
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: {host.url} redirected GET /api/jobs/me (307) to {other.url}; hfuv does not "
        "follow redirects from the Jobs API"
    )
    assert other.requests == []


# --- script downloads ----------------------------------------------------------------------


def test_a_slowloris_script_host_is_cut_off_at_the_deadline(host: RawHost) -> None:
    host.routes["/slow.py"] = trickle(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n#")
    env = {"HF_TOKEN": TOKEN, "HFUV_HTTP_DEADLINE": "3"}
    result, took = timed("check", f"{host.url}/slow.py", env=env)
    assert result.code == 1
    assert one_error_line(result).startswith(
        f"error: fetching {host.url}/slow.py took more than 3s (HFUV_HTTP_DEADLINE)"
    )
    assert 3 <= took < 20


def test_a_script_redirect_to_another_host_drops_the_token(host: RawHost, other: FakeHost) -> None:
    """The Hub redirects downloads to a CDN: the token goes to the Hub only, not to the CDN."""
    host.routes["/org/repo/resolve/main/job.py"] = answer(302, b"", Location=f"{other.url}/cdn")
    other.routes["/cdn"] = Reply(200, SCRIPT)
    env = {"HF_ENDPOINT": host.url, "HF_TOKEN": TOKEN}
    result = hfuv("check", "--json", f"{host.url}/org/repo/blob/main/job.py", env=env)
    assert result.code == 0, result.stderr
    assert result.json()["script"] == "job.py"
    assert host.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert [r.path for r in other.requests] == ["/cdn"]
    assert TOKEN not in str(other.requests)


def test_a_gist_api_redirect_elsewhere_drops_the_github_token(
    host: RawHost, other: FakeHost
) -> None:
    host.routes["/api/gists/abc"] = answer(301, b"", Location=f"{other.url}/gists/abc")
    files = {"t.py": {"filename": "t.py", "content": SCRIPT.decode(), "truncated": False}}
    other.routes["/gists/abc"] = Reply.json({"files": files, "history": []})
    env = {"HFUV_GITHUB_API_URL": f"{host.url}/api", "GITHUB_TOKEN": GH_TOKEN, "HF_TOKEN": TOKEN}
    result = hfuv("check", "--json", "https://gist.github.com/someone/abc", env=env)
    assert result.code == 0, result.stderr
    assert host.requests[0].headers["authorization"] == f"Bearer {GH_TOKEN}"
    assert GH_TOKEN not in str(other.requests) and TOKEN not in str(other.requests)


def test_a_redirect_loop_ends(host: RawHost) -> None:
    host.routes["/a.py"] = answer(302, b"", Location="/b.py")
    host.routes["/b.py"] = answer(302, b"", Location="/a.py")
    result, took = timed("check", f"{host.url}/a.py", env={})
    assert result.code == 1
    assert one_error_line(result).startswith(f"error: {host.url}/a.py redirects more than 10")
    assert len(host.requests) == 11
    assert took < 20


@pytest.mark.parametrize("status", [200, 401])
def test_the_hub_over_plain_http_gets_no_token(other: FakeHost, status: int) -> None:
    """`http://huggingface.co/...` would carry the token in cleartext: it goes without. The
    request is seen by an HTTP proxy on 127.0.0.1, as it would be by anyone on the path."""
    url = "http://huggingface.co/org/repo/resolve/main/job.py"
    other.routes[url] = Reply(status, SCRIPT if status == 200 else b"no", {})
    env = {"HF_TOKEN": TOKEN, "HTTP_PROXY": other.url, "http_proxy": other.url,
           "NO_PROXY": "", "no_proxy": ""}  # fmt: skip
    result = hfuv("check", url, env=env)
    assert [r.path for r in other.requests] == [url]
    assert TOKEN not in str(other.requests)
    if status == 200:
        assert result.code == 0, result.stderr
    else:
        assert result.code == 1
        assert one_error_line(result).endswith(
            "(hint: use https://: hfuv sends HF_TOKEN to the Hub only over https)"
        )


def test_which_urls_the_hf_token_goes_to() -> None:
    """The rule behind the tests above, also for what no test here can serve: the Hub over TLS."""
    from hfuv.sources import _Fetcher

    fetcher = _Fetcher({"HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:8790"})

    def gets_token(url: str) -> bool:
        return fetcher._hf_credential.headers_for(url) == {"Authorization": f"Bearer {TOKEN}"}

    fetcher.close()
    for url in ("https://huggingface.co/o/r/resolve/main/a.py", "https://hf.co/a.py",
                "https://HuggingFace.co:443/a.py", "http://127.0.0.1:8790/a.py"):  # fmt: skip
        assert gets_token(url), url
    for url in ("http://huggingface.co/a.py", "https://huggingface.co:8443/a.py",
                "https://cdn-lfs.huggingface.co/a.py", "https://huggingface.co.evil.example/a.py",
                "https://127.0.0.1:8790/a.py", "http://127.0.0.1:8791/a.py"):  # fmt: skip
        assert not gets_token(url), url
