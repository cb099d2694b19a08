"""Bucket volumes of a job: the bucket's folder laid out as files before the job starts, mounted
(read-write unless the volume says `readOnly: true`, as on the Hub), and what the job left there
written back into the bucket when it ends, before its stage says it has.

The write-back adds each file that is new or changed (size or mtime differ from what was laid
out) and deletes each laid-out file the job removed. New files are chunked and hashed by
`hf_xet` (the official Xet client) into a scratch `local://` CAS, whose xorbs and shard then go
through the same verification as an upload over HTTP (`hfuv.server.xet.cas`); the job's own
files stay in the job's folder of the data dir until then, and that folder is removed after.
"""

from __future__ import annotations

import json
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hfuv.runtime import Mount, RuntimeFailure
from hfuv.server.buckets import Buckets, mtime_ok
from hfuv.server.xet.cas import CasError

MANIFEST_SUFFIX = ".manifest.json"


def describe(volume: Mapping[str, Any]) -> str:
    return f"bucket {volume['source']} at {volume['mountPath']}"


def read_only(volume: Mapping[str, Any]) -> bool:
    return volume.get("readOnly") is True


def _folder(volume: Mapping[str, Any]) -> str:
    return str(volume.get("path") or "").strip("/")


def lay_out(buckets: Buckets, volume: Mapping[str, Any], target: Path) -> Mount:
    """The bucket folder of `volume` as files in `target` (laid out anew), as a mount."""
    namespace, name = volume["source"].split("/")
    if buckets.store.get(namespace, name) is None:
        raise RuntimeFailure(f"volume {describe(volume)}: no bucket {volume['source']}")
    folder = _folder(volume)
    base = f"{folder}/" if folder else ""
    files = buckets.store.files(namespace, name, base)
    if folder and not files and read_only(volume):  # read-write, it is a new folder
        raise RuntimeFailure(f"volume {describe(volume)}: the bucket has no folder {folder}")
    discard(target)  # a queued job laid out again after a restart starts from the bucket
    target.mkdir(parents=True)
    manifest: dict[str, list[Any]] = {}
    for entry in files:
        relative = entry["path"][len(base) :]
        path = target / relative
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            out = path.open("wb")
        except (FileExistsError, NotADirectoryError, IsADirectoryError):
            raise RuntimeFailure(
                f"volume {describe(volume)}: the bucket has {entry['path']} and a file in a "
                "folder of that name, or a file named as its folder: a name is a file or a "
                "folder, not both; delete one of them"
            ) from None
        with out:
            if entry["size"]:
                for piece in buckets.cas.read_file(entry["xetHash"]):
                    out.write(piece)
        if entry["mtime_ms"] is not None:
            os.utime(path, ns=(entry["mtime_ms"] * 1_000_000,) * 2)
        stat = path.stat()
        manifest[relative] = [stat.st_size, stat.st_mtime_ns, entry["xetHash"]]
    target.with_name(target.name + MANIFEST_SUFFIX).write_text(json.dumps(manifest))
    return Mount(source=target, target=volume["mountPath"], read_only=read_only(volume))


def _changes(target: Path, manifest: dict[str, list[Any]]) -> tuple[list[str], list[str]]:
    """(files new or changed since the lay-out, laid-out files now gone), relative paths."""
    changed, seen = [], set()
    for folder, _dirs, names in os.walk(target):
        for file_name in names:
            path = Path(folder, file_name)
            if path.is_symlink() or not path.is_file():
                continue  # a bucket holds files only
            relative = path.relative_to(target).as_posix()
            seen.add(relative)
            stat = path.stat()
            before = manifest.get(relative)
            if before is None or before[:2] != [stat.st_size, stat.st_mtime_ns]:
                changed.append(relative)
    return sorted(changed), sorted(set(manifest) - seen)


def _hash_into_cas(buckets: Buckets, namespace: str, paths: list[Path]) -> list[tuple[str, int]]:
    """Each file's (Xet hash, size), its xorbs and shard stored in the bucket CAS as uploaded
    by `namespace`."""
    import hf_xet

    with tempfile.TemporaryDirectory(prefix="hfuv-xet-") as scratch:
        session = hf_xet.XetSession()
        with session.new_upload_commit(endpoint=f"local://{scratch}/cas") as commit:
            handles = [commit.start_upload_file(str(p), sha256=hf_xet.SKIP_SHA256) for p in paths]
        results = [(h.result().xet_info.hash, h.result().xet_info.file_size) for h in handles]
        for xorb in sorted(Path(scratch).glob("cas/**/xorbs/xorbs/default.*")):
            name = xorb.name.removeprefix("default.")
            if len(name) == 64:
                buckets.cas.put_xorb(name, xorb.read_bytes())
                buckets.store.add_xorb_owner(name, namespace)
        for shard in sorted(Path(scratch).glob("cas/**/xorbs/shards/*.mdb")):
            buckets.cas.put_shard(
                shard.read_bytes(), lambda xorb: buckets.store.owns_xorb(namespace, xorb)
            )
    return results


def write_back(buckets: Buckets, volume: Mapping[str, Any], target: Path) -> str:
    """Put what the job changed in `target` into the bucket; a one-line summary of what."""
    bucket_ns, name = volume["source"].split("/")
    manifest = json.loads(target.with_name(target.name + MANIFEST_SUFFIX).read_text())
    changed, gone = _changes(target, manifest)
    for relative in changed:  # before any is hashed: a bucket path is UTF-8
        try:
            relative.encode("utf-8")
        except UnicodeEncodeError:
            shown = repr(os.fsencode(relative))[2:-1]
            raise RuntimeFailure(
                f"volume {describe(volume)}: the job left a file named {shown}, which is not "
                "UTF-8 (a bucket path must be); nothing was written back: rename it"
            ) from None
    folder = _folder(volume)
    remote = (lambda relative: f"{folder}/{relative}") if folder else (lambda relative: relative)
    hashed: list[tuple[str, int]] = []
    if changed:
        try:
            hashed = _hash_into_cas(buckets, bucket_ns, [target / r for r in changed])
        except CasError as exc:
            raise RuntimeFailure(f"volume {describe(volume)}: {exc}") from None
    with buckets.store.transaction():  # all of the job's changes, or none
        for relative in gone:  # first: a job may replace a file `a` by a folder `a/`
            buckets.store.delete_file(bucket_ns, name, remote(relative))
        for relative, (xet_hash, _size) in zip(changed, hashed, strict=True):
            buckets.store.add_owner(xet_hash, bucket_ns)
            stat = (target / relative).stat()
            kind = mimetypes.guess_type(relative)[0]
            mtime: int | None = stat.st_mtime_ns // 1_000_000
            if not mtime_ok(mtime):
                mtime = None  # before 1970 or after 9999: kept without one
            problem = buckets.add_file(bucket_ns, name, remote(relative), xet_hash,
                                       mtime, kind)  # fmt: skip
            if problem:
                raise RuntimeFailure(f"volume {describe(volume)}: {relative}: {problem}")
    return f"{len(changed)} file(s) written, {len(gone)} deleted in {volume['source']}"


def discard(root: Path) -> None:
    shutil.rmtree(root, ignore_errors=True)
