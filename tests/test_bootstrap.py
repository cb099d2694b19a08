"""The bootstrap a job runs first: it refuses a bundle it cannot trust."""

from __future__ import annotations

import base64
import hashlib
import io
import subprocess
import sys
import tarfile
from pathlib import Path

from hfuv.payload import bootstrap_source, make_bundle, split_bundle


def run_bootstrap(
    bundle: bytes, tmp_path: Path, sha: str | None = None
) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        "HFUV_UV_VERSION": "0.0.0",
        "HFUV_SCRIPT": "s.py",
        "HFUV_PYTHON": "3.12",
        "HFUV_WORKDIR": str(tmp_path / "work"),
        "HFUV_BUNDLE_SHA256": sha or hashlib.sha256(bundle).hexdigest(),
        **split_bundle(bundle),
    }
    return subprocess.run(
        [sys.executable, "-c", bootstrap_source()], env=env, capture_output=True, text=True
    )


def evil_bundle(name: str) -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        info = tarfile.TarInfo(name)
        info.size = 2
        archive.addfile(info, io.BytesIO(b"hi"))
    return raw.getvalue()


def test_refuses_absolute_and_parent_paths(tmp_path: Path) -> None:
    for name in ("/etc/evil", "../evil", "a/../../evil"):
        done = run_bootstrap(evil_bundle(name), tmp_path)
        assert done.returncode == 1
        assert "refusing bundle member" in done.stderr
        assert not (tmp_path / "evil").exists()


def test_refuses_a_bundle_whose_sha256_does_not_match(tmp_path: Path) -> None:
    bundle = make_bundle({"s.py": b"print(1)\n"})
    done = run_bootstrap(bundle, tmp_path, sha="0" * 64)
    assert done.returncode == 1
    assert "does not match HFUV_BUNDLE_SHA256" in done.stderr
    assert not (tmp_path / "work" / "s.py").exists()


def test_refuses_a_job_without_a_bundle(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", bootstrap_source()],
        env={"HFUV_UV_VERSION": "1", "HFUV_SCRIPT": "s.py", "HFUV_PYTHON": "3.12"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "no HFUV_BUNDLE_0" in done.stderr


def test_bundle_is_reproducible_and_plain_tar_gz() -> None:
    files = {"b.txt": b"2", "a.py": b"1"}
    first, second = make_bundle(files), make_bundle(dict(reversed(files.items())))
    assert first == second
    with tarfile.open(fileobj=io.BytesIO(first), mode="r:gz") as archive:
        assert [m.name for m in archive.getmembers()] == ["a.py", "b.txt"]
        assert all(m.mtime == 0 and m.uid == 0 for m in archive.getmembers())
    assert base64.b64decode("".join(split_bundle(first).values())) == first
