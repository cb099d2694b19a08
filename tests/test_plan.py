"""Launch configuration: flags > [tool.hfuv] > [tool.hf-jobs] > defaults, each value's origin."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfuv.errors import ConfigError
from hfuv.plan import parse_timeout, parse_volume
from tests.conftest import EXAMPLES, hfuv, write

BOTH_TABLES = """\
# /// script
# requires-python = ">=3.11"
# dependencies = []
#
# [tool.hf-jobs]
# flavor = "t4-small"
# timeout = 600
# image = "python:3.12"
# env = { SHARED = "jobs", ONLY_JOBS = "1" }
# labels = { team = "jobs", kind = "eval" }
# secrets = ["API_KEY"]
# volumes = ["hf://datasets/org/a:/data", "hf://org/model:/model"]
#
# [tool.hfuv]
# flavor = "l4x1"
# env = { SHARED = "hfuv" }
# labels = { team = "hfuv" }
# volumes = ["hf://buckets/org/b:/data:ro"]
# ///
print("configured")
"""


def check(path: Path, *args: str, **env: str) -> dict:
    result = hfuv("check", "--json", str(path), *args, env=env)
    assert result.code == 0, result.stderr
    return result.json()["launch"]


def test_precedence_and_origins(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", BOTH_TABLES)
    launch = check(script, API_KEY="k")
    assert launch["flavor"] == {"value": "l4x1", "origin": "[tool.hfuv]"}
    assert launch["timeout"] == {"value": 600, "origin": "[tool.hf-jobs]"}
    assert launch["image"] == {"value": "python:3.12", "origin": "[tool.hf-jobs]"}
    assert launch["python"] == {"value": None, "origin": "default"}
    assert launch["env"]["SHARED"] == {"value": "hfuv", "origin": "[tool.hfuv]"}
    assert launch["env"]["ONLY_JOBS"] == {"value": "1", "origin": "[tool.hf-jobs]"}
    assert launch["labels"]["team"]["value"] == "hfuv"
    assert launch["labels"]["kind"]["value"] == "eval"
    assert launch["secrets"] == {"API_KEY": {"value": "***", "origin": "[tool.hf-jobs]"}}
    assert launch["volumes"] == [
        {"type": "bucket", "source": "org/b", "mountPath": "/data", "readOnly": True},
        {"type": "model", "source": "org/model", "mountPath": "/model"},
    ]
    flagged = check(script, "--flavor", "a10g-small", "-e", "SHARED=cli", "-l", "team=cli",
                    "--timeout", "1h", API_KEY="k")  # fmt: skip
    assert flagged["flavor"] == {"value": "a10g-small", "origin": "flag"}
    assert flagged["timeout"] == {"value": 3600, "origin": "flag"}
    assert flagged["env"]["SHARED"] == {"value": "cli", "origin": "flag"}
    assert flagged["labels"]["team"] == {"value": "cli", "origin": "flag"}


def test_secret_named_by_the_script_must_exist(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", BOTH_TABLES)
    result = hfuv("check", str(script))
    assert result.code == 2
    assert "secret API_KEY is not set in your environment (requested by [tool.hf-jobs])" in (
        result.stderr
    )


def test_env_flag_wins_over_env_file(tmp_path: Path) -> None:
    env_file = write(
        tmp_path / "vars.env",
        "# comment\nexport A=1\nB='lit $x'\nC=\"two\\nlines\"\nD=plain # note\nE=file\nFROM_ENV\n",
    )
    launch = check(EXAMPLES / "hello.py", "--env-file", str(env_file), "-e", "E=flag",
                   FROM_ENV="here")  # fmt: skip
    values = {k: v["value"] for k, v in launch["env"].items()}
    assert values == {
        "A": "1", "B": "lit $x", "C": "two\nlines", "D": "plain", "E": "flag", "FROM_ENV": "here"
    }  # fmt: skip


def test_secrets_file_and_bare_names(tmp_path: Path) -> None:
    secrets = write(tmp_path / "s.env", "TOKEN_A=aaa\nTOKEN_B\n")
    launch = check(EXAMPLES / "hello.py", "--secrets-file", str(secrets), "-s", "TOKEN_C",
                   TOKEN_B="bbb", TOKEN_C="ccc")  # fmt: skip
    assert set(launch["secrets"]) == {"TOKEN_A", "TOKEN_B", "TOKEN_C"}
    assert all(item["value"] == "***" for item in launch["secrets"].values())


def test_configured_example_takes_its_table_and_flags_win() -> None:
    launch = check(EXAMPLES / "configured.py")
    assert launch["flavor"] == {"value": "t4-small", "origin": "[tool.hfuv]"}
    assert launch["timeout"]["value"] == 45 * 60
    assert launch["max_cost"] == {"value": 5, "origin": "[tool.hfuv]"}
    assert check(EXAMPLES / "configured.py", "--flavor", "cpu-upgrade")["flavor"]["value"] == (
        "cpu-upgrade"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30m", 1800), ("1.5h", 5400), ("2d", 172800), ("3600s", 3600), ("300", 300), (90, 90)],
)
def test_timeouts(text: str | int, seconds: int) -> None:
    assert parse_timeout(text, "--timeout") == seconds


@pytest.mark.parametrize("text", ["2x", "1w", "2H", "-5", "", "1.5.5h", True])
def test_bad_timeouts(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_timeout(text, "--timeout")


def test_volume_forms() -> None:
    assert parse_volume("hf://datasets/org/ds@v1/train:/in:ro", "-v") == {
        "type": "dataset", "source": "org/ds", "mountPath": "/in", "revision": "v1",
        "readOnly": True, "path": "train",
    }  # fmt: skip
    assert parse_volume("hf://buckets/me/b:/out", "-v") == {
        "type": "bucket", "source": "me/b", "mountPath": "/out"
    }  # fmt: skip
