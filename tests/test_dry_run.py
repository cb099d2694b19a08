"""`hfuv run --dry-run`: the exact request, its cost, and nothing sent."""

from __future__ import annotations

from pathlib import Path

from hfuv.payload import read_bundle
from hfuv.pep723 import tomllib
from hfuv.uv import uv_version
from tests.conftest import DEMO_SCRIPT, EXAMPLES, hfuv, needs_python, write

pytestmark = needs_python("3.12")
CANARY = "canary-Zq81-not-hex"


def test_dry_run_json_is_the_exact_request(tmp_path: Path) -> None:
    script = write(tmp_path / "train.py", DEMO_SCRIPT)
    result = hfuv(
        "run", str(script), "--dry-run", "--json", "--flavor", "a10g-small",
        "-s", f"TOKEN={CANARY}", "--namespace", "my-org", "--", "--epochs", "3",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert CANARY not in result.stdout and CANARY not in result.stderr
    request = result.json()
    assert set(request) == {"method", "url", "body", "estimate"}
    assert request["method"] == "POST"
    assert request["url"] == "https://huggingface.co/api/jobs/my-org"
    body = request["body"]
    assert body["flavor"] == "a10g-small"
    assert body["secrets"] == {"TOKEN": "***"}
    assert body["timeoutSeconds"] == 1800
    assert body["dockerImage"] == f"ghcr.io/astral-sh/uv:{uv_version()}-python3.12-trixie"
    assert body["command"][:2] == ["python3", "-c"]
    assert body["command"][3:] == ["--epochs", "3"]
    assert body["arguments"] == []
    assert request["estimate"]["max_usd"] == 0.5

    files = read_bundle(body["environment"])
    assert set(files) == {"train.py", "train.py.lock"}
    assert files["train.py"] == script.read_bytes()
    lock = tomllib.loads(files["train.py.lock"].decode())
    assert {p["name"]: p["version"] for p in lock["package"]} == {
        "hfuv-demo-a": "1.1.0",
        "hfuv-demo-b": "2.0.0",
    }
    env = body["environment"]
    assert env["HFUV_PYTHON"] == "3.12"
    assert env["HFUV_UV_VERSION"] == uv_version()
    assert env["HFUV_SOURCE"] == "train.py"
    assert len(body["labels"]["hfuv-env"]) == 16
    assert body["labels"]["name"].startswith("train-")


def test_dry_run_is_byte_identical_from_fresh_caches(tmp_path: Path) -> None:
    script = write(tmp_path / "train.py", DEMO_SCRIPT)
    outputs = [
        hfuv("run", str(script), "--dry-run", "--json",
             env={"HFUV_CACHE_DIR": str(tmp_path / f"cache{i}")}).stdout
        for i in range(2)
    ]  # fmt: skip
    assert outputs[0] and outputs[0] == outputs[1]


def test_human_dry_run_shows_url_body_and_cost(tmp_path: Path) -> None:
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "--flavor", "h200x8",
                  "--timeout", "2h")  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("POST https://huggingface.co/api/jobs/{namespace}\n")
    assert '"flavor": "h200x8"' in result.stdout
    assert "<hfuv bootstrap," in result.stdout
    assert "h200x8 at $40.00/h × 2h timeout = at most $80.00" in result.stdout


def test_endpoint_and_missing_secret(tmp_path: Path) -> None:
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "--json",
                  env={"HF_ENDPOINT": "http://127.0.0.1:9/"})  # fmt: skip
    assert result.json()["url"] == "http://127.0.0.1:9/api/jobs/{namespace}"
    missing = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "-s", "NOT_SET_ANYWHERE")
    assert missing.code == 2
    assert "secret NOT_SET_ANYWHERE is not set in your environment" in missing.stderr


def test_hf_token_secret_falls_back_to_the_saved_login(tmp_path: Path) -> None:
    home = tmp_path / "hf"
    write(home / "token", "hf_saved_canary_token\n")
    result = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "--json", "-s", "HF_TOKEN",
                  env={"HF_HOME": str(home)})  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json()["body"]["secrets"] == {"HF_TOKEN": "***"}
    assert "hf_saved_canary_token" not in result.output


