"""An uploaded shard (spec: "MDB Shard File Format"): its file reconstructions and the xorbs it
lists. Everything little-endian, in 48-byte entries; each section ends with a bookend (32 bytes
of 0xFF, 16 of zeros). An upload has no footer (header.footer_size 0), but one is tolerated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

HEADER_TAG = b"HFRepoMetaData" + bytes(
    [0, 85, 105, 103, 69, 106, 123, 129, 87, 131, 165, 189, 217, 92, 205, 209, 74, 169]
)
HEADER_VERSION = 2
ENTRY = 48
BOOKEND = b"\xff" * 32
WITH_VERIFICATION = 1 << 31
WITH_METADATA_EXT = 1 << 30
MAX_SHARD_BYTES = 64 * 1024 * 1024
# What verifying a shard costs is linear in the chunks its terms name (each is hashed twice):
# 8M is a file of ~512 GB in 64 KiB chunks, verified in about a minute.
MAX_SHARD_TERMS = 1 << 20
MAX_SHARD_TERM_CHUNKS = 1 << 23


class ShardError(ValueError):
    """A shard that cannot be read; the message says where."""


@dataclass(frozen=True)
class Term:
    xorb: bytes
    unpacked_bytes: int
    chunk_start: int
    chunk_end: int  # exclusive


@dataclass
class FileInfo:
    hash: bytes
    terms: list[Term]
    verification: list[bytes] | None  # a range hash per term, when the shard has them
    sha256: bytes | None = None


@dataclass
class XorbInfo:
    hash: bytes
    chunk_hashes: list[bytes] = field(default_factory=list)
    chunk_sizes: list[int] = field(default_factory=list)
    raw_bytes: int = 0


@dataclass
class Shard:
    files: list[FileInfo]
    xorbs: list[XorbInfo]


class _Reader:
    def __init__(self, body: bytes) -> None:
        self.body, self.offset = body, 0

    def entry(self, what: str) -> bytes:
        if self.offset + ENTRY > len(self.body):
            raise ShardError(f"the shard ends inside {what} (byte {self.offset})")
        entry = self.body[self.offset : self.offset + ENTRY]
        self.offset += ENTRY
        return entry


def parse(body: bytes) -> Shard:
    if len(body) > MAX_SHARD_BYTES:
        raise ShardError(f"the shard is {len(body)} bytes, over {MAX_SHARD_BYTES}")
    if len(body) < 48 or body[:32] != HEADER_TAG:
        raise ShardError("not a shard: wrong magic number in its header")
    version = struct.unpack_from("<Q", body, 32)[0]
    if version != HEADER_VERSION:
        raise ShardError(f"shard header version {version}; this server reads version 2")
    reader = _Reader(body)
    reader.offset = 48
    files: list[FileInfo] = []
    term_count = term_chunks = 0
    while True:
        header = reader.entry("the file info section")
        if header[:32] == BOOKEND:
            break
        flags, count = struct.unpack_from("<II", header, 32)
        terms = []
        for _ in range(count):
            entry = reader.entry(f"file {len(files)}'s terms")
            _, unpacked, start, end = struct.unpack_from("<IIII", entry, 32)
            if end <= start:
                raise ShardError(f"file {len(files)} has a term with chunk range [{start}, {end})")
            term_count, term_chunks = term_count + 1, term_chunks + end - start
            if term_count > MAX_SHARD_TERMS or term_chunks > MAX_SHARD_TERM_CHUNKS:
                raise ShardError(
                    f"the shard's terms are over {MAX_SHARD_TERMS} or name over "
                    f"{MAX_SHARD_TERM_CHUNKS} chunks in all; upload fewer files per shard"
                )
            terms.append(Term(entry[:32], unpacked, start, end))
        verification = None
        if flags & WITH_VERIFICATION:
            verification = [reader.entry("verification entries")[:32] for _ in range(count)]
        sha256 = reader.entry("a metadata extension")[:32] if flags & WITH_METADATA_EXT else None
        files.append(FileInfo(header[:32], terms, verification, sha256))
    xorbs: list[XorbInfo] = []
    while True:
        header = reader.entry("the xorb info section")
        if header[:32] == BOOKEND:
            break
        _, count, raw_bytes, _ = struct.unpack_from("<IIII", header, 32)
        info = XorbInfo(header[:32], raw_bytes=raw_bytes)
        for _ in range(count):
            entry = reader.entry(f"xorb {len(xorbs)}'s chunks")
            info.chunk_hashes.append(entry[:32])
            info.chunk_sizes.append(struct.unpack_from("<I", entry, 36)[0])
        xorbs.append(info)
    return Shard(files, xorbs)
