"""Hub storage buckets on `hfuv server`: the routes the official client calls (`create_bucket`,
`bucket_info`, `list_buckets`, `list_bucket_tree`, `get_bucket_paths_info`, the Xet read and
write tokens, the NDJSON `batch` of addFile/deleteFile, `resolve` for a file's bytes and Xet
metadata), each bucket in one namespace and seen only by tokens of that namespace, as jobs are.

Files live in the Xet CAS (`hfuv.server.xet`); a bucket maps paths to Xet file hashes
(`hfuv.server.bucket_store`). Refused with a message naming them: `copyFile` operations,
`resourceGroupId`, `region`, moving buckets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from hfuv.server.bucket_store import BucketStore
from hfuv.server.logs import timestamp
from hfuv.server.tokens import Identity
from hfuv.server.wire import BodyError, header_value, parse_json
from hfuv.server.wire import SafeJSONResponse as JSONResponse
from hfuv.server.xet.cas import Cas, NotStored
from hfuv.server.xet.hashes import ZERO_HASH, from_hex, to_hex
from hfuv.server.xet.routes import cas_routes, cas_url, error
from hfuv.server.xet.tokens import Signer

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}")
EMPTY_FILE = to_hex(ZERO_HASH)
MAX_BATCH_BYTES = 16 * 1024 * 1024
MAX_PATHS_INFO = 1000  # the official client sends batches of 1000
MAX_JSON_BYTES = 8 * 1024 * 1024  # as the Jobs routes' MAX_BODY_BYTES
ARTIFACTS = "jobs-artifacts"
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"  # RFC 9110's token
CONTENT_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}( *;[\x20-\x7e]{{0,200}})?", re.ASCII)
CONTENT_TYPE_RULE = (
    "`contentType` must be a media type, type/subtype[; params], in at most 255 printable "
    "ASCII characters"
)
MAX_MTIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
MTIME_RULE = "`mtime` must be milliseconds since 1970 (0 to 253402300799999, year 9999)"


@dataclass
class Buckets:
    """Everything the bucket routes, the CAS and bucket mounts share."""

    store: BucketStore
    cas: Cas
    signer: Signer = field(default_factory=Signer)

    @classmethod
    def open(cls, data_dir: Path) -> Buckets:
        return cls(BucketStore(data_dir / "buckets.db"), Cas(data_dir / "cas"))

    def add_file(
        self,
        namespace: str,
        bucket: str,
        path: str,
        xet_hash: str,
        mtime_ms: int | None = None,
        content_type: str | None = None,
    ) -> str | None:
        """Add (or replace) a file by its Xet hash; the reason it cannot be, or None."""
        if (problem := path_problem(path)) is not None:
            return problem
        if mtime_ms is not None and not mtime_ok(mtime_ms):
            return MTIME_RULE
        if (other := self.store.clash(namespace, bucket, path)) is not None:
            # a bucket is laid out as files for a job: a path is a file or a folder, not both
            return (
                f"`path` {path[:200]!r} and the file {other[:200]!r} cannot both be in the "
                "bucket (a name is a file or a folder, not both); delete that one first"
            )
        try:
            from_hex(xet_hash)
        except ValueError as exc:
            return str(exc)
        if xet_hash == EMPTY_FILE:
            size = 0
        else:
            if not self.store.owns(namespace, xet_hash):
                return (
                    f"unknown xetHash {xet_hash}: upload the file (its shard) with a write "
                    "token of this namespace first"
                )
            try:
                size = self.cas.file(xet_hash).size
            except NotStored:
                return f"xetHash {xet_hash} is not stored; upload it first"
        self.store.put_file(namespace, bucket, path, xet_hash, size, mtime_ms, content_type)
        return None


class BucketApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def mtime_ok(mtime: Any) -> bool:
    """Milliseconds since 1970, up to the end of year 9999 (what a listing can show)."""
    return isinstance(mtime, int) and not isinstance(mtime, bool) and 0 <= mtime <= MAX_MTIME_MS


def path_problem(path: Any) -> str | None:
    if not isinstance(path, str) or not path or len(path) > 4096:
        return "`path` must be a non-empty string"
    parts = path.split("/")
    if path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in path:
        return f"`path` {path[:200]!r} must be relative, without empty, . or .. parts"
    return None


def _namespace(request: Request, identity: Identity, *, me_alias: bool = False) -> str:
    namespace = request.path_params["namespace"]
    if me_alias and namespace == "me" and not identity.can_use("me"):
        namespace = identity.name  # create_bucket("name"), without a namespace: the user's
    if not identity.can_use(namespace):
        raise BucketApiError(403, f"You don't have access to the namespace {namespace}")
    return namespace


def _bucket(buckets: Buckets, request: Request, identity: Identity) -> tuple[str, str]:
    namespace = _namespace(request, identity)
    name = request.path_params["name"]
    if buckets.store.get(namespace, name) is None:
        raise BucketApiError(404, f"Bucket {namespace}/{name} not found")
    return namespace, name


def check_volumes(buckets: Buckets, identity: Identity, spec: dict[str, Any]) -> None:
    """ValueError naming the first bucket volume of `spec` that `identity` cannot mount: one
    of a namespace it cannot use (a token sees only its namespaces' buckets), or none at all,
    or whose `path` is no folder a bucket can hold (`out//run`, `out/./run`)."""
    for index, volume in enumerate(spec.get("volumes") or []):
        if volume["type"] != "bucket":
            continue
        namespace, name = volume["source"].split("/")
        where = f"`volumes[{index}]` (bucket {volume['source']} at {volume['mountPath']})"
        if not identity.can_use(namespace) or buckets.store.get(namespace, name) is None:
            raise ValueError(f"{where}: no bucket {volume['source']} that this token can use")
        folder = str(volume.get("path") or "").strip("/")
        if folder and (problem := path_problem(folder)) is not None:
            # what the job writes there is kept under this folder: it must be a bucket path
            raise ValueError(f"{where}: {problem.replace('`path`', '`path` folder', 1)}")


def _hub(request: Request) -> str:
    return str(request.base_url).rstrip("/")


def info_json(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{record['namespace']}/{record['name']}",
        "private": record["private"],
        "createdAt": timestamp(record["created_at"]),
        "size": record["size"],
        "totalFiles": record["total_files"],
    }


def file_json(entry: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "type": "file",
        "path": entry["path"],
        "size": entry["size"],
        "xetHash": entry["xetHash"],
    }
    if entry["mtime_ms"] is not None:
        doc["mtime"] = timestamp(entry["mtime_ms"] / 1000)
    doc["uploadedAt"] = timestamp(entry["uploaded_at"])
    return doc


def tree(files: list[dict[str, Any]], prefix: str, recursive: bool) -> list[dict[str, Any]]:
    """Files (and the folders holding them) under `prefix`: its direct children, or all."""
    base = f"{prefix}/" if prefix else ""
    out: list[dict[str, Any]] = []
    folders: dict[str, float] = {}
    for entry in files:
        if not entry["path"].startswith(base):
            continue
        rest = entry["path"][len(base) :]
        parts = rest.split("/")
        for depth in range(1, len(parts) if recursive else min(len(parts), 2)):
            folder = base + "/".join(parts[:depth])
            folders[folder] = max(folders.get(folder, 0.0), entry["uploaded_at"])
        if recursive or len(parts) == 1:
            out.append(file_json(entry))
    out += [
        {"type": "directory", "path": path, "uploadedAt": timestamp(at)}
        for path, at in folders.items()
    ]
    return sorted(out, key=lambda item: item["path"])


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with a 413 as soon as it is known to be over `limit` bytes: by its
    Content-Length before any is read, else where the stream passes the limit."""
    too_big = f"the request body is over {limit // (1024 * 1024)} MiB; send less"
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BucketApiError(413, too_big)
    raw = bytearray()
    async for piece in request.stream():
        raw += piece
        if len(raw) > limit:
            raise BucketApiError(413, too_big)
    return bytes(raw)


async def _json(request: Request) -> Any:
    raw = await _read_body(request, MAX_JSON_BYTES)
    if not raw:
        return {}
    try:
        return parse_json(raw)
    except BodyError as exc:
        raise BucketApiError(400, str(exc)) from None


def bucket_routes(buckets: Buckets, guarded) -> list[Route]:
    def api(handler):
        async def wrapped(request: Request, identity: Identity) -> Response:
            try:
                return await handler(request, identity)
            except BucketApiError as exc:
                return error(exc.status, exc.message)

        return guarded(wrapped)

    async def create(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity, me_alias=True)
        name = request.path_params["name"]
        body = await _json(request)
        if not isinstance(body, dict):
            raise BucketApiError(400, "Request body must be a JSON object")
        for key, why in (
            ("resourceGroupId", "hfuv server has no resource groups"),
            ("region", "hfuv server keeps buckets in its data dir only"),
        ):
            if body.get(key) is not None:
                raise BucketApiError(400, f"`{key}` is not supported: {why}; drop it")
        unknown = sorted(set(body) - {"visibility", "private", "resourceGroupId", "region"})
        if unknown:
            raise BucketApiError(400, f"unknown field `{unknown[0]}` in the bucket settings")
        visibility = body.get("visibility", "private" if body.get("private") else "public")
        if visibility not in ("public", "private"):
            raise BucketApiError(400, "`visibility` must be public or private")
        if not NAME.fullmatch(name):
            raise BucketApiError(
                400,
                f"invalid bucket name {name[:100]!r}: letters, digits, "
                "'.', '_' and '-', at most 96",
            )
        url = f"{_hub(request)}/buckets/{namespace}/{name}"
        if not buckets.store.create(namespace, name, visibility == "private"):
            # The official client reads `url` from the 409 too (create_bucket(exist_ok=True)).
            message = f"Bucket {namespace}/{name} already exists"
            return JSONResponse(
                {"error": message, "url": url},
                409,
                headers={"X-Error-Message": header_value(message)},
            )
        return JSONResponse({"url": url, "id": f"{namespace}/{name}"})

    async def bucket(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        if request.method == "DELETE":
            buckets.store.delete(namespace, name)
            return JSONResponse(None)
        record = buckets.store.get(namespace, name)
        assert record is not None
        return JSONResponse(info_json(record))

    async def listing(request: Request, identity: Identity) -> Response:
        namespace = _namespace(request, identity)
        search = request.query_params.get("search", "")
        records = [
            buckets.store.get(namespace, n) for n in buckets.store.names(namespace) if search in n
        ]
        return JSONResponse([info_json(r) for r in records if r is not None])

    async def settings(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        body = await _json(request)
        if (
            not isinstance(body, dict)
            or set(body) != {"private"}
            or not isinstance(body["private"], bool)
        ):
            raise BucketApiError(400, "the only bucket setting is `private` (a boolean)")
        buckets.store.set_private(namespace, name, body["private"])
        return JSONResponse(None)

    async def list_tree(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        prefix = request.path_params.get("prefix", "").strip("/")
        recursive = request.query_params.get("recursive", "false").lower() == "true"
        files = buckets.store.files(namespace, name, f"{prefix}/" if prefix else "")
        exact = buckets.store.file(namespace, name, prefix) if prefix else None
        entries = [file_json(exact)] if exact else tree(files, prefix, recursive)
        return JSONResponse(entries)  # nothing under a prefix: an empty list, as on the Hub

    async def paths_info(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        body = await _json(request)
        paths = body.get("paths") if isinstance(body, dict) else None
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise BucketApiError(400, 'the body must be {"paths": [PATH, ...]}')
        if len(paths) > MAX_PATHS_INFO:
            raise BucketApiError(
                400, f"{len(paths)} paths asked for; give at most {MAX_PATHS_INFO} a request"
            )
        found = [buckets.store.file(namespace, name, p) for p in paths]
        return JSONResponse([file_json(f) for f in found if f is not None])

    def xet_token(scope: str):
        async def handler(request: Request, identity: Identity) -> Response:
            namespace, name = _bucket(buckets, request, identity)
            token, expires = buckets.signer.token(namespace, name, scope)
            url = cas_url(request)
            headers = {
                "X-Xet-Cas-Url": url,
                "X-Xet-Access-Token": token,
                "X-Xet-Token-Expiration": str(expires),
            }
            return JSONResponse(
                {"casUrl": url, "accessToken": token, "exp": expires}, headers=headers
            )

        return handler

    async def batch(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        raw = await _read_body(request, MAX_BATCH_BYTES)
        failed: list[dict[str, str]] = []
        lines = [line for line in raw.split(b"\n") if line.strip()]
        for number, line in enumerate(lines, start=1):
            try:
                op = parse_json(line)
            except BodyError as exc:
                failed.append({"path": f"line {number}", "error": str(exc)})
                continue
            path = op.get("path") if isinstance(op, dict) else None
            kind = op.get("type") if isinstance(op, dict) else None
            where = path if isinstance(path, str) else f"line {number}"
            if kind == "addFile":
                mtime = op.get("mtime")
                if mtime is not None and not mtime_ok(mtime):
                    failed.append({"path": where, "error": MTIME_RULE})
                    continue
                content_type = op.get("contentType")
                if content_type is not None and not (
                    isinstance(content_type, str)
                    and len(content_type) <= 255
                    and CONTENT_TYPE.fullmatch(content_type)
                ):
                    failed.append({"path": where, "error": CONTENT_TYPE_RULE})
                    continue
                problem = buckets.add_file(
                    namespace, name, path, str(op.get("xetHash")), mtime, content_type
                )
                if problem:
                    failed.append({"path": where, "error": problem})
            elif kind == "deleteFile":
                if (problem := path_problem(path)) is not None:
                    failed.append({"path": where, "error": problem})
                else:
                    buckets.store.delete_file(namespace, name, path)
            elif kind == "copyFile":
                failed.append(
                    {
                        "path": where,
                        "error": "copyFile is not supported by hfuv "
                        "server: download the file and add it",
                    }
                )
            else:
                failed.append(
                    {
                        "path": where,
                        "error": f"unknown operation type {kind!r}; use addFile or deleteFile",
                    }
                )
        status = 422 if failed and len(failed) == len(lines) else 200
        return JSONResponse({"failed": failed}, status)

    async def resolve(request: Request, identity: Identity) -> Response:
        namespace, name = _bucket(buckets, request, identity)
        path = request.path_params["path"]
        entry = buckets.store.file(namespace, name, path)
        if entry is None:
            raise BucketApiError(404, f"No file {path} in bucket {namespace}/{name}")
        refresh = f"{_hub(request)}/api/buckets/{namespace}/{name}/xet-read-token"
        headers = {
            "X-Xet-Hash": entry["xetHash"],
            "X-Linked-Size": str(entry["size"]),
            "Link": f'<{refresh}>; rel="xet-auth"',
            "X-Xet-Refresh-Route": refresh,
            "Content-Length": str(entry["size"]),
            "ETag": f'"{entry["xetHash"]}"',
        }
        if request.method == "HEAD":
            return Response(status_code=200, headers=headers)
        headers.pop("Content-Length")
        stream = buckets.cas.read_file(entry["xetHash"]) if entry["size"] else iter([b""])
        return StreamingResponse(
            stream, headers=headers, media_type=entry["content_type"] or "application/octet-stream"
        )

    async def telemetry(request: Request) -> Response:
        return error(404, "hfuv server collects no telemetry")

    b = "/api/buckets/{namespace}/{name}"
    return [
        Route("/api/buckets/{namespace}", api(listing), methods=["GET"]),
        Route(b, api(create), methods=["POST"]),
        Route(b, api(bucket), methods=["GET", "DELETE"]),
        Route(f"{b}/settings", api(settings), methods=["PUT"]),
        Route(f"{b}/tree", api(list_tree), methods=["GET"]),
        Route(f"{b}/tree/{{prefix:path}}", api(list_tree), methods=["GET"]),
        Route(f"{b}/paths-info", api(paths_info), methods=["POST"]),
        Route(f"{b}/xet-write-token", api(xet_token("write")), methods=["GET"]),
        Route(f"{b}/xet-read-token", api(xet_token("read")), methods=["GET"]),
        Route(f"{b}/batch", api(batch), methods=["POST"]),
        Route(
            "/buckets/{namespace}/{name}/resolve/{path:path}", api(resolve), methods=["GET", "HEAD"]
        ),
        Route("/v1/telemetry", telemetry, methods=["POST"]),
        *cas_routes(buckets),
    ]
