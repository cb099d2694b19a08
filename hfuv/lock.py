"""EnvSpec: the Python X.Y, the shipped copy of the script, and its uv lock.

The lock is made by `uv lock --script` on the *shipped copy* (with `--with` dependencies folded
into its metadata block, and a block added when there is none) in a scratch directory, so the
user's files are never touched. An existing `SCRIPT.lock` beside a local script is used when it is
up to date and refused when stale; `hfuv lock` is the only thing that writes it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hfuv import pep723, toml_write
from hfuv.cache import cache_dir, remember
from hfuv.errors import ConfigError, LockError, MetadataError, PythonNotFoundError
from hfuv.sources import ScriptSource
from hfuv.uv import run_uv, summarize_errors, uv_version, with_python_visible

SUPPORTED_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13", "3.14")
PREFERRED_PYTHON = "3.12"


@dataclass(frozen=True)
class EnvSpec:
    python: str  # X.Y used to lock and to run, here and in the job
    interpreter: str | None  # an absolute interpreter path inside a custom image, if given
    uv_version: str
    script: bytes  # the shipped copy of the script
    lock: str  # its uv lock, as it ships (only the wheels the job and this machine can use)
    lock_origin: str  # "SCRIPT.lock" when the user's lock was used, else "cached" or "fresh"
    lock_file: str | None = None  # where that lock text was read from or cached

    @property
    def digest(self) -> str:
        """sha256 over everything that defines the environment."""
        blob = json.dumps(
            [self.python, self.interpreter or "", self.uv_version, self.lock], sort_keys=True
        ).encode()
        return hashlib.sha256(blob).hexdigest()

    def locked_packages(self) -> dict[str, str]:
        """name → version, as pinned in the lock."""
        names = re.findall(r'^name = "([^"]+)"\nversion = "([^"]+)"', self.lock, re.MULTILINE)
        return dict(names)


def python_allowed(requires_python: str | None, minor: str) -> bool:
    if not requires_python:
        return True
    from hfuv.quickspec import allows, simple_bounds

    bounds = simple_bounds(requires_python)
    major, minor_number = (int(n) for n in minor.split("."))
    if bounds is not None:
        return any(allows(bounds, (major, minor_number, patch)) for patch in range(0, 40))
    from packaging.specifiers import SpecifierSet

    spec = SpecifierSet(requires_python)
    return any(spec.contains(f"{minor}.{patch}", prereleases=True) for patch in range(0, 40))


@dataclass(frozen=True)
class PythonChoice:
    version: str  # X.Y
    reason: str  # why this one, as `hfuv check` shows it
    by_host: bool = False  # it depends on which Pythons are installed here


def choose_python(
    requires_python: str | None,
    explicit: str | None,
    where: str,
    *,
    environ: Mapping[str, str] | None = None,
) -> PythonChoice:
    """`--python`/launch-table X.Y; else 3.12 if allowed; else the highest allowed version that
    is installed here (as uv finds it); else the highest allowed (a local run must install it).

    Only scripts that rule out 3.12 look at what is installed, so most jobs get the same Python
    from any machine; `where` names what declares `requires_python`.
    """
    if explicit and not explicit.startswith("/"):
        if not python_allowed(requires_python, explicit):
            raise ConfigError(
                f"python {explicit} does not satisfy requires-python {requires_python!r} "
                f"of {where}",
                hint="pick another --python or relax requires-python",
            )
        return PythonChoice(explicit, "as asked")
    allowed = [v for v in SUPPORTED_PYTHONS if python_allowed(requires_python, v)]
    if not allowed:
        raise ConfigError(
            f"no supported Python ({', '.join(SUPPORTED_PYTHONS)}) satisfies requires-python "
            f"{requires_python!r} of {where}",
            hint="relax requires-python",
        )
    rule = f"requires-python {requires_python!r} of {where}" if requires_python else ""
    if PREFERRED_PYTHON in allowed:
        return PythonChoice(PREFERRED_PYTHON, f"preferred; {rule} allows it" if rule else
                            "preferred; no requires-python")  # fmt: skip
    from hfuv import pythons

    missing: list[str] = []
    for version in reversed(allowed):
        if pythons.find(version, os.environ if environ is None else environ):
            verb = "is" if len(missing) == 1 else "are"
            higher = f"; {', '.join(missing)} {verb} not" if missing else ""
            reason = f"the highest that {rule} allows and that is installed here{higher}"
            return PythonChoice(version, reason, by_host=True)
        missing.append(version)
    reason = (f"the highest that {rule} allows; none of them is installed here, so a local "
              f"run needs `uv python install {allowed[-1]}`")  # fmt: skip
    return PythonChoice(allowed[-1], reason, by_host=True)


def locked_requires_python(lock_text: str) -> str | None:
    """The `requires-python` a uv lock was made for."""
    found = re.search(r'^requires-python = "([^"\\]*)"$', lock_text, re.MULTILINE)
    return found.group(1) if found else None


def declared_requires_python(
    source: ScriptSource, metadata: pep723.ScriptMetadata
) -> tuple[str | None, str]:
    """The script's requires-python, else the one in its SCRIPT.lock; → (value, where).

    uv locks a script that declares none for `>=` the Python it runs it with and keeps that lock
    while that holds, so such a lock says which Pythons its environment is for.
    """
    if metadata.requires_python or source.path is None:
        return metadata.requires_python, source.name
    try:
        text = lock_path(source.path).read_text(encoding="utf-8")
    except OSError:
        return None, source.name
    found = locked_requires_python(text)
    return (found, lock_path(source.path).name) if found else (None, source.name)


def uv_python_for(path: Path) -> str:
    """The X.Y that `uv run SCRIPT` runs the script at `path` with (and locks it for, when the
    script declares no requires-python)."""
    found = run_uv(["python", "find", "--script", str(path), "--show-version"], check=False)
    if found.returncode != 0:
        raise PythonNotFoundError(
            f"uv finds no Python to run {path.name} with: {summarize_errors(found.stderr)}",
            hint="install one with `uv python install`, or add requires-python to its block",
        )
    return ".".join(found.stdout.strip().split(".")[:2])


def reject_local_paths(metadata: pep723.ScriptMetadata, where: str) -> None:
    """Entries that point at this machine's files cannot travel with the job."""
    uv = metadata.tool_uv
    for package, entries in (uv.get("sources") or {}).items():
        for entry in entries if isinstance(entries, list) else [entries]:
            if isinstance(entry, dict) and "path" in entry:
                raise MetadataError(
                    f"{where}:{metadata.line_of(str(entry['path']))}",
                    f"[tool.uv.sources] {package} points at the local path {entry['path']!r}, "
                    "which does not exist inside the job",
                    hint="publish it to an index, use a git or URL source, or drop the entry",
                )
    locations: list[tuple[str, str]] = []
    for index in uv.get("index") or []:
        if isinstance(index, dict) and isinstance(index.get("url"), str):
            locations.append(("[[tool.uv.index]]", index["url"]))
    for key in ("index-url", "extra-index-url", "find-links"):
        value = uv.get(key)
        for url in value if isinstance(value, list) else [value]:
            if isinstance(url, str):
                locations.append((f"[tool.uv] {key}", url))
    for label, url in locations:
        if not re.match(r"[a-z][a-z0-9+.-]*://", url) or url.startswith("file://"):
            raise MetadataError(
                f"{where}:{metadata.line_of(url)}",
                f"{label} points at the local path {url!r}, which does not exist inside the job",
                hint="serve the index over http(s)",
            )


