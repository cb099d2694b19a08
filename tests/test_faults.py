"""Under injected faults: no duplicate jobs, no lost or repeated log lines, right exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, hfuv, needs_python, write
from tests.faults import FaultProxy

pytestmark = needs_python("3.12")


@pytest.fixture
def proxy(server: ServerProcess):
    faulty = FaultProxy(server.port)
    yield faulty
    faulty.close()


def env_via(proxy: FaultProxy) -> dict[str, str]:
    return {"HF_ENDPOINT": proxy.url, "HF_TOKEN": ServerProcess.TOKENS["me"]}


def server_jobs(server: ServerProcess) -> list[dict]:
    request = urllib.request.Request(f"{server.url}/api/jobs/me?limit=1000",
                                     headers={"authorization": "Bearer token-me"})  # fmt: skip
    with urllib.request.urlopen(request) as response:
        return json.loads(response.read())


def test_submissions_under_faults_create_exactly_one_job_each(
    server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    script = write(tmp_path / "hello.py", "print('hi')\n")
    proxy.plan("POST", "/api/jobs/me", "reset_after", times=2)  # created, answer lost
    proxy.plan("POST", "/api/jobs/me", "503", times=2)
    proxy.plan("POST", "/api/jobs/me", "reset_before", times=1)
    proxy.plan("POST", "/api/jobs/me", "429", times=1)
    proxy.plan("GET", "/api/jobs/me", "503", times=1)  # the lookup itself fails once
    ids = []
    for _ in range(6):
        result = hfuv("run", str(script), "--detach", env=env_via(proxy))
        assert result.code == 0, result.stderr
        ids.append(result.stdout.strip())
    assert all(f.times == 0 for f in proxy.faults), proxy.applied
    assert len(set(ids)) == 6
    assert sorted(job["id"] for job in server_jobs(server)) == sorted(ids)


def test_sweep_rerun_with_the_same_key_does_not_duplicate(
    server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    script = write(tmp_path / "s.py", "import sys\nprint(sys.argv[1])\n")
    args = ["run", str(script), "--detach", "--matrix", "x=1,2,3,4,5", "--submission-key",
            "nightly-7", "--", "{x}"]  # fmt: skip
    proxy.plan("POST", "/api/jobs/me", "reset_after", times=2)
    first = hfuv(*args, env=env_via(proxy))
    assert first.code == 0, first.stderr
    again = hfuv(*args, env=env_via(proxy))
    assert again.code == 0 and "0 jobs submitted" in again.stderr
    assert "5 were already there" in again.stderr
    assert first.stdout == again.stdout, "the same sweep id"
    assert len(server_jobs(server)) == 5


def test_a_long_log_survives_repeated_cuts(
    server: ServerProcess, proxy: FaultProxy, tmp_path: Path
) -> None:
    body = (
        "import sys, time\n"
        "for b in range(10):\n"
        "    lines = [f'line {b * 10000 + i}\\n' for i in range(10000)]\n"
        "    sys.stdout.write(''.join(lines))\n"
        "    sys.stdout.flush()\n"
        "    time.sleep(0.2)\n"
    )
    script = write(tmp_path / "many.py", body)
    job_id = hfuv("run", str(script), "--detach", env=env_via(proxy)).stdout.strip()
    for cut in (200_000, 900_000, 2_500_000, 4_000_000, 6_000_000):
        proxy.plan("GET", f"/api/jobs/me/{job_id}/logs", "cut", value=cut)
    proxy.plan("GET", f"/api/jobs/me/{job_id}/logs", "503")
    proxy.plan("GET", f"/api/jobs/me/{job_id}", "reset_before")
    result = hfuv("logs", "-f", job_id, env=env_via(proxy))
    assert result.code == 0, result.stderr[-2000:]
    lines = result.stdout.splitlines()
    assert len(lines) == 100_000
    assert lines == [f"line {i}" for i in range(100_000)], "every line exactly once, in order"
    cuts = [a for a in proxy.applied if a[2] == "cut"]
    assert len(cuts) == 5


def test_run_outlives_a_server_restart(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    script = write(
        tmp_path / "slow.py",
        "import time\n"
        "for i in range(100):\n    print('step', i, flush=True)\n    time.sleep(0.2)\n",
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "run", str(script)],
        env={**os.environ, **server.env()}, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        seen = [process.stdout.readline(), process.stdout.readline()]
        assert seen == ["step 0\n", "step 1\n"]
        server.kill()
        time.sleep(1.0)
        server = ServerProcess(tmp_path / "data", port=server.port).start()
        out, err = process.communicate(timeout=120)
    finally:
        process.kill()
        server.stop()
    lines = "".join(seen).splitlines() + out.splitlines()
    steps = [int(line.split()[1]) for line in lines]
    assert steps == list(range(len(steps))), "no line lost or repeated"
    assert process.returncode == 1
    assert "ended ERROR: The server stopped while the job was running" in err
