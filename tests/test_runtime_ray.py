"""`hfuv server --runtime ray` against a real two-node Ray cluster on this machine.

The cluster (a head and a second node with a `worker` resource, 2 CPUs each) starts once per
test run, each node in a process group of its own, ended by that group's id; it takes about 20 s
to come up and 1.5 GB of memory, and this module runs in about three minutes. Ray itself gives
its nodes this machine's own address, not 127.0.0.1 (it replaces a loopback --node-ip-address
on Linux); hfuv and these tests reach only its dashboard, on 127.0.0.1.

The nodes get the environment a cluster's operator would give them: uv on PATH (the venv's),
the tests' uv cache, wheel index and Pythons; and the cluster has Ray's token authentication on
(RAY_AUTH_MODE=token), as the README advises, so every test also shows hfuv server sending it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfuv.runtime import MAX_LINE_BYTES
from hfuv.runtime.ray import LogStream, entrypoint, entrypoint_marker
from tests.conftest import EXAMPLES, ServerProcess, free_port, hfuv, python_available, write

NO_RAY = importlib.util.find_spec("ray") is None
needs_ray = pytest.mark.skipif(NO_RAY, reason="ray is not installed (pip install 'ray[default]')")

RAY = str(Path(sys.executable).parent / "ray")
HF = str(Path(sys.executable).parent / "hf")
TRICKY_ARGS = ["with space", "it's", '"double"', "$HOME", "$(echo no)", "a > b", "`x`", "*",
               "ünïcødé ✓ 日本", "", "new\nline", "back\\slash", "; exit 7", "-e"]  # fmt: skip
COUNT = "import time\nfor i in range(3):\n    print('line', i, flush=True)\n    time.sleep(0.2)\n"
SLOW = """\
import sys, time
for i in range(int(sys.argv[1])):
    print(f"line {i}", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def get_json(url: str, token: str | None, timeout: float = 5) -> object:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    request = urllib.request.Request(url, headers=headers)
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read())


RAY_LINE = "2026-01-02 03:04:05,678\tINFO job_manager.py:581 -- Runtime env is setting up.\n"


