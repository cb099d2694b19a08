"""Job webhooks against `hfuv server`: a Hub-shaped event starts a copy of the linked job."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import ServerProcess, hfuv, needs_python, write

pytestmark = needs_python("3.12")

REACTOR = """\
import json, os
payload = json.loads(os.environ.get("WEBHOOK_PAYLOAD") or "{}")
print("repo", os.environ.get("WEBHOOK_REPO_ID"), os.environ.get("WEBHOOK_REPO_TYPE"),
      payload.get("event", {}).get("action"), "secret" if os.environ.get("WEBHOOK_SECRET") else "-")
"""
EVENT = {
    "event": {"action": "update", "scope": "repo.content"},
    "repo": {"type": "dataset", "name": "org/ds", "id": "6", "headSha": "abc123",
             "owner": {"id": "1"}, "url": {"web": "https://huggingface.co/datasets/org/ds"}},
    "webhook": {"id": "w", "version": 3},
}  # fmt: skip


def post_event(server: ServerProcess, webhook_id: str, event: dict,
               secret: str | None) -> tuple[int, dict]:  # fmt: skip
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers["x-webhook-secret"] = secret
    request = urllib.request.Request(f"{server.url}/webhooks/{webhook_id}", method="POST",
                                     data=json.dumps(event).encode(), headers=headers)  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def job_count(server: ServerProcess) -> int:
    return len(hfuv("ps", "-a", "--json", env=server.env()).json())


def test_event_starts_a_copy_of_the_job(server: ServerProcess, tmp_path: Path) -> None:
    source = hfuv("run", str(write(tmp_path / "react.py", REACTOR)), "--detach",
                  env=server.env()).stdout.strip()  # fmt: skip
    created = hfuv("webhook", "create", "--watch", "dataset:org/ds", "--domain", "repo",
                   "--job-id", f"me/{source}", "--secret", "sig", env=server.env())  # fmt: skip
    assert created.code == 0, created.stderr
    webhook_id = created.stdout.strip()
    assert f"/webhooks/{webhook_id}" in created.stderr
    hfuv("wait", source, env=server.env())
    before = job_count(server)

    status, _ = post_event(server, webhook_id, EVENT, "wrong")
    assert status == 401
    assert post_event(server, webhook_id, EVENT, None)[0] == 401
    assert job_count(server) == before, "a wrong secret starts nothing"

    other_repo = dict(EVENT, repo=dict(EVENT["repo"], name="org/other"))
    assert post_event(server, webhook_id, other_repo, "sig") == (200, {"jobs": []})
    discussion = dict(EVENT, event={"action": "create", "scope": "discussion"})
    assert post_event(server, webhook_id, discussion, "sig") == (200, {"jobs": []})

    status, answer = post_event(server, webhook_id, EVENT, "sig")
    assert status == 200 and len(answer["jobs"]) == 1
    job_id = answer["jobs"][0]
    assert hfuv("wait", job_id, env=server.env()).code == 0
    assert hfuv("logs", job_id, env=server.env()).stdout == "repo org/ds dataset update secret\n"
    job = hfuv("inspect", job_id, "--json", env=server.env()).json()
    assert json.loads(job["environment"]["WEBHOOK_PAYLOAD"]) == EVENT
    assert "WEBHOOK_SECRET" not in job["environment"] and "sig" not in json.dumps(job)
    assert job["initiator"] == {"type": "webhook", "id": webhook_id}

    listed = hfuv("webhook", "ps", "--json", env=server.env()).json()
    assert [w["id"] for w in listed] == [webhook_id] and listed[0]["secret"] == "***"
    assert hfuv("webhook", "disable", webhook_id, env=server.env()).code == 0
    assert post_event(server, webhook_id, EVENT, "sig") == (200, {"jobs": []})
    assert hfuv("webhook", "enable", webhook_id, env=server.env()).code == 0
    assert len(post_event(server, webhook_id, EVENT, "sig")[1]["jobs"]) == 1
    assert hfuv("webhook", "delete", webhook_id, env=server.env()).code == 0
    assert post_event(server, webhook_id, EVENT, "sig")[0] == 404
    assert hfuv("webhook", "ps", "--json", env=server.env()).json() == []
    time.sleep(0.2)


def test_other_users_cannot_link_or_fire(server: ServerProcess, tmp_path: Path) -> None:
    source = hfuv("run", str(write(tmp_path / "react.py", REACTOR)), "--detach",
                  env=server.env()).stdout.strip()  # fmt: skip
    foreign = hfuv("webhook", "create", "--watch", "user:org", "--job-id", f"me/{source}",
                   env=server.env("other"))  # fmt: skip
    assert foreign.code == 1 and "not found" in foreign.stderr
    mine = hfuv("webhook", "create", "--watch", "user:org", "--job-id", source,
                env=server.env()).stdout.strip()  # fmt: skip
    request = urllib.request.Request(
        f"{server.url}/webhooks/{mine}", method="POST", data=json.dumps(EVENT).encode(),
        headers={"authorization": "Bearer token-other", "content-type": "application/json"},
    )  # fmt: skip
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("another user fired my webhook")
    except urllib.error.HTTPError as exc:
        assert exc.code == 403


def test_official_client_creates_job_webhooks(server: ServerProcess, tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    source = hfuv("run", str(write(tmp_path / "react.py", REACTOR)), "--detach",
                  env=server.env()).stdout.strip()  # fmt: skip
    api = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
    webhook = api.create_webhook(job_id=source, watched=[{"type": "dataset", "name": "org/ds"}],
                                 secret="s3")  # fmt: skip
    assert webhook.job is not None and webhook.disabled is False
    assert [w.id for w in api.list_webhooks()] == [webhook.id]
    status, answer = post_event(server, webhook.id, EVENT, "s3")
    assert status == 200 and len(answer["jobs"]) == 1
