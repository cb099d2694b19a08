"""SCRIPT argument → ScriptSource. The only module that fetches script text.

A SCRIPT is a local path, `-` (stdin), an http(s) URL, a gist page, a GitHub `blob` page or a
Hugging Face Hub `blob`/`raw` page. Remote content is hashed and cached by sha256; what ships is
always the content fetched at submit time, never the URL. The Hugging Face token goes only to
Hugging Face hosts over https (and to the configured `HF_ENDPOINT`, as given), the GitHub token
only to the GitHub API; redirects are followed by hand, so a redirect elsewhere goes without a
token. Every fetch keeps to the limits of `hfuv.limits` (time) and MAX_SCRIPT_BYTES.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from hfuv.errors import SourceError, UsageError

if TYPE_CHECKING:
    import httpx

MAX_SCRIPT_BYTES = 10 * 1024 * 1024
MAX_REDIRECTS = 10
DEFAULT_GITHUB_API = "https://api.github.com"
DEFAULT_GITHUB_RAW = "https://raw.githubusercontent.com"
HF_HOSTS = ("huggingface.co", "hf.co")
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class ScriptSource:
    content: bytes
    name: str  # file name the script ships as, always ending in .py
    origin: str  # what the user gave, minus credentials and query strings
    sha256: str
    path: Path | None = None  # set for local files (their lock may sit beside them)
    revision: str | None = None  # gist revision, when known
    command: str | None = None  # `hfuv run COMMAND`: the shipped script only runs it


# What ships for `hfuv run --with ruff ruff check`: a script with no dependencies of its own
# (the --with ones are folded in and locked like any script's) that becomes the command, found
# on the PATH that `uv run` gives the locked environment.
COMMAND_SCRIPT = """\
\"\"\"Runs the command `hfuv run` was given, inside this script's locked environment.\"\"\"
import os
import sys

try:
    os.execvp(sys.argv[1], sys.argv[1:])
except FileNotFoundError:
    sys.stderr.write(f"hfuv: {sys.argv[1]}: command not found in the job's environment\\n")
    sys.exit(127)
"""


def is_command(script: str) -> bool:
    """SCRIPT is a command (`ruff`, `python`) when it is a bare name that is neither a file
    here, a URL, `-`, nor a `.py` name (a missing script stays an error)."""
    return (
        bool(script)
        and script != "-"
        and "/" not in script
        and os.sep not in script
        and not script.endswith(".py")
        and not os.path.exists(script)
    )


def load(
    script: str,
    *,
    environ: Mapping[str, str] | None = None,
    gist_file: str | None = None,
    sha256: str | None = None,
    cache: Path | None = None,
) -> ScriptSource:
    """Resolve a SCRIPT argument to its content."""
    environ = os.environ if environ is None else environ
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise UsageError(f"--sha256 {sha256!r} is not a sha256 hex digest (64 hex digits)")
    if gist_file and (urlsplit(script).hostname or "").lower() != "gist.github.com":
        raise UsageError("--gist-file only applies to gist.github.com URLs")
    if script == "-":
        content = sys.stdin.buffer.read()
        return _checked(_make(content, "script.py", "<stdin>"), sha256)
    if is_command(script):
        source = _make(COMMAND_SCRIPT.encode(), f"run-{script}.py", f"command {script}")
        return replace(source, command=script)
    if not re.match(r"https?://", script):
        return _checked(_load_path(script), sha256)
    if cache is not None and sha256 is not None:
        cached = cache / "sources" / sha256.lower()
        if cached.is_file():
            name = (cache / "sources" / f"{sha256.lower()}.name").read_text().strip()
            return _make(cached.read_bytes(), name, _public_origin(script))
    fetcher = _Fetcher(environ)
    try:
        source = fetcher.fetch(script, gist_file)
    finally:
        fetcher.close()
    source = _checked(source, sha256)
    if cache is not None:
        _store(cache, source)
    return source


def _load_path(script: str) -> ScriptSource:
    path = Path(script)
    if not path.exists():
        raise UsageError(f"script not found: {script}", hint="check the path")
    if not path.is_file():
        raise UsageError(f"not a file: {script}", hint="give the path of a Python script")
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise SourceError(f"cannot read {script}: {exc.strerror}") from None
    source = _make(content, path.name, path.name)
    return ScriptSource(source.content, source.name, source.origin, source.sha256, path=path)


def _make(content: bytes, name: str, origin: str, revision: str | None = None) -> ScriptSource:
    return ScriptSource(
        content=content,
        name=ship_name(name),
        origin=origin,
        sha256=hashlib.sha256(content).hexdigest(),
        revision=revision,
    )


def ship_name(name: str) -> str:
    """A safe file name for the shipped copy, ending in `.py` so uv treats it as a script."""
    base = _SAFE_NAME.sub("_", name.rsplit("/", 1)[-1]).strip("._") or "script"
    return base if base.endswith(".py") else base + ".py"


def _checked(source: ScriptSource, sha256: str | None) -> ScriptSource:
    if sha256 is not None and source.sha256 != sha256.lower():
        raise SourceError(
            f"{source.origin} has sha256 {source.sha256}, not the pinned {sha256.lower()}",
            hint="the content changed; check it and update --sha256",
        )
    return source


def _store(cache: Path, source: ScriptSource) -> None:
    folder = cache / "sources"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / source.sha256).write_bytes(source.content)
        (folder / f"{source.sha256}.name").write_text(source.name + "\n")
    except OSError:
        pass  # the cache is an optimisation; a read-only cache dir must not stop a run


def _public_origin(url: str) -> str:
    """The URL without user info, query or fragment, which may carry credentials."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def hf_hosts(environ: Mapping[str, str]) -> set[str]:
    hosts = set(HF_HOSTS)
    endpoint = environ.get("HF_ENDPOINT")
    if endpoint:
        parsed = urlsplit(endpoint)
        if parsed.hostname:
            hosts.add(f"{parsed.hostname}:{parsed.port}" if parsed.port else parsed.hostname)
    return hosts


