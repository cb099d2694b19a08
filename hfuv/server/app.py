"""The HTTP side of `hfuv server`: the Hugging Face Jobs API as the official client uses it.

Every route needs a bearer token; a token sees only its user's and its orgs' namespaces.
Anything hfuv adds (`status.exitCode`) is an extra field other clients ignore.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hfuv.display import catalog_as_api
from hfuv.flavors import CATALOG, DEFAULT_FLAVOR
from hfuv.runtime import Runtime
from hfuv.runtime.gpus import GpuPool
from hfuv.server import jobspec, metrics, webhooks
from hfuv.server.buckets import Buckets, bucket_routes, check_volumes
from hfuv.server.executor import Executor, attempts_of
from hfuv.server.logs import DEFAULT_MAX_LOG_BYTES, START, LogBook, timestamp
from hfuv.server.proxy import ExposeProxy, expose_url, exposed
from hfuv.server.scheduler import Scheduler
from hfuv.server.store import JobRecord, LabelFilter, Store
from hfuv.server.tokens import Identity, entity_id
from hfuv.server.wire import BodyError, header_value, parse_json, scrubbed
from hfuv.server.wire import SafeJSONResponse as JSONResponse  # renders any stored record

MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# hfuv.client.SUBMISSION_LABEL: the server keeps one job per namespace and value of this label
# among the jobs created by POST (a duplicate, a webhook's or a schedule's job copies it freely).
SUBMISSION_LABEL = "hfuv-submission"
# A new job's status message until the executor says more (what it waits for, what it does).
QUEUED = "Queued: waiting for the server to start it"


@dataclass
class ServerState:
    store: Store
    logs: LogBook
    executor: Executor
    tokens: dict[str, Identity]
    keepalive_seconds: float
    poll_seconds: float = 0.1
    scheduler: Scheduler | None = None
    port: int | None = None  # where the server listens: exposed ports are served there too
    buckets: Buckets | None = None  # storage buckets and their Xet CAS (hfuv.server.buckets)

    def check_runnable(self, spec: dict[str, Any]) -> dict[str, Any]:
        """The spec, if this server can ever run it; else a 400 naming what its runtime or
        hardware cannot give the job (a mount, a flavor's GPUs)."""
        try:
            # Users kept apart on the host (their own uids) must not share host ports either.
            apart = self.executor.users_root is not None
            users = len({identity.name for identity in self.tokens.values()}) if apart else 1
            jobspec.check_runnable(spec, self.executor.runtime.kind, self.port, users=users)
        except jobspec.SpecError as exc:
            raise ApiError(400, str(exc)) from None
        reason = self.executor.refusal(spec)
        if reason is not None:
            raise ApiError(400, reason)
        return spec

    def launch(
        self, namespace: str, owner: dict[str, str], initiator: dict[str, str],
        spec: dict[str, Any], submission_key: str | None = None, *,
        created_by: dict[str, str] | None = None,
    ) -> JobRecord:  # fmt: skip
        """Record a new job and queue it for the executor; with a `submission_key` that has a job
        in `namespace` already, that job (and nothing new); a 507 while the disk is full.
        `created_by`: the user whose request made it (the initiator, when that is a user)."""
        if (full := self.logs.disk_full()) is not None:
            raise ApiError(507, f"No job can start: {full}; free space there, then retry")
        if created_by is None and initiator.get("type") == "user":
            created_by = {"id": initiator["id"], "name": initiator["name"]}
        record = JobRecord(id=new_job_id(), namespace=namespace, owner=owner,
                           initiator=initiator, spec=spec, message=QUEUED,
                           created_by=created_by)  # fmt: skip
        try:
            stored = self.store.create(record, submission_key)
        except sqlite3.OperationalError as exc:  # the disk filled up since the check above
            if "full" not in str(exc):
                raise
            raise ApiError(507, "No job can start: the server's disk is full; free space in "
                           "its data dir, then retry") from None  # fmt: skip
        if stored.id == record.id:
            self.executor.submit(record.id)
        return stored


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status, headers={"X-Error-Message": header_value(message)}
    )


