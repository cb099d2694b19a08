"""Isolation: one user's job cannot read another's secrets, logs or code, the server's data dir or
tokens, nor change what the other's next run executes. The same attack runs on every runtime."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess, free_port, hfuv, python_available, write
from tests.images import needs_podman, uv_image

ALICE_SECRET = "alice-secret-0f9c2e"
TOKENS = {"alice": "token-alice-7d1b", "bob": "token-bob-44a0"}
JOB_UID_BASE = 1_879_048_192

ALICE_SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import hfuv_demo_a

print("alice runs her own code:", hfuv_demo_a.VALUE)
"""

# Bob's job: every way to alice's secrets, the server's tokens and alice's code it can think of.
# It prints one JSON object: what it reached (a leak) and what it changed (a write it should not
# have been able to make).
ATTACK = r"""
import json, os, signal, sys
targets = json.loads(sys.argv[1])
own = os.path.realpath(os.getcwd())
leaks, writes = [], []
markers = [m[::-1].encode() for m in targets["markers"]]  # reversed: not in our own argv

def read(path):
    try:
        if os.path.isdir(path):
            return "\n".join(os.listdir(path)).encode()
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None

for path in targets["private"]:
    if read(path) is not None:
        leaks.append(path)
for entry in os.listdir("/proc"):
    if entry.isdigit():
        for name in ("environ", "cmdline"):
            data = read(f"/proc/{entry}/{name}") or b""
            if any(m in data for m in markers):
                leaks.append(f"/proc/{entry}/{name}")
if targets["server_pid"]:
    for name in ("environ",):
        if read(f"/proc/{targets['server_pid']}/{name}") is not None:
            leaks.append(f"/proc/server/{name}")
    try:
        os.kill(targets["server_pid"], 0)
        leaks.append("could signal the server")
    except OSError:
        pass
def mine(folder):
    try:
        return os.stat(folder).st_uid == os.getuid() != 0
    except OSError:
        return False

for root in targets["writable_roots"]:
    for folder, dirs, files in [(root, [], [])] + list(os.walk(root)):
        if os.path.realpath(folder).startswith(own) or mine(folder):
            continue  # bob's own work dir and caches
        for name in files:
            path = os.path.join(folder, name)
            try:
                with open(path, "ab") as handle:
                    handle.write(b"\nprint('bob was here')\n")
                writes.append(path)
            except OSError:
                pass
        try:
            with open(os.path.join(folder, "bob-was-here"), "w"):
                writes.append(folder)
        except OSError:
            pass
print(json.dumps({"leaks": leaks, "writes": writes}))
"""


def runnable(minor: str) -> bool:
    """Whether a user with no rights of its own can run python`minor` from /usr(/local)/bin."""
    for folder in ("/usr/local/bin", "/usr/bin"):
        path = (Path(folder) / f"python{minor}").resolve()
        if path.exists() and all(p.stat().st_mode & stat.S_IXOTH for p in (path, *path.parents)):
            return True
    return False


def reachable_python() -> str | None:
    """A Python X.Y every user may run (pyenv's live in root's 0700 home here)."""
    return next((m for m in ("3.13", "3.12", "3.11", "3.10") if runnable(m)), None)


