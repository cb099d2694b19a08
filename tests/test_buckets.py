"""Buckets and the Xet CAS of `hfuv server`, driven by the official client (`huggingface_hub`
2.4.0 with `hf_xet`): uploads verified, downloads byte for byte, bucket volumes mounted into
jobs (podman) and what a job writes there readable back with the official client."""

from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, write
from tests.helpers import build_wheel
from tests.images import busybox_image, podman_problem, uv_image

hf_xet = pytest.importorskip("hf_xet")
pytest.importorskip("blake3")
pytest.importorskip("lz4")

from hfuv.server.xet import hashes  # noqa: E402
from hfuv.server.xet.cas import Cas, CasError  # noqa: E402

HF = str(Path(sys.executable).parent / "hf")


def official_upload(scratch: Path, *contents: bytes) -> tuple[list[str], list[Path], list[Path]]:
    """The official client's Xet upload of `contents` into a local CAS folder: (file hashes,
    its xorb files, its shard files)."""
    session = hf_xet.XetSession()
    with session.new_upload_commit(endpoint=f"local://{scratch}/cas") as commit:
        handles = [commit.start_upload_bytes(c, sha256=hf_xet.SKIP_SHA256) for c in contents]
    names = [h.result().xet_info.hash for h in handles]
    xorbs = [p for p in scratch.glob("cas/**/xorbs/xorbs/default.*") if len(p.suffix) == 65]
    return names, xorbs, sorted(scratch.glob("cas/**/xorbs/shards/*.mdb"))


def ingest(cas: Cas, xorbs: list[Path], shards: list[Path]) -> list[str]:
    for xorb in xorbs:
        assert cas.put_xorb(xorb.name.removeprefix("default."), xorb.read_bytes())
    return [f.hash for shard in shards for f in cas.put_shard(shard.read_bytes())]


def random_bytes(size: int, seed: int) -> bytes:
    return hashlib.shake_256(str(seed).encode()).digest(size)


# The Xet formats and hashes, against the official client's own output


def test_hash_strings_are_little_endian_words() -> None:
    # The example of the spec's "Converting Hashes to Strings" (whose printed string drops the
    # byte 0x10 of its third word).
    digest = bytes(range(32))
    text = "07060504030201000f0e0d0c0b0a090817161514131211101f1e1d1c1b1a1918"
    assert hashes.to_hex(digest) == text
    assert hashes.from_hex(text) == digest
    with pytest.raises(ValueError, match="not a Xet hash"):
        hashes.from_hex("../" + "0" * 61)


def test_the_official_clients_upload_round_trips_through_the_store(tmp_path: Path) -> None:
    big = random_bytes(700_000, 1) + b"abc" * 200_000 + bytes(range(256)) * 3000  # many chunks
    names, xorbs, shards = official_upload(tmp_path / "up", big, b"hello\n")
    cas = Cas(tmp_path / "cas")
    assert sorted(ingest(cas, xorbs, shards)) == sorted(names)  # file hashes recomputed alike
    assert b"".join(cas.read_file(names[0])) == big
    assert b"".join(cas.read_file(names[1])) == b"hello\n"
    assert len(cas.file(names[0]).terms) >= 1 and cas.file(names[0]).size == len(big)


def chunk(data: bytes) -> bytes:
    """One uncompressed chunk as a xorb serializes it."""
    size = len(data).to_bytes(3, "little")
    return b"\x00" + size + b"\x00" + size + data


