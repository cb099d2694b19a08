"""JobsClient: the Hugging Face Jobs HTTP API over httpx, for huggingface.co or `hfuv server`.

Endpoint from `--endpoint` / `HF_ENDPOINT`; token from `--token` > `HF_TOKEN` > the saved login;
namespace from `--namespace` or whoami (cached per token and endpoint). HTTP failures become
typed errors that say what to do.

The server is not trusted further than that: the token goes to the endpoint only (never to a
page link or a redirect elsewhere), and every answer is bounded in time and size
(`hfuv.limits`), so a broken or hostile server ends a command with one clear line.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit

from hfuv import __version__
from hfuv.auth import find_hf_token
from hfuv.cache import cache_dir
from hfuv.errors import HfuvError, UsageError
from hfuv.lean_httpx import httpx
from hfuv.limits import Deadline, Limits, bound_sockets, mib, read_capped
from hfuv.retry import Backoff

DEFAULT_ENDPOINT = "https://huggingface.co"
TERMINAL_STAGES = frozenset({"COMPLETED", "CANCELED", "ERROR", "DELETED"})
MAX_STREAM_FAILURES = 5
QUIET_STREAM = 598  # a status of our own: a read timeout on a log stream
REPLAY_QUIET_SECONDS = 5.0  # not following: this long without a line means the replay is done
CAUGHT_UP = b": caught-up"  # hfuv server's mark after the replay, before new lines
SUBMISSION_LABEL = "hfuv-submission"
API_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a namespace or a job id, as in a URL
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


class LimitError(JobsApiError):
    """The server sent more, or more slowly, than hfuv takes; trying again would not help."""


class JobNotFoundError(JobsApiError):
    pass


class ConflictError(JobsApiError):
    pass


class RateLimitedError(JobsApiError):
    pass


class ServerError(JobsApiError):
    pass


def split_job_ref(ref: str, namespace: str | None) -> tuple[str | None, str]:
    """`NAMESPACE/ID` or `ID` → (namespace or None, id); a conflicting --namespace is an error,
    and so is a part that is not a name (it would become another URL path)."""
    ns, job_id = ref.rpartition("/")[::2] if "/" in ref else (namespace, ref)
    for part, what in ((ns, "namespace"), (job_id, "job id")):
        if part is not None and (not API_NAME.fullmatch(part) or part in (".", "..")):
            raise UsageError(f"invalid {what} {part!r} in {ref!r}",
                             hint="a job is ID or NAMESPACE/ID, as `hfuv ps` lists it")  # fmt: skip
    if "/" in ref and namespace and namespace != ns:
        raise UsageError(f"job {ref} is in namespace {ns}, not --namespace {namespace}")
    return ns, job_id


def checked_endpoint(value: str, source: str) -> str:
    """The Jobs API base URL `value` (from `source`: --endpoint or HF_ENDPOINT), normalised;
    a value that is not an http(s) URL is a usage error, before any request is tried."""
    parts = urlsplit(value.strip())
    if parts.scheme.lower() in ("http", "https") and parts.hostname:
        try:
            return str(httpx.URL(value.strip())).rstrip("/")
        except httpx.InvalidURL:
            pass
    if "://" in value:
        fix = "use an https:// URL (or http://127.0.0.1:PORT for an hfuv server)"
    else:
        host = value.split("/")[0].rsplit(":", 1)[0].strip("[]").lower()
        local = host == "localhost" or host.startswith("127.") or host == "::1"
        setting = "pass --endpoint " if source == "--endpoint" else "set HF_ENDPOINT="
        fix = f"{setting}{'http' if local else 'https'}://{value.strip()}"
    raise UsageError(f"{source} {value!r} is not an http:// or https:// URL", hint=fix)


class JobsClient:
    def __init__(
        self,
        *,
        endpoint: str | None = None,
        token: str | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        environ = os.environ if environ is None else environ
        self.on_retry = on_retry or _say
        if endpoint:
            self.endpoint = checked_endpoint(endpoint, "--endpoint")
        elif environ.get("HF_ENDPOINT"):
            self.endpoint = checked_endpoint(environ["HF_ENDPOINT"], "HF_ENDPOINT")
        else:
            self.endpoint = DEFAULT_ENDPOINT
        self.limits = Limits.from_environ(environ)
        self._deadline = Deadline()
        self.token = find_hf_token(environ, token)
        headers = {"user-agent": f"hfuv/{__version__}"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        self._http = httpx.Client(
            base_url=self.endpoint,
            headers=headers,
            timeout=httpx.Timeout(self.limits.timeout, connect=min(10.0, self.limits.timeout)),
            transport=transport,
            # Plain http (hfuv server on this machine) needs no certificates: loading them is a
            # third of a short command's time. Redirects are never followed, so TLS is only
            # ever used, and then verified, for an https endpoint.
            verify=not self.endpoint.startswith("http://"),
        )
        bound_sockets(self._http, self._deadline)

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
        self._require_token()
        if idempotent is None:
            idempotent = method in ("GET", "PUT", "DELETE") or path.endswith("/cancel")
        backoff = Backoff(attempts=attempts)
        while True:
            failure, retry_after, ambiguous = None, None, False
            try:
                response = self._exchange(method, path, **kwargs)
            except LimitError as exc:
                if idempotent:
                    raise
                raise AmbiguousError(exc.message, status=exc.status, hint=exc.hint) from None
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                failure = f"cannot reach {self.endpoint} ({type(exc).__name__})"
            except httpx.HTTPError as exc:
                failure = f"{method} {path} broke off ({type(exc).__name__})"
                ambiguous = True
            else:
                status = response.status_code
                if status < 300:
                    return response
                if status < 400:
                    raise self._redirected(response, method, path)
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

    def _require_token(self) -> None:
        if not self.token:
            raise AuthError(
                "no Hugging Face token",
                hint="set HF_TOKEN, run `hf auth login`, or pass --token",
            )

    def _exchange(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request and its whole answer, within the request deadline and the size limit."""
        with self._deadline.within(self.limits.deadline):
            try:
                with self._http.stream(method, path, **kwargs) as response:
                    self._read_all(response, method, path)
            except httpx.TimeoutException:
                if self._deadline.expired():
                    raise self._too_slow(method, path) from None
                raise
        return response

    def _read_all(self, response: httpx.Response, method: str, path: str) -> None:
        if read_capped(response, self.limits.max_response) is None:
            raise LimitError(
                f"{self.endpoint} answered {method} {path} with more than "
                f"{mib(self.limits.max_response)} (HFUV_MAX_RESPONSE_MB)",
                hint="raise HFUV_MAX_RESPONSE_MB if so big an answer is expected, "
                "else check HF_ENDPOINT",
            )

    def _too_slow(self, method: str, path: str) -> LimitError:
        return LimitError(
            f"{self.endpoint} took more than {self.limits.deadline:g}s to answer "
            f"{method} {path} (HFUV_HTTP_DEADLINE)",
            hint="the server is stuck or very slow; retry later, or raise HFUV_HTTP_DEADLINE",
        )

    def _redirected(self, response: httpx.Response, method: str, path: str) -> JobsApiError:
        target = _joined(response.url, response.headers.get("location", ""))
        return JobsApiError(
            f"{self.endpoint} redirected {method} {path} ({response.status_code}) to "
            f"{_origin_of(target)}; hfuv does not follow redirects from the Jobs API, so the "
            "token stays with the endpoint",
            status=response.status_code,
            hint="if that server is the Jobs API you meant, set HF_ENDPOINT to it",
        )

    def _json(self, response: httpx.Response, method: str, path: str) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise JobsApiError(
                f"{self.endpoint} answered {method} {path} with something that is not "
                f"JSON ({kind}: {response.text[:60]!r})",
                status=599,
                hint="check that HF_ENDPOINT is a Jobs API (https://huggingface.co or an hfuv "
                "server)",
            ) from None

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
        return self._json(self._request("GET", path, **kwargs), "GET", path)

    def _post_json(self, path: str, **kwargs: Any) -> Any:
        return self._json(self._request("POST", path, **kwargs), "POST", path)

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
        answer = self.whoami()
        name = answer.get("name") if isinstance(answer, dict) else None
        if not isinstance(name, str) or not name:
            raise JobsApiError(f"{self.endpoint} answered whoami without a user name", status=599,
                               hint="check HF_ENDPOINT, or pass --namespace")  # fmt: skip
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
                return self._post_json(f"/api/jobs/{namespace}", json=body)
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
        return self._paged(f"/api/jobs/{namespace}", params, "jobs")

    def _paged(self, path: str, params: Any, what: str) -> list[dict[str, Any]]:
        """Every item of a list the server answers in pages linked by `Link: rel=next`."""
        response = self._request("GET", path, params=params)
        items = self._page(response, path, what)
        seen = {str(response.url)}
        while "next" in response.links:
            path = self._next_page(response, seen, what)
            response = self._request("GET", path)
            items.extend(self._page(response, path, what))
        return items

    def _page(self, response: httpx.Response, path: str, what: str) -> list[dict[str, Any]]:
        page = self._json(response, "GET", path)
        if not isinstance(page, list):
            raise JobsApiError(f"{self.endpoint} answered GET {path} with a "
                               f"{type(page).__name__}, not a list of {what}", status=599,
                               hint="check HF_ENDPOINT")  # fmt: skip
        return page

    def _next_page(self, response: httpx.Response, seen: set[str], what: str) -> str:
        """The path of the page a `Link: rel=next` names: on this endpoint, new, and in bounds.

        Following a link elsewhere would hand the token to whoever the link names.
        """
        url = _joined(response.url, response.links["next"].get("url", ""))
        if not url.startswith(self.endpoint + "/"):
            raise JobsApiError(
                f"{self.endpoint} linked the next page of {what} to {_origin_of(url)}, which is "
                "not the endpoint; hfuv sends the token only to the endpoint",
                status=599,
                hint="check HF_ENDPOINT; the server's pagination points elsewhere",
            )
        if url in seen:
            raise LimitError(f"the list of {what} from {self.endpoint} loops: page "
                             f"{len(seen) + 1} links back to an earlier page",
                             hint="the server's pagination is broken; retry later")  # fmt: skip
        if len(seen) >= self.limits.max_pages:
            raise LimitError(
                f"the list of {what} from {self.endpoint} has more than {self.limits.max_pages} "
                "pages (HFUV_MAX_PAGES)",
                hint="narrow it (--label, --status) or raise HFUV_MAX_PAGES",
            )
        seen.add(url)
        return url[len(self.endpoint) :]

    def bucket_files(self, bucket: str, prefix: str = "") -> list[dict[str, Any]]:
        """The files of bucket `bucket` (NS/NAME) under `prefix`, at any depth."""
        path = f"/api/buckets/{bucket}/tree"
        if prefix:
            path += "/" + quote(prefix.strip("/"), safe="")
        entries = self._paged(path, {"recursive": "true"}, "bucket files")
        return [entry for entry in entries if entry.get("type") == "file"]

    def download_bucket_file(self, bucket: str, name: str, out: BinaryIO) -> int:
        """Write the bytes of file `name` of `bucket` to `out`; → the bytes written.

        The Hub may redirect a download to its storage: httpx follows, and drops the token
        when the redirect leaves the endpoint's origin."""
        self._require_token()
        path = f"/buckets/{bucket}/resolve/{quote(name, safe='/')}"
        backoff = Backoff()
        while True:
            out.seek(0)
            out.truncate()
            try:
                with self._http.stream("GET", path, follow_redirects=True) as response:
                    if response.status_code >= 400:
                        response.read()
                        raise self._error(response, "GET", path)
                    written = 0
                    for piece in response.iter_bytes():
                        out.write(piece)
                        written += len(piece)
                    return written
            except (httpx.TransportError, ServerError) as exc:
                delay = backoff.next_delay(None)
                if delay is None:
                    raise JobsApiError(f"GET {path} failed ({type(exc).__name__}); gave up "
                                       f"after {backoff.tried} tries", status=599,
                                       hint="retry later") from None  # fmt: skip
                self.on_retry(f"GET {path} broke off; retrying in {delay:.1f}s")
                time.sleep(delay)

    def cancel_job(self, namespace: str, job_id: str) -> None:
        self._request("POST", f"/api/jobs/{namespace}/{job_id}/cancel")

    def duplicate_job(self, namespace: str, job_id: str) -> dict[str, Any]:
        return self._post_json(f"/api/jobs/{namespace}/{job_id}/duplicate")

    def create_schedule(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._post_json(f"/api/scheduled-jobs/{namespace}", json=body)

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
        return self._post_json("/api/settings/webhooks", json=body)["webhook"]

    def list_webhooks(self) -> list[dict[str, Any]]:
        return self._get_json("/api/settings/webhooks")

    def delete_webhook(self, webhook_id: str) -> None:
        self._request("DELETE", f"/api/settings/webhooks/{webhook_id}")

    def toggle_webhook(self, webhook_id: str, action: str) -> dict[str, Any]:
        return self._post_json(f"/api/settings/webhooks/{webhook_id}/{action}")

    def hardware(self, *, patient: bool = True) -> list[dict[str, Any]]:
        """The flavors and prices; `patient=False` tries once (callers have a fallback)."""
        return self._get_json("/api/jobs/hardware", attempts=6 if patient else 1)

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
            yield from self._sse(path, params=params, silence=self.limits.silence)
        else:
            yield from self._sse(path, params=params, silence=REPLAY_QUIET_SECONDS, replay=True)

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
        ended = False
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
                quiet = exc.status == QUIET_STREAM
                failures += 0 if quiet else 1
                permanent = isinstance(exc, LimitError) or (
                    exc.status is not None and exc.status < 500 and exc.status != 429
                )
                if permanent or failures > MAX_STREAM_FAILURES:
                    raise
                if quiet and ended:  # the pass redone after the end: that stream never closes
                    raise JobsApiError(f"{exc.message} (HFUV_LOG_SILENCE), though the job has "
                                       "ended", status=599, hint="the last lines may be missing; "
                                       "raise HFUV_LOG_SILENCE if the server is just slow"
                                       ) from None  # fmt: skip
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
        for batch in self._sse(f"/api/jobs/{namespace}/{job_id}/metrics", silence=15.0):
            yield from batch

    def _sse(
        self,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        silence: float,
        replay: bool = False,
    ) -> Iterator[list[dict[str, Any]]]:
        """`data: {...}` events of a Server-Sent Events stream, a batch per network read.

        The answer's headers must come within the request deadline; after that, the stream may
        go `silence` seconds without a line (an event or a keep-alive), and no line may be
        longer than the line limit. `replay`: only what the server had when asked (see
        `stream_logs`); a quiet stream then ends the pass instead of failing it.
        """
        if not self.token:
            raise AuthError("no Hugging Face token", hint="set HF_TOKEN or run `hf auth login`")
        timeout = httpx.Timeout(
            self.limits.timeout, connect=min(10.0, self.limits.timeout), read=silence
        )
        pending = b""
        opened, started = False, time.monotonic()
        try:
            with (
                self._deadline.within(self.limits.deadline),
                self._http.stream("GET", path, params=params, timeout=timeout) as response,
            ):
                if response.status_code >= 300:
                    self._read_all(response, "GET", path)
                    if response.status_code < 400:
                        raise self._redirected(response, "GET", path)
                    raise self._error(response, "GET", path)
                opened = True
                self._deadline.restart(silence)
                replay_end = _replay_end(response.headers.get("date")) if replay else None
                for chunk in response.iter_bytes():
                    *lines, pending = (pending + chunk).split(b"\n")
                    if len(pending) > self.limits.max_line:
                        raise LimitError(
                            f"{self.endpoint} sent a line longer than {mib(self.limits.max_line)} "
                            f"on GET {path} (HFUV_MAX_LOG_LINE_MB)",
                            hint="raise HFUV_MAX_LOG_LINE_MB if the job writes such lines",
                        )
                    batch = _events([line for line in lines if line.startswith(b"data: {")])
                    later = _first_later(batch, replay_end) if replay_end and batch else None
                    if later is not None:
                        batch = batch[:later]
                    if batch:
                        yield batch
                    if later is not None or (replay and CAUGHT_UP in lines):
                        return
                    if batch or any(line.strip() for line in lines):
                        self._deadline.restart(silence)  # after the yield: the reader's time
        except httpx.HTTPError as exc:
            if isinstance(exc, httpx.TimeoutException) and opened:
                if replay:
                    return  # not following: a quiet stream means the replay is done
                # No line, not even a keep-alive, for a while: reconnect, not counted as a failure.
                raise JobsApiError(f"the stream from {self.endpoint} sent no line for "
                                   f"{silence:g}s", status=QUIET_STREAM) from None  # fmt: skip
            if isinstance(exc, httpx.TimeoutException) and (
                time.monotonic() - started >= self.limits.deadline
            ):
                raise self._too_slow("GET", path) from None
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


def _joined(base: httpx.URL, link: str) -> str:
    """`link` (from a header) made absolute against `base`; as it is when it is not a URL."""
    try:
        return str(base.join(link))
    except httpx.InvalidURL:
        return link


def _origin_of(url: str) -> str:
    """`scheme://host[:port]` of `url`: where a link or redirect points, without its path."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}" if parts.netloc else repr(url)


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
