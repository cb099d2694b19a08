"""Script sources: stdin, URLs, gists, GitHub and Hub pages, against fake hosts on 127.0.0.1."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfuv.payload import read_bundle
from tests.conftest import EXAMPLES, hfuv, needs_python
from tests.helpers import FakeHost, Reply

pytestmark = needs_python("3.12")
SCRIPT = "# /// script\n# requires-python = '>=3.10'\n# dependencies = []\n# ///\nprint('remote')\n"
HF_CANARY = "hf_canary_token_value"
GH_CANARY = "gh_canary_token_value"


@pytest.fixture
def github() -> Iterator[FakeHost]:
    host = FakeHost()
    yield host
    host.close()


@pytest.fixture
def hub() -> Iterator[FakeHost]:
    host = FakeHost()
    yield host
    host.close()


def env_for(github: FakeHost, hub: FakeHost | None = None) -> dict[str, str]:
    env = {
        "HFUV_GITHUB_API_URL": f"{github.url}/api",
        "HFUV_GITHUB_RAW_URL": f"{github.url}/raw",
        "HF_TOKEN": HF_CANARY,
        "GITHUB_TOKEN": GH_CANARY,
    }
    if hub is not None:
        env["HF_ENDPOINT"] = hub.url
    return env


def gist(files: dict[str, dict], version: str = "rev123") -> Reply:
    return Reply.json({"id": "abc", "files": files, "history": [{"version": version}]})


def test_gist_with_one_python_file(github: FakeHost) -> None:
    github.routes["/api/gists/abc"] = gist(
        {
            "README.md": {"filename": "README.md", "content": "# hi", "truncated": False},
            "train.py": {"filename": "train.py", "content": SCRIPT, "truncated": False},
        }
    )
    result = hfuv(
        "run", "https://gist.github.com/someone/abc", "--dry-run", "--json", env=env_for(github)
    )
    assert result.code == 0, result.stderr
    env = result.json()["body"]["environment"]
    assert read_bundle(env)["train.py"] == SCRIPT.encode()
    assert env["HFUV_SOURCE"] == "https://gist.github.com/someone/abc"
    assert env["HFUV_SOURCE_REVISION"] == "rev123"
    assert env["HFUV_SOURCE_SHA256"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    api = github.headers_for("/api/gists/abc")[0]
    assert api["Authorization"] == f"Bearer {GH_CANARY}"
    assert HF_CANARY not in str(github.requests), "the HF token never goes to GitHub"


def test_gist_local_run(github: FakeHost) -> None:
    github.routes["/api/gists/abc"] = gist(
        {"train.py": {"filename": "train.py", "content": SCRIPT, "truncated": False}}
    )
    result = hfuv("run", "https://gist.github.com/someone/abc", "--local", env=env_for(github))
    assert result.code == 0, result.stderr
    assert result.stdout == "remote\n"


def test_gist_with_several_python_files(github: FakeHost) -> None:
    files = {
        name: {"filename": name, "content": SCRIPT.replace("remote", name), "truncated": False}
        for name in ("b_eval.py", "a_train.py")
    }
    github.routes["/api/gists/abc"] = gist(files)
    env = env_for(github)
    ambiguous = hfuv("check", "https://gist.github.com/someone/abc", env=env)
    assert ambiguous.code == 2
    assert "several .py files: a_train.py, b_eval.py" in ambiguous.stderr
    assert "--gist-file" in ambiguous.stderr
    by_option = hfuv("check", "--json", "https://gist.github.com/someone/abc",
                     "--gist-file", "b_eval.py", env=env)  # fmt: skip
    assert by_option.json()["script"] == "b_eval.py"
    by_fragment = hfuv("check", "--json", "https://gist.github.com/someone/abc#file-a_train-py",
                       env=env)  # fmt: skip
    assert by_fragment.json()["script"] == "a_train.py"
    wrong = hfuv("check", "https://gist.github.com/someone/abc", "--gist-file", "nope.py", env=env)
    assert wrong.code == 2 and "files: a_train.py, b_eval.py" in wrong.stderr


def test_truncated_gist_file_is_fetched_from_raw_url(github: FakeHost) -> None:
    github.routes["/raw-gist/abc/raw/rev/big.py"] = Reply.text(SCRIPT)
    github.routes["/api/gists/abc"] = gist(
        {
            "big.py": {
                "filename": "big.py",
                "content": SCRIPT[:10],
                "truncated": True,
                "raw_url": f"{github.url}/raw-gist/abc/raw/rev/big.py",
            }
        }
    )
    result = hfuv("check", "--json", "https://gist.github.com/someone/abc", env=env_for(github))
    assert result.code == 0, result.stderr
    assert result.json()["sha256"] == hashlib.sha256(SCRIPT.encode()).hexdigest()
    raw_headers = github.headers_for("/raw-gist/")[0]
    assert "Authorization" not in raw_headers


def test_gist_not_found(github: FakeHost) -> None:
    result = hfuv("check", "https://gist.github.com/someone/missing", env=env_for(github))
    assert result.code == 1
    assert "not found (HTTP 404)" in result.stderr
    assert "Traceback" not in result.stderr


def test_gist_rate_limited(github: FakeHost) -> None:
    reset = int(time.time()) + 600
    github.routes["/api/gists/abc"] = Reply.json(
        {"message": "API rate limit exceeded"},
        403,
        **{"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(reset)},
    )
    env = env_for(github)
    del env["GITHUB_TOKEN"]
    result = hfuv("check", "https://gist.github.com/someone/abc", env=env)
    assert result.code == 1
    assert "rate limited by the GitHub API (HTTP 403) until" in result.stderr
    assert time.strftime("%H:%M:%S UTC", time.gmtime(reset)) in result.stderr
    assert "GITHUB_TOKEN" in result.stderr


def test_github_blob_url_is_fetched_raw(github: FakeHost) -> None:
    github.routes["/raw/org/repo/main/scripts/train.py"] = Reply.text(SCRIPT)
    result = hfuv("check", "--json", "https://github.com/org/repo/blob/main/scripts/train.py",
                  env=env_for(github))  # fmt: skip
    assert result.code == 0, result.stderr
    assert result.json()["script"] == "train.py"
    assert [r.path for r in github.requests] == ["/raw/org/repo/main/scripts/train.py"]
    assert "Authorization" not in github.requests[0].headers


def test_html_page_is_refused(github: FakeHost) -> None:
    github.routes["/page.py"] = Reply(200, b"<!DOCTYPE html><html>hi</html>", {})
    result = hfuv("check", f"{github.url}/page.py", env=env_for(github))
    assert result.code == 1
    assert "is an HTML page, not a Python script" in result.stderr


def test_hub_blob_url_resolves_and_gets_the_token_only_there(
    github: FakeHost, hub: FakeHost
) -> None:
    hub.routes["/datasets/org/scripts/resolve/main/job.py"] = Reply.text(SCRIPT)
    github.routes["/plain.py"] = Reply.text(SCRIPT)
    env = env_for(github, hub)
    result = hfuv("check", "--json", f"{hub.url}/datasets/org/scripts/blob/main/job.py", env=env)
    assert result.code == 0, result.stderr
    assert hub.requests[0].path == "/datasets/org/scripts/resolve/main/job.py"
    assert hub.requests[0].headers["Authorization"] == f"Bearer {HF_CANARY}"
    other = hfuv("check", f"{github.url}/plain.py", env=env)
    assert other.code == 0, other.stderr
    assert all("Authorization" not in r.headers for r in github.requests)


def test_sha256_pin_and_cache(github: FakeHost, tmp_path: Path) -> None:
    github.routes["/s.py"] = Reply.text(SCRIPT)
    env = env_for(github)
    good = hashlib.sha256(SCRIPT.encode()).hexdigest()
    assert hfuv("check", f"{github.url}/s.py", "--sha256", good, env=env).code == 0
    fetched = len(github.requests)
    again = hfuv("check", f"{github.url}/s.py", "--sha256", good, env=env)
    assert again.code == 0 and len(github.requests) == fetched, "a pinned hash hits the cache"
    bad = hfuv("check", f"{github.url}/s.py", "--sha256", "0" * 64, env=env)
    assert bad.code == 1 and f"has sha256 {good}, not the pinned" in bad.stderr
    malformed = hfuv("check", f"{github.url}/s.py", "--sha256", "xyz", env=env)
    assert malformed.code == 2


def test_oversized_download_is_refused(github: FakeHost) -> None:
    github.routes["/huge.py"] = Reply(200, b"#" * (11 * 1024 * 1024), {})
    result = hfuv("check", f"{github.url}/huge.py", env=env_for(github))
    assert result.code == 1 and "larger than 10 MiB" in result.stderr


def test_timeout_is_a_clear_error(github: FakeHost) -> None:
    def slow() -> Reply:
        time.sleep(3)
        return Reply.text(SCRIPT)

    github.routes["/slow.py"] = slow
    result = hfuv("check", f"{github.url}/slow.py", env={**env_for(github),
                                                          "HFUV_HTTP_TIMEOUT": "0.5"})  # fmt: skip
    assert result.code == 1
    assert "timed out after 0.5s" in result.stderr


def test_stdin_script() -> None:
    text = (EXAMPLES / "hello.py").read_text()
    result = hfuv("run", "-", "--local", input=text)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("Hello from job ")


def test_missing_local_script_is_a_usage_error(tmp_path: Path) -> None:
    result = hfuv("run", str(tmp_path / "nope.py"), "--local")
    assert result.code == 2
    assert result.stderr.startswith("error: script not found: ")
