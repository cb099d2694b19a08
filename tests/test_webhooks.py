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


def test_update_is_checked_as_a_create_is(server: ServerProcess, tmp_path: Path) -> None:
    """POST (huggingface_hub's update_webhook) or PUT /api/settings/webhooks/{id}: a bad field
    is a 400 that changes nothing; a good update changes what the next event starts."""
    import httpx

    source = hfuv("run", str(write(tmp_path / "react.py", REACTOR)), "--detach",
                  env=server.env()).stdout.strip()  # fmt: skip
    other_source = hfuv("exec", "python:3.12", "--detach", "--", "echo", "other source",
                        env=server.env()).stdout.strip()  # fmt: skip
    mine = {"authorization": "Bearer token-me"}
    made = httpx.post(f"{server.url}/api/settings/webhooks", headers=mine, json={
        "watched": [{"type": "dataset", "name": "org/ds"}], "jobSourceId": source,
        "secret": "sig", "secrets": {"A": "1"},
    }).json()["webhook"]  # fmt: skip
    url = f"{server.url}/api/settings/webhooks/{made['id']}"
    watched = [{"type": "dataset", "name": "org/ds"}]
    for body, says in [
        ({"watched": [{"type": "bucket", "name": "x"}]}, "`watched` must list"),
        ({"watched": watched, "domains": ["push"]}, "`domains` must be"),
        ({"watched": watched, "url": "https://example.com"}, "job webhooks only"),
        ({"watched": watched, "secrets": {"A": 1}}, "`secrets` must be an object of strings"),
        ({"watched": watched, "color": "red"}, "unknown field `color`"),
        ({"watched": watched, "jobSourceId": "0" * 24}, "not found"),
    ]:
        answer = httpx.put(url, headers=mine, json=body)
        assert answer.status_code in (400, 404) and says in answer.json()["error"], answer.text
    assert httpx.get(url, headers=mine).json()["webhook"] == made, "nothing changed"
    theirs = httpx.post(url, headers={"authorization": "Bearer token-other"}, json={
        "watched": watched})  # fmt: skip
    assert theirs.status_code == 404

    updated = httpx.post(url, headers=mine, json={
        "watched": [{"type": "model", "name": "org/m"}], "domains": ["repo"],
        "jobSourceId": other_source, "secret": "", "secrets": {"A": "", "B": "2"},
    }).json()["webhook"]  # fmt: skip
    assert updated["watched"] == [{"type": "model", "name": "org/m"}]
    assert updated["domains"] == ["repo"] and "secret" not in updated
    assert updated["jobSourceId"] == other_source and updated["job"]["secrets"] == ["B"]
    assert post_event(server, made["id"], EVENT, "sig")[0] == 401, "no secret any more"

    def fire(event: dict) -> list[str]:  # a webhook without a secret takes its owner's token
        answer = httpx.post(f"{server.url}/webhooks/{made['id']}", headers=mine, json=event)
        assert answer.status_code == 200, answer.text
        return answer.json()["jobs"]

    assert fire(EVENT) == [], "org/ds is no longer watched"
    (job_id,) = fire(dict(EVENT, repo=dict(EVENT["repo"], type="model", name="org/m")))
    assert hfuv("wait", job_id, env=server.env()).code == 0
    assert hfuv("logs", job_id, env=server.env()).stdout == "other source\n"
    job = httpx.get(f"{server.url}/api/jobs/me/{job_id}", headers=mine).json()
    assert job["createdBy"]["name"] == "me" and job["initiator"]["type"] == "webhook"
