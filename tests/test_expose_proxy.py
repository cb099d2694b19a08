"""The exposed-port proxy passes requests as the client sent them, and answers as the job did."""

from __future__ import annotations

import gzip
import http.client
import json
from collections.abc import Iterator

import pytest

from tests.conftest import ServerProcess, free_port, hfuv
from tests.test_job_contract import wait_for

# A job that answers with the request headers it got (gzip-compressed when the client takes
# gzip), its own Server header and a cookie.
HEADERS_SERVER = """
import gzip, http.server, json, sys
class Headers(http.server.BaseHTTPRequestHandler):
    server_version, sys_version = "job-server/1", ""
    def do_GET(self):
        body = json.dumps([[k.lower(), v] for k, v in self.headers.items()]).encode()
        self.send_response(200)
        if "gzip" in (self.headers.get("accept-encoding") or ""):
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Set-Cookie", "session=job-cookie")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Headers).serve_forever()
"""


@pytest.fixture
def headers_job(server: ServerProcess) -> Iterator[str]:
    """→ the Host of the job's public exposed port."""
    port = free_port()
    job_id = hfuv("exec", "x", "--detach", "-e", f"CODE={HEADERS_SERVER}", "--expose-public",
                  str(port), "--", "sh", "-c", f'exec python3 -c "$CODE" {port}',
                  env=server.env()).stdout.strip()  # fmt: skip
    yield f"{job_id}--{port}.localhost:{server.port}"
    hfuv("cancel", job_id, env=server.env())


def get(server: ServerProcess, host: str, **headers: str) -> http.client.HTTPResponse:
    """GET / through the proxy with exactly these headers (and Host), as curl sends them."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.putrequest("GET", "/", skip_host=True, skip_accept_encoding=True)
    for name, value in {"Host": host, **headers}.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection.getresponse()


def test_the_job_gets_the_request_as_sent_and_the_client_the_answer_as_given(
    server: ServerProcess, headers_job: str
) -> None:
    wait_for(lambda: get(server, headers_job).status == 200)
    plain = get(server, headers_job, **{"User-Agent": "curl/8.5.0"})
    assert plain.getheader("content-encoding") is None
    seen = dict(json.loads(plain.read()))
    port = headers_job.split("--")[1].split(".")[0]
    assert seen == {"host": f"127.0.0.1:{port}", "user-agent": "curl/8.5.0",
                    "x-forwarded-host": headers_job, "x-forwarded-proto": "http",
                    "x-forwarded-for": "127.0.0.1"}  # fmt: skip
    assert [v for k, v in plain.getheaders() if k.lower() == "server"] == ["job-server/1"]

    compressed = get(server, headers_job, **{"Accept-Encoding": "gzip"})
    assert compressed.getheader("content-encoding") == "gzip"
    seen = dict(json.loads(gzip.decompress(compressed.read())))
    assert seen["accept-encoding"] == "gzip"
    assert "cookie" not in seen, "a cookie the job set earlier is the client's, not the proxy's"
