"""Secret values never show: not in stdout, stderr, dry runs, JSON, inspect, errors, tracebacks or
HFUV_DEBUG output. Every output below is scanned for canary values."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXAMPLES, Result, ServerProcess, hfuv, needs_python, write
from tests.helpers import FakeHost, Reply

pytestmark = needs_python("3.12")

SECRET = "canary-Zq81-not-hex"
FILE_SECRET = "canary-from-a-file-77"
TOKEN = "hf_canaryTokenValue123"
ENV_SECRET = "canary-passed-with-e-5150"  # a value under a secret-looking name given with -e
HOOK_SECRET = "canary-webhook-sig-42"
LOGIN_TOKEN = "hf_" + "Lg7" * 12  # shaped like a real token, in no environment variable
CANARIES = (SECRET, FILE_SECRET, TOKEN, ENV_SECRET, HOOK_SECRET, LOGIN_TOKEN)


def scan(results: list[Result]) -> None:
    for result in results:
        for canary in CANARIES:
            assert canary not in result.stdout, (canary, result.stdout[:2000])
            assert canary not in result.stderr, (canary, result.stderr[:2000])


def test_no_output_shows_a_secret(tmp_path: Path) -> None:
    secrets_file = write(tmp_path / "s.env", f"FROM_FILE={FILE_SECRET}\n")
    script = write(tmp_path / "uses.py", "import os\nprint(len(os.environ['MY_SECRET']))\n")
    base = ["-s", f"MY_SECRET={SECRET}", "--secrets-file", str(secrets_file), "-s", "HF_TOKEN",
            "-e", f"DB_PASSWORD={ENV_SECRET}"]  # fmt: skip
    env = {"HF_TOKEN": TOKEN}
    debug = {**env, "HFUV_DEBUG": "1"}
    sweep = ["--matrix", "x=1,2", "-e", "HF_TOKEN", "-e", "STAGE_API_KEY={x}", "--", "{x}"]
    outputs = [
        hfuv("run", str(script), "--dry-run", *base, env=env),
        hfuv("run", str(script), "--dry-run", "--json", *base, env=env),
        hfuv("run", str(script), "--dry-run", *base, *sweep, env=env),
        hfuv("run", str(script), "--dry-run", "--json", *base, *sweep, env=debug),
        hfuv("check", str(script), *base, env=env),
        hfuv("check", "--json", str(script), *base, env=env),
        hfuv("run", str(script), "--local", *base, env=env),
        hfuv("run", str(script), "--dry-run", "--flavor", "nope", *base, env=debug),
        hfuv("run", str(script), "--dry-run", "--file", "missing.txt", *base, env=debug),
        hfuv("run", str(script), "--dry-run", "--timeout", "never", *base, env=debug),
        hfuv("run", str(script), *base, env={**debug, "HF_ENDPOINT": "http://127.0.0.1:9"}),
        hfuv("ps", "--token", TOKEN, env={"HF_ENDPOINT": "http://127.0.0.1:9", "HFUV_DEBUG": "1"}),
        hfuv("exec", "python:3.12", "--dry-run", *base, "--", "env", env=env),
        hfuv(
            "schedule",
            "create",
            "@daily",
            str(script),
            *base,
            env={**debug, "HF_ENDPOINT": "http://127.0.0.1:9"},
        ),
    ]
    assert all(result.code == 0 for result in outputs[:6]), [r.stderr for r in outputs[:6]]
    assert outputs[6].stdout.strip() == str(len(SECRET)), "the job still gets the value"
    assert "Traceback" in outputs[7].stderr, "debug output is on, and still clean"
    bodies = outputs[3].json()["bodies"]
    assert [b["environment"]["STAGE_API_KEY"] for b in bodies] == ["***", "***"]
    assert {b["environment"]["HF_TOKEN"] for b in bodies} == {"***"}
    assert '"DB_PASSWORD": "***"' in outputs[0].stdout and "DB_PASSWORD=***" in outputs[4].stdout
    scan(outputs)


def test_server_round_trip_shows_no_secret(server: ServerProcess, tmp_path: Path) -> None:
    lengths = "import os\nprint(len(os.environ['MY_SECRET']), len(os.environ['DB_PASSWORD']))\n"
    script = write(tmp_path / "uses.py", lengths)
    env = {**server.env(), "MY_SECRET": SECRET}
    given = ["-s", "MY_SECRET", "-e", f"DB_PASSWORD={ENV_SECRET}"]
    run = hfuv("run", str(script), *given, env=env)
    assert run.code == 0 and run.stdout.split() == [str(len(SECRET)), str(len(ENV_SECRET))]
    job_id = hfuv("ps", "-a", "--json", env=env).json()[0]["id"]
    schedule = hfuv("schedule", "create", "@daily", str(script), *given, env=env)
    hook = hfuv("webhook", "create", "--watch", "dataset:me/data", "--job-id", job_id,
                "--secret", HOOK_SECRET, "-s", "MY_SECRET", env=env)  # fmt: skip
    assert schedule.code == 0 and hook.code == 0, schedule.stderr + hook.stderr
    schedule_id = schedule.stdout.strip()
    outputs = [
        run,
        schedule,
        hook,
        hfuv("ps", "-a", "--json", env=env),
        hfuv("ps", "-a", env=env),
        hfuv("inspect", job_id, "--json", env=env),
        hfuv("inspect", job_id, env=env),
        hfuv("logs", job_id, env=env),
        hfuv("run", str(script), *given, "--detach", env={**env, "HFUV_DEBUG": "1"}),
        hfuv("schedule", "ps", "--json", env=env),
        hfuv("schedule", "ps", env=env),
        hfuv("schedule", "inspect", schedule_id, "--json", env=env),
        hfuv("schedule", "inspect", schedule_id, env=env),
        hfuv("webhook", "ps", "--json", env=env),
        hfuv("webhook", "ps", env=env),
    ]
    assert all(result.code == 0 for result in outputs), [r.stderr for r in outputs]
    assert outputs[5].json()["environment"]["DB_PASSWORD"] == "***"
    scan(outputs)
    server.stop()
    assert server.process is not None and server.process.stdout and server.process.stderr
    scan([Result(0, server.process.stdout.read(), server.process.stderr.read())])


def test_answers_that_hold_values_are_shown_without_them(tmp_path: Path) -> None:
    """Another Jobs server may answer secrets with their values, env under secret-looking names,
    or a webhook's secret: hfuv shows none of them."""
    job = {
        "id": "a" * 24,
        "owner": {"name": "me"},
        "status": {"stage": "RUNNING"},
        "command": ["python", "-c", "pass"],
        "labels": {"name": "j"},
        "environment": {"HF_TOKEN": TOKEN, "MODE": "fast"},
        "secrets": {"MY_SECRET": SECRET},
    }
    schedule = {"id": "b" * 24, "schedule": "@daily", "status": {}, "jobSpec": job}
    hook = {"id": "c" * 24, "watched": [{"type": "dataset", "name": "me/d"}],
            "domains": ["repo"], "jobSourceId": job["id"], "disabled": False,
            "secret": HOOK_SECRET, "job": job}  # fmt: skip
    host = FakeHost()
    host.routes["/api/whoami-v2"] = Reply.json({"name": "me"})
    host.routes[f"/api/jobs/me/{job['id']}"] = Reply.json(job)
    host.routes["/api/jobs/me"] = Reply.json([job])
    host.routes[f"/api/scheduled-jobs/me/{schedule['id']}"] = Reply.json(schedule)
    host.routes["/api/scheduled-jobs/me"] = Reply.json([schedule])
    host.routes["/api/settings/webhooks"] = Reply.json([hook])
    env = {"HF_ENDPOINT": host.url, "HF_TOKEN": "t"}
    try:
        outputs = [
            hfuv("inspect", job["id"], "--json", env=env),
            hfuv("inspect", job["id"], env=env),
            hfuv("ps", "--json", env=env),
            hfuv("schedule", "inspect", schedule["id"], "--json", env=env),
            hfuv("schedule", "ps", "--json", env=env),
            hfuv("webhook", "ps", "--json", env=env),
        ]
    finally:
        host.close()
    assert all(result.code == 0 for result in outputs), [r.stderr for r in outputs]
    shown = outputs[0].json()
    assert shown["environment"] == {"HF_TOKEN": "***", "MODE": "fast"}
    assert shown["secrets"] == {"MY_SECRET": "***"}
    assert outputs[3].json()["jobSpec"]["secrets"] == {"MY_SECRET": "***"}
    assert outputs[5].json()[0]["secret"] == "***"
    scan(outputs)


