"""Job logs through a real `hfuv server`: long lines, the size cap, a full disk, tail's memory."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, hfuv
from tests.test_server import api, wait_stage

MiB = 1024 * 1024
CUT = " [line cut: continued on the next line]"  # hfuv.server.executor.CUT_MARK, as users see it


def run_command(server: ServerProcess, code: str) -> str:
    """A job running `python3 -c CODE` on the server; its id."""
    body = {"command": [sys.executable, "-c", code], "dockerImage": "python:3.12"}
    status, job = api(server, "/api/jobs/me", method="POST", body=body)
    assert status == 200, job
    return job["id"]


def logs(server: ServerProcess, job_id: str, *args: str) -> list[str]:
    """`hfuv logs JOB ARGS...`'s lines, exactly (a `\r` inside a line stays there)."""
    argv = [sys.executable, "-m", "hfuv", "logs", job_id, *args]
    env = {**os.environ, **server.env()}
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.decode().split("\n")[:-1]


def joined(pieces: list[str]) -> str:
    """A cut line put back together."""
    assert all(piece.endswith(CUT) for piece in pieces[:-1]) and not pieces[-1].endswith(CUT)
    return "".join(piece.removesuffix(CUT) for piece in pieces)


def test_the_lines_after_a_3_mib_line_are_served(server: ServerProcess) -> None:
    # "a" first, then 2-byte characters: the cut at 1 MiB falls inside one of them.
    job_id = run_command(server, "print('before'); print('a' + 'é' * (3 * 1024 * 1024 // 2)); "
                         "print('after 1'); print('after 2')")  # fmt: skip
    assert wait_stage(server, job_id, {"COMPLETED", "ERROR"})["status"]["stage"] == "COMPLETED"
    lines = logs(server, job_id)
    assert lines[0] == "before" and lines[-2:] == ["after 1", "after 2"]
    long_line = lines[1:-2]
    assert len(long_line) == 4  # pieces of at most 1 MiB of output each
    assert joined(long_line) == "a" + "é" * (3 * MiB // 2)  # no character lost at a cut

    from huggingface_hub import HfApi

    official = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
    fetched = list(official.fetch_job_logs(job_id=job_id, namespace="me"))
    assert fetched == lines


def test_a_progress_bar_without_newlines_is_served(server: ServerProcess) -> None:
    bar = "".join(f"\r{i % 100:3d}%|{'#' * (i % 100):<100}|" for i in range(25_000))  # ~2.6 MiB
    job_id = run_command(server, "import sys\n"
                         "for i in range(25_000):\n"
                         "    sys.stderr.write(f\"\\r{i % 100:3d}%|{'#' * (i % 100):<100}|\")\n"
                         "print('\\ndone', flush=True)\n")  # fmt: skip
    assert wait_stage(server, job_id, {"COMPLETED", "ERROR"})["status"]["stage"] == "COMPLETED"
    lines = logs(server, job_id)
    assert lines[-1] == "done"
    assert joined(lines[:-1]) == bar.rstrip("\r")


def test_the_log_cap_keeps_the_first_and_newest_lines(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-log-size", "64K").start()
    try:
        job_id = run_command(server, "for i in range(5000): print(f'line {i:05d}', 'x' * 40)")
        wait_stage(server, job_id, {"COMPLETED"})
        lines = logs(server, job_id)
        [marker] = [i for i, line in enumerate(lines) if line.startswith("=====")]
        assert "dropped" in lines[marker] and "--max-log-size" in lines[marker]
        numbers = [int(line.split()[1]) for line in lines if line.startswith("line ")]
        first, newest = numbers[:marker], numbers[marker:]
        assert first == list(range(len(first))) and len(first) > 100
        assert newest == list(range(newest[0], 5000)) and len(newest) > 100
        on_disk = sum(p.stat().st_size for p in (tmp_path / "data" / "logs").glob(f"{job_id}*"))
        assert on_disk <= 64 * 1024 + 200
        assert [int(line.split()[1]) for line in logs(server, job_id, "--tail", "3")] == [
            4997, 4998, 4999]  # fmt: skip
    finally:
        server.stop()


def test_following_a_capped_log_live_gets_its_lines_in_order(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-log-size", "64K").start()
    try:
        job_id = run_command(server, "import time\nfor i in range(3000):\n"
                             "    print(f'line {i:05d}', 'x' * 40, flush=True)\n"
                             "    if i % 100 == 0: time.sleep(0.05)\n")  # fmt: skip
        followed = logs(server, job_id, "--follow")
        numbers = [int(line.split()[1]) for line in followed if line.startswith("line ")]
        assert numbers[0] == 0 and numbers[-1] == 2999
        assert numbers == sorted(set(numbers))  # in order, none twice, whatever was dropped
        others = [line for line in followed if not line.startswith("line ")]
        assert all("were dropped" in line for line in others), others  # only the marker
    finally:
        server.stop()


@contextlib.contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                             capture_output=True, text=True)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_ends_the_job_and_the_server_recovers(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk", "4m") as disk:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (3 * MiB // 2))
        server = ServerProcess(disk / "data", "--max-parallel", "1").start()
        try:
            writer = run_command(server, "while True: print('x' * 1000)")
            queued = run_command(server, "print('queued')")  # starts once the writer has failed
            ended = wait_stage(server, writer, {"ERROR", "COMPLETED"})
            assert "disk is full" in ended["status"]["message"], ended["status"]
            behind = wait_stage(server, queued, {"ERROR", "COMPLETED"})
            assert behind["status"]["stage"] == "ERROR"
            assert "disk is full" in behind["status"]["message"], behind["status"]

            body = {"command": ["true"], "dockerImage": "python:3.12"}
            status, answer = api(server, "/api/jobs/me", method="POST", body=body)
            assert status == 507 and "disk is full" in answer["error"], answer
            refused = hfuv("exec", "python:3.12", "--", "true", env=server.env())
            assert refused.code == 1 and "disk is full" in refused.stderr
            assert "Traceback" not in refused.stderr

            filler.unlink()  # space is back: jobs run again, with no restart
            again = hfuv("exec", "python:3.12", "--", sys.executable, "-c", "print('again')",
                         env=server.env())  # fmt: skip
            assert again.code == 0, again.stderr
            assert again.stdout == "again\n"
            assert server.process is not None and server.process.poll() is None
        finally:
            server.stop()


def vm(pid: int, field: str) -> int:
    """A /proc/PID/status figure (VmRSS, VmHWM) in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field} for {pid}")


def test_tail_of_a_big_log_reads_from_the_end_in_flat_memory(server: ServerProcess) -> None:
    # ~80 MiB of log: 80,000 lines of 1,000 characters.
    job_id = run_command(server, "import sys\nline = 'y' * 990\nfor i in range(80_000): "
                         "sys.stdout.write(f'{i:09d} {line}\\n')")  # fmt: skip
    wait_stage(server, job_id, {"COMPLETED"}, timeout=120)
    assert server.process is not None
    pid = server.process.pid
    baseline = vm(pid, "VmRSS")
    peak = [baseline]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak.append(vm(pid, "VmRSS"))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    request = urllib.request.Request(f"{server.url}/api/jobs/me/{job_id}/logs?tail=1000000000",
                                     headers={"authorization": "Bearer token-me"})  # fmt: skip
    count, first, last = 0, None, None
    with urllib.request.urlopen(request, timeout=60) as response:
        for raw in response:
            if raw.startswith(b"data: "):
                count += 1
                data = json.loads(raw[6:])["data"]
                first, last = first or data, data
            if raw.startswith(b": caught-up"):
                break
    done.set()
    sampler.join()
    assert count == 80_001  # the executor's header line, then the job's
    assert first.startswith("===== Job started") and last.startswith("000079999 ")
    assert max(peak) - baseline < 40 * MiB, (baseline, max(peak))
    assert [line[:9] for line in logs(server, job_id, "--tail", "2")] == ["000079998", "000079999"]
    assert os.path.getsize(server.data_dir / "logs" / f"{job_id}.jsonl") > 80 * MiB