def test_a_xorb_whose_chunks_do_not_hash_to_its_name_is_refused(tmp_path: Path) -> None:
    cas = Cas(tmp_path / "cas")
    good = chunk(b"a" * 1000) + chunk(b"b" * 2000)
    leaves = [(hashes.chunk_hash(b"a" * 1000), 1000), (hashes.chunk_hash(b"b" * 2000), 2000)]
    name = hashes.to_hex(hashes.xorb_hash(leaves))
    tampered = good[:-1] + b"c"
    with pytest.raises(CasError, match=f"xorb hash mismatch: its 2 chunks hash to .*, not {name}"):
        cas.put_xorb(name, tampered)
    assert not cas.has_xorb(name)
    with pytest.raises(CasError, match="runs past the end"):
        cas.put_xorb(name, good[:-10])
    assert cas.put_xorb(name, good) is True
    assert cas.put_xorb(name, good) is False  # already there: not an error


def test_a_shard_that_fails_verification_is_refused(tmp_path: Path) -> None:
    names, xorbs, shards = official_upload(tmp_path / "up", random_bytes(200_000, 2))
    cas = Cas(tmp_path / "cas")
    shard = shards[0].read_bytes()
    with pytest.raises(CasError, match="which was not uploaded"):  # its xorb is not here yet
        cas.put_shard(shard)
    for xorb in xorbs:
        cas.put_xorb(xorb.name.removeprefix("default."), xorb.read_bytes())
    # The first term's verification entry follows the file header, its terms: flip one byte.
    count = struct.unpack_from("<I", shard, 48 + 36)[0]
    at = 48 + 48 + 48 * count
    bad = shard[:at] + bytes([shard[at] ^ 1]) + shard[at + 1 :]
    with pytest.raises(CasError, match="term 0's verification hash does not match"):
        cas.put_shard(bad)
    claimed = shard[:48] + bytes([shard[48] ^ 1]) + shard[49:]  # another file hash claimed
    with pytest.raises(CasError, match="its chunks hash to file"):
        cas.put_shard(claimed)
    assert not cas.has_file(names[0])
    assert [f.hash for f in cas.put_shard(shard)] == names


# Buckets through the official client, against a real server


def hf_env(server: ServerProcess, home: Path, user: str = "me") -> dict[str, str]:
    return {**os.environ, **server.env(user), "HF_HOME": str(home), "NO_COLOR": "1",
            "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_PROGRESS_BARS": "1"}  # fmt: skip