@pytest.fixture
def shared_place(wheel_index: Path) -> Iterator[Path]:
    """A folder every user can pass through (pytest's own tmp is 0700), with the wheels."""
    place = Path(tempfile.mkdtemp(prefix="hfuv-isolation-"))
    place.chmod(0o755)
    shutil.copytree(wheel_index, place / "wheels")
    for path in (place / "wheels", *(place / "wheels").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    yield place
    shutil.rmtree(place, ignore_errors=True)


def runtimes() -> list[object]:
    engine = importlib.util.find_spec("hfuv.runtime.engine") is not None
    return [
        pytest.param("host", marks=pytest.mark.skipif(
            os.geteuid() != 0, reason="jobs run as users of their own only on a root server")),
        pytest.param("podman", marks=[needs_podman(), pytest.mark.skipif(
            not engine, reason="hfuv.runtime.engine (the podman runtime) has not landed")]),
    ]  # fmt: skip


@pytest.mark.parametrize("runtime", runtimes())
def test_bobs_job_cannot_reach_alices_secrets_the_server_or_her_code(
    runtime: str, tmp_path: Path, shared_place: Path
) -> None:
    if runtime == "host":
        image, python = "ubuntu", reachable_python()  # the image is not used on the host
        if python is None:
            pytest.skip("no Python 3.10+ that every user may run (e.g. /usr/bin/python3.11)")
        script = write(tmp_path / "alice.py", ALICE_SCRIPT)
    else:  # the image's Python; packages from the host's find-links do not reach a container
        image, python = uv_image(), "3.13"
        script = write(tmp_path / "alice.py", ALICE_SCRIPT.replace('["hfuv-demo-a"]', "[]")
                       .replace("import hfuv_demo_a\n", "")
                       .replace("hfuv_demo_a.VALUE", "'a-1.1.0'"))  # fmt: skip
    data = shared_place / "data"
    server, env = start_server(data, shared_place, *(["--runtime", runtime] * (runtime != "host")))
    try:
        alice = {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKENS["alice"],  # her lock names
                 "ALICE_SECRET": ALICE_SECRET, "UV_FIND_LINKS": env["UV_FIND_LINKS"]}  # fmt: skip
        bob = {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKENS["bob"]}
        alice_run = ["run", str(script), "--python", python, "--image", image, "-s", "ALICE_SECRET"]
        first = hfuv(*alice_run, env=alice)
        assert first.code == 0, first.stderr
        assert "alice runs her own code: a-1.1.0" in first.stdout
        first_job = alice_jobs(server)[-1]

        # Alice's job runs, with her secret in its environment, while bob's job attacks.
        sleeping = hfuv("exec", "--detach", "-s", "ALICE_SECRET", image, "--", "python3",
                        "-c", "import time; time.sleep(120)", env=alice)  # fmt: skip
        assert sleeping.code == 0, sleeping.stderr
        alice_job = sleeping.stdout.strip().split("/")[-1]
        wait_for_stage(server, "alice", alice_job, "RUNNING")
        private = [str(data), str(data / "jobs.db"), str(data / "jobs.db-wal"),
                   str(data / "logs"), str(data / "logs" / f"{first_job}.jsonl"),
                   str(data / "work" / first_job), str(data / "work" / alice_job),
                   str(data / "users" / str(JOB_UID_BASE)), str(data / "token")]  # fmt: skip
        targets = {
            "markers": [marker[::-1] for marker in (ALICE_SECRET, *TOKENS.values())],
            "private": private,
            "server_pid": server.process.pid,
            "writable_roots": [str(data), str(data / "users" / str(JOB_UID_BASE)),
                               str(data / "work" / first_job), os.environ["UV_CACHE_DIR"],
                               os.environ["HFUV_CACHE_DIR"], str(shared_place)],
        }  # fmt: skip
        attack = hfuv("exec", image, "--", "python3", "-c", ATTACK, json.dumps(targets),
                      env=bob)  # fmt: skip
        assert attack.code == 0, attack.output
        found = json.loads(attack.stdout.strip().splitlines()[-1])
        assert found == {"leaks": [], "writes": []}

        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert not any(token.encode() in cmdline for token in TOKENS.values())
        again = hfuv(*alice_run, env=alice)
        assert again.code == 0, again.stderr
        assert "alice runs her own code: a-1.1.0" in again.stdout
        assert "bob was here" not in again.output
        assert hfuv("cancel", alice_job, env=alice).code == 0  # a container outlives a server
        wait_for_stage(server, "alice", alice_job, "CANCELED")
    finally:
        server.stop()


def start_server(data: Path, shared_place: Path, *extra: str) -> tuple[ServerProcess, dict]:
    """A server for alice and bob, tokens out of its argv, the wheels where all can read them."""
    server = ServerProcess(data, *extra)
    env = dict(
        os.environ,
        HFUV_SERVER_KEEPALIVE="1",
        HFUV_SERVER_TOKENS=" ".join(f"{user}={token}" for user, token in TOKENS.items()),
        UV_FIND_LINKS=str(shared_place / "wheels"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    )
    server.process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "server", "--port", str(server.port), "--data-dir",
         str(data), *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        server.wait_until_up(TOKENS["alice"])
    except BaseException:
        server.kill()
        raise
    return server, env


def alice_jobs(server: ServerProcess) -> list[str]:
    """Alice's job ids, oldest first."""
    import httpx

    listed = httpx.get(f"{server.url}/api/jobs/alice",
                       headers={"authorization": f"Bearer {TOKENS['alice']}"}).json()  # fmt: skip
    return [job["id"] for job in reversed(listed)]


def wait_for_stage(server: ServerProcess, namespace: str, job_id: str, stage: str) -> None:
    import httpx

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        info = httpx.get(f"{server.url}/api/jobs/{namespace}/{job_id}",
                         headers={"authorization": f"Bearer {TOKENS['alice']}"}).json()  # fmt: skip
        if info["status"]["stage"] == stage:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} never reached {stage}")


@pytest.mark.skipif(os.geteuid() != 0, reason="jobs run as users of their own on a root server")
def test_a_python_out_of_the_job_users_reach_fails_the_start_saying_so(
    tmp_path: Path, shared_place: Path
) -> None:
    hidden = [m for m in ("3.12", "3.13", "3.10") if python_available(m) and not runnable(m)]
    if not hidden:
        pytest.skip("every installed Python is one all users can run")
    server, _ = start_server(shared_place / "data", shared_place)
    try:
        env = {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKENS["alice"]}
        script = write(tmp_path / "plain.py", "print('never')\n")
        result = hfuv("run", str(script), "--python", hidden[0], env=env)
        assert result.code != 0 and "never" not in result.stdout
        assert (
            f"Job failed to start: Python {hidden[0]} is not installed where the job's own user "
            "can run it"
        ) in result.stderr
    finally:
        server.stop()


@pytest.mark.skipif(os.geteuid() != 0, reason="jobs run as users of their own on a root server")
def test_a_data_dir_out_of_the_job_users_reach_is_said_at_start_and_at_each_job(
    tmp_path: Path, shared_place: Path
) -> None:
    closed = tmp_path.parents[1]  # pytest's tmp root: 0700
    assert stat.S_IMODE(closed.stat().st_mode) & 0o001 == 0
    server, _ = start_server(tmp_path / "data", shared_place)
    try:
        env = {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKENS["alice"]}
        result = hfuv("exec", "ubuntu", "--", "echo", "never", env=env)
        assert result.code != 0 and "never" not in result.stdout
        assert f"its folders in {tmp_path / 'data' / 'work'}: {closed} is closed" in result.stderr
    finally:
        server.stop()
    assert server.process is not None and server.process.stderr is not None
    assert f"and {closed} is closed to other users" in server.process.stderr.read()


def test_a_server_that_is_not_root_refuses_tokens_of_two_users(shared_place: Path) -> None:
    python = shutil.which(f"python{sys.version_info.major}.{sys.version_info.minor}",
                          path="/usr/local/bin:/usr/bin")  # fmt: skip
    if os.geteuid() != 0 or shutil.which("setpriv") is None or python is None:
        pytest.skip("needs root, setpriv and a system Python of this minor to run as nobody")
    site = next(p for p in sys.path if p.endswith("site-packages"))
    root = Path(__file__).resolve().parent.parent
    data = shared_place / "data"
    writable = shared_place / "nobody"
    writable.mkdir()
    writable.chmod(0o777)
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{site}", HFUV_CACHE_DIR=str(writable),
               HFUV_SERVER_TOKENS="alice=a1 bob=b1")  # fmt: skip
    as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", python, "-m",
                 "hfuv", "server", "--port", str(free_port()), "--data-dir", str(data)]  # fmt: skip
    refused = subprocess.run(as_nobody, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert refused.stderr.count("\n") == 1 and refused.stderr.startswith("error: tokens of 2 ")
    assert "--insecure-shared-host" in refused.stderr and "Traceback" not in refused.stderr
    assert not data.exists()

    data = writable / "data"
    started = subprocess.Popen([*as_nobody[:-1], str(data), "--insecure-shared-host"],
                               env=env, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert started.stderr is not None
        line = started.stderr.readline()
        assert "for alice, bob" in line and "jobs as uid 65534" in line
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
    finally:
        started.kill()
        started.wait()


def test_data_dir_is_tightened_and_tokens_stay_out_of_argv(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write(data / "logs" / "old.jsonl", "{}\n").chmod(0o644)
    write(data / "token", "me=x\n").chmod(0o644)
    (data / "work" / "old-job").mkdir(parents=True)
    (data / "work" / "old-job").chmod(0o755)
    data.chmod(0o755)
    tokens_file = write(tmp_path / "tokens", "me=token-me\nother=token-other\n")
    server = ServerProcess(data, "--tokens-file", str(tokens_file), "--token", "third=token-3")
    server.TOKENS = {}
    server.start()
    try:
        me = {"HF_ENDPOINT": server.url, "HF_TOKEN": "token-me"}
        assert hfuv("exec", "ubuntu", "--", "true", env=me).code == 0
        cmdline = Path(f"/proc/{server.process.pid}/cmdline").read_bytes()
        assert b"token-me" not in cmdline and b"token-other" not in cmdline
    finally:
        server.stop()
    assert server.process is not None and server.process.stderr is not None
    stderr = server.process.stderr.read()
    assert "warning: --token puts tokens in this server's command line" in stderr
    assert f"warning: --tokens-file {tokens_file} is readable by other users (mode 0644)" in stderr
    work = data / "work"
    modes = {path.relative_to(data).as_posix(): stat.S_IMODE(path.stat().st_mode)
             for path in [data, *data.rglob("*")] if path.parent.parent != work}  # fmt: skip
    assert modes["."] == 0o700 and modes["jobs.db"] == 0o600 and modes["token"] == 0o600
    assert modes["logs"] == 0o700 and modes["logs/old.jsonl"] == 0o600
    assert modes["work/old-job"] == 0o700
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_a_local_run_rebuilds_a_code_dir_whose_files_changed(tmp_path: Path) -> None:
    script = write(
        tmp_path / "mine.py", "# /// script\n# dependencies = []\n# ///\nprint('mine')\n"
    )
    assert hfuv("run", str(script), "--local").stdout == "mine\n"
    (shipped,) = (Path(os.environ["HFUV_CACHE_DIR"]) / "code").glob("*/mine.py")
    for tampered in ("print('changed behind my back')\n", None):
        if tampered is None:  # an extra file beside the code counts as a change too
            write(shipped.parent / "sitecustomize.py", "print('planted')\n")
        else:
            shipped.write_text(tampered)
        again = hfuv("run", str(script), "--local")
        assert again.code == 0 and again.stdout == "mine\n", again.output
        assert shipped.read_text().endswith("print('mine')\n")
        assert not (shipped.parent / "sitecustomize.py").exists()


def test_one_token_for_two_users_is_refused(tmp_path: Path) -> None:
    result = hfuv("server", "--port", "0", "--data-dir", str(tmp_path / "d"),
                  env={"HFUV_SERVER_TOKENS": "alice=same bob=same"})  # fmt: skip
    assert (result.code, result.stdout) == (2, "")
    assert result.stderr.splitlines() == [
        "error: one token is given for two users, alice (HFUV_SERVER_TOKENS) and bob "
        "(HFUV_SERVER_TOKENS): its requests could only act as one of them (hint: give each "
        "user a token of their own)"
    ]


@pytest.mark.skipif(os.geteuid() != 0, reason="jobs run as users of their own on a root server")
def test_users_kept_apart_on_the_host_cannot_expose_host_ports(
    tmp_path: Path, shared_place: Path
) -> None:
    server, _ = start_server(shared_place / "data", shared_place, "--runtime", "host")
    try:
        env = {"HF_ENDPOINT": server.url, "HF_TOKEN": TOKENS["alice"]}
        result = hfuv("exec", "--expose", "8000", "ubuntu", "--", "true", env=env)
        assert result.code == 1 and result.stdout == ""
        assert "`expose.ports` (8000): on the host runtime a port is the host's, not the job's" \
            in result.stderr  # fmt: skip
        assert "--runtime podman" in result.stderr
    finally:
        server.stop()
