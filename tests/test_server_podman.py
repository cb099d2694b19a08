"""`hfuv server --runtime podman` and `hfuv run --local --runtime podman`: every job runs in its
image, through real podman, on images built here (tests/images.py)."""

from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, hfuv, write
from tests.images import MARKER, busybox_image, needs_podman, uv_image
from tests.test_server import api, wait_stage

pytestmark = needs_podman()

HF = str(Path(sys.executable).parent / "hf")
# Python's version and the OS of wherever it runs.
SHOW_PYTHON_AND_OS = (
    "import sys\n"
    "print('python', '%d.%d' % sys.version_info[:2])\n"
    "print(open('/etc/os-release').read().splitlines()[0])\n"
)
IN_TRIXIE = ["python 3.13", 'PRETTY_NAME="Debian GNU/Linux 13 (trixie)"']
UV_SCRIPT = '# /// script\n# requires-python = ">=3.13"\n# ///\n' + SHOW_PYTHON_AND_OS
# Lines the job prints, a tenth of a second apart (busybox's sh has no seq).
COUNT_TO_40 = 'i=0; while [ $i -lt 40 ]; do i=$((i+1)); echo "line $i"; sleep 0.1; done'


def podman_server(data_dir: Path, port: int | None = None) -> ServerProcess:
    return ServerProcess(data_dir, "--runtime", "podman", port=port).start()


