"""`hfuv server --port`: a port it cannot use is one clear line; `--port 0` shows the real one."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.conftest import ServerProcess, hfuv, needs_python, write
from tests.test_server import SLEEPER, detach, processes_of, wait_stage


@needs_python("3.12")
def test_a_busy_port_is_one_line_and_leaves_the_running_server_alone(
    server: ServerProcess, tmp_path: Path
) -> None:
    job_id = detach(server, write(tmp_path / "sleep.py", SLEEPER))
    wait_stage(server, job_id, {"RUNNING"})
    # The same port and the same data dir: a second server must not take over its jobs.
    second = hfuv("server", "--port", str(server.port), "--data-dir", str(server.data_dir),
                  "--token", "me=token-me", timeout=60)  # fmt: skip
    assert (second.code, second.stdout) == (1, "")
    assert second.stderr == (
        f"error: port {server.port} on 127.0.0.1 is already in use (another hfuv server?) "
        "(hint: stop what listens there, or pick another port with --port (0 picks a free "
        "one))\n"
    )
    assert wait_stage(server, job_id, {"RUNNING"})["status"]["stage"] == "RUNNING"
    if sys.platform == "linux":
        assert processes_of(job_id)


def test_port_0_picks_a_free_port_and_prints_it(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "server", "--port", "0", "--data-dir", str(tmp_path),
         "--token", "me=secret"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert process.stdout is not None and process.stderr is not None
        endpoint = process.stdout.readline()
        banner = process.stderr.readline()
        url = endpoint.removeprefix("HF_ENDPOINT=").split()[0]
        port = int(url.rsplit(":", 1)[1])
        assert port > 0 and endpoint.startswith("HF_ENDPOINT=http://127.0.0.1:"), endpoint
        assert banner.startswith(f"hfuv server on {url} for me;"), banner
        request = urllib.request.Request(
            f"{url}/api/whoami-v2", headers={"authorization": "Bearer secret"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
        listed = hfuv("ps", env={"HF_ENDPOINT": url, "HF_TOKEN": "secret"})
        assert (listed.code, listed.stdout) == (0, ""), listed.stderr
    finally:
        process.terminate()
        process.wait(timeout=15)


def test_an_address_of_another_machine_is_a_usage_error(tmp_path: Path) -> None:
    # 192.0.2.1 is reserved for documentation: no machine has it.
    data = tmp_path / "data"
    result = hfuv("server", "--host", "192.0.2.1", "--port", "0", "--data-dir", str(data),
                  "--token", "me=x", timeout=60)  # fmt: skip
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: cannot listen on --host 192.0.2.1: it is not an address of this machine "
        "(hint: give one of its addresses, e.g. 127.0.0.1, or 0.0.0.0 for all)\n"
    )
    assert not data.exists(), "the data dir was not touched"
