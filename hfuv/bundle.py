"""The bundle format, and the default job name: what a replay of an edited script rebuilds.

A gzip-compressed POSIX (pax) tar of the files in name order, with no times, owners or
folders, base64-encoded and split in order across HFUV_BUNDLE_0, HFUV_BUNDLE_1, … The archive
is written here, byte for byte as `tarfile` and `gzip` write it with those settings (a test
holds the two to it), for two reasons: a bundle's bytes, and so its sha256, do not depend on
the Python version that made it (only on zlib's deflate, the same in every CPython build that
uses stock zlib), and the replay of an edited script does not pay for importing
tarfile, which costs a tenth of such a run. The bootstrap reads it with `tarfile`. Kept apart
from payload.py, which costs far more to import than a replayed run takes.
"""

from __future__ import annotations

import binascii
import zlib

from hfuv.digest import sha256_hex

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

CHUNK_CHARS = 100 * 1024  # one env string stays far below Linux's 128 KiB limit
MAX_BUNDLE_CHARS = 900 * 1024  # HF Jobs caps one value at about 1 MB; keep the total below that
BUNDLE_PREFIX = "HFUV_BUNDLE_"


BLOCK = 512
RECORD = 20 * BLOCK  # tar's default blocking factor: an archive is a whole number of records


def make_bundle(files: Mapping[str, bytes]) -> bytes:
    """A reproducible gzip-compressed tar of `files` (name → content)."""
    tar = bytearray()
    for name in sorted(files):
        content = files[name]
        if len(name) > 100 or not name.isascii():  # the name goes in a pax record
            try:
                record = _pax_record("path", name.encode("utf-8"))
            except UnicodeEncodeError:  # a file name that is not UTF-8 on this machine
                record = b"21 hdrcharset=BINARY\n" + _pax_record(
                    "path", name.encode("utf-8", "surrogateescape"))  # fmt: skip
            tar += _header(b"././@PaxHeader", len(record), b"x", mode=b"0000000\0")
            tar += _padded(record)
        tar += _header(name.encode("ascii", "replace")[:100], len(content), b"0")
        tar += _padded(content)
    tar += bytes(2 * BLOCK)
    tar += bytes(-len(tar) % RECORD)
    # gzip as gzip.GzipFile(filename="", mtime=0, compresslevel=9) writes it
    deflate = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS, zlib.DEF_MEM_LEVEL, 0)
    body = deflate.compress(tar) + deflate.flush()
    trailer = zlib.crc32(tar).to_bytes(4, "little") + (len(tar) & 0xFFFFFFFF).to_bytes(4, "little")
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + trailer


def _header(name: bytes, size: int, kind: bytes, mode: bytes = b"0000644\0") -> bytes:
    """A ustar header block: owner 0:0, mtime 0, no owner names, no device numbers."""
    if size >= 8**11:
        raise ValueError("a bundle member of 8 GiB or more")
    fields = [
        name.ljust(100, b"\0"), mode, b"0000000\0", b"0000000\0", b"%011o\0" % size,
        b"00000000000\0", b" " * 8, kind, bytes(100), b"ustar\x0000", bytes(64 + 16),
    ]  # fmt: skip
    block = b"".join(fields).ljust(BLOCK, b"\0")
    checksum = b"%06o\0" % sum(block)
    return block[:148] + checksum + block[155:]


def _pax_record(keyword: str, value: bytes) -> bytes:
    """`LEN keyword=value\n`, where LEN counts the whole record, its own digits too."""
    body = b" " + keyword.encode("ascii") + b"=" + value + b"\n"
    length = len(body)
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return str(length).encode("ascii") + body


def _padded(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def encoded_size(bundle: bytes) -> int:
    return (len(bundle) + 2) // 3 * 4


def split_bundle(bundle: bytes) -> dict[str, str]:
    encoded = binascii.b2a_base64(bundle, newline=False).decode("ascii")
    return {
        f"{BUNDLE_PREFIX}{index}": encoded[start : start + CHUNK_CHARS]
        for index, start in enumerate(range(0, len(encoded), CHUNK_CHARS))
    }


def is_bundle_part(key: str) -> bool:
    return key.startswith(BUNDLE_PREFIX) and key[len(BUNDLE_PREFIX) :].isdigit()


def default_name(script_name: str, script_sha256: str, args: Sequence[str]) -> str:
    """The `name` label of a job that was given none: the script's stem and a short digest."""
    import re

    stem = re.sub(r"[^A-Za-z0-9_-]", "-", script_name.removesuffix(".py"))[:60] or "script"
    digest = sha256_hex("\0".join([script_sha256, *args]).encode())[:8]
    return f"{stem}-{digest}"
