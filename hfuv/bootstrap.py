"""The small program a job runs first. Standard library only; runs on Python 3.9+.

It reassembles the bundle from HFUV_BUNDLE_0, HFUV_BUNDLE_1, …, checks its sha256 against
HFUV_BUNDLE_SHA256, unpacks it into a work directory (refusing absolute paths, `..`, links, a
name used twice and anything past MAX_UNPACKED_BYTES), makes sure the uv it runs is exactly
HFUV_UV_VERSION (installing it when the image has none or another), and execs `uv run --frozen`
on the shipped script with the job's arguments untouched.
The script's exit code is the job's.
"""

import base64
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zlib

PREFIX = "hfuv bootstrap:"
# What a bundle may unpack to. hfuv's bundles fit in ~900 KiB compressed; more than this is a
# decompression bomb, which would fill the job's disk and memory.
MAX_UNPACKED_BYTES = 128 * 1024 * 1024
RESUBMIT = "; submit the job again with hfuv"


def fail(message, code=1):
    sys.stderr.write(PREFIX + " error: " + message + "\n")
    sys.exit(code)


def read_bundle(env):
    parts = []
    while f"HFUV_BUNDLE_{len(parts)}" in env:
        parts.append(env[f"HFUV_BUNDLE_{len(parts)}"])
    if not parts:
        fail("no HFUV_BUNDLE_0 in the environment; this job was not made by hfuv")
    try:
        data = base64.b64decode("".join(parts), validate=True)
    except ValueError:
        fail("the bundle is not valid base64")
    digest = hashlib.sha256(data).hexdigest()
    if digest != env.get("HFUV_BUNDLE_SHA256"):
        fail(f"bundle sha256 {digest} does not match HFUV_BUNDLE_SHA256")
    return data


def decompressed(data):
    """The tar inside the bundle's gzip, at most MAX_UNPACKED_BYTES of it."""
    tar, rest = b"", data
    try:
        while rest:  # a gzip file may hold several members, one after the other
            stream = zlib.decompressobj(16 + zlib.MAX_WBITS)
            tar += stream.decompress(rest, MAX_UNPACKED_BYTES + 1 - len(tar))
            if len(tar) > MAX_UNPACKED_BYTES:
                limit = MAX_UNPACKED_BYTES // 2**20
                fail(f"the bundle unpacks to more than {limit} MiB, the bootstrap's limit; "
                     "ship big files another way (a volume, or a download)")  # fmt: skip
            if not stream.eof:
                fail("the bundle is cut short: its gzip stream ends before its end" + RESUBMIT)
            rest = stream.unused_data
    except zlib.error as exc:
        fail(f"the bundle is not a valid gzip file ({exc}){RESUBMIT}")
    return tar


def member_path(member):
    """The path `member` unpacks to, as `a/b`; refuses what could land outside the work dir."""
    name = member.name
    if name.startswith("/") or ".." in name.replace("\\", "/").split("/"):
        fail(f"refusing bundle member {name!r} (absolute path or '..')")
    if not (member.isfile() or member.isdir()):
        fail(f"refusing bundle member {name!r} (a link or a special file)")
    path = "/".join(part for part in name.split("/") if part not in ("", "."))
    if member.isfile() and not path:
        fail(f"refusing bundle member {name!r} (a file needs a name)")
    return path


def files_of(data):
    """The bundle's files, path -> bytes. Each path is one file: never a folder too, never two."""
    files, folders = {}, set()
    try:
        with tarfile.open(fileobj=io.BytesIO(decompressed(data)), mode="r:") as archive:
            for member in archive:
                path = member_path(member)
                parents = path.split("/")[:-1]
                folders.update("/".join(parents[: i + 1]) for i in range(len(parents)))
                if member.isdir():
                    folders.add(path)
                elif path in files:
                    fail(f"refusing bundle member {member.name!r} (a second file named {path!r})")
                else:
                    files[path] = archive.extractfile(member).read()
    except (tarfile.TarError, EOFError) as exc:
        fail(f"the bundle is not a valid tar archive ({exc}){RESUBMIT}")
    clashes = sorted(folders.intersection(files))
    if clashes:
        fail(f"refusing bundle member {clashes[0]!r} (a file, and a folder of other members)")
    return files


