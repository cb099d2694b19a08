"""The content-addressed store on disk, every upload verified before it is kept.

Layout under its root (directories 0700, files 0600, each written to a temporary name and
renamed, so a reader never sees half of one):

    xorbs/HASH          the xorb as uploaded (chunks, and the client's footer if it sent one)
    xorbs/HASH.json     its chunks: [[chunk hash, size, first byte, end byte], ...]
    files/HASH.json     a file's reconstruction: {"size": N, "terms": [[xorb, start, end], ...]}

A shard is kept as the files it defines: each term must name a stored xorb and a chunk range
inside it, carry the verification hash of that range, and the file's chunks must hash to the
file hash it claims; the xorbs it lists must be stored, with the chunk hashes it lists.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hfuv.server.xet import shard as shards
from hfuv.server.xet import xorb as xorbs
from hfuv.server.xet.hashes import ZERO_HASH, file_hash, from_hex, to_hex, verification_hash


class CasError(ValueError):
    """An upload the store refuses (malformed, or failing verification)."""


class NotStored(KeyError):
    """No such xorb or file here."""


@dataclass(frozen=True)
class StoredChunk:
    hash: str
    size: int
    start: int
    end: int


@dataclass(frozen=True)
class FileTerm:
    xorb: str
    chunk_start: int
    chunk_end: int


@dataclass(frozen=True)
class StoredFile:
    hash: str
    size: int
    terms: tuple[FileTerm, ...]


def _write(path: Path, data: bytes) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:  # mkstemp's file is 0600 already
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


class Cas:
    def __init__(self, root: Path) -> None:
        self.root = root
        for folder in (root, root / "xorbs", root / "files"):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    # xorbs

    def _xorb_path(self, name: str) -> Path:
        from_hex(name)  # a hash, never a path
        return self.root / "xorbs" / name

    def has_xorb(self, name: str) -> bool:
        return (self.root / "xorbs" / f"{name}.json").is_file()

    def put_xorb(self, name: str, body: bytes) -> bool:
        """Keep the xorb uploaded as `name`; False when it was here already. CasError when it
        is malformed or its chunks do not hash to `name`."""
        path = self._xorb_path(name)
        try:
            chunks = xorbs.verify(name, body)
        except xorbs.XorbError as exc:
            raise CasError(str(exc)) from None
        if self.has_xorb(name):
            return False
        _write(path, body)
        index = [[to_hex(c.hash), c.size, c.start, c.end] for c in chunks]
        _write(path.with_name(f"{name}.json"), json.dumps(index).encode())
        return True

    def chunks(
        self, name: str, cache: dict[str, list[StoredChunk]] | None = None
    ) -> list[StoredChunk]:
        """The xorb's chunk index; read once per `cache` (one per request: a shard or a
        reconstruction names one xorb in many terms, and an index is up to 8192 entries)."""
        if cache is not None:
            if name not in cache:
                cache[name] = self.chunks(name)
            return cache[name]
        try:
            index = json.loads((self._xorb_path(name).with_name(f"{name}.json")).read_bytes())
        except FileNotFoundError:
            raise NotStored(name) from None
        return [StoredChunk(*entry) for entry in index]

    def xorb_bytes(self, name: str, start: int, end: int) -> bytes:
        """Bytes [start, end) of the stored xorb."""
        with self._xorb_path(name).open("rb") as xorb:
            xorb.seek(start)
            return xorb.read(end - start)

    # files

    def put_shard(
        self, body: bytes, usable: Callable[[str], bool] | None = None
    ) -> list[StoredFile]:
        """The files the shard defines, each verified and kept; CasError for the first problem.
        With `usable`, a xorb it says False for is taken as not stored (another namespace's)."""
        try:
            parsed = shards.parse(body)
        except shards.ShardError as exc:
            raise CasError(str(exc)) from None
        cache: dict[str, list[StoredChunk]] = {}
        for listed in parsed.xorbs:
            self._check_listing(listed, cache, usable)
        stored = [
            self._verified_file(info, index, cache, usable)
            for index, info in enumerate(parsed.files)
        ]
        for record in stored:
            path = self.root / "files" / f"{record.hash}.json"
            if not path.is_file():
                doc = {
                    "size": record.size,
                    "terms": [[t.xorb, t.chunk_start, t.chunk_end] for t in record.terms],
                }
                _write(path, json.dumps(doc).encode())
        return stored

    def _check_listing(
        self,
        listed: shards.XorbInfo,
        cache: dict[str, list[StoredChunk]],
        usable: Callable[[str], bool] | None,
    ) -> None:
        name = to_hex(listed.hash)
        if not self.has_xorb(name) or (usable is not None and not usable(name)):
            raise CasError(f"the shard lists xorb {name}, which was not uploaded")
        chunks = self.chunks(name, cache)
        if [c.hash for c in chunks] != [to_hex(h) for h in listed.chunk_hashes]:
            raise CasError(f"the shard lists chunks of xorb {name} that are not the stored ones")

    def _verified_file(
        self,
        info: shards.FileInfo,
        index: int,
        cache: dict[str, list[StoredChunk]],
        usable: Callable[[str], bool] | None,
    ) -> StoredFile:
        name = to_hex(info.hash)
        where = f"file {index} ({name})"
        if info.terms and info.verification is None:
            raise CasError(f"{where}: the shard has no verification entries; they are required")
        leaves: list[tuple[bytes, int]] = []
        terms = []
        for number, term in enumerate(info.terms):
            xorb = to_hex(term.xorb)
            try:
                if usable is not None and not usable(xorb):
                    raise NotStored(xorb)
                chunks = self.chunks(xorb, cache)
            except NotStored:
                raise CasError(
                    f"{where}: term {number} names xorb {xorb}, which is not "
                    "stored; upload the xorb first"
                ) from None
            if term.chunk_end > len(chunks):
                raise CasError(
                    f"{where}: term {number} asks for chunks [{term.chunk_start}, "
                    f"{term.chunk_end}) of xorb {xorb}, which has {len(chunks)}"
                )
            picked = chunks[term.chunk_start : term.chunk_end]
            if sum(c.size for c in picked) != term.unpacked_bytes:
                raise CasError(
                    f"{where}: term {number} says {term.unpacked_bytes} bytes; its "
                    f"chunks hold {sum(c.size for c in picked)}"
                )
            raw_hashes = [from_hex(c.hash) for c in picked]
            assert info.verification is not None
            if verification_hash(raw_hashes) != info.verification[number]:
                raise CasError(
                    f"{where}: term {number}'s verification hash does not match the "
                    f"chunks [{term.chunk_start}, {term.chunk_end}) of xorb {xorb}"
                )
            leaves += [(h, c.size) for h, c in zip(raw_hashes, picked, strict=True)]
            terms.append(FileTerm(xorb, term.chunk_start, term.chunk_end))
        computed = file_hash(leaves)
        if computed != info.hash:
            raise CasError(f"{where}: its chunks hash to file {to_hex(computed)}, not {name}")
        return StoredFile(name, sum(size for _, size in leaves), tuple(terms))

    def file(self, name: str) -> StoredFile:
        if from_hex(name) == ZERO_HASH:
            return StoredFile(name, 0, ())
        try:
            doc = json.loads((self.root / "files" / f"{name}.json").read_bytes())
        except FileNotFoundError:
            raise NotStored(name) from None
        return StoredFile(name, doc["size"], tuple(FileTerm(*t) for t in doc["terms"]))

    def has_file(self, name: str) -> bool:
        try:
            self.file(name)
        except (NotStored, ValueError):
            return False
        return True

    def read_file(self, name: str) -> Iterator[bytes]:
        """The file's bytes, term by term (each chunk decompressed)."""
        cache: dict[str, list[StoredChunk]] = {}
        for term in self.file(name).terms:
            chunks = self.chunks(term.xorb, cache)
            first, last = chunks[term.chunk_start], chunks[term.chunk_end - 1]
            data = self.xorb_bytes(term.xorb, first.start, last.end)
            _, datas = xorbs.chunks_of(data)
            yield b"".join(datas)
