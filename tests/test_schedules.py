"""Scheduled jobs: cron validation, and the whole lifecycle against `hfuv server`."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from hfuv.errors import ConfigError
from hfuv.schedules import next_runs
from tests.conftest import ServerProcess, hfuv, needs_python, write
from tests.helpers import FakeHost

pytestmark = needs_python("3.12")


def test_next_runs_and_aliases() -> None:
    start = datetime(2026, 1, 1, 10, 30, 15, tzinfo=timezone.utc)
    assert next_runs("* * * * *", start, 2) == [
        datetime(2026, 1, 1, 10, 31, tzinfo=timezone.utc),
        datetime(2026, 1, 1, 10, 32, tzinfo=timezone.utc),
    ]
    assert next_runs("@hourly", start)[0] == datetime(2026, 1, 1, 11, 0, tzinfo=timezone.utc)
    assert next_runs("@daily", start)[0] == datetime(2026, 1, 2, 0, 0, tzinfo=timezone.utc)
    assert next_runs("@weekly", start)[0].weekday() == 6
    for bad in ("* * * *", "61 * * * *", "@sometimes", ""):
        with pytest.raises(ConfigError):
            next_runs(bad, start)


def test_invalid_schedule_is_refused_before_anything_is_sent(tmp_path: Path) -> None:
    host = FakeHost()
    try:
        result = hfuv("schedule", "create", "*/5 * * *", str(write(tmp_path / "s.py", "1\n")),
                      env={"HF_ENDPOINT": host.url, "HF_TOKEN": "t"})  # fmt: skip
    finally:
        host.close()
    assert result.code == 2
    assert "invalid schedule '*/5 * * *'" in result.stderr and "UTC" in result.stderr
    assert host.requests == []


def schedule(server: ServerProcess, script: Path, cron: str = "* * * * *") -> str:
    result = hfuv("schedule", "create", cron, str(script), env=server.env())
    assert result.code == 0, result.stderr
    assert "next runs: " in result.stderr and " UTC" in result.stderr
    return result.stdout.strip()


def inspect(server: ServerProcess, schedule_id: str) -> dict:
    result = hfuv("schedule", "inspect", schedule_id, "--json", env=server.env())
    assert result.code == 0, result.stderr
    return result.json()


def jobs_of(server: ServerProcess, schedule_id: str) -> list[dict]:
    jobs = hfuv("ps", "-a", "--json", env=server.env()).json()
    return [j for j in jobs if (j.get("initiator") or {}).get("id") == schedule_id]


def wait_until(predicate, timeout: float, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_schedule_lifecycle(tmp_path: Path) -> None:
    tick = write(tmp_path / "tick.py", "print('tick')\n")
    sleeper = write(tmp_path / "sleep.py", "import time\nprint('z', flush=True)\ntime.sleep(60)\n")
    server = ServerProcess(tmp_path / "data").start()
    try:
        every_minute = schedule(server, tick)
        info = inspect(server, every_minute)
        assert info["schedule"] == "* * * * *" and info["suspend"] is False
        assert info["status"]["nextJobRunAt"].endswith(":00.000Z")

        # Triggered on a yearly schedule, so no cron tick can replace lastJob meanwhile.
        yearly = schedule(server, tick, "@yearly")
        triggered = hfuv("schedule", "trigger", yearly, env=server.env())
        assert triggered.code == 0, triggered.stderr
        job_id = triggered.stdout.strip()
        assert hfuv("wait", job_id, env=server.env()).code == 0
        assert hfuv("logs", job_id, env=server.env()).stdout == "tick\n"
        assert inspect(server, yearly)["status"]["lastJob"]["id"] == job_id
        assert hfuv("schedule", "delete", yearly, env=server.env()).code == 0

        busy = schedule(server, sleeper, "@daily")
        first = hfuv("schedule", "trigger", busy, env=server.env())
        assert first.code == 0, first.stderr
        second = hfuv("schedule", "trigger", busy, env=server.env())
        assert second.code == 1
        assert "still active" in second.stderr and "concurrency is off" in second.stderr
        hfuv("cancel", first.stdout.strip(), env=server.env())
        assert hfuv("schedule", "delete", busy, env=server.env()).code == 0

        assert hfuv("schedule", "suspend", every_minute, env=server.env()).code == 0
        suspended = inspect(server, every_minute)
        assert suspended["suspend"] is True and "nextJobRunAt" not in suspended["status"]
        assert hfuv("schedule", "ps", env=server.env()).stdout == ""
        assert every_minute in hfuv("schedule", "ps", "-a", env=server.env()).stdout
        assert hfuv("schedule", "resume", every_minute, env=server.env()).code == 0
        assert inspect(server, every_minute)["status"]["nextJobRunAt"] is not None

        server.kill()
        server = ServerProcess(tmp_path / "data")
        server.start()
        listed = hfuv("schedule", "ps", "--json", env=server.env()).json()
        assert [item["id"] for item in listed] == [every_minute]

        # The cron tick itself: a run starts at the next minute boundary (UTC).
        ticked = wait_until(lambda: jobs_of(server, every_minute), timeout=75)
        created = ticked[0]["createdAt"]
        assert int(created[17:19]) <= 3, f"started at {created}, not at the minute boundary"
        assert ticked[0]["initiator"] == {"type": "scheduled-job", "id": every_minute}
        wait_until(lambda: hfuv("wait", ticked[0]["id"], env=server.env()).code == 0, 30)
        last_job = inspect(server, every_minute)["status"]["lastJob"]
        assert last_job["id"] in {j["id"] for j in jobs_of(server, every_minute)}
    finally:
        server.stop()


def test_official_client_schedules(server: ServerProcess) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
    created = api.create_scheduled_job(image="python:3.12", command=["true"],
                                       schedule="@hourly", namespace="me")  # fmt: skip
    assert created.schedule == "@hourly" and created.owner.name == "me"
    listed = api.list_scheduled_jobs(namespace="me")
    assert [s.id for s in listed] == [created.id]
    api.suspend_scheduled_job(scheduled_job_id=created.id, namespace="me")
    assert api.inspect_scheduled_job(scheduled_job_id=created.id, namespace="me").suspend is True
    api.delete_scheduled_job(scheduled_job_id=created.id, namespace="me")
    assert list(api.list_scheduled_jobs(namespace="me")) == []