def shipped_script(
    source: ScriptSource,
    metadata: pep723.ScriptMetadata,
    with_deps: Sequence[str],
    python: str,
    requires_python: str | None = None,
) -> bytes:
    """The script as it ships: `--with` folded into its block; a block added when missing.

    It always declares requires-python (`requires_python`, else `>=python`), so the lock made
    for it is the same whichever interpreter uv resolves with.
    """
    if metadata.found and not with_deps and metadata.requires_python:
        return source.content
    try:
        text = source.content.decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError(
            f"{source.name}:1",
            "the script is not UTF-8, so hfuv cannot add the metadata block it needs",
            hint="save the file as UTF-8",
        ) from None
    _check_with(with_deps)
    declared = requires_python or f">={python}"
    if metadata.found and not with_deps:
        return _declare_requires_python(text, metadata, declared).encode()
    if metadata.found:
        data: dict[str, Any] = dict(metadata.data)
        if not metadata.requires_python:
            data = {"requires-python": declared, **data}
        deps = list(data.get("dependencies", []))
        data["dependencies"] = deps + [d for d in with_deps if d not in deps]
        block = render_block(data)
        return (text[: metadata.start] + block + text[metadata.end :]).encode()
    ignored = metadata.ignored_block(source.name)
    if ignored:
        raise ignored
    block = render_block(
        {"requires-python": declared, "dependencies": list(dict.fromkeys(with_deps))}
    )
    return _with_block(text, block).encode()