def test_the_entrypoint_passes_every_argument_untouched(tmp_path: Path) -> None:
    """As Ray runs it (`/bin/sh -c`), without a cluster."""
    argv = [sys.executable, "-c", "import sys, json; print(json.dumps(sys.argv[1:]))",
            *TRICKY_ARGS]  # fmt: skip
    done = subprocess.run(
        ["/bin/sh", "-c", entrypoint(argv, 60)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "TMPDIR": str(tmp_path)},
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == TRICKY_ARGS
    assert list(tmp_path.iterdir()) == [], "its work dir went with it"
    failed = subprocess.run(["/bin/sh", "-c", entrypoint(["sh", "-c", "exit 7"], 60)])
    assert failed.returncode == 7, "the job's exit code is the entrypoint's"
    timed_out = subprocess.run(["/bin/sh", "-c", entrypoint(["sleep", "30"], -3)])
    assert timed_out.returncode == 124, "the node's own timer (1 s here): timeout(1)'s code"


def test_the_log_stream_gives_the_jobs_output_once() -> None:
    marker = entrypoint_marker("job1", "echo 'a\nb'")
    stream = LogStream(marker)
    assert list(stream.feed(RAY_LINE, final=False)) == [], "nothing before Ray names the command"
    early = RAY_LINE + "fast\n" + marker + "one\ntw"
    assert list(stream.feed(early, final=False)) == [b"fast\n", b"one\n"], "a partial line waits"
    assert list(stream.feed(early + "o\nthree", final=False)) == [b"two\n"]
    assert list(stream.feed(early + "o\nthree", final=True)) == [b"three"]
    resumed = LogStream(marker, skip=2)  # a new server that logged `fast` and `one` already
    assert list(resumed.feed(early + "o\nthree", final=True)) == [b"two\n", b"three"]
    long = LogStream(marker)
    text = marker + "x" * (MAX_LINE_BYTES + 10) + "\n"
    assert [len(p) for p in long.feed(text[:-5], final=False)] == [MAX_LINE_BYTES]
    assert [len(p) for p in long.feed(text, final=False)] == [11]
    never = LogStream(marker)  # Ray failed the job before its command ran
    assert list(never.feed(RAY_LINE, final=True)) == []


class RayCluster:
    """A head and one more node, started by `ray start --block`, each in a session of its
    own."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.token = secrets.token_hex(32)
        self.env = {**env, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token}
        self.port, self.dashboard_port = free_port(), free_port()
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def _start(self, name: str, *args: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (kept by the process)
        self.processes.append(subprocess.Popen(
            [RAY, "start", *args, "--num-cpus", "2", "--disable-usage-stats", "--block",
             "--object-store-memory", str(80 * 1024**2),
             "--dashboard-agent-listen-port", str(free_port())],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=self.root,
        ))  # fmt: skip

    def start(self) -> None:
        self._start("head", "--head", "--node-ip-address", "127.0.0.1", "--port",
                    str(self.port), "--dashboard-port", str(self.dashboard_port),
                    "--dashboard-host", "127.0.0.1", "--ray-client-server-port",
                    str(free_port()), "--temp-dir", str(self.root / "tmp"),
                    "--min-worker-port", "10002", "--max-worker-port", "10999")  # fmt: skip
        self.wait_for(lambda nodes: True, "the head's dashboard")
        self._start("worker", "--address", f"127.0.0.1:{self.port}", "--resources",
                    '{"worker": 1}', "--min-worker-port", "11000",
                    "--max-worker-port", "11999")  # fmt: skip
        self.wait_for(lambda nodes: len(nodes) == 2, "two live nodes")

    def nodes(self) -> list[dict]:
        nodes = get_json(f"{self.dashboard}/api/v0/nodes", self.token)
        rows = nodes["data"]["result"]["result"]  # type: ignore[index]
        return [row for row in rows if row["state"] == "ALIVE"]

    def wait_for(self, done, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"ray start exited: see {self.root}/*.log")
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                if done(self.nodes()):
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the Ray cluster did not come up ({what}) in {timeout}s")

    def jobs(self) -> dict[str, dict]:
        """Ray's own job list, by submission id."""
        return {job["submission_id"]: job for job in get_json(f"{self.dashboard}/api/jobs/",
                                                              self.token)
                if job.get("submission_id")}  # type: ignore[union-attr]  # fmt: skip

    def stop(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for process in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.processes.clear()
        time.sleep(1)  # Ray's watchers end the job drivers (their own sessions) within 1 s

    def restart(self) -> None:
        """Both nodes anew on the same ports: a head that went away and came back."""
        self.stop()
        self.start()


@pytest.fixture(scope="session")
def ray_cluster(uv_cache: Path, wheel_index: Path) -> Iterator[RayCluster]:
    if NO_RAY:
        pytest.skip("ray is not installed (pip install 'ray[default]')")
    if not python_available("3.12"):
        pytest.skip("Python 3.12 is not installed on this machine")
    root = Path(tempfile.mkdtemp(prefix="hfuv-ray-"))  # short: Ray's socket paths live in it
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "PYENV_ROOT", "TMPDIR", "SSL_CERT_FILE")
    env = {key: os.environ[key] for key in keep if key in os.environ}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # its uv
    env.update(UV_CACHE_DIR=str(uv_cache), UV_FIND_LINKS=str(wheel_index), UV_NO_INDEX="1",
               UV_PYTHON_DOWNLOADS="never", RAY_JOB_STOP_WAIT_TIME_S="2")  # fmt: skip
    from tests.conftest import PYENV_VERSION

    if PYENV_VERSION:
        env["PYENV_VERSION"] = PYENV_VERSION
    cluster = RayCluster(root, env)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def ray_token(ray_cluster: RayCluster, monkeypatch: pytest.MonkeyPatch) -> None:
    """hfuv server finds the cluster's token in its environment."""
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_cluster.token)


