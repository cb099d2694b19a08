"""A stranger's review of the buckets + Xet CAS of `hfuv server`: each test shows one finding
(see the review report), against a real server over plain HTTP or the official client. Each
fails until its finding is fixed."""

from __future__ import annotations

import json
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import ClassVar

import pytest

from tests.conftest import ServerProcess
from tests.images import busybox_image, uv_image

hf_xet = pytest.importorskip("hf_xet")
pytest.importorskip("blake3")
lz4_frame = pytest.importorskip("lz4.frame")

from hfuv.server.xet import hashes  # noqa: E402
from tests.test_buckets import call, chunk, hf_api, started_on_podman  # noqa: E402


def xet_token(server: ServerProcess, bucket: str, scope: str = "write", token: str = "token-me"):
    status, _, body = call(server, "GET", f"/api/buckets/{bucket}/xet-{scope}-token", token=token)
    assert status == 200, body
    return json.loads(body)["accessToken"]


def post_xorb(server: ServerProcess, name: str, body: bytes, token: str):
    """POST a xorb `name` to the CAS: (status, headers, body)."""
    url = f"{server.url}/cas/v1/xorbs/default/{name}"
    return call(server, "POST", "", body, token=token, url=url)


def upload(server: ServerProcess, bucket: str, data: bytes, token: str = "token-me") -> str:
    """`data` uploaded as a file (xorbs, then shard) over plain HTTP; its Xet hash."""
    xet = xet_token(server, bucket, token=token)
    with tempfile.TemporaryDirectory() as scratch:
        session = hf_xet.XetSession()
        with session.new_upload_commit(endpoint=f"local://{scratch}/cas") as commit:
            handle = commit.start_upload_bytes(data, sha256=hf_xet.SKIP_SHA256)
        name = handle.result().xet_info.hash
        for xorb in Path(scratch).glob("cas/**/xorbs/xorbs/default.*"):
            if len(xorb.suffix) == 65:
                status, _, body = post_xorb(server, xorb.suffix[1:], xorb.read_bytes(), xet)
                assert status == 200, body
        for shard in Path(scratch).glob("cas/**/xorbs/shards/*.mdb"):
            status, _, body = call(
                server, "POST", "", shard.read_bytes(), token=xet, url=f"{server.url}/cas/v1/shards"
            )
            assert status == 200, body
    return name


def batch(server: ServerProcess, bucket: str, *ops: dict, token: str = "token-me"):
    body = "".join(json.dumps(op) + "\n" for op in ops).encode()
    return call(server, "POST", f"/api/buckets/{bucket}/batch", body, token=token)


