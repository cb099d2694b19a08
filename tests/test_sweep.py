"""Sweeps: `hfuv run --matrix` against `hfuv server`, and the sweep commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfuv.errors import ConfigError
from hfuv.sweep import expand, fill, parse_grid
from tests.conftest import ServerProcess, hfuv, needs_python, write

pytestmark = needs_python("3.12")

GRID_SCRIPT = """\
import os, sys
x, y = sys.argv[1], sys.argv[2]
env, index = os.environ["APP_TAG"], os.environ["HFUV_SWEEP_INDEX"]
print(f"x={x} y={y} json={sys.argv[3]} env={env} index={index}")
sys.exit(1 if (x, y) == ("3", "b") else 0)
"""


def test_grid_and_placeholders(tmp_path: Path) -> None:
    points = parse_grid(["x=1,2", "y=a,b,c"], None)
    assert len(points) == 6 and points[0] == {"x": "1", "y": "a"} and points[-1] == {
        "x": "2", "y": "c"
    }  # fmt: skip
    assert fill('{"lr": {x}, "other": {}}', {"x": "1"}) == '{"lr": 1, "other": {}}'
    assert fill("{{x}} {{{x}}}", {"x": "1"}) == "{x} {1}", "{{ and }} are literal braces"
    assert fill('{"a": {"b": {x}}}', {"x": "1"}) == '{"a": {"b": 1}}', "JSON: braces as typed"
    grid = write(tmp_path / "g.jsonl", '{"lr": 0.001, "name": "a"}\n\n{"lr": 0.01, "name": "b"}\n')
    assert parse_grid([], str(grid)) == [{"lr": "0.001", "name": "a"}, {"lr": "0.01", "name": "b"}]
    for bad in (["x"], ["x="], ["1x=1"], ["x=1", "x=2"]):
        with pytest.raises(ConfigError):
            parse_grid(bad, None)
    bodies = expand(
        {
            "command": ["py", "-c", "src", "--lr={x}"],
            "environment": {"A": "{x}", "HFUV_SCRIPT": "{x}"},
            "labels": {"name": "n"},
        },
        [{"x": "1"}, {"x": "2 3"}],
        "abcd1234",
        first_arg=3,
    )
    assert [b["command"] for b in bodies] == [["py", "-c", "src", "--lr=1"],
                                              ["py", "-c", "src", "--lr=2 3"]]  # fmt: skip
    assert bodies[1]["environment"] == {
        "A": "2 3",
        "HFUV_SCRIPT": "{x}",
        "HFUV_SWEEP_ID": "abcd1234",
        "HFUV_SWEEP_INDEX": "1",
    }
    assert bodies[1]["labels"] == {"name": "n-1", "hfuv-sweep": "abcd1234",
                                   "hfuv-sweep-index": "1", "hfuv-v-x": "2_3"}  # fmt: skip


def test_dry_run_lists_every_job(tmp_path: Path) -> None:
    script = write(tmp_path / "grid.py", GRID_SCRIPT)
    result = hfuv("run", str(script), "--dry-run", "--matrix", "x=1,2", "--matrix", "y=a,b",
                  "--", "{x}", "{y}", "{}")  # fmt: skip
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        '[0] x=1 y=a: args ["1", "a", "{}"]', '[1] x=1 y=b: args ["1", "b", "{}"]',
        '[2] x=2 y=a: args ["2", "a", "{}"]', '[3] x=2 y=b: args ["2", "b", "{}"]',
    ]  # fmt: skip
    assert "× 4 jobs" in lines[4]
    as_json = hfuv("run", str(script), "--dry-run", "--json", "--matrix", "x=1,2", "--", "{x}")
    document = as_json.json()
    assert len(document["bodies"]) == 2 and document["estimate"]["jobs"] == 2
    bundles = {b["environment"]["HFUV_BUNDLE_SHA256"] for b in document["bodies"]}
    assert len(bundles) == 1, "one lock and one bundle serve every job"
    local = hfuv("run", str(script), "--local", "--matrix", "x=1")
    assert local.code == 2


REFUSED_SWEEPS = [
    # (arguments after the script, what the one error line says)
    (["--matrix", "lr=1,2", "--", "--lr", "{LR}"],
     "error: {LR} in argument 2 is not a matrix key (keys: lr) (hint: keys are case-sensitive: "
     "write {lr}, or write {{LR}} for a literal {LR})"),
    (["--matrix", "lr=1", "--matrix", "seed=1,2", "--", "{lr}", "{sed}"],
     "error: {sed} in argument 2 is not a matrix key (keys: lr, seed) (hint: write {{sed}} for a "
     "literal {sed})"),
    (["--matrix", "lr=1,2", "-e", "TAG=run-{Lr}", "--", "{lr}"],
     "error: {Lr} in env TAG is not a matrix key (keys: lr) (hint: keys are case-sensitive: write "
     "{lr}, or write {{Lr}} for a literal {Lr})"),
    (["--matrix-file", "GRID", "--", "--lr", "{lr}", "--seed", "{seed}"],
     "error: {seed} in argument 4 has no value in job 0 (lr=0.1) (hint: give seed in every line "
     "of the --matrix-file, or write {{seed}} for a literal {seed})"),
    (["--matrix-file", "GRID", "--matrix", "lr=1,2", "--", "{lr}"],
     "error: --matrix lr is also a key in GRID (hint: give each key in one place)"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "message"), REFUSED_SWEEPS)
def test_a_placeholder_without_a_value_submits_nothing(
    server: ServerProcess, tmp_path: Path, args: list[str], message: str
) -> None:
    script = write(tmp_path / "grid.py", "import sys\nprint(sys.argv)\n")
    grid = str(write(tmp_path / "grid.jsonl", '{"lr": 0.1}\n{"lr": 0.2, "seed": 1}\n'))
    args = [grid if arg == "GRID" else arg for arg in args]
    for extra in ([], ["--dry-run"]):
        result = hfuv("run", str(script), *extra, *args, env=server.env())
        assert result.code == 2, result.output
        assert result.stderr.splitlines() == [message.replace("GRID", grid)]
        assert result.stdout == ""
    assert hfuv("ps", "-a", "--json", env=server.env()).json() == [], "no job was created"


def test_escaped_braces_and_json_reach_the_job(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "echo.py", "import sys\nprint(sys.argv[1:])\n")
    result = hfuv("run", str(script), "--matrix", "lr=1,2", "--", "--lr={lr}", "{{lr}}",
                  '{"opt": {"lr": {lr}}}', "{}", env=server.env())  # fmt: skip
    assert result.code == 0, result.output
    sweep_id = result.stderr.split("sweep ")[1].split(":")[0]
    for index, lr in enumerate(("1", "2")):
        log = hfuv("logs", "--sweep", sweep_id, "--index", str(index), env=server.env()).stdout
        assert log == str([f"--lr={lr}", "{lr}", f'{{"opt": {{"lr": {lr}}}}}', "{}"]) + "\n"


def test_a_sweep_of_identical_jobs_is_warned_about(tmp_path: Path) -> None:
    script = write(tmp_path / "grid.py", "import sys\nprint(sys.argv)\n")
    unused = hfuv("run", str(script), "--dry-run", "--matrix", "lr=1,2", "--", "--lr", "1")
    assert unused.code == 0, unused.stderr
    assert unused.stderr.splitlines()[:2] == [
        "warning: matrix key lr is used in no argument or env value, so it changes only the "
        "jobs' labels; write {lr} where the script should get it",
        "warning: all 2 jobs are identical (same arguments and env); only HFUV_SWEEP_INDEX tells "
        "them apart",
    ]
    repeated = hfuv("run", str(script), "--dry-run", "--matrix", "lr=1,2,1", "--", "{lr}")
    assert repeated.code == 0, repeated.stderr
    assert repeated.stderr.splitlines()[0] == (
        "warning: jobs that repeat an earlier one: 1 of 3 (job 2 = job 0: same arguments and env)"
    )
    distinct = hfuv("run", str(script), "--dry-run", "--matrix", "lr=1,2", "-e", "LR={lr}")
    assert distinct.code == 0 and "warning" not in distinct.stderr, distinct.stderr


def test_sweep_through_the_server(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "grid.py", GRID_SCRIPT)
    result = hfuv("run", str(script), "--matrix", "x=1,2,3,4", "--matrix", "y=a,b",
                  "-e", "APP_TAG=t-{y}", "--", "{x}", "{y}", '{"k": {x}}',
                  env=server.env())  # fmt: skip
    assert result.code == 1, result.stderr
    summary = result.stdout.splitlines()
    assert summary[0].split() == ["INDEX", "JOB", "ID", "STAGE", "EXIT", "TIME", "VALUES"]
    rows = [line.split() for line in summary[1:]]
    assert len(rows) == 8
    assert [r[2] for r in rows].count("ERROR") == 1 and rows[5][2] == "ERROR" and rows[5][3] == "1"
    assert rows[5][5:] == ["x=3", "y=b"]
    sweep_id = result.stderr.split("sweep ")[1].split(":")[0]
    jobs = hfuv("ps", "--sweep", sweep_id, "--json", env=server.env()).json()
    assert len(jobs) == 8
    for job in jobs:
        index = int(job["labels"]["hfuv-sweep-index"])
        x, y = job["labels"]["hfuv-v-x"], job["labels"]["hfuv-v-y"]
        assert (x, y) == (str(index // 2 + 1), "ab"[index % 2])
        log = hfuv("logs", "--sweep", sweep_id, "--index", str(index), env=server.env()).stdout
        assert log == f'x={x} y={y} json={{"k": {x}}} env=t-{y} index={index}\n'
    assert "[5] " in result.stderr and " ERROR" in result.stderr  # plain lines when piped

    assert hfuv("wait", "--sweep", sweep_id, env=server.env()).code == 1
    retried = hfuv("sweep", "retry", sweep_id, "--failed", env=server.env())
    assert retried.code == 0, retried.stderr
    assert len(retried.stdout.split()) == 1 and "1 of 8 jobs re-submitted" in retried.stderr
    assert len(hfuv("ps", "--sweep", sweep_id, "--json", env=server.env()).json()) == 9


def test_wait_for_a_sweep_that_succeeds(server: ServerProcess, tmp_path: Path) -> None:
    script = write(tmp_path / "grid.py", GRID_SCRIPT)
    detached = hfuv("run", str(script), "--detach", "--matrix", "x=1,2", "-e", "APP_TAG=z",
                    "--", "{x}", "a", "j", env=server.env())  # fmt: skip
    assert detached.code == 0, detached.stderr
    sweep_id = detached.stdout.strip()
    waited = hfuv("wait", "--sweep", sweep_id, env=server.env())
    assert waited.code == 0, waited.stdout
    assert waited.stdout.count("COMPLETED") == 2
    watch = hfuv("sweep", "watch", sweep_id, env=server.env())
    assert watch.code == 0 and len(watch.stdout.splitlines()) == 3
    listed = hfuv("ps", "--sweep", sweep_id, "--json", env=server.env()).json()
    assert sorted(job["labels"]["hfuv-v-x"] for job in listed) == ["1", "2"]


def test_sweep_cost_guard_counts_every_job(tmp_path: Path) -> None:
    script = write(tmp_path / "grid.py", GRID_SCRIPT)
    result = hfuv(
        "run",
        str(script),
        "--matrix",
        "x=1,2,3,4",
        "--flavor",
        "a10g-small",
        "--max-cost",
        "1",
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "t"},
    )
    assert result.code == 1
    assert "× 4 jobs = at most $2.00" in result.stderr and "nothing was submitted" in result.stderr


def test_live_view_redraws_one_line_per_job(
    server: ServerProcess, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a terminal, each job has one line (stage, duration, last log line), redrawn in place."""
    from hfuv.client import JobsClient
    from hfuv.remote import follow_sweep

    script = write(tmp_path / "say.py", "import sys, time\nprint('said', sys.argv[1], flush=True)\n"
                   "time.sleep(1.5)\n")  # fmt: skip
    sweep_id = hfuv("run", str(script), "--detach", "--matrix", "x=p,q", "--", "{x}",
                    env=server.env()).stdout.strip()  # fmt: skip
    with JobsClient(endpoint=server.url, token="token-me", environ={}) as client:
        jobs = follow_sweep(client, "me", sweep_id, 2, live=True, status=print, poll=0.3)
    assert [job["status"]["stage"] for job in jobs] == ["COMPLETED", "COMPLETED"]
    drawn = capsys.readouterr().err
    assert "\x1b[F\x1b[2K" in drawn, "earlier lines are erased and redrawn"
    final = drawn.rsplit("\x1b[2K", 1)[-1] if "\x1b[2K" in drawn else drawn
    assert "[1] " in final and "COMPLETED" in final and "said q" in final