@pytest.fixture
def ray_server(ray_cluster: RayCluster, ray_token: None, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "data", "--runtime", "ray", "--ray-address",
                           ray_cluster.dashboard).start()  # fmt: skip
    yield server
    server.stop()


def inspect(server: ServerProcess, job_id: str) -> dict:
    result = hfuv("inspect", job_id, "--json", env=server.env())
    assert result.code == 0, result.stderr
    return result.json()


def wait_for(predicate, timeout: float = 60, step: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def test_examples_run_on_the_cluster(ray_server: ServerProcess, ray_cluster: RayCluster) -> None:
    env = ray_server.env()
    hello = hfuv("run", str(EXAMPLES / "hello.py"), env=env)
    assert hello.code == 0, hello.output
    assert hello.stdout.startswith("Hello from job ") and "on Python 3.12" in hello.stdout
    hello_id = hello.stdout.split()[3]

    failing = hfuv("run", str(EXAMPLES / "exit_code.py"), "--", "5", env=env)
    assert failing.code == 5, failing.output
    assert failing.stdout == "exiting with 5\n", "the job's stderr, in its log"
    failing_id = failing.stderr.split("job me/")[1].split()[0]

    detached = hfuv("run", "--detach", str(EXAMPLES / "show_args.py"), "--", "one", "two",
                    env=env)  # fmt: skip
    assert detached.code == 0, detached.stderr
    job_id = detached.stdout.strip()
    followed = hfuv("logs", "-f", job_id, env=env)
    assert followed.code == 0, followed.stderr
    assert followed.stdout.splitlines()[:3] == ["arg: one", "arg: two", f"env: JOB_ID={job_id}"]
    assert "env: CPU_CORES=2" in followed.stdout
    assert hfuv("logs", job_id, env=env).stdout == followed.stdout, "the stored log is the same"

    info = inspect(ray_server, job_id)
    assert info["status"]["stage"] == "COMPLETED"
    message = info["status"]["message"]
    assert "reserved on the Ray cluster: 2 CPUs, 16 GiB memory" in message
    failed = inspect(ray_server, failing_id)["status"]
    assert failed["stage"] == "ERROR"
    assert failed["message"].startswith("Job failed with exit code: 5")

    ray_jobs = ray_cluster.jobs()
    assert ray_jobs[hello_id]["status"] == "SUCCEEDED"
    assert ray_jobs[failing_id]["status"] == "FAILED"
    assert ray_jobs[failing_id]["driver_exit_code"] == 5
    assert ray_jobs[job_id]["status"] == "SUCCEEDED"
    assert ray_jobs[job_id]["metadata"]["hfuv_job"] == job_id


def test_the_job_has_a_work_dir_of_its_own_and_the_cluster_token(ray_server: ServerProcess) -> None:
    code = (
        "import os\nprint(os.getcwd() == os.environ['HFUV_WORKDIR'], os.getcwd())\n"
        "print('token' if os.environ.get('RAY_AUTH_TOKEN') else 'no token')\n"
    )
    script = write(Path(ray_server.data_dir).parent / "where.py", code)
    result = hfuv("run", str(script), env=ray_server.env())
    assert result.code == 0, result.output
    same, workdir = result.stdout.splitlines()[0].split()
    assert same == "True" and Path(workdir).name.startswith("hfuv-job-")
    assert not Path(workdir).exists(), "the node's work dir goes with the job"
    # Ray gives its jobs the cluster's token (its drivers need it): a job can call the
    # dashboard's API, and read other jobs' env there (see the README).
    assert result.stdout.splitlines()[1] == "token"


def test_the_dashboard_needs_the_token(ray_cluster: RayCluster, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as refused:
        get_json(f"{ray_cluster.dashboard}/api/jobs/", None)
    assert refused.value.code == 401
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    server = ServerProcess(tmp_path / "data", "--runtime", "ray", "--ray-address",
                           ray_cluster.dashboard)  # fmt: skip
    with pytest.raises(RuntimeError) as failed:
        server.start()
    assert failed.value.args[0].strip() == (
        f"error: --runtime ray cannot run jobs here: the Ray head at {ray_cluster.dashboard} "
        "refused hfuv server's request (401); give its token in RAY_AUTH_TOKEN (hint: check that "
        "the cluster runs and --ray-address is its head's dashboard, port 8265)"
    )


def test_tokens_of_several_users_need_insecure_shared_host(
    ray_cluster: RayCluster, ray_token: None, tmp_path: Path
) -> None:
    result = hfuv("server", "--runtime", "ray", "--ray-address", ray_cluster.dashboard, "--port",
                  "0", "--data-dir", str(tmp_path / "data"), "--tokens-file",
                  str(write(tmp_path / "tokens", "alice=a-token\nbob=b-token\n")),
                  timeout=60)  # fmt: skip
    assert result.code == 2
    assert result.stderr.splitlines()[-1] == (
        "error: tokens of 2 users (alice, bob) on the ray runtime: every job on a Ray cluster can "
        "read every other job's env and secrets (Ray gives its jobs the cluster's token, and its "
        "jobs API shows each job's runtime env) (hint: give tokens of one user (a cluster per "
        "user), or pass --insecure-shared-host to accept that)"
    )


def test_each_attempt_is_a_ray_job_of_its_own(
    ray_server: ServerProcess, ray_cluster: RayCluster
) -> None:
    result = hfuv("run", "--attempts", "2", str(EXAMPLES / "exit_code.py"), "--", "4",
                  env=ray_server.env())  # fmt: skip
    assert result.code == 4, result.output
    job_id = result.stderr.split("job me/")[1].split()[0]
    log = hfuv("logs", job_id, env=ray_server.env()).stdout
    assert log.count("exiting with 4\n") == 2 and "Attempt 2 of 2" in log, log
    status = inspect(ray_server, job_id)["status"]
    assert status["message"] == "Job failed with exit code: 4 (attempt 2 of 2)"
    ray_jobs = ray_cluster.jobs()
    assert ray_jobs[job_id]["driver_exit_code"] == 4
    assert ray_jobs[f"{job_id}-attempt-2"]["driver_exit_code"] == 4


def test_every_argument_reaches_the_script_exactly(ray_server: ServerProcess) -> None:
    script = EXAMPLES / "show_args.py"
    result = hfuv("run", str(script), "--", *TRICKY_ARGS, env=ray_server.env())
    assert result.code == 0, result.output
    shown = "".join(f"arg: {arg}\n" for arg in TRICKY_ARGS)
    assert result.stdout.startswith(shown), result.stdout


def test_official_client_and_cancel(ray_server: ServerProcess, ray_cluster: RayCluster) -> None:
    from huggingface_hub import HfApi

    api = HfApi(endpoint=ray_server.url, token=ServerProcess.TOKENS["me"])
    job = api.run_job(image="python:3.12", command=["python3", "-c", COUNT], namespace="me")
    followed = list(api.fetch_job_logs(job_id=job.id, namespace="me", follow=True))
    assert followed == ["line 0", "line 1", "line 2"]
    info = api.inspect_job(job_id=job.id, namespace="me")
    assert info.status.stage == "COMPLETED"
    assert "image python:3.12 is not used" in (info.status.message or "")

    env = {**os.environ, **ray_server.env(), "HF_HUB_DISABLE_UPDATE_CHECK": "1",
           "HF_HUB_DISABLE_TELEMETRY": "1", "NO_COLOR": "1"}  # fmt: skip
    run = subprocess.run([HF, "jobs", "run", "python:3.12", "python3", "-c",
                          "print('from hf jobs run')"], env=env, capture_output=True, text=True,
                         timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "from hf jobs run" in run.stdout

    sleeper = api.run_job(image="python:3.12", command=["sleep", "60"], namespace="me")
    wait_for(lambda: api.inspect_job(job_id=sleeper.id, namespace="me").status.stage
             == "RUNNING")  # fmt: skip
    api.cancel_job(job_id=sleeper.id, namespace="me")
    wait_for(lambda: api.inspect_job(job_id=sleeper.id, namespace="me").status.stage
             == "CANCELED", timeout=20)  # fmt: skip
    ray_jobs = ray_cluster.jobs()
    assert ray_jobs[sleeper.id]["status"] == "STOPPED"
    assert ray_jobs[job.id]["status"] == "SUCCEEDED"
    ran = [j for j in ray_jobs.values() if "from hf jobs run" in j["entrypoint"]]
    assert len(ran) == 1 and ran[0]["status"] == "SUCCEEDED"


def test_a_ray_job_stopped_on_the_cluster_is_said_plainly(
    ray_server: ServerProcess, ray_cluster: RayCluster
) -> None:
    script = write(Path(ray_server.data_dir).parent / "slow.py", SLOW)
    job_id = hfuv("run", "--detach", str(script), "--", "600", "0.2",
                  env=ray_server.env()).stdout.strip()  # fmt: skip
    wait_for(lambda: "line 1" in hfuv("logs", job_id, env=ray_server.env()).stdout)
    stop = urllib.request.Request(
        f"{ray_cluster.dashboard}/api/jobs/{job_id}/stop",
        b"",
        headers={"authorization": f"Bearer {ray_cluster.token}"},
    )
    urllib.request.urlopen(stop, timeout=10).read()  # as `ray job stop` does
    status = wait_for(lambda: (s := inspect(ray_server, job_id)["status"])["stage"] == "ERROR"
                      and s, timeout=20)  # fmt: skip
    assert status["message"] == ("Job lost: the Ray job was stopped on the cluster (ray job stop, "
                                 "or the dashboard), not through hfuv")  # fmt: skip


def test_output_that_is_not_utf8_stops_the_log_where_it_begins(ray_server: ServerProcess) -> None:
    """A limit of Ray's logs API (it reads the log as text), as the README says."""
    code = ("import sys, time\nprint('before', flush=True)\ntime.sleep(3)\n"
            "sys.stdout.buffer.write(b'\\xff\\n')\nprint('after')\n")  # fmt: skip
    script = write(Path(ray_server.data_dir).parent / "bytes.py", code)
    result = hfuv("run", str(script), env=ray_server.env())
    assert result.code == 0, result.output
    assert result.stdout == "before\n"


def test_a_sweep_of_16_keeps_every_log_whole(
    ray_server: ServerProcess, ray_cluster: RayCluster
) -> None:
    script = write(
        Path(ray_server.data_dir).parent / "lines.py",
        "import sys\nfor n in range(40):\n    print(f'job {sys.argv[1]} line {n}')\n",
    )
    values = ",".join(str(i) for i in range(16))
    started = hfuv("run", "--detach", str(script), "--matrix", f"i={values}", "--", "{i}",
                   env=ray_server.env())  # fmt: skip
    assert started.code == 0, started.stderr
    sweep_id = started.stdout.strip()
    waited = hfuv("wait", "--sweep", sweep_id, env=ray_server.env(), timeout=300)
    assert waited.code == 0, waited.stdout + waited.stderr
    assert waited.stdout.count("COMPLETED") == 16
    jobs = hfuv("ps", "--sweep", sweep_id, "--json", env=ray_server.env()).json()
    ray_jobs = ray_cluster.jobs()
    assert sorted(ray_jobs[job["id"]]["status"] for job in jobs) == ["SUCCEEDED"] * 16
    for index in range(16):
        log = hfuv("logs", "--sweep", sweep_id, "--index", str(index), env=ray_server.env())
        assert log.stdout == "".join(f"job {index} line {n}\n" for n in range(40))


def test_what_the_cluster_cannot_give_is_refused_at_create(ray_server: ServerProcess) -> None:
    script = EXAMPLES / "hello.py"
    big = hfuv("run", str(script), "--flavor", "cpu-upgrade", env=ray_server.env())
    assert big.code == 1
    assert "flavor cpu-upgrade needs 8 CPUs, 32 GiB memory on one node; no node of the Ray " \
           "cluster at http://127.0.0.1:" in big.stderr  # fmt: skip
    assert "(its largest: 2 CPUs," in big.stderr
    gpu = hfuv("run", str(script), "--flavor", "t4-small", env=ray_server.env())
    assert gpu.code == 1 and "needs 4 CPUs, 15 GiB memory, 1 GPU on one node" in gpu.stderr
    exposed = hfuv("exec", "--detach", "--expose", "8000", "python:3.12", "--", "true",
                   env=ray_server.env())  # fmt: skip
    assert exposed.code == 1 and "the ray runtime cannot publish a job's ports" in exposed.stderr
    volume = {"type": "dataset", "source": "org/ds", "mountPath": "/d"}
    body = {"command": ["true"], "dockerImage": "python:3.12", "volumes": [volume]}
    request = urllib.request.Request(f"{ray_server.url}/api/jobs/me", json.dumps(body).encode(),
                                     headers={"authorization": "Bearer token-me",
                                              "content-type": "application/json"})  # fmt: skip
    with pytest.raises(urllib.error.HTTPError) as mounted:
        urllib.request.urlopen(request, timeout=10)
    assert mounted.value.code == 400
    assert "the ray runtime cannot mount a volume" in json.loads(mounted.value.read())["error"]
    assert hfuv("ps", "-a", "--json", env=ray_server.env()).json() == [], "nothing was created"


def test_timeout_stops_the_ray_job(ray_server: ServerProcess, ray_cluster: RayCluster) -> None:
    code = "import os\nprint(os.environ['HFUV_WORKDIR'], flush=True)\n" + SLOW
    script = write(Path(ray_server.data_dir).parent / "slow.py", code)
    result = hfuv("run", str(script), "--timeout", "4", "--", "100", "0.5", env=ray_server.env())
    assert result.code == 124, result.output
    job_id = result.stderr.split("job me/")[1].split()[0]
    status = inspect(ray_server, job_id)["status"]
    assert status["stage"] == "ERROR" and status["message"] == "Job timeout"
    workdir, first = result.stdout.splitlines()[:2]
    assert first == "line 0"
    wait_for(lambda: ray_cluster.jobs()[job_id]["status"] == "STOPPED", timeout=15)
    assert not Path(workdir).exists(), "a stopped job's work dir goes too"


def test_schedules_webhooks_and_submission_keys(ray_server: ServerProcess,
                                                ray_cluster: RayCluster) -> None:  # fmt: skip
    from tests.test_schedules import schedule
    from tests.test_webhooks import EVENT, REACTOR, post_event

    env, folder = ray_server.env(), Path(ray_server.data_dir).parent
    tick = schedule(ray_server, write(folder / "tick.py", "print('tick')\n"), "@yearly")
    triggered = hfuv("schedule", "trigger", tick, env=env)
    assert triggered.code == 0, triggered.stderr
    scheduled = triggered.stdout.strip()
    assert hfuv("wait", scheduled, env=env).code == 0
    assert hfuv("logs", scheduled, env=env).stdout == "tick\n"

    source = hfuv("run", str(write(folder / "react.py", REACTOR)), "--detach",
                  env=env).stdout.strip()  # fmt: skip
    created = hfuv("webhook", "create", "--watch", "dataset:org/ds", "--domain", "repo",
                   "--job-id", f"me/{source}", "--secret", "sig", env=env)  # fmt: skip
    assert created.code == 0, created.stderr
    status, answer = post_event(ray_server, created.stdout.strip(), EVENT, "sig")
    assert status == 200 and len(answer["jobs"]) == 1
    reacted = answer["jobs"][0]
    assert hfuv("wait", reacted, env=env).code == 0
    assert hfuv("logs", reacted, env=env).stdout == "repo org/ds dataset update secret\n"

    key = ["--submission-key", "nightly-1"]
    first = hfuv("run", "--detach", *key, str(EXAMPLES / "hello.py"), env=env)
    again = hfuv("run", "--detach", *key, str(EXAMPLES / "hello.py"), env=env)
    assert first.code == again.code == 0, first.stderr + again.stderr
    assert first.stdout == again.stdout, "one job for one submission key"
    assert hfuv("wait", first.stdout.strip(), env=env).code == 0
    ray_jobs = ray_cluster.jobs()
    for job_id in (scheduled, reacted, first.stdout.strip()):
        assert ray_jobs[job_id]["status"] == "SUCCEEDED"


class Gate:
    """A TCP forwarder on 127.0.0.1 to the dashboard that can be closed (connections refused,
    open ones cut) and opened again: a head that goes away for a while."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):  # wakes its accept(), which close() would not
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        for sock in self._open:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._open += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)


def test_a_head_out_of_reach_and_a_server_restart_lose_no_line(
    ray_cluster: RayCluster, ray_token: None, tmp_path: Path
) -> None:
    gate = Gate(ray_cluster.dashboard_port)
    gate.open()
    server = ServerProcess(tmp_path / "data", "--runtime", "ray", "--ray-address", gate.url)
    server.start()
    try:
        script = write(tmp_path / "slow.py", SLOW)
        job_id = hfuv("run", "--detach", str(script), "--", "30", "0.3",
                      env=server.env()).stdout.strip()  # fmt: skip
        wait_for(lambda: "line 3" in hfuv("logs", job_id, env=server.env()).stdout)
        gate.close()
        message = wait_for(lambda: "does not answer" in (m := inspect(server, job_id)["status"]
                                                          ["message"] or "") and m)  # fmt: skip
        assert message.startswith(f"the Ray head at {gate.url} does not answer")
        assert "since " in message and "its log goes on from where it stopped" in message
        time.sleep(2)
        server.kill()  # and a new server, while the head is still out of reach
        gate.open()
        server = ServerProcess(tmp_path / "data", "--runtime", "ray", "--ray-address", gate.url,
                               port=server.port)  # fmt: skip
        server.start()
        assert hfuv("wait", job_id, env=server.env(), timeout=60).code == 0
        log = hfuv("logs", job_id, env=server.env()).stdout
        assert log == "".join(f"line {i}\n" for i in range(30)), "nothing lost or repeated"
        assert inspect(server, job_id)["status"]["stage"] == "COMPLETED"
    finally:
        server.stop()
        gate.close()


def test_a_restarted_head_that_lost_the_job_is_said_plainly(
    ray_cluster: RayCluster, ray_token: None, tmp_path: Path
) -> None:
    """Last in the module: it restarts the cluster."""
    server = ServerProcess(tmp_path / "data", "--runtime", "ray", "--ray-address",
                           ray_cluster.dashboard).start()  # fmt: skip
    try:
        code = "import os\nprint(os.environ['HFUV_WORKDIR'], flush=True)\n" + SLOW
        script = write(tmp_path / "slow.py", code)
        job_id = hfuv("run", "--detach", str(script), "--", "600", "0.2",
                      env=server.env()).stdout.strip()  # fmt: skip
        wait_for(lambda: "line 2" in hfuv("logs", job_id, env=server.env()).stdout)
        workdir = Path(hfuv("logs", job_id, env=server.env()).stdout.splitlines()[0])
        ray_cluster.restart()
        assert workdir.is_dir(), "a job killed with its node leaves its work dir (README)"
        shutil.rmtree(workdir)
        status = wait_for(lambda: (s := inspect(server, job_id)["status"])["stage"] == "ERROR"
                          and s, timeout=60)  # fmt: skip
        assert status["message"].startswith(
            f"Job lost: the Ray cluster at {ray_cluster.dashboard} no longer knows the Ray job "
            f"{job_id} (its head did not answer from "
        ), status["message"]
        assert "what happened to the job after its last logged line is unknown" in status["message"]
        log = hfuv("logs", job_id, env=server.env()).stdout.splitlines()
        assert log[1:4] == ["line 0", "line 1", "line 2"], "the record keeps its log"
        assert hfuv("run", str(EXAMPLES / "hello.py"), env=server.env()).code == 0
    finally:
        server.stop()
