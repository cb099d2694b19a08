"""A job's exposed ports at `http://JOB_ID--PORT.localhost:SERVER_PORT`, the local mirror of
Hugging Face's `https://JOB_ID--PORT.hf.jobs`: requests whose Host names a job's port are passed
to where the job serves it (method, path, headers and body streamed; the answer likewise).

A port in `expose.ports` needs a token that can use the job's namespace (`Authorization:
Bearer`), which is not passed on to the job; a port also in `portsPublic` needs none.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import TYPE_CHECKING, Any

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Receive, Scope, Send

    from hfuv.server.app import ServerState

EXPOSE_DOMAIN = "localhost"
_HOST = re.compile(r"([0-9a-f]{24})--(\d{1,5})\." + re.escape(EXPOSE_DOMAIN) + r"(?::\d+)?")
# Hop-by-hop headers (RFC 9110 7.6.1), and Host, which names the upstream.
_NOT_FORWARDED = frozenset(
    ("connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
     "transfer-encoding", "upgrade", "host")
)  # fmt: skip


def expose_url(job_id: str, port: int, server_port: int) -> str:
    return f"http://{job_id}--{port}.{EXPOSE_DOMAIN}:{server_port}"


def exposed(spec: dict[str, Any]) -> tuple[list[int], list[int]]:
    """The job's (ports, public ports)."""
    expose = spec.get("expose") or {}
    return list(expose.get("ports") or []), list(expose.get("portsPublic") or [])


class ExposeProxy:
    """ASGI middleware: requests for a job's port go to the job, the rest to the API."""

    def __init__(self, app: ASGIApp, state: ServerState) -> None:
        self.app = app
        self.state = state
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            match = _HOST.fullmatch(host)
            if match:
                request = Request(scope, receive)
                response = await self._forward(request, match.group(1), int(match.group(2)))
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _forward(self, request: Request, job_id: str, port: int) -> Response:
        record = self.state.store.get(job_id)
        ports, public = exposed(record.spec) if record else ([], [])
        if record is None or port not in ports:
            return _error(404, f"No exposed port {port} on job {job_id}")
        headers = [(k, v) for k, v in request.headers.items() if k not in _NOT_FORWARDED]
        if port not in public:
            problem = self._refusal(request, record.namespace)
            if problem:
                return problem
            headers = [(k, v) for k, v in headers if k != "authorization"]
        if record.stage != "RUNNING":
            return _error(503, f"Job {job_id} is not running ({record.stage})")
        # A container runtime asks its engine (a subprocess): not on the event loop.
        address = await asyncio.to_thread(self.state.executor.address, job_id, port)
        if address is None:
            return _error(503, f"Port {port} of job {job_id} is not reachable yet")
        headers += [("x-forwarded-host", request.headers.get("host", "")),
                    ("x-forwarded-proto", request.url.scheme)]  # fmt: skip
        if request.client:
            headers.append(("x-forwarded-for", request.client.host))
        path = request.scope.get("raw_path") or request.url.path.encode()
        query = request.scope.get("query_string") or b""
        target = httpx.URL(f"http://{address[0]}:{address[1]}").copy_with(
            raw_path=path + (b"?" + query if query else b"")
        )
        client = self._client or httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))
        self._client = client
        has_body = "content-length" in request.headers or "transfer-encoding" in request.headers
        # Not client.build_request: that adds the client's default headers (Accept-Encoding,
        # User-Agent, ...) and the cookies other jobs' answers set. The job gets what was sent.
        upstream = httpx.Request(request.method, target, headers=headers,
                                 content=request.stream() if has_body else None)  # fmt: skip
        try:
            answer = await client.send(upstream, stream=True)
        except httpx.HTTPError as exc:
            return _error(502, f"Job {job_id} does not answer on port {port}: {exc}")
        back = [(k, v) for k, v in answer.headers.multi_items() if k not in _NOT_FORWARDED]
        response = StreamingResponse(answer.aiter_raw(), status_code=answer.status_code,
                                     background=BackgroundTask(answer.aclose))  # fmt: skip
        response.raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in back]
        return response

    def _refusal(self, request: Request, namespace: str) -> Response | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return _error(401, "This port needs a token: send Authorization: Bearer <token>")
        for known, identity in self.state.tokens.items():
            if secrets.compare_digest(known.encode(), token.strip().encode()):
                if identity.can_use(namespace):
                    return None
                return _error(403, f"This token cannot use the namespace {namespace}")
        return _error(401, "Invalid credentials in Authorization header")


def _error(status: int, message: str) -> Response:
    return JSONResponse({"error": message}, status, headers={"X-Error-Message": message})
