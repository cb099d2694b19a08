"""Container images the tests build themselves (nothing can be pulled here), and a podman check.

- `busybox_image`: busybox-static with a marker file at /etc/MARKER (seconds to build);
- `uv_image`: Debian trixie (python3 3.13, ca-certificates, git) from mmdebstrap, plus the uv
  binary of our `uv` dependency (~1 min once; podman keeps it between runs).

Both are tagged under localhost/ and rebuilt only when missing. A test that needs one skips, with
the reason, when this machine has no working podman (`.ci/run` installs and configures it).
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import pytest

BUSYBOX_IMAGE = "localhost/hfuv-test-busybox:1"
UV_IMAGE = "localhost/hfuv-test-trixie-uv:1"
MARKER = "hfuv-test-image-marker-7d41"
BUSYBOX_APPLETS = ("sh", "cat", "ls", "echo", "sleep", "id", "env", "wget", "httpd", "nc")


@functools.cache
def podman_problem() -> str | None:
    """Why podman cannot run containers here, or None when it can."""
    if not shutil.which("podman"):
        return "podman is not installed (apt-get install podman runc; see .ci/run)"
    try:
        done = subprocess.run(
            ["podman", "info", "--format", "{{.Host.OCIRuntime.Name}}"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        return f"podman info failed: {exc}"
    if done.returncode != 0:
        return f"podman info failed: {done.stderr.strip()[:200]}"
    return None


def needs_podman():
    problem = podman_problem()
    return pytest.mark.skipif(problem is not None, reason=problem or "")


def _has_image(tag: str) -> bool:
    done = subprocess.run(["podman", "image", "exists", tag], capture_output=True)
    return done.returncode == 0


def _import(tar: Path, tag: str) -> None:
    subprocess.run(["podman", "import", "-q", str(tar), tag], check=True, capture_output=True)


@functools.cache
def busybox_image() -> str:
    """The tag of a tiny image with /etc/MARKER; skips the test when it cannot be built."""
    if problem := podman_problem():
        pytest.skip(problem)
    if _has_image(BUSYBOX_IMAGE):
        return BUSYBOX_IMAGE
    busybox = shutil.which("busybox")
    if not busybox:
        pytest.skip("busybox is not installed (apt-get install busybox-static)")
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch, "root")
        (root / "bin").mkdir(parents=True)
        (root / "etc").mkdir()
        (root / "tmp").mkdir(mode=0o1777)
        shutil.copy(busybox, root / "bin" / "busybox")
        for applet in BUSYBOX_APPLETS:
            (root / "bin" / applet).symlink_to("busybox")
        (root / "etc" / "MARKER").write_text(MARKER + "\n")
        tar = Path(scratch, "image.tar")
        with tarfile.open(tar, "w") as archive:
            archive.add(root, arcname=".")
        _import(tar, BUSYBOX_IMAGE)
    return BUSYBOX_IMAGE


@functools.cache
def uv_image() -> str:
    """The tag of a Debian trixie image with Python 3.13 and our uv; skips when it cannot be
    built (no mmdebstrap, or no access to Debian's mirror)."""
    if problem := podman_problem():
        pytest.skip(problem)
    if _has_image(UV_IMAGE):
        return UV_IMAGE
    if not shutil.which("mmdebstrap"):
        pytest.skip("mmdebstrap is not installed (apt-get install mmdebstrap)")
    from uv import find_uv_bin

    with tempfile.TemporaryDirectory() as scratch:
        tar = Path(scratch, "rootfs.tar")
        done = subprocess.run(
            ["mmdebstrap", "--quiet", "--variant=apt",
             "--include=python3,ca-certificates,git", "trixie", str(tar)],
            capture_output=True, text=True, timeout=900,
        )  # fmt: skip
        if done.returncode != 0:
            pytest.skip(f"mmdebstrap could not build a trixie root: {done.stderr.strip()[-300:]}")
        with tarfile.open(tar, "a") as archive:
            archive.add(find_uv_bin(), arcname="usr/local/bin/uv")
            marker = Path(scratch, "MARKER")
            marker.write_text(MARKER + "\n")
            archive.add(marker, arcname="etc/MARKER")
        _import(tar, UV_IMAGE)
    return UV_IMAGE
