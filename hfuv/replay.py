"""Replaying a prepared `hfuv run`: the warm path, without click, parsing or locking.

When `hfuv run` prepares a job for a local script, it records the outcome: the JobSpec body
(and, for `--local`, the argv and environment the bootstrap settled on). The record is keyed by
everything that could change that outcome and that a file stat cannot see: the command line,
the working directory, the environment, hfuv's version and interpreter. It lists every file that
shaped the outcome (the script, its lock, env files, shipped files, the uv binary, the Python
found, hfuv's own code) with its size, times and inode. The next `hfuv run` with the same key
and all of those files unchanged replays the record: the same process, or the same request, as
the full path would give, in a fraction of its start-up time. Anything else runs the full path,
which writes a fresh record; `--refresh` always does.

Records never hold secret values: a job with secrets, or a command line with `--token`, is not
recorded. Records older than 30 days are pruned when a new one is written.
"""

from __future__ import annotations

import marshal
import os
import stat
import sys
import time

from hfuv import __version__
from hfuv.cache import cache_root
from hfuv.digest import sha256_hex

TYPE_CHECKING = False  # typing itself costs more to import than a replay takes
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from typing import Any

FORMAT = 3
# Shell bookkeeping that changes between identical commands and that nothing in hfuv reads.
VOLATILE = frozenset(("_", "OLDPWD", "SHLVL", "PWD"))
JOB_TOKEN, WORKDIR_TOKEN = "\0job-id\0", "\0workdir\0"
MAX_AGE_SECONDS = 30 * 86400


def record_path(args: Sequence[str], environ: Mapping[str, str]) -> str:
    """Where the record of `hfuv run ARGS` in this directory and environment lives."""
    fields = [str(FORMAT), __version__, sys.executable, os.getcwd(), "", *args, ""]
    for key in sorted(environ):
        if key not in VOLATILE:
            fields += [key, environ[key]]
    blob = "".join(f"{len(field)}:{field}" for field in fields)
    digest = sha256_hex(blob.encode("utf-8", "surrogateescape"))
    return os.path.join(cache_root(), "prepared", digest[:32])