def _host(url: str) -> str:
    parsed = urlsplit(url)
    return f"{parsed.hostname}:{parsed.port}" if parsed.port else (parsed.hostname or "")


Origin = tuple[str, str, int]  # scheme, host, port


def _origin(url: str) -> Origin:
    parsed = urlsplit(url)
    scheme = parsed.scheme.lower()
    try:
        port = parsed.port or (443 if scheme == "https" else 80)
    except ValueError:  # not a port number: a URL no token goes to
        return ("", "", 0)
    return scheme, (parsed.hostname or "").lower(), port


@dataclass(frozen=True)
class _Credential:
    """A token and the only origins it may be sent to."""

    token: str | None
    origins: frozenset[Origin]

    def headers_for(self, url: str) -> dict[str, str]:
        if self.token and _origin(url) in self.origins:
            return {"Authorization": f"Bearer {self.token}"}
        return {}


class _Fetcher:
    def __init__(self, environ: Mapping[str, str]) -> None:
        from hfuv.lean_httpx import httpx
        from hfuv.limits import Deadline, Limits, bound_sockets

        self.environ = environ
        self.limits = Limits.from_environ(environ)
        self.deadline = Deadline()
        self.api = environ.get("HFUV_GITHUB_API_URL", DEFAULT_GITHUB_API).rstrip("/")
        self.raw = environ.get("HFUV_GITHUB_RAW_URL", DEFAULT_GITHUB_RAW).rstrip("/")
        self.client = httpx.Client(
            timeout=httpx.Timeout(self.limits.timeout), headers={"User-Agent": "hfuv"}
        )
        bound_sockets(self.client, self.deadline)

    def close(self) -> None:
        self.client.close()

    def fetch(self, url: str, gist_file: str | None) -> ScriptSource:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        segments = [s for s in parts.path.split("/") if s]
        if host == "gist.github.com" and segments:
            return self._gist(url, segments, parts.fragment, gist_file)
        if host == "github.com" and len(segments) >= 5 and segments[2] in ("blob", "raw"):
            owner, repo, _, *rest = segments
            raw_url = f"{self.raw}/{owner}/{repo}/{'/'.join(rest)}"
            return self._plain(raw_url, origin=url, name=segments[-1])
        if _host(url).lower() in hf_hosts(self.environ):
            url = _hf_resolve_url(url)
        return self._plain(url, origin=url, name=segments[-1] if segments else "script.py")

    def _plain(self, url: str, *, origin: str, name: str) -> ScriptSource:
        content = self._request(url, credential=self._hf_credential)
        _reject_html(content, origin)
        return _make(content, name, _public_origin(origin))

    @cached_property
    def _hf_credential(self) -> _Credential:
        """The HF token, for the Hub over https and for HF_ENDPOINT as given."""
        from hfuv.auth import find_hf_token

        origins = {("https", host, 443) for host in HF_HOSTS}
        endpoint = self.environ.get("HF_ENDPOINT")
        if endpoint and urlsplit(endpoint).hostname:
            origins.add(_origin(endpoint))
        return _Credential(find_hf_token(self.environ), frozenset(origins))

    def _gist(
        self, url: str, segments: list[str], fragment: str, gist_file: str | None
    ) -> ScriptSource:
        gist_id = segments[1] if len(segments) >= 2 else segments[0]
        revision_path = f"/{segments[2]}" if len(segments) >= 3 else ""
        api_url = f"{self.api}/gists/{gist_id}{revision_path}"
        github = _Credential(self.environ.get("GITHUB_TOKEN"), frozenset({_origin(self.api)}))
        body = self._request(
            api_url,
            credential=github,
            headers={"Accept": "application/vnd.github+json"},
            github=True,
        )
        try:
            gist = json.loads(body)
            files = gist["files"]
        except (ValueError, KeyError, TypeError):
            raise SourceError(f"unexpected answer from the gist API for {url}") from None
        chosen = _pick_gist_file(files, gist_file, fragment, url)
        entry = files[chosen]
        content_text = entry.get("content")
        if entry.get("truncated") or content_text is None:
            content = self._request(entry["raw_url"])
        else:
            content = content_text.encode("utf-8")
        history = gist.get("history") or []
        revision = history[0].get("version") if history else None
        _reject_html(content, url)
        origin = _public_origin(url)
        return _make(content, chosen, origin, revision=revision)

    def _request(
        self,
        url: str,
        *,
        credential: _Credential | None = None,
        headers: dict[str, str] | None = None,
        github: bool = False,
    ) -> bytes:
        """The body of GET `url`, redirects followed, within one deadline and MAX_SCRIPT_BYTES.

        Each hop gets the token only if it is one of the token's origins.
        """
        from hfuv.lean_httpx import httpx
        from hfuv.limits import mib, read_capped

        asked = public = _public_origin(url)
        started = time.monotonic()
        try:
            with self.deadline.within(self.limits.deadline):
                for _ in range(MAX_REDIRECTS + 1):
                    public = _public_origin(url)
                    sent = {
                        **(headers or {}),
                        **(credential.headers_for(url) if credential else {}),
                    }
                    with self.client.stream("GET", url, headers=sent) as response:
                        if response.is_redirect:
                            url = _redirect_target(response, public)
                            continue
                        if response.status_code >= 300:
                            _raise_for_status(response, public, github=github)
                        content = read_capped(response, MAX_SCRIPT_BYTES)
                    if content is None:
                        raise SourceError(
                            f"{public} is larger than {mib(MAX_SCRIPT_BYTES)}; that is not a "
                            "script hfuv can ship",
                            hint="ship data with a volume, not in the script",
                        )
                    return content
        except httpx.TimeoutException:
            if time.monotonic() - started >= self.limits.deadline:
                raise SourceError(
                    f"fetching {asked} took more than {self.limits.deadline:g}s "
                    "(HFUV_HTTP_DEADLINE)",
                    hint="the server is stuck or very slow; retry, or raise HFUV_HTTP_DEADLINE",
                ) from None
            raise SourceError(
                f"timed out after {self.limits.timeout:g}s fetching {public}",
                hint="check the network, or raise HFUV_HTTP_TIMEOUT",
            ) from None
        except httpx.HTTPError as exc:
            raise SourceError(
                f"could not fetch {public}: {type(exc).__name__}: {exc}",
                hint="check the URL and the network",
            ) from None
        except httpx.InvalidURL as exc:
            raise SourceError(f"{public} is not a URL hfuv can fetch: {exc}") from None
        raise SourceError(f"{asked} redirects more than {MAX_REDIRECTS} times",
                          hint="check the URL")  # fmt: skip


