"""Test helpers that are not fixtures: tiny wheels and small HTTP servers on 127.0.0.1."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def build_wheel(
    folder: Path,
    name: str,
    version: str,
    code: str,
    *,
    tag: str = "py3-none-any",
    requires: tuple[str, ...] = (),
) -> Path:
    """Write a minimal wheel exposing `code` as the package's `__init__`, for the wheel `tag`
    (e.g. `cp312-cp312-manylinux_2_17_x86_64`) and with `requires` as its dependencies."""
    dist = name.replace("-", "_")
    purelib = "true" if tag.endswith("-any") else "false"
    files = {
        f"{dist}/__init__.py": code,
        f"{dist}-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {requirement}\n" for requirement in requires)
        ),
        f"{dist}-{version}.dist-info/WHEEL": (
            f"Wheel-Version: 1.0\nGenerator: hfuv-tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n"
        ),
    }
    record = []
    for path, content in files.items():
        digest = hashlib.sha256(content.encode()).digest()
        encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
        record.append(f"{path},sha256={encoded},{len(content.encode())}")
    record.append(f"{dist}-{version}.dist-info/RECORD,,")
    files[f"{dist}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    target = folder / f"{dist}-{version}-{tag}.whl"
    with zipfile.ZipFile(target, "w") as archive:
        for path, content in files.items():
            archive.writestr(zipfile.ZipInfo(path, (1980, 1, 1, 0, 0, 0)), content)
    return target


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: object, status: int = 200, **headers: str) -> Reply:
        return cls(
            status, json.dumps(data).encode(), {"Content-Type": "application/json", **headers}
        )

    @classmethod
    def text(cls, text: str, status: int = 200, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/plain", **headers})


class FakeHost:
    """A real HTTP server on 127.0.0.1 whose routes a test sets; it records every request."""

    def __init__(self) -> None:
        self.routes: dict[str, Callable[[], Reply] | Reply] = {}
        self.requests: list[Recorded] = []
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                host.requests.append(
                    Recorded(self.command, self.path, dict(self.headers.items()), body)
                )
                route = host.routes.get(f"{self.command} {self.path.split('?')[0]}")
                route = route or host.routes.get(self.path.split("?")[0])
                reply = route() if callable(route) else route
                if reply is None:
                    reply = Reply.text("not found", 404)
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                # The client may give up first (a size or time limit under test).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(reply.body)

            do_POST = do_PUT = do_GET

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def headers_for(self, prefix: str) -> list[dict[str, str]]:
        return [r.headers for r in self.requests if r.path.startswith(prefix)]


def what_was_sent(job: dict) -> dict:
    """What a job answered by the server says was submitted, less the per-submission labels."""
    labels = {k: v for k, v in job["labels"].items() if not k.startswith("hfuv-submission")}
    return {"command": job["command"], "env": job["environment"], "labels": labels,
            "flavor": job["flavor"], "image": job["dockerImage"]}  # fmt: skip