def create_app(state: ServerState) -> ExposeProxy:
    def guarded(handler):
        async def endpoint(request: Request) -> Response:
            try:
                identity = _authenticate(state, request)
                return await handler(request, identity)
            except ApiError as exc:
                return error_response(exc.status, exc.message)

        return endpoint

    routes = [
        Route("/api/whoami-v2", guarded(_whoami), methods=["GET"]),
        Route("/api/jobs/hardware", guarded(_hardware), methods=["GET"]),
        Route("/api/jobs/{namespace}", guarded(_create(state)), methods=["POST"]),
        Route("/api/jobs/{namespace}", guarded(_list(state)), methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}", guarded(_inspect(state)), methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}/cancel", guarded(_cancel(state)), methods=["POST"]),
        Route("/api/jobs/{namespace}/{job_id}/labels", guarded(_labels(state)), methods=["PUT"]),
        Route("/api/jobs/{namespace}/{job_id}/expose", guarded(_expose(state)), methods=["PUT"]),
        Route(
            "/api/jobs/{namespace}/{job_id}/duplicate", guarded(_duplicate(state)), methods=["POST"]
        ),
        Route("/api/jobs/{namespace}/{job_id}/logs", guarded(_logs(state)), methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}/metrics", guarded(_metrics(state)), methods=["GET"]),
        Route("/api/jobs/{namespace}/{job_id}/events", guarded(_events(state)), methods=["GET"]),
        Route("/avatars/{entity_id}.svg", _avatar, methods=["GET"]),
        Route("/api/scheduled-jobs/{namespace}", guarded(_schedule_create(state)),
              methods=["POST"]),
        Route("/api/scheduled-jobs/{namespace}", guarded(_schedule_list(state)),
              methods=["GET"]),
        Route("/api/scheduled-jobs/{namespace}/{schedule_id}", guarded(_schedule_get(state)),
              methods=["GET"]),
        Route("/api/scheduled-jobs/{namespace}/{schedule_id}", guarded(_schedule_delete(state)),
              methods=["DELETE"]),
        Route("/api/scheduled-jobs/{namespace}/{schedule_id}/{action}",
              guarded(_schedule_action(state)), methods=["POST", "PUT"]),
        Route("/api/settings/webhooks", guarded(_webhook_create(state)), methods=["POST"]),
        Route("/api/settings/webhooks", guarded(_webhook_list(state)), methods=["GET"]),
        Route("/api/settings/webhooks/{webhook_id}", guarded(_webhook_get(state)),
              methods=["GET", "DELETE"]),
        # huggingface_hub's update_webhook POSTs; PUT is taken as well
        Route("/api/settings/webhooks/{webhook_id}", guarded(_webhook_update(state)),
              methods=["POST", "PUT"]),
        Route("/api/settings/webhooks/{webhook_id}/{action}", guarded(_webhook_toggle(state)),
              methods=["POST"]),
        Route("/webhooks/{webhook_id}", _webhook_receive(state), methods=["POST"]),
    ]  # fmt: skip
    if state.buckets is not None:
        routes += bucket_routes(state.buckets, guarded)
    app = Starlette(routes=routes)
    app.state.hfuv = state
    return ExposeProxy(app, state)


def _authenticate(state: ServerState, request: Request) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "Invalid credentials in Authorization header")
    for known, identity in state.tokens.items():
        if secrets.compare_digest(known.encode(), token.strip().encode()):
            return identity
    raise ApiError(401, "Invalid credentials in Authorization header")


def _namespace(request: Request, identity: Identity) -> str:
    namespace = request.path_params["namespace"]
    if not identity.can_use(namespace):
        raise ApiError(403, f"You don't have access to the namespace {namespace}")
    return namespace


def _job(state: ServerState, request: Request, identity: Identity) -> JobRecord:
    namespace = _namespace(request, identity)
    record = state.store.get(request.path_params["job_id"])
    if record is None or record.namespace != namespace:
        raise ApiError(404, f"Job {namespace}/{request.path_params['job_id']} not found")
    return record


async def _whoami(request: Request, identity: Identity) -> Response:
    return JSONResponse(
        {
            "type": "user",
            "id": entity_id(identity.name),
            "name": identity.name,
            "fullname": identity.name,
            "orgs": [{"type": "org", "id": entity_id(o), "name": o} for o in identity.orgs],
            "auth": {"type": "access_token", "accessToken": {"role": "write"}},
        }
    )


async def _hardware(request: Request, identity: Identity) -> Response:
    return JSONResponse(catalog_as_api(list(CATALOG.values())))


def new_job_id() -> str:
    """24 hex characters, like the Hub's ObjectId-style job ids (time first, so they sort)."""
    return f"{int(time.time()):08x}{secrets.token_hex(8)}"


def _create(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity)
        body = await _json_body(request)
        spec = _check_buckets(state, identity, state.check_runnable(validate_spec(body)))
        key = spec["labels"].get(SUBMISSION_LABEL)
        record = state.launch(namespace, _owner(namespace, identity), _user(identity), spec, key)
        return JSONResponse(job_json(record, state.port))

    return handler


def _check_buckets(state: ServerState, identity: Identity, spec: dict[str, Any]) -> dict[str, Any]:
    """The spec, if `identity` may mount each of its bucket volumes; else a 400 naming one."""
    if state.buckets is not None:
        try:
            check_volumes(state.buckets, identity, spec)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
    return spec


