"""JobsClient: the Hugging Face Jobs HTTP API over httpx, for huggingface.co or `hfuv server`.

Endpoint from `--endpoint` / `HF_ENDPOINT`; token from `--token` > `HF_TOKEN` > the saved login;
namespace from `--namespace` or whoami (cached per token and endpoint). HTTP failures become
typed errors that say what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from hfuv import __version__
from hfuv.auth import find_hf_token
from hfuv.cache import cache_dir
from hfuv.errors import HfuvError, UsageError
from hfuv.lean_httpx import httpx
from hfuv.retry import Backoff

DEFAULT_ENDPOINT = "https://huggingface.co"
TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
MAX_STREAM_FAILURES = 5
QUIET_STREAM = 598  # a status of our own: a read timeout on a log stream
REPLAY_QUIET_SECONDS = 5.0  # not following: this long without a line means the replay is done
CAUGHT_UP = b": caught-up"  # hfuv server's mark after the replay, before new lines
SUBMISSION_LABEL = "hfuv-submission"
SUBMISSION_GROUP_LABEL = "hfuv-submission-group"


class JobsApiError(HfuvError):
    """The Jobs API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, hint: str | None = None):
        super().__init__(message, hint=hint)
        self.status = status


class AmbiguousError(JobsApiError):
    """A request that changes something failed in a way that does not tell if it took effect."""


class AuthError(JobsApiError):
    pass


class JobNotFoundError(JobsApiError):
    pass


class ConflictError(JobsApiError):
    pass


class RateLimitedError(JobsApiError):
    pass


class ServerError(JobsApiError):
    pass


def split_job_ref(ref: str, namespace: str | None) -> tuple[str | None, str]:
    """`NAMESPACE/ID` or `ID` → (namespace or None, id); a conflicting --namespace is an error."""
    if "/" in ref:
        ns, _, job_id = ref.rpartition("/")
        if namespace and namespace != ns:
            raise UsageError(f"job {ref} is in namespace {ns}, not --namespace {namespace}")
        return ns, job_id
    return namespace, ref


