"""The optional fields of a job spec: checked at create, so what hfuv server cannot honour is a
400 naming the field, never stored and ignored.

Honoured: `attempts`, `expose`, `volumes` (Hub repos: model, dataset, Space, read-only; buckets of
the job's namespace, read-write unless `readOnly`; only on a container runtime), `arch` when it
is this machine's (on the ray runtime: the server's; the cluster's nodes are taken to be of its
architecture). Refused: `ssh`, `network`, `resourceGroupId`, and any field this server does not
know (a newer client's).
"""

from __future__ import annotations

import platform
from typing import Any

MAX_ATTEMPTS = 10
# Linux's MAX_ARG_STRLEN: execve refuses (E2BIG) one argument or NAME=value string over this,
# its NUL included; and all of them together over ARG_MAX (2 MiB by default): the job may have
# MAX_EXEC_BYTES of that, the rest is for the variables the server and the image add.
MAX_EXEC_STRING_BYTES = 128 * 1024
MAX_EXEC_BYTES = 1536 * 1024
# What the official client sends (`_create_job_spec`) and what `validate_spec` reads itself.
CORE_FIELDS = frozenset(
    ("command", "arguments", "environment", "secrets", "flavor", "labels", "timeoutSeconds",
     "dockerImage", "spaceId")
)  # fmt: skip
REPO_VOLUMES = ("model", "dataset", "space")
VOLUME_KEYS = frozenset(("type", "source", "mountPath", "revision", "readOnly", "path"))
_NOT_HERE = {
    "ssh": "hfuv server has no SSH access to jobs; drop --ssh",
    "network": "hfuv server has no network groups between jobs; drop --network-group",
    "resourceGroupId": "hfuv server has no resource groups; drop --resource-group-id",
}
_ARCHES = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class SpecError(ValueError):
    """A field of the spec the server refuses; the message names it."""


def optional_fields(body: dict[str, Any]) -> dict[str, Any]:
    """The optional fields of `body` as stored, each checked; SpecError for the first refused."""
    fields: dict[str, Any] = {}
    for key, value in body.items():
        if key in CORE_FIELDS:
            continue
        if key in _NOT_HERE:
            if value in (None, False, {}, {"enabled": False}, ""):
                continue  # "off", as some clients send it
            raise SpecError(f"`{key}` is not supported: {_NOT_HERE[key]}")
        check = _CHECKS.get(key)
        if check is None:
            raise SpecError(
                f"unknown field `{key}` in the job spec: this hfuv server does not know it; "
                "drop it, or upgrade hfuv"
            )
        if value is not None:
            fields[key] = check(value)
    return fields


