"""Options hfuv does not know go to the script, unless they look like a mistake; and every
command that creates something remote can show it first (`--dry-run`) without creating it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hfuv.passthrough import near_miss
from tests.conftest import ROOT, ServerProcess, hfuv, needs_python, write
from tests.test_cli import one_error_line

pytestmark = needs_python("3.12")

SHOW_ARGS = "import sys\nprint(sys.argv[1:])\n"
AFTER_DASHES = "; to give it to the script, put it after --"


def remote_state(server: ServerProcess) -> tuple[list, list, list]:
    """Every job, scheduled job and webhook the server holds, asked through the real API."""
    lists = [("ps", "-a"), ("schedule", "ps", "-a"), ("webhook", "ps")]
    return tuple(hfuv(*command, "--json", env=server.env()).json() for command in lists)


def test_misspelled_options_are_refused_before_anything_is_sent(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    cases = {
        ("--dryrun", "--flavor", "h200"): "no such option --dryrun (did you mean --dry-run?)",
        ("--loacl",): "no such option --loacl (did you mean --local?)",
        ("--detatch",): "no such option --detatch (did you mean --detach?)",
        ("--Dry_Run",): "no such option --Dry_Run (did you mean --dry-run?)",
        ("--flavr=h200",): "no such option --flavr (did you mean --flavor?)",
        ("--secret", "X"): "no such option --secret (did you mean --secrets?)",
        ("-dry-run",): "no such option -dry-run (did you mean --dry-run?)",
        ("-local",): "no such option -local (did you mean --local?)",
    }
    for args, said in cases.items():
        line = one_error_line(hfuv("run", script, *args, env=server.env()))
        assert line == f"error: {said}{AFTER_DASHES}", args
    schedule = ("schedule", "create", "0 3 * * *", script)
    line = one_error_line(hfuv(*schedule, "--dry-rn", env=server.env()))
    assert line == f"error: no such option --dry-rn (did you mean --dry-run?){AFTER_DASHES}"
    for lacking in ("--local", "-d", "--matrix"):
        line = one_error_line(hfuv(*schedule, lacking, "x=1", env=server.env()))
        assert line.startswith(f"error: hfuv schedule create has no option {lacking} (it is an ")
        assert line.endswith(AFTER_DASHES)
    assert remote_state(server) == ([], [], [])
    assert not (Path(os.environ["HFUV_CACHE_DIR"]) / "prepared").exists()  # nothing recorded


def test_schedule_create_dry_run_creates_nothing(server: ServerProcess, tmp_path: Path) -> None:
    script = str(write(tmp_path / "nightly.py", SHOW_ARGS))
    shown = hfuv("schedule", "create", "0 3 * * *", script, "--dry-run", env=server.env())
    assert shown.code == 0, shown.stderr
    assert shown.stdout.startswith(f"POST {server.url}/api/scheduled-jobs/{{namespace}}\n")
    assert shown.stdout.endswith(" = at most $0.01 per run\n")
    assert '"<hfuv bootstrap, ' in shown.stdout and '"schedule": "0 3 * * *"' in shown.stdout
    full = hfuv("schedule", "create", "@daily", script, "--suspend", "--dry-run", "--json",
                "-s", "KEY=v", "--", "--dry-run", env=server.env())  # fmt: skip
    assert full.code == 0, full.stderr
    document = full.json()
    assert document["body"]["schedule"] == "@daily" and document["body"]["suspend"] is True
    assert document["body"]["jobSpec"]["command"][3:] == ["--dry-run"]
    assert document["body"]["jobSpec"]["secrets"] == {"KEY": "***"} and '"v"' not in full.stdout
    one_error_line(hfuv("schedule", "create", "@daily", script, "--json", env=server.env()))
    command = hfuv("schedule", "exec", "@daily", "python:3.12", "--dry-run", "--", "true",
                   env=server.env())  # fmt: skip
    assert command.code == 0, command.stderr
    assert command.json()["body"]["jobSpec"]["command"] == ["true"]
    assert remote_state(server) == ([], [], [])


def test_every_creating_command_has_a_dry_run(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "fail_on_one.py", "import sys\nsys.exit(int(sys.argv[1]))\n")
    sweep = hfuv("run", str(script), "--matrix", "x=0,1", "--detach", "--", "{x}",
                 env=server.env())  # fmt: skip
    assert sweep.code == 0, sweep.stderr
    sweep_id = sweep.stdout.strip()
    assert hfuv("wait", "--sweep", sweep_id, env=server.env()).code == 1
    jobs, _, _ = remote_state(server)
    failed = next(job for job in jobs if job["labels"]["hfuv-v-x"] == "1")

    retry = hfuv("sweep", "retry", sweep_id, "--failed", "--dry-run", env=server.env())
    assert retry.code == 0, retry.stderr
    namespace = failed["owner"]["name"]
    assert retry.stdout == f"POST {server.url}/api/jobs/{namespace}/{failed['id']}/duplicate\n"
    assert "1 of 2 jobs would be re-submitted" in retry.stderr

    webhook = hfuv("webhook", "create", "--watch", "dataset:org/ds", "--job-id", failed["id"],
                   "--secret", "hook-secret", "-s", "KEY=v", "--dry-run",
                   env=server.env())  # fmt: skip
    assert webhook.code == 0, webhook.stderr
    assert webhook.json() == {
        "method": "POST",
        "url": f"{server.url}/api/settings/webhooks",
        "body": {"watched": [{"type": "dataset", "name": "org/ds"}],
                 "domains": ["repo", "discussion"], "jobSourceId": failed["id"],
                 "secret": "***", "secrets": {"KEY": "***"}},
    }  # fmt: skip
    assert "hook-secret" not in webhook.output

    exec_job = hfuv("exec", "python:3.12", "--dry-run", "--", "python", "-c", "print(1)",
                    env=server.env())  # fmt: skip
    assert exec_job.code == 0 and exec_job.json()["body"]["command"][-1] == "print(1)"
    line = one_error_line(hfuv("exec", "python:3.12", "-d", "--dry-run", "--", "true"))
    assert line == "error: --detach goes with a remote run, not --dry-run"
    after = remote_state(server)
    assert [job["id"] for job in after[0]] == [job["id"] for job in jobs] and after[1:] == ([], [])


def test_values_and_other_unknown_options_pass_through(tmp_path: Path) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    shown = hfuv("run", script, "--dry-run", "--json", "-e", "X=--dryrun", "--name", "--loacl",
                 "-lteam=ml", "--lr", "1e-4", "--width", "3", "--named", "-x",
                 "--", "--dryrun")  # fmt: skip
    assert shown.code == 0, shown.stderr
    body = shown.json()["body"]
    assert body["command"][3:] == ["--lr", "1e-4", "--width", "3", "--named", "-x", "--dryrun"]
    assert body["environment"]["X"] == "--dryrun"
    assert body["labels"]["name"] == "--loacl" and body["labels"]["team"] == "ml"
    local = hfuv("run", script, "--local", "--epochs", "3", "-k", "--", "--loacl", "--detatch")
    assert local.code == 0, local.stderr
    assert local.stdout == "['--epochs', '3', '-k', '--loacl', '--detatch']\n"


def test_negative_numbers_are_values_not_short_options(tmp_path: Path) -> None:
    """`-1e-4` is not -1 and `-e -4`, nor `-5` an unknown option: they reach the script."""
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    local = hfuv("run", script, "--local", "--lr", "-1e-4", "--shift", "-5", "-x", "-.5",
                 "--timeout", "5m", "--gamma", "-0.25", "-e", "A=-1")  # fmt: skip
    assert local.code == 0, local.stderr
    assert local.stdout == "['--lr', '-1e-4', '--shift', '-5', '-x', '-.5', '--gamma', '-0.25']\n"
    shown = hfuv("run", script, "--dry-run", "--json", "-e", "B", "--lr", "-1e-4",
                 env={"B": "-2"})  # fmt: skip
    assert shown.code == 0, shown.stderr
    assert shown.json()["body"]["command"][3:] == ["--lr", "-1e-4"]
    assert shown.json()["body"]["environment"]["B"] == "-2"
    bad = hfuv("run", script, "--local", "--timeout", "-5")
    assert bad.code == 2 and "invalid timeout '-5' (from --timeout)" in bad.stderr


def test_exec_lists_only_what_it_honours() -> None:
    for command in (["exec"], ["schedule", "exec"]):
        help_text = hfuv(*command, "--help").stdout
        assert "--flavor" in help_text and "--env" in help_text
        for option in ("--with", "--python", "--gist-file", "--sha256", "--image"):
            assert option not in help_text, (command, option)
    for given in (["-p", "3.12"], ["--with", "six"], ["--gist-file", "a.py"], ["--sha256", "0"]):
        line = one_error_line(hfuv("exec", "python:3.12", "--dry-run", *given, "--", "true"))
        assert line.startswith(f"error: hfuv exec has no option {given[0]} (it is an option of ")
        assert line.endswith("; to give it to the command, put it after --")


def test_run_refuses_options_its_mode_would_ignore(tmp_path: Path) -> None:
    script = str(write(tmp_path / "s.py", SHOW_ARGS))
    line = one_error_line(hfuv("run", script, "--dry-run", "--parallel", "4"))
    assert line == "error: --parallel goes with a sweep (hint: add --matrix or --matrix-file)"
    for flag in ("--submission-key", "--endpoint", "--token"):
        line = one_error_line(hfuv("run", script, "--local", flag, "x"))
        assert line == f"error: {flag} goes with a remote run, not --local"


def test_a_recorded_run_is_not_replayed_once_the_commands_change(
    server: ServerProcess, tmp_path: Path
) -> None:
    """A record is keyed by the command line; what that line means is hfuv's commands. A new
    option of `schedule create` makes `hfuv run … --from-test` refused, recorded or not."""
    copy = tmp_path / "copy"
    shutil.copytree(ROOT / "hfuv", copy / "hfuv", ignore=shutil.ignore_patterns("__pycache__"))
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    env = {**server.env(), "PYTHONPATH": str(copy), "HFUV_DEBUG": "1"}
    argv = ("run", script, "--detach", "--from-test")
    assert hfuv(*argv, env=env, cwd=tmp_path).code == 0
    again = hfuv(*argv, env=env, cwd=tmp_path)
    assert again.code == 0 and "debug: replaying the prepared run" in again.stderr

    automation = copy / "hfuv" / "commands" / "automation.py"
    decorator = '@schedule_group.command(name="create", cls=LaunchCommand)\n'
    code = automation.read_text(encoding="utf-8")
    assert decorator in code
    automation.write_text(
        code.replace(decorator, decorator + '@click.option("--from-test", is_flag=True)\n'),
        encoding="utf-8",
    )
    refused = hfuv(*argv, env=env, cwd=tmp_path)
    assert refused.code == 2, refused.stderr
    assert "debug: replaying" not in refused.stderr
    assert "hfuv run has no option --from-test (it is an option of hfuv schedule create)" in (
        refused.stderr
    )
    assert len(remote_state(server)[0]) == 2


@pytest.mark.parametrize(
    ("typed", "meant"),
    [
        ("--dryrun", "--dry-run"),
        ("--DRY_RUN", "--dry-run"),
        ("--loacl", "--local"),
        ("--detatch", "--detach"),
        ("--wtih", "--with"),
        ("--nmae", "--name"),
        ("--nev", "--env"),
        ("--labels", "--label"),
        ("--network-grop", "--network-group"),
        ("--netwrk-grup", "--network-group"),
        ("--width", None),
        ("--names", None),
        ("--lr", None),
        ("--model", None),
        ("--dry", None),
    ],
)
def test_what_counts_as_a_near_miss(typed: str, meant: str | None) -> None:
    options = ["--dry-run", "--local", "--detach", "--with", "--label", "--name",
               "--network-group", "--env", "--json"]  # fmt: skip
    assert near_miss(typed, options) == meant


EVERYDAY_SCRIPT_OPTIONS = [
    "--lr", "--epochs", "--batch-size", "--model", "--output-dir", "--seed", "--data",
    "--dataset", "--local-rank", "--max-steps", "--push-to-hub", "--wandb", "--config",
    "--num-workers", "--fp16", "--bf16", "--resume", "--eval", "--debug", "--verbose",
    "--tokenizer", "--split", "--subset",
]  # fmt: skip


def test_an_abbreviated_option_is_refused_but_script_options_pass(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    cases = {
        ("run", script, "--dry", "--flavor", "h200", "-d"): "--dry (did you mean --dry-run?)",
        ("run", script, "--flav", "h200", "-d"): "--flav (did you mean --flavor?)",
        ("run", script, "--det"): "--det (did you mean --detach?)",
        ("run", script, "--loc", "-d"): "--loc (did you mean --local?)",
        ("run", script, "--nam=x", "-d"): "--nam (did you mean --name, --namespace?)",
        ("run", script, "--names", "x"): "--names (did you mean --namespace?)",
        ("schedule", "create", "0 3 * * *", script, "--dry"): "--dry (did you mean --dry-run?)",
        ("exec", "python:3.12", "--det", "--", "true"): "--det (did you mean --detach?)",
    }
    for args, said in cases.items():
        line = one_error_line(hfuv(*args, env=server.env()))
        assert line.startswith(f"error: no such option {said}; to give it to the "), args
    assert remote_state(server) == ([], [], [])

    shown = hfuv("run", script, "--dry-run", "--json", *EVERYDAY_SCRIPT_OPTIONS, "--de",
                 env=server.env())  # fmt: skip
    assert shown.code == 0, shown.stderr
    assert shown.json()["body"]["command"][3:] == [*EVERYDAY_SCRIPT_OPTIONS, "--de"]
    assert remote_state(server) == ([], [], [])


def test_a_missing_value_does_not_swallow_the_next_option(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    cases = {
        ("run", script, "--name", "--dry-run", "-d"): ("--name", "the option --dry-run",
                                                       "--name=--dry-run"),
        ("run", script, "-l", "--dry-run", "-d"): ("-l", "the option --dry-run",
                                                   "--label=--dry-run"),
        ("run", script, "-dl", "--local"): ("-l", "the option --local", "--label=--local"),
        ("run", script, "--flavor", "--local"): ("--flavor", "the option --local",
                                                 "--flavor=--local"),
        ("run", script, "--name", "-d"): ("--name", "the option -d", "--name=-d"),
        ("run", script, "--name", "--", "x"): ("--name", "--", "--name=--"),
        ("schedule", "create", "@daily", script, "-e", "--dry-run"): ("-e", "the option --dry-run",
                                                                      "--env=--dry-run"),
        ("exec", "python:3.12", "--name", "--detach", "--", "true"): ("--name",
                                                                      "the option --detach",
                                                                      "--name=--detach"),
    }  # fmt: skip
    for args, (option, word, attached) in cases.items():
        line = one_error_line(hfuv(*args, env=server.env()))
        assert line == (f"error: {option} needs a value, but the next word is {word} "
                        f"(hint: write {attached} if you mean that)"), args  # fmt: skip
    assert remote_state(server) == ([], [], [])

    meant = hfuv("run", script, "--name=--dry-run", "-e", "X=--dryrun", "--label=--local",
                 "--dry-run", "--json", env=server.env())  # fmt: skip
    assert meant.code == 0, meant.stderr
    body = meant.json()["body"]
    assert body["labels"]["name"] == "--dry-run" and body["labels"]["--local"] == ""
    assert body["environment"]["X"] == "--dryrun"
    assert remote_state(server) == ([], [], [])


def test_an_unknown_option_before_the_script_is_not_taken_for_it(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    for_script = "(hint: options for the script go after SCRIPT, or after --)"
    for_command = "(hint: options for the command go after IMAGE, or after --)"
    cases = {
        ("run", "--foo", script, "-d"):
            f"--foo is not a script: hfuv has no option --foo {for_script}",
        ("run", "-x", script, "-d"): f"-x is not a script: hfuv has no option -x {for_script}",
        ("exec", "--foo", "python:3.12", "--", "true"):
            f"--foo is not an image: hfuv has no option --foo {for_command}",
        ("schedule", "create", "@daily", "--foo", script):
            f"--foo is not a script: hfuv has no option --foo {for_script}",
        ("schedule", "exec", "@daily", "--foo", "python:3.12", "--", "true"):
            f"--foo is not an image: hfuv has no option --foo {for_command}",
    }  # fmt: skip
    for args, said in cases.items():
        assert one_error_line(hfuv(*args, env=server.env())) == f"error: {said}", args
    assert remote_state(server) == ([], [], [])

    from_stdin = hfuv("run", "--dry-run", "--json", "-", "--foo", input=SHOW_ARGS)
    assert from_stdin.code == 0, from_stdin.stderr
    assert from_stdin.json()["body"]["command"][3:] == ["--foo"]


def test_a_python_without_a_uv_image_needs_an_image(server: ServerProcess, tmp_path: Path) -> None:
    script = str(write(tmp_path / "show_args.py", SHOW_ARGS))
    table = "# /// script\n# [tool.hfuv]\n# python = '3.99'\n# ///\n"
    in_table = str(write(tmp_path / "in_table.py", table + SHOW_ARGS))
    refusal = ("has no uv image: hfuv supports Python 3.9 to 3.14 "
               "(hint: pick one of those, or give an --image that has it)")  # fmt: skip
    cases = {
        ("run", script, "-p", "3.99", "-d"): "python 3.99 (from --python)",
        ("run", script, "--python", "3.8", "-d"): "python 3.8 (from --python)",
        ("run", in_table, "-d"): "python 3.99 (from [tool.hfuv])",
    }
    for args, said in cases.items():
        assert one_error_line(hfuv(*args, env=server.env())) == f"error: {said} {refusal}", args
    scheduled = hfuv("schedule", "create", "@daily", script, "-p", "3.99", env=server.env())
    assert scheduled.code == 2
    assert scheduled.stderr == f"error: python 3.99 (from --python) {refusal}\n"
    assert remote_state(server) == ([], [], [])

    with_image = hfuv("run", in_table, "--image", "python:3.99", "--dry-run", "--json",
                      env=server.env())  # fmt: skip
    assert with_image.code == 0, with_image.stderr
    assert with_image.json()["body"]["dockerImage"] == "python:3.99"
    assert remote_state(server) == ([], [], [])
