"""The shipped lock holds only the wheels the job (Linux x86_64) and this machine can install."""

from __future__ import annotations

import platform
import sys
from pathlib import Path

import pytest

from hfuv.errors import BundleTooLargeError
from hfuv.payload import build_job_spec, read_bundle
from tests.conftest import hfuv, needs_python, write
from tests.helpers import build_wheel

pytestmark = [
    needs_python("3.12"),
    needs_python("3.11"),
    pytest.mark.skipif(
        sys.platform != "linux" or platform.machine() != "x86_64",
        reason="the wheels kept here are the job's own only on Linux x86_64",
    ),
]

JOB_WHEEL = "cp312-cp312-manylinux_2_17_x86_64"
OTHER_WHEELS = (
    "cp311-cp311-manylinux_2_17_x86_64",  # another Python
    "cp312-cp312-manylinux_2_17_aarch64",  # another CPU
    "cp312-cp312-macosx_11_0_arm64",
    "cp312-cp312-win_amd64",
)
SCRIPT = """\
# /// script
# requires-python = ">=3.11"
# dependencies = ["hfuv-demo-plat"]
# ///
import hfuv_demo_plat

print(hfuv_demo_plat.TAG)
"""


@pytest.fixture
def platform_index(tmp_path: Path) -> dict[str, str]:
    """A wheel index with one package built for several platforms, and a Windows-only one."""
    folder = tmp_path / "platform-wheels"
    folder.mkdir()
    for tag in (JOB_WHEEL, *OTHER_WHEELS):
        build_wheel(folder, "hfuv-demo-plat", "1.0.0", f"TAG = {tag!r}\n", tag=tag,
                    requires=("hfuv-demo-win; sys_platform == 'win32'",))  # fmt: skip
    build_wheel(folder, "hfuv-demo-win", "1.0.0", "", tag="py3-none-win_amd64")
    return {"UV_FIND_LINKS": str(folder)}


def wheels_in(lock: str) -> list[str]:
    return sorted(
        line.split("-1.0.0-")[1].removesuffix('.whl" },')
        for line in lock.splitlines()
        if ".whl" in line
    )


def shipped_lock(result) -> str:
    assert result.code == 0, result.stderr
    return read_bundle(result.json()["body"]["environment"])["s.py.lock"].decode()


def test_the_shipped_lock_leaves_out_wheels_the_job_cannot_install(
    tmp_path: Path, platform_index: dict[str, str]
) -> None:
    script = write(tmp_path / "s.py", SCRIPT)
    shipped = shipped_lock(hfuv("run", str(script), "--dry-run", "--json", env=platform_index))
    assert wheels_in(shipped) == [JOB_WHEEL]
    assert 'name = "hfuv-demo-win"' in shipped  # every package stays, only wheels go
    assert "marker = \"sys_platform == 'win32'\"" in shipped

    local = hfuv("run", str(script), "--local", env=platform_index)
    assert local.code == 0, local.stderr
    assert local.stdout == f"{JOB_WHEEL}\n"

    # The user's own lock keeps every platform (uv wrote it so); the shipped copy does not.
    assert hfuv("lock", str(script), env=platform_index).code == 0
    universal = (tmp_path / "s.py.lock").read_text()
    assert wheels_in(universal) == sorted([JOB_WHEEL, *OTHER_WHEELS, "py3-none-win_amd64"])
    again = hfuv("run", str(script), "--dry-run", "--json", env=platform_index)
    assert shipped_lock(again) == shipped
    assert len(shipped) < len(universal)


def test_the_wheels_kept_follow_the_python_and_the_jobs_interpreter(
    tmp_path: Path, platform_index: dict[str, str]
) -> None:
    script = write(tmp_path / "s.py", SCRIPT)
    on_311 = hfuv("run", str(script), "--dry-run", "--json", "-p", "3.11", env=platform_index)
    assert wheels_in(shipped_lock(on_311)) == ["cp311-cp311-manylinux_2_17_x86_64"]
    local = hfuv("run", str(script), "--local", "-p", "3.11", env=platform_index)
    assert local.stdout == "cp311-cp311-manylinux_2_17_x86_64\n", local.stderr
    # An interpreter inside a custom image may be any Python: every x86_64 Linux wheel stays.
    image = hfuv("run", str(script), "--dry-run", "--json", "--image", "vllm/vllm-openai",
                 "-p", "/usr/bin/python3", env=platform_index)  # fmt: skip
    assert wheels_in(shipped_lock(image)) == sorted(
        ["cp311-cp311-manylinux_2_17_x86_64", JOB_WHEEL]
    )


def test_a_lock_too_big_to_ship_is_named_as_the_cause(tmp_path: Path) -> None:
    import hashlib

    from hfuv.lock import EnvSpec
    from hfuv.plan import CliOptions, resolve
    from hfuv.sources import load

    script = write(tmp_path / "s.py", SCRIPT)
    entries = [
        f'[[package]]\nname = "pkg-{i}"\nversion = "1.0"\n'
        f'wheels = [\n    {{ url = "https://x/pkg_{i}-1.0-py3-none-any.whl", hash = '
        f'"sha256:{hashlib.sha256(str(i).encode()).hexdigest()}" }},\n]\n'
        for i in range(15000)
    ]
    lock = 'version = 1\nrequires-python = ">=3.11"\n\n' + "\n".join(entries)
    env = EnvSpec("3.12", None, "0.13.9", script.read_bytes(), lock, "fresh")
    source = load(str(script), environ={}, gist_file=None, sha256=None, cache=tmp_path)
    config = resolve(CliOptions(), {}, where="s.py", environ={})
    with pytest.raises(BundleTooLargeError) as raised:
        build_job_spec(source=source, env_spec=env, config=config, args=())
    message = str(raised.value)
    assert "over the 900 KiB that fit in a job's environment; largest: s.py.lock (" in message
    assert "KiB encoded: 15000 packages)" in message
    assert message.endswith(
        "(it already holds only the wheels Linux x86_64 and this machine need; lock fewer "
        "packages: drop the dependencies (and --with) the job does not need)"
    )
