"""hfuv server's hardware: the GPU pool, scheduling by capacity, refusal at create, limits, stats.

GPUs are a declared pool (`--gpus 0`) on this GPU-less machine, or a stand-in `nvidia-smi` on
PATH where detection and utilization are the point; jobs run on the host runtime.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hfuv.runtime import host_capacity
from tests.conftest import ServerProcess, hfuv, write
from tests.images import needs_podman

IMAGE = "python:3.12"  # not used by the host runtime: the command runs on this machine


@pytest.fixture
def one_gpu(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", "--gpus", "0").start()
    yield server
    server.stop()


def job(server: ServerProcess, job_id: str) -> dict:
    response = httpx.get(f"{server.url}/api/jobs/me/{job_id}", headers=auth(server))
    response.raise_for_status()
    return response.json()


def auth(server: ServerProcess) -> dict[str, str]:
    return {"authorization": f"Bearer {server.env()['HF_TOKEN']}"}


def until(server: ServerProcess, job_id: str, check, timeout: float = 30) -> dict:
    """The job, once `check(job)` holds (polled)."""
    deadline = time.monotonic() + timeout
    while True:
        info = job(server, job_id)
        if check(info):
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"job {job_id} never got there: {info['status']}")
        time.sleep(0.1)


def stage(*stages: str):
    return lambda info: info["status"]["stage"] in stages


def submit(server: ServerProcess, flavor: str, command: str, *options: str) -> str:
    result = hfuv("exec", "--detach", "--flavor", flavor, *options, IMAGE, "--", "sh", "-c",
                  command, env=server.env())  # fmt: skip
    assert result.code == 0, result.stderr
    return result.stdout.strip()


def holding(gate: Path) -> str:
    """A command that prints its GPUs, then runs until the test creates `gate`."""
    return f'echo "GPUS=$CUDA_VISIBLE_DEVICES"; while [ ! -e {gate} ]; do sleep 0.1; done'


def log(server: ServerProcess, job_id: str) -> str:
    return hfuv("logs", job_id, env=server.env()).stdout


def logged(server: ServerProcess, job_id: str, expected: str, timeout: float = 30) -> None:
    """The job's log is `expected`, once it has caught up (polled)."""
    deadline = time.monotonic() + timeout
    while (text := log(server, job_id)) != expected and time.monotonic() < deadline:
        time.sleep(0.2)
    assert text == expected


def startup(server: ServerProcess) -> str:
    server.stop()
    assert server.process is not None and server.process.stderr is not None
    return server.process.stderr.read()