def _redirect_target(response: httpx.Response, public: str) -> str:
    target = str(response.url.join(response.headers["location"]))
    if urlsplit(target).scheme not in ("http", "https"):
        raise SourceError(f"{public} redirects to {_public_origin(target)}, not an http(s) URL")
    return target


def _raise_for_status(response: httpx.Response, public: str, *, github: bool) -> None:
    status = response.status_code
    remaining = response.headers.get("x-ratelimit-remaining")
    if status in (403, 429) and (remaining == "0" or "retry-after" in response.headers):
        reset = response.headers.get("x-ratelimit-reset")
        when = ""
        if reset and reset.isdigit():
            when = " until " + time.strftime("%H:%M:%S UTC", time.gmtime(int(reset)))
        elif response.headers.get("retry-after"):
            when = f" for {response.headers['retry-after']}s"
        raise SourceError(
            f"rate limited by {'the GitHub API' if github else public} (HTTP {status}){when}",
            hint="set GITHUB_TOKEN to a GitHub token for a higher limit"
            if github
            else "wait and retry",
        )
    cleartext_hub = response.url.scheme == "http" and response.url.host in HF_HOSTS
    if status == 404:
        raise SourceError(
            f"not found (HTTP 404): {public}",
            hint=_HTTPS_ONLY
            if cleartext_hub
            else "check the URL; private gists and repos need GITHUB_TOKEN or HF_TOKEN",
        )
    if status in (401, 403):
        raise SourceError(
            f"access denied (HTTP {status}): {public}",
            hint=_HTTPS_ONLY
            if cleartext_hub
            else "set GITHUB_TOKEN for GitHub or HF_TOKEN for Hugging Face if it is private",
        )
    raise SourceError(f"HTTP {status} fetching {public}", hint="retry later")