_CODING = re.compile(r"[ \t\f]*#.*?coding[:=]")  # PEP 263
_BLANK_OR_COMMENT = re.compile(r"[ \t\f]*(#.*)?\r?\n?$")


def _with_block(text: str, block: str) -> str:
    """`text` with `block` added where uv finds it and Python reads the file as before: after
    a byte-order mark, a shebang line and an encoding declaration (which must stay first)."""
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    lines = text[len(bom) :].splitlines(keepends=True)
    keep = 1 if lines and (lines[0].startswith("#!") or _CODING.match(lines[0])) else 0
    if len(lines) > 1 and _CODING.match(lines[1]) and (keep or _BLANK_OR_COMMENT.match(lines[0])):
        keep = 2
    head = bom + "".join(lines[:keep])
    if head and not head.endswith(("\n", "\r")):
        head += "\n"  # a block after a byte-order mark or a last line must start a new line
    return head + block + "".join(lines[keep:])


def _declare_requires_python(text: str, metadata: pep723.ScriptMetadata, value: str) -> str:
    """`text` with a requires-python line as the first line of its block (the rest untouched)."""
    after_opener = text.index("\n", metadata.start) + 1
    newline = "\r\n" if text[after_opener - 2] == "\r" else "\n"
    line = "# " + toml_write.dumps({"requires-python": value}).strip() + newline
    return text[:after_opener] + line + text[after_opener:]


def render_block(data: dict[str, Any]) -> str:
    lines = ["# /// script"]
    for line in toml_write.dumps(data).splitlines():
        lines.append(f"# {line}" if line else "#")
    lines.append("# ///")
    return "\n".join(lines) + "\n"


def _check_with(with_deps: Sequence[str]) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    for dep in with_deps:
        try:
            Requirement(dep)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            raise ConfigError(
                f"invalid --with {dep!r}: {reason}", hint="write a PEP 508 requirement"
            ) from None


