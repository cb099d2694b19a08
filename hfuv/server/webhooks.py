"""Job webhooks on `hfuv server`: stored like the Hub's, fired by Hub-shaped events.

An event is POSTed to `/webhooks/{id}`, authenticated by the webhook's secret in the
`X-Webhook-Secret` header (or, for a webhook without a secret, its owner's bearer token). An event
on a watched repo, in a watched domain, starts a copy of the source job with WEBHOOK_PAYLOAD,
WEBHOOK_REPO_ID, WEBHOOK_REPO_TYPE and (as a secret) WEBHOOK_SECRET set. As on the Hub, the source
job's secrets are not copied; the webhook's own `secrets` are passed instead.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

WATCH_TYPES = ("model", "dataset", "space", "user", "org")
DOMAINS = ("repo", "discussion")
REPO_TYPES = ("model", "dataset", "space")
REPLAY_WINDOW_SECONDS = 3600  # the same event again within this answers the job it started


def validate(body: Any) -> tuple[list[dict[str, str]], list[str], str | None, dict[str, str]]:
    """→ (watched, domains, secret, secrets); raises ValueError with a message for the client."""
    if not isinstance(body, dict):
        raise ValueError("Request body must be a JSON object")
    watched = _watched(body.get("watched"))
    domains = _domains(body.get("domains") or list(DOMAINS))
    secret = _secret(body.get("secret"))
    secrets = _secrets(body.get("secrets") or {})
    if body.get("url") is not None:
        raise ValueError(_NO_URL)
    if not isinstance(body.get("jobSourceId"), str):
        raise ValueError("`jobSourceId` is required")
    return watched, domains, secret, secrets


def validate_update(body: Any, webhook: dict[str, Any]) -> dict[str, Any]:
    """The webhook after the update `body` (POST or PUT /api/settings/webhooks/{id}), checked
    as a create is; ValueError with a message for the client.

    As huggingface_hub's `update_webhook` sends it: `watched` replaces the list, but `[]` (or
    none) keeps it: the client sends `[]` when `watched` (`hf webhooks update --watch`) is not
    given, and its help says that only a given list replaces the old one; `domains`, `secret`
    and `jobSourceId` replace theirs when given; `secrets` merges, a key with "" removing that
    secret. The caller checks the new `jobSourceId`.
    """
    if not isinstance(body, dict):
        raise ValueError("Request body must be a JSON object")
    unknown = sorted(set(body) - {"watched", "domains", "secret", "secrets", "url", "jobSourceId"})
    if unknown:
        raise ValueError(f"unknown field `{unknown[0]}` in the webhook update")
    if body.get("url") is not None:
        raise ValueError(_NO_URL)
    updated = dict(webhook)
    if body.get("watched") not in (None, []):
        updated["watched"] = _watched(body["watched"])
    if body.get("domains") is not None:
        updated["domains"] = _domains(body["domains"])
    if body.get("secret") is not None:
        updated["secret"] = _secret(body["secret"]) or None
    if body.get("jobSourceId") is not None:
        if not isinstance(body["jobSourceId"], str):
            raise ValueError("`jobSourceId` must be a string")
        updated["jobSourceId"] = body["jobSourceId"]
    if body.get("secrets") is not None:
        merged = {**webhook.get("secrets", {}), **_secrets(body["secrets"])}
        updated["secrets"] = {key: value for key, value in merged.items() if value != ""}
    return updated


_NO_URL = "hfuv server runs job webhooks only: give `jobSourceId`, not `url`"


def _watched(watched: Any) -> list[dict[str, str]]:
    if (
        not isinstance(watched, list)
        or not watched
        or not all(
            isinstance(w, dict) and w.get("type") in WATCH_TYPES and isinstance(w.get("name"), str)
            for w in watched
        )
    ):
        raise ValueError(f"`watched` must list {{type, name}} items, type one of {WATCH_TYPES}")
    return [{"type": w["type"], "name": w["name"]} for w in watched]


def _domains(domains: Any) -> list[str]:
    if not isinstance(domains, list) or not domains or not all(d in DOMAINS for d in domains):
        raise ValueError(f"`domains` must be a non-empty subset of {list(DOMAINS)}")
    return list(dict.fromkeys(domains))


def _secret(secret: Any) -> str | None:
    if secret is not None and not isinstance(secret, str):
        raise ValueError("`secret` must be a string")
    return secret


def _secrets(secrets: Any) -> dict[str, str]:
    if not isinstance(secrets, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in secrets.items()
    ):
        raise ValueError("`secrets` must be an object of strings")
    return secrets


def check_event(payload: Any) -> None:
    """ValueError unless `payload` has the Hub's shape: `event{action, scope}`, `repo{type,name}`
    (so a wrong-shaped event is a 400, never a job)."""
    if not isinstance(payload, dict):
        raise ValueError("The event must be a JSON object")
    event, repo = payload.get("event"), payload.get("repo")
    if not isinstance(event, dict) or not all(
        isinstance(event.get(key), str) for key in ("action", "scope")
    ):
        raise ValueError("The event's `event` must be an object {action: string, scope: string}")
    if not isinstance(repo, dict) or repo.get("type") not in REPO_TYPES:
        raise ValueError(
            f"The event's `repo` must be an object whose `type` is one of {REPO_TYPES}"
        )
    if not isinstance(repo.get("name"), str) or not repo["name"]:
        raise ValueError("The event's `repo.name` must be a non-empty string such as org/name")


def delivery_digest(payload: dict[str, Any]) -> str:
    """What identifies one delivery: a replay of it (the Hub's retry, a resend) has the same."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def matches(webhook: dict[str, Any], payload: dict[str, Any]) -> bool:
    """Does this event concern a watched repo, in a watched domain?"""
    scope, repo = payload["event"]["scope"], payload["repo"]
    domain = "discussion" if scope.startswith("discussion") else "repo"
    if domain not in webhook["domains"]:
        return False
    repo_type, repo_name = repo["type"], repo["name"]
    for item in webhook["watched"]:
        if item["type"] in ("user", "org") and repo_name.startswith(item["name"] + "/"):
            return True
        if item["type"] == repo_type and item["name"] == repo_name:
            return True
    return False


def job_env(webhook: dict[str, Any], payload: dict[str, Any]) -> dict[str, str]:
    return {
        "WEBHOOK_PAYLOAD": json.dumps(payload),
        "WEBHOOK_REPO_ID": payload["repo"]["name"],
        "WEBHOOK_REPO_TYPE": payload["repo"]["type"],
    }


def job_secrets(webhook: dict[str, Any]) -> dict[str, str]:
    """The webhook's secrets, and WEBHOOK_SECRET: passed as secrets, never shown as env."""
    values = dict(webhook.get("secrets") or {})
    if webhook.get("secret"):
        values["WEBHOOK_SECRET"] = webhook["secret"]
    return values


def public(webhook: dict[str, Any], job_spec: dict[str, Any] | None) -> dict[str, Any]:
    """The webhook as the API answers it, in the Hub's shape: a job webhook has no `url`, and
    one without a secret no `secret`; a secret's value is never included (`***`)."""
    answer: dict[str, Any] = {
        "id": webhook["id"],
        "job": job_spec,
        "jobSourceId": webhook["jobSourceId"],
        "watched": webhook["watched"],
        "domains": webhook["domains"],
        "disabled": webhook["disabled"],
    }
    if webhook.get("secret"):
        answer["secret"] = "***"
    return answer
