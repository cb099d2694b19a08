"""The bundle format, and the default job name: what a replay of an edited script rebuilds.

A gzip-compressed tar (fixed mtimes, owners and order), base64-encoded and split in order across
HFUV_BUNDLE_0, HFUV_BUNDLE_1, … Kept apart from payload.py, which costs far more to import than
a replayed run takes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import tarfile

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CHUNK_CHARS = 100 * 1024  # one env string stays far below Linux's 128 KiB limit
MAX_BUNDLE_CHARS = 900 * 1024  # HF Jobs caps one value at about 1 MB; keep the total below that
BUNDLE_PREFIX = "HFUV_BUNDLE_"


def make_bundle(files: Mapping[str, bytes]) -> bytes:
    """A reproducible gzip-compressed tar of `files` (name → content)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size = len(files[name])
            info.mtime = 0
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(files[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


def encoded_size(bundle: bytes) -> int:
    return (len(bundle) + 2) // 3 * 4


def split_bundle(bundle: bytes) -> dict[str, str]:
    encoded = base64.b64encode(bundle).decode("ascii")
    return {
        f"{BUNDLE_PREFIX}{index}": encoded[start : start + CHUNK_CHARS]
        for index, start in enumerate(range(0, len(encoded), CHUNK_CHARS))
    }


def is_bundle_part(key: str) -> bool:
    return key.startswith(BUNDLE_PREFIX) and key[len(BUNDLE_PREFIX) :].isdigit()


def default_name(script_name: str, script_sha256: str, args: Sequence[str]) -> str:
    """The `name` label of a job that was given none: the script's stem and a short digest."""
    stem = re.sub(r"[^A-Za-z0-9_-]", "-", script_name.removesuffix(".py"))[:60] or "script"
    digest = hashlib.sha256("\0".join([script_sha256, *args]).encode()).hexdigest()[:8]
    return f"{stem}-{digest}"
