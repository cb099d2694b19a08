"""JobSpec: the exact JSON body of `POST /api/jobs/{namespace}`. Pure and deterministic.

The job carries its own files in a bundle: a gzip-compressed tar (fixed mtimes, owners and
order), base64-encoded and split in order across HFUV_BUNDLE_0, HFUV_BUNDLE_1, … with
HFUV_BUNDLE_SHA256 (of the compressed tar) beside them. The command is the bootstrap, an argv
array; the user's arguments follow it untouched, never spliced into a shell string.
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hfuv import costs
from hfuv.bundle import (
    BUNDLE_PREFIX,
    MAX_BUNDLE_CHARS,
    encoded_size,
    make_bundle,
    split_bundle,
)
from hfuv.bundle import (
    default_name as name_for,
)
from hfuv.errors import BundleTooLargeError, ConfigError
from hfuv.flavors import Flavor, get_flavor

if TYPE_CHECKING:  # only for types: a Docker-like job needs neither lock nor source
    from hfuv.lock import EnvSpec
    from hfuv.plan import LaunchConfig
    from hfuv.sources import ScriptSource

RESERVED_PREFIX = "HFUV_"
ENV_LABEL = "hfuv-env"


@dataclass(frozen=True)
class JobSpec:
    body: dict[str, Any]
    flavor: Flavor
    bundle_sha256: str
    files: tuple[str, ...]
    notes: list[str] = field(default_factory=list)

    def redacted(self) -> dict[str, Any]:
        """The body as shown: secret values, and env values under secret-looking names, `***`."""
        from hfuv.redact import shown

        return shown(self.body)

    def estimate(self, jobs: int = 1) -> dict[str, Any]:
        """The worst case at the built-in catalog's price (submissions ask the endpoint)."""
        worst = costs.estimate(None, self.flavor.name, self.body["timeoutSeconds"], jobs)
        return {
            "flavor": worst.flavor,
            "usd_per_hour": worst.usd_per_hour,
            "timeout_seconds": worst.timeout_seconds,
            "jobs": jobs,
            "max_usd": round(worst.max_usd, 4),
            "summary": worst.summary(),
        }


def default_image(uv_version: str, python: str) -> str:
    return f"ghcr.io/astral-sh/uv:{uv_version}-python{python}-trixie"


@functools.cache
def bootstrap_source() -> str:
    return (Path(__file__).parent / "bootstrap.py").read_text(encoding="utf-8")


def read_bundle(environment: Mapping[str, str]) -> dict[str, bytes]:
    """The files of a job's bundle, read back from its environment (for tests and inspection)."""
    parts = []
    while f"{BUNDLE_PREFIX}{len(parts)}" in environment:
        parts.append(environment[f"{BUNDLE_PREFIX}{len(parts)}"])
    data = base64.b64decode("".join(parts))
    if hashlib.sha256(data).hexdigest() != environment.get("HFUV_BUNDLE_SHA256"):
        raise ValueError("bundle sha256 mismatch")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            member.name: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }


def collect_extra_files(paths: Sequence[str]) -> dict[str, bytes]:
    """`--file` paths → bundle name → content. Directories are added recursively."""
    files: dict[str, bytes] = {}
    for given in paths:
        path = Path(given)
        if not path.exists():
            raise ConfigError(f"--file {given}: no such file or directory")
        base = _bundle_name(path)
        if path.is_dir():
            for item in sorted(p for p in path.rglob("*") if p.is_file()):
                files[f"{base}/{item.relative_to(path).as_posix()}"] = item.read_bytes()
        else:
            files[base] = path.read_bytes()
    return files


def _bundle_name(path: Path) -> str:
    parts = path.parts
    if path.is_absolute() or ".." in parts:
        return path.resolve().name
    return Path(*parts).as_posix() if parts else path.name


def default_name(source: ScriptSource, args: Sequence[str]) -> str:
    return name_for(source.name, source.sha256, args)


def build_job_spec(
    *,
    source: ScriptSource,
    env_spec: EnvSpec,
    config: LaunchConfig,
    args: Sequence[str],
    extra_files: Mapping[str, bytes] | None = None,
) -> JobSpec:
    """Everything that goes into POST /api/jobs/{namespace}, in the official client's shape."""
    flavor = get_flavor(config.flavor)
    lock_name = source.name + ".lock"
    files = {source.name: env_spec.script, lock_name: env_spec.lock.encode("utf-8")}
    for name, content in (extra_files or {}).items():
        if name in files:
            raise ConfigError(f"--file {name} clashes with the shipped script or its lock")
        files[name] = content
    bundle = make_bundle(files)
    size = encoded_size(bundle)
    if size > MAX_BUNDLE_CHARS:
        raise _too_large(files, size, source.name, lock_name, env_spec)
    for key in config.env:
        if key.startswith(RESERVED_PREFIX):
            raise ConfigError(f"env name {key} is reserved for hfuv", hint="rename it")

    environment = dict(config.env)
    environment.update(
        {
            "HFUV_SCRIPT": source.name,
            "HFUV_SOURCE": source.origin,
            "HFUV_SOURCE_SHA256": source.sha256,
            "HFUV_PYTHON": env_spec.python,
            "HFUV_UV_VERSION": env_spec.uv_version,
        }
    )
    if source.revision:
        environment["HFUV_SOURCE_REVISION"] = source.revision
    if env_spec.interpreter:
        environment["HFUV_INTERPRETER"] = env_spec.interpreter
    environment.update(split_bundle(bundle))
    environment["HFUV_BUNDLE_SHA256"] = hashlib.sha256(bundle).hexdigest()

    labels = dict(config.labels)
    labels.setdefault("name", default_name(source, args))
    labels[ENV_LABEL] = env_spec.digest[:16]

    interpreter = env_spec.interpreter or "python3"
    body: dict[str, Any] = {
        "command": [interpreter, "-c", bootstrap_source(), *args],
        "arguments": [],
        "environment": environment,
        "flavor": flavor.name,
    }
    image = config.image or default_image(env_spec.uv_version, env_spec.python)
    _add_launch_fields(body, config, labels, image)
    return JobSpec(
        body=body,
        flavor=flavor,
        bundle_sha256=environment["HFUV_BUNDLE_SHA256"],
        files=tuple(sorted(files)),
    )