def _identity_named(state: ServerState, who: dict[str, Any] | None) -> Identity | None:
    """The identity (its orgs from every token of that name) of `who`, a `createdBy`."""
    name = (who or {}).get("name")
    found = [identity for identity in state.tokens.values() if identity.name == name]
    if not found:
        return None
    return Identity(found[0].name, tuple(sorted({org for i in found for org in i.orgs})))


def _check_creator_buckets(state: ServerState, who: dict[str, Any] | None, spec: dict[str, Any]):
    """A job a webhook or a schedule launches mounts only buckets its creator (`who`, a
    `createdBy`) may still mount; else an ApiError naming the first one."""
    if state.buckets is None or not any(
        volume["type"] == "bucket" for volume in spec.get("volumes") or []
    ):
        return
    identity = _identity_named(state, who)
    if identity is None:
        raise ApiError(
            403,
            f"{(who or {}).get('name', 'its creator')} made this, and has no token on this "
            "server any more: its job's bucket volumes cannot be mounted",
        )
    _check_buckets(state, identity, spec)


def _owner(namespace: str, identity: Identity) -> dict[str, str]:
    kind = "user" if namespace == identity.name else "org"
    return {"id": entity_id(namespace), "name": namespace, "type": kind}


def _user(identity: Identity) -> dict[str, str]:
    return {"type": "user", "id": entity_id(identity.name), "name": identity.name}


def _creator(identity: Identity) -> dict[str, str]:
    """JobInfo's `createdBy`: who made the request."""
    return {"id": entity_id(identity.name), "name": identity.name}


