"""A failed `uv lock`, told in one line: what failed (an index, a git repository, a package) and,
when the script declares it, where (FILE:LINE, or the `--with` option). uv's whole output is the
error's detail, which `HFUV_DEBUG=1` prints.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from hfuv import uv_table
from hfuv.errors import HfuvError, LockError, PythonNotFoundError
from hfuv.pep723 import ScriptMetadata
from hfuv.uv import UvFailure, parse_failure, shorten, transcript

LIMIT = 200  # characters in the whole `error: …` line
DEBUG_HINT = "HFUV_DEBUG=1 shows uv's output"

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_GIT_SOURCE = re.compile(r"`(?P<package>\S+) @ git\+(?P<url>[^`]+)`")
_DIRECT_SOURCE = re.compile(r"`(?P<package>\S+) @ (?P<url>[^`]+)`")
_FETCHED = re.compile(r"Failed to fetch: (\S+)")


@dataclass(frozen=True)
class Explanation:
    what: str  # what failed, naming the index, repository or package
    where: str | None  # FILE:LINE or `--with DEP`, when the script or a flag declares it
    fix: str
    reason: str = ""  # uv's (or git's) innermost reason, dropped first when space runs out

    def line(self, name: str) -> tuple[str, str]:
        """(message, hint) that fit in one `error:` line of about LIMIT characters."""
        hint = f"{self.fix}; {DEBUG_HINT}"
        head = f"{self.where}: {self.what}" if self.where else f"cannot lock {name}: {self.what}"
        room = LIMIT - len(f"error: {head} () (hint: {hint})")
        if self.reason and room >= 12:
            head += f" ({shorten(self.reason, room)})"
        return head, hint


def lock_failure(
    name: str,
    python: str,
    result: subprocess.CompletedProcess[str],
    metadata: ScriptMetadata | None = None,
    with_deps: Sequence[str] = (),
) -> HfuvError:
    """The one-line error for a `uv lock --script` of `name` that failed with `result`."""
    failure = parse_failure(result.stderr)
    detail = transcript(result.args, result.stderr)
    chain = "\n".join(failure.chain)
    if "No interpreter found" in chain or "Failed to inspect Python interpreter" in chain:
        return PythonNotFoundError(
            f"Python {python} is not installed here, and uv needs it to lock {name}",
            hint=f"install it (`uv python install {python}`) or choose another with --python",
            detail=detail,
        )
    declared = Declared(name, metadata, with_deps)
    explanation = (
        _git(failure, declared)
        or _fetch(failure, declared)
        or _resolution(failure, declared)
        or Explanation(failure.error, None, "see uv's message", _innermost(failure))
    )
    message, hint = explanation.line(name)
    return LockError(message, hint=hint, detail=detail)


class Declared:
    """Where the script (or `--with`) declares a package or a URL."""

    def __init__(self, name: str, metadata: ScriptMetadata | None, with_deps: Sequence[str]):
        self.name = name
        self.urls = uv_table.declared_urls(metadata) if metadata and metadata.found else []
        self.requirements: list[tuple[str, str]] = []  # (normalized name, where)
        if metadata and metadata.found:
            uv = metadata.tool_uv
            for requirement in [*(metadata.dependencies or []),
                                *(uv.get("constraint-dependencies") or []),
                                *(uv.get("override-dependencies") or [])]:  # fmt: skip
                self._add(requirement, f"{name}:{metadata.line_of(requirement)}")
        for requirement in with_deps:
            self._add(requirement, f"--with {requirement}")

    def _add(self, requirement: object, where: str) -> None:
        match = _NAME.match(requirement) if isinstance(requirement, str) else None
        if match:
            self.requirements.append((_normalize(match.group(1)), where))

    def package(self, text: str) -> str | None:
        """Where the package that `text` (uv's words) mentions first is declared."""
        best: tuple[int, str] | None = None
        for package, where in self.requirements:
            found = re.search(rf"(?<![\w.-]){re.escape(package)}(?![\w-])", text)
            if found and (best is None or found.start() < best[0]):
                best = (found.start(), where)
        return best[1] if best else None

    def url(self, url: str) -> tuple[str, str, str] | None:
        """(what, declared URL, FILE:LINE) of the declared location `url` is under."""
        matches = [
            (what, declared, f"{self.name}:{line}")
            for what, declared, line in self.urls
            if url.rstrip("/") == declared.rstrip("/") or url.startswith(declared.rstrip("/") + "/")
        ]
        return max(matches, key=lambda m: len(m[1]), default=None)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _git(failure: UvFailure, declared: Declared) -> Explanation | None:
    source = _GIT_SOURCE.search(failure.error)
    if not source or not any("Git operation failed" in cause for cause in failure.causes):
        return None
    url = source["url"].split("#")[0]
    head, _, last = url.rpartition("/")
    repository = f"{head}/{last.split('@')[0]}" if head else url
    fatal = re.search(r"^fatal: (.*)$", "\n".join(failure.causes), re.MULTILINE)
    reason = _git_reason(fatal.group(1)) if fatal else _innermost(failure)
    located = declared.url(repository)
    return Explanation(
        f"cannot clone the git repository {repository}",
        located[2] if located else declared.package(source["package"]),
        "check the URL, the rev and your access",
        reason,
    )


def _git_reason(fatal: str) -> str:
    """git's `fatal:` line without the URL it repeats."""
    if "': " in fatal:
        return fatal.rsplit(": ", 1)[-1]
    return re.sub(r"^'[^']*' ", "", fatal)


def _fetch(failure: UvFailure, declared: Declared) -> Explanation | None:
    fetched = next((m.group(1) for item in failure.chain if (m := _FETCHED.search(item))), None)
    if fetched is None:
        return None
    reason = _innermost(failure)
    located = declared.url(fetched)
    direct = _DIRECT_SOURCE.search(failure.error)
    if direct and failure.error.startswith("Failed to download"):
        return Explanation(
            f"cannot download {direct['package']} from {direct['url']}",
            located[2] if located else declared.package(direct["package"]),
            "check the URL and its host",
            reason,
        )
    if located:
        what, url, where = located
        return Explanation(f"cannot fetch from the {what} {url}", where,
                           "check the URL and its host", reason)  # fmt: skip
    return Explanation(f"cannot fetch {fetched}", None,
                       "check uv's index settings (UV_INDEX_URL and the like)", reason)  # fmt: skip


def _resolution(failure: UvFailure, declared: Declared) -> Explanation | None:
    if not failure.error.startswith("No solution found") or not failure.causes:
        return None
    sentence = failure.causes[0].splitlines()[0].removeprefix("Because ")
    sentence = re.split(r", we can conclude that", sentence)[0].rstrip(".")
    where = declared.package(sentence)
    fix = "correct or relax that requirement"
    if missing := re.match(r"(\S+) was not found in the ([\w ]+?)(?: and you require \S+)?$",
                           sentence):  # fmt: skip
        return Explanation(f"{missing[1]} was not found in the {missing[2]}", where,
                           "check the name and the index it comes from")  # fmt: skip
    if only := re.match(r"only (\S+) (?:is|are) available and you require (\S+)$", sentence):
        return Explanation(f"{only[2]} cannot be satisfied: only {only[1]} is available", where,
                           fix)  # fmt: skip
    if both := re.match(r"you require (\S+) and (\S+)$", sentence):
        return Explanation(f"conflicting requirements {both[1]} and {both[2]}", where, fix)
    return Explanation(f"no solution: {sentence}", where, fix)


def _innermost(failure: UvFailure) -> str:
    """uv's innermost cause (or its error), without the OS error number."""
    if "dns error" in failure.causes:
        return "its host name does not resolve"
    text = (failure.causes[-1] if failure.causes else failure.error).splitlines()[0]
    return re.sub(r"\s*\(os error \d+\)$", "", text)
