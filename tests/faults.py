"""A fault-injecting HTTP proxy on 127.0.0.1, between a client and `hfuv server`.

A test plans faults per request (by method and path prefix), each for a number of requests:
answer 503 or 429 without forwarding, reset the connection before forwarding, forward and then
reset instead of answering (the request took effect, the answer is lost), delay, or cut a
response (an SSE stream) after some bytes. One request per connection, so every fault is clean.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass


@dataclass
class Fault:
    method: str
    path: str  # prefix of the request path
    action: str  # "503", "429", "reset_before", "reset_after", "delay", "cut"
    times: int = 1
    value: float = 0.0  # seconds for delay, bytes for cut

    def matches(self, method: str, path: str) -> bool:
        return self.times > 0 and method == self.method and path.startswith(self.path)


class FaultProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.faults: list[Fault] = []
        self.applied: list[tuple[str, str, str]] = []
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def plan(self, method: str, path: str, action: str, times: int = 1,
             value: float = 0.0) -> None:  # fmt: skip
        with self._lock:
            self.faults.append(Fault(method, path, action, times, value))

    def close(self) -> None:
        self._stopped = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            self.requests.append((method, path))
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    self.applied.append((method, path, fault.action))
                    return fault
        return None

    def _serve(self, client: socket.socket) -> None:
        with client:
            head, body = _read_request(client)
            if head is None:
                return
            method, path = head.split(b" ")[0].decode(), head.split(b" ")[1].decode()
            fault = self._take(method, path.split("?")[0])
            action = fault.action if fault else None
            if action in ("503", "429"):
                text = b'{"error": "injected"}'
                extra = b"Retry-After: 0.2\r\n" if action == "429" else b""
                client.sendall(b"HTTP/1.1 " + action.encode() + b" Injected\r\n"
                               b"Content-Type: application/json\r\nConnection: close\r\n" + extra
                               + b"Content-Length: %d\r\n\r\n" % len(text) + text)  # fmt: skip
                return
            if action == "reset_before":
                _reset(client)
                return
            if action == "delay":
                time.sleep(fault.value)  # type: ignore[union-attr]
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                _reset(client)
                return
            with upstream:
                upstream.sendall(_close_after(head) + body)
                if action == "reset_after":
                    _drain(upstream)
                    _reset(client)
                    return
                limit = int(fault.value) if action == "cut" else None  # type: ignore[union-attr]
                _relay(upstream, client, limit)


def _read_request(conn: socket.socket) -> tuple[bytes | None, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return None, b""
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    while len(rest) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        rest += chunk
    return head, rest


def _close_after(head: bytes) -> bytes:
    lines = [line for line in head.split(b"\r\n")
             if not line.lower().startswith(b"connection:")]  # fmt: skip
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


def _relay(upstream: socket.socket, client: socket.socket, limit: int | None) -> None:
    sent = 0
    head_done = False
    buffer = b""
    while True:
        chunk = upstream.recv(65536)
        if not chunk:
            return
        if not head_done:
            buffer += chunk
            if b"\r\n\r\n" not in buffer:
                continue
            head, _, chunk = buffer.partition(b"\r\n\r\n")
            client.sendall(_close_after(head))
            head_done = True
        if limit is not None and sent + len(chunk) >= limit:
            client.sendall(chunk[: max(0, limit - sent)])
            _reset(client)
            return
        client.sendall(chunk)
        sent += len(chunk)


def _drain(upstream: socket.socket) -> None:
    upstream.settimeout(30)
    try:
        while upstream.recv(65536):
            pass
    except OSError:
        pass


def _reset(conn: socket.socket) -> None:
    """Close with RST, as a dropped connection looks to the client."""
    import struct

    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    conn.close()