def unpack(files, workdir):
    for name, content in files.items():
        target = os.path.join(workdir, name)
        try:
            os.makedirs(os.path.dirname(target) or workdir, exist_ok=True)
            with open(target, "wb") as out:
                out.write(content)
        except OSError as exc:
            fail(f"could not write bundle member {name!r} to {workdir}: {exc.strerror}")


def uv_version_of(path):
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    words = out.stdout.split()
    return words[1] if out.returncode == 0 and len(words) >= 2 else None


def ensure_uv(version, env):
    found = shutil.which("uv", path=env.get("PATH"))
    found_version = uv_version_of(found) if found else None
    if found_version == version:
        return found
    cache = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    home = os.path.join(cache, "hfuv-bootstrap", "uv-" + version)
    candidate = os.path.join(home, "bin", "uv")
    if os.path.isfile(candidate) and uv_version_of(candidate) == version:
        return candidate
    why = f"has uv {found_version}" if found_version else "has no uv"
    sys.stderr.write(f"{PREFIX} this machine {why}; installing uv {version}\n")
    sys.stderr.flush()
    os.makedirs(os.path.dirname(home), exist_ok=True)
    staging = tempfile.mkdtemp(prefix="uv-", dir=os.path.dirname(home))
    if not install_with_pip(version, staging) and not install_with_script(version, staging):
        fail(f"could not install uv {version} (pip and the astral.sh installer both failed)")
    if os.path.isdir(home):
        shutil.rmtree(home, ignore_errors=True)
    os.replace(staging, home)
    if uv_version_of(candidate) != version:
        fail(f"installed uv {version} but {candidate} does not report that version")
    return candidate


def install_with_pip(version, target):
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--no-warn-script-location", "--target", target, "uv==" + version,
    ]  # fmt: skip
    try:
        return subprocess.run(command, stdout=sys.stderr).returncode == 0 and os.path.isfile(
            os.path.join(target, "bin", "uv")
        )
    except OSError:
        return False


def install_with_script(version, target):
    url = f"https://astral.sh/uv/{version}/install.sh"
    try:
        script = urllib.request.urlopen(url, timeout=60).read()
    except Exception:
        return False
    env = dict(os.environ, UV_INSTALL_DIR=os.path.join(target, "bin"), UV_NO_MODIFY_PATH="1")
    try:
        done = subprocess.run(["sh", "-s"], input=script, env=env, stdout=sys.stderr)
    except OSError:
        return False
    return done.returncode == 0


def prepare(env, args, place_code=None):
    """Verify and unpack the bundle and find the uv to use: (uv path, argv, work dir).

    `place_code`, given the bundle's files, names a folder that holds them, from which uv is
    to run the script (a local run's stable code dir, see `hfuv.codedir`); by default the
    script runs from the work dir."""
    for name in ("HFUV_UV_VERSION", "HFUV_SCRIPT", "HFUV_PYTHON"):
        if not env.get(name):
            fail(f"{name} is not set; this job was not made by hfuv")
    data = read_bundle(env)
    workdir = env.get("HFUV_WORKDIR") or tempfile.mkdtemp(prefix="hfuv-job-")
    os.makedirs(workdir, exist_ok=True)
    files = files_of(data)
    unpack(files, workdir)
    script = env["HFUV_SCRIPT"]
    if place_code is not None:
        script = os.path.join(place_code(files), script)
    uv = ensure_uv(env["HFUV_UV_VERSION"], env)
    python = env.get("HFUV_INTERPRETER") or env["HFUV_PYTHON"]
    argv = [uv, "run", "--frozen", "--python", python, "--script", script, *args]
    return uv, argv, workdir


def main():
    uv, argv, workdir = prepare(os.environ, sys.argv[1:])
    os.chdir(workdir)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(uv, argv)


if __name__ == "__main__":
    main()
