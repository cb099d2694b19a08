"""The engine runtime's flags (pure, no engine needed), the store's migration, and how
`hfuv server` and `hfuv run --local` pick their runtime."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from hfuv.runtime import Launch, Mount, containerlog
from hfuv.runtime.engine import (
    cdi_declares,
    container_env,
    engine_argv,
    parse_size,
    parse_time,
    reference_problem,
)
from hfuv.server.store import JobRecord, Store
from tests.conftest import ServerProcess, hfuv, write
from tests.images import needs_podman

SECRET = "s3cr3t-value-never-in-argv"


def launch(**overrides: object) -> Launch:
    values: dict = {
        "job_id": "0123456789abcdef01234567",
        "image": "localhost/img:1",
        "argv": ("python3", "-c", "print(1)", "--flag"),
        "env": {"HF_TOKEN": SECRET, "MODE": "x"},
        "workdir": Path("/srv/work/job"),
        "timeout_seconds": 300,
    }
    values.update(overrides)
    return Launch(**values)


def test_podman_flags_are_exact_and_hold_no_value() -> None:
    job = launch(cpus=2.0, memory_bytes=16 * 1024**3, gpus=("0", "3"), ports=(8000, 9000),
                 mounts=(Mount(Path("/data/snap"), "/data"),))  # fmt: skip
    argv = engine_argv("podman", job, {})
    assert argv == [
        "podman", "run", "-d", "--pull", "never", "--init",
        "--name", "hfuv-job-0123456789abcdef01234567",
        "--label", "hfuv.job=0123456789abcdef01234567",
        "--timeout", "300", "--log-driver", "k8s-file",
        "--env", "HF_TOKEN", "--env", "MODE",
        "--cpus", "2", "--memory", str(16 * 1024**3),
        "--device", "nvidia.com/gpu=0", "--device", "nvidia.com/gpu=3",
        "-p", "127.0.0.1::8000", "-p", "127.0.0.1::9000",
        "-v", "/data/snap:/data:ro",
        "localhost/img:1", "python3", "-c", "print(1)", "--flag",
    ]  # fmt: skip
    assert not any(SECRET in arg for arg in argv)


def test_docker_flags_gpus_as_one_quoted_field_and_a_stop_timeout() -> None:
    argv = engine_argv("docker", launch(gpus=("1", "2"), cpus=0.5), {})
    assert argv[:11] == ["docker", "run", "-d", "--pull", "never", "--init", "--name",
                         "hfuv-job-0123456789abcdef01234567", "--label",
                         "hfuv.job=0123456789abcdef01234567", "--stop-timeout"]  # fmt: skip
    assert "--timeout" not in argv  # docker has none: a watchdog process holds the timeout
    assert argv[argv.index("--gpus") + 1] == '"device=1,2"'
    assert argv[argv.index("--cpus") + 1] == "0.5"
    assert "--device" not in argv and "--memory" not in argv
    assert engine_argv("docker", launch(), {}).count("--gpus") == 0


def test_host_proxies_and_certificates_are_passed_and_the_jobs_own_values_win(
    tmp_path: Path,
) -> None:
    bundle = write(tmp_path / "corp-ca.pem", "-----BEGIN CERTIFICATE-----\n")
    host = {
        "HTTPS_PROXY": "http://proxy:3128",
        "no_proxy": "localhost",
        "HOME": "/root",
        "SSL_CERT_FILE": str(bundle),
        "REQUESTS_CA_BUNDLE": str(tmp_path / "missing.pem"),
    }
    job = launch(env={"NO_PROXY": "job-value", "PATH": "/opt/bin"})
    env = container_env(job, host)
    assert env == {"HTTPS_PROXY": "http://proxy:3128", "no_proxy": "localhost",
                   "SSL_CERT_FILE": "/run/hfuv/certs/ssl_cert_file", "NO_PROXY": "job-value",
                   "PATH": "/opt/bin"}  # fmt: skip
    argv = engine_argv("podman", job, host, env_file=tmp_path / "env")
    assert f"{bundle}:/run/hfuv/certs/ssl_cert_file:ro" in argv
    names = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--env"]
    # PATH is the engine's own variable: it reaches the container through the env file.
    assert names == ["HTTPS_PROXY", "no_proxy", "SSL_CERT_FILE", "NO_PROXY"]
    assert argv[argv.index("--env-file") + 1] == str(tmp_path / "env")


def test_stats_sizes_of_both_engines() -> None:
    assert parse_size("1.544MB ") == 1_544_000
    assert parse_size("12.5MiB") == int(12.5 * 2**20)
    assert parse_size("0B") == 0
    assert parse_size("--") == 0


def test_an_older_data_dir_gains_the_runtime_column(tmp_path: Path) -> None:
    old = sqlite3.connect(tmp_path / "jobs.db")
    old.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, namespace TEXT NOT NULL, owner TEXT NOT NULL, "
        "initiator TEXT NOT NULL, spec TEXT NOT NULL, stage TEXT NOT NULL, message TEXT, "
        "exit_code INTEGER, pid INTEGER, created_at REAL NOT NULL, started_at REAL, "
        "finished_at REAL)"
    )
    old.execute("INSERT INTO jobs VALUES ('old', 'me', '{}', '{}', '{}', 'COMPLETED', NULL, 0, "
                "NULL, 1.0, 1.0, 2.0)")  # fmt: skip
    old.commit()
    old.close()
    store = Store(tmp_path / "jobs.db")
    record = store.get("old")
    assert record is not None and record.runtime_ref is None and record.stage == "COMPLETED"
    store.create(JobRecord("new", "me", {}, {}, {}))
    store.update("new", runtime_ref="podman:hfuv-job-new")
    assert store.get("new").runtime_ref == "podman:hfuv-job-new"  # type: ignore[union-attr]
    store.close()
    Store(tmp_path / "jobs.db").close()  # opening it again adds nothing twice


def server_output(server: ServerProcess) -> str:
    server.stop()
    assert server.process is not None and server.process.stderr is not None
    return server.process.stderr.read()


def test_server_without_an_engine_warns_that_images_are_not_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HFUV_RUNTIME")
    monkeypatch.setenv("PATH", str(tmp_path / "no-engines"))
    output = server_output(ServerProcess(tmp_path / "data").start())
    assert "warning: no container engine (podman or docker) is installed: jobs run on this " \
           "host and their images are not used" in output  # fmt: skip
    assert "runtime: host (jobs run on this machine's Python; images are not used); " \
           "capacity: " in output  # fmt: skip


@needs_podman()
def test_server_defaults_to_podman_and_says_its_capacity(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HFUV_RUNTIME")
    output = server_output(ServerProcess(tmp_path / "data").start())
    assert "runtime: podman 4." in output and " CPUs, " in output and "GiB memory" in output
    assert "warning: no container engine" not in output and "does not work here" not in output


def test_server_refuses_an_engine_that_is_not_there(tmp_path: Path) -> None:
    result = hfuv("server", "--port", "0", "--data-dir", str(tmp_path / "d"), "--token", "u=t",
                  "--runtime", "docker", env={"PATH": str(tmp_path / "no-engines")})  # fmt: skip
    assert result.code == 1
    assert result.stderr.splitlines() == [
        "error: --runtime docker cannot run jobs here: docker is not installed (not found on "
        "PATH) (hint: install or repair docker, or pick another with --runtime (host, podman, "
        "docker))"
    ]
    assert not (tmp_path / "d" / "jobs.db").exists()


def test_runtime_goes_with_local_and_must_be_known(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", "print('ran')\n")
    remote = hfuv("run", str(script), "--runtime", "podman")
    assert (remote.code, remote.stdout) == (2, "")
    assert remote.stderr == "error: --runtime goes with --local (hint: add --local to run the " \
                            "job here)\n"  # fmt: skip
    unknown = hfuv("run", str(script), "--local", env={"HFUV_RUNTIME": "lxc"})
    assert (unknown.code, unknown.stdout) == (2, "")
    assert "error: HFUV_RUNTIME=lxc is not a runtime" in unknown.stderr
    bad_flag = hfuv("run", str(script), "--local", "--runtime", "lxc")
    assert bad_flag.code == 2 and "'lxc' is not one of 'host', 'podman', 'docker'" in \
        bad_flag.stderr  # fmt: skip


def test_host_stays_the_local_default_with_its_image_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HFUV_RUNTIME")
    script = write(tmp_path / "s.py", "import sys\nprint(sys.executable)\n")
    result = hfuv("run", str(script), "--local", "--image", "ubuntu:22.04", "-p", "3.12")
    assert result.code == 0, result.stderr
    assert "warning: image ubuntu:22.04 is not used here" in result.stderr
    assert "with podman" not in result.stderr


def test_a_host_job_does_not_outlive_its_timeout_with_the_server_down(tmp_path: Path) -> None:
    from tests.test_server import processes_of, wait_stage

    server = ServerProcess(tmp_path / "data", "--runtime", "host").start()
    try:
        created = hfuv("exec", "--detach", "--timeout", "2", "python:3.12", "--", "sleep", "60",
                       env=server.env())  # fmt: skip
        job_id = created.stdout.strip()
        wait_stage(server, job_id, {"RUNNING"})
        started = time.monotonic()
        server.kill()
        assert processes_of(job_id)
        while processes_of(job_id):  # the timeout, plus the 3 s grace a server would give
            assert time.monotonic() - started < 2 + 3 + 4, "the job outlived its timeout"
            time.sleep(0.2)
    finally:
        server.stop()


def test_the_container_log_joins_partial_lines_per_stream_and_skips_what_was_logged(
    tmp_path: Path,
) -> None:
    log = write(tmp_path / "ctr.log", "".join(f"2026-12-02T03:03:48.18+00:00 {line}\n" for line in (
        "stdout P abc", "stderr F err 1", "stdout F def", "stdout F ", "stdout F a  b ",
        "stderr P tail",
    )))  # fmt: skip
    read = list(containerlog.records(log, ended=lambda: True))
    assert read[:2] == [("stdout", b"abc", False), ("stderr", b"err 1", True)]
    lines = list(containerlog.lines(read))
    assert lines == [b"err 1\n", b"abcdef\n", b"\n", b"a  b \n", b"tail"]
    assert list(containerlog.lines(read, skip=2)) == lines[2:]


def test_the_container_log_is_tailed_until_the_container_has_ended(tmp_path: Path) -> None:
    log = write(tmp_path / "ctr.log", "T stdout F one\nT stdout F tw")  # conmon mid-write
    checks = []

    def ended() -> bool:  # the container ends while the reader waits; conmon finishes the line
        checks.append(1)
        if len(checks) == 3:
            with log.open("a") as out:
                out.write("o\nT stdout F three\n")
        return len(checks) >= 3

    read = list(containerlog.lines(containerlog.records(log, ended)))
    assert read == [b"one\n", b"two\n", b"three\n"]


def test_engine_times_of_podman_and_docker() -> None:
    at = 1796180621.539534
    assert parse_time("2026-12-02 03:03:41.539534635 +0000 UTC") == pytest.approx(at, abs=1e-5)
    assert parse_time("2026-12-02T03:03:41.539534635Z") == pytest.approx(at, abs=1e-5)
    assert parse_time("2026-12-02T04:03:41.5395346+01:00") == pytest.approx(at, abs=1e-5)
    assert parse_time("0001-01-01 00:00:00 +0000 UTC") is None  # not ended
    assert parse_time("") is None


def test_a_cdi_spec_is_found_by_the_device_kind_it_names(tmp_path: Path) -> None:
    etc, run = tmp_path / "etc-cdi", tmp_path / "run-cdi"
    write(etc / "other.yaml", 'cdiVersion: "0.5.0"\nkind: vendor.com/fpga\n')
    write(etc / "notes.txt", "kind: nvidia.com/gpu\n")  # not a spec
    folders = (str(etc), str(run))
    assert not cdi_declares("nvidia.com/gpu", folders)
    write(run / "nvidia.json", '{"cdiVersion": "0.5.0", "kind": "nvidia.com/gpu", "devices": []}')
    assert cdi_declares("nvidia.com/gpu", folders)
    write(etc / "nvidia.yaml", "---\ncdiVersion: 0.5.0\nkind: 'nvidia.com/gpu'\n")
    assert cdi_declares("nvidia.com/gpu", (str(etc),))


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("image", [
    "ubuntu", "ubuntu:22.04", "library/ubuntu:Latest", "ghcr.io/astral-sh/uv:python3.12-bookworm",
    "nvcr.io/nvidia/pytorch:24.01-py3", "localhost:5000/a/b", "127.0.0.1:5000/x",
    "[::1]:5000/x:tag", "a__b", "a--b.c_d", f"x@{DIGEST}", f"x:1@{DIGEST}",
    "registry.hf.space/user-space:latest", "My.Registry:443/team/app", "a" * 255,
])  # fmt: skip
def test_image_references_the_engines_take_are_taken(image: str) -> None:
    assert reference_problem(image) is None


@pytest.mark.parametrize("image", [
    "Bad Image!!", "ubuntu:", ":tag", "a//b", "-a", "a_", "a:tag with space", "x@sha256:abc",
    "x:" + "t" * 129, "x:é", "a" * 256, "",
])  # fmt: skip
def test_image_references_the_engines_refuse_are_refused(image: str) -> None:
    problem = reference_problem(image)
    assert problem is not None and problem.startswith(f"invalid image {image!r}: not an image ")


def test_an_uppercase_repository_is_refused_as_such() -> None:
    assert reference_problem("Ubuntu:22.04") == (
        "invalid image 'Ubuntu:22.04': repository names must be lowercase (e.g. ubuntu:22.04 or "
        "ghcr.io/astral-sh/uv:debian)"
    )
