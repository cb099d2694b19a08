"""JobsClient: typed errors with remedies, token lookup, whoami caching, exit codes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hfuv.client import (
    AmbiguousError,
    AuthError,
    ConflictError,
    JobNotFoundError,
    JobsApiError,
    JobsClient,
    exit_code_of,
    split_job_ref,
)
from hfuv.errors import UsageError
from tests.conftest import free_port, hfuv, write
from tests.helpers import FakeHost, Reply


def client_answering(status: int, headers: dict[str, str] | None = None) -> JobsClient:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": "nope"}, headers=headers or {})

    return JobsClient(endpoint="http://jobs.test", token="t", environ={},
                      transport=httpx.MockTransport(handler))  # fmt: skip


@pytest.mark.parametrize(
    ("status", "error", "words"),
    [
        (401, AuthError, "hf auth login"),
        (403, AuthError, "--namespace"),
        (404, JobNotFoundError, "check the job id"),
        (409, ConflictError, "conflict: nope"),
    ],
)
def test_http_errors_are_typed_with_remedies(status: int, error: type, words: str) -> None:
    client = client_answering(status)
    with pytest.raises(error) as info:
        client.get_job("me", "abc")
    assert words in str(info.value)
    assert info.value.status == status


@pytest.mark.parametrize("status", [429, 500, 503])
def test_retryable_answers_are_retried_then_given_up(
    status: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HFUV_RETRY_MAX_SECONDS", "3")
    calls, said = [], []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return httpx.Response(status, json={"error": "busy"}, headers={"retry-after": "0.1"})

    client = JobsClient(endpoint="http://jobs.test", token="t", environ={},
                        transport=httpx.MockTransport(handler), on_retry=said.append)  # fmt: skip
    with pytest.raises(JobsApiError, match="gave up after 6 tries") as info:
        client.get_job("me", "abc")
    assert "check HF_ENDPOINT" in str(info.value)
    assert calls == ["GET"] * 6
    assert (
        said[0] == f"http://jobs.test answered {status} to GET /api/jobs/me/abc; "
        "retrying in 0.1s (1/5)"
    )
    if status >= 500:
        calls.clear()
        with pytest.raises(AmbiguousError):
            client._request("POST", "/api/jobs/me", json={})
        assert calls == ["POST"], "a POST that may have taken effect is not blindly repeated"


def test_retry_after_is_honoured_and_success_ends_the_wait() -> None:
    answers = iter(
        [
            httpx.Response(503, headers={"retry-after": "0.2"}),
            httpx.Response(200, json={"id": "x", "status": {"stage": "RUNNING"}}),
        ]
    )
    client = JobsClient(endpoint="http://jobs.test", token="t", environ={}, on_retry=print,
                        transport=httpx.MockTransport(lambda request: next(answers)))  # fmt: skip
    started = time.monotonic()
    assert client.get_job("me", "x")["id"] == "x"
    assert 0.2 <= time.monotonic() - started < 2


def test_unreachable_endpoint() -> None:
    client = JobsClient(endpoint=f"http://127.0.0.1:{free_port()}", token="t", environ={})
    with pytest.raises(Exception, match="cannot reach"):
        client.get_job("me", "abc")


def test_token_order(tmp_path: Path) -> None:
    write(tmp_path / "hf" / "token", "from-file\n")
    env = {"HF_HOME": str(tmp_path / "hf")}
    assert JobsClient(environ=env).token == "from-file"
    assert JobsClient(environ={**env, "HF_TOKEN": "from-env"}).token == "from-env"
    assert JobsClient(token="explicit", environ={**env, "HF_TOKEN": "from-env"}).token == (
        "explicit"
    )
    write(tmp_path / "elsewhere", "from-path\n")
    assert JobsClient(environ={"HF_TOKEN_PATH": str(tmp_path / "elsewhere")}).token == "from-path"
    assert JobsClient(environ={}).endpoint == "https://huggingface.co"


def test_job_references() -> None:
    assert split_job_ref("org/abc", None) == ("org", "abc")
    assert split_job_ref("abc", "org") == ("org", "abc")
    with pytest.raises(UsageError):
        split_job_ref("org/abc", "other")


def test_exit_codes() -> None:
    assert exit_code_of({"status": {"stage": "COMPLETED"}}) == 0
    assert exit_code_of({"status": {"stage": "ERROR", "exitCode": 3}}) == 3
    assert exit_code_of({"status": {"stage": "ERROR", "message": "Job timeout"}}) == 124
    assert exit_code_of({"status": {"stage": "ERROR", "message": "exit code: 3"}}) == 1
    assert exit_code_of({"status": {"stage": "CANCELED"}}) == 130


def test_whoami_is_asked_once_per_token() -> None:
    host = FakeHost()
    host.routes["/api/whoami-v2"] = Reply.json({"name": "alice"})
    host.routes["/api/jobs/alice"] = Reply.json([])
    env = {"HF_ENDPOINT": host.url, "HF_TOKEN": "tok-a"}
    try:
        assert hfuv("ps", env=env).code == 0
        assert hfuv("ps", "-a", env=env).code == 0
        assert hfuv("ps", "--namespace", "team", env=env).code == 1  # 404 on the fake
    finally:
        host.close()
    paths = [r.path.split("?")[0] for r in host.requests]
    assert paths.count("/api/whoami-v2") == 1
    assert "/api/jobs/team" in paths


def test_server_makes_and_keeps_a_token(tmp_path: Path) -> None:
    port = free_port()
    command = [sys.executable, "-m", "hfuv", "server", "--port", str(port),
               "--data-dir", str(tmp_path / "data")]  # fmt: skip
    lines = []
    for _ in range(2):
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        lines.append(line)
        token = line.rpartition("HF_TOKEN=")[2]
        deadline = time.monotonic() + 20
        while True:
            result = hfuv("ps", env={"HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": token})
            if result.code == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        process.terminate()
        process.wait(timeout=20)
        assert result.code == 0, result.stderr
    assert lines[0] == lines[1]
    assert lines[0].startswith(f"HF_ENDPOINT=http://127.0.0.1:{port} HF_TOKEN=hfuv_")