def test_remote_run_without_a_token_says_how_to_log_in() -> None:
    result = hfuv("run", str(EXAMPLES / "hello.py"), env={"HF_ENDPOINT": "http://127.0.0.1:9"})
    assert result.code == 1
    assert "error: no Hugging Face token" in result.stderr
    assert "hf auth login" in result.stderr


def test_script_without_metadata_gets_a_block_in_the_shipped_copy(tmp_path: Path) -> None:
    script = write(tmp_path / "plain.py", "#!/usr/bin/env python3\nprint('hi')\n")
    body = hfuv("run", str(script), "--dry-run", "--json", "--with", "hfuv-demo-a").json()["body"]
    shipped = read_bundle(body["environment"])["plain.py"].decode()
    assert shipped == (
        "#!/usr/bin/env python3\n# /// script\n"
        '# requires-python = ">=3.12"\n# dependencies = ["hfuv-demo-a"]\n# ///\n'
        "print('hi')\n"
    )
    assert script.read_text() == "#!/usr/bin/env python3\nprint('hi')\n"


def test_with_is_folded_into_an_existing_block(tmp_path: Path) -> None:
    script = write(tmp_path / "s.py", DEMO_SCRIPT.replace('"hfuv-demo-b"', '"hfuv-demo-b>=2"'))
    body = hfuv("run", str(script), "--dry-run", "--json", "--with", "hfuv-demo-a==1.0.0")
    assert body.code == 0, body.stderr
    files = read_bundle(body.json()["body"]["environment"])
    assert (
        '# dependencies = ["hfuv-demo-a", "hfuv-demo-b>=2", "hfuv-demo-a==1.0.0"]'
        in files["s.py"].decode()
    )
    lock = tomllib.loads(files["s.py.lock"].decode())
    assert {p["name"]: p["version"] for p in lock["package"]}["hfuv-demo-a"] == "1.0.0"


def test_extra_files_travel_in_the_bundle(tmp_path: Path) -> None:
    write(tmp_path / "conf" / "a.yaml", "a: 1\n")
    write(tmp_path / "data.txt", "x\n")
    script = write(tmp_path / "s.py", DEMO_SCRIPT)
    result = hfuv("run", "s.py", "--dry-run", "--json", "--file", "conf", "--file", "data.txt",
                  cwd=tmp_path)  # fmt: skip
    files = read_bundle(result.json()["body"]["environment"])
    assert set(files) == {"s.py", "s.py.lock", "conf/a.yaml", "data.txt"}
    assert files["s.py"] == script.read_bytes()


def test_oversized_bundle_is_refused(tmp_path: Path) -> None:
    import os

    write(tmp_path / "s.py", DEMO_SCRIPT)
    (tmp_path / "big.bin").write_bytes(os.urandom(1024 * 1024))
    result = hfuv("run", "s.py", "--dry-run", "--file", "big.bin", cwd=tmp_path)
    assert result.code == 1
    assert "largest: big.bin (1024 KiB, 13" in result.stderr
    assert "mount it with -v" in result.stderr


def test_large_bundle_is_split_below_the_env_string_limit(tmp_path: Path) -> None:
    import os

    write(tmp_path / "s.py", DEMO_SCRIPT)
    (tmp_path / "mid.bin").write_bytes(os.urandom(250 * 1024))
    body = hfuv("run", "s.py", "--dry-run", "--json", "--file", "mid.bin", cwd=tmp_path).json()
    env = body["body"]["environment"]
    parts = [k for k in env if k.removeprefix("HFUV_BUNDLE_").isdigit()]
    assert parts == [f"HFUV_BUNDLE_{i}" for i in range(len(parts))] and len(parts) == 4
    assert all(len(env[k]) <= 100 * 1024 for k in parts)
    assert read_bundle(env)["mid.bin"] == (tmp_path / "mid.bin").read_bytes()


def test_max_cost_is_checked_against_the_worst_case() -> None:
    within = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "--json", "--max-cost", "1")
    assert within.json()["estimate"]["within_max_cost"] is True
    over = hfuv("run", str(EXAMPLES / "hello.py"), "--dry-run", "--json", "--flavor", "h200x8",
                env={"HFUV_MAX_COST": "10"})  # fmt: skip
    estimate = over.json()["estimate"]
    assert estimate["max_usd"] == 20.0 and estimate["within_max_cost"] is False
    assert "is over the max cost ($10.00, --max-cost or HFUV_MAX_COST)" in over.stderr