def test_hf_token_goes_only_to_the_jobs_endpoint(tmp_path: Path) -> None:
    jobs = FakeHost()
    other = FakeHost()
    jobs.routes["/api/whoami-v2"] = Reply.json({"name": "me"})
    jobs.routes["POST /api/jobs/me"] = Reply.json({"id": "0" * 24})
    other.routes["/remote.py"] = Reply.text("print('remote')\n")
    try:
        result = hfuv("run", f"{other.url}/remote.py", "--detach", "-s", "HF_TOKEN",
                      env={"HF_ENDPOINT": jobs.url, "HF_TOKEN": TOKEN})  # fmt: skip
        assert result.code == 0, result.stderr
    finally:
        jobs.close()
        other.close()
    assert all(TOKEN not in str(r.headers) for r in other.requests)
    assert all(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in jobs.requests)
    scan([result])


HIDDEN_S = "invalid -s (not shown, as it may hold a secret): expected KEY=VALUE or KEY"
HIDDEN_LINE = "not KEY=VALUE or KEY (the line is not shown, as it may hold a secret)"
BAD_INPUTS = {
    # name: (the bad options, what the error line says)
    "-s with a bad name": (["-s", f"MY SECRET={SECRET}"], HIDDEN_S),
    "-s given a value": (["-s", f"{SECRET}+/x=="], HIDDEN_S),
    "-s $HF_TOKEN": (["-s", TOKEN], "a bare -s name is the value of $HF_TOKEN"),
    "-s a token": (["-s", LOGIN_TOKEN], "a bare -s name is a token, not a variable name"),
    "-e $HF_TOKEN": (["-e", TOKEN], "a bare -e name is the value of $HF_TOKEN"),
    "-e with a bad name": (["-e", f"MY VAR={ENV_SECRET}"], "invalid -e 'MY VAR=...'"),
    "secrets file, bad name": (["--secrets-file", "names.env"], f"names.env:2: {HIDDEN_LINE}"),
    "secrets file, a key's line": (["--secrets-file", "pem.env"], f"pem.env:2: {HIDDEN_LINE}"),
    "secrets file, a bare value": (["--secrets-file", "value.env"], f"value.env:1: {HIDDEN_LINE}"),
    "env file, bad name": (["--env-file", "names.env"], f"names.env:2: {HIDDEN_LINE}"),
}
COMMANDS = {  # OPTS: where the bad options go
    "run --dry-run": ["run", "SCRIPT", "--dry-run", "OPTS"],
    "run": ["run", "SCRIPT", "OPTS"],
    "run a sweep --dry-run --json": ["run", "SCRIPT", "--dry-run", "--json", "--matrix", "x=1,2",
                                     "OPTS", "--", "{x}"],
    "check --json": ["check", "--json", "SCRIPT", "OPTS"],
    "exec --dry-run": ["exec", "python:3.12", "--dry-run", "OPTS", "--", "env"],
    "schedule create": ["schedule", "create", "@daily", "SCRIPT", "OPTS"],
}  # fmt: skip