def test_two_one_gpu_jobs_take_turns(one_gpu: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = submit(one_gpu, "t4-small", holding(gate))
    second = submit(one_gpu, "t4-small", holding(gate))
    until(one_gpu, first, stage("RUNNING"))
    waiting = until(one_gpu, second, lambda info: info["status"]["message"].startswith("Waiting"))
    assert waiting["status"] == {
        "stage": "SCHEDULING",
        "message": f"Waiting for 1 GPU: 0 of 1 free (job {first} uses it)",
    }
    assert job(one_gpu, second)["status"]["stage"] == "SCHEDULING"  # still, while first runs
    gate.touch()
    for job_id in (first, second):
        assert until(one_gpu, job_id, stage("COMPLETED", "ERROR"))["status"]["stage"] == "COMPLETED"
        assert log(one_gpu, job_id) == "GPUS=0\n"
    done = [job(one_gpu, job_id) for job_id in (first, second)]
    assert done[0]["finishedAt"] <= done[1]["startedAt"]
    assert "GPU 0" in done[1]["status"]["message"]
    assert "GPUs: 0 (declared)" in startup(one_gpu).splitlines()


def test_a_followed_job_says_what_it_waits_for(one_gpu: ServerProcess, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    first = submit(one_gpu, "t4-small", holding(gate))
    until(one_gpu, first, stage("RUNNING"))
    threading.Timer(4.0, gate.touch).start()
    piped = hfuv("exec", "--flavor", "t4-small", IMAGE, "--", "echo", "after", env=one_gpu.env())
    assert piped.code == 0 and piped.stdout == "after\n", piped.stderr
    said = [line for line in piped.stderr.splitlines() if "is waiting for" in line]
    assert len(said) == 1 and said[0].endswith(
        f" is waiting for t4-small hardware (Waiting for 1 GPU: 0 of 1 free (job {first} uses it))"
    )


def test_a_flavor_with_more_gpus_than_the_server_is_refused(
    one_gpu: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "hello.py", "print('hello')\n")
    expected = (
        "error: POST /api/jobs/me was refused (400): flavor h200x8 needs 8 GPUs; this server "
        "has 1; choose a flavor with at most 1 GPU"
    )
    env = {**one_gpu.env(), "HFUV_MAX_COST": "100"}
    for args in (
        ("exec", "--flavor", "h200x8", IMAGE, "--", "echo", "hi"),
        ("run", str(script), "--flavor", "h200x8"),
        ("run", str(script), "--flavor", "h200x8", "--detach"),
    ):
        result = hfuv(*args, env=env)
        assert result.code == 1, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert errors == [expected] and "Traceback" not in result.stderr
        assert result.stdout == ""
    debug = {**env, "HFUV_DEBUG": "1"}  # says when a run is replayed
    runs = [hfuv("run", str(script), "--flavor", "h200x8", env=debug) for _ in range(2)]
    assert "debug: replaying the prepared run" in runs[1].stderr
    assert all(r.code == 1 and expected in r.stderr.splitlines() for r in runs)
    schedule = httpx.post(
        f"{one_gpu.url}/api/scheduled-jobs/me", headers=auth(one_gpu),
        json={"schedule": "@daily", "jobSpec": {"command": ["echo"], "dockerImage": IMAGE,
                                                "flavor": "a100x4"}},
    )  # fmt: skip
    assert schedule.status_code == 400
    assert schedule.json()["error"].startswith("flavor a100x4 needs 4 GPUs; this server has 1")
    assert hfuv("ps", "-a", "--json", env=one_gpu.env()).json() == []
    assert hfuv("schedule", "ps", "-a", "--json", env=one_gpu.env()).json() == []


def test_a_server_without_gpus_refuses_gpu_flavors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("HFUV_SERVER_GPUS", "none")
    server = ServerProcess(tmp_path / "data").start()
    try:
        refused = hfuv("exec", "--flavor", "t4-small", IMAGE, "--", "echo", "hi", env=server.env())
        assert refused.code == 1
        assert refused.stderr.splitlines()[-1] == (
            "error: POST /api/jobs/me was refused (400): flavor t4-small needs 1 GPU; this "
            "server has none; choose a CPU flavor, or a server with GPUs (hfuv server --gpus)"
        )
        assert hfuv("ps", "-a", "--json", env=server.env()).json() == []
        ran = hfuv("exec", "--flavor", "cpu-basic", IMAGE, "--", "echo", "hi", env=server.env())
        assert ran.code == 0 and ran.stdout == "hi\n"
    finally:
        lines = startup(server).splitlines()
    assert "GPUs: none (--gpus none; GPU flavors are refused)" in lines


@pytest.mark.parametrize("ending", ["cancel", "timeout", "failure"])
def test_a_gpu_is_free_again_however_its_job_ends(
    one_gpu: ServerProcess, tmp_path: Path, ending: str
) -> None:
    gate = tmp_path / "gate"
    if ending == "failure":
        first = submit(one_gpu, "t4-small", f"{holding(gate)}; exit 3")
    else:
        options = ("--timeout", "6") if ending == "timeout" else ()
        first = submit(one_gpu, "t4-small", "sleep 60", *options)
    second = submit(one_gpu, "l4x1", 'echo "GPUS=$CUDA_VISIBLE_DEVICES"')
    until(one_gpu, first, stage("RUNNING"))
    waiting = f"Waiting for 1 GPU: 0 of 1 free (job {first} uses it)"
    until(one_gpu, second, lambda info: info["status"]["message"] == waiting)
    if ending == "cancel":
        assert hfuv("cancel", first, env=one_gpu.env()).code == 0
    elif ending == "failure":
        gate.touch()
    ended = until(one_gpu, first, stage("CANCELED", "ERROR"))["status"]
    expected = {"cancel": "Job canceled", "timeout": "Job timeout",
                "failure": "Job failed with exit code: 3; image python:3.12 was not used: hfuv "
                "server ran the command on its host"}  # fmt: skip
    assert ended["message"] == expected[ending]
    assert until(one_gpu, second, stage("COMPLETED", "ERROR"))["status"]["stage"] == "COMPLETED"
    assert log(one_gpu, second) == "GPUS=0\n"


def test_a_big_gpu_job_is_not_passed_by_smaller_ones(tmp_path: Path) -> None:
    """FIFO: free GPUs are kept for the oldest GPU job waiting; CPU jobs may pass it."""
    server = ServerProcess(tmp_path / "data", "--gpus", "0,1").start()
    try:
        gate, second_gate = tmp_path / "gate", tmp_path / "gate2"
        small = submit(server, "t4-small", holding(gate))
        until(server, small, stage("RUNNING"))
        big = submit(server, "a10g-largex2", holding(second_gate))
        later = submit(server, "t4-small", 'echo "GPUS=$CUDA_VISIBLE_DEVICES"')
        cpu = submit(server, "cpu-basic", "echo cpu")
        assert until(server, cpu, stage("COMPLETED", "ERROR"))["status"]["stage"] == "COMPLETED"
        assert until(server, big, lambda info: info["status"]["message"])["status"] == {
            "stage": "SCHEDULING",
            "message": f"Waiting for 2 GPUs: 1 of 2 free (job {small} uses it)",
        }
        assert until(server, later, lambda info: info["status"]["message"])["status"] == {
            "stage": "SCHEDULING",
            "message": f"Waiting for 1 GPU: 1 of 2 free, kept for job {big}, created earlier",
        }
        gate.touch()
        until(server, big, stage("RUNNING"))
        logged(server, big, "GPUS=0,1\n")
        now = f"Waiting for 1 GPU: 0 of 2 free (job {big} uses them)"
        assert until(server, later, lambda info: info["status"]["message"] == now)
        second_gate.touch()
        assert until(server, later, stage("COMPLETED", "ERROR"))["status"]["stage"] == "COMPLETED"
        assert log(server, later) == "GPUS=0\n"
    finally:
        server.stop()


def test_a_queued_gpu_job_ends_when_a_restarted_server_has_no_gpu_for_it(
    tmp_path: Path,
) -> None:
    server = ServerProcess(tmp_path / "data", "--gpus", "0").start()
    try:
        first = submit(server, "t4-small", "sleep 60")
        until(server, first, stage("RUNNING"))
        queued = submit(server, "t4-small", "echo never")
        until(server, queued, lambda info: info["status"]["message"])
    finally:
        server.kill()
    server = ServerProcess(tmp_path / "data", "--gpus", "none").start()
    try:
        ended = until(server, queued, stage("ERROR", "COMPLETED"))
        assert ended["status"]["message"] == (
            "flavor t4-small needs 1 GPU; this server has none; choose a CPU flavor, or a "
            "server with GPUs (hfuv server --gpus)"
        )
        assert "startedAt" not in ended and log(server, queued) == ""
    finally:
        server.stop()


def test_a_job_waiting_for_a_slot_says_so(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-parallel", "1", "--gpus", "none").start()
    try:
        gate = tmp_path / "gate"
        first = submit(server, "cpu-basic", holding(gate))
        until(server, first, stage("RUNNING"))
        second = submit(server, "cpu-basic", "echo second")
        waiting = until(server, second, lambda info: info["status"]["message"])["status"]
        assert waiting == {
            "stage": "SCHEDULING",
            "message": "Waiting for a free slot: 1 of 1 jobs running (--max-parallel)",
        }
        gate.touch()
        assert until(server, second, stage("COMPLETED", "ERROR"))["status"]["stage"] == "COMPLETED"
    finally:
        server.stop()


def _gib(size: float) -> str:
    return f"{size / 1024**3:.1f}".removesuffix(".0") + " GiB"


def test_the_limits_are_capped_at_this_host_and_said(
    one_gpu: ServerProcess, tmp_path: Path
) -> None:
    from hfuv.flavors import CATALOG

    host = host_capacity()
    bigger = next(f for f in CATALOG.values() if not f.is_gpu and f.cpu_cores > host.cpus
                  and f.ram_gb * 1024**3 > host.memory_bytes)  # fmt: skip
    gate = tmp_path / "gate"
    capped = submit(one_gpu, bigger.name, holding(gate))
    until(one_gpu, capped, stage("RUNNING"))
    metric = first_metric(one_gpu, capped)  # stats: the job's limits, not the flavor's
    assert (metric["cpu_millicores"], metric["memory_total_bytes"]) == (
        host.cpus * 1000, host.memory_bytes)  # fmt: skip
    gate.touch()
    message = until(one_gpu, capped, stage("COMPLETED"))["status"]["message"]
    assert message.split("; ")[:2] == [
        f"limits: {bigger.cpu_cores} CPUs capped to {host.cpus:g} (this host), {bigger.ram_gb} "
        f"GiB capped to {_gib(host.memory_bytes)} (this host)",
        "the host runtime does not enforce CPU and memory limits",
    ]
    gpu = submit(one_gpu, "t4-small", "echo gpu")
    message = until(one_gpu, gpu, stage("COMPLETED"))["status"]["message"]
    cpus = "4 CPUs" + (f" capped to {host.cpus:g} (this host)" if host.cpus < 4 else "")
    assert message.startswith(f"limits: {cpus}, 15 GiB, GPU 0; ")


def first_metric(server: ServerProcess, job_id: str) -> dict:
    url = f"{server.url}/api/jobs/me/{job_id}/metrics"
    with httpx.stream("GET", url, headers=auth(server), timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: {"):
                return json.loads(line.removeprefix("data: "))
    raise AssertionError("no metric event")


FAKE_NVIDIA_SMI = """\
#!/bin/sh
# Stands in for nvidia-smi on this GPU-less machine: two T4s, each at its own load.
case "$1" in
  -L) echo "GPU 0: Tesla T4 (UUID: GPU-aaaa1111)"; echo "GPU 1: Tesla T4 (UUID: GPU-bbbb2222)";;
  --query-gpu=*)
    for id in $(echo "$4" | tr , ' '); do
      case "$id" in
        0) echo "0, GPU-aaaa1111, 17, 1024, 15360";;
        1) echo "1, GPU-bbbb2222, 42, 2048, 15360";;
      esac
    done;;
  *) exit 9;;
esac
"""


@pytest.fixture
def fake_nvidia_smi(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "bin"
    tool = write(folder / "nvidia-smi", FAKE_NVIDIA_SMI)
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def test_gpus_are_detected_and_stats_show_the_jobs_own(
    fake_nvidia_smi: None, tmp_path: Path
) -> None:
    server = ServerProcess(tmp_path / "data").start()  # --gpus all: nvidia-smi -L's
    try:
        gate = tmp_path / "gate"
        first = submit(server, "t4-small", holding(gate))
        second = submit(server, "t4-small", holding(gate))
        for job_id in (first, second):
            until(server, job_id, stage("RUNNING"))
        assert first_metric(server, second)["gpus"] == {
            "1": {"utilization": 42, "memory_used_bytes": 2048 * 1024**2,
                  "memory_total_bytes": 15360 * 1024**2},
        }  # fmt: skip
        table = hfuv("stats", first, env=server.env())
        assert table.code == 0, table.stderr
        rows = table.stdout.splitlines()[1:]
        assert len(rows) == 1 and rows[0].split()[-5:] == ["17%", "6.67%", "1.1GB", "/", "16.1GB"]
        logged(server, second, "GPUS=1\n")
        gate.touch()
    finally:
        lines = startup(server).splitlines()
    assert "GPUs: 0 (Tesla T4), 1 (Tesla T4)" in lines


def test_a_declared_pool_is_checked_against_nvidia_smi(fake_nvidia_smi: None) -> None:
    result = hfuv("server", "--port", "0", "--gpus", "1,3", timeout=30)
    assert result.code == 2
    assert result.stderr == (
        "error: --gpus 1,3: this machine has no GPU 3 (nvidia-smi -L lists 0, 1) (hint: give "
        "all, none, or GPU ids as nvidia-smi -L numbers them, e.g. 0,1)\n"
    )


@pytest.mark.parametrize(
    ("value", "problem"),
    [("0,x", "'x' is not a GPU id"), ("0,0", "a GPU is listed twice")],
)
def test_bad_gpus_values_are_one_line(value: str, problem: str) -> None:
    result = hfuv("server", "--port", "0", "--gpus", value, timeout=30)
    assert result.code == 2
    assert result.stderr == (
        f"error: --gpus {value}: {problem} (hint: give all, none, or GPU ids as nvidia-smi -L "
        "numbers them, e.g. 0,1)\n"
    )


@needs_podman()
@pytest.mark.skipif(
    importlib.util.find_spec("hfuv.runtime.engine") is None,
    reason="the podman runtime (hfuv.runtime.engine) lands with the engine branch",
)
def test_a_container_jobs_cgroup_holds_its_flavors_limits(tmp_path: Path) -> None:
    from tests.images import busybox_image

    server = ServerProcess(tmp_path / "data", "--runtime", "podman").start()
    try:
        cgroup = "/sys/fs/cgroup"
        result = hfuv("exec", "--flavor", "cpu-basic", busybox_image(), "--", "cat",
                      f"{cgroup}/cpu/cpu.cfs_quota_us", f"{cgroup}/cpu/cpu.cfs_period_us",
                      f"{cgroup}/memory/memory.limit_in_bytes", env=server.env())  # fmt: skip
    finally:
        server.stop()
    assert result.code == 0, result.stderr
    quota, period, memory = (int(line) for line in result.stdout.split())
    host = host_capacity()
    assert quota / period == min(2, host.cpus)
    assert memory == min(16 * 1024**3, host.memory_bytes)


def test_a_waiting_job_is_not_told_another_namespaces_job_id(one_gpu: ServerProcess,
                                                             tmp_path: Path) -> None:  # fmt: skip
    gate = tmp_path / "gate"
    mine = submit(one_gpu, "t4-small", holding(gate))
    until(one_gpu, mine, stage("RUNNING"))
    result = hfuv("exec", "--detach", "--flavor", "t4-small", IMAGE, "--", "true",
                  env=one_gpu.env("other"))  # fmt: skip
    theirs = result.stdout.strip()
    response = httpx.get(f"{one_gpu.url}/api/jobs/other/{theirs}",
                         headers={"authorization": "Bearer token-other"})  # fmt: skip
    deadline = time.monotonic() + 30
    while "Waiting" not in (response.json()["status"]["message"] or ""):
        assert time.monotonic() < deadline, response.json()["status"]
        time.sleep(0.1)
        response = httpx.get(response.url, headers={"authorization": "Bearer token-other"})
    message = response.json()["status"]["message"]
    assert message == "Waiting for 1 GPU: 0 of 1 free (a job of another namespace uses it)"
    assert mine not in message
    gate.touch()
    until(one_gpu, mine, stage("COMPLETED"))
