"""`GET /api/jobs/{ns}/{id}/events`: a job's history (stage and status message, with times) as
server-sent events, replayed from the start and followed until the job ends."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess


def events(server: ServerProcess, job_id: str, user: str = "me") -> list[dict]:
    """Every event of the stream, read until the server ends it."""
    headers = {"authorization": f"Bearer {ServerProcess.TOKENS[user]}"}
    found = []
    with httpx.stream("GET", f"{server.url}/api/jobs/{user}/{job_id}/events", headers=headers,
                      timeout=30) as answer:  # fmt: skip
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        for line in answer.iter_lines():
            if line.startswith("data: "):
                found.append(json.loads(line[len("data: ") :]))
    return found


def create(server: ServerProcess, command: list[str]) -> dict:
    answer = httpx.post(f"{server.url}/api/jobs/me", json={"command": command,
                        "dockerImage": "python:3.12"},
                        headers={"authorization": "Bearer token-me"})  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()


def inspect(server: ServerProcess, job_id: str) -> dict:
    return httpx.get(f"{server.url}/api/jobs/me/{job_id}",
                     headers={"authorization": "Bearer token-me"}).json()  # fmt: skip


@pytest.fixture
def one_at_a_time(tmp_path: Path):
    server = ServerProcess(tmp_path / "data", "--max-parallel", "1").start()
    yield server
    server.stop()


def test_history_of_a_job_that_waited_ran_and_completed(one_at_a_time: ServerProcess) -> None:
    server = one_at_a_time
    blocker = create(server, ["sleep", "1.5"])
    waiting = create(server, ["python3", "-c", "print('done')"])
    queued = "Queued: waiting for the server to start it"
    assert waiting["status"] == {"stage": "SCHEDULING", "message": queued}
    followed: list[dict] = []
    reader = threading.Thread(target=lambda: followed.extend(events(server, waiting["id"])))
    reader.start()  # follows the job live, from before it starts to its end
    reader.join(timeout=30)
    assert not reader.is_alive(), "the stream ends when the job has ended"
    stages = [(e["stage"], e.get("message", "")) for e in followed]
    assert stages[0] == ("SCHEDULING", queued)
    assert ("SCHEDULING", "Waiting for a free slot: 1 of 1 jobs running (--max-parallel)") in stages
    assert [s for s, _ in stages][-2:] == ["RUNNING", "COMPLETED"]
    times = [e["timestamp"] for e in followed]
    assert times == sorted(times)
    job = inspect(server, waiting["id"])
    running = next(e for e in followed if e["stage"] == "RUNNING")
    assert running["timestamp"] == job["startedAt"] and times[-1] == job["finishedAt"]
    assert times[0] == job["createdAt"]
    assert followed[-1].get("message") == job["status"].get("message")
    # Asked again once the job has ended: the same history, replayed, and the stream ends.
    assert events(server, waiting["id"]) == followed
    assert [e["stage"] for e in events(server, blocker["id"])] == [
        "SCHEDULING", "RUNNING", "COMPLETED",
    ]  # fmt: skip


def test_a_canceled_queued_job_and_another_users_job(one_at_a_time: ServerProcess) -> None:
    server = one_at_a_time
    create(server, ["sleep", "30"])
    queued = create(server, ["true"])
    httpx.post(f"{server.url}/api/jobs/me/{queued['id']}/cancel",
               headers={"authorization": "Bearer token-me"}).raise_for_status()  # fmt: skip
    history = events(server, queued["id"])
    assert history[-1]["stage"] == "CANCELED" and history[-1]["message"] == "Job canceled"
    assert "RUNNING" not in [e["stage"] for e in history]
    theirs = httpx.get(f"{server.url}/api/jobs/me/{queued['id']}/events",
                       headers={"authorization": "Bearer token-other"})  # fmt: skip
    assert theirs.status_code == 403
    missing = httpx.get(f"{server.url}/api/jobs/me/{'0' * 24}/events",
                        headers={"authorization": "Bearer token-me"})  # fmt: skip
    assert missing.status_code == 404 and "not found" in missing.json()["error"]
