"""Server hardening: 4xx (never 500) for bad requests, 50 concurrent clients, SIGKILL safety."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path

import httpx
import pytest

from hfuv.client import JobsClient
from tests.conftest import ServerProcess, hfuv, needs_python, write

pytestmark = needs_python("3.12")

GOOD = {"command": ["true"], "dockerImage": "python:3.12"}


def raw_post(server: ServerProcess, path: str, content: bytes,
             **headers: str) -> httpx.Response:  # fmt: skip
    return httpx.post(f"{server.url}{path}", content=content, timeout=30,
                      headers={"authorization": "Bearer token-me", **headers})  # fmt: skip


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"\xff\xfe",
        b"[" * 100_000,
        b"null",
        b'"text"',
        b"[]",
        json.dumps({**GOOD, "command": []}).encode(),
        json.dumps({**GOOD, "command": [1, 2]}).encode(),
        json.dumps({**GOOD, "arguments": "x"}).encode(),
        json.dumps({**GOOD, "environment": ["A=1"]}).encode(),
        json.dumps({**GOOD, "environment": {"A": "x" * (1024 * 1024 + 1)}}).encode(),
        json.dumps({**GOOD, "secrets": {"A": None}}).encode(),
        json.dumps({**GOOD, "flavor": "tpu-v9"}).encode(),
        json.dumps({**GOOD, "flavor": 3}).encode(),
        json.dumps({**GOOD, "timeoutSeconds": -1}).encode(),
        json.dumps({**GOOD, "timeoutSeconds": 10**30}).encode(),
        json.dumps({**GOOD, "timeoutSeconds": True}).encode(),
        json.dumps({**GOOD, "labels": {"bad key": "v"}}).encode(),
        json.dumps({**GOOD, "labels": {"k": "x" * 101}}).encode(),
        json.dumps({**GOOD, "volumes": "hf://x"}).encode(),
        json.dumps({"command": ["true"]}).encode(),
    ],
)
def test_malformed_job_requests_get_a_4xx(server: ServerProcess, body: bytes) -> None:
    response = raw_post(server, "/api/jobs/me", body, **{"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]
    assert response.headers["x-error-message"]


def test_other_malformed_requests(server: ServerProcess) -> None:
    big = b'{"command": ["true"], "dockerImage": "x", "pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    assert raw_post(server, "/api/jobs/me", big).status_code == 413
    unknown_field = raw_post(server, "/api/jobs/me", json.dumps({**GOOD, "future": 1}).encode())
    assert unknown_field.status_code == 400, "an unknown field is refused, not ignored"
    assert "`future`" in unknown_field.json()["error"]
    created = raw_post(server, "/api/jobs/me", json.dumps(GOOD).encode())
    job_id = created.json()["id"]
    for path, content in [
        (f"/api/jobs/me/{job_id}/labels", b"{}"),
        ("/api/scheduled-jobs/me", b'{"schedule": "nope", "jobSpec": {}}'),
        (
            "/api/scheduled-jobs/me",
            json.dumps({"schedule": "@daily", "jobSpec": GOOD, "suspend": "yes"}).encode(),
        ),
        ("/api/settings/webhooks", b'{"watched": "everything"}'),
        (
            "/api/settings/webhooks",
            json.dumps(
                {"watched": [{"type": "model", "name": "a/b"}], "jobSourceId": "nope"}
            ).encode(),
        ),
    ]:
        method = "PUT" if path.endswith("/labels") else "POST"
        response = httpx.request(method, f"{server.url}{path}", content=content,
                                 headers={"authorization": "Bearer token-me"})  # fmt: skip
        assert 400 <= response.status_code < 500, (path, response.text)
    tail = httpx.get(f"{server.url}/api/jobs/me/{job_id}/logs?tail=x",
                     headers={"authorization": "Bearer token-me"})  # fmt: skip
    assert tail.status_code == 400


def test_fifty_concurrent_clients(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-parallel", "8").start()
    failures: list[str] = []
    finished: list[str] = []

    def one_client(number: int) -> None:
        client = JobsClient(endpoint=server.url, token="token-me", environ={},
                            on_retry=failures.append)  # fmt: skip
        try:
            body = {"command": ["python3", "-c", f"print('client {number}')"],
                    "dockerImage": "python:3.12", "labels": {"client": str(number)}}  # fmt: skip
            job = client.create_job("me", body)
            assert len(client.list_jobs("me")) >= 1
            lines = [e["data"] for e in client.follow_logs("me", job["id"])]
            assert f"client {number}" in lines, lines
            assert client.get_job("me", job["id"])["status"]["stage"] == "COMPLETED"
            finished.append(job["id"])
        except Exception as exc:  # a failure of any kind is what this test counts
            failures.append(f"{number}: {type(exc).__name__}: {exc}")
        finally:
            client.close()

    try:
        threads = [threading.Thread(target=one_client, args=(n,)) for n in range(50)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=240)
    finally:
        server.stop()
    assert failures == []
    assert len(set(finished)) == 50


def test_sigkill_at_any_point_keeps_logs_and_jobs_consistent(tmp_path: Path) -> None:
    script = write(tmp_path / "talk.py", "for i in range(3000):\n    print('n', i, flush=True)\n")
    rng = random.Random(7)
    submitted: list[str] = []
    for _ in range(3):
        server = ServerProcess(tmp_path / "data").start()
        try:
            for _ in range(3):
                result = hfuv("run", str(script), "--detach", env=server.env())
                assert result.code == 0, result.stderr
                submitted.append(result.stdout.strip())
            time.sleep(rng.uniform(0.1, 1.5))
        finally:
            server.kill()
    server = ServerProcess(tmp_path / "data").start()
    try:
        jobs = {j["id"]: j for j in hfuv("ps", "-a", "--json", env=server.env()).json()}
        assert set(jobs) == set(submitted)
        for job_id in submitted:
            if jobs[job_id]["status"]["stage"] not in ("COMPLETED", "ERROR"):
                assert hfuv("wait", job_id, "--timeout", "60", env=server.env()).code in (0, 1)
            logs = hfuv("logs", job_id, env=server.env())
            assert logs.code == 0, logs.stderr
            numbers = [int(line.split()[1]) for line in logs.stdout.splitlines()]
            assert numbers == list(range(len(numbers))), "a clean prefix: nothing torn or lost"
    finally:
        server.stop()
