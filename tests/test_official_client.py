"""Compatibility with the official client: huggingface_hub's HfApi and `hf jobs`, pointed at
`hfuv server`, work unchanged; and hfuv sends the requests the official client sends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, hfuv
from tests.helpers import FakeHost, Reply

huggingface_hub = pytest.importorskip("huggingface_hub")
HF = str(Path(sys.executable).parent / "hf")
COUNT = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"


def hf(server: ServerProcess, *args: str, user: str = "me") -> subprocess.CompletedProcess:
    env = {**os.environ, **server.env(user), "HF_HUB_DISABLE_UPDATE_CHECK": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_COLOR": "1"}  # fmt: skip
    return subprocess.run([HF, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def api(server: ServerProcess):
    from huggingface_hub import HfApi

    return HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])


def test_hfapi_job_methods(server: ServerProcess, api) -> None:
    job = api.run_job(image="python:3.12", command=["python3", "-c", COUNT], namespace="me")
    assert len(job.id) == 24 and job.status.stage in ("SCHEDULING", "RUNNING")
    assert job.owner.name == "me"
    followed = list(api.fetch_job_logs(job_id=job.id, namespace="me", follow=True))
    assert followed == ["line 0", "line 1", "line 2"]
    info = api.inspect_job(job_id=job.id, namespace="me")
    assert info.status.stage == "COMPLETED"
    assert info.docker_image == "python:3.12"
    assert info.durations is not None and info.durations.total_secs >= 0
    assert list(api.fetch_job_logs(job_id=job.id, namespace="me")) == followed
    assert [j.id for j in api.list_jobs(namespace="me")] == [job.id]
    assert [j.id for j in api.list_jobs(namespace="me", status="RUNNING")] == []

    sleeper = api.run_job(image="python:3.12", command=["sleep", "60"], namespace="me",
                          labels={"team": "ml"})  # fmt: skip
    assert [j.id for j in api.list_jobs(namespace="me", labels={"team": "ml"})] == [sleeper.id]
    api.cancel_job(job_id=sleeper.id, namespace="me")
    deadline = time.monotonic() + 10
    while api.inspect_job(job_id=sleeper.id, namespace="me").status.stage != "CANCELED":
        assert time.monotonic() < deadline
        time.sleep(0.1)

    hardware = api.list_jobs_hardware()
    a10g = next(h for h in hardware if h.name == "a10g-small")
    assert a10g.accelerator is not None and a10g.accelerator.model == "A10G"
    assert a10g.unit_label == "minute" and a10g.unit_cost_usd == pytest.approx(1 / 60, rel=1e-3)


def test_hfapi_sees_hfuv_jobs(server: ServerProcess, api) -> None:
    from tests.conftest import EXAMPLES

    job_id = hfuv("run", str(EXAMPLES / "show_args.py"), "--detach", "--", "official",
                  env=server.env()).stdout.strip()  # fmt: skip
    lines = list(api.fetch_job_logs(job_id=job_id, namespace="me", follow=True))
    assert "arg: official" in lines
    info = api.inspect_job(job_id=job_id, namespace="me")
    assert info.status.stage == "COMPLETED"
    assert info.labels["name"].startswith("show_args-")


def test_hf_jobs_cli(server: ServerProcess, api) -> None:
    job = api.run_job(image="python:3.12", command=["python3", "-c", COUNT], namespace="me")
    logs = hf(server, "jobs", "logs", "-f", f"me/{job.id}")
    assert logs.returncode == 0, logs.stderr
    assert "line 0\nline 1\nline 2\n" in logs.stdout
    listed = hf(server, "jobs", "ps", "-a", "--format", "json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [job.id]
    inspected = hf(server, "jobs", "inspect", f"me/{job.id}", "--format", "json")
    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)[0]["status"]["stage"] == "COMPLETED"
    sleeper = api.run_job(image="python:3.12", command=["sleep", "60"], namespace="me")
    cancel = hf(server, "jobs", "cancel", f"me/{sleeper.id}")
    assert cancel.returncode == 0, cancel.stderr
    time.sleep(1)
    assert api.inspect_job(job_id=sleeper.id, namespace="me").status.stage == "CANCELED"
    denied = hf(server, "jobs", "inspect", f"me/{job.id}", user="other")
    assert denied.returncode == 1


def test_hfuv_sends_what_the_official_client_sends() -> None:
    """The same job through `hf jobs run` and `hfuv exec`, recorded by one fake Hub."""
    host = FakeHost()
    job = {"id": "0" * 24, "status": {"stage": "SCHEDULING"},
           "owner": {"id": "1" * 24, "name": "me", "type": "user"}}  # fmt: skip
    host.routes["/api/whoami-v2"] = Reply.json({"name": "me", "type": "user"})
    host.routes["POST /api/jobs/me"] = Reply.json(job)
    env = {**os.environ, "HF_ENDPOINT": host.url, "HF_TOKEN": "t0ken",
           "HF_HUB_DISABLE_UPDATE_CHECK": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}  # fmt: skip
    args = ["--detach", "--flavor", "a10g-small", "--timeout", "2h", "-e", "MODE=x",
            "-l", "team=ml", "--name", "same"]  # fmt: skip
    try:
        official = subprocess.run([HF, "jobs", "run", *args, "python:3.12", "echo", "hi"],
                                  env=env, capture_output=True, text=True)  # fmt: skip
        assert official.returncode == 0, official.stderr
        ours = hfuv("exec", *args, "python:3.12", "--", "echo", "hi", env=env)
        assert ours.code == 0, ours.stderr
        assert ours.stdout.strip() == "0" * 24
    finally:
        host.close()
    posts = [r for r in host.requests if r.method == "POST"]
    assert [r.path for r in posts] == ["/api/jobs/me", "/api/jobs/me"]
    official_body, our_body = (json.loads(r.body) for r in posts)
    assert list(our_body) == list(official_body)
    # hfuv adds its submission key (duplicate-safe retries) as labels; the rest is identical.
    key = our_body["labels"].pop("hfuv-submission")
    assert our_body["labels"].pop("hfuv-submission-group") == key
    assert our_body == official_body
    for request in posts:
        headers = {key.lower(): value for key, value in request.headers.items()}
        assert headers["authorization"] == "Bearer t0ken"
        assert headers["content-type"] == "application/json"
