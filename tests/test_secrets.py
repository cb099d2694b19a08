"""Secret values never show: not in stdout, stderr, dry runs, JSON, inspect, errors, tracebacks or
HFUV_DEBUG output. Every output below is scanned for canary values."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import EXAMPLES, Result, ServerProcess, hfuv, needs_python, write
from tests.helpers import FakeHost, Reply

pytestmark = needs_python("3.12")

SECRET = "canary-Zq81-not-hex"
FILE_SECRET = "canary-from-a-file-77"
TOKEN = "hf_canaryTokenValue123"


def scan(results: list[Result]) -> None:
    for result in results:
        for canary in (SECRET, FILE_SECRET, TOKEN):
            assert canary not in result.stdout, (canary, result.stdout[:2000])
            assert canary not in result.stderr, (canary, result.stderr[:2000])


def test_no_output_shows_a_secret(tmp_path: Path) -> None:
    secrets_file = write(tmp_path / "s.env", f"FROM_FILE={FILE_SECRET}\n")
    script = write(tmp_path / "uses.py", "import os\nprint(len(os.environ['MY_SECRET']))\n")
    base = ["-s", f"MY_SECRET={SECRET}", "--secrets-file", str(secrets_file), "-s", "HF_TOKEN"]
    env = {"HF_TOKEN": TOKEN}
    debug = {**env, "HFUV_DEBUG": "1"}
    outputs = [
        hfuv("run", str(script), "--dry-run", *base, env=env),
        hfuv("run", str(script), "--dry-run", "--json", *base, env=env),
        hfuv("check", str(script), *base, env=env),
        hfuv("check", "--json", str(script), *base, env=env),
        hfuv("run", str(script), "--local", *base, env=env),
        hfuv("run", str(script), "--dry-run", "--flavor", "nope", *base, env=debug),
        hfuv("run", str(script), "--dry-run", "--file", "missing.txt", *base, env=debug),
        hfuv("run", str(script), "--dry-run", "--timeout", "never", *base, env=debug),
        hfuv("run", str(script), *base, env={**debug, "HF_ENDPOINT": "http://127.0.0.1:9"}),
        hfuv("ps", "--token", TOKEN, env={"HF_ENDPOINT": "http://127.0.0.1:9", "HFUV_DEBUG": "1"}),
        hfuv("exec", "python:3.12", "--dry-run", *base, "--", "env", env=env),
        hfuv(
            "schedule",
            "create",
            "@daily",
            str(script),
            *base,
            env={**debug, "HF_ENDPOINT": "http://127.0.0.1:9"},
        ),
    ]
    assert outputs[4].code == 0 and outputs[4].stdout.strip() == str(len(SECRET))
    assert "Traceback" in outputs[5].stderr, "debug output is on, and still clean"
    scan(outputs)


def test_server_round_trip_shows_no_secret(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "uses.py", "import os\nprint(len(os.environ['MY_SECRET']))\n")
    env = {**server.env(), "MY_SECRET": SECRET}
    run = hfuv("run", str(script), "-s", "MY_SECRET", env=env)
    assert run.code == 0 and run.stdout.strip() == str(len(SECRET))
    job_id = hfuv("ps", "-a", "--json", env=env).json()[0]["id"]
    outputs = [
        run,
        hfuv("ps", "-a", "--json", env=env),
        hfuv("ps", "-a", env=env),
        hfuv("inspect", job_id, "--json", env=env),
        hfuv("inspect", job_id, env=env),
        hfuv("logs", job_id, env=env),
        hfuv("run", str(script), "-s", "MY_SECRET", "--detach", env={**env, "HFUV_DEBUG": "1"}),
    ]
    scan(outputs)
    server.stop()
    assert server.process is not None and server.process.stdout and server.process.stderr
    scan([Result(0, server.process.stdout.read(), server.process.stderr.read())])


def test_hf_token_goes_only_to_the_jobs_endpoint(tmp_path: Path) -> None:
    jobs = FakeHost()
    other = FakeHost()
    jobs.routes["/api/whoami-v2"] = Reply.json({"name": "me"})
    jobs.routes["POST /api/jobs/me"] = Reply.json({"id": "0" * 24})
    other.routes["/remote.py"] = Reply.text("print('remote')\n")
    try:
        result = hfuv("run", f"{other.url}/remote.py", "--detach", "-s", "HF_TOKEN",
                      env={"HF_ENDPOINT": jobs.url, "HF_TOKEN": TOKEN})  # fmt: skip
        assert result.code == 0, result.stderr
    finally:
        jobs.close()
        other.close()
    assert all(TOKEN not in str(r.headers) for r in other.requests)
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in jobs.requests)
    scan([result])


def test_hf_token_as_plain_env_is_warned_about(tmp_path: Path) -> None:
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "-e", "HF_TOKEN",
                  env={"HF_TOKEN": TOKEN})  # fmt: skip
    assert "HF_TOKEN is passed with -e" in result.stderr and "use -s HF_TOKEN" in result.stderr
    assert '"HF_TOKEN": "***"' in result.stdout
    scan([result])
