"""A bounded fuzz of every endpoint of a real `hfuv server`: mutated valid bodies, odd headers,
odd query values and odd path segments, from a fixed seed over a few concurrent connections.

What must hold: no 5xx, no connection the server drops, and the namespace still lists after.
Jobs the fuzz creates run only `true`: a command that survives mutation is put back to it.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.conftest import ServerProcess, hfuv, needs_python

pytestmark = needs_python("3.12")

SEED = 20261202
REQUESTS = 5200
CONNECTIONS = 4
TOKEN = "token-me"
GOOD_JOB: dict[str, Any] = {
    "command": ["true"],
    "arguments": ["a"],
    "environment": {"A": "1"},
    "secrets": {"S": "s3cret"},
    "flavor": "cpu-basic",
    "labels": {"k": "v"},
    "timeoutSeconds": 60,
    "dockerImage": "python:3.12",
}
GOOD_EVENT: dict[str, Any] = {
    "event": {"action": "update", "scope": "repo.content"},
    "repo": {"type": "dataset", "name": "org/ds", "headSha": "abc"},
    "webhook": {"id": "w", "version": 3},
}
ODD_TEXT = [
    "", " ", "²", "10²³", "٣", "€", "é" * 300, "\r\n", "a\rb", "a\nX-Evil: 1", "\x00", "\x7f",
    "\ud800", "\udfff", "\ud83d\ude00", "../..", "%2F", "a/b", "x" * 5000, "NaN", "-1", "0",
    "1" * 30, "true", "null", "{}", "<script>", "'\"", "\u202e", "\ufeff", "\U0010ffff",
]  # fmt: skip
ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, 10**30, -(2**70), 1.5, -0.0, float("nan"), float("inf"),
    float("-inf"), [], {}, [None], [1, 2], {"a": 1}, {"": ""}, [[[[[]]]]], {"\ud800": 1},
    {"name": "cpu-basic"}, ["true"], [""], ["\x00"], *ODD_TEXT,
]  # fmt: skip


def odd_value(rng: random.Random) -> Any:
    if rng.random() < 0.1:
        depth = rng.randint(1, 600)
        return json.loads("[" * depth + "]" * depth) if depth < 500 else "[" * depth
    return rng.choice(ODD_VALUES)


def mutate(value: Any, rng: random.Random) -> Any:
    """`value` with one of its parts replaced, removed or added to."""
    if isinstance(value, dict) and value and rng.random() < 0.7:
        key = rng.choice(list(value))
        copy = dict(value)
        roll = rng.random()
        if roll < 0.15:
            del copy[key]
        elif roll < 0.25:
            copy[rng.choice(["future", "ssh", "network", "expose", "volumes", "attempts", "arch",
                             "url", "\ud800", "spaceId"])] = odd_value(rng)  # fmt: skip
        else:
            copy[key] = mutate(copy[key], rng)
        return copy
    if isinstance(value, list) and value and rng.random() < 0.7:
        copy = list(value)
        index = rng.randrange(len(copy))
        copy[index] = mutate(copy[index], rng)
        return copy
    return odd_value(rng)


def harmless(body: Any) -> Any:
    """A job spec's command, if it is still one, back to `true`."""
    if isinstance(body, dict):
        command = body.get("command")
        if isinstance(command, list) and command and all(isinstance(c, str) for c in command):
            body = dict(body, command=["true"])
        if "jobSpec" in body:
            body = dict(body, jobSpec=harmless(body["jobSpec"]))
    return body


def encode(body: Any, rng: random.Random) -> bytes:
    """JSON text of `body` (NaN and lone surrogates as Python's json writes them), at times
    damaged at the byte level."""
    try:
        raw = json.dumps(body).encode()
    except (ValueError, RecursionError):
        raw = b"[" * 1000
    roll = rng.random()
    if roll < 0.05 and raw:
        return raw[: rng.randrange(len(raw))]
    if roll < 0.1 and raw:
        at = rng.randrange(len(raw))
        return raw[:at] + rng.choice([b"\xff", b"\xc3", b"\x00", b"\\", b'"', b"}"]) + raw[at:]
    if roll < 0.12:
        return rng.choice([b"", b"null", b"[]", b'"x"', b"\xef\xbb\xbf{}", b"1e999", b"NaN"])
    return raw


def odd_segment(rng: random.Random) -> str:
    """A path segment, percent-encoded as a client would (and some raw escapes)."""
    roll = rng.random()
    if roll < 0.3:
        return rng.choice(["%00", "%0D%0A", "%FF", "%C3", "%2F", "%25", "..", ".", "%E2%82%AC",
                           "%ED%A0%80", "a%20b", "%F0%9F%98%80"])  # fmt: skip
    text = rng.choice(ODD_TEXT)
    return quote(text.encode("utf-8", "surrogatepass"), safe="") or "x"


