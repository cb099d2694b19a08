"""`hfuv server` and the remote commands against it, end to end, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import (
    DEMO_SCRIPT,
    EXAMPLES,
    ServerProcess,
    hfuv,
    needs_python,
    write,
)

pytestmark = needs_python("3.12")

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


def processes_of(job_id: str) -> list[int]:
    """Live processes carrying the job's JOB_ID (Linux)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if f"JOB_ID={job_id}".encode() in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def api(server: ServerProcess, path: str, *, user: str = "me", method: str = "GET",
        body: object = None) -> tuple[int, object]:  # fmt: skip
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{server.url}{path}",
        data=data,
        method=method,
        headers={"authorization": f"Bearer {ServerProcess.TOKENS.get(user, user)}",
                 "content-type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_stage(server: ServerProcess, job_id: str, stages: set[str], timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, job = api(server, f"/api/jobs/me/{job_id}")
        if job["status"]["stage"] in stages:
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {stages}: {job}")


def detach(server: ServerProcess, script: Path, *args: str) -> str:
    result = hfuv("run", str(script), "--detach", *args, env=server.env())
    assert result.code == 0, result.stderr
    job_id = result.stdout.strip()
    assert len(job_id) == 24, result.stdout
    return job_id


def test_run_streams_output_and_exits_with_the_jobs_code(server: ServerProcess) -> None:
    result = hfuv("run", str(EXAMPLES / "show_args.py"), "--", "a b", "--flag", env=server.env())
    assert result.code == 0, result.stderr
    assert "arg: a b\narg: --flag\n" in result.stdout
    assert "submitted: " + server.url + "/jobs/me/" in result.stderr
    failing = hfuv("run", str(EXAMPLES / "exit_code.py"), "--", "7", env=server.env())
    assert failing.code == 7
    assert "ended ERROR: Job failed with exit code: 7" in failing.stderr


def test_deps_example_through_the_server(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    result = hfuv("run", str(script), "--flavor", "cpu-basic", env=server.env())
    assert result.code == 0, result.stderr
    assert "a-1.1.0 b-2.0.0 3.12\n" in result.stdout


def test_a_command_runs_the_same_through_the_server(server: ServerProcess) -> None:
    code = "import hfuv_demo_a, sys; print(hfuv_demo_a.VALUE, sys.argv[1:])"
    argv = ("run", "--with", "hfuv-demo-a==1.0.0", "python", "--", "-c", code, "a b")
    local = hfuv(*argv[:4], "--local", *argv[4:])
    remote = hfuv(*argv, env=server.env())
    assert local.code == remote.code == 0, local.stderr + remote.stderr
    assert local.stdout == "a-1.0.0 ['a b']\n"
    assert remote.stdout.endswith(local.stdout)  # the job's log may start with uv's own lines


def test_local_and_server_runs_print_the_same(server: ServerProcess) -> None:
    args = ("--", "x", "y z")
    local = hfuv("run", str(EXAMPLES / "show_args.py"), "--local", *args)
    remote = hfuv("run", str(EXAMPLES / "show_args.py"), *args, env=server.env())
    assert local.code == remote.code == 0

    def without_job_id(text: str) -> list[str]:
        return [line for line in text.splitlines() if not line.startswith("env: JOB_ID=")]

    assert without_job_id(local.stdout) == without_job_id(remote.stdout)


def test_detach_then_logs_follow(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "count.py",
                   "import time\nfor i in range(5):\n    print('line', i, flush=True)\n"
                   "    time.sleep(0.3)\n")  # fmt: skip
    job_id = detach(server, script)
    logs = hfuv("logs", "-f", job_id, env=server.env())
    assert logs.code == 0, logs.stderr
    assert logs.stdout == "".join(f"line {i}\n" for i in range(5))
    again = hfuv("logs", f"me/{job_id}", env=server.env())
    assert again.stdout == logs.stdout
    tail = hfuv("logs", job_id, "--tail", "2", env=server.env())
    assert tail.stdout == "line 3\nline 4\n"
    stamped = hfuv("logs", job_id, "-t", env=server.env()).stdout.splitlines()
    assert stamped[0].endswith("Z line 0") and stamped[0][:4].isdigit()


def test_ps_cancel_and_no_process_left(server: ServerProcess, tmp_path: Path) -> None:
    job_id = detach(server, write(tmp_path / "sleep.py", SLEEPER))
    wait_stage(server, job_id, {"RUNNING"})
    listed = hfuv("ps", env=server.env())
    assert job_id in listed.stdout and "RUNNING" in listed.stdout
    as_json = hfuv("ps", "--json", env=server.env()).json()
    assert [job["id"] for job in as_json] == [job_id]
    time.sleep(1.0)  # let uv start the script itself
    if sys.platform == "linux":
        assert processes_of(job_id)
    started = time.monotonic()
    assert hfuv("cancel", job_id, env=server.env()).code == 0
    job = wait_stage(server, job_id, {"CANCELED"}, timeout=10)
    assert time.monotonic() - started < 10
    assert job["status"]["stage"] == "CANCELED"
    if sys.platform == "linux":
        time.sleep(0.5)
        assert processes_of(job_id) == []
    assert hfuv("ps", env=server.env()).stdout == ""
    assert job_id in hfuv("ps", "-a", env=server.env()).stdout


def test_timeout_ends_the_job_as_error(server: ServerProcess, tmp_path: Path) -> None:
    result = hfuv("run", str(write(tmp_path / "sleep.py", SLEEPER)), "--timeout", "2s",
                  env=server.env())  # fmt: skip
    assert result.code == 124, result.stderr
    assert "ended ERROR: Job timeout" in result.stderr
    assert "sleeping" in result.stdout


def test_wait_and_inspect(server: ServerProcess) -> None:
    ok = detach(server, EXAMPLES / "exit_code.py", "--", "0")
    bad = detach(server, EXAMPLES / "exit_code.py", "--", "3")
    assert hfuv("wait", ok, env=server.env()).code == 0
    both = hfuv("wait", ok, bad, env=server.env())
    assert both.code == 1
    assert "COMPLETED" in both.stdout and "ERROR" in both.stdout
    info = hfuv("inspect", bad, "--json", env=server.env()).json()
    assert info["status"] == {"stage": "ERROR", "message": "Job failed with exit code: 3",
                              "exitCode": 3}  # fmt: skip
    assert info["owner"]["name"] == "me"
    summary = hfuv("inspect", f"me/{bad}", env=server.env()).stdout
    assert "exit code 3" in " ".join(summary.split())


def test_exec_runs_a_command(server: ServerProcess) -> None:
    result = hfuv("exec", "python:3.12", "--", "python3", "-c", "print('from exec')",
                  env=server.env())  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stdout == "from exec\n"
    job = hfuv("ps", "-a", "--json", env=server.env()).json()[0]
    assert job["dockerImage"] == "python:3.12"
    assert job["status"]["stage"] == "COMPLETED"
    assert "image python:3.12 is not used" in job["status"]["message"]


def test_secrets_reach_the_job_but_never_the_api(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", "import os\nprint(len(os.environ['MY_SECRET']))\n")
    env = {**server.env(), "MY_SECRET": "canary-77"}
    result = hfuv("run", str(script), "-s", "MY_SECRET", env=env)
    assert result.code == 0 and result.stdout.strip().endswith("9")
    job = hfuv("ps", "-a", "--json", env=server.env()).json()[0]
    assert job["secrets"] == ["MY_SECRET"]
    assert "canary-77" not in json.dumps(job)


def test_tokens_see_only_their_namespaces(server: ServerProcess, tmp_path: Path) -> None:
    job_id = detach(server, EXAMPLES / "hello.py")
    other = server.env("other")
    assert hfuv("ps", "-a", env=other).stdout == ""
    peek = hfuv("inspect", f"me/{job_id}", env=other)
    assert peek.code == 1 and "forbidden" in peek.stderr
    assert hfuv("cancel", f"me/{job_id}", env=other).code == 1
    assert api(server, f"/api/jobs/other/{job_id}", user="other")[0] == 404
    assert api(server, "/api/jobs/me", user="nobody")[0] == 401
    assert api(server, "/api/jobs/me", user="")[0] == 401


def test_bad_requests_get_4xx(server: ServerProcess) -> None:
    cases = [
        ([], 400), ({"command": "echo"}, 400), ({"command": ["echo"], "flavor": "gpu-9000",
                                                 "dockerImage": "x"}, 400),
        ({"command": ["echo"], "dockerImage": "x", "timeoutSeconds": "soon"}, 400),
        ({"command": ["echo"], "dockerImage": "x", "environment": {"A": 1}}, 400),
    ]  # fmt: skip
    for body, status in cases:
        assert api(server, "/api/jobs/me", method="POST", body=body)[0] == status, body


def test_server_survives_sigkill(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data").start()
    try:
        done = detach(server, EXAMPLES / "show_args.py", "--", "kept")
        wait_stage(server, done, {"COMPLETED"})
        running = detach(server, write(tmp_path / "sleep.py", SLEEPER))
        wait_stage(server, running, {"RUNNING"})
        time.sleep(1.0)
        server.kill()
        server = ServerProcess(tmp_path / "data")
        server.start()
        listed = hfuv("ps", "-a", "--json", env=server.env()).json()
        assert {job["id"] for job in listed} == {done, running}
        assert hfuv("logs", done, env=server.env()).stdout.startswith("arg: kept\n")
        job = wait_stage(server, running, {"ERROR"}, timeout=5)
        assert "server stopped" in job["status"]["message"]
        assert hfuv("logs", running, env=server.env()).stdout.startswith("sleeping\n")
        if sys.platform == "linux":
            assert processes_of(running) == []
    finally:
        server.stop()


def test_max_parallel_keeps_the_rest_scheduling(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-parallel", "1").start()
    try:
        first = detach(server, write(tmp_path / "sleep.py", SLEEPER))
        second = detach(server, EXAMPLES / "hello.py")
        wait_stage(server, first, {"RUNNING"})
        time.sleep(0.5)
        assert api(server, f"/api/jobs/me/{second}")[1]["status"]["stage"] == "SCHEDULING"
        hfuv("cancel", first, env=server.env())
        wait_stage(server, second, {"COMPLETED"})
    finally:
        server.stop()


def with_terminal_stderr(args: list[str], env: dict[str, str], timeout: float = 60) -> tuple:
    """Run the CLI with stderr on a pseudo-terminal (as a user at a shell): (code, out, err)."""
    import pty
    import threading

    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "hfuv", *args], env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=slave)  # fmt: skip
    os.close(slave)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO once the child side is closed (Linux)
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = process.communicate(timeout=timeout)
    reader.join(timeout=5)
    os.close(master)
    return process.returncode, out.decode(), b"".join(chunks).decode(errors="replace")


def test_waits_show_progress_on_a_terminal_and_one_line_when_piped(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--max-parallel", "1").start()
    try:
        blocker = detach(server, write(tmp_path / "sleep.py", SLEEPER))
        wait_stage(server, blocker, {"RUNNING"})
        threading.Timer(5.0, lambda: hfuv("cancel", blocker, env=server.env())).start()
        code, _, waited = with_terminal_stderr(["wait", blocker], server.env())
        assert code == 1  # it was canceled
        assert f"\r\x1b[2Kwaiting for me/{blocker}: RUNNING (" in waited

        blocker = detach(server, write(tmp_path / "sleep2.py", SLEEPER))
        wait_stage(server, blocker, {"RUNNING"})
        threading.Timer(5.0, lambda: hfuv("cancel", blocker, env=server.env())).start()
        piped = hfuv("run", str(EXAMPLES / "hello.py"), env=server.env())
        assert piped.code == 0, piped.stderr
        assert piped.stderr.count("is waiting for cpu-basic hardware") == 1
        assert "\r" not in piped.stderr and "\x1b" not in piped.stderr
        assert piped.stdout.startswith("Hello from job ")
    finally:
        server.stop()


def test_ctrl_c_leaves_the_job_running(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "sleep.py", SLEEPER)
    process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "run", str(script)],
        env={**os.environ, **server.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "sleeping\n"
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130
    assert "still running" in err and "hfuv logs -f me/" in err and "hfuv cancel me/" in err
    job = hfuv("ps", "--json", env=server.env()).json()[0]
    assert job["status"]["stage"] == "RUNNING"
    hfuv("cancel", job["id"], env=server.env())


def test_hardware_from_the_api(server: ServerProcess) -> None:
    items = hfuv("hardware", "--json", env=server.env()).json()
    assert {"name": "a10g-small", "unitCostUSD": round(1.0 / 60, 6)}.items() <= next(
        i for i in items if i["name"] == "a10g-small"
    ).items()
    offline = hfuv("hardware", env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "x"})
    assert offline.code == 0 and "built-in catalog" in offline.stderr
    assert "h200x8" in offline.stdout


def test_stats_of_running_jobs(server: ServerProcess, tmp_path: Path) -> None:
    job_id = detach(server, write(tmp_path / "sleep.py", SLEEPER))
    wait_stage(server, job_id, {"RUNNING"})
    for args in ((job_id,), (f"me/{job_id}",), ()):  # no JOB: every running job
        result = hfuv("stats", *args, env=server.env())
        assert result.code == 0, result.stderr
        header, row = result.stdout.splitlines()
        assert header.split("  ")[0] == "JOB ID" and "GPU MEM USAGE" in header
        assert row.startswith(job_id) and row.endswith("N/A")
        assert row.split()[2] == "2.0"  # NUM CPU: cpu-basic's 2 vCPU
    hfuv("cancel", job_id, env=server.env())
    wait_stage(server, job_id, {"CANCELED"})
    ended = hfuv("stats", job_id, env=server.env())
    assert ended.code == 1 and f"job me/{job_id} is not running" in ended.stderr
    assert hfuv("stats", env=server.env()).stderr == "no running jobs\n"


def test_stats_follow_until_the_job_ends(server: ServerProcess, tmp_path: Path) -> None:
    job_id = detach(server, write(tmp_path / "nap.py", "import time\ntime.sleep(4)\n"))
    wait_stage(server, job_id, {"RUNNING"})
    result = hfuv("stats", "-f", job_id, env=server.env(), timeout=60)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("JOB ID") and len(lines) >= 2, result.stdout
    assert all(line.startswith(job_id) for line in lines[1:])  # piped: a row a second, no redraw
    assert f"job me/{job_id} ended: COMPLETED" in result.stderr


def test_stats_rows_as_the_official_cli_shows_them() -> None:
    from hfuv.stats import rows_of

    event = {"cpu_usage_pct": 12.5, "cpu_millicores": 3500, "memory_used_bytes": 1417216,
             "memory_total_bytes": 15032385536, "rx_bps": 2048, "tx_bps": 0,
             "gpus": {"b": {"utilization": 80, "memory_used_bytes": 11418000000,
                            "memory_total_bytes": 22836000000},
                      "a": {"utilization": 0, "memory_used_bytes": 0,
                            "memory_total_bytes": 22836000000}}, "replica": "x"}  # fmt: skip
    assert rows_of("j1", event) == [
        ["j1", "12.5%", "3.5", "0.01%", "1.4MB / 15.0GB", "2.0kbps / 0bps", "0%", "0.00%",
         "0B / 22.8GB"],
        ["", "", "", "", "", "", "80%", "50.00%", "11.4GB / 22.8GB"],
    ]  # fmt: skip


def test_deps_example_from_pypi_through_the_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README's server walk-through: the example with real dependencies, from PyPI."""
    monkeypatch.delenv("UV_NO_INDEX")
    monkeypatch.delenv("UV_FIND_LINKS")
    server = ServerProcess(tmp_path / "data").start()
    try:
        result = hfuv("run", str(EXAMPLES / "with_deps.py"), "--flavor", "cpu-basic",
                      env=server.env())  # fmt: skip
        assert result.code == 0, result.stderr
        assert "xn--bcher-kva.example\n" in result.stdout
        local = hfuv("run", str(EXAMPLES / "with_deps.py"), "--local")
        assert local.stdout in result.stdout
    finally:
        server.stop()


def test_labels_duplicate_and_pagination(server: ServerProcess) -> None:
    body = {"command": ["true"], "dockerImage": "python:3.12", "labels": {"a": "1"}}
    ids = [api(server, "/api/jobs/me", method="POST", body=body)[1]["id"] for _ in range(3)]
    status, job = api(server, f"/api/jobs/me/{ids[0]}/labels", method="PUT",
                      body={"labels": {"team": "ml"}})  # fmt: skip
    assert status == 200 and job["labels"] == {"team": "ml"}
    status, copy = api(server, f"/api/jobs/me/{ids[0]}/duplicate", method="POST")
    assert status == 200 and copy["initiator"] == {"type": "duplicated-job", "id": ids[0]}
    assert copy["labels"] == {"team": "ml"} and copy["id"] not in ids
    url, pages = f"{server.url}/api/jobs/me?limit=1&label=a", []
    while url:
        request = urllib.request.Request(url, headers={"authorization": "Bearer token-me"})
        with urllib.request.urlopen(request) as response:
            pages.append([job["id"] for job in json.loads(response.read())])
            link = response.headers.get("Link") or ""
        url = link[link.index("<") + 1 : link.index(">")] if 'rel="next"' in link else ""
    assert pages == [[ids[2]], [ids[1]]], "newest first, one per page, filtered by label"
    listed = hfuv("ps", "-a", "--label", "team=ml", "--json", env=server.env()).json()
    assert {j["id"] for j in listed} == {ids[0], copy["id"]}


def test_org_members_use_the_org_namespace(tmp_path: Path) -> None:
    tokens = write(tmp_path / "tokens", "# user@orgs=token\nalice@lab=tok-alice\nbob=tok-bob\n")
    server = ServerProcess(tmp_path / "data", "--tokens-file", str(tokens)).start()
    try:
        body = {"command": ["true"], "dockerImage": "python:3.12"}
        status, job = api(server, "/api/jobs/lab", user="tok-alice", method="POST", body=body)
        assert status == 200 and job["owner"]["type"] == "org" and job["owner"]["name"] == "lab"
        assert api(server, "/api/jobs/lab", user="tok-bob")[0] == 403
        assert api(server, f"/api/jobs/lab/{job['id']}", user="tok-bob")[0] == 403
        whoami = api(server, "/api/whoami-v2", user="tok-alice")[1]
        assert whoami["name"] == "alice" and whoami["orgs"][0]["name"] == "lab"
    finally:
        server.stop()
