"""A container's output, read from podman's `k8s-file` log, every line exactly once.

`podman logs -f` (4.3) drops lines of a fast writer, most of all when it follows from the middle,
as a re-attaching server does; the log file itself has them all. conmon writes one record per
chunk of a stream, `TIMESTAMP STREAM TAG TEXT`, where TAG `P` marks a partial line that the next
record of the same stream continues and `F` ends the line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from hfuv.runtime import MAX_LINE_BYTES

POLL_SECONDS = 0.05


class Record(NamedTuple):
    stream: str  # "stdout" or "stderr"
    text: bytes
    complete: bool  # the end of a line (False: the next record of the stream continues it)


def parse(line: bytes) -> Record | None:
    """One line of a k8s-file log (without its newline) → its record; None when malformed."""
    fields = line.split(b" ", 3)
    if len(fields) < 3:
        return None
    stream, tag = fields[1].decode("ascii", errors="replace"), fields[2].split(b":")
    return Record(stream, fields[3] if len(fields) > 3 else b"", b"P" not in tag)


def records(path: Path, ended: Callable[[], bool]) -> Iterator[Record]:
    """The records of the log at `path` as conmon writes them, until `ended()` (the container
    has exited, so conmon has written everything) and then the file is read to its end."""
    with path.open("rb") as log:
        yield from _tail(log, ended)


def _tail(log: BinaryIO, ended: Callable[[], bool]) -> Iterator[Record]:
    torn, drained = b"", False
    while True:
        chunk = log.readline()
        if chunk.endswith(b"\n"):
            record = parse(torn + chunk[:-1])
            torn = b""
            if record is not None:
                yield record
            continue
        torn += chunk  # a line conmon is still writing, or nothing
        if drained:
            return
        drained = ended()  # once it has: one more pass to the end of the file
        if not drained:
            time.sleep(POLL_SECONDS)


def lines(chunks: Iterable[Record], skip: int = 0) -> Iterator[bytes]:
    """Whole lines (ending in a newline, but for a last unfinished one), each stream's partial
    records joined, in pieces of at most MAX_LINE_BYTES as `lines_of` gives them; after the
    first `skip` of those."""
    partial: dict[str, bytes] = {}

    def pieces(text: bytes) -> Iterator[bytes]:
        nonlocal skip
        for start in range(0, len(text), MAX_LINE_BYTES):
            if skip:
                skip -= 1
            else:
                yield text[start : start + MAX_LINE_BYTES]

    for record in chunks:
        text = partial.pop(record.stream, b"") + record.text
        if record.complete:
            yield from pieces(text + b"\n")
            continue
        whole = len(text) - len(text) % MAX_LINE_BYTES  # full pieces go now: memory stays flat
        yield from pieces(text[:whole])
        partial[record.stream] = text[whole:]
    for text in partial.values():
        yield from pieces(text)
