"""The CAS HTTP API (spec: "CAS API") under `/cas`, authorized by Xet tokens (`tokens`).

Refused with a 404 naming what is not offered, so that the client takes its fallback: global
chunk dedup, xorb upload grants, `/v2/shards`, `/v2/reconstructions`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hfuv.server.wire import SafeJSONResponse as JSONResponse
from hfuv.server.wire import header_value
from hfuv.server.xet import reconstruct
from hfuv.server.xet.cas import CasError, NotStored
from hfuv.server.xet.hashes import from_hex
from hfuv.server.xet.tokens import Grant
from hfuv.server.xet.xorb import MAX_XORB_BYTES

CAS_PREFIX = "/cas"


class CasApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": message}, status, headers={"X-Error-Message": header_value(message)}
    )


def cas_url(request: Request) -> str:
    return str(request.base_url).rstrip("/") + CAS_PREFIX


def _grant(buckets: Any, request: Request, scope: str) -> Grant:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    grant = buckets.signer.grant(token.strip()) if scheme.lower() == "bearer" else None
    if grant is None:
        raise CasApiError(
            401,
            "Missing, invalid or expired Xet token; get a new one from "
            "the bucket's xet-read-token or xet-write-token route",
        )
    if not buckets.store.exists(grant.namespace, grant.bucket):
        raise CasApiError(
            401, f"This Xet token is for bucket {grant.namespace}/{grant.bucket}, which is gone"
        )
    if scope == "write" and grant.scope != "write":
        raise CasApiError(403, "This Xet token is read-only; uploads need a write token")
    return grant


def _hash(request: Request, key: str = "hash") -> str:
    value = request.path_params[key]
    try:
        from_hex(value)
    except ValueError as exc:
        raise CasApiError(400, str(exc)) from None
    return value


def _prefix(request: Request) -> None:
    if request.path_params["prefix"] != "default":
        raise CasApiError(400, f"unknown prefix {request.path_params['prefix']!r}; use default")


async def _body(request: Request, limit: int, what: str) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise CasApiError(400, f"{what} is {declared} bytes, over the {limit} byte limit")
    data = bytearray()
    async for piece in request.stream():
        data += piece
        if len(data) > limit:
            raise CasApiError(400, f"{what} is over the {limit} byte limit")
    return bytes(data)


def cas_routes(buckets: Any) -> list[Route]:
    def handled(handler):
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except CasApiError as exc:
                return error(exc.status, exc.message)

        return endpoint

    def refused(what: str, instead: str):
        async def handler(request: Request) -> Response:
            _grant(buckets, request, "read")
            raise CasApiError(404, f"{what} is not offered by hfuv server; {instead}")

        return handler

    async def xorb(request: Request) -> Response:
        _prefix(request)
        name = _hash(request)
        if request.method == "HEAD":
            grant = _grant(buckets, request, "read")
            # a xorb another namespace uploaded is absent to this one (its content is theirs)
            owned = buckets.store.owns_xorb(grant.namespace, name)
            if not owned or not buckets.cas.has_xorb(name):
                raise CasApiError(404, f"No xorb {name}")
            size = (buckets.cas.root / "xorbs" / name).stat().st_size
            return Response(status_code=200, headers={"Content-Length": str(size)})
        grant = _grant(buckets, request, "write")
        body = await _body(request, MAX_XORB_BYTES, "the xorb")
        try:
            await asyncio.to_thread(buckets.cas.put_xorb, name, body)
        except CasError as exc:
            raise CasApiError(400, f"xorb {name} refused: {exc}") from None
        # new to this namespace or not: whether another namespace stored it is not told
        inserted = buckets.store.add_xorb_owner(name, grant.namespace)
        return JSONResponse({"was_inserted": inserted})

    async def shard(request: Request) -> Response:
        grant = _grant(buckets, request, "write")
        from hfuv.server.xet.shard import MAX_SHARD_BYTES

        body = await _body(request, MAX_SHARD_BYTES, "the shard")
        try:
            files = await asyncio.to_thread(
                buckets.cas.put_shard,
                body,
                lambda xorb: buckets.store.owns_xorb(grant.namespace, xorb),
            )
        except CasError as exc:
            raise CasApiError(400, f"shard refused: {exc}") from None
        for record in files:
            buckets.store.add_owner(record.hash, grant.namespace)
        return JSONResponse({"result": 1})

    def readable(grant: Grant, name: str):
        # A read token reads the files of its bucket; a write token those its namespace
        # uploaded or holds (the upload it is for may not be in the bucket yet).
        if grant.scope == "write":
            allowed = buckets.store.owns(grant.namespace, name)
        else:
            allowed = buckets.store.holds(grant.namespace, grant.bucket, name)
        if not allowed:
            raise CasApiError(404, f"No file {name}")
        try:
            return buckets.cas.file(name)
        except NotStored:
            raise CasApiError(404, f"No file {name}") from None

    def url_of(request: Request):
        base = cas_url(request)

        def url(xorb_name: str, start: int, end: int) -> str:
            query = buckets.signer.transfer_query(xorb_name, start, end)
            return f"{base}/transfer/{xorb_name}?{query}"

        return url

    async def reconstruction(request: Request) -> Response:
        grant = _grant(buckets, request, "read")
        record = readable(grant, _hash(request, "file_id"))
        try:
            wanted = reconstruct.parse_range(request.headers.get("range"), record.size)
        except reconstruct.RangeNotSatisfiable as exc:
            raise CasApiError(416, str(exc)) from None
        except ValueError as exc:
            raise CasApiError(400, str(exc)) from None
        if record.size == 0:
            raise CasApiError(416, "the file is empty: there is nothing to reconstruct")
        terms, fetch, offset = await asyncio.to_thread(
            reconstruct.terms_of, buckets.cas, record, url_of(request), wanted
        )
        return JSONResponse(
            {"offset_into_first_range": offset, "terms": terms, "fetch_info": fetch}
        )

    async def batch_reconstruction(request: Request) -> Response:
        grant = _grant(buckets, request, "read")
        if request.method == "POST":
            import json

            try:
                ids = json.loads(await _body(request, 1024 * 1024, "the request"))
            except ValueError:
                raise CasApiError(400, "the body must be a JSON array of file ids") from None
        else:
            ids = request.query_params.getlist("file_id")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise CasApiError(400, "give file ids as a JSON array of strings (or ?file_id=)")
        files: dict[str, Any] = {}
        fetch_info: dict[str, list[Any]] = {}
        cache: dict[str, Any] = {}  # each xorb's chunk index read once for all the files
        for name in dict.fromkeys(ids):
            try:
                from_hex(name)
            except ValueError as exc:
                raise CasApiError(400, str(exc)) from None
            record = readable(grant, name)
            terms, fetch, _ = await asyncio.to_thread(
                reconstruct.terms_of, buckets.cas, record, url_of(request), None, cache
            )
            files[name] = terms
            for xorb_name, entries in fetch.items():
                fetch_info.setdefault(xorb_name, []).extend(entries)
        return JSONResponse({"files": files, "fetch_info": fetch_info})

    async def head_file(request: Request) -> Response:
        grant = _grant(buckets, request, "read")
        record = readable(grant, _hash(request, "file_id"))
        return Response(status_code=200, headers={"Content-Length": str(record.size)})

    async def transfer(request: Request) -> Response:
        name = _hash(request)
        query = request.query_params
        signed = query.get("range", "")
        if not buckets.signer.transfer_ok(name, signed, query.get("exp", ""), query.get("sig", "")):
            raise CasApiError(
                403,
                "This transfer URL is invalid or expired; ask for the file's reconstruction again",
            )
        asked = request.headers.get("range", "").removeprefix("bytes=")
        start_text, _, end_text = signed.partition("-")
        start, end = int(start_text), int(end_text)
        if asked:
            first, _, last = asked.partition("-")
            if not (first.isdigit() and last.isdigit() and start <= int(first) <= int(last) <= end):
                raise CasApiError(403, f"Range bytes={asked} is outside this URL's {signed}")
            start, end = int(first), int(last)
        data = await asyncio.to_thread(buckets.cas.xorb_bytes, name, start, end + 1)
        headers = {"Content-Range": f"bytes {start}-{start + len(data) - 1}/*"}
        return Response(
            data, status_code=206, headers=headers, media_type="application/octet-stream"
        )

    p = CAS_PREFIX
    return [
        Route(
            f"{p}/v1/chunks/{{prefix}}/{{hash}}",
            handled(refused("Global chunk deduplication", "upload the chunks in a xorb")),
            methods=["GET"],
        ),
        Route(
            f"{p}/v1/xorb-grants/{{prefix}}/{{hash}}",
            handled(refused("A xorb upload grant", "POST the xorb to /v1/xorbs")),
            methods=["POST"],
        ),
        Route(f"{p}/v1/xorbs/{{prefix}}/{{hash}}", handled(xorb), methods=["POST", "HEAD"]),
        Route(f"{p}/v2/shards", handled(refused("/v2/shards", "use /v1/shards")), methods=["POST"]),
        Route(f"{p}/v1/shards", handled(shard), methods=["POST"]),
        Route(
            f"{p}/v2/reconstructions/{{file_id}}",
            handled(refused("/v2/reconstructions", "use /v1/reconstructions")),
            methods=["GET"],
        ),
        Route(f"{p}/v1/reconstructions/{{file_id}}", handled(reconstruction), methods=["GET"]),
        Route(f"{p}/v1/reconstructions", handled(batch_reconstruction), methods=["GET", "POST"]),
        Route(f"{p}/v1/files/{{file_id}}", handled(head_file), methods=["HEAD"]),
        Route(f"{p}/transfer/{{hash}}", handled(transfer), methods=["GET"]),
    ]
