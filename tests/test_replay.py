"""Replaying a prepared `hfuv run`: same process, same request, and never stale."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import DEMO_SCRIPT, ServerProcess, hfuv, needs_python, write
from tests.helpers import what_was_sent

pytestmark = needs_python("3.12")

REPLAYED = "debug: replaying the prepared run"
DEBUG = {"HFUV_DEBUG": "1"}

# Prints what the job sees: its arguments, its whole environment, its files and its Python.
PROBE = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import json, os, sys
import hfuv_demo_a

files = sorted(os.path.relpath(os.path.join(d, n)) for d, _, ns in os.walk(".") for n in ns)
print(json.dumps({"argv": sys.argv[1:], "env": dict(os.environ), "files": files,
                  "python": "%d.%d" % sys.version_info[:2], "a": hfuv_demo_a.VALUE,
                  "cwd": os.getcwd()}))
"""


def probe(result) -> dict:
    assert result.code == 0, result.stderr
    return json.loads(result.stdout)


def varying(seen: dict) -> dict:
    """`seen` without what differs between two runs of one job by design (its id, its dir)."""
    job_id, workdir = seen["env"]["JOB_ID"], seen["env"]["HFUV_WORKDIR"]
    text = json.dumps(seen).replace(workdir, "<workdir>").replace(job_id, "<job-id>")
    return json.loads(text)


def test_a_replayed_local_run_is_the_same_process(tmp_path: Path) -> None:
    script = write(tmp_path / "probe.py", PROBE)
    write(tmp_path / "data" / "x.txt", "x")
    argv = ("run", str(script), "--local", "--file", str(tmp_path / "data"), "-e", "APP=1",
            "--", "--lr", "{lr}")  # fmt: skip
    first = hfuv(*argv, env=DEBUG, cwd=tmp_path)
    second = hfuv(*argv, env=DEBUG, cwd=tmp_path)
    assert REPLAYED not in first.stderr and REPLAYED in second.stderr
    one, two = probe(first), probe(second)
    assert one["env"]["JOB_ID"] != two["env"]["JOB_ID"]
    assert varying(one) == varying(two)
    assert two["argv"] == ["--lr", "{lr}"] and two["env"]["APP"] == "1"
    assert two["files"] == ["data/x.txt", "probe.py", "probe.py.lock"]
    assert two["cwd"] == two["env"]["HFUV_WORKDIR"]
    announce = [line for line in second.stderr.splitlines() if line.startswith("hfuv: running")]
    assert announce == [
        line.replace(one["env"]["JOB_ID"], two["env"]["JOB_ID"])
        for line in first.stderr.splitlines()
        if line.startswith("hfuv: running")
    ]


def test_the_scripts_exit_code_survives_a_replay(tmp_path: Path) -> None:
    script = write(tmp_path / "fail.py", "import sys\nprint('bye')\nsys.exit(7)\n")
    for _ in range(2):
        result = hfuv("run", str(script), "--local", env=DEBUG)
        assert (result.code, result.stdout) == (7, "bye\n")
    assert REPLAYED in result.stderr


def test_any_change_runs_the_full_path(tmp_path: Path) -> None:
    script = write(tmp_path / "probe.py", PROBE)
    env_file = write(tmp_path / "app.env", "APP_MODE=a\n")
    argv = ("run", str(script), "--local", "--env-file", str(env_file))

    def run(**extra: str) -> tuple[dict, bool]:
        result = hfuv(*argv, env={**DEBUG, **extra})
        return probe(result), REPLAYED in result.stderr

    assert run()[1] is False
    assert run()[1] is True

    env_file.write_text("APP_MODE=b\n")  # same size, same second
    seen, replayed = run()
    assert (seen["env"]["APP_MODE"], replayed) == ("b", False)

    script.write_text(PROBE.replace("hfuv_demo_a.VALUE", "hfuv_demo_a.VALUE + '!'"))
    seen, replayed = run()  # an edit to the code only: replayed, with the new code
    assert (seen["a"], replayed) == ("a-1.1.0!", True)

    assert hfuv("lock", str(script)).code == 0  # a SCRIPT.lock appears beside the script
    seen, replayed = run()
    assert replayed is False
    assert run()[1] is True

    seen, replayed = run(SOME_SETTING="1")  # any change in the environment
    assert replayed is False

    refreshed = hfuv(*argv, "--refresh", env=DEBUG)
    assert refreshed.code == 0 and REPLAYED not in refreshed.stderr