# Every bad input through one command, and a few through every command (they share one parser).
CASES = sorted(
    {
        *(("run --dry-run", bad) for bad in BAD_INPUTS),
        *(
            (command, bad)
            for command in COMMANDS
            for bad in ("-s with a bad name", "-s $HF_TOKEN", "secrets file, a key's line")
        ),
    }
)


@pytest.mark.parametrize(("command", "bad"), CASES)
def test_bad_input_is_refused_without_its_secret(tmp_path: Path, command: str, bad: str) -> None:
    script = write(tmp_path / "s.py", "print('never runs')\n")
    write(tmp_path / "names.env", f"OK=1\nBAD NAME={FILE_SECRET}\n")
    write(tmp_path / "pem.env", f"PEM=-----BEGIN\n{FILE_SECRET}+/==\n-----END\n")
    write(tmp_path / "value.env", f"{FILE_SECRET}/x\n")
    options, message = BAD_INPUTS[bad]
    fill = {"SCRIPT": [str(script)], "OPTS": options}
    argv = [part for arg in COMMANDS[command] for part in fill.get(arg, [arg])]
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"}
    plain = hfuv(*argv, cwd=tmp_path, env=env)
    assert plain.code == 2, plain.output
    errors = [line for line in plain.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in plain.stderr
    debug = hfuv(*argv, cwd=tmp_path, env={**env, "HFUV_DEBUG": "1"})
    assert debug.code == 2 and "Traceback" in debug.stderr
    scan([plain, debug])


def test_webhook_secrets_are_refused_without_their_value(tmp_path: Path) -> None:
    argv = ["webhook", "create", "--watch", "dataset:me/d", "--job-id", "me/" + "a" * 24]
    env = {"HF_TOKEN": TOKEN, "HF_ENDPOINT": "http://127.0.0.1:9"}
    results = [hfuv(*argv, "-s", item, env=env) for item in (f"MY SECRET={SECRET}", TOKEN)]
    assert [r.code for r in results] == [2, 2]
    assert HIDDEN_S in results[0].stderr and "the value of $HF_TOKEN" in results[1].stderr
    scan(results)


def test_secret_looking_env_is_warned_about_and_shown_masked(tmp_path: Path) -> None:
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "-e", "HF_TOKEN",
                  "-e", f"WANDB_API_KEY={ENV_SECRET}", "-e", "MODE=fast",
                  env={"HF_TOKEN": TOKEN})  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines()[:2] == [
        f"warning: {name} looks like a secret but is passed as env (-e): the Jobs API stores and "
        f"shows env values in plain; use -s {name}"
        for name in ("HF_TOKEN", "WANDB_API_KEY")
    ]
    assert '"HF_TOKEN": "***"' in result.stdout and '"WANDB_API_KEY": "***"' in result.stdout
    assert '"MODE": "fast"' in result.stdout
    scan([result])
