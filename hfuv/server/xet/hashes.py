"""The Xet protocol's hashes (spec: "Hashing"), all 32 bytes, all keyed BLAKE3.

- chunk hash: BLAKE3 keyed with DATA_KEY over the chunk's bytes;
- xorb hash: the root of a Merkle tree over (chunk hash, size) leaves whose nodes group 2 to 9
  children, cutting after a child whose hash's last 64-bit word is 0 mod 4; a node hashes
  the lines `{hex} : {size}\n` of its children, keyed with INTERNAL_NODE_KEY;
- file hash: the same tree's root, hashed again keyed with 32 zero bytes (the empty file: zeros);
- verification (range) hash: the raw chunk hashes of a term's range, concatenated, keyed with
  VERIFICATION_KEY.

As strings, each 8-byte word of a hash is read as a little-endian u64 and printed as 16 hex digits.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from blake3 import blake3

DATA_KEY = bytes(
    [
        102,
        151,
        245,
        119,
        91,
        149,
        80,
        222,
        49,
        53,
        203,
        172,
        165,
        151,
        24,
        28,
        157,
        228,
        33,
        16,
        155,
        235,
        43,
        88,
        180,
        208,
        176,
        75,
        147,
        173,
        242,
        41,
    ]
)
INTERNAL_NODE_KEY = bytes(
    [
        1,
        126,
        197,
        199,
        165,
        71,
        41,
        150,
        253,
        148,
        102,
        102,
        180,
        138,
        2,
        230,
        93,
        221,
        83,
        111,
        55,
        199,
        109,
        210,
        248,
        99,
        82,
        230,
        74,
        83,
        113,
        63,
    ]
)
VERIFICATION_KEY = bytes(
    [
        127,
        24,
        87,
        214,
        206,
        86,
        237,
        102,
        18,
        127,
        249,
        19,
        231,
        165,
        195,
        243,
        164,
        205,
        38,
        213,
        181,
        219,
        73,
        230,
        65,
        36,
        152,
        127,
        40,
        251,
        148,
        195,
    ]
)
ZERO_HASH = bytes(32)
MEAN_BRANCHING = 4
MAX_GROUP = 2 * MEAN_BRANCHING + 1


def to_hex(digest: bytes) -> str:
    """The protocol's string form of a hash (each u64 word little-endian, then hex)."""
    return "".join(f"{word:016x}" for word in struct.unpack("<4Q", digest))


def from_hex(text: str) -> bytes:
    """The hash a 64-hex-digit string names; ValueError for anything else."""
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise ValueError(f"not a Xet hash (64 lowercase hex digits): {text[:80]!r}")
    return struct.pack("<4Q", *(int(text[i : i + 16], 16) for i in range(0, 64, 16)))


def chunk_hash(data: bytes) -> bytes:
    return blake3(data, key=DATA_KEY).digest()


def _merged(children: Sequence[tuple[bytes, int]]) -> tuple[bytes, int]:
    lines = "".join(f"{to_hex(digest)} : {size}\n" for digest, size in children)
    total = sum(size for _, size in children)
    return blake3(lines.encode(), key=INTERNAL_NODE_KEY).digest(), total


def _next_cut(nodes: Sequence[tuple[bytes, int]], start: int) -> int:
    """The end (exclusive) of the group of nodes that starts at `start`."""
    left = len(nodes) - start
    if left <= 2:
        return len(nodes)
    end = start + min(MAX_GROUP, left)
    for index in range(start + 2, end):
        last_word = struct.unpack_from("<Q", nodes[index][0], 24)[0]
        if last_word % MEAN_BRANCHING == 0:
            return index + 1
    return end


def xorb_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    """The Merkle root over (chunk hash, chunk size) leaves; zeros for no chunks."""
    nodes = list(chunks)
    if not nodes:
        return ZERO_HASH
    while len(nodes) > 1:
        merged, start = [], 0
        while start < len(nodes):
            end = _next_cut(nodes, start)
            merged.append(_merged(nodes[start:end]))
            start = end
        nodes = merged
    return nodes[0][0]


def file_hash(chunks: Sequence[tuple[bytes, int]]) -> bytes:
    if not chunks:
        return ZERO_HASH
    return blake3(xorb_hash(chunks), key=ZERO_HASH).digest()


def verification_hash(chunk_hashes: Sequence[bytes]) -> bytes:
    return blake3(b"".join(chunk_hashes), key=VERIFICATION_KEY).digest()