async def _json_body(request: Request) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, f"Request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, f"Request body over {MAX_BODY_BYTES // (1024 * 1024)} MiB")
    try:
        return parse_json(raw)
    except BodyError as exc:
        raise ApiError(400, str(exc)) from None


def _string_map(body: dict[str, Any], key: str) -> dict[str, str]:
    value = body.get(key) or {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ApiError(400, f"`{key}` must be an object of strings")
    return value


def _valid_labels(body: dict[str, Any]) -> dict[str, str]:
    from hfuv.errors import ConfigError
    from hfuv.plan import check_label

    labels = _string_map(body, "labels")
    for key, value in labels.items():
        try:
            check_label(key, value, "labels")
        except ConfigError as exc:
            raise ApiError(400, exc.message) from None
    return labels


def validate_spec(body: Any) -> dict[str, Any]:
    """The job spec as stored; a wrong type, or a field the server cannot honour, is a 400."""
    if not isinstance(body, dict):
        raise ApiError(400, "Request body must be a JSON object")
    command = body.get("command")
    if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
        raise ApiError(400, "`command` must be a non-empty array of strings")
    arguments = body.get("arguments") or []
    if not isinstance(arguments, list) or not all(isinstance(a, str) for a in arguments):
        raise ApiError(400, "`arguments` must be an array of strings")
    flavor = body.get("flavor") or DEFAULT_FLAVOR
    if not isinstance(flavor, str):
        raise ApiError(400, "`flavor` must be a string such as cpu-basic")
    if flavor not in CATALOG:
        raise ApiError(400, f"Unknown flavor {flavor!r}; see GET /api/jobs/hardware")
    timeout = body.get("timeoutSeconds")
    if timeout is not None and (
        isinstance(timeout, bool)
        or not isinstance(timeout, int)
        or not 0 < timeout <= MAX_TIMEOUT_SECONDS
    ):
        raise ApiError(400, f"`timeoutSeconds` must be an integer from 1 to {MAX_TIMEOUT_SECONDS}")
    image, space = body.get("dockerImage"), body.get("spaceId")
    if not isinstance(image or space, str):
        raise ApiError(400, "`dockerImage` or `spaceId` is required")
    spec: dict[str, Any] = {
        "command": command,
        "arguments": arguments,
        "environment": _string_map(body, "environment"),
        "secrets": _string_map(body, "secrets"),
        "flavor": flavor,
        "labels": _valid_labels(body),
        "timeoutSeconds": timeout,
    }
    spec["dockerImage" if image else "spaceId"] = image or space
    try:
        spec.update(jobspec.optional_fields(body))
    except jobspec.SpecError as exc:
        raise ApiError(400, str(exc)) from None
    return spec


def avatar_url(entity: dict[str, str]) -> str:
    """Where a user's or org's avatar is (relative, as the Hub gives a default avatar)."""
    return f"/avatars/{entity['id']}.svg"


def _with_avatar(entity: dict[str, str]) -> dict[str, str]:
    return {**entity, "avatarUrl": avatar_url(entity)}


def _created_by(record: JobRecord) -> dict[str, str]:
    """The user whose request made the job; for a job of an older server, its initiator if a
    user started it, else its owner."""
    if record.created_by is not None:
        return record.created_by
    who = record.initiator if record.initiator.get("type") == "user" else record.owner
    return {"id": who["id"], "name": who["name"]}


def job_json(record: JobRecord, server_port: int | None = None) -> dict[str, Any]:
    """The JobInfo of `record`, `server_port` giving its exposed ports their URLs. As on the
    Hub, a field with no value is absent, not null (startedAt while it waits, a message...)."""
    spec = record.spec
    now = time.time()
    end = record.finished_at or now
    status: dict[str, Any] = {"stage": record.stage}
    if record.message is not None:
        status["message"] = record.message
    ports, _ = exposed(spec)
    if ports and server_port:
        status["exposeUrls"] = [expose_url(record.id, port, server_port) for port in ports]
    if record.exit_code is not None:
        status["exitCode"] = record.exit_code
    durations: dict[str, int] = {
        "schedulingSecs": int((record.started_at or end) - record.created_at),
        "totalSecs": int(end - record.created_at),
    }
    if record.started_at:
        durations["runningSecs"] = int(end - record.started_at)
    initiator = record.initiator
    if initiator.get("type") in ("user", "org"):
        initiator = _with_avatar(initiator)
    job: dict[str, Any] = {
        "id": record.id,
        "type": "job",
        "createdAt": timestamp(record.created_at),
        "createdBy": _created_by(record),
        "command": spec["command"],
        "arguments": spec.get("arguments", []),
        "environment": spec.get("environment", {}),
        "secrets": sorted(spec.get("secrets", {})),
        "flavor": spec.get("flavor"),
        "labels": spec.get("labels", {}),
        "status": status,
        "durations": durations,
        "owner": _with_avatar(record.owner),
        "initiator": initiator,
        "retry": attempts_of(spec) - 1,
    }
    if record.started_at:
        job["startedAt"] = timestamp(record.started_at)
    if record.finished_at:
        job["finishedAt"] = timestamp(record.finished_at)
    if spec.get("timeoutSeconds") is not None:
        job["timeout"] = spec["timeoutSeconds"]
    for key in ("dockerImage", "spaceId", "volumes", "network", "expose"):
        if key in spec:
            job[key] = spec[key]
    return job


def _list(state: ServerState):
    """GET /api/jobs/{ns}: newest first, a page at a time, GitHub-style `Link: rel="next"`
    (what huggingface_hub's paginate follows); the cursor is the last job of the page."""

    async def handler(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity)
        query = request.query_params
        stages = sorted({s.upper() for s in query.getlist("stage")})
        labels = [LabelFilter.parse(label) for label in query.getlist("label")]
        text = query.get("limit", str(PAGE_SIZE))
        limit = int(text) if text.isascii() and text.isdigit() and len(text) <= 4 else 0
        if not 1 <= limit <= MAX_PAGE_SIZE:
            raise ApiError(400, f"`limit` must be a whole number from 1 to {MAX_PAGE_SIZE}")
        after = query.get("cursor") or None

        def page() -> Response:  # off the event loop: SQLite, the specs' JSON, the answer's
            try:
                jobs, more = state.store.page(namespace, stages=stages, labels=labels,
                                              after=after, limit=limit)  # fmt: skip
            except KeyError:
                raise ApiError(400, f"`cursor` names no job of {namespace}; follow the "
                               "Link header of the previous page") from None  # fmt: skip
            headers = {}
            if more:
                params = [(k, v) for k, v in query.multi_items() if k != "cursor"]
                params.append(("cursor", jobs[-1][0].id))
                headers["Link"] = f'<{request.url.replace(query=urlencode(params))}>; rel="next"'
            body = _listed_body(jobs, state.port)
            return Response(body, media_type="application/json", headers=headers)

        return await asyncio.to_thread(page)

    return handler


def _listed_body(jobs: list[tuple[JobRecord, bytes]], server_port: int | None) -> bytes:
    """A page's JSON, ASCII: each JobInfo with its `environment` (most of a job's size)
    copied in as stored, never parsed or encoded again. Two thirds of the time at 100 KiB.
    A NaN or a lone surrogate an older server stored is listed as null or U+FFFD, never a 500."""
    pieces = []
    for record, environment in jobs:
        job = scrubbed(job_json(record, server_port))
        del job["environment"]
        text = json.dumps(job, allow_nan=False, separators=(",", ":"))
        if b"\\ud" in environment:  # a surrogate escape: an emoji, or a lone one stored before
            environment = json.dumps(scrubbed(json.loads(environment))).encode("ascii")
        pieces += [b",", text[:-1].encode("ascii"), b',"environment":', environment, b"}"]
    pieces[:1] = [b"["]  # in place of the first comma, or the start of an empty list
    pieces.append(b"]")
    return b"".join(pieces)


def _inspect(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        return JSONResponse(job_json(_job(state, request, identity), state.port))

    return handler


def _cancel(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)
        if not record.terminal:
            state.executor.cancel(record.id)
        return JSONResponse(job_json(state.store.get(record.id) or record, state.port))

    return handler


def _labels(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)
        body = await _json_body(request)
        if not isinstance(body, dict) or "labels" not in body:
            raise ApiError(400, 'Request body must be {"labels": {...}}')
        labels = _valid_labels(body)
        spec = dict(record.spec, labels=labels)
        state.store.update(record.id, spec=spec)
        return JSONResponse(job_json(state.store.get(record.id) or record, state.port))

    return handler


def _expose(state: ServerState):
    """PUT .../expose: the job's whole port set, `{ports, portsPublic}`, replaced."""

    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)
        try:
            expose = jobspec.expose_of(await _json_body(request))
        except jobspec.SpecError as exc:
            raise ApiError(400, str(exc)) from None
        if record.terminal:
            raise ApiError(400, f"Job {record.id} has ended ({record.stage}): no port to expose")
        spec = {k: v for k, v in record.spec.items() if k != "expose"}
        if expose["ports"]:
            spec["expose"] = expose
        state.check_runnable(spec)
        if record.stage == "RUNNING":
            for port in expose["ports"]:
                if state.executor.address(record.id, port) is None:
                    raise ApiError(400, f"Port {port} cannot be exposed while job {record.id} "
                                   "runs: its runtime publishes ports when the job starts; "
                                   f"rerun it with --expose {port}")  # fmt: skip
        state.store.update(record.id, spec=spec)
        return JSONResponse(job_json(state.store.get(record.id) or record, state.port))

    return handler


def _duplicate(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        original = _job(state, request, identity)
        spec = state.check_runnable(original.spec)  # a server restarted with another runtime
        initiator = {"type": "duplicated-job", "id": original.id}
        record = state.launch(original.namespace, original.owner, initiator, spec,
                              created_by=_creator(identity))  # fmt: skip
        return JSONResponse(job_json(record, state.port))

    return handler


def _logs(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)
        tail = request.query_params.get("tail")
        if tail is not None and not (tail.isascii() and tail.isdigit() and len(tail) <= 18):
            raise ApiError(400, "`tail` must be a non-negative integer (at most 18 digits)")
        stream = _follow_log(state, record.id, int(tail) if tail is not None else None)
        # Rounded up: a client that stops a replay at Date + 1s must not lose the last lines.
        date = formatdate(math.ceil(time.time()), usegmt=True)
        headers = {**_SSE_HEADERS, "Date": date}
        return StreamingResponse(stream, media_type="text/event-stream", headers=headers)

    return handler


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


async def _follow_log(state: ServerState, job_id: str, tail: int | None) -> AsyncIterator[bytes]:
    """The whole log (or its last `tail` lines), then new lines until the job has ended.

    Once the replay is sent, a `: caught-up` comment says so (clients ignore comments; a
    client that is not following stops there).
    """
    cursor = START
    if tail is not None:  # found from the end of the log, off the event loop
        cursor = await asyncio.to_thread(state.logs.tail_start, job_id, tail)
    lines, cursor = state.logs.read(job_id, cursor)
    quiet = _Quiet(state.keepalive_seconds)
    while True:
        if lines:
            yield b"".join(b"data: " + line + b"\n\n" for line in lines)
            quiet.sent()
        record = state.store.get(job_id)
        ended = record is None or record.terminal
        lines, cursor = state.logs.read(job_id, cursor)
        if ended and not lines:
            return
        if not lines:
            if mark := quiet.mark():
                yield mark
            await asyncio.sleep(state.poll_seconds)


class _Quiet:
    """What a stream sends while it has nothing new: `: caught-up` once (the replay is over;
    a client that is not following stops there), then `: keep-alive` every so often."""

    def __init__(self, keepalive_seconds: float) -> None:
        self.keepalive_seconds = keepalive_seconds
        self.caught_up = False
        self.last_sent = time.monotonic()

    def sent(self) -> None:
        self.last_sent = time.monotonic()

    def mark(self) -> bytes:
        """The comment to send now (b"" when none is due)."""
        if not self.caught_up:
            self.caught_up = True
            self.sent()
            return b": caught-up\n\n"
        if time.monotonic() - self.last_sent >= self.keepalive_seconds:
            self.sent()
            return b": keep-alive\n\n"
        return b""


def _metrics(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)
        if record.terminal:
            raise ApiError(406, f"Job {record.id} is not running ({record.stage})")
        cpus, memory = state.executor.limits(record.spec)

        async def events() -> AsyncIterator[bytes]:
            while True:
                current = state.store.get(record.id)
                if current is None or current.terminal:
                    return
                usage = await asyncio.to_thread(state.executor.usage, record.id)
                sample = metrics.sample(usage, cpus, memory)
                yield b"event: metric\ndata: " + json.dumps(sample).encode() + b"\n\n"
                await asyncio.sleep(1.0)

        return StreamingResponse(events(), media_type="text/event-stream", headers=_SSE_HEADERS)

    return handler


def _events(state: ServerState):
    """GET .../events (SSE): the job's history, one `data: {stage, message, timestamp}` event
    per change of its stage or status message, oldest first, then each new one until the job
    has ended. The Hub lists this route without saying what its events hold; this is hfuv's."""

    async def handler(request: Request, identity: Identity) -> Response:
        record = _job(state, request, identity)

        async def stream() -> AsyncIterator[bytes]:
            seen, quiet = 0, _Quiet(state.keepalive_seconds)
            while True:
                current = state.store.get(record.id)
                events = state.store.events(record.id, seen)
                for number, at, stage, message in events:
                    seen = number
                    event: dict[str, Any] = {"stage": stage, "timestamp": timestamp(at)}
                    if message is not None:
                        event["message"] = message
                    yield b"data: " + json.dumps(event).encode() + b"\n\n"
                    quiet.sent()
                if current is None or (current.terminal and not events):
                    return
                if not events:
                    if mark := quiet.mark():
                        yield mark
                    await asyncio.sleep(state.poll_seconds)

        return StreamingResponse(stream(), media_type="text/event-stream", headers=_SSE_HEADERS)

    return handler


_AVATAR_COLOURS = ("#f59e0b", "#10b981", "#3b82f6", "#8b5cf6", "#ef4444", "#14b8a6")


async def _avatar(request: Request) -> Response:
    """The default avatar JobInfo's `avatarUrl` names: a coloured disc, public as on the Hub
    (it shows no name, only a colour picked from the id)."""
    entity = request.path_params["entity_id"]
    if len(entity) != 24 or not all(c in "0123456789abcdef" for c in entity):
        return error_response(404, "No such avatar")
    colour = _AVATAR_COLOURS[int(entity, 16) % len(_AVATAR_COLOURS)]
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64">'
           f'<circle cx="32" cy="32" r="32" fill="{colour}"/></svg>')  # fmt: skip
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


def schedule_json(record: dict[str, Any]) -> dict[str, Any]:
    """The ScheduledJobInfo of `record`; a field with no value is absent, as on the Hub."""
    spec = {key: value for key, value in record["spec"].items() if value is not None}
    spec["secrets"] = sorted(spec.get("secrets", {}))
    if "timeoutSeconds" in spec:
        spec["timeout"] = spec["timeoutSeconds"]
    status: dict[str, Any] = {}
    if last := record.get("lastJob"):
        status["lastJob"] = {"id": last["id"], "at": timestamp(last["at"])}
    if record.get("nextRunAt"):
        status["nextJobRunAt"] = timestamp(record["nextRunAt"])
    owner = record["owner"]
    created_by = record.get("createdBy") or {"id": owner["id"], "name": owner["name"]}
    return {
        "id": record["id"],
        "type": "scheduled-job",
        "createdAt": timestamp(record["createdAt"]),
        "createdBy": created_by,
        "schedule": record["schedule"],
        "suspend": record["suspend"],
        "concurrency": record["concurrency"],
        "jobSpec": spec,
        "status": status,
        "owner": _with_avatar(owner),
    }


def _scheduler(state: ServerState) -> Scheduler:
    assert state.scheduler is not None
    return state.scheduler


def _schedule(state: ServerState, request: Request, identity: Identity) -> dict[str, Any]:
    namespace = _namespace(request, identity)
    schedule_id = request.path_params["schedule_id"]
    record = state.store.get_doc("schedule", schedule_id)
    if record is None or record["namespace"] != namespace:
        raise ApiError(404, f"Scheduled job {namespace}/{schedule_id} not found")
    return record


def _valid_schedule(value: Any) -> str:
    from hfuv.errors import ConfigError
    from hfuv.schedules import validate

    if not isinstance(value, str):
        raise ApiError(400, "`schedule` must be a string")
    try:
        return validate(value)
    except ConfigError as exc:
        raise ApiError(400, exc.message) from None


def _schedule_create(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity)
        body = await _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        spec = state.check_runnable(validate_spec(body.get("jobSpec")))
        _check_buckets(state, identity, spec)
        flags = {key: body.get(key, False) for key in ("suspend", "concurrency")}
        if not all(isinstance(value, bool) for value in flags.values()):
            raise ApiError(400, "`suspend` and `concurrency` must be booleans")
        record = _scheduler(state).create(
            namespace, _owner(namespace, identity), spec,
            schedule=_valid_schedule(body.get("schedule")), created_by=_creator(identity),
            **flags,
        )  # fmt: skip
        return JSONResponse(schedule_json(record))

    return handler


def _schedule_list(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity)
        wanted = [label.partition("=") for label in request.query_params.getlist("label")]
        records = [
            r for r in state.store.docs("schedule", (namespace,))
            if all(r["spec"].get("labels", {}).get(k) == v for k, _, v in wanted)
        ]  # fmt: skip
        return JSONResponse([schedule_json(r) for r in records])

    return handler


def _schedule_get(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        return JSONResponse(schedule_json(_schedule(state, request, identity)))

    return handler


def _schedule_delete(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        record = _schedule(state, request, identity)
        _scheduler(state).delete(record["id"])
        return JSONResponse(None)

    return handler


def _schedule_action(state: ServerState):
    from hfuv.server.scheduler import StillRunningError

    async def handler(request: Request, identity: Identity) -> Response:
        record = _schedule(state, request, identity)
        action, scheduler = request.path_params["action"], _scheduler(state)
        if request.method == "POST" and action in ("suspend", "resume"):
            record = scheduler.update(record["id"], suspend=action == "suspend") or record
        elif request.method == "POST" and action == "schedule":
            body = await _json_body(request)
            new = _valid_schedule(body.get("schedule") if isinstance(body, dict) else None)
            record = scheduler.update(record["id"], schedule=new) or record
        elif request.method == "PUT" and action == "labels":
            body = await _json_body(request)
            labels = _valid_labels(body if isinstance(body, dict) else {})
            record = scheduler.update(record["id"], spec=dict(record["spec"], labels=labels))
        elif request.method == "POST" and action == "run":
            try:
                job = scheduler.trigger(record["id"])
            except StillRunningError as exc:
                raise ApiError(
                    409,
                    f"A run of scheduled job {record['id']} is still active (job {exc}) and "
                    "concurrency is off",
                ) from None
            return JSONResponse(job_json(job, state.port))
        else:
            raise ApiError(404, f"Unknown action {action}")
        if record is None:  # deleted meanwhile
            raise ApiError(404, f"Scheduled job {request.path_params['schedule_id']} not found")
        return JSONResponse(schedule_json(record))

    return handler


def _webhook_json(state: ServerState, webhook: dict[str, Any]) -> dict[str, Any]:
    source = state.store.get(webhook["jobSourceId"])
    spec = None
    if source is not None:
        spec = dict(source.spec, secrets=sorted(webhook.get("secrets", {})))
    return webhooks.public(webhook, spec)


def _own_webhook(state: ServerState, request: Request, identity: Identity) -> dict[str, Any]:
    webhook = state.store.get_doc("webhook", request.path_params["webhook_id"])
    if webhook is None or not identity.can_use(webhook["namespace"]):
        raise ApiError(404, f"Webhook {request.path_params['webhook_id']} not found")
    return webhook


def _webhook_create(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        body = await _json_body(request)
        try:
            watched, domains, secret, secrets_ = webhooks.validate(body)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        source = state.store.get(body["jobSourceId"])
        if source is None or not identity.can_use(source.namespace):
            raise ApiError(404, f"Job {body['jobSourceId']} not found")
        _check_buckets(state, identity, source.spec)  # its jobs mount what the creator may
        webhook = {
            "id": new_job_id(), "namespace": source.namespace, "jobSourceId": source.id,
            "watched": watched, "domains": domains, "secret": secret, "secrets": secrets_,
            "disabled": False, "createdBy": _creator(identity),
        }  # fmt: skip
        state.store.put_doc("webhook", webhook)
        return JSONResponse({"webhook": _webhook_json(state, webhook)})

    return handler


def _webhook_list(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        mine = state.store.docs("webhook", (identity.name, *identity.orgs))
        return JSONResponse([_webhook_json(state, w) for w in mine])

    return handler


def _webhook_get(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        webhook = _own_webhook(state, request, identity)
        if request.method == "DELETE":
            state.store.delete_doc("webhook", webhook["id"])
            return JSONResponse(None)
        return JSONResponse({"webhook": _webhook_json(state, webhook)})

    return handler


def _webhook_update(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        webhook = _own_webhook(state, request, identity)
        body = await _json_body(request)
        try:
            updated = webhooks.validate_update(body, webhook)
        except ValueError as exc:
            raise ApiError(400, str(exc)) from None
        if updated["jobSourceId"] != webhook["jobSourceId"]:
            source = state.store.get(updated["jobSourceId"])
            if source is None or not identity.can_use(source.namespace):
                raise ApiError(404, f"Job {updated['jobSourceId']} not found")
            updated["namespace"] = source.namespace
        source = state.store.get(updated["jobSourceId"])
        if source is not None:  # whoever changes a webhook may mount what its jobs mount
            _check_buckets(state, identity, source.spec)
        state.store.put_doc("webhook", updated)
        return JSONResponse({"webhook": _webhook_json(state, updated)})

    return handler


def _webhook_toggle(state: ServerState):
    async def handler(request: Request, identity: Identity) -> Response:
        webhook = _own_webhook(state, request, identity)
        action = request.path_params["action"]
        if action not in ("enable", "disable"):
            raise ApiError(404, f"Unknown action {action}")
        webhook["disabled"] = action == "disable"
        state.store.put_doc("webhook", webhook)
        return JSONResponse({"webhook": _webhook_json(state, webhook)})

    return handler


def _webhook_receive(state: ServerState):
    """A Hub event for one webhook: its secret (or its owner's token) instead of auth."""

    async def endpoint(request: Request) -> Response:
        webhook = state.store.get_doc("webhook", request.path_params["webhook_id"])
        if webhook is None:
            return error_response(404, "Webhook not found")
        given = request.headers.get("x-webhook-secret", "")
        if webhook.get("secret"):
            if not secrets.compare_digest(given.encode(), webhook["secret"].encode()):
                return error_response(401, "Wrong or missing X-Webhook-Secret")
        else:
            try:
                identity = _authenticate(state, request)
            except ApiError as exc:
                return error_response(exc.status, exc.message)
            if not identity.can_use(webhook["namespace"]):
                return error_response(403, "This token cannot fire this webhook")
        try:
            payload = await _json_body(request)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        try:
            webhooks.check_event(payload)
        except ValueError as exc:
            return error_response(400, str(exc))
        source = state.store.get(webhook["jobSourceId"])
        if webhook["disabled"] or source is None or not webhooks.matches(webhook, payload):
            return JSONResponse({"jobs": []})
        digest, now = webhooks.delivery_digest(payload), time.time()
        earlier = state.store.delivery(webhook["id"], digest, now - webhooks.REPLAY_WINDOW_SECONDS)
        if earlier is not None:
            return JSONResponse({"jobs": earlier, "replay": True})
        env = {**source.spec.get("environment", {}), **webhooks.job_env(webhook, payload)}
        spec = dict(source.spec, environment=env, secrets=webhooks.job_secrets(webhook))
        try:
            state.check_runnable(spec)
            _check_creator_buckets(state, webhook.get("createdBy"), spec)
        except ApiError as exc:
            return error_response(exc.status, exc.message)
        initiator = {"type": "webhook", "id": webhook["id"]}
        try:
            job = state.launch(source.namespace, source.owner, initiator, spec,
                               created_by=webhook.get("createdBy"))  # fmt: skip
        except ApiError as exc:  # the disk is full
            return error_response(exc.status, exc.message)
        forget = now - webhooks.REPLAY_WINDOW_SECONDS
        state.store.remember_delivery(webhook["id"], digest, [job.id], forget)
        return JSONResponse({"jobs": [job.id]})

    return endpoint


def build_state(
    data_dir: Path,
    tokens: dict[str, Identity],
    *,
    max_parallel: int,
    environ: dict[str, str] | None = None,
    job_users: bool = False,
    gpus: GpuPool | None = None,
    runtime: Runtime | None = None,
    max_log_size: int = DEFAULT_MAX_LOG_BYTES,
) -> ServerState:
    store = Store(data_dir / "jobs.db")
    logs = LogBook(data_dir / "logs", max_log_size)
    executor = Executor(
        store,
        logs,
        data_dir / "work",
        max_parallel=max_parallel,
        environ=environ if environ is not None else dict(os.environ),
        users_root=data_dir / "users" if job_users else None,
        gpus=gpus,
        runtime=runtime,
        buckets=Buckets.open(data_dir),
    )
    keepalive = float(os.environ.get("HFUV_SERVER_KEEPALIVE", "30"))
    state = ServerState(store, logs, executor, tokens, keepalive, buckets=executor.buckets)

    def launch_scheduled(record: dict[str, Any]) -> JobRecord:
        initiator = {"type": "scheduled-job", "id": record["id"]}
        _check_creator_buckets(state, record.get("createdBy") or record["owner"], record["spec"])
        return state.launch(record["namespace"], record["owner"], initiator, record["spec"],
                            created_by=record.get("createdBy"))  # fmt: skip

    state.scheduler = Scheduler(store, launch_scheduled)
    return state
