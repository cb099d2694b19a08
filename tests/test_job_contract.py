"""The rest of the job contract on `hfuv server`: `attempts`, `expose`, `hf://` volumes, and a
400 naming every spec field the server cannot honour."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread

import httpx
import pytest

from tests.conftest import ServerProcess, free_port, hfuv
from tests.images import BUSYBOX_IMAGE, busybox_image, needs_podman

TOKEN = ServerProcess.TOKENS["me"]
GOOD = {"command": ["true"], "dockerImage": "python:3.12"}
SHOUT_AND_FAIL = "print('attempting', flush=True); raise SystemExit(3)"


def post_job(server: ServerProcess, body: dict, path: str = "/api/jobs/me") -> httpx.Response:
    return httpx.post(server.url + path, json=body, headers={"authorization": f"Bearer {TOKEN}"})


def job_count(server: ServerProcess) -> int:
    listed = httpx.get(f"{server.url}/api/jobs/me", headers={"authorization": f"Bearer {TOKEN}"})
    return len(listed.json())


def wait_for(what, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = what()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


# --- attempts -------------------------------------------------------------------------------


def test_a_failed_job_runs_attempts_times_and_reports_retry(server: ServerProcess) -> None:
    from huggingface_hub import HfApi

    dry = hfuv("exec", "python:3.12", "--attempts", "3", "--dry-run", "--",
               "python3", "-c", SHOUT_AND_FAIL)  # fmt: skip
    assert dry.code == 0 and dry.json()["body"]["attempts"] == 3

    done = hfuv("exec", "python:3.12", "--attempts", "3", "--", "python3", "-c", SHOUT_AND_FAIL,
                env=server.env())  # fmt: skip
    assert done.code == 3, done.output
    lines = done.stdout.splitlines()
    assert lines == [
        "===== Attempt 1 of 3 =====", "attempting",
        "===== Attempt 2 of 3 (attempt 1 failed with exit code: 3) =====", "attempting",
        "===== Attempt 3 of 3 (attempt 2 failed with exit code: 3) =====", "attempting",
    ]  # fmt: skip
    assert "ended ERROR: Job failed with exit code: 3 (attempt 3 of 3)" in done.stderr
    job_id = done.stderr.split("job me/")[1].split()[0]
    shown = hfuv("inspect", "--json", job_id, env=server.env()).json()
    assert shown["retry"] == 2
    assert shown["status"]["stage"] == "ERROR"
    info = HfApi(endpoint=server.url, token=TOKEN).inspect_job(job_id=job_id, namespace="me")
    assert info.retry == 2 and info.status.stage == "ERROR"


def test_a_retry_that_succeeds_ends_the_job_completed(server: ServerProcess) -> None:
    shared = Path(tempfile.mkdtemp(prefix="hfuv-attempts-"))  # outside the job's work dir,
    shared.chmod(0o777)  # which each attempt gets afresh, and writable by any job user
    marker = shared / "failed-once"
    once = f"test -e {marker} || {{ touch {marker}; echo first; exit 1; }}; echo second"
    try:
        done = hfuv("exec", "x", "--attempts", "5", "--", "sh", "-c", once, env=server.env())
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert done.code == 0, done.output
    assert done.stdout.splitlines()[-3:] == [
        "first", "===== Attempt 2 of 5 (attempt 1 failed with exit code: 1) =====", "second"
    ]  # fmt: skip


def test_a_retry_that_cannot_start_ends_the_job_with_why(server: ServerProcess) -> None:
    shared = Path(tempfile.mkdtemp(prefix="hfuv-attempts-"))
    shared.chmod(0o777)
    program = shared / "once.sh"
    program.write_text('#!/bin/sh\nrm -- "$0"\necho gone\nexit 1\n')  # runs once only
    program.chmod(0o777)
    try:
        done = hfuv("exec", "x", "--attempts", "3", "--", str(program), env=server.env())
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert done.code != 0
    assert done.stdout.splitlines()[-3:] == [
        "gone", "===== Attempt 2 of 3 (attempt 1 failed with exit code: 1) =====",
        f"===== Job failed to start: {program}: No such file or directory =====",
    ]  # fmt: skip
    assert f"Job failed to start (attempt 2 of 3): {program}: No such file" in done.stderr


def test_a_timed_out_or_canceled_job_is_not_retried(server: ServerProcess) -> None:
    timed = hfuv("exec", "x", "--attempts", "3", "--timeout", "2", "--", "sleep", "30",
                 env=server.env())  # fmt: skip
    assert timed.code != 0
    assert "Job timeout (attempt 1 of 3)" in timed.stderr
    assert "Attempt 2" not in timed.stdout

    job_id = hfuv("exec", "x", "--attempts", "3", "--detach", "--", "sleep", "30",
                  env=server.env()).stdout.strip()  # fmt: skip
    wait_for(lambda: "RUNNING" in hfuv("inspect", job_id, env=server.env()).stdout)
    assert hfuv("cancel", job_id, env=server.env()).code == 0
    info = wait_for(lambda: (j := hfuv("inspect", "--json", job_id, env=server.env()).json())
                    ["status"]["stage"] == "CANCELED" and j)  # fmt: skip
    assert info["status"]["message"] == "Job canceled"
    assert "Attempt 2" not in hfuv("logs", job_id, env=server.env()).stdout


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--attempts", "0"), "error: invalid attempts 0 (from --attempts)"),
        (("--attempts", "two"), "error: invalid value for '--attempts': 'two' is not a valid"),
        (("--expose", "70000"), "error: invalid port 70000 (from --expose)"),
        (("--expose-public", "0"), "error: invalid port 0 (from --expose-public)"),
    ],
)
def test_bad_attempts_and_ports_are_usage_errors(
    tmp_path: Path, flags: tuple[str, ...], message: str
) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    for args in (("run", str(script), *flags), ("exec", "x", *flags, "--", "true")):
        done = hfuv(*args, "--dry-run")
        assert done.code == 2 and done.stdout == ""
        assert done.stderr.startswith(message) and len(done.stderr.splitlines()) == 1


def test_a_local_run_refuses_attempts_and_expose(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("print('ran')\n")
    retried = hfuv("run", str(script), "--local", "--attempts", "2")
    assert retried.code == 2 and "ran" not in retried.stdout
    assert retried.stderr.startswith("error: a local run is not retried: attempts 2 (from ")
    exposed = hfuv("run", str(script), "--local", "--expose", "8000")
    assert exposed.code == 2 and "ran" not in exposed.stdout
    assert "a local run has no job URL: port 8000 (from --expose)" in exposed.stderr


def test_the_launch_table_gives_attempts_and_ports(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("# /// script\n# [tool.hfuv]\n# attempts = 2\n# expose = [8000]\n"
                      "# expose-public = [9000]\n# ///\nprint('ran')\n")  # fmt: skip
    body = hfuv("run", str(script), "--dry-run", "--json").json()["body"]
    assert body["attempts"] == 2
    assert body["expose"] == {"ports": [8000, 9000], "portsPublic": [9000]}
    flagged = hfuv("run", str(script), "--attempts", "3", "--expose", "7000", "--dry-run", "--json")
    assert flagged.json()["body"]["attempts"] == 3
    assert flagged.json()["body"]["expose"] == {"ports": [7000, 9000], "portsPublic": [9000]}
    checked = hfuv("check", str(script))
    assert "attempts        2  ([tool.hfuv])" in checked.stdout
    local = hfuv("run", str(script), "--local")
    assert local.code == 2 and "attempts 2 (from [tool.hfuv])" in local.stderr

    script.write_text("# /// script\n# [tool.hfuv]\n# attempts = 0\n# ///\n")
    bad = hfuv("run", str(script), "--dry-run")
    assert bad.code != 0 and bad.stdout == ""
    assert "invalid attempts 0 (from s.py: [tool.hfuv] attempts)" in bad.stderr


# --- expose ---------------------------------------------------------------------------------

ECHO_SERVER = """
import http.server, json, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        length = int(self.headers.get("content-length") or 0)
        body = json.dumps({"method": self.command, "path": self.path,
                           "auth": self.headers.get("authorization"),
                           "body": self.rfile.read(length).decode()}).encode()
        self.send_response(201)
        self.send_header("X-Echo", "yes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    do_POST = do_PUT = do_GET
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


@pytest.fixture
def echo_job(server: ServerProcess) -> Iterator[tuple[dict, int, int]]:
    """A job serving an echo on a private port and a public one; (its JobInfo, ports)."""
    private, public = free_port(), free_port()
    both = f'python3 -c "$ECHO" {public} & exec python3 -c "$ECHO" {private}'
    job_id = hfuv("exec", "x", "--detach", "-e", f"ECHO={ECHO_SERVER}", "--expose", str(private),
                  "--expose-public", str(public), "--", "sh", "-c", both,
                  env=server.env()).stdout.strip()  # fmt: skip
    info = hfuv("inspect", "--json", job_id, env=server.env()).json()
    yield info, private, public
    hfuv("cancel", job_id, env=server.env())


def through_proxy(server: ServerProcess, url: str, method: str = "GET", **kwargs) -> httpx.Response:
    """A request to an exposeUrls URL. `*.localhost` names are loopback (RFC 6761; browsers and
    curl know it), but this machine's resolver does not: connect to the server, send the Host."""
    parsed = httpx.URL(url)
    headers = {"host": f"{parsed.host}:{parsed.port}", **kwargs.pop("headers", {})}
    return httpx.request(method, f"{server.url}{kwargs.pop('path', '/')}", headers=headers,
                         **kwargs)  # fmt: skip


def test_exposed_ports_answer_at_their_urls(server: ServerProcess, echo_job) -> None:
    info, private, public = echo_job
    job_id = info["id"]
    urls = info["status"]["exposeUrls"]
    assert urls == [f"http://{job_id}--{private}.localhost:{server.port}",
                    f"http://{job_id}--{public}.localhost:{server.port}"]  # fmt: skip
    assert info["expose"] == {"ports": [private, public], "portsPublic": [public]}
    summary = hfuv("inspect", job_id, env=server.env()).stdout.splitlines()
    assert [line.split()[1] for line in summary if line.startswith("exposed ")] == urls
    wait_for(lambda: through_proxy(server, urls[1]).status_code == 201)

    answer = through_proxy(server, urls[1], "POST", path="/v1/x?q=1", content=b"payload")
    assert answer.status_code == 201 and answer.headers["x-echo"] == "yes"
    assert answer.json() == {"method": "POST", "path": "/v1/x?q=1", "auth": None,
                             "body": "payload"}  # fmt: skip

    assert through_proxy(server, urls[0]).status_code == 401
    other = {"authorization": f"Bearer {ServerProcess.TOKENS['other']}"}
    assert through_proxy(server, urls[0], headers=other).status_code == 403
    mine = through_proxy(server, urls[0], "PUT", path="/p", content=b"x",
                         headers={"authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert mine.status_code == 201
    assert mine.json() == {"method": "PUT", "path": "/p", "auth": None, "body": "x"}, (
        "the token that opened the port is not passed on to the job"
    )
    unexposed = through_proxy(server, f"http://{job_id}--1.localhost:{server.port}")
    assert unexposed.status_code == 404


def test_put_expose_replaces_the_ports(server: ServerProcess, echo_job) -> None:
    from huggingface_hub import HfApi

    info, private, public = echo_job
    public_url = info["status"]["exposeUrls"][1]
    wait_for(lambda: through_proxy(server, public_url).status_code == 201)
    api = HfApi(endpoint=server.url, token=TOKEN)
    updated = api.update_job_expose(job_id=info["id"], namespace="me", expose=[public])
    assert updated.expose == [public] and updated.expose_public == []
    assert updated.status.expose_urls == [public_url]
    assert through_proxy(server, public_url).status_code == 401, "no longer public"
    old_private = f"http://{info['id']}--{private}.localhost:{server.port}"
    assert (
        through_proxy(server, old_private, headers={"authorization": f"Bearer {TOKEN}"}).status_code
        == 404
    )
    cleared = api.update_job_expose(job_id=info["id"], namespace="me")
    assert cleared.status.expose_urls is None and cleared.expose is None


def test_an_ended_job_serves_nothing(server: ServerProcess) -> None:
    port = free_port()
    done = hfuv("exec", "x", "--expose-public", str(port), "--", "true", env=server.env())
    assert done.code == 0, done.output
    job_id = done.stderr.split("job me/")[1].split()[0]
    url = hfuv("inspect", "--json", job_id, env=server.env()).json()["status"]["exposeUrls"][0]
    gone = through_proxy(server, url)
    assert gone.status_code == 503 and "not running (COMPLETED)" in gone.json()["error"]
    late = httpx.put(f"{server.url}/api/jobs/me/{job_id}/expose", json={"ports": [port]},
                     headers={"authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert late.status_code == 400 and "has ended" in late.json()["error"]


# --- refused fields ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "named"),
    [
        ({"ssh": {"enabled": True}}, "`ssh`"),
        ({"network": {"group": "g"}}, "`network`"),
        ({"resourceGroupId": "rg"}, "`resourceGroupId`"),
        ({"future": 1}, "unknown field `future`"),
        ({"arch": "s390x"}, "`arch`"),
        ({"attempts": 0}, "`attempts`"),
        ({"attempts": True}, "`attempts`"),
        ({"attempts": 11}, "`attempts` must be an integer from 1 to 10"),
        ({"expose": {"ports": [8000], "portsPublic": [9000]}}, "`expose.portsPublic`"),
        ({"expose": {"ports": [0]}}, "`expose.ports`"),
        ({"expose": {"ports": [8000], "open": True}}, "`expose.open`"),
        (
            {"volumes": [{"type": "bucket", "source": "me/b", "mountPath": "/b"}]},
            "`volumes[0]` (bucket me/b at /b): the host runtime cannot mount",
        ),
        (
            {
                "volumes": [
                    {"type": "dataset", "source": "org/ds", "mountPath": "/d", "readOnly": False}
                ]
            },
            "`volumes[0]`",
        ),
        ({"volumes": [{"type": "model", "source": "m", "mountPath": "/m"}]}, "`volumes[0].source`"),
        (
            {"volumes": [{"type": "dataset", "source": "org/ds", "mountPath": "/d"}]},
            "`volumes[0]` (dataset org/ds at /d): the host runtime cannot mount",
        ),
    ],
)
def test_a_field_the_server_cannot_honour_is_a_400_naming_it(
    server: ServerProcess, extra: dict, named: str
) -> None:
    answer = post_job(server, {**GOOD, **extra})
    assert answer.status_code == 400
    assert named in answer.json()["error"], answer.json()
    scheduled = post_job(server, {"schedule": "@daily", "jobSpec": {**GOOD, **extra}},
                         path="/api/scheduled-jobs/me")  # fmt: skip
    assert scheduled.status_code == 400 and named in scheduled.json()["error"]
    assert job_count(server) == 0


def test_what_the_official_client_sends_is_accepted(server: ServerProcess) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url, token=TOKEN)
    job = api.run_job(image="python:3.12", command=["true"], env={"A": "1"}, secrets={"S": "x"},
                      flavor="cpu-basic", timeout="5m", labels={"k": "v"}, attempts=2,
                      expose=[free_port()], namespace="me")  # fmt: skip
    assert job.retry == 1 and job.status.expose_urls
    off = post_job(server, {**GOOD, "ssh": {"enabled": False}, "arch": "amd64"})
    assert off.status_code == 200, off.json()


def test_the_server_port_itself_cannot_be_exposed_on_the_host_runtime(
    server: ServerProcess,
) -> None:
    answer = post_job(server, {**GOOD, "expose": {"ports": [server.port]}})
    assert answer.status_code == 400 and "the port of hfuv server itself" in answer.json()["error"]


def test_hfuv_names_the_refused_field(server: ServerProcess) -> None:
    done = hfuv("exec", "x", "--network-group", "g", "--", "true", env=server.env())
    assert done.code == 1
    assert "`network` is not supported" in done.stderr and "Traceback" not in done.stderr
    mounted = hfuv("exec", "x", "-v", "hf://datasets/org/ds:/data", "--", "true", env=server.env())
    assert mounted.code == 1
    assert "the host runtime cannot mount" in mounted.stderr
    assert "--runtime podman" in mounted.stderr
    assert job_count(server) == 0


# --- hf:// volumes --------------------------------------------------------------------------

COMMIT = "c0ffee" + "0" * 34
REPO_FILES = {"train.csv": b"a,b\n1,2\n", "sub/notes.txt": b"hello from the hub\n"}


class FakeHub:
    """The endpoints `snapshot_download` calls, for one dataset `org/ds`, on 127.0.0.1."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                hub.seen.append((self.command, path, self.headers.get("authorization")))
                if path == "/api/datasets/org/ds/revision/main":
                    self.reply(
                        {
                            "id": "org/ds",
                            "sha": COMMIT,
                            "siblings": [{"rfilename": name} for name in REPO_FILES],
                        }
                    )
                elif path == f"/api/datasets/org/ds/tree/{COMMIT}":
                    self.reply([{"type": "file", "path": name, "size": len(data),
                                 "oid": hashlib.sha1(data).hexdigest()}
                                for name, data in REPO_FILES.items()])  # fmt: skip
                elif path.startswith(f"/datasets/org/ds/resolve/{COMMIT}/"):
                    data = REPO_FILES[path.split(f"{COMMIT}/", 1)[1]]
                    self.reply(
                        data,
                        {"X-Repo-Commit": COMMIT, "ETag": f'"{hashlib.sha1(data).hexdigest()}"'},
                    )
                else:
                    self.reply({"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"},
                               status=404)  # fmt: skip

            do_HEAD = do_GET

            def reply(self, data, headers=None, status: int = 200) -> None:
                body = data if isinstance(data, bytes) else json.dumps(data).encode()
                self.send_response(status)
                for key, value in (headers or {"Content-Type": "application/json"}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    fake = FakeHub()
    yield fake
    fake.close()


def test_a_volume_is_fetched_once_as_real_read_only_files(hub: FakeHub, tmp_path: Path) -> None:
    from hfuv.runtime import RuntimeFailure
    from hfuv.server.volumes import mounts_for

    spec = {"volumes": [{"type": "dataset", "source": "org/ds", "mountPath": "/data"},
                        {"type": "dataset", "source": "org/ds", "mountPath": "/notes",
                         "path": "sub"}],
            "secrets": {"HF_TOKEN": "job-token"}}  # fmt: skip
    data, notes = mounts_for(spec, tmp_path / "cache", {"HF_ENDPOINT": hub.url})
    assert (data.target, data.read_only, notes.target) == ("/data", True, "/notes")
    assert (data.source / "train.csv").read_bytes() == REPO_FILES["train.csv"]
    assert not (data.source / "train.csv").is_symlink(), "a bind mount would not follow it"
    assert sorted(p.name for p in notes.source.iterdir()) == ["notes.txt"]
    assert {auth for _, _, auth in hub.seen} == {"Bearer job-token"}, "the job's token only"

    hub.seen.clear()
    again = mounts_for(
        {"volumes": spec["volumes"][:1]}, tmp_path / "cache", {"HF_ENDPOINT": hub.url}
    )
    assert again[0].source == data.source
    assert {auth for _, _, auth in hub.seen} == {None}, "without a token of its own, none"

    missing = {"volumes": [{"type": "model", "source": "org/nope", "mountPath": "/m"}]}
    with pytest.raises(
        RuntimeFailure, match=r"volume model org/nope at /m: not found, or private or gated"
    ):
        mounts_for(missing, tmp_path / "cache", {"HF_ENDPOINT": hub.url})


def _engine_missing() -> str | None:
    try:
        import hfuv.runtime.engine  # noqa: F401
    except ImportError:
        return "hfuv.runtime.engine (the podman/docker runtime) is not in this tree yet"
    return None


@needs_podman()
@pytest.mark.skipif(_engine_missing() is not None, reason=_engine_missing() or "")
def test_a_dataset_volume_is_readable_read_only_in_a_container_job(
    hub: FakeHub, tmp_path: Path
) -> None:
    busybox_image()
    server = ServerProcess(tmp_path / "data", "--runtime", "podman")
    os.environ["HF_ENDPOINT"] = hub.url  # the Hub the server fetches from
    try:
        server.start()
    finally:
        del os.environ["HF_ENDPOINT"]
    try:
        read = hfuv("exec", BUSYBOX_IMAGE, "-v", "hf://datasets/org/ds:/data", "--",
                    "cat", "/data/train.csv", "/data/sub/notes.txt", env=server.env())  # fmt: skip
        assert read.code == 0, read.output
        assert read.stdout == "a,b\n1,2\nhello from the hub\n"
        write = hfuv("exec", BUSYBOX_IMAGE, "-v", "hf://datasets/org/ds:/data", "--",
                     "sh", "-c", "echo x > /data/train.csv", env=server.env())  # fmt: skip
        assert write.code != 0 and "Read-only file system" in write.stdout
    finally:
        server.stop()


def test_volumes_are_fetched_before_the_job_is_queued(hub: FakeHub, tmp_path: Path) -> None:
    """The executor fetches a job's volumes off the dispatch path, then hands the mounts to the
    runtime; here the host runtime, which refuses them (the API refuses such jobs at create)."""
    from hfuv.server.app import build_state
    from hfuv.server.tokens import Identity

    state = build_state(tmp_path / "data", {"t": Identity("me", ())}, max_parallel=1,
                        environ={**os.environ, "HF_ENDPOINT": hub.url})  # fmt: skip
    state.executor.start()
    user = {"type": "user", "id": "me", "name": "me"}
    try:
        good = state.launch("me", user, user, {**GOOD, "volumes": [
            {"type": "dataset", "source": "org/ds", "mountPath": "/data"}]})  # fmt: skip
        bad = state.launch("me", user, user, {**GOOD, "volumes": [
            {"type": "model", "source": "org/nope", "mountPath": "/m"}]})  # fmt: skip
        ended = {r.id: wait_for(lambda r=r: (j := state.store.get(r.id)).terminal and j)
                 for r in (good, bad)}  # fmt: skip
    finally:
        state.executor.stop()
        state.store.close()
    assert ended[good.id].message == "Job failed to start: the host runtime cannot mount /data"
    assert any(path.endswith("/train.csv") for _, path, _ in hub.seen), "fetched first"
    assert ended[bad.id].message.startswith(
        "Job failed to start: volume model org/nope at /m: not found, or private or gated: "
    )