def odd_query(rng: random.Random) -> str:
    names = ["tail", "cursor", "limit", "stage", "label", "tail", "x", "follow"]
    parts = []
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(names)
        value = rng.choice([*ODD_TEXT, "5", "100000", "10" * 20, "=", "k=v", "k", "%FF"])
        encoded = value if value == "%FF" else quote(value.encode("utf-8", "surrogatepass"))
        parts.append(f"{name}={encoded}")
    return "?" + "&".join(parts)


def odd_headers(rng: random.Random) -> dict[str, bytes]:
    headers: dict[str, bytes] = {"authorization": f"Bearer {TOKEN}".encode()}
    roll = rng.random()
    if roll < 0.06:
        headers["authorization"] = rng.choice(
            [b"", b"Bearer", b"Bearer  x", b"Basic dG9rZW4tbWU=", b"bearer token-me",
             b"Bearer token-me\xff", b"Bearer \xe2\x82\xac", b"Bearer token-other",
             b"Bearer " + b"x" * 8000]
        )  # fmt: skip
    elif roll < 0.08:
        del headers["authorization"]
    if rng.random() < 0.1:
        headers["content-type"] = rng.choice(
            [b"text/plain", b"application/json; charset=latin-1", b"\xff", b"multipart/form-data"]
        )
    if rng.random() < 0.05:
        headers["x-webhook-secret"] = rng.choice([b"", b"sig\xff", b"x" * 5000])
    return headers