def peak_memory_kib(server: ServerProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(status.split("VmHWM:")[1].split()[0])


def no_traceback(server: ServerProcess) -> None:
    """The server's stderr so far has no traceback (read after stopping it)."""
    server.stop()
    assert server.process is not None and server.process.stderr is not None
    log = server.process.stderr.read()
    assert "Traceback" not in log, log[-3000:]


# Resource bounds


def post_without_finishing(server: ServerProcess, path: str, declared: int, sent: int) -> bytes:
    """POST to `path` declaring a `declared`-byte body, send `sent` bytes of it, and return what
    the server answers within 10 s (b"" when it is still waiting for the rest)."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer "
            f"token-me\r\nContent-Length: {declared}\r\n\r\n".encode()
        )
        block = b"\n" * (1 << 20)
        try:
            for _ in range(sent // len(block)):
                sock.sendall(block)
        except OSError:
            pass  # the server answered and closed: what it said is read below
        sock.settimeout(10)
        try:
            return sock.recv(4096)
        except OSError:
            return b""


@pytest.mark.parametrize(
    "route", ["/api/buckets/me/b/batch", "/api/buckets/me/b/paths-info", "/api/buckets/me/new"]
)
def test_bucket_routes_refuse_a_huge_body_before_reading_it(
    server: ServerProcess, route: str
) -> None:
    # The Jobs routes answer a 10 GB Content-Length with a 413 at once (MAX_BODY_BYTES); the
    # bucket routes read the whole body into memory first (`await request.body()`).
    hf_api(server).create_bucket("me/b")
    answer = post_without_finishing(server, route, 10 * 1024**3, 24 * 1024 * 1024)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def lz4_bomb(decompressed: int) -> bytes:
    """An LZ4 frame of `decompressed` zero bytes (a few MB), built without holding them."""
    compressor = lz4_frame.LZ4FrameCompressor()
    block = bytes(16 * 1024 * 1024)
    parts = [
        compressor.begin(),
        *(compressor.compress(block) for _ in range(decompressed // len(block))),
    ]
    return b"".join([*parts, compressor.flush()])


def test_a_lz4_chunk_is_not_decompressed_past_its_declared_size(server: ServerProcess) -> None:
    # A chunk's header says at most 128 KiB, but `lz4.frame.decompress` expands the whole frame
    # before the size is compared: ~4 MB sent make the server hold 1 GiB (2 GiB peak).
    hf_api(server).create_bucket("me/b")
    token = xet_token(server, "me/b")
    frame = lz4_bomb(1024**3)
    header = b"\x00" + len(frame).to_bytes(3, "little") + b"\x01" + (1024).to_bytes(3, "little")
    before = peak_memory_kib(server)
    status, _, body = post_xorb(server, "1" * 64, header + frame, token)
    assert status == 400, body
    grown = peak_memory_kib(server) - before
    assert grown < 256 * 1024, f"the server's peak memory grew by {grown // 1024} MiB"


def test_a_xorb_of_more_chunks_than_the_protocol_allows_is_refused(server: ServerProcess) -> None:
    # xet-core: MAX_XORB_CHUNKS = 8 * 1024. Here 1-byte chunks are accepted, so a 64 MiB xorb
    # can hold ~7M chunks: minutes of hashing and a chunk index ~7x its size, parsed again for
    # every term of every shard and reconstruction that names it.
    hf_api(server).create_bucket("me/b")
    token = xet_token(server, "me/b")
    datas = [index.to_bytes(2, "little") for index in range(20_000)]
    leaves = [(hashes.chunk_hash(d), len(d)) for d in datas]
    name = hashes.to_hex(hashes.xorb_hash(leaves))
    status, _, body = post_xorb(server, name, b"".join(chunk(d) for d in datas), token)
    assert status == 400, body
    assert b"chunks" in body


def test_a_shard_of_many_terms_is_verified_in_linear_time(server: ServerProcess) -> None:
    # Each term of a shard re-reads and re-parses the whole chunk index of its xorb
    # (`Cas.chunks`), and so does each term of every later reconstruction: with a xorb of 8000
    # chunks (within xet-core's 8192), a 144 KB shard of 1500 one-chunk terms costs ~20 s of a
    # server thread; a 64 MiB shard (the limit) would cost hours, and 6 of them hold every
    # `asyncio.to_thread` worker, so no one's upload or download is answered.
    from hfuv.server.xet.shard import BOOKEND, HEADER_TAG, WITH_VERIFICATION

    hf_api(server).create_bucket("me/b")
    token = xet_token(server, "me/b")
    datas = [index.to_bytes(8, "little") for index in range(8000)]
    raw = [hashes.chunk_hash(d) for d in datas]
    leaves = [(h, 8) for h in raw]
    xorb = hashes.xorb_hash(leaves)
    status, _, body = post_xorb(
        server, hashes.to_hex(xorb), b"".join(chunk(d) for d in datas), token
    )
    assert status == 200, body
    picks = list(range(1500))
    shard = HEADER_TAG + struct.pack("<QQ", 2, 0)
    shard += hashes.file_hash([leaves[i] for i in picks])
    shard += struct.pack("<IIQ", WITH_VERIFICATION, len(picks), 0)
    shard += b"".join(xorb + struct.pack("<IIII", 0, 8, i, i + 1) for i in picks)
    shard += b"".join(hashes.verification_hash([raw[i]]) + bytes(16) for i in picks)
    shard += BOOKEND + bytes(16) + BOOKEND + bytes(16)
    started = time.monotonic()
    status, _, body = call(
        server, "POST", "", shard, token=token, url=f"{server.url}/cas/v1/shards"
    )
    took = time.monotonic() - started
    assert took < 5, f"a {len(shard)}-byte shard took {took:.1f} s (answer {status})"


# Errors: a 400 (or a failed entry), never a 500


def test_a_huge_mtime_in_a_batch_is_refused_not_a_500(server: ServerProcess) -> None:
    hf_api(server).create_bucket("me/b")
    status, _, body = batch(
        server, "me/b", {"type": "addFile", "path": "a", "xetHash": "0" * 64, "mtime": 10**20}
    )
    assert status in (400, 422), body  # today: 500 (SQLite cannot hold the int)
    assert b"mtime" in body
    no_traceback(server)


def test_a_far_future_mtime_does_not_break_the_buckets_listing(server: ServerProcess) -> None:
    # 2**62 ms fits SQLite, so the batch takes it, and from then on every listing of the bucket
    # is a 500 (`datetime.fromtimestamp`: year out of range), for the official client too.
    api = hf_api(server)
    api.create_bucket("me/b")
    status, _, body = batch(
        server, "me/b", {"type": "addFile", "path": "a", "xetHash": "0" * 64, "mtime": 2**62}
    )
    if status == 200:
        assert json.loads(body)["failed"] == []
        assert [f.path for f in api.list_bucket_tree("me/b")] == ["a"]
    else:
        assert status in (400, 422) and b"mtime" in body
    no_traceback(server)


def test_a_content_type_that_cannot_be_a_header_is_refused(server: ServerProcess) -> None:
    # The batch keeps any string as the file's contentType and the resolve route sends it as
    # the Content-Type header: with a line break in it, h11 refuses the response and the
    # download ends with the connection dropped (a traceback in the server log).
    hf_api(server).create_bucket("me/b")
    xet_hash = upload(server, "me/b", b"hello\n")
    status, _, body = batch(
        server,
        "me/b",
        {
            "type": "addFile",
            "path": "a.txt",
            "xetHash": xet_hash,
            "contentType": "text/html\r\nSet-Cookie: a=b",
        },
    )
    if status == 200 and json.loads(body)["failed"] == []:
        status, _, data = call(server, "GET", "/buckets/me/b/resolve/a.txt")  # drops today
        assert (status, data) == (200, b"hello\n")
    else:
        assert b"contentType" in body
    no_traceback(server)


def test_paths_info_over_its_limit_is_refused_not_truncated(server: ServerProcess) -> None:
    # `paths[:1000]`: the 1001st path is silently dropped (the official client sends batches
    # of 1000, any other caller gets a partial answer that looks complete).
    hf_api(server).create_bucket("me/b")
    assert batch(server, "me/b", {"type": "addFile", "path": "last", "xetHash": "0" * 64})[0] == 200
    paths = [f"missing-{i}" for i in range(1000)] + ["last"]
    status, _, body = call(
        server, "POST", "/api/buckets/me/b/paths-info", json.dumps({"paths": paths}).encode()
    )
    if status == 200:
        assert [entry["path"] for entry in json.loads(body)] == ["last"]
    else:
        assert status == 400 and b"1000" in body


# Isolation


def test_another_namespace_cannot_tell_which_xorbs_are_stored(server: ServerProcess) -> None:
    # HEAD /cas/v1/xorbs/default/HASH answers 200 for a xorb any namespace uploaded, to a Xet
    # token of any bucket: whoever can guess a file's content (a config with a weak password, a
    # known document) learns that some other namespace stores it.
    hf_api(server).create_bucket("me/b")
    hf_api(server, "other").create_bucket("other/x")
    secret = b"db_password=hunter2\n"
    upload(server, "me/b", secret)
    guessed = hashes.to_hex(hashes.xorb_hash([(hashes.chunk_hash(secret), len(secret))]))
    token = xet_token(server, "other/x", "read", token="token-other")
    status, _, _ = call(
        server, "HEAD", "", token=token, url=f"{server.url}/cas/v1/xorbs/default/{guessed}"
    )
    assert status == 404


def test_a_xet_token_of_one_bucket_does_not_read_another(server: ServerProcess) -> None:
    # A Xet token names one bucket, but the CAS only checks its namespace: a read token of
    # me/public-stuff reads a file that is only in me/private-stuff (README: tokens "from the
    # bucket's xet-read-token route").
    api = hf_api(server)
    api.create_bucket("me/public-stuff")
    api.create_bucket("me/private-stuff", private=True)
    xet_hash = upload(server, "me/private-stuff", b"only in private-stuff\n")
    assert (
        batch(server, "me/private-stuff", {"type": "addFile", "path": "s", "xetHash": xet_hash})[0]
        == 200
    )
    token = xet_token(server, "me/public-stuff", "read")
    status, _, _ = call(
        server, "GET", "", token=token, url=f"{server.url}/cas/v1/reconstructions/{xet_hash}"
    )
    assert status in (403, 404)


def test_a_xet_token_ends_with_its_bucket(server: ServerProcess) -> None:
    # A write token still uploads (and a read token still reads) for up to an hour after the
    # bucket it was issued for is deleted.
    api = hf_api(server)
    api.create_bucket("me/gone")
    token = xet_token(server, "me/gone")
    api.delete_bucket("me/gone")
    data = b"after the bucket was deleted"
    name = hashes.to_hex(hashes.xorb_hash([(hashes.chunk_hash(data), len(data))]))
    status, _, body = post_xorb(server, name, chunk(data), token)
    assert status in (401, 403, 404), body


class OrgServer(ServerProcess):
    TOKENS: ClassVar[dict[str, str]] = {
        "me": "token-me",
        "alice@acme": "token-alice",
        "bob@acme": "token-bob",
    }


@pytest.fixture
def org_podman_server(tmp_path: Path):
    server = started_on_podman(tmp_path / "server-data", OrgServer)
    yield server
    server.stop()


def test_a_webhook_cannot_mount_a_bucket_its_creator_cannot_use(
    org_podman_server: OrgServer,
) -> None:
    # alice runs a job in her org `acme` that mounts her own private bucket (she may). bob, a
    # member of acme who cannot use alice's buckets, makes a webhook of that job: each event he
    # sends launches a copy of it, with secrets he chose as its environment, mounting alice's
    # bucket read-write: check_volumes runs at job and schedule create, not for webhook jobs.
    server = org_podman_server
    from huggingface_hub import HfApi

    alice = HfApi(endpoint=server.url, token="token-alice")
    bob = HfApi(endpoint=server.url, token="token-bob")
    alice.create_bucket("alice/private", private=True)
    from huggingface_hub import Volume
    from huggingface_hub.errors import HfHubHTTPError

    with pytest.raises(HfHubHTTPError, match="no bucket alice/private that this token can use"):
        bob.run_job(
            image=busybox_image(),
            command=["true"],
            namespace="acme",
            volumes=[Volume(type="bucket", source="alice/private", mount_path="/x")],
        )
    job = alice.run_job(
        image=busybox_image(),
        command=["true"],
        namespace="acme",
        volumes=[Volume(type="bucket", source="alice/private", mount_path="/x")],
    )
    status, _, body = call(
        server,
        "POST",
        "/api/settings/webhooks",
        json.dumps(
            {
                "jobSourceId": job.id,
                "watched": [{"type": "user", "name": "bob"}],
                "secrets": {"UV_INDEX_URL": "http://127.0.0.1:9/bob"},
            }
        ).encode(),
        token="token-bob",
    )
    if status != 200:
        return  # refused at create: fixed
    webhook = json.loads(body)["webhook"]["id"]
    event = {
        "event": {"action": "update", "scope": "repo"},
        "repo": {"type": "model", "name": "bob/m"},
    }
    status, _, body = call(
        server, "POST", f"/webhooks/{webhook}", json.dumps(event).encode(), token="token-bob"
    )
    # Today: 200 and {"jobs": [ID]}, a job of bob's event mounting alice/private read-write.
    launched = json.loads(body).get("jobs") if status == 200 else None
    volumes = (
        [
            (v.source, v.read_only)
            for v in bob.inspect_job(job_id=launched[0], namespace="acme").volumes or []
        ]
        if launched
        else []
    )
    assert not launched, f"bob's event launched {launched}, mounting {volumes}"


# What a job leaves in (and finds in) its bucket mount


@pytest.fixture
def podman_server(tmp_path: Path):
    server = started_on_podman(tmp_path / "server-data")
    yield server
    server.stop()


def run_and_wait(api, **kwargs):
    job = api.run_job(namespace="me", **kwargs)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        status = api.inspect_job(job_id=job.id, namespace="me").status
        if status.stage not in ("RUNNING", "SCHEDULING"):
            return status
        time.sleep(0.5)
    raise AssertionError(f"job {job.id} did not end")


def test_a_bucket_with_a_file_and_a_folder_of_one_name_can_be_mounted(
    podman_server: ServerProcess,
) -> None:
    # The batch takes `a` and `a/b` both (as an object store may); laying the bucket out for a
    # job then fails with a raw OSError. Either the batch refuses the clash or the job runs.
    from huggingface_hub import Volume

    api = hf_api(podman_server)
    api.create_bucket("me/b")
    _, _, body = batch(
        podman_server,
        "me/b",
        {"type": "addFile", "path": "a", "xetHash": "0" * 64},
        {"type": "addFile", "path": "a/b", "xetHash": "0" * 64},
    )
    if json.loads(body)["failed"]:
        return  # the clash refused at the batch: fixed
    ended = run_and_wait(
        api,
        image=busybox_image(),
        command=["ls", "/x"],
        volumes=[Volume(type="bucket", source="me/b", mount_path="/x")],
    )
    assert ended.stage == "COMPLETED", ended.message


def test_a_bucket_volume_path_the_bucket_cannot_hold_is_refused_at_create(
    podman_server: ServerProcess,
) -> None:
    # jobspec checks only `..` in a bucket volume's path; `out//run` (or `out/./run`) is taken,
    # the job runs, and what it wrote is lost at the end: write-back names `out//run/f`, which
    # add_file refuses, so the job ends as ERROR after its work is done.
    from huggingface_hub import Volume
    from huggingface_hub.errors import HfHubHTTPError

    api = hf_api(podman_server)
    api.create_bucket("me/b")
    volume = Volume(type="bucket", source="me/b", mount_path="/x", path="out//run")
    try:
        ended = run_and_wait(
            api, image=busybox_image(), command=["sh", "-c", "echo hi > /x/f"], volumes=[volume]
        )
    except HfHubHTTPError as exc:
        assert exc.response.status_code == 400 and "path" in str(exc)
        return
    assert ended.stage == "COMPLETED", ended.message


WEIRD_NAMES = r"""
import os
open("/out/ok.txt", "w").write("ok\n")
open(b"/out/latin1-\xe9.txt", "w").write("not utf-8\n")
"""


def test_a_file_name_that_is_not_utf8_does_not_lose_the_jobs_outputs(
    podman_server: ServerProcess,
) -> None:
    # A job may write any byte string as a file name. Write-back hands each changed file's
    # name to hf_xet as a str with surrogates, which it cannot encode: the whole write-back
    # fails, ok.txt is lost too, and the job ends as ERROR with a raw UnicodeEncodeError.
    from huggingface_hub import Volume

    api = hf_api(podman_server)
    api.create_bucket("me/b")
    ended = run_and_wait(
        api,
        image=uv_image(),
        command=["python3", "-c", WEIRD_NAMES],
        volumes=[Volume(type="bucket", source="me/b", mount_path="/out")],
    )
    assert "UnicodeEncodeError" not in (ended.message or "")
    assert ended.stage in ("COMPLETED", "ERROR")
    paths = {f.path for f in api.list_bucket_tree("me/b", recursive=True)}
    if ended.stage == "COMPLETED":
        assert "ok.txt" in paths
    else:  # refused, naming the file, and nothing half written
        assert "latin1" in (ended.message or "") and paths == set()
