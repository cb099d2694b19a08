"""A file's reconstruction (spec: "Download Protocol", v1 shape): its terms, the signed URL and
byte range of each xorb range they need, and where in the first term a byte range starts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hfuv.server.xet.cas import Cas, StoredChunk, StoredFile


class RangeNotSatisfiable(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=A-B` (B inclusive, optional) as [A, B] clipped to the file; None for no header."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    first, _, last = spec.strip().partition("-")
    if unit.strip() != "bytes" or not first.isdigit() or (last and not last.isdigit()):
        raise ValueError(f"malformed Range header {header[:100]!r}; give bytes=START-END")
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        raise RangeNotSatisfiable(f"range {header} is outside the file's {size} bytes")
    return start, end


def terms_of(
    cas: Cas,
    record: StoredFile,
    url_of: Callable[[str, int, int], str],
    byte_range: tuple[int, int] | None = None,
    cache: dict[str, list[StoredChunk]] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]], int]:
    """(terms, fetch_info, offset_into_first_range) for the file, or for [start, end] of it."""
    start, end = byte_range if byte_range else (0, record.size - 1)
    terms: list[dict[str, Any]] = []
    fetch: dict[str, list[dict[str, Any]]] = {}
    offset, skip = 0, None
    cache = {} if cache is None else cache
    for term in record.terms:
        picked = cas.chunks(term.xorb, cache)
        chunks = picked[term.chunk_start : term.chunk_end]
        first = last = None
        for index, chunk in enumerate(chunks, start=term.chunk_start):
            chunk_end = offset + chunk.size
            if chunk_end > start and offset <= end:
                if first is None:
                    first = index
                    if skip is None:
                        skip = start - offset
                last = index
            offset = chunk_end
        if first is None or last is None:
            continue
        unpacked = sum(c.size for c in picked[first : last + 1])
        terms.append(
            {
                "hash": term.xorb,
                "unpacked_length": unpacked,
                "range": {"start": first, "end": last + 1},
            }
        )
        byte_start, byte_end = picked[first].start, picked[last].end - 1
        fetch.setdefault(term.xorb, []).append(
            {
                "range": {"start": first, "end": last + 1},
                "url": url_of(term.xorb, byte_start, byte_end),
                "url_range": {"start": byte_start, "end": byte_end},
            }
        )
    return terms, fetch, skip or 0