class Fuzz:
    """The endpoints and the ids they act on; one request per call of `one`."""

    def __init__(self, ids: dict[str, str]) -> None:
        self.ids = ids
        self.kinds: list[Callable[[random.Random], tuple[str, str, bytes | None]]] = [
            self.create_job, self.create_job, self.create_job, self.job_action, self.job_action,
            self.read, self.read, self.schedule, self.webhook_setting, self.webhook_event,
            self.webhook_event,
        ]  # fmt: skip

    def namespace(self, rng: random.Random) -> str:
        return "me" if rng.random() < 0.8 else rng.choice(["other", odd_segment(rng)])

    def job_id(self, rng: random.Random) -> str:
        return self.ids["job"] if rng.random() < 0.7 else odd_segment(rng)

    def create_job(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        body = GOOD_JOB
        for _ in range(rng.randint(1, 3)):
            body = mutate(body, rng)
        return "POST", f"/api/jobs/{self.namespace(rng)}", encode(harmless(body), rng)

    def job_action(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        base = f"/api/jobs/{self.namespace(rng)}/{self.job_id(rng)}"
        method, action, good = rng.choice(
            [("POST", "cancel", None), ("PUT", "labels", {"labels": {"k": "v"}}),
             ("PUT", "expose", {"ports": [8000], "portsPublic": []}), ("POST", "duplicate", None),
             ("POST", odd_segment(rng), {})]
        )  # fmt: skip
        if action == "duplicate" and rng.random() < 0.9:
            base = f"/api/jobs/me/{odd_segment(rng)}"  # a few duplicates of a real job, no more
        body = None if good is None else encode(mutate(good, rng), rng)
        return method, f"{base}/{action}", body

    def read(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        namespace, job_id = self.namespace(rng), self.job_id(rng)
        path = rng.choice(
            [f"/api/jobs/{namespace}", f"/api/jobs/{namespace}/{job_id}",
             f"/api/jobs/me/{job_id}/logs", f"/api/jobs/me/{self.job_id(rng)}/metrics",
             "/api/whoami-v2", "/api/jobs/hardware", f"/api/scheduled-jobs/{self.namespace(rng)}",
             "/api/settings/webhooks", f"/api/settings/webhooks/{odd_segment(rng)}"]
        )  # fmt: skip
        return "GET", path + (odd_query(rng) if rng.random() < 0.6 else ""), None

    def schedule(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        schedule_id = self.ids["schedule"] if rng.random() < 0.7 else odd_segment(rng)
        good = {"schedule": "@daily", "suspend": True, "jobSpec": GOOD_JOB}
        method, path, body = rng.choice(
            [("POST", f"/api/scheduled-jobs/{self.namespace(rng)}", good),
             ("GET", f"/api/scheduled-jobs/me/{schedule_id}", None),
             ("POST", f"/api/scheduled-jobs/me/{schedule_id}/schedule", {"schedule": "@hourly"}),
             ("PUT", f"/api/scheduled-jobs/me/{schedule_id}/labels", {"labels": {"a": "b"}}),
             ("POST", f"/api/scheduled-jobs/me/{schedule_id}/suspend", None),
             ("POST", f"/api/scheduled-jobs/me/{schedule_id}/{odd_segment(rng)}", {}),
             ("DELETE", f"/api/scheduled-jobs/me/{odd_segment(rng)}", None)]
        )  # fmt: skip
        if body is not None:
            body = mutate(body, rng)
            body = (
                dict(body, suspend=True) if isinstance(body, dict) and "jobSpec" in body else body
            )
            body = encode(harmless(body), rng)
        return method, path, body

    def webhook_setting(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        webhook_id = self.ids["webhook"] if rng.random() < 0.5 else odd_segment(rng)
        good = {"watched": [{"type": "dataset", "name": "org/ds"}], "domains": ["repo"],
                "secret": "sig", "secrets": {"T": "v"}, "jobSourceId": self.ids["job"]}  # fmt: skip
        method, path, body = rng.choice(
            [("POST", "/api/settings/webhooks", good),
             ("GET", f"/api/settings/webhooks/{webhook_id}", None),
             ("POST", f"/api/settings/webhooks/{webhook_id}/{rng.choice(['enable', 'x'])}", None),
             ("DELETE", f"/api/settings/webhooks/{odd_segment(rng)}", None)]
        )  # fmt: skip
        return method, path, None if body is None else encode(mutate(body, rng), rng)

    def webhook_event(self, rng: random.Random) -> tuple[str, str, bytes | None]:
        webhook_id = self.ids["webhook"] if rng.random() < 0.8 else odd_segment(rng)
        return "POST", f"/webhooks/{webhook_id}", encode(mutate(GOOD_EVENT, rng), rng)

    def one(self, rng: random.Random) -> tuple[str, str, bytes | None, dict[str, bytes]]:
        method, path, body = rng.choice(self.kinds)(rng)
        headers = odd_headers(rng)
        if path.startswith("/webhooks/"):
            headers.setdefault("x-webhook-secret", b"sig")
        return method, path, body, headers


def run_connection(url: str, fuzz: Fuzz, seed: int, count: int, found: dict[str, list]) -> None:
    rng = random.Random(seed)
    with httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(count):
            method, path, body, headers = fuzz.one(rng)
            request = client.build_request(method, path, content=body, headers=headers)
            try:
                # Streamed: a log or metrics stream is answered, its status read, then closed.
                response = client.send(request, stream=True)
                status = response.status_code
                text = response.read()[:300] if status >= 500 else b""
                response.close()
            except httpx.TransportError as exc:
                found["dropped"].append((method, path, body and body[:200], repr(exc)))
                continue
            found["statuses"].append(status)
            if status >= 500:
                found["5xx"].append((status, method, path, body and body[:200], text))


def test_fuzz_every_endpoint(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-parallel", "2").start()
    headers = {"authorization": f"Bearer {TOKEN}"}
    try:
        job = httpx.post(f"{server.url}/api/jobs/me", json=GOOD_JOB, headers=headers).json()
        assert hfuv("wait", job["id"], env=server.env()).code == 0
        schedule = httpx.post(
            f"{server.url}/api/scheduled-jobs/me",
            headers=headers,
            json={"schedule": "@daily", "suspend": True, "jobSpec": GOOD_JOB},
        )
        webhook = httpx.post(f"{server.url}/api/settings/webhooks", headers=headers,
                             json={"watched": [{"type": "dataset", "name": "org/ds"}],
                                   "secret": "sig", "jobSourceId": job["id"]})  # fmt: skip
        fuzz = Fuzz({"job": job["id"], "schedule": schedule.json()["id"],
                     "webhook": webhook.json()["webhook"]["id"]})  # fmt: skip
        found: dict[str, list] = {"statuses": [], "5xx": [], "dropped": []}
        started = time.monotonic()
        threads = [
            threading.Thread(target=run_connection,
                             args=(server.url, fuzz, SEED + n, REQUESTS // CONNECTIONS, found))
            for n in range(CONNECTIONS)
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started

        answered = len(found["statuses"])
        assert answered + len(found["dropped"]) == REQUESTS
        assert found["5xx"] == [], f"{len(found['5xx'])} x 5xx, first: {found['5xx'][:5]}"
        assert found["dropped"] == [], f"{len(found['dropped'])} dropped: {found['dropped'][:5]}"
        refused = sum(400 <= status < 500 for status in found["statuses"])
        assert refused > answered // 2, "the fuzz mostly sends bad input"
        assert server.process is not None and server.process.poll() is None
        listed = httpx.get(f"{server.url}/api/jobs/me", headers=headers, params={"limit": 1000})
        assert listed.status_code == 200 and job["id"] in {j["id"] for j in listed.json()}
        ps = hfuv("ps", "-a", "--json", env=server.env())
        assert ps.code == 0, ps.stderr
        from collections import Counter

        print(f"fuzz: {answered} answered in {elapsed:.1f}s, {len(listed.json())} jobs,",
              sorted(Counter(found["statuses"]).items()))  # fmt: skip
    finally:
        server.stop()
    stderr = server.process.stderr.read() if server.process and server.process.stderr else ""
    assert "Traceback" not in stderr, stderr[-3000:]