_HTTPS_ONLY = "use https://: hfuv sends HF_TOKEN to the Hub only over https"


def _reject_html(content: bytes, origin: str) -> None:
    head = content[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise SourceError(
            f"{_public_origin(origin)} is an HTML page, not a Python script",
            hint="use the raw file URL (GitHub: raw.githubusercontent.com; Hub: /resolve/)",
        )


def _anchor(filename: str) -> str:
    """GitHub's page anchor for a gist file: `file-` + the name lowercased, `.` and such as `-`."""
    return "file-" + re.sub(r"[^a-z0-9_-]", "-", filename.lower())


def _pick_gist_file(files: dict[str, dict], gist_file: str | None, fragment: str, url: str) -> str:
    names = sorted(files)
    if gist_file:
        if gist_file in files:
            return gist_file
        raise UsageError(f"gist {url} has no file {gist_file!r}", hint=f"files: {', '.join(names)}")
    if fragment.startswith("file-"):
        for name in names:
            if _anchor(name) == fragment.lower():
                return name
        raise UsageError(
            f"gist {url} has no file matching #{fragment}", hint=f"files: {', '.join(names)}"
        )
    python = [name for name in names if name.endswith(".py")]
    if len(python) == 1:
        return python[0]
    if not python:
        raise UsageError(
            f"gist {url} has no .py file", hint=f"files: {', '.join(names)}; use --gist-file"
        )
    raise UsageError(
        f"gist {url} has several .py files: {', '.join(python)}",
        hint="pick one with --gist-file NAME or a #file-NAME-py fragment",
    )


def _hf_resolve_url(url: str) -> str:
    """Hub `blob`/`raw` page URL → the `resolve` download URL (other URLs unchanged)."""
    parts = urlsplit(url)
    segments = parts.path.split("/")
    # ['', (datasets|spaces|kernels)?, ns, name, blob|raw, rev, *path]
    start = 2 if len(segments) > 1 and segments[1] in ("datasets", "spaces", "kernels") else 1
    marker = start + 2
    if len(segments) > marker + 1 and segments[marker] in ("blob", "raw"):
        segments[marker] = "resolve"
        return urlunsplit(parts._replace(path="/".join(segments)))
    return url