def signature(path: str) -> tuple[int, ...] | None:
    """What changes when the file at `path` changes; None when there is none."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return (info.st_mode, info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino)


def code_files() -> list[str]:
    """hfuv's own modules: a record made by other code than this is not replayed. The commands
    count too: they decide what a command line means and what it refuses."""
    package = os.path.dirname(os.path.abspath(__file__))
    found = []
    for folder in (package, os.path.join(package, "commands")):
        names = sorted(name for name in os.listdir(folder) if name.endswith(".py"))
        found += [folder, *(os.path.join(folder, name) for name in names)]
    return found


def recordable_inputs(request: Any, job: Any, token: str | None) -> list[str] | None:
    """The files a replay of this prepared job depends on; None when it must not be recorded:
    it would hold a secret, the user asked for a fresh resolution, or not only files shaped it.
    (`request` and `job` are `hfuv.job`'s ScriptRequest and PreparedJob.)"""
    from hfuv.job import input_files
    from hfuv.redact import looks_secret

    body = job.spec.body
    if (
        request.refresh
        or token
        or body.get("secrets")
        or any(map(looks_secret, body["environment"]))
    ):
        return None
    return input_files(request, job)


def save(args: Sequence[str] | None, record: dict[str, Any], inputs: Sequence[str]) -> None:
    """Record the outcome of `hfuv run ARGS`; never fails the run it records."""
    if args is None:
        return
    try:
        signatures = []
        for path in [*inputs, *code_files()]:
            found = signature(path)
            if found is not None and not (stat.S_ISREG(found[0]) or stat.S_ISDIR(found[0])):
                return  # a pipe or a device (`--env-file <(…)`) reads differently every time
            signatures.append((os.path.abspath(path), found))
        target = record_path(args, os.environ)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        partial = f"{target}.{os.getpid()}.tmp"
        with open(partial, "wb") as out:
            out.write(marshal.dumps({**record, "format": FORMAT, "inputs": signatures}))
        os.replace(partial, target)
        _prune(os.path.dirname(target))
    except OSError:
        pass  # a cache only saves time


def _prune(folder: str) -> None:
    cutoff = time.time() - MAX_AGE_SECONDS
    for entry in os.scandir(folder):
        try:
            if entry.stat().st_mtime < cutoff:
                os.unlink(entry.path)
        except OSError:
            pass


def load(args: Sequence[str]) -> dict[str, Any] | None:
    """The record of `hfuv run ARGS`, if there is one and nothing it depends on changed."""
    try:
        with open(record_path(args, os.environ), "rb") as source:
            record = marshal.loads(source.read())
    except (OSError, ValueError, EOFError, TypeError):
        return None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        return None
    inputs = record.get("inputs") or ()
    recorded = {path for path, _ in inputs}
    if any(path not in recorded for path in code_files()):
        return None
    script = record.get("script") or {}
    if any(signature(path) != found for path, found in inputs if path != script.get("path")):
        return None
    if not script:
        return record
    try:  # by content, not by stat: two edits within one clock tick look alike to a stat
        with open(script["path"], "rb") as source:
            content = source.read()
    except OSError:
        return None
    return record if sha256_hex(content) == script["sha256"] else edited(record, content)


def script_record(request: Any, job: Any) -> dict[str, Any] | None:
    """How a replay checks the script (by its sha256), and, for a script with a metadata block,
    what lets it follow an edit to the code: the user's bytes up to the end of the block
    (`head`) and the shipped copy's (`shipped_head`). Everything else a record holds depends
    only on those."""
    source, metadata = job.inspection.source, job.inspection.metadata
    found = {"path": os.path.abspath(source.path), "sha256": source.sha256}
    if not metadata.found or request.sha256:  # a pinned sha256 refuses any edit
        return found
    head = source.content.decode("utf-8")[: metadata.end].encode("utf-8")
    tail = source.content[len(head) :]
    shipped = job.env.script
    if not head.endswith(b"\n") or not shipped.endswith(tail):
        return found
    from hfuv.payload import read_bundle

    others = {k: v for k, v in read_bundle(job.spec.body["environment"]).items()
              if k != source.name}  # fmt: skip
    return {**found, "head": head, "shipped_head": shipped[: len(shipped) - len(tail)],
            "name": source.name, "others": others,
            "default_name": "name" not in job.inspection.config.labels}  # fmt: skip


def edited(record: dict[str, Any], content: bytes) -> dict[str, Any] | None:
    """`record` for the script's new `content`, when only its code changed: the block (and all
    before it) as recorded, and no `# ///` after it that could close or open one. Else None."""
    script = record["script"]
    head = script.get("head")
    if head is None or not content.startswith(head):
        return None
    tail = content[len(head) :]
    if b"# ///" in tail:
        return None
    try:
        tail.decode("utf-8")  # uv reads a script with a block as UTF-8
    except UnicodeDecodeError:
        return None
    from hfuv import bundle

    name = script["name"]
    files = {**script["others"], name: script["shipped_head"] + tail}
    packed = bundle.make_bundle(files)
    if bundle.encoded_size(packed) > bundle.MAX_BUNDLE_CHARS:
        return None  # the full path says what is too big
    digest = sha256_hex(packed)
    changed = {"HFUV_BUNDLE_SHA256": digest, "HFUV_SOURCE_SHA256": sha256_hex(content)}
    parts = bundle.split_bundle(packed)
    new = dict(record)
    if record["mode"] == "local":
        new["env"] = _rebundled(record["env"], parts, changed)
        new["contents"] = files
        return new
    body = dict(record["body"])
    body["environment"] = _rebundled(body["environment"], parts, changed)
    if script["default_name"]:
        args = body["command"][3:]
        body["labels"] = {**body["labels"], "name": bundle.default_name(name, changed[
            "HFUV_SOURCE_SHA256"], args)}  # fmt: skip
    new["body"] = body
    return new


def _rebundled(env: Mapping[str, str], parts: Mapping[str, str],
               changed: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """`env` with the bundle `parts` where the old ones were and `changed` values, in order."""
    out: dict[str, str] = {}
    for key, value in env.items():
        if key.startswith("HFUV_BUNDLE_") and key[12:].isdigit():
            if key == "HFUV_BUNDLE_0":
                out.update(parts)
            continue
        out[key] = changed.get(key, value)
    return out


def run_if_prepared(args: Sequence[str]) -> None:
    """Replay `hfuv run ARGS` when a current record exists; else return and let the CLI run.

    Neither returns: a local run exits with the job's exit code, a submission with hfuv's.
    """
    record = load(args)
    if record is None:
        return
    if os.environ.get("HFUV_DEBUG") == "1":
        sys.stderr.write(f"debug: replaying the prepared run {record_path(args, os.environ)}\n")
    if record["mode"] == "local":
        _exec_local(record)
    else:
        sys.exit(_submit(record))


def _exec_local(record: dict[str, Any]) -> None:
    from hfuv import codedir
    from hfuv.jobenv import host_environment, new_job_id

    job_id = new_job_id()
    workdir = os.path.join(record["runs"], job_id)
    env = host_environment(os.environ)
    for key in record["unset"]:
        env.pop(key, None)
    env.update(record["env"])
    env.update({"JOB_ID": job_id, "HFUV_WORKDIR": workdir})
    files = record["contents"]
    names = dict.fromkeys([record["code_name"], env["HFUV_BUNDLE_SHA256"][:32]])
    try:
        folder = codedir.place(os.path.join(cache_root(), "code"), names, files)
        codedir.write_files(workdir, files)
    except OSError:
        return  # the full path will say what is wrong
    argv = list(record["argv"])
    argv[argv.index("--script") + 1] = os.path.join(folder, env["HFUV_SCRIPT"])
    for line in record["stderr"]:
        sys.stderr.write(line.replace(WORKDIR_TOKEN, workdir).replace(JOB_TOKEN, job_id) + "\n")
    from hfuv.supervisor import run_job

    run_job(record["uv"], argv, env, cwd=workdir, job_id=job_id,
            timeout_seconds=record["timeout"], once_started=codedir.remove_replaced)  # fmt: skip


def _submit(record: dict[str, Any]) -> int:
    from hfuv.errors import HfuvError, report
    from hfuv.submission import submit

    for line in record["stderr"]:
        sys.stderr.write(line + "\n")
    try:
        return submit(record["body"], **record["submit"])
    except HfuvError as exc:
        return report(exc)


def local_record(
    *,
    stderr: Sequence[str],
    job_id: str,
    workdir: str,
    env: Mapping[str, str],
    uv: str,
    argv: Sequence[str],
    files: Mapping[str, bytes],
    code_name: str,
    timeout_seconds: int | None,
    script: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The record of a local run whose bootstrap chose `uv` and `argv` for the bundle of `files`,
    run from the code dir `code_name` (see `hfuv.codedir`)."""
    from hfuv.jobenv import host_environment

    host = host_environment(os.environ)
    varying = ("JOB_ID", "HFUV_WORKDIR")
    templates = [line.replace(workdir, WORKDIR_TOKEN) for line in stderr]
    return {
        "mode": "local",
        "stderr": [line.replace(job_id, JOB_TOKEN) for line in templates],
        "runs": os.path.dirname(workdir),
        "code_name": code_name,
        "contents": dict(files),
        "env": {k: v for k, v in env.items() if host.get(k) != v and k not in varying},
        "unset": [k for k in host if k not in env],
        "uv": uv,
        "argv": list(argv),
        "timeout": timeout_seconds,
        "script": script,
    }


def remote_record(
    stderr: Sequence[str],
    body: Mapping[str, Any],
    options: Mapping[str, Any],
    script: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The record of a submission: its body, and `hfuv.submission.submit`'s options."""
    return {"mode": "remote", "stderr": list(stderr), "body": dict(body),
            "submit": dict(options), "script": script}  # fmt: skip


def args_of_this_run() -> list[str] | None:
    """The arguments after `run` when this process is `hfuv run …` itself (not a test's
    in-process call), else None."""
    if sys.argv[1:2] != ["run"]:
        return None
    return sys.argv[2:]
