"""Bad input to `hfuv server`: refused with a 4xx that says what is wrong, never stored, never a
500 or a dropped connection; one job per submission key; webhook replays start nothing new."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess, hfuv, needs_python

pytestmark = needs_python("3.12")

ME = {"authorization": "Bearer token-me"}
GOOD = {"command": ["true"], "dockerImage": "python:3.12"}
EVENT = {
    "event": {"action": "update", "scope": "repo.content"},
    "repo": {"type": "dataset", "name": "org/ds", "headSha": "abc123"},
    "webhook": {"id": "w", "version": 3},
}


def post(server: ServerProcess, path: str, content: bytes | str, **headers: str) -> httpx.Response:
    data = content.encode() if isinstance(content, str) else content
    return httpx.post(f"{server.url}{path}", content=data, timeout=30, headers={**ME, **headers})


def jobs_of(server: ServerProcess, namespace: str = "me") -> list[dict]:
    response = httpx.get(f"{server.url}/api/jobs/{namespace}", headers=ME, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def assert_refused(response: httpx.Response, *words: str) -> None:
    assert response.status_code == 400, response.text
    message = response.json()["error"]
    for word in words:
        assert word in message, message
    header = response.headers["x-error-message"]
    assert header.isascii() and header.isprintable(), header


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ('{"command": ["true"], "dockerImage": "x", "timeoutSeconds": NaN}', ["NaN"]),
        ('{"command": ["true"], "dockerImage": "x", "timeoutSeconds": Infinity}', ["Infinity"]),
        ('{"command": ["true"], "dockerImage": "x", "timeoutSeconds": -Infinity}', ["Infinity"]),
        ('{"command": ["true"], "dockerImage": "x", "timeoutSeconds": 1e999}', ["1e999"]),
        (
            '{"command": ["true"], "dockerImage": "x", '
            '"volumes": [{"type": "model", "source": "a/b", "mountPath": "/m", "readOnly": NaN}]}',
            ["NaN"],
        ),
        ('{"command": ["echo", "\\ud800"], "dockerImage": "x"}', ["surrogate", "`command[1]`"]),
        (
            '{"command": ["true"], "dockerImage": "x", "environment": {"A": "x\\udfffy"}}',
            ["surrogate", "`environment.A`"],
        ),
        ('{"command": ["true"], "dockerImage": "x", "labels": {"\\ud83d": "v"}}', ["surrogate"]),
        ('{"command": ["true"], "dockerImage": "x", "flavor": {"name": "cpu-basic"}}', ["flavor"]),
        ('{"command": ["true"], "dockerImage": "x", "flavor": ["cpu-basic"]}', ["flavor"]),
    ],
)
def test_values_json_cannot_answer_are_refused_at_create(
    server: ServerProcess, body: str, words: list[str]
) -> None:
    assert_refused(post(server, "/api/jobs/me", body), *words)
    assert jobs_of(server) == [], "nothing was stored"


def test_a_pair_of_surrogates_is_a_character_and_is_accepted(server: ServerProcess) -> None:
    body = '{"command": ["echo", "\\ud83d\\ude00"], "dockerImage": "x"}'
    created = post(server, "/api/jobs/me", body)
    assert created.status_code == 200, created.text
    assert created.json()["command"] == ["echo", "\U0001f600"]


def test_a_record_stored_before_the_rules_never_breaks_a_listing(tmp_path: Path) -> None:
    """A job stored by an older server with NaN and a lone surrogate (as json.dumps keeps them)
    still lists and inspects, after a restart, through hfuv and the official client."""
    server = ServerProcess(tmp_path / "data").start()
    try:
        job_id = post(server, "/api/jobs/me", json.dumps(GOOD)).json()["id"]
        assert hfuv("wait", job_id, env=server.env()).code == 0
    finally:
        server.stop()
    with sqlite3.connect(tmp_path / "data" / "jobs.db") as db:
        (spec,) = db.execute("SELECT spec FROM jobs WHERE id = ?", (job_id,)).fetchone()
        poisoned = dict(json.loads(spec), command=["echo", "\ud800"], timeoutSeconds=float("nan"))
        poisoned["environment"] = {"A": "x\udfff", "B": "ok"}
        # As an older server kept it: the environment in the spec, no column of its own.
        db.execute("UPDATE jobs SET spec = ?, environment = NULL WHERE id = ?",
                   (json.dumps(poisoned), job_id))  # fmt: skip
    server = ServerProcess(tmp_path / "data").start()
    try:
        [listed] = jobs_of(server)
        assert listed["command"] == ["echo", "\ufffd"] and listed["timeout"] is None
        assert listed["environment"] == {"A": "x\ufffd", "B": "ok"}
        inspected = httpx.get(f"{server.url}/api/jobs/me/{job_id}", headers=ME)
        assert inspected.status_code == 200 and inspected.json()["id"] == job_id
        ps = hfuv("ps", "-a", "--json", env=server.env())
        assert ps.code == 0 and [job["id"] for job in ps.json()] == [job_id]
        from huggingface_hub import HfApi

        api = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
        assert [job.id for job in api.list_jobs(namespace="me")] == [job_id]
    finally:
        server.stop()


def test_error_headers_carry_any_user_text_without_a_500_or_a_dropped_connection(
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.url, headers=ME, timeout=30) as client:
        euro = client.get("/api/jobs/%E2%82%AC")
        assert euro.status_code == 403
        assert "€" in euro.json()["error"]
        assert euro.headers["x-error-message"].endswith("namespace \\u20ac")
        for segment, shown in [
            ("a%0D%0AX-Evil:%201", "a\\x0d\\x0aX-Evil: 1"),
            ("n%00ul", "n\\x00ul"),
        ]:
            missing = client.get(f"/api/jobs/me/{segment}")
            assert missing.status_code == 404, missing.text
            assert "x-evil" not in missing.headers
            assert shown in missing.headers["x-error-message"]
        long = client.get("/api/jobs/me/" + "é" * 5000)
        assert long.status_code == 404 and len(long.headers["x-error-message"]) <= 1000
        assert client.get("/api/jobs/me").status_code == 200, "the same connection still works"


@pytest.mark.parametrize("tail", ["²", "10²³", "٣", "-1", "1" * 19, " 1"])
def test_odd_tail_values_are_refused(server: ServerProcess, tail: str) -> None:
    job_id = post(server, "/api/jobs/me", json.dumps(GOOD)).json()["id"]
    response = httpx.get(f"{server.url}/api/jobs/me/{job_id}/logs", params={"tail": tail},
                         headers=ME)  # fmt: skip
    assert_refused(response, "`tail`")


def exec_detach(server: ServerProcess, key: str, user: str = "me") -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "hfuv", "exec", "--detach", "--submission-key", key,
            "python:3.12", "--", "true"]  # fmt: skip
    env = {**os.environ, **server.env(user)}
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip


def test_one_job_per_submission_key_under_concurrency(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        clients = [exec_detach(server, "nightly-1") for _ in range(6)]
        printed = {process.communicate(timeout=120)[0].strip() for process in clients}
        assert all(process.returncode == 0 for process in clients)
        [job] = jobs_of(server)
        assert printed == {job["id"]}, "every client was given the one job"

        body = json.dumps({**GOOD, "labels": {"hfuv-submission": "raw"}})
        answers: list[str] = []

        def create() -> None:
            answers.append(post(server, "/api/jobs/me", body).json()["id"])

        threads = [threading.Thread(target=create) for _ in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(answers)) == 1 and len(jobs_of(server)) == 2

        other_user = exec_detach(server, "nightly-1", user="other")
        other_job = other_user.communicate(timeout=120)[0].strip()
        assert other_user.returncode == 0 and other_job and other_job not in printed
        duplicated = post(server, f"/api/jobs/me/{job['id']}/duplicate", b"")
        assert duplicated.status_code == 200 and duplicated.json()["id"] != job["id"]
        assert len(jobs_of(server)) == 3, "a duplicate copies the labels but is a new job"
    finally:
        server.stop()


def test_env_strings_over_linux_limit_are_refused_at_create(server: ServerProcess) -> None:
    limit = 128 * 1024  # NAME=value and its NUL
    fits = "x" * (limit - len("BIG=") - 1)
    body = {**GOOD, "command": ["sh", "-c", 'echo "${#BIG}"'], "environment": {"BIG": fits}}
    job_id = post(server, "/api/jobs/me", json.dumps(body)).json()["id"]
    assert hfuv("wait", job_id, env=server.env()).code == 0
    assert hfuv("logs", job_id, env=server.env()).stdout.splitlines()[-1] == str(len(fits))

    over = {**body, "environment": {"BIG": fits + "x"}}
    assert_refused(post(server, "/api/jobs/me", json.dumps(over)), "`environment.BIG`", "128 KiB")
    secret = {**GOOD, "secrets": {"TOKEN": fits + "x"}}
    assert_refused(post(server, "/api/jobs/me", json.dumps(secret)), "`secrets.TOKEN`", "128 KiB")
    argument = {**GOOD, "arguments": ["a", "y" * limit]}
    assert_refused(post(server, "/api/jobs/me", json.dumps(argument)), "`arguments[1]`")
    many = {**GOOD, "environment": {f"V{i}": "z" * 120_000 for i in range(14)}}
    assert_refused(post(server, "/api/jobs/me", json.dumps(many)), "1536 KiB")
    schedule = {"schedule": "@daily", "jobSpec": over}
    assert_refused(
        post(server, "/api/scheduled-jobs/me", json.dumps(schedule)), "`environment.BIG`"
    )
    assert [job["id"] for job in jobs_of(server)] == [job_id]


def make_webhook(server: ServerProcess) -> str:
    source = post(server, "/api/jobs/me", json.dumps(GOOD)).json()["id"]
    body = {"watched": [{"type": "dataset", "name": "org/ds"}], "jobSourceId": source,
            "secret": "sig"}  # fmt: skip
    return post(server, "/api/settings/webhooks", json.dumps(body)).json()["webhook"]["id"]


def fire(server: ServerProcess, webhook_id: str, event: object) -> httpx.Response:
    return httpx.post(f"{server.url}/webhooks/{webhook_id}", content=json.dumps(event),
                      headers={"x-webhook-secret": "sig"}, timeout=30)  # fmt: skip


@pytest.mark.parametrize(
    ("event", "words"),
    [
        ({**EVENT, "event": "update"}, ["`event`"]),
        ({**EVENT, "event": {"action": "update", "scope": 3}}, ["`event`"]),
        ({**EVENT, "repo": ["org/ds"]}, ["`repo`"]),
        ({**EVENT, "repo": {"type": "dataset", "name": 5}}, ["`repo.name`"]),
        ({**EVENT, "repo": {"type": {"x": 1}, "name": "org/ds"}}, ["`repo`"]),
        ({"repo": EVENT["repo"]}, ["`event`"]),
        ([EVENT], ["JSON object"]),
    ],
)
def test_wrong_shaped_webhook_events_are_refused(
    server: ServerProcess, event: object, words: list[str]
) -> None:
    webhook_id = make_webhook(server)
    assert_refused(fire(server, webhook_id, event), *words)
    assert len(jobs_of(server)) == 1, "only the source job"


def test_webhook_replays_start_one_job(server: ServerProcess) -> None:
    webhook_id = make_webhook(server)
    answers = [fire(server, webhook_id, EVENT) for _ in range(50)]
    assert all(answer.status_code == 200 for answer in answers)
    [first] = answers[0].json()["jobs"]
    assert {tuple(answer.json()["jobs"]) for answer in answers} == {(first,)}
    assert all(answer.json().get("replay") for answer in answers[1:])
    assert len(jobs_of(server)) == 2

    pushed = {**EVENT, "repo": {**EVENT["repo"], "headSha": "def456"}}
    [second] = fire(server, webhook_id, pushed).json()["jobs"]
    assert second != first and len(jobs_of(server)) == 3


def test_webhook_payload_over_linux_limit_is_refused(server: ServerProcess) -> None:
    webhook_id = make_webhook(server)
    huge = {**EVENT, "updatedRefs": [{"ref": "r" * 200_000}]}
    assert_refused(fire(server, webhook_id, huge), "`environment.WEBHOOK_PAYLOAD`", "128 KiB")
    assert len(jobs_of(server)) == 1
