"""`hfuv run --local`: the JobSpec a dry run prints, executed here."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from hfuv.uv import find_uv
from tests.conftest import DEMO_SCRIPT, EXAMPLES, hfuv, needs_python, write

pytestmark = needs_python("3.12")


def test_arguments_reach_the_script_untouched() -> None:
    result = hfuv(
        "run", str(EXAMPLES / "show_args.py"), "--local", "--", "a b", ">x", "$HOME", "--flag"
    )
    assert result.code == 0, result.stderr
    args = [line[5:] for line in result.stdout.splitlines() if line.startswith("arg: ")]
    assert args == ["a b", ">x", "$HOME", "--flag"]


def test_unknown_options_pass_through_and_known_ones_after_dashdash(tmp_path: Path) -> None:
    result = hfuv(
        "run", str(EXAMPLES / "show_args.py"), "--lr", "1e-4", "--local", "--", "--name", "x"
    )
    assert result.code == 0, result.stderr
    args = [line[5:] for line in result.stdout.splitlines() if line.startswith("arg: ")]
    assert args == ["--lr", "1e-4", "--name", "x"]


def test_exit_code_is_the_scripts() -> None:
    assert hfuv("run", str(EXAMPLES / "exit_code.py"), "--local").code == 3
    assert hfuv("run", str(EXAMPLES / "exit_code.py"), "--local", "--", "42").code == 42
    assert hfuv("run", str(EXAMPLES / "exit_code.py"), "--local", "--", "0").code == 0


def test_job_environment_is_the_jobs_not_the_shell(tmp_path: Path) -> None:
    result = hfuv(
        "run", str(EXAMPLES / "show_args.py"), "--local", "--flavor", "a10g-small",
        "-e", "APP_MODE=eval", "-s", "MY_TOKEN", "-e", "SHOW_SECRETS=MY_TOKEN",
        env={"MY_TOKEN": "s3cr3t-value", "APP_LEAK": "from-the-shell"},
    )  # fmt: skip
    assert result.code == 0, result.stderr
    out = result.stdout
    assert "env: ACCELERATOR=a10g-small" in out
    assert "env: CPU_CORES=4" in out
    assert "env: MEMORY=15Gi" in out
    assert "env: APP_MODE=eval" in out
    assert "secret: MY_TOKEN is set" in out
    assert "APP_LEAK" not in out, "the shell's own variables do not reach the job"
    assert "s3cr3t-value" not in result.output
    job_id = next(line for line in out.splitlines() if line.startswith("env: JOB_ID="))[12:]
    assert len(job_id) == 24 and int(job_id, 16) >= 0


def test_cpu_flavor_has_empty_accelerator() -> None:
    result = hfuv("run", str(EXAMPLES / "show_args.py"), "--local")
    assert "env: ACCELERATOR=\n" in result.stdout
    assert "env: CPU_CORES=2" in result.stdout


def test_local_run_executes_the_dry_run_bundle(tmp_path: Path) -> None:
    script = write(
        tmp_path / "bundle.py",
        DEMO_SCRIPT + "import os\nprint('BUNDLE', os.environ['HFUV_BUNDLE_SHA256'])\n",
    )
    dry = hfuv("run", str(script), "--dry-run", "--json")
    assert dry.code == 0, dry.stderr
    expected = dry.json()["body"]["environment"]["HFUV_BUNDLE_SHA256"]
    local = hfuv("run", str(script), "--local")
    assert local.code == 0, local.stderr
    assert f"BUNDLE {expected}" in local.stdout
    assert "a-1.1.0 b-2.0.0 3.12" in local.stdout


def test_two_local_runs_from_fresh_caches_lock_the_same_versions(tmp_path: Path) -> None:
    script = write(tmp_path / "demo.py", DEMO_SCRIPT)
    first = hfuv("run", str(script), "--local", env={"HFUV_CACHE_DIR": str(tmp_path / "c1")})
    second = hfuv("run", str(script), "--local", env={"HFUV_CACHE_DIR": str(tmp_path / "c2")})
    assert first.code == second.code == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout == "a-1.1.0 b-2.0.0 3.12\n"


def test_with_dependency_is_locked_and_installed(tmp_path: Path) -> None:
    script = write(
        tmp_path / "w.py",
        "import hfuv_demo_b\nprint(hfuv_demo_b.VALUE)\n",
    )
    result = hfuv("run", str(script), "--local", "--with", "hfuv-demo-b")
    assert result.code == 0, result.stderr
    assert result.stdout == "b-2.0.0\n"
    assert script.read_text() == "import hfuv_demo_b\nprint(hfuv_demo_b.VALUE)\n"


def test_python_choice_reaches_the_script(tmp_path: Path) -> None:
    script = write(
        tmp_path / "v.py",
        "# /// script\n# requires-python = '>=3.10'\n# dependencies = []\n# ///\n"
        "import sys\nprint('%d.%d' % sys.version_info[:2])\n",
    )
    assert hfuv("run", str(script), "--local").stdout == "3.12\n"


@needs_python("3.11")
def test_explicit_python(tmp_path: Path) -> None:
    script = write(tmp_path / "v.py", "import sys\nprint('%d.%d' % sys.version_info[:2])\n")
    assert hfuv("run", str(script), "--local", "-p", "3.11").stdout == "3.11\n"


def test_missing_python_is_a_clear_error(tmp_path: Path) -> None:
    script = write(
        tmp_path / "v.py", "# /// script\n# requires-python = '>=3.14'\n# ///\nprint(1)\n"
    )
    result = hfuv("run", str(script), "--local")
    if (
        "3.14"
        in subprocess.run([find_uv(), "python", "list"], capture_output=True, text=True).stdout
    ):
        return  # pragma: no cover - this machine has 3.14
    assert result.code == 1
    assert "Python 3.14 is not installed" in result.stderr
    assert "uv python install 3.14" in result.stderr
    assert "Traceback" not in result.stderr


def test_ctrl_c_reaches_the_script(tmp_path: Path) -> None:
    script = write(
        tmp_path / "wait.py",
        "import sys, time\nprint('ready', flush=True)\n"
        "try:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n"
        "    print('interrupted', flush=True)\n    sys.exit(42)\n",
    )
    env = dict(os.environ)
    process = subprocess.Popen(
        [sys.executable, "-m", "hfuv", "run", str(script), "--local"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "ready\n"
    time.sleep(0.2)
    os.killpg(process.pid, signal.SIGINT)  # what a terminal does on Ctrl-C
    out, err = process.communicate(timeout=60)
    assert "interrupted" in out
    assert process.returncode == 42, err


def test_bootstrap_installs_the_pinned_uv_when_the_machine_has_none(tmp_path: Path) -> None:
    """The job's image may lack uv or carry another version: the bootstrap installs the client's."""
    found = subprocess.run(
        [find_uv(), "python", "find", "3.12"], capture_output=True, text=True
    ).stdout.strip()
    python_bin = Path(found).resolve().parent
    assert not (python_bin / "uv").exists()
    script = write(tmp_path / "hello.py", DEMO_SCRIPT)
    result = hfuv(
        "run", str(script), "--local",
        env={"PATH": str(python_bin), "XDG_CACHE_HOME": str(tmp_path / "xdg"),
             "PYENV_VERSION": ""},
        timeout=600,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert "has no uv; installing uv" in result.stderr
    assert result.stdout == "a-1.1.0 b-2.0.0 3.12\n"
    installed = list((tmp_path / "xdg" / "hfuv-bootstrap").glob("uv-*/bin/uv"))
    assert len(installed) == 1


def test_interpreter_path_in_the_image_is_replaced_by_x_y_locally(tmp_path: Path) -> None:
    script = write(
        tmp_path / "img.py",
        "# /// script\n# requires-python = '>=3.12'\n# dependencies = []\n"
        "# [tool.hf-jobs]\n# image = 'vllm/vllm-openai'\n# python = '/usr/bin/python3'\n# ///\n"
        "import sys\nprint('%d.%d' % sys.version_info[:2])\n",
    )
    body = hfuv("run", str(script), "--dry-run", "--json").json()["body"]
    assert body["command"][0] == "/usr/bin/python3"
    assert body["environment"]["HFUV_INTERPRETER"] == "/usr/bin/python3"
    assert body["dockerImage"] == "vllm/vllm-openai"
    local = hfuv("run", str(script), "--local")
    assert local.code == 0, local.stderr
    assert local.stdout == "3.12\n"
    assert "a local run uses Python 3.12" in local.stderr


PRINT_A = "import hfuv_demo_a, sys; print(hfuv_demo_a.VALUE, sys.argv[1:])"


def test_a_command_runs_in_a_locked_environment_of_its_with_dependencies() -> None:
    newest = hfuv("run", "--with", "hfuv-demo-a", "python", "--local", "--", "-c", PRINT_A, "x")
    assert newest.code == 0, newest.stderr
    assert newest.stdout == "a-1.1.0 ['x']\n"
    pinned = hfuv("run", "--with", "hfuv-demo-a==1.0.0", "python", "--local", "--", "-c", PRINT_A)
    assert pinned.stdout == "a-1.0.0 []\n", pinned.stderr


def test_a_command_job_ships_a_script_that_runs_it() -> None:
    from hfuv.payload import read_bundle

    dry = hfuv("run", "--with", "hfuv-demo-a", "python", "--dry-run", "--json", "--", "-V")
    assert dry.code == 0, dry.stderr
    body = dry.json()["body"]
    assert body["command"][3:] == ["python", "-V"]
    assert body["labels"]["name"].startswith("run-python-")
    files = read_bundle(body["environment"])
    assert sorted(files) == ["run-python.py", "run-python.py.lock"]
    shipped = files["run-python.py"].decode()
    assert '# dependencies = ["hfuv-demo-a"]' in shipped and "os.execvp" in shipped
    checked = hfuv("check", "--with", "hfuv-demo-a", "python", "--json")
    assert checked.code == 0, checked.stderr
    report = checked.json()
    assert (report["command"], report["with"], report["lock"]) == ("python", ["hfuv-demo-a"],
                                                                  "command")  # fmt: skip


def test_an_unknown_command_or_a_missing_script(tmp_path: Path) -> None:
    unknown = hfuv("run", "no-such-tool", "--local", "--", "a")
    assert unknown.code == 127
    assert "warning: no-such-tool is not a file here, so it runs as a command" in unknown.stderr
    assert "hfuv: no-such-tool: command not found in the job's environment" in unknown.stderr
    for missing in ("missing.py", "sub/missing", str(tmp_path / "missing")):
        result = hfuv("run", missing, "--local")
        assert result.code == 2 and f"error: script not found: {missing}" in result.stderr
    refused = hfuv("lock", "python")
    assert refused.code == 2 and "beside a local script" in refused.stderr