def _attempts(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPTS:
        raise SpecError(f"`attempts` must be an integer from 1 to {MAX_ATTEMPTS}")
    return value


def _ports(value: Any, key: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(p, int) and not isinstance(p, bool) and 1 <= p <= 65535 for p in value
    ):
        raise SpecError(f"`{key}` must be an array of port numbers (1 to 65535)")
    return list(dict.fromkeys(value))


def expose_of(value: Any, key: str = "expose") -> dict[str, list[int]]:
    """`{ports, portsPublic}` with `portsPublic` a subset of `ports`, as the official client
    sends it (for `expose` at create and the body of PUT .../expose)."""
    if not isinstance(value, dict):
        raise SpecError(f"`{key}` must be an object {{ports: [...], portsPublic: [...]}}")
    unknown = sorted(set(value) - {"ports", "portsPublic"})
    if unknown:
        raise SpecError(f"unknown field `{key}.{unknown[0]}`; `{key}` has ports and portsPublic")
    ports = _ports(value.get("ports") or [], f"{key}.ports")
    public = _ports(value.get("portsPublic") or [], f"{key}.portsPublic")
    stray = [p for p in public if p not in ports]
    if stray:
        raise SpecError(f"`{key}.portsPublic` has {stray[0]}, which is not in `{key}.ports`")
    return {"ports": ports, "portsPublic": public}


def _volumes(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise SpecError("`volumes` must be an array")
    seen: set[str] = set()
    for index, volume in enumerate(value):
        where = f"volumes[{index}]"
        if not isinstance(volume, dict):
            raise SpecError(f"`{where}` must be an object")
        unknown = sorted(set(volume) - VOLUME_KEYS)
        if unknown:
            raise SpecError(f"unknown field `{where}.{unknown[0]}`")
        kind, source, mount = volume.get("type"), volume.get("source"), volume.get("mountPath")
        if kind not in (*REPO_VOLUMES, "bucket"):
            raise SpecError(f"`{where}.type` must be one of {', '.join(REPO_VOLUMES)}, bucket")
        if not isinstance(source, str) or source.count("/") != 1 or not all(source.split("/")):
            raise SpecError(f"`{where}.source` must be ORG/NAME")
        if not isinstance(mount, str) or not mount.startswith("/") or mount == "/":
            raise SpecError(f"`{where}.mountPath` must be an absolute path such as /data")
        if mount.rstrip("/") in seen:
            raise SpecError(f"`{where}.mountPath` {mount} is mounted twice")
        seen.add(mount.rstrip("/"))
        for key in ("revision", "path"):
            if key in volume and not isinstance(volume[key], str):
                raise SpecError(f"`{where}.{key}` must be a string")
        if ".." in str(volume.get("path", "")).split("/"):
            raise SpecError(f"`{where}.path` must stay inside the repo")
        if volume.get("readOnly") is not None and not isinstance(volume["readOnly"], bool):
            raise SpecError(f"`{where}.readOnly` must be a boolean")
        if kind == "bucket" and "revision" in volume:
            raise SpecError(f"`{where}`: a bucket has no revisions; drop revision")
        if kind != "bucket" and volume.get("readOnly") is False:
            raise SpecError(f"`{where}`: {kind} volumes are read-only; drop readOnly: false")
    return value


def _arch(value: Any) -> str:
    here = _ARCHES.get(platform.machine().lower())
    if value != here:
        raise SpecError(
            f"`arch` {value!r} is not this server's: its jobs run on {here or platform.machine()}"
        )
    return value


_CHECKS = {"attempts": _attempts, "expose": expose_of, "volumes": _volumes, "arch": _arch}


def check_runnable(
    spec: dict[str, Any], runtime_kind: str, server_port: int | None, *, users: int = 1
) -> None:
    """What this server's runtime cannot give the job: SpecError naming the field. (`users`:
    how many users the server keeps apart.)"""
    check_exec_size(spec)
    for index, volume in enumerate(spec.get("volumes") or []):
        where = f"`volumes[{index}]` ({volume['type']} {volume['source']} at {volume['mountPath']})"
        if runtime_kind in ("host", "ray"):
            raise SpecError(
                f"{where}: the {runtime_kind} runtime cannot mount a volume at an absolute path; "
                "start hfuv server with --runtime podman (or docker)"
            )
        needed = ("huggingface_hub", "fetch Hub repos")
        if volume["type"] == "bucket":  # what the job writes is chunked by the Xet client
            needed = ("hf_xet", "save what a job writes to a bucket")
        try:
            __import__(needed[0])
        except ImportError:
            raise SpecError(f"{where}: this server cannot {needed[1]}; pip install "
                            f"{needed[0]}") from None  # fmt: skip
    ports = (spec.get("expose") or {}).get("ports") or []
    if runtime_kind == "ray" and ports:
        raise SpecError(
            f"`expose.ports` ({', '.join(map(str, ports))}): the ray runtime cannot publish a "
            "job's ports (the job runs on whichever node of the cluster Ray picks); start hfuv "
            "server with --runtime podman (or docker)"
        )
    if runtime_kind == "host" and ports and users > 1:
        raise SpecError(
            f"`expose.ports` ({', '.join(map(str, ports))}): on the host runtime a port is the "
            "host's, not the job's, so another user's job could serve it (or take it) and its "
            "URL would reach that job; start hfuv server with --runtime podman (or docker)"
        )
    if runtime_kind == "host" and server_port in ports:
        raise SpecError(
            f"`expose.ports` has {server_port}, the port of hfuv server itself: on the host "
            "runtime the job would have to serve on it; pick another port"
        )


def check_exec_size(spec: dict[str, Any]) -> None:
    """SpecError naming the field, for a job whose process Linux would refuse to start."""
    strings = [(f"command[{i}]", arg) for i, arg in enumerate(spec["command"])]
    strings += [(f"arguments[{i}]", arg) for i, arg in enumerate(spec.get("arguments") or [])]
    for key in ("environment", "secrets"):
        strings += [(f"{key}.{n}", f"{n}={v}") for n, v in (spec.get(key) or {}).items()]
    total = 0
    for where, text in strings:
        size = len(text.encode()) + 1
        if size > MAX_EXEC_STRING_BYTES:
            what = "argument" if where.startswith(("command", "arguments")) else "NAME=value"
            raise SpecError(
                f"`{where}` is {_kib(size)}: Linux refuses to start a process with one {what} "
                f"string over {_kib(MAX_EXEC_STRING_BYTES)}; split it across several variables "
                "(as hfuv's bundle does) or ship it as a file"
            )
        total += size + 8  # and its pointer in argv or envp
    if total > MAX_EXEC_BYTES:
        raise SpecError(
            f"the job's command, arguments, environment and secrets take {_kib(total)}: over the "
            f"{_kib(MAX_EXEC_BYTES)} this server can pass to a process; ship large ones as files"
        )


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB" if size % 1024 else f"{size // 1024} KiB"
