"""`hf://` volumes: a model, dataset or Space of the Hub, fetched by the server and mounted
read-only in the job (bucket volumes: `hfuv.server.bucket_mounts`).

`huggingface_hub.snapshot_download` fetches a revision into the server's Hub cache (from the
server's HF_ENDPOINT, with the job's HF_TOKEN secret if it has one, never the server's own
token). The cache's snapshot holds symlinks into its blob store, which a bind mount would not
follow, so each commit is also laid out once as a tree of hard links to those blobs: real files,
mounted read-only, shared by every job that mounts that commit.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hfuv.runtime import Mount, RuntimeFailure


def describe(volume: Mapping[str, Any]) -> str:
    return f"{volume['type']} {volume['source']} at {volume['mountPath']}"


def mounts_for(
    spec: Mapping[str, Any], cache: Path, environ: Mapping[str, str],
    bucket: Callable[[int, Mapping[str, Any]], Mount] | None = None,
) -> tuple[Mount, ...]:  # fmt: skip
    """The job's volumes as mounts, each fetched (or found in `cache`) first; a bucket volume
    is laid out by `bucket(index, volume)` (`hfuv.server.bucket_mounts`)."""
    token = (spec.get("secrets") or {}).get("HF_TOKEN") or False
    mounts = []
    for index, volume in enumerate(spec.get("volumes") or []):
        if volume["type"] == "bucket":
            if bucket is None:
                raise RuntimeFailure(f"volume {describe(volume)}: this server has no buckets")
            mounts.append(bucket(index, volume))
        else:
            source = fetch(volume, cache, environ, token)
            mounts.append(Mount(source=source, target=volume["mountPath"]))
    return tuple(mounts)


def fetch(volume: Mapping[str, Any], cache: Path, environ: Mapping[str, str],
          token: str | bool) -> Path:  # fmt: skip
    """The directory holding `volume` (its `path` inside the repo, when given)."""
    try:
        from huggingface_hub import errors, snapshot_download
        from huggingface_hub.utils import disable_progress_bars
    except ImportError:
        raise RuntimeFailure(
            f"volume {describe(volume)}: pip install huggingface_hub to fetch it"
        ) from None
    disable_progress_bars()
    endpoint = environ.get("HF_ENDPOINT") or None
    try:
        snapshot = Path(
            snapshot_download(
                volume["source"], repo_type=volume["type"], revision=volume.get("revision"),
                cache_dir=cache / "hub", endpoint=endpoint, token=token,
            )
        )  # fmt: skip
    except errors.RepositoryNotFoundError:  # gated repos too
        why = "not found, or private or gated: give the job an HF_TOKEN secret that can read it"
        raise RuntimeFailure(f"volume {describe(volume)}: {why}") from None
    except errors.RevisionNotFoundError:
        why = f"no revision {volume.get('revision')!r} in {volume['source']}"
        raise RuntimeFailure(f"volume {describe(volume)}: {why}") from None
    except errors.LocalEntryNotFoundError:
        where = endpoint or "huggingface.co"
        raise RuntimeFailure(f"volume {describe(volume)}: the Hub at {where} cannot be reached "
                             "from hfuv server") from None  # fmt: skip
    except (errors.HfHubHTTPError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise RuntimeFailure(f"volume {describe(volume)} could not be fetched: {first}") from None
    tree = _linked_tree(snapshot, cache / "trees" / snapshot.parent.parent.name / snapshot.name)
    target = tree / volume.get("path", "")
    if not target.is_dir():
        raise RuntimeFailure(f"volume {describe(volume)}: {volume.get('path')} is not a folder "
                             "of that repo")  # fmt: skip
    return target


def _linked_tree(snapshot: Path, tree: Path) -> Path:
    """`snapshot` as real files (hard links to its blobs) at `tree`, made once per commit."""
    if tree.is_dir():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(dir=tree.parent, prefix=f".{tree.name}-"))
    for folder, _dirs, files in os.walk(snapshot):
        relative = Path(folder).relative_to(snapshot)
        (building / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            blob = os.path.realpath(Path(folder) / name)
            try:
                os.link(blob, building / relative / name)
            except OSError:  # another file system: a copy
                shutil.copyfile(blob, building / relative / name)
    os.chmod(building, 0o755)
    try:
        building.rename(tree)
    except OSError:  # another job laid it out first
        shutil.rmtree(building, ignore_errors=True)
    return tree