def _too_large(
    files: Mapping[str, bytes], encoded_size: int, script: str, lock_name: str, env_spec: EnvSpec
) -> BundleTooLargeError:
    """What takes the room (each file's share, compressed and encoded), and what to do about it."""
    shares = {name: (len(gzip.compress(data, 9)) + 2) // 3 * 4 for name, data in files.items()}
    biggest = sorted(files, key=lambda n: shares[n], reverse=True)[:3]

    def describe(name: str) -> str:
        what = f": {len(env_spec.locked_packages())} packages" if name == lock_name else ""
        return f"{name} ({len(files[name]) // 1024} KiB, {shares[name] // 1024} KiB encoded{what})"

    if biggest[0] == lock_name:
        hint = (
            "it already holds only the wheels Linux x86_64 and this machine need; lock fewer "
            "packages: drop the dependencies (and --with) the job does not need"
        )
    elif biggest[0] == script:
        hint = "move the data the script carries to a Hub dataset or bucket, mounted with -v"
    else:
        hint = "move data to a Hub dataset or bucket and mount it with -v"
    return BundleTooLargeError(
        f"the job's files take {encoded_size // 1024} KiB encoded, over the "
        f"{MAX_BUNDLE_CHARS // 1024} KiB that fit in a job's environment; largest: "
        + ", ".join(describe(name) for name in biggest),
        hint=hint,
    )


def _space_id(image: str) -> str | None:
    for prefix in (
        "https://huggingface.co/spaces/",
        "https://hf.co/spaces/",
        "huggingface.co/spaces/",
        "hf.co/spaces/",
    ):
        if image.startswith(prefix):
            return image[len(prefix) :]
    return None


def build_exec_spec(image: str, command: Sequence[str], config: LaunchConfig) -> JobSpec:
    """The body of a Docker-like job (`hfuv exec IMAGE -- COMMAND`): no bundle, no bootstrap."""
    if not command:
        raise ConfigError("no command given", hint="write hfuv exec IMAGE -- COMMAND [ARGS]...")
    flavor = get_flavor(config.flavor)
    for key in config.env:
        if key.startswith(BUNDLE_PREFIX):
            raise ConfigError(f"env name {key} is reserved for hfuv", hint="rename it")
    labels = dict(config.labels)
    if "name" not in labels:
        base = re.sub(r"[^A-Za-z0-9_-]", "-", image.rsplit("/", 1)[-1])[:60] or "job"
        digest = hashlib.sha256("\0".join([image, *command]).encode()).hexdigest()[:8]
        labels["name"] = f"{base}-{digest}"
    body: dict[str, Any] = {
        "command": list(command),
        "arguments": [],
        "environment": dict(config.env),
        "flavor": flavor.name,
    }
    _add_launch_fields(body, config, labels, image)
    return JobSpec(body=body, flavor=flavor, bundle_sha256="", files=())


def _add_launch_fields(
    body: dict[str, Any], config: LaunchConfig, labels: dict[str, str], image: str
) -> None:
    """Secrets, timeout, attempts, labels, volumes, expose, network and image, in the official
    client's order."""
    if config.secrets:
        body["secrets"] = dict(config.secrets)
    body["timeoutSeconds"] = config.timeout_seconds
    if config.attempts is not None:
        body["attempts"] = config.attempts
    body["labels"] = labels
    if config.volumes:
        body["volumes"] = config.volumes
    if config.expose or config.expose_public:  # public ports are in `ports` too, as HF wants
        public = config.expose_public
        body["expose"] = {"ports": list(dict.fromkeys([*config.expose, *public])),
                          "portsPublic": list(public)}  # fmt: skip
    if config.network_group:
        network: dict[str, Any] = {"group": config.network_group}
        if config.network_aliases:
            network["aliases"] = config.network_aliases
        body["network"] = network
    space = _space_id(image)
    if space:
        body["spaceId"] = space
    else:
        body["dockerImage"] = image