def containers_of(job_id: str, *, running: bool) -> list[str]:
    listed = subprocess.run(
        ["podman", "ps", *([] if running else ["-a"]), "--filter", f"label=hfuv.job={job_id}",
         "--format", "{{.Names}}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return listed.stdout.split()


def exec_detached(server: ServerProcess, *argv: str) -> str:
    created = hfuv("exec", "--detach", *argv, env=server.env())
    assert created.code == 0, created.stderr
    return created.stdout.strip()


def test_jobs_run_in_their_images(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        marker = hfuv("exec", busybox_image(), "--", "cat", "/etc/MARKER", env=server.env())
        assert marker.code == 0, marker.stderr
        assert marker.stdout.splitlines()[-1] == MARKER
        script = write(tmp_path / "where.py", UV_SCRIPT + "raise SystemExit(3)\n")
        uv_job = hfuv("run", str(script), "--image", uv_image(), env=server.env())
        assert uv_job.code == 3, uv_job.stderr
        assert uv_job.stdout.splitlines()[-2:] == IN_TRIXIE  # not the host's Python and OS
        assert containers_of(uv_job.stderr.split("job me/")[1].split()[0], running=False) == []
    finally:
        server.stop()
    said = server.process.stderr.read() if server.process else ""
    assert "runtime: podman 4" in said
    assert "CDI" not in said  # no GPUs here, no warning about them


def test_declared_gpus_without_a_cdi_spec_are_a_start_up_warning(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", "--runtime", "podman", "--gpus", "0").start()
    server.stop()
    said = server.process.stderr.read() if server.process else ""
    assert (
        "warning: podman has no CDI spec for nvidia.com/gpu (in /etc/cdi or /var/run/cdi), so "
        "GPU jobs will fail to start; generate one with `nvidia-ctk cdi generate "
        "--output=/etc/cdi/nvidia.yaml`\n"
    ) in said, said


def test_the_official_client_runs_jobs_in_their_images(tmp_path: Path) -> None:
    from huggingface_hub import HfApi

    server = podman_server(tmp_path / "data")
    try:
        command = ["python3", "-c", SHOW_PYTHON_AND_OS]
        env = {**os.environ, **server.env(), "HF_HUB_DISABLE_UPDATE_CHECK": "1", "NO_COLOR": "1"}
        cli = subprocess.run([HF, "jobs", "run", uv_image(), *command], env=env,
                             capture_output=True, text=True, timeout=120)  # fmt: skip
        assert cli.returncode == 0, cli.stderr
        assert "\n".join(IN_TRIXIE) + "\n" in cli.stdout
        hf_api = HfApi(endpoint=server.url, token=ServerProcess.TOKENS["me"])
        job = hf_api.run_job(image=uv_image(), command=command, namespace="me")
        lines = list(hf_api.fetch_job_logs(job_id=job.id, namespace="me", follow=True))
        assert lines[-2:] == IN_TRIXIE
        assert hf_api.inspect_job(job_id=job.id, namespace="me").status.stage == "COMPLETED"
    finally:
        server.stop()


def test_local_run_in_the_image_exits_with_the_scripts_code(tmp_path: Path) -> None:
    script = write(tmp_path / "where.py", UV_SCRIPT + "raise SystemExit(3)\n")
    result = hfuv("run", str(script), "--local", "--runtime", "podman", "--image", uv_image())
    assert result.code == 3, result.stderr
    assert result.stdout.splitlines() == IN_TRIXIE
    assert "is not used here" not in result.stderr  # the image is used
    assert f"in {uv_image()} with podman as job" in result.stderr
    job_id = result.stderr.split(" as job ")[1].split()[0]
    assert containers_of(job_id, running=False) == []
    by_env = hfuv("run", str(script), "--local", "--image", uv_image(),
                  env={"HFUV_RUNTIME": "podman"})  # fmt: skip
    assert (by_env.code, by_env.stdout.splitlines()) == (3, IN_TRIXIE), by_env.stderr


def test_local_run_in_the_image_within_its_timeout(tmp_path: Path) -> None:
    script = write(tmp_path / "slow.py", UV_SCRIPT + "import time\nprint('waiting', flush=True)\n"
                   "time.sleep(60)\n")  # fmt: skip
    started = time.monotonic()
    result = hfuv("run", str(script), "--local", "--runtime", "podman", "--image", uv_image(),
                  "--timeout", "3")  # fmt: skip
    assert time.monotonic() - started < 15
    assert result.code == 124, result.stderr
    assert result.stdout.splitlines()[-1] == "waiting"
    job_id = result.stderr.split(" as job ")[1].split()[0]
    assert result.stderr.endswith(f"job {job_id} ended ERROR: Job timeout\n")
    assert containers_of(job_id, running=False) == []


def test_ctrl_c_stops_the_local_container(tmp_path: Path) -> None:
    script = write(tmp_path / "slow.py", "import time\nprint('waiting', flush=True)\n"
                   "time.sleep(60)\n")  # fmt: skip
    process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "run", str(script), "--local", "--runtime", "podman",
         "--image", uv_image(), "-p", "3.13"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline() == "waiting\n"
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    assert process.wait(timeout=15) == 130
    job_id = process.stderr.read().split(" as job ")[1].split()[0]
    assert containers_of(job_id, running=False) == []


def test_a_restarted_server_reattaches_and_the_log_is_whole(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, busybox_image(), "--", "sh", "-c", COUNT_TO_40)
        deadline = time.monotonic() + 20
        while "line 5" not in hfuv("logs", job_id, env=server.env()).stdout:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        server.kill()  # SIGKILL: no chance to tidy up
        time.sleep(1)  # the job goes on printing with no server
        assert containers_of(job_id, running=True)
        server = podman_server(tmp_path / "data", port=server.port)
        job = wait_stage(server, job_id, {"COMPLETED", "ERROR"})
        assert job["status"]["stage"] == "COMPLETED", job["status"]
        logs = hfuv("logs", job_id, env=server.env())
        assert logs.stdout.splitlines() == [f"line {i}" for i in range(1, 41)]
        assert containers_of(job_id, running=False) == []
    finally:
        server.stop()


# 60,000 lines as fast as Python prints them, in bursts; `podman logs -f` loses some of these.
SIXTY_THOUSAND_LINES = (
    "import time\nfor i in range(60000):\n print('n', i)\n if i % 1000 == 0: time.sleep(0.05)\n"
)


@pytest.mark.parametrize("restart", ["while it runs", "after it ended"])
def test_a_fast_writer_s_log_is_whole_across_a_restart(tmp_path: Path, restart: str) -> None:
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, uv_image(), "--", "python3", "-c", SIXTY_THOUSAND_LINES)
        started = wait_stage(server, job_id, {"RUNNING"})["startedAt"]
        time.sleep(1.5)
        server.kill()  # mid-way: SIGKILL, no chance to tidy up
        if restart == "while it runs":
            time.sleep(1)
            assert containers_of(job_id, running=True), "the job ended too soon for this test"
        else:
            subprocess.run(["podman", "wait", f"hfuv-job-{job_id}"], capture_output=True,
                           timeout=30)  # fmt: skip
        server = podman_server(tmp_path / "data", port=server.port)
        job = wait_stage(server, job_id, {"COMPLETED", "ERROR"})
        assert job["status"]["stage"] == "COMPLETED", job["status"]
        logs = hfuv("logs", job_id, env=server.env())
        assert logs.stdout.splitlines() == [f"n {i}" for i in range(60000)]
    finally:
        server.stop()
    assert job["startedAt"] == started


def test_a_job_that_ended_with_no_server_keeps_its_own_end_time(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, busybox_image(), "--", "sh", "-c", "sleep 1; exit 3")
        wait_stage(server, job_id, {"RUNNING"})
        server.kill()
        subprocess.run(["podman", "wait", f"hfuv-job-{job_id}"], capture_output=True,
                       timeout=30)  # fmt: skip
        ended = time.time()
        time.sleep(2)  # the next server sees the end 2 s after it happened
        server = podman_server(tmp_path / "data", port=server.port)
        job = wait_stage(server, job_id, {"COMPLETED", "ERROR"})
        status = job["status"]
        assert (status["message"], status["exitCode"]) == ("Job failed with exit code: 3", 3)
        finished = datetime.fromisoformat(job["finishedAt"].replace("Z", "+00:00"))
        assert abs(finished.timestamp() - ended) < 0.5, (job, ended)
    finally:
        server.stop()


def test_a_job_whose_container_is_gone_after_a_restart_ends_as_error(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, busybox_image(), "--", "sleep", "60")
        wait_stage(server, job_id, {"RUNNING"})
        server.kill()
        subprocess.run(["podman", "rm", "-f", f"hfuv-job-{job_id}"], check=True,
                       capture_output=True)  # fmt: skip
        server = podman_server(tmp_path / "data", port=server.port)
        job = wait_stage(server, job_id, {"ERROR"}, timeout=5)
        assert job["status"]["message"] == (
            "The job's container was gone when the server restarted (podman)"
        )
    finally:
        server.stop()


def test_timeout_holds_while_the_server_is_down(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, "--timeout", "5", busybox_image(), "--", "sleep", "60")
        live = exec_detached(server, "--timeout", "1", busybox_image(), "--", "sleep", "60")
        wait_stage(server, job_id, {"RUNNING"})
        live_status = wait_stage(server, live, {"COMPLETED", "ERROR", "CANCELED"})["status"]
        # Our timer (SIGTERM) or the engine's (SIGKILL, below): the same message and code.
        assert (live_status["message"], live_status["exitCode"]) == ("Job timeout", 124)
        started = time.monotonic()
        server.kill()
        while containers_of(job_id, running=True):
            assert time.monotonic() - started < 8, "the container outlived its timeout"
            time.sleep(0.2)
        server = podman_server(tmp_path / "data", port=server.port)
        job = wait_stage(server, job_id, {"COMPLETED", "ERROR", "CANCELED"})
        assert (job["status"]["message"], job["status"]["exitCode"]) == ("Job timeout", 124)
    finally:
        server.stop()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A registry on loopback (Debian's docker-registry) that podman may pull from over http;
    → its host:port."""
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    address = f"127.0.0.1:{free_port()}"
    storage = tmp_path / "registry"
    config = write(tmp_path / "registry.yml", "version: 0.1\nstorage:\n  filesystem:\n"
                   f"    rootdirectory: {storage}\nhttp:\n  addr: {address}\n")  # fmt: skip
    insecure = write(tmp_path / "registries.conf",
                     f'[[registry]]\nlocation = "{address}"\ninsecure = true\n')  # fmt: skip
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(insecure))
    process = subprocess.Popen(["docker-registry", "serve", str(config)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                urllib.request.urlopen(f"http://{address}/v2/", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "docker-registry did not start"
                time.sleep(0.1)
        yield address
    finally:
        process.kill()
        process.wait()


def test_a_missing_image_is_pulled(tmp_path: Path, registry: str) -> None:
    image = f"{registry}/hfuv-test/pulled:1"
    subprocess.run(["podman", "push", "-q", busybox_image(), image], check=True,
                   capture_output=True)  # fmt: skip
    server = podman_server(tmp_path / "data")
    try:
        result = hfuv("exec", image, "--", "cat", "/etc/MARKER", env=server.env())
        assert result.code == 0, result.stderr
        assert result.stdout.splitlines()[-1] == MARKER
    finally:
        server.stop()
        subprocess.run(["podman", "rmi", image], capture_output=True)


def test_docker_runtime_holds_the_timeout_with_the_server_down(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The docker code path (no --timeout: a detached watchdog), against podman's docker CLI,
    as Debian's podman-docker package installs it."""
    shim = write(tmp_path / "bin" / "docker", '#!/bin/sh\nexec podman "$@"\n')
    shim.chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim.parent}{os.pathsep}{os.environ['PATH']}")
    server = ServerProcess(tmp_path / "data", "--runtime", "docker").start()
    try:
        job_id = exec_detached(server, "--timeout", "3", busybox_image(), "--", "sleep", "60")
        wait_stage(server, job_id, {"RUNNING"})
        started = time.monotonic()
        server.kill()
        while containers_of(job_id, running=True):
            assert time.monotonic() - started < 7, "the container outlived its timeout"
            time.sleep(0.2)
        server = ServerProcess(tmp_path / "data", "--runtime", "docker", port=server.port).start()
        job = wait_stage(server, job_id, {"COMPLETED", "ERROR", "CANCELED"})
        assert job["status"]["message"] == "Job timeout"
    finally:
        server.stop()


class SlowRegistry(http.server.BaseHTTPRequestHandler):
    """A registry that takes 1.5 s to say it has nothing."""

    def do_GET(self) -> None:
        time.sleep(1.5)
        self.send_error(404)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


def test_a_pull_shows_in_the_job_s_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    registry = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowRegistry)
    threading.Thread(target=registry.serve_forever, daemon=True).start()
    address = f"127.0.0.1:{registry.server_address[1]}"
    insecure = write(tmp_path / "registries.conf",
                     f'[[registry]]\nlocation = "{address}"\ninsecure = true\n')  # fmt: skip
    monkeypatch.setenv("CONTAINERS_REGISTRIES_CONF", str(insecure))
    image = f"{address}/hfuv-test/slow:1"
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, image, "--", "true")
        pulling = wait_stage(server, job_id, {"SCHEDULING"})["status"]
        deadline = time.monotonic() + 10
        queued = "Queued: waiting for the server to start it"  # until the pull begins
        while pulling["stage"] == "SCHEDULING" and pulling.get("message") in (None, queued):
            assert time.monotonic() < deadline
            pulling = api(server, f"/api/jobs/me/{job_id}")[1]["status"]
        assert pulling == {"stage": "SCHEDULING", "message": f"Pulling image {image}"}
        failed = wait_stage(server, job_id, {"ERROR"})["status"]["message"]
        assert failed.startswith(f"Job failed to start: image {image} not found locally and "
                                 "could not be pulled: ")  # fmt: skip
    finally:
        server.stop()
        registry.shutdown()


def test_an_invalid_image_reference_is_refused_at_create(tmp_path: Path) -> None:
    server = podman_server(tmp_path / "data")
    try:
        created = hfuv("exec", "Bad Image!!", "--", "true", env=server.env())
        assert created.code != 0 and created.stdout == ""
        assert "invalid image 'Bad Image!!': not an image reference" in created.stderr
        body = {"dockerImage": "Bad Image!!", "command": ["true"], "flavor": "cpu-basic"}
        status, answer = api(server, "/api/jobs/me", method="POST", body=body)
        assert status == 400 and "invalid image 'Bad Image!!'" in str(answer), answer
        assert api(server, "/api/jobs/me")[1] == []  # no job created
    finally:
        server.stop()


def test_an_image_that_cannot_be_pulled_fails_the_job_with_one_line(tmp_path: Path) -> None:
    missing = "localhost/hfuv-test-missing:1"
    server = podman_server(tmp_path / "data")
    try:
        job_id = exec_detached(server, missing, "--", "true")
        job = wait_stage(server, job_id, {"ERROR"})
        message = job["status"]["message"]
        assert message.startswith(f"Job failed to start: image {missing} not found locally and "
                                  "could not be pulled: ")  # fmt: skip
        assert "\n" not in message
        assert api(server, f"/api/jobs/me/{job_id}")[0] == 200
    finally:
        server.stop()


def test_a_container_s_long_line_comes_in_pieces_and_the_log_goes_on(tmp_path: Path) -> None:
    from tests.test_server_logs import joined

    server = podman_server(tmp_path / "data")
    try:
        program = "print('before'); print('a' + 'é' * (3 * 1024 * 1024 // 2)); print('after')"
        done = hfuv("exec", uv_image(), "--", "python3", "-c", program, env=server.env())
        assert done.code == 0, done.stderr[-500:]
        lines = done.stdout.splitlines()
        assert lines[0] == "before" and lines[-1] == "after"
        assert len(lines[1:-1]) == 4  # pieces of at most 1 MiB each, as on the host runtime
        assert joined(lines[1:-1]) == "a" + "é" * (3 * 1024 * 1024 // 2)
    finally:
        server.stop()
