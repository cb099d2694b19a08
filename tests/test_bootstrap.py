"""The bootstrap a job runs first: it refuses a bundle it cannot trust."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest

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


def tar_gz(*members: tuple[str, bytes | None]) -> bytes:
    """A gzip-compressed tar of `members`: (name, content), a folder when content is None."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:gz") as archive:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return raw.getvalue()


def zeros_gz(size: int) -> bytes:
    """`size` zero bytes, gzip-compressed: a tar of nothing but padding, a decompression bomb."""
    stream = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    chunk = bytes(1024 * 1024)
    body = b"".join(stream.compress(chunk) for _ in range(size // len(chunk)))
    return body + stream.flush()


GOOD = make_bundle({"s.py": b"print(1)\n"})

BAD_BUNDLES = {
    "not gzip": (b"plain text, no gzip header", "the bundle is not a valid gzip file"),
    "corrupt gzip": (GOOD[:10] + bytes(len(GOOD) - 10), "the bundle is not a valid gzip file"),
    "truncated gzip": (GOOD[: len(GOOD) // 2], "the bundle is cut short"),
    "gzip, then garbage": (GOOD + b"trailing", "the bundle is not a valid gzip file"),
    "gzip of no tar": (gzip.compress(b"not a tar archive " * 40), "not a valid tar archive"),
    "gzip of nothing": (gzip.compress(b""), "not a valid tar archive"),
    "a file named .": (tar_gz((".", b"x")), "refusing bundle member '.' (a file needs a name)"),
    "a file named ''": (tar_gz(("", b"x")), "refusing bundle member '' (a file needs a name)"),
    "a, then a/b": (
        tar_gz(("a", b"x"), ("a/b", b"y")),
        "'a' (a file, and a folder",
    ),
    "a/b, then a": (
        tar_gz(("a/b", b"x"), ("a", b"y")),
        "'a' (a file, and a folder",
    ),
    "folder a, then file a": (tar_gz(("a", None), ("a", b"y")), "'a' (a file, and a folder"),
    "a twice": (tar_gz(("a", b"1"), ("./a", b"2")), "'./a' (a second file named 'a')"),
    "a name too long": (tar_gz(("x" * 300, b"1")), "File name too long"),
    "over the size limit": (zeros_gz(129 * 1024 * 1024), "the bundle unpacks to more than 128 MiB"),
}


@pytest.mark.parametrize("case", BAD_BUNDLES, ids=list(BAD_BUNDLES))
def test_a_bad_bundle_ends_in_one_error_line(case: str, tmp_path: Path) -> None:
    bundle, message = BAD_BUNDLES[case]
    done = run_bootstrap(bundle, tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("hfuv bootstrap: error: ") and message in done.stderr
    assert done.stderr.count("\n") == 1, done.stderr  # one line: no traceback
    assert list((tmp_path / "work").iterdir()) == []  # nothing unpacked


def test_names_that_mean_the_same_file_unpack_once() -> None:
    from hfuv.bootstrap import files_of

    bundle = tar_gz((".", None), ("./lib", None), ("./s.py", b"1"), ("lib//m.py", b"2"))
    assert files_of(bundle) == {"s.py": b"1", "lib/m.py": b"2"}
    assert files_of(gzip.compress(b"") + GOOD) == {"s.py": b"print(1)\n"}  # two members