def test_what_comes_from_stdin_is_read_every_time(tmp_path: Path) -> None:
    script = write(tmp_path / "probe.py", PROBE)
    for value in ("one", "two"):
        result = hfuv("run", str(script), "--local", "--env-file", "-", env=DEBUG,
                      input=f"APP_MODE={value}\n")  # fmt: skip
        assert probe(result)["env"]["APP_MODE"] == value
        assert REPLAYED not in result.stderr
    piped = hfuv("run", "-", "--local", env=DEBUG, input="print('from stdin')\n")
    again = hfuv("run", "-", "--local", env=DEBUG, input="print('changed')\n")
    assert (piped.stdout, again.stdout) == ("from stdin\n", "changed\n")


def test_a_replayed_submission_sends_the_same_request(server: ServerProcess, tmp_path: Path):
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    env = {**server.env(), **DEBUG}
    first = hfuv("run", str(script), "--detach", "--name", "demo", env=env)
    second = hfuv("run", str(script), "--detach", "--name", "demo", env=env)
    assert first.code == second.code == 0, first.stderr + second.stderr
    assert REPLAYED not in first.stderr and REPLAYED in second.stderr
    ids = [first.stdout.strip(), second.stdout.strip()]
    assert ids[0] != ids[1]
    jobs = [hfuv("inspect", job_id, "--json", env=server.env()).json() for job_id in ids]

    assert what_was_sent(jobs[0]) == what_was_sent(jobs[1])
    for job_id in ids:
        assert hfuv("wait", job_id, env=server.env()).code == 0
        logs = hfuv("logs", job_id, env=server.env()).stdout
        assert logs.endswith("\na-1.1.0 b-2.0.0 3.12\n") or logs == "a-1.1.0 b-2.0.0 3.12\n"


def test_a_failed_replayed_submission_says_why(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    env = {**server.env(), **DEBUG, "HFUV_MAX_COST": "1"}
    first = hfuv("run", str(script), "--detach", "--flavor", "h200x8", env=env)
    again = hfuv("run", str(script), "--detach", "--flavor", "h200x8", env=env)
    assert REPLAYED in again.stderr
    errors = [[line for line in r.stderr.splitlines() if line.startswith("error: ")]
              for r in (first, again)]  # fmt: skip
    assert first.code == again.code == 1
    assert errors[0] == errors[1] and "over the max cost" in errors[1][0]
    assert hfuv("ps", "-a", "--json", env=server.env()).json() == []


def test_secrets_are_never_recorded(server: ServerProcess, tmp_path: Path) -> None:
    canary = "canary-5ec7e7-value"
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    secrets_file = write(tmp_path / "s.env", f"FILE_SECRET={canary}-file\n")
    runs = [
        ("--local", "-s", "MY_SECRET"),
        ("--local", "--secrets-file", str(secrets_file)),
        ("--detach", "-s", "MY_SECRET"),
        ("--detach", "--token", ServerProcess.TOKENS["me"]),
        ("--local", "-e", f"WANDB_API_KEY={canary}-as-env"),  # a secret-looking name, as env
    ]
    for options in runs:
        for _ in range(2):
            result = hfuv("run", str(script), *options, env={**server.env(), **DEBUG,
                                                             "MY_SECRET": canary})  # fmt: skip
            assert result.code == 0, result.stderr
            assert REPLAYED not in result.stderr
    cache = Path(os.environ["HFUV_CACHE_DIR"])
    for path in cache.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert canary.encode() not in data, path
            assert ServerProcess.TOKENS["me"].encode() not in data, path