def lock_path(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def build_env(
    source: ScriptSource,
    metadata: pep723.ScriptMetadata,
    *,
    python: str,
    interpreter: str | None,
    with_deps: Sequence[str] = (),
    refresh: bool = False,
    requires_python: str | None = None,
) -> EnvSpec:
    """Lock the shipped copy; reuse an up-to-date `SCRIPT.lock`, refuse a stale one.

    Fresh locks are cached by what defines them (the shipped copy's metadata block, Python, uv
    version, the previous lock and uv's settings in the environment), so an edit to the code
    outside the block is not resolved again; `refresh` resolves anyway. The lock ships without
    the wheels neither the job nor this machine can install (see slim_lock.py).
    """
    from hfuv.slim_lock import for_job

    def shipped(lock_text: str) -> str:
        return for_job(lock_text, None if interpreter else python)

    reject_local_paths(metadata, source.name)
    script = shipped_script(source, metadata, with_deps, python, requires_python)
    version = uv_version()
    existing = None
    if source.path is not None and lock_path(source.path).is_file():
        existing = lock_path(source.path).read_text(encoding="utf-8")
    if existing is not None and not with_deps:
        if not is_lock_current(source.name, script, existing, python):
            raise LockError(
                f"{lock_path(source.path).name} is out of date with {source.path.name}",
                hint=f"run `hfuv lock {source.path}` to refresh it",
            )
        return EnvSpec(python, interpreter, version, script, shipped(existing),
                       lock_path(source.path).name, str(lock_path(source.path)))  # fmt: skip
    cached = _cache_path("locks", source.name, metadata_block(script), python, version,
                         existing or "")  # fmt: skip
    if not refresh:
        try:
            return EnvSpec(python, interpreter, version, script, shipped(cached.read_text()),
                           "cached", str(cached))  # fmt: skip
        except OSError:
            pass
    lock_text = lock_script(source.name, script, python, previous=existing, metadata=metadata,
                            with_deps=with_deps)  # fmt: skip
    remember(cached, lock_text)
    return EnvSpec(python, interpreter, version, script, shipped(lock_text), "fresh", str(cached))


def metadata_block(script: bytes) -> bytes:
    """The metadata block of a shipped `script` (which always has one): all that uv locks it
    from, so a cache keyed by it survives edits to the code."""
    found = pep723.parse(script)
    return script.decode("utf-8")[found.start : found.end].encode("utf-8")


def _cache_path(kind: str, *parts: str | bytes) -> Path:
    """A cache file named by the digest of `parts` and of uv's settings in the environment."""
    digest = hashlib.sha256()
    for part in parts:
        data = part if isinstance(part, bytes) else part.encode()
        digest.update(len(data).to_bytes(8, "big") + data)
    settings = sorted(
        (k, v)
        for k, v in os.environ.items()
        if k.startswith("UV_") and k not in ("UV_CACHE_DIR", "UV_NO_PROGRESS")
    )
    digest.update(json.dumps(settings).encode())  # fmt: skip
    return cache_dir() / kind / digest.hexdigest()


@contextmanager
def _scratch_copy(name: str, script: bytes, lock_text: str | None) -> Iterator[Path]:
    """A scratch directory holding the shipped script (and a lock), never the user's files."""
    with tempfile.TemporaryDirectory(prefix="hfuv-lock-") as scratch:
        target = Path(scratch) / name
        target.write_bytes(script)
        if lock_text is not None:
            lock_path(target).write_text(lock_text, encoding="utf-8")
        yield target


def _uv_lock(target: Path, python: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """`uv lock --script` for Python `python`, with hfuv's own interpreter when it is not here.

    uv needs an interpreter to resolve, but not the job's: the shipped copy declares
    requires-python, so the lock is the same whichever it uses (only building an sdist does).
    """

    def lock_with(interpreter: str) -> subprocess.CompletedProcess[str]:
        return run_uv(
            ["lock", "--script", str(target), *extra, "--python", interpreter, "--no-progress"],
            cwd=target.parent,
            env=with_python_visible(os.environ, python),
            check=False,
        )

    result = lock_with(python)
    if result.returncode == 2 and "No interpreter found for Python" in result.stderr:
        result = lock_with(sys.executable)
    return result


def lock_script(
    name: str,
    script: bytes,
    python: str,
    *,
    previous: str | None = None,
    metadata: pep723.ScriptMetadata | None = None,
    with_deps: Sequence[str] = (),
) -> str:
    """Run `uv lock --script` on a copy of `script` in a scratch directory; return the lock.

    A `previous` lock is copied in first, so uv keeps its pins where they still fit. A failure
    names the line of `metadata` (the user's block) or the `with_deps` entry that caused it.
    """
    with _scratch_copy(name, script, previous) as target:
        result = _uv_lock(target, python)
        if result.returncode != 0:
            from hfuv.lock_errors import lock_failure

            raise lock_failure(name, python, result, metadata, with_deps)
        written = lock_path(target)
        if not written.is_file():
            raise LockError(f"uv lock wrote no lock for {name}")
        return written.read_text(encoding="utf-8")


def is_lock_current(name: str, script: bytes, lock_text: str, python: str) -> bool:
    """True when `uv lock --check` accepts `lock_text` for the shipped `script`.

    Offline: an up-to-date lock needs no network, and a stale one must not trigger a resolution.
    """
    verdict = _cache_path("lock-checks", name, metadata_block(script), lock_text, python,
                          uv_version())  # fmt: skip
    if verdict.is_file():
        return True
    with _scratch_copy(name, script, lock_text) as target:
        result = _uv_lock(target, python, "--check", "--offline")
        if result.returncode == 0:
            remember(verdict, "current\n")
            return True
        if result.returncode == 1:
            return False
        from hfuv.lock_errors import lock_failure

        raise lock_failure(name, python, result)
