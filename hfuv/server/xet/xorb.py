"""A serialized xorb (spec: "Xorb Formation & Serialization Format") read back into its chunks.

A xorb is a run of chunks, each an 8-byte header (version 0, compressed size: u24 LE, scheme,
uncompressed size: u24 LE) and its data; a metadata footer (starting `XETBLOB`) may follow, which
is not needed here: the chunks alone give every hash and boundary. Schemes: 0 none, 1 LZ4
(frame), 2 byte-grouping-4 then LZ4.
"""

from __future__ import annotations

from dataclasses import dataclass

import lz4.frame

from hfuv.server.xet.hashes import chunk_hash, to_hex, xorb_hash

HEADER_SIZE = 8
FOOTER_MAGIC = b"XETBLOB"
MAX_XORB_BYTES = 64 * 1024 * 1024
MAX_CHUNK_BYTES = 128 * 1024
MAX_XORB_CHUNKS = 8 * 1024  # xet-core's MAX_XORB_CHUNKS
SCHEMES = {0: "none", 1: "LZ4", 2: "byte-grouping-4 LZ4"}


class XorbError(ValueError):
    """A xorb that is malformed or does not hash to its name; the message says which."""


@dataclass(frozen=True)
class Chunk:
    hash: bytes
    size: int  # uncompressed
    start: int  # byte offset of its header in the xorb
    end: int  # byte offset just past its data


def _ungroup(data: bytes) -> bytes:
    """Byte grouping 4 undone: the 4 groups (sizes n//4, +1 for the first n%4) interleaved."""
    size = len(data)
    base, extra = divmod(size, 4)
    lengths = [base + (1 if index < extra else 0) for index in range(4)]
    out = bytearray(size)
    offset = 0
    for index, length in enumerate(lengths):
        out[index::4] = data[offset : offset + length]
        offset += length
    return bytes(out)


def _lz4(data: bytes, size: int) -> bytes:
    """The LZ4 frame `data`, expanded to at most `size` + 1 bytes: a frame that says more than
    its chunk header is refused without being expanded (a few MB could hold gigabytes)."""
    decompressor = lz4.frame.LZ4FrameDecompressor()
    try:
        raw = decompressor.decompress(data, max_length=size + 1)
    except RuntimeError as exc:
        raise XorbError(f"a chunk's LZ4 data does not decompress: {exc}") from None
    if len(raw) > size:
        raise XorbError(f"a chunk decompresses to more than the {size} bytes its header says")
    if not decompressor.eof:
        raise XorbError("a chunk's LZ4 data does not decompress: the frame is incomplete")
    return raw


def decompress(scheme: int, data: bytes, size: int) -> bytes:
    if scheme == 0:
        raw = data
    elif scheme in (1, 2):
        raw = _lz4(data, size)
        if scheme == 2:
            raw = _ungroup(raw)
    else:
        raise XorbError(f"unknown chunk compression scheme {scheme} (known: 0, 1, 2)")
    if len(raw) != size:
        raise XorbError(f"a chunk decompresses to {len(raw)} bytes, its header says {size}")
    return raw


def chunks_of(body: bytes, keep_data: bool = True) -> tuple[list[Chunk], list[bytes]]:
    """Each chunk of `body` and (with `keep_data`) its uncompressed bytes; XorbError for a
    malformed xorb. Without `keep_data`, at most one chunk is held uncompressed (a 64 MiB
    xorb can expand to 1 GiB)."""
    chunks: list[Chunk] = []
    datas: list[bytes] = []
    offset = 0
    while offset < len(body):
        if body.startswith(FOOTER_MAGIC, offset):
            break  # the metadata footer: the chunks are all read
        if len(chunks) == MAX_XORB_CHUNKS:
            raise XorbError(f"the xorb has over {MAX_XORB_CHUNKS} chunks, the protocol's limit")
        if len(body) - offset < HEADER_SIZE:
            raise XorbError(f"truncated chunk header at byte {offset}")
        header = body[offset : offset + HEADER_SIZE]
        if header[0] != 0:
            raise XorbError(f"chunk {len(chunks)} has header version {header[0]}, not 0")
        stored = int.from_bytes(header[1:4], "little")
        scheme = header[4]
        size = int.from_bytes(header[5:8], "little")
        if size > MAX_CHUNK_BYTES or size == 0:
            raise XorbError(f"chunk {len(chunks)} is {size} bytes; chunks are 1 to 128 KiB")
        end = offset + HEADER_SIZE + stored
        if end > len(body):
            raise XorbError(f"chunk {len(chunks)} runs past the end of the xorb")
        raw = decompress(scheme, body[offset + HEADER_SIZE : end], size)
        chunks.append(Chunk(chunk_hash(raw), size, offset, end))
        if keep_data:
            datas.append(raw)
        offset = end
    if not chunks:
        raise XorbError("the xorb has no chunks")
    return chunks, datas


def verify(name: str, body: bytes) -> list[Chunk]:
    """The chunks of the xorb uploaded as `name` (its hash as a string), once its hash is
    recomputed from them and matches; XorbError otherwise."""
    if len(body) > MAX_XORB_BYTES:
        raise XorbError(f"the xorb is {len(body)} bytes, over the 64 MiB limit")
    chunks, _ = chunks_of(body, keep_data=False)
    computed = to_hex(xorb_hash([(c.hash, c.size) for c in chunks]))
    if computed != name:
        raise XorbError(
            f"xorb hash mismatch: its {len(chunks)} chunks hash to {computed}, not {name}"
        )
    return chunks
