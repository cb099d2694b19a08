"""The edit-run loop: an edit to the code outside the metadata block never locks again."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

from hfuv.payload import read_bundle
from hfuv.uv import find_uv
from tests.conftest import DEMO_SCRIPT, ServerProcess, hfuv, needs_python, write
from tests.helpers import what_was_sent

pytestmark = needs_python("3.12")

SCRIPT = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import hfuv_demo_a

print("v1", hfuv_demo_a.VALUE)
"""


def counting_uv(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """HFUV_UV naming a wrapper that logs each command line, then runs the real uv."""
    log = tmp_path / "uv-calls.log"
    wrapper = tmp_path / "bin" / "uv"
    write(wrapper, f'#!/bin/sh\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
                   f'exec {shlex.quote(find_uv())} "$@"\n')  # fmt: skip
    wrapper.chmod(0o755)
    return {"HFUV_UV": str(wrapper)}, log


def uv_locks(log: Path) -> list[str]:
    """Every `uv lock` hfuv ran (`--check` included)."""
    lines = log.read_text().splitlines() if log.is_file() else []
    return [line for line in lines if line.startswith("lock ")]


def shipped_script(result) -> str:
    assert result.code == 0, result.stderr
    return read_bundle(result.json()["body"]["environment"])["s.py"].decode()


def test_a_code_edit_locks_nothing_and_a_block_edit_locks(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    script = write(tmp_path / "s.py", SCRIPT)
    dry_run = ("run", str(script), "--dry-run", "--json")
    assert "v1" in shipped_script(hfuv(*dry_run, env=env))
    assert len(uv_locks(log)) == 1

    script.write_text(SCRIPT.replace("v1", "v2") + "# a comment\n")
    assert shipped_script(hfuv(*dry_run, env=env)).endswith(
        '"v2", hfuv_demo_a.VALUE)\n# a comment\n'
    )
    assert len(uv_locks(log)) == 1

    script.write_text(SCRIPT.replace('"hfuv-demo-a"', '"hfuv-demo-a", "hfuv-demo-b"'))
    shipped = shipped_script(hfuv(*dry_run, env=env))
    assert '"hfuv-demo-b"' in shipped
    assert len(uv_locks(log)) == 2


def test_a_code_edit_keeps_the_verdict_on_a_lock_file(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    script = write(tmp_path / "s.py", SCRIPT)
    assert hfuv("lock", str(script), env=env).code == 0
    dry_run = ("run", str(script), "--dry-run", "--json")
    shipped_script(hfuv(*dry_run, env=env))
    checks = len(uv_locks(log))
    script.write_text(SCRIPT.replace("v1", "v2"))
    assert "v2" in shipped_script(hfuv(*dry_run, env=env))
    assert len(uv_locks(log)) == checks


REPLAYED = "debug: replaying the prepared run"
DEBUG = {"HFUV_DEBUG": "1"}
PROBE = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import json, os, sys
import hfuv_demo_a

files = sorted(os.path.relpath(os.path.join(d, n)) for d, _, ns in os.walk(".") for n in ns)
print(json.dumps({"argv": sys.argv, "env": dict(os.environ), "files": files,
                  "code": open(sys.argv[0]).read(), "a": hfuv_demo_a.VALUE}))
"""


def seen(line: str) -> dict:
    """What the job saw, without what differs between two runs by design (its id, its dir)."""
    found = json.loads(line)
    job_id, workdir = found["env"]["JOB_ID"], found["env"]["HFUV_WORKDIR"]
    return json.loads(line.replace(workdir, "<workdir>").replace(job_id, "<job-id>"))


def test_a_replayed_edited_run_is_the_full_paths_run(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    env["HFUV_DEBUG"] = "1"
    script = write(tmp_path / "probe.py", PROBE)
    write(tmp_path / "data" / "x.txt", "x")
    argv = ("run", str(script), "--local", "--file", str(tmp_path / "data"), "--", "--lr", "1")
    hfuv(*argv, env=env)
    script.write_text(PROBE + 'print("edited")\n')
    replayed = hfuv(*argv, env=env)
    assert REPLAYED in replayed.stderr
    full = hfuv(*argv, env={**env, "SOME_SETTING": "1"})  # another record: the full path
    assert REPLAYED not in full.stderr
    assert replayed.stdout.endswith("\nedited\n") and full.stdout.endswith("\nedited\n")
    first, second = (seen(r.stdout.split("\n")[0]) for r in (replayed, full))
    assert first == second
    assert first["code"].endswith('print("edited")\n')
    assert first["files"] == ["data/x.txt", "probe.py", "probe.py.lock"]
    assert len(uv_locks(log)) == 1


def test_a_replayed_edited_submission_sends_the_full_paths_request(
    server: ServerProcess, tmp_path: Path
) -> None:
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    env = {**server.env(), "HFUV_DEBUG": "1"}
    argv = ("run", str(script), "--detach")
    assert hfuv(*argv, env=env).code == 0
    script.write_text(DEMO_SCRIPT + 'print("edited")\n')
    replayed = hfuv(*argv, env=env)
    full = hfuv(*argv, env={**env, "SOME_SETTING": "1"})
    assert REPLAYED in replayed.stderr and REPLAYED not in full.stderr
    ids = [replayed.stdout.strip(), full.stdout.strip()]
    jobs = [hfuv("inspect", job_id, "--json", env=server.env()).json() for job_id in ids]

    assert what_was_sent(jobs[0]) == what_was_sent(jobs[1])
    assert read_bundle(jobs[0]["environment"])["demo.py"].decode().endswith('print("edited")\n')
    for job_id in ids:
        assert hfuv("wait", job_id, env=server.env()).code == 0
        assert hfuv("logs", job_id, env=server.env()).stdout.endswith("\nedited\n")


def test_the_new_code_runs_after_every_edit(tmp_path: Path) -> None:
    """Same size, same second, even the same mtime: the run sees the code on disk."""
    script = write(tmp_path / "s.py", SCRIPT)
    argv = ("run", str(script), "--local")
    assert hfuv(*argv, env=DEBUG).stdout == "v1 a-1.1.0\n"
    assert REPLAYED in hfuv(*argv, env=DEBUG).stderr
    before = script.stat()
    for version in ("v2", "v3", "v4"):
        script.write_text(SCRIPT.replace("v1", version))  # same size, same inode
        os.utime(script, ns=(before.st_atime_ns, before.st_mtime_ns))
        result = hfuv(*argv, env=DEBUG)
        assert (result.code, result.stdout) == (0, f"{version} a-1.1.0\n"), result.stderr
        assert REPLAYED in result.stderr
    script.write_text(SCRIPT)  # back to the recorded content
    assert hfuv(*argv, env=DEBUG).stdout == "v1 a-1.1.0\n"


def test_what_only_the_full_path_can_judge_runs_it(tmp_path: Path) -> None:
    env, log = counting_uv(tmp_path)
    env.update(DEBUG)
    script = write(tmp_path / "s.py", SCRIPT)
    argv = ("run", str(script), "--local")
    hfuv(*argv, env=env)
    block_edit = SCRIPT.replace('"hfuv-demo-a"', '"hfuv-demo-a", "hfuv-demo-b"')
    script.write_text(block_edit)
    result = hfuv(*argv, env=env)
    assert REPLAYED not in result.stderr and result.stdout == "v1 a-1.1.0\n"
    assert len(uv_locks(log)) == 2
    second_block = block_edit + "# /// script\n# dependencies = []\n# ///\n"
    script.write_text(second_block)
    refused = hfuv(*argv, env=env)
    assert refused.code == 2 and "second `# /// script` block" in refused.stderr
    script.write_bytes(block_edit.encode() + b"# caf\xe9\n")
    refused = hfuv(*argv, env=env)
    assert refused.code == 2 and "invalid UTF-8" in refused.stderr
    plain = write(tmp_path / "plain.py", "print('one')\n")
    assert hfuv("run", str(plain), "--local", env=env).stdout == "one\n"
    plain.write_text("print('two')\n")
    result = hfuv("run", str(plain), "--local", env=env)
    assert result.stdout == "two\n" and REPLAYED not in result.stderr


WHERE = """\
# /// script
# requires-python = ">=3.10"
# dependencies = ["hfuv-demo-a"]
# ///
import os, sys, time
import hfuv_demo_a

code = open(sys.argv[0]).read()
print(os.path.dirname(os.path.abspath(sys.argv[0])), sys.prefix, flush=True)
while os.path.exists(os.environ.get("HOLD", "/nonexistent")):  # until the test lets go
    time.sleep(0.05)
import helper  # a --file module, imported late

print("VERSION", helper.VERSION, "same code" if open(sys.argv[0]).read() == code else "changed")
"""


def where(result) -> tuple[str, str, str]:
    """(the folder uv ran the script from, its environment, what the script said last)."""
    assert result.code == 0, result.stderr
    first, last = result.stdout.splitlines()
    folder, prefix = first.split()
    return folder, prefix, last


def test_edits_share_one_code_dir_and_environment_and_new_deps_get_their_own(
    tmp_path: Path,
) -> None:
    script = write(tmp_path / "w.py", WHERE)
    write(tmp_path / "helper.py", "VERSION = 1\n")
    argv = ("run", str(script), "--local", "--file", str(tmp_path / "helper.py"))
    runs = [where(hfuv(*argv, env=DEBUG))]
    script.write_text(WHERE + "# edited\n")
    replayed = hfuv(*argv, env=DEBUG)
    assert REPLAYED in replayed.stderr and "Installed" not in replayed.stderr
    runs.append(where(replayed))
    script.write_text(WHERE + "# edited again\n")
    full = hfuv(*argv, env={**DEBUG, "SOME_SETTING": "1"})  # the full path, another record
    assert REPLAYED not in full.stderr
    runs.append(where(full))
    assert len(set(runs)) == 1  # one folder, one environment, for all three
    assert Path(runs[0][0], "w.py").read_text().endswith("# edited again\n")

    script.write_text(WHERE.replace('"hfuv-demo-a"', '"hfuv-demo-a", "hfuv-demo-b"'))
    folder, prefix, _ = where(hfuv(*argv))
    assert folder != runs[0][0] and prefix != runs[0][1]


def test_an_edit_leaves_the_code_of_a_run_still_going_alone(tmp_path: Path) -> None:
    script = write(tmp_path / "w.py", WHERE)
    helper = write(tmp_path / "helper.py", "VERSION = 1\n")
    argv = ("run", str(script), "--local", "--file", str(helper))
    shared, _, said = where(hfuv(*argv))
    assert said == "VERSION 1 same code"
    hold = write(tmp_path / "hold", "")
    going = subprocess.Popen([sys.executable, "-m", "hfuv", *argv, "-e", f"HOLD={hold}"],
                             text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        assert going.stdout is not None
        assert going.stdout.readline().split()[0] == shared
        script.write_text(WHERE + "# edited while the first run goes on\n")
        for args in (argv, (*argv, "--", "again")):  # the replay, then the full path
            folder, _, said = where(hfuv(*args))
            assert folder != shared and said == "VERSION 1 same code"
        for path in (shared, f"{shared}.lock"):
            os.utime(path, (1, 1))  # old enough to prune, were it not in use
        pruned = hfuv("cache", "prune", "--older-than", "1d")
        assert pruned.code == 0 and Path(shared, "w.py").read_text() == WHERE
        hold.unlink()
        out, err = going.communicate(timeout=120)
    finally:
        hold.unlink(missing_ok=True)
        going.kill()
    assert (going.returncode, out) == (0, "VERSION 1 same code\n"), err
    folder, _, _ = where(hfuv(*argv))  # with nothing running, the folder follows edits
    assert folder == shared and Path(shared, "w.py").read_text().endswith("goes on\n")


def test_a_code_dir_that_cannot_be_rewritten_fails_the_replayed_edit_instead_of_hanging(
    tmp_path: Path,
) -> None:
    """A rewrite that fails must not leave its lock held (the full path, taken next in the same
    process, would wait on it forever); a leftover staging file is cleared."""
    block = "# /// script\n# dependencies = []\n# ///\n"
    script = write(tmp_path / "s.py", block + "print('one')\n")
    assert hfuv("run", str(script), "--local").stdout == "one\n"
    code = tmp_path / "hfuv-cache" / "code"
    (folder,) = [path for path in code.iterdir() if path.is_dir()]
    write(code / f"{folder.name}.unpacking", "")  # a leftover that is not a folder
    script.write_text(block + "print('two')\n")  # replayed: only the code changed
    try:
        result = hfuv("run", str(script), "--local", timeout=20)
    except subprocess.TimeoutExpired:
        raise AssertionError("the replay of an edited run hung on its own lock") from None
    assert (result.code, result.stdout) == (0, "two\n"), result.stderr