class JobsClient:
    def __init__(
        self,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.on_retry = on_retry or _say
        self.endpoint = (endpoint or environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        self.token = find_hf_token(environ, token)
        headers = {"user-agent": f"hfuv/{__version__}"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=10.0),
            transport=transport,
            # Plain http (hfuv server on this machine) needs no certificates: loading them is a
            # third of a short command's time. Redirects are never followed, so TLS is only
            # ever used, and then verified, for an https endpoint.
            verify=not self.endpoint.startswith("http://"),
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> JobsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def job_url(self, namespace: str, job_id: str) -> str:
        return f"{self.endpoint}/jobs/{namespace}/{job_id}"

    # --- requests -------------------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        idempotent: bool | None = None,
        attempts: int = 6,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send one API request, retrying what is safe to retry.

        Idempotent requests (GET, PUT, DELETE, cancel) are retried on connection errors, 429 and
        5xx. Others only when nothing was processed (no connection, 429); an ambiguous failure
        (timeout, reset after sending, 5xx) is raised as AmbiguousError for the caller to settle.
        """
        if not self.token:
            raise AuthError(
                "no Hugging Face token",
                hint="set HF_TOKEN, run `hf auth login`, or pass --token",
            )
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE") or path.endswith("/cancel")
        backoff = Backoff(attempts=attempts)
        while True:
            failure, retry_after, ambiguous = None, None, False
            try:
                response = self._http.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = f"cannot reach {self.endpoint} ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                failure = f"{method} {path} broke off ({type(exc).__name__})"
                ambiguous = True
            else:
                status = response.status_code
                if status < 400:
                    return response
                if status == 429 or status >= 500:
                    failure = f"{self.endpoint} answered {status} to {method} {path}"
                    retry_after = response.headers.get("retry-after")
                    ambiguous = status >= 500
                if failure is None or (ambiguous and not idempotent):
                    error = self._error(response, method, path)
                    if ambiguous:
                        raise AmbiguousError(error.message, status=status)
                    raise error
            if ambiguous and not idempotent:
                raise AmbiguousError(failure, status=599)
            delay = backoff.next_delay(retry_after)
            if delay is None:
                raise JobsApiError(
                    f"{failure}; gave up after {backoff.tried} tries",
                    status=599,
                    hint="check HF_ENDPOINT / --endpoint and that the server is up, then retry",
                )
            self.on_retry(f"{failure}; retrying in {delay:.1f}s ({backoff.tried}/"
                          f"{backoff.attempts - 1})")  # fmt: skip
            time.sleep(delay)

    def _error(self, response: httpx.Response, method: str, path: str) -> JobsApiError:
        status = response.status_code
        detail = response.headers.get("x-error-message") or _error_text(response)
        where = f"{method} {path}"
        if status == 401:
            return AuthError(f"the token was refused ({detail})", status=status,
                             hint="check HF_TOKEN or run `hf auth login`")  # fmt: skip
        if status == 403:
            return AuthError(f"forbidden: {detail}", status=status,
                             hint="use a namespace your token can use (--namespace)")  # fmt: skip
        if status == 404:
            return JobNotFoundError(f"not found: {detail or where}", status=status,
                                    hint="check the job id and the namespace")  # fmt: skip
        if status == 409:
            return ConflictError(f"conflict: {detail}", status=status)
        if status == 429:
            wait = response.headers.get("retry-after")
            return RateLimitedError(
                f"rate limited{f' for {wait}s' if wait else ''}: {detail}",
                status=status,
                hint="wait and retry",
            )
        if status >= 500:
            return ServerError(f"{self.endpoint} failed ({status}) on {where}: {detail}",
                               status=status, hint="retry later")  # fmt: skip
        return JobsApiError(f"{where} was refused ({status}): {detail}", status=status)

    def _get_json(self, path: str, **kwargs: Any) -> Any:
        return self._request("GET", path, **kwargs).json()

    # --- the API ---------------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        return self._get_json("/api/whoami-v2")

    def namespace(self, explicit: str | None = None) -> str:
        """`explicit`, else the token's user name (asked once per token and endpoint)."""
        if explicit:
            return explicit
        if not self.token:
            raise AuthError("no Hugging Face token", hint="set HF_TOKEN or run `hf auth login`")
        key = hashlib.sha256(f"{self.endpoint}\0{self.token}".encode()).hexdigest()[:32]
        cached = cache_dir() / "whoami" / f"{key}.json"
        try:
            return json.loads(cached.read_text())["name"]
        except (OSError, ValueError, KeyError):
            pass
        name = self.whoami()["name"]
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({"name": name}))
        except OSError:
            pass
        return name

    def create_job(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST the job; after an ambiguous failure, look its submission key up before retrying.

        So one call creates at most one job, whatever the network does.
        """
        key = (body.get("labels") or {}).get(SUBMISSION_LABEL)
        backoff = Backoff()
        while True:
            try:
                return self._request("POST", f"/api/jobs/{namespace}", json=body).json()
            except AmbiguousError as exc:
                if key is None:
                    raise
                found = self.find_submission(namespace, key)
                if found is not None:
                    return found
                delay = backoff.next_delay()
                if delay is None:
                    raise JobsApiError(f"{exc.message}; the job was not created", status=599,
                                       hint="retry later") from None  # fmt: skip
                self.on_retry(f"{exc.message}; no job with this submission key yet, "
                              f"submitting again in {delay:.1f}s")  # fmt: skip
                time.sleep(delay)

    def find_submission(self, namespace: str, key: str) -> dict[str, Any] | None:
        jobs = self.list_jobs(namespace, labels=(f"{SUBMISSION_LABEL}={key}",))
        return jobs[0] if jobs else None

    def get_job(self, namespace: str, job_id: str) -> dict[str, Any]:
        return self._get_json(f"/api/jobs/{namespace}/{job_id}")

    def list_jobs(
        self, namespace: str, *, stages: tuple[str, ...] = (), labels: tuple[str, ...] = ()
    ) -> list[dict[str, Any]]:
        params = [("stage", s.upper()) for s in stages] + [("label", lab) for lab in labels]
        response = self._request("GET", f"/api/jobs/{namespace}", params=params)
        jobs = list(response.json())
        while "next" in response.links:
            response = self._request("GET", response.links["next"]["url"])
            jobs.extend(response.json())
        return jobs

    def cancel_job(self, namespace: str, job_id: str) -> None:
        self._request("POST", f"/api/jobs/{namespace}/{job_id}/cancel")

    def duplicate_job(self, namespace: str, job_id: str) -> dict[str, Any]:
        return self._request("POST", f"/api/jobs/{namespace}/{job_id}/duplicate").json()

    def create_schedule(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"/api/scheduled-jobs/{namespace}", json=body).json()

    def list_schedules(self, namespace: str) -> list[dict[str, Any]]:
        return self._get_json(f"/api/scheduled-jobs/{namespace}")

    def get_schedule(self, namespace: str, schedule_id: str) -> dict[str, Any]:
        return self._get_json(f"/api/scheduled-jobs/{namespace}/{schedule_id}")

    def delete_schedule(self, namespace: str, schedule_id: str) -> None:
        self._request("DELETE", f"/api/scheduled-jobs/{namespace}/{schedule_id}")

    def schedule_action(self, namespace: str, schedule_id: str, action: str) -> Any:
        """POST …/suspend, …/resume or …/run (which answers the new job)."""
        return self._request("POST", f"/api/scheduled-jobs/{namespace}/{schedule_id}/{action}")

    def create_webhook(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", "/api/settings/webhooks", json=body).json()["webhook"]

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self._get_json("/api/settings/webhooks")

    def delete_webhook(self, webhook_id: str) -> None:
        self._request("DELETE", f"/api/settings/webhooks/{webhook_id}")

    def toggle_webhook(self, webhook_id: str, action: str) -> dict[str, Any]:
        return self._request("POST", f"/api/settings/webhooks/{webhook_id}/{action}").json()

    def hardware(self, *, patient: bool = True) -> list[dict[str, Any]]:
        """The flavors and prices; `patient=False` tries once (callers have a fallback)."""
        return self._request("GET", "/api/jobs/hardware", attempts=6 if patient else 1).json()

    def stream_logs(
        self, namespace: str, job_id: str, *, tail: int | None = None, follow: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """One pass over the log stream, in batches as they arrive.

        Following, the pass lasts until the server closes the stream (when the job has ended).
        Not following, it ends once the server has sent the lines it had, as `hf jobs logs`
        does: at the first line logged more than 1 s after the response's Date, after 5 s
        without a line, or at once at hfuv server's `: caught-up` mark.
        """
        params = {"tail": tail} if tail is not None else None
        path = f"/api/jobs/{namespace}/{job_id}/logs"
        if follow:
            yield from self._sse(path, params=params, read=120.0)
        else:
            yield from self._sse(path, params=params, read=REPLAY_QUIET_SECONDS, replay=True)

    def follow_logs(
        self, namespace: str, job_id: str, *, tail: int | None = None, follow: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Log events without gaps or repeats (see `follow_log_batches`)."""
        for batch in self.follow_log_batches(namespace, job_id, tail=tail, follow=follow):
            yield from batch

    def follow_log_batches(
        self, namespace: str, job_id: str, *, tail: int | None = None, follow: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """Log events without gaps or repeats, reconnecting until the job has ended.

        The server replays the whole log on every connection: events already yielded are
        skipped by position (after a `tail` request, by matching the last one seen). Events
        come in the batches the network delivers, so a reader can write each batch at once.
        """
        seen = 0
        last: dict[str, Any] | None = None
        first = True
        failures = 0
        while True:
            skip_until_last = last is not None and tail is not None
            position = 0
            clean = False
            try:
                for batch in self.stream_logs(
                    namespace, job_id, tail=tail if first else None, follow=follow
                ):
                    fresh = []
                    for event in batch:
                        if skip_until_last:
                            skip_until_last = event != last
                            continue
                        position += 1
                        if tail is None and position <= seen:
                            continue
                        fresh.append(event)
                    if fresh:
                        seen = max(seen, position)
                        last, failures = fresh[-1], 0
                        yield fresh
                clean = True
            except JobsApiError as exc:
                failures += 0 if exc.status == QUIET_STREAM else 1
                permanent = exc.status is not None and exc.status < 500 and exc.status != 429
                if permanent or failures > MAX_STREAM_FAILURES:
                    raise
                if exc.status != QUIET_STREAM:
                    self.on_retry(f"the log stream broke ({exc.message}); reconnecting")
                time.sleep(min(10.0, 2.0 ** (failures - 1)))
            first = False
            if not follow:
                return
            # The job record, not the stream, says when to stop; a broken last pass is redone
            # so that lines written between the break and the end are not lost.
            ended = self.get_job(namespace, job_id)["status"]["stage"] in TERMINAL_STAGES
            if ended and clean:
                return
            if not ended:
                time.sleep(1.0)

    def metrics(self, namespace: str, job_id: str) -> Iterator[dict[str, Any]]:
        for batch in self._sse(f"/api/jobs/{namespace}/{job_id}/metrics", read=15.0):
            yield from batch

    def _sse(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        read: float,
        replay: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """`data: {...}` events of a Server-Sent Events stream, a batch per network read.

        `replay`: only what the server had when asked (see `stream_logs`); a quiet stream
        then ends the pass instead of failing it.
        """
        if not self.token:
            raise AuthError("no Hugging Face token", hint="set HF_TOKEN or run `hf auth login`")
        timeout = httpx.Timeout(30.0, connect=10.0, read=read)
        pending = b""
        try:
            with self._http.stream("GET", path, params=params, timeout=timeout) as response:
                if response.status_code >= 400:
                    response.read()
                    raise self._error(response, "GET", path)
                replay_end = _replay_end(response.headers.get("date")) if replay else None
                for chunk in response.iter_bytes():
                    *lines, pending = (pending + chunk).split(b"\n")
                    batch = _events([line for line in lines if line.startswith(b"data: {")])
                    later = _first_later(batch, replay_end) if replay_end and batch else None
                    if later is not None:
                        batch = batch[:later]
                    if batch:
                        yield batch
                    if later is not None or (replay and CAUGHT_UP in lines):
                        return
        except httpx.ReadTimeout:
            if replay:
                return
            # Nothing, not even a keep-alive, for a while: reconnect, without counting a failure.
            raise JobsApiError("the log stream went quiet", status=QUIET_STREAM) from None
        except httpx.HTTPError as exc:
            raise JobsApiError(
                f"the stream from {self.endpoint} broke: {type(exc).__name__}", status=599
            ) from None


def _replay_end(date: str | None) -> datetime | None:
    """1 s after the response's Date (which has 1 s resolution), as `hf jobs logs` stops."""
    try:
        moment = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)) + timedelta(seconds=1)


def _first_later(batch: list[dict[str, Any]], moment: datetime) -> int | None:
    """The position of the first event logged after `moment`, if any (events are in order)."""
    if not _logged_after(batch[-1], moment):
        return None
    return next(i for i, event in enumerate(batch) if _logged_after(event, moment))


def _logged_after(event: dict[str, Any], moment: datetime) -> bool:
    stamp = event.get("timestamp")
    try:
        logged = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
    except (AttributeError, ValueError):
        return False
    return logged is not None and logged.tzinfo is not None and logged > moment


def _events(lines: list[bytes]) -> list[dict[str, Any]]:
    """The JSON objects of `data: {…}` lines, decoded in one call (a log has many)."""
    if not lines:
        return []
    payloads = [line[len(b"data: ") :].rstrip(b"\r") for line in lines]
    try:
        events = json.loads(b"[" + b",".join(payloads) + b"]")
        if len(events) == len(payloads):
            return events
    except ValueError:
        pass
    return [_event(payload) for payload in payloads]  # the slow way, to name the bad one


def _event(payload: bytes) -> dict[str, Any]:
    try:
        return json.loads(payload)
    except ValueError:
        raise JobsApiError("a log event was cut short", status=599) from None


def _say(message: str) -> None:
    print(f"hfuv: {message}", file=sys.stderr, flush=True)


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip()[:200]
    if isinstance(body, dict):
        return str(body.get("error") or body.get("message") or body)[:200]
    return str(body)[:200]


def exit_code_of(job: Mapping[str, Any]) -> int:
    """The process exit code a finished job stands for."""
    status = job.get("status") or {}
    stage = status.get("stage")
    if stage == "COMPLETED":
        return 0
    if stage == "CANCELED":
        return 130
    if status.get("message") == "Job timeout":
        return 124
    code = status.get("exitCode")
    if isinstance(code, int) and code > 0:
        return code
    return 1
