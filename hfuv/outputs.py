"""`hfuv outputs JOB`: the files in a job's writable bucket volumes, downloaded here.

A job that mounts a bucket read-write (`-v hf://buckets/NS/NAME:/out`) leaves what it wrote in
the bucket. This brings those files into a folder, laid out as the job saw them: the file at
`/out/run1/model.bin` in the job lands at `DEST/out/run1/model.bin`. A file already there is
kept when it holds the same bytes, and never overwritten otherwise unless asked.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from hfuv.errors import HfuvError


@dataclass(frozen=True)
class Output:
    bucket: str  # NS/NAME
    name: str  # the file's path in the bucket
    size: int
    target: Path  # where it lands here


def writable_buckets(job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's bucket volumes it could write to (buckets mount read-write by default)."""
    return [volume for volume in job.get("volumes") or []
            if volume.get("type") == "bucket" and not volume.get("readOnly")]  # fmt: skip


def planned(client: Any, job: dict[str, Any], dest: Path) -> list[Output]:
    """Every file of the job's writable buckets, and where it goes under `dest`."""
    volumes = writable_buckets(job)
    if not volumes:
        mounted = ", ".join(f"{v.get('type')} {v.get('source')} at {v.get('mountPath')}"
                            for v in job.get("volumes") or []) or "none"  # fmt: skip
        raise HfuvError(
            f"job {job.get('id')} has no bucket it could write to (its volumes: {mounted})",
            hint="mount one read-write: hfuv run SCRIPT -v hf://buckets/NS/NAME:/out",
        )
    found = []
    for volume in volumes:
        prefix = str(volume.get("path") or "").strip("/")
        mount = _safe_parts(str(volume["mountPath"]), "mount path")
        for entry in client.bucket_files(volume["source"], prefix):
            name = str(entry["path"])
            inside = name[len(prefix) :].lstrip("/") if prefix else name
            parts = _safe_parts(inside, f"file name in bucket {volume['source']}")
            target = dest.joinpath(*mount, *parts)
            found.append(Output(volume["source"], name, int(entry.get("size") or 0), target))
    return found


def _safe_parts(path: str, what: str) -> tuple[str, ...]:
    """`path`'s parts, refusing what would land outside the destination."""
    parts = PurePosixPath(path).parts
    parts = tuple(part for part in parts if part != "/")
    if not parts or any(part in ("..", ".") or "\\" in part for part in parts):
        raise HfuvError(f"refusing {what} {path!r}: it would land outside the destination")
    return parts


def download(client: Any, outputs: list[Output], *, overwrite: bool,
             done: Callable[[Output, str], None]) -> None:  # fmt: skip
    """Download each output next to its target and move it into place; `done(output, how)`
    with how in `written`, `unchanged`. A different file already there stops the download
    (before anything is replaced) unless `overwrite`."""
    for output in outputs:
        output.target.parent.mkdir(parents=True, exist_ok=True)
        if output.target.is_dir():
            raise HfuvError(f"{output.target} is a folder; the job wrote a file there",
                            hint="move it away, or download into another folder")  # fmt: skip
        handle, partial = tempfile.mkstemp(prefix=".hfuv-", dir=output.target.parent)
        try:
            with os.fdopen(handle, "w+b") as out:
                written = client.download_bucket_file(output.bucket, output.name, out)
                if written != output.size:
                    raise HfuvError(
                        f"{output.bucket}/{output.name}: got {written} bytes, the bucket "
                        f"lists {output.size}",
                        hint="the file changed while it was read, or the server is broken; retry",
                    )
                out.seek(0)
                if output.target.is_file() and _same(out, output.target):
                    done(output, "unchanged")
                    continue
            if output.target.exists() and not overwrite:
                raise HfuvError(
                    f"{output.target} exists and differs from {output.bucket}/{output.name}",
                    hint="pass --overwrite to replace it, or download into another folder",
                )
            os.replace(partial, output.target)
            done(output, "written")
        finally:
            if os.path.exists(partial):
                os.unlink(partial)


def _same(downloaded: Any, path: Path) -> bool:
    with path.open("rb") as here:
        while True:
            mine, theirs = downloaded.read(1 << 20), here.read(1 << 20)
            if mine != theirs:
                return False
            if not mine:
                return True