def hf(server: ServerProcess, home: Path, *args: str, cwd: Path | None = None,
       user: str = "me", timeout: float = 300) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run([HF, *args], env=hf_env(server, home, user), cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def hf_api(server: ServerProcess, user: str = "me"):
    from huggingface_hub import HfApi

    return HfApi(endpoint=server.url, token=ServerProcess.TOKENS[user])


def call(server: ServerProcess, method: str, path: str, body: bytes | None = None,
         token: str = "token-me", url: str | None = None) -> tuple[int, dict, bytes]:  # fmt: skip
    request = urllib.request.Request(url or server.url + path, data=body, method=method,
                                     headers={"authorization": f"Bearer {token}"})  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, _lower(answer.headers), answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, _lower(exc.headers), exc.read()


def _lower(headers) -> dict[str, str]:
    return {key.lower(): value for key, value in headers.items()}


def test_the_official_client_uploads_lists_and_downloads(
    server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    api = hf_api(server)
    url = api.create_bucket("me/data", private=True)
    assert url.url == f"{server.url}/buckets/me/data"
    assert api.create_bucket("me/data", exist_ok=True).bucket_id == "me/data"  # a 409, kept
    big = random_bytes(300_000, 3)
    local = write(tmp_path / "notes.txt", "hello bucket\n")
    api.batch_bucket_files("me/data", add=[(str(local), "docs/notes.txt"), (big, "big.bin"),
                                           (b"", "empty/.keep")])  # fmt: skip
    listed = {f.path: f for f in api.list_bucket_tree("me/data", recursive=True)}
    assert sorted(listed) == ["big.bin", "docs", "docs/notes.txt", "empty", "empty/.keep"]
    assert listed["big.bin"].size == 300_000 and listed["empty/.keep"].size == 0
    info = api.bucket_info("me/data")
    assert (info.private, info.total_files, info.size) == (True, 3, 300_013)
    api.download_bucket_files("me/data", [("docs/notes.txt", str(tmp_path / "out/n.txt")),
                                          ("big.bin", str(tmp_path / "out/big.bin"))])  # fmt: skip
    assert (tmp_path / "out/n.txt").read_text() == "hello bucket\n"
    assert (tmp_path / "out/big.bin").read_bytes() == big
    synced = hf(
        server, tmp_path / "hf", "buckets", "sync", "hf://buckets/me/data", str(tmp_path / "s")
    )
    assert synced.returncode == 0, synced.stderr
    assert (tmp_path / "s/big.bin").read_bytes() == big
    api.batch_bucket_files("me/data", delete=["docs/notes.txt"])
    assert "docs/notes.txt" not in {f.path for f in api.list_bucket_tree("me/data", recursive=True)}
    # Another user's token sees none of it, nor can it read the file by its hash.
    status, _, body = call(server, "GET", "/api/buckets/me/data/tree?recursive=true",
                           token="token-other")  # fmt: skip
    assert status == 403 and b"access to the namespace me" in body
    assert call(server, "GET", "/api/buckets/other/data", token="token-other")[0] == 404
    hf_api(server, "other").create_bucket("other/x")
    _, headers, _ = call(server, "GET", "/api/buckets/other/x/xet-read-token", token="token-other")
    token = headers["x-xet-access-token"]
    status, _, body = call(server, "GET", f"/cas/v1/reconstructions/{listed['big.bin'].xet_hash}",
                           token=token)  # fmt: skip
    assert status == 404, body


def test_copy_and_unknown_operations_are_refused_by_name(server: ServerProcess) -> None:
    from huggingface_hub.errors import BucketBatchError

    api = hf_api(server)
    api.create_bucket("me/b")
    with pytest.raises(BucketBatchError, match="copyFile is not supported by hfuv server"):
        api.batch_bucket_files("me/b", copy=[("bucket", "me/a", "0" * 64, "x.bin")])
    body = (
        b'{"type":"moveFile","path":"a"}\n{"type":"addFile","path":"b","xetHash":"'
        + b"1" * 64
        + b'"}\n'
    )
    status, _, answer = call(server, "POST", "/api/buckets/me/b/batch", body)
    failed = json.loads(answer)["failed"]
    assert status == 422 and [f["path"] for f in failed] == ["a", "b"]
    assert "unknown operation type 'moveFile'" in failed[0]["error"]
    assert "unknown xetHash" in failed[1]["error"]  # never uploaded by this namespace
    status, _, answer = call(server, "POST", "/api/buckets/me/c", b'{"region":"eu"}')
    assert status == 400 and b"`region` is not supported" in answer


def test_a_bad_xorb_over_http_is_a_400_and_not_stored(server: ServerProcess) -> None:
    hf_api(server).create_bucket("me/b")
    _, headers, _ = call(server, "GET", "/api/buckets/me/b/xet-write-token")
    cas, token = headers["x-xet-cas-url"], headers["x-xet-access-token"]
    assert cas == f"{server.url}/cas" and int(headers["x-xet-token-expiration"]) > time.time()
    data = b"x" * 5000
    name = hashes.to_hex(hashes.xorb_hash([(hashes.chunk_hash(data), len(data))]))
    status, _, body = call(server, "POST", "", chunk(data[:-1] + b"y"), token=token,
                           url=f"{cas}/v1/xorbs/default/{name}")  # fmt: skip
    assert status == 400, body
    assert f"xorb {name} refused: xorb hash mismatch" in json.loads(body)["error"]
    status, _, _ = call(server, "HEAD", "", token=token, url=f"{cas}/v1/xorbs/default/{name}")
    assert status == 404
    status, _, body = call(server, "POST", "", chunk(data), token=token,
                           url=f"{cas}/v1/xorbs/default/{name}")  # fmt: skip
    assert (status, json.loads(body)) == (200, {"was_inserted": True})
    _, headers, _ = call(server, "GET", "/api/buckets/me/b/xet-read-token")
    status, _, body = call(server, "POST", "", chunk(data), url=f"{cas}/v1/xorbs/default/{name}",
                           token=headers["x-xet-access-token"])  # fmt: skip
    assert status == 403 and b"read-only" in body
    status, _, body = call(server, "POST", "", chunk(data), token="token-me",
                           url=f"{cas}/v1/xorbs/default/{name}")  # fmt: skip
    assert status == 401  # the Hub token is not a Xet token


def test_on_the_host_runtime_a_bucket_volume_is_refused_clearly(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "hello.py", "print('hello')\n")
    done = hf(server, tmp_path / "hf", "jobs", "uv", "run", "--detach", str(script))
    assert done.returncode == 1
    assert "the host runtime cannot mount a volume at an absolute path" in done.stderr
    assert "--runtime podman" in done.stderr


# Jobs with bucket volumes, in containers (podman)


DEMO = """\
# /// script
# requires-python = ">=3.10"
# ///
import sys

import helper
import hfuv_demo_a

print("helper:", helper.VALUE, "demo:", hfuv_demo_a.VALUE, "args:", sys.argv[1:])
"""


def started_on_podman(data: Path, kind: type[ServerProcess] = ServerProcess) -> ServerProcess:
    """A server of `kind` on the podman runtime (the test skips without podman)."""
    if problem := podman_problem():
        pytest.skip(problem)
    return kind(data, "--runtime", "podman").start()


@pytest.fixture
def podman_server(tmp_path: Path):
    server = started_on_podman(tmp_path / "server-data")
    yield server
    server.stop()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A script, its sibling module, and a wheel folder the job installs from (no network)."""
    folder = tmp_path / "project"
    write(folder / "train.py", DEMO)
    write(folder / "helper.py", "VALUE = 'sibling-42'\n")
    (folder / "wheels").mkdir()
    build_wheel(folder / "wheels", "hfuv-demo-a", "1.0.0", "VALUE = 'a-1.0.0'\n")
    return folder


WHEELS = ["-v", "./wheels:/wheels", "-e", "UV_FIND_LINKS=/wheels", "-e", "UV_NO_INDEX=1"]


def job_id_of(output: str) -> str:
    found = re.search(r"\b([0-9a-f]{24})\b", output)
    assert found, output
    return found.group(1)


def test_hf_jobs_uv_run_ships_the_script_and_its_sibling(
    podman_server: ServerProcess, project: Path, tmp_path: Path
) -> None:
    image = uv_image()
    done = hf(podman_server, tmp_path / "hf", "jobs", "uv", "run", "--image", image, "--with",
              "hfuv-demo-a", *WHEELS, "train.py", "helper.py", cwd=project)  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The client ships helper.py (an argument that is a file) beside the script, in /data.
    assert "helper: sibling-42 demo: a-1.0.0 args: ['/data/helper.py']" in done.stdout
    assert f"saved in this bucket: {podman_server.url}/buckets/me/jobs-artifacts" in done.stdout
    job = hf_api(podman_server).inspect_job(job_id=job_id_of(done.stdout), namespace="me")
    assert job.status.stage == "COMPLETED"
    assert [v.type for v in job.volumes or []] == ["bucket", "bucket"]


def test_run_uv_job_with_a_local_path(
    podman_server: ServerProcess, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    api = hf_api(podman_server)
    script = write(project / "solo.py", "# /// script\n# requires-python = '>=3.10'\n# ///\n"
                   "import sys\nprint('solo', sys.argv[1:])\n")  # fmt: skip
    job = api.run_uv_job(str(script), script_args=["--n", "3"], image=uv_image(), namespace="me")
    lines = list(api.fetch_job_logs(job_id=job.id, namespace="me", follow=True))
    assert "solo ['--n', '3']" in lines
    assert api.inspect_job(job_id=job.id, namespace="me").status.stage == "COMPLETED"
    # Another namespace's bucket is not mountable, even by its name.
    from huggingface_hub import Volume
    from huggingface_hub.errors import HfHubHTTPError

    hf_api(podman_server, "other").create_bucket("other/private-data")
    with pytest.raises(HfHubHTTPError, match="no bucket other/private-data that this token can"):
        api.run_job(
            image=busybox_image(),
            command=["ls", "/x"],
            namespace="me",
            volumes=[Volume(type="bucket", source="other/private-data", mount_path="/x")],
        )


def test_hf_jobs_run_mounts_a_local_folder(podman_server: ServerProcess, tmp_path: Path) -> None:
    inputs = tmp_path / "work" / "inputs"
    write(inputs / "data.csv", "a,b\n1,2\n")
    write(inputs / "sub" / "more.txt", "more\n")
    done = hf(podman_server, tmp_path / "hf", "jobs", "run", "-v", "./inputs:/inputs",
              busybox_image(), "ls", "-R", "/inputs", cwd=tmp_path / "work")  # fmt: skip
    assert done.returncode == 0, done.stderr
    listed = done.stdout.split()
    assert "data.csv" in listed and "more.txt" in listed and "sub" in listed


def test_scheduled_uv_run_runs_when_triggered(
    podman_server: ServerProcess, project: Path, tmp_path: Path
) -> None:
    home = tmp_path / "hf"
    created = hf(podman_server, home, "jobs", "scheduled", "uv", "run", "@hourly", "--image",
                 uv_image(), "--with", "hfuv-demo-a", *WHEELS, "train.py", "helper.py",
                 cwd=project)  # fmt: skip
    assert created.returncode == 0, created.stderr
    api = hf_api(podman_server)
    [scheduled] = api.list_scheduled_jobs(namespace="me")
    triggered = hf(podman_server, home, "jobs", "scheduled", "trigger", f"me/{scheduled.id}")
    assert triggered.returncode == 0, triggered.stderr
    job_id = job_id_of(triggered.stdout)
    lines = list(api.fetch_job_logs(job_id=job_id, namespace="me", follow=True))
    assert "helper: sibling-42 demo: a-1.0.0 args: ['/data/helper.py']" in lines
    assert api.inspect_job(job_id=job_id, namespace="me").status.stage == "COMPLETED"


WRITER = """\
import hashlib, os, sys
data = hashlib.shake_256(b"job output").digest(400_000)
os.makedirs("/out/run1", exist_ok=True)
open("/out/run1/weights.bin", "wb").write(data)
open("/out/run1/log.txt", "w").write("done\\n")
os.remove("/out/old.txt")
print("sha256", hashlib.sha256(data).hexdigest(), "saw", open("/out/keep.txt").read().strip())
"""


def test_what_a_job_writes_to_its_bucket_is_downloaded_back(
    podman_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    api = hf_api(podman_server)
    api.create_bucket("me/results", private=True)
    api.batch_bucket_files("me/results", add=[(b"kept\n", "keep.txt"), (b"old\n", "old.txt")])
    done = hf(podman_server, tmp_path / "hf", "jobs", "run", "-v", "hf://buckets/me/results:/out",
              uv_image(), "python3", "-c", WRITER)  # fmt: skip
    assert done.returncode == 0, done.stderr
    expected = hashlib.shake_256(b"job output").digest(400_000)
    assert f"sha256 {hashlib.sha256(expected).hexdigest()} saw kept" in done.stdout
    paths = {f.path for f in api.list_bucket_tree("me/results", recursive=True)}
    assert paths == {"keep.txt", "run1", "run1/weights.bin", "run1/log.txt"}  # old.txt deleted
    out = tmp_path / "downloaded"
    api.download_bucket_files("me/results", [("run1/weights.bin", str(out / "w.bin")),
                                             ("run1/log.txt", str(out / "log.txt"))])  # fmt: skip
    assert (out / "w.bin").read_bytes() == expected
    assert (out / "log.txt").read_text() == "done\n"
    # A read-only mount is not written back (and cannot be written).
    ro = hf(podman_server, tmp_path / "hf", "jobs", "run", "-v",
            "hf://buckets/me/results:/out:ro", busybox_image(), "sh", "-c",
            "cat /out/keep.txt; echo x > /out/new.txt")  # fmt: skip
    assert "kept" in ro.stdout and ro.returncode != 0
    assert "new.txt" not in {f.path for f in api.list_bucket_tree("me/results", recursive=True)}


# hfuv itself: a job's bucket outputs, read back with `hfuv outputs`

OUTPUT_WRITER = """\
# /// script
# requires-python = ">=3.10"
# dependencies = []
# ///
import pathlib

run = pathlib.Path("/out/run1")
run.mkdir(parents=True, exist_ok=True)
(run / "weights.bin").write_bytes(bytes(range(256)) * 4000)
(run / "log.txt").write_text("done\\n")
print("wrote", sorted(p.name for p in run.iterdir()))
"""


def test_hfuv_outputs_downloads_what_the_job_wrote_to_its_bucket(
    podman_server: ServerProcess, tmp_path: Path
) -> None:
    from tests.conftest import hfuv

    hf_api(podman_server).create_bucket("me/results", private=True)
    script = write(tmp_path / "writer.py", OUTPUT_WRITER)
    env = podman_server.env()
    ran = hfuv("run", str(script), "--image", uv_image(), "--python", "3.13",
               "-v", "hf://buckets/me/results/jobs:/out", env=env)  # fmt: skip
    assert ran.code == 0, ran.stderr
    assert "wrote ['log.txt', 'weights.bin']" in ran.stdout
    job_id = job_id_of(ran.stderr)
    got = tmp_path / "got"
    result = hfuv("outputs", job_id, str(got), env=env)
    assert result.code == 0, result.stderr
    weights, log = got / "out" / "run1" / "weights.bin", got / "out" / "run1" / "log.txt"
    assert sorted(result.stdout.splitlines()) == sorted([str(log), str(weights)])
    assert weights.read_bytes() == bytes(range(256)) * 4000 and log.read_text() == "done\n"
    assert result.stderr.endswith("2 written, 0 already here\n")

    again = hfuv("outputs", job_id, str(got), env=env)
    assert (again.code, again.stdout) == (0, "")
    assert again.stderr.endswith("0 written, 2 already here\n")

    log.write_text("my notes\n")  # a file of mine is never replaced unless I ask
    kept = hfuv("outputs", job_id, str(got), env=env)
    assert kept.code == 1 and log.read_text() == "my notes\n"
    assert kept.stderr.strip() == (
        f"error: {log} exists and differs from me/results/jobs/run1/log.txt (hint: pass "
        "--overwrite to replace it, or download into another folder)"
    )
    assert not [p for p in log.parent.iterdir() if p.name.startswith(".hfuv-")]
    replaced = hfuv("outputs", job_id, str(got), "--overwrite", env=env)
    assert replaced.code == 0 and replaced.stdout == f"{log}\n" and log.read_text() == "done\n"

    plain = hfuv("run", str(script), "--image", uv_image(), "--python", "3.13", "--detach",
                 env=env)  # fmt: skip
    refused = hfuv("outputs", plain.stdout.strip(), str(tmp_path / "none"), env=env)
    assert refused.code == 1
    assert "has no bucket it could write to (its volumes: none)" in refused.stderr
    other = hfuv("outputs", job_id, env={**env, "HF_TOKEN": ServerProcess.TOKENS["other"]})
    assert other.code == 1 and not (Path.cwd() / job_id).exists()
