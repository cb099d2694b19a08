"""LaunchConfig: CLI flags, `[tool.hfuv]`, `[tool.hf-jobs]` and defaults merged, with origins.

Precedence: flag > `[tool.hfuv]` > `[tool.hf-jobs]` > default. `env`, `labels` and `secrets`
merge key by key, `volumes` by mount path; `-e` wins over `--env-file`. Secrets are names in
scripts and flags; their values are resolved here from the local environment and kept out of
every repr.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hfuv import envfiles
from hfuv.auth import find_hf_token
from hfuv.errors import ConfigError, MissingSecretError
from hfuv.flavors import DEFAULT_FLAVOR, get_flavor
from hfuv.redact import looks_secret

DEFAULT_TIMEOUT = 30 * 60
HF_JOBS_KEYS = (
    "image", "flavor", "python", "timeout", "name", "namespace", "env", "secrets", "labels",
    "volumes", "network_group", "network_aliases",
)  # fmt: skip
HFUV_KEYS = (*HF_JOBS_KEYS, "max-cost", "attempts", "expose", "expose-public")
_LABEL = re.compile(r"[A-Za-z0-9._-]{1,100}")
_LABEL_VALUE = re.compile(r"[A-Za-z0-9._-]{0,100}")
_PYTHON_MINOR = re.compile(r"3\.\d{1,2}")
_TIMEOUT = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_VOLUME_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space", "buckets": "bucket"}


class SecretValues(dict[str, str]):
    """Secret name → value. Its repr shows names only, so values never reach a log by accident."""

    def __repr__(self) -> str:
        return "SecretValues(" + ", ".join(f"{k}=***" for k in self) + ")"

    __str__ = __repr__


@dataclass(frozen=True)
class CliOptions:
    """Launch options as typed on the command line; None or empty means "not given"."""

    image: str | None = None
    flavor: str | None = None
    python: str | None = None
    timeout: str | None = None
    name: str | None = None
    namespace: str | None = None
    env: tuple[str, ...] = ()
    env_files: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ()
    secrets_files: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()
    volumes: tuple[str, ...] = ()
    network_group: str | None = None
    network_aliases: tuple[str, ...] = ()
    max_cost: float | None = None
    attempts: int | None = None
    expose: tuple[int, ...] = ()
    expose_public: tuple[int, ...] = ()


@dataclass(frozen=True)
class LaunchConfig:
    image: str | None
    flavor: str
    python: str | None
    timeout_seconds: int
    name: str | None
    namespace: str | None
    env: dict[str, str]
    secrets: SecretValues
    labels: dict[str, str]
    volumes: list[dict[str, Any]]
    network_group: str | None
    network_aliases: list[str]
    max_cost: float | None
    attempts: int | None = None  # runs of a failed job in all; None: the server's default (1)
    expose: list[int] = field(default_factory=list)  # ports reachable with the owner's token
    expose_public: list[int] = field(default_factory=list)  # ports reachable without one
    origins: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def origin(self, key: str) -> str:
        return self.origins.get(key, "default")


def parse_timeout(value: str | int, origin: str, what: str = "timeout") -> int:
    """`30m`, `1.5h`, `2d`, `3600s` or plain seconds → whole seconds (> 0); errors call the
    value `what` (an age, for `--older-than`)."""
    if isinstance(value, bool):
        raise ConfigError(f"invalid {what} {value!r} (from {origin})", hint="write e.g. 30m")
    text = str(value).strip()
    match = _TIMEOUT.fullmatch(text)
    if not match:
        raise ConfigError(
            f"invalid {what} {text!r} (from {origin})",
            hint="use seconds or a number with s, m, h or d, e.g. 90m or 1.5h",
        )
    seconds = int(float(match.group(1)) * _UNITS[match.group(2)])
    if seconds <= 0:
        raise ConfigError(f"{what} must be positive, got {text!r} (from {origin})")
    return seconds


def parse_volume(spec: str, origin: str) -> dict[str, Any]:
    """`hf://[TYPE/]NS/NAME[@REV][/PATH]:/MOUNT[:ro|:rw]` → the API's volume object."""
    if not spec.startswith("hf://"):
        raise ConfigError(
            f"unsupported volume {spec!r} (from {origin})",
            hint="hfuv mounts hf:// repos and buckets; ship local files with --file",
        )
    body = spec[len("hf://") :]
    read_only: bool | None = None
    for suffix, flag in ((":ro", True), (":rw", False)):
        if body.endswith(suffix):
            body, read_only = body[: -len(suffix)], flag
    source, sep, mount = body.rpartition(":")
    if not sep or not mount.startswith("/") or not source:
        raise ConfigError(
            f"invalid volume {spec!r} (from {origin})",
            hint="write hf://datasets/ORG/NAME:/mount[:ro]",
        )
    parts = source.split("/")
    kind = "model"
    if parts[0] in _VOLUME_TYPES:
        kind = _VOLUME_TYPES[parts.pop(0)]
    if len(parts) < 2 or not all(parts[:2]):
        raise ConfigError(f"invalid volume source in {spec!r} (from {origin})",
                          hint="name the repo as ORG/NAME")  # fmt: skip
    repo, revision = parts[1].partition("@")[0], parts[1].partition("@")[2]
    volume: dict[str, Any] = {"type": kind, "source": f"{parts[0]}/{repo}", "mountPath": mount}
    if revision:
        volume["revision"] = revision
    if read_only is False and kind != "bucket":
        raise ConfigError(f"{kind} volumes are read-only: {spec!r} (from {origin})",
                          hint="drop :rw, or use a bucket")  # fmt: skip
    if read_only is not None:
        volume["readOnly"] = read_only
    if len(parts) > 2:
        volume["path"] = "/".join(parts[2:])
    return volume


def check_label(key: str, value: str, origin: str) -> None:
    if not _LABEL.fullmatch(key) or not _LABEL_VALUE.fullmatch(value):
        raise ConfigError(
            f"invalid label {key}={value} (from {origin})",
            hint="label keys and values hold only letters, digits, '.', '-' and '_' (≤ 100)",
        )


def validate_flags(options: CliOptions) -> None:
    """Reject bad option values before any file is read or any request is made."""
    if options.timeout is not None:
        parse_timeout(options.timeout, "--timeout")
    if options.flavor is not None:
        get_flavor(options.flavor)
    for spec in options.volumes:
        parse_volume(spec, "-v")
    if options.attempts is not None:
        check_attempts(options.attempts, "--attempts")
    for port in options.expose:
        check_port(port, "--expose")
    for port in options.expose_public:
        check_port(port, "--expose-public")


def check_attempts(value: object, origin: str) -> int:
    """A whole number from 1; the server says its own maximum (hfuv server's is 10)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"invalid attempts {value!r} (from {origin})",
                          hint="give a whole number from 1, e.g. --attempts 3")  # fmt: skip
    return value


def check_port(value: object, origin: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ConfigError(f"invalid port {value!r} (from {origin})",
                          hint="give a port number from 1 to 65535")  # fmt: skip
    return value


def read_table(tool: Mapping[str, Any], table: str, where: str) -> dict[str, Any]:
    """Validate one launch table (`hfuv` or `hf-jobs`) and return its values."""
    raw = tool.get(table)
    if raw is None:
        return {}
    label = f"[tool.{table}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: {label} must be a table")
    valid = HFUV_KEYS if table == "hfuv" else HF_JOBS_KEYS
    for key in raw:
        if key not in valid:
            raise ConfigError(
                f"{where}: unknown key {key!r} in {label}",
                hint=f"valid keys: {', '.join(valid)}",
            )
    for key in ("image", "flavor", "python", "name", "namespace", "network_group"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{where}: {label} {key} must be a string")
    if "timeout" in raw and (
        isinstance(raw["timeout"], bool) or not isinstance(raw["timeout"], (str, int))
    ):
        raise ConfigError(f"{where}: {label} timeout must be a string or an integer",
                          hint='write e.g. timeout = "2h"')  # fmt: skip
    for key in ("env", "labels"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f"{where}: {label} {key} must be a table of strings",
                                  hint=f'write e.g. {key} = {{ KEY = "value" }}')  # fmt: skip
    if "secrets" in raw:
        value = raw["secrets"]
        if isinstance(value, dict):
            raise ConfigError(
                f"{where}: {label} secrets must list names only, never values",
                hint='write secrets = ["HF_TOKEN"]; values come from your environment',
            )
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{where}: {label} secrets must be an array of names")
    for key in ("volumes", "network_aliases"):
        if key in raw and (
            not isinstance(raw[key], list) or not all(isinstance(v, str) for v in raw[key])
        ):
            raise ConfigError(f"{where}: {label} {key} must be an array of strings")
    if "attempts" in raw:
        check_attempts(raw["attempts"], f"{where}: {label} attempts")
    for key in ("expose", "expose-public"):
        if key in raw and not isinstance(raw[key], list):
            raise ConfigError(f"{where}: {label} {key} must be an array of ports",
                              hint=f"write e.g. {key} = [8000]")  # fmt: skip
        for port in raw.get(key, []):
            check_port(port, f"{where}: {label} {key}")
    if "max-cost" in raw and (
        isinstance(raw["max-cost"], bool) or not isinstance(raw["max-cost"], (int, float))
    ):
        raise ConfigError(f"{where}: {label} max-cost must be a number of USD")
    return dict(raw)


def resolve(
    options: CliOptions,
    tool: Mapping[str, Any],
    *,
    where: str,
    environ: Mapping[str, str],
    read_text=None,
) -> LaunchConfig:
    """Merge flags over the script's launch tables over defaults, resolving secret values."""
    read_text = read_text or _read_text
    layers = [
        ("[tool.hf-jobs]", read_table(tool, "hf-jobs", where)),
        ("[tool.hfuv]", read_table(tool, "hfuv", where)),
    ]
    origins: dict[str, str] = {}
    warnings: list[str] = []

    def scalar(key: str, flag_value: Any, default: Any) -> Any:
        value, origin = default, "default"
        for layer_name, layer in layers:
            table_key = "max-cost" if key == "max_cost" else key
            if table_key in layer:
                value, origin = layer[table_key], layer_name
        if flag_value is not None:
            value, origin = flag_value, "flag"
        origins[key] = origin
        return value

    image = scalar("image", options.image, None)
    flavor = scalar("flavor", options.flavor, DEFAULT_FLAVOR)
    get_flavor(flavor, origin=_describe(origins["flavor"], "--flavor"))
    python = scalar("python", options.python, None)
    if python is not None and not (_PYTHON_MINOR.fullmatch(python) or python.startswith("/")):
        raise ConfigError(
            f"invalid python {python!r} (from {_describe(origins['python'], '--python')})",
            hint="give X.Y (e.g. 3.12) or an absolute interpreter path inside the image",
        )
    if python is not None and image is None and not python.startswith("/"):
        _refuse_python_without_image(python, _describe(origins["python"], "--python"))
    timeout_value = scalar("timeout", options.timeout, DEFAULT_TIMEOUT)
    timeout_seconds = parse_timeout(timeout_value, _describe(origins["timeout"], "--timeout"))
    name = scalar("name", options.name, None)
    namespace = scalar("namespace", options.namespace, None)
    network_group = scalar("network_group", options.network_group, None)
    max_cost = scalar("max_cost", options.max_cost, None)
    attempts = scalar("attempts", options.attempts, None)
    expose = scalar("expose", list(options.expose) or None, [])
    expose_public = scalar("expose-public", list(options.expose_public) or None, [])
    if max_cost is not None and max_cost < 0:
        raise ConfigError(f"max cost must not be negative, got {max_cost}")

    env: dict[str, str] = {}
    for layer_name, layer in layers:
        for key, value in layer.get("env", {}).items():
            env[key], origins[f"env.{key}"] = value, layer_name
    cli_env: dict[str, str | None] = {}
    for path in options.env_files:
        cli_env.update(envfiles.parse_dotenv(read_text(path), _file_label(path)))
    for item in options.env:
        key, value = envfiles.split_assignment(item, "-e")
        cli_env[key] = value
    values, unset = envfiles.resolve(cli_env, environ)
    for key, value in values.items():
        env[key], origins[f"env.{key}"] = value, "flag"
    envfiles.refuse_values_as_names("-e", unset, environ)
    warnings += [f"-e {key}: not set in your environment, left out" for key in unset]

    requested: dict[str, str | None] = {}
    for layer_name, layer in layers:
        for key in layer.get("secrets", []):
            requested[key], origins[f"secrets.{key}"] = None, layer_name
    for path in options.secrets_files:
        for key, value in envfiles.parse_dotenv(read_text(path), _file_label(path)).items():
            requested[key], origins[f"secrets.{key}"] = value, "flag"
    for item in options.secrets:
        key, value = envfiles.split_assignment(item, "-s")
        requested[key], origins[f"secrets.{key}"] = value, "flag"
        if value is not None:
            warnings.append(
                f"-s {key}=...: the value stays in your shell history; prefer -s {key} "
                "(read from your environment) or --secrets-file"
            )
    secret_env = dict(environ)
    if "HF_TOKEN" in requested and not secret_env.get("HF_TOKEN"):
        token = find_hf_token(environ)
        if token:
            secret_env["HF_TOKEN"] = token
    secret_values, missing = envfiles.resolve(requested, secret_env)
    envfiles.refuse_values_as_names("-s", missing, secret_env)
    if missing:
        raise MissingSecretError(
            f"secret {', '.join(missing)} is not set in your environment "
            f"(requested by {_describe(origins[f'secrets.{missing[0]}'], '-s')})",
            hint=f"export {missing[0]}=... or pass -s {missing[0]}=... or --secrets-file",
        )
    warnings += [
        f"{key} looks like a secret but is passed as env ({_describe(origins[f'env.{key}'], '-e')}"
        f"): the Jobs API stores and shows env values in plain; use -s {key}"
        for key in env
        if looks_secret(key)
    ]

    labels: dict[str, str] = {}
    for layer_name, layer in layers:
        for key, value in layer.get("labels", {}).items():
            labels[key], origins[f"labels.{key}"] = value, layer_name
    for item in options.labels:
        key, _, value = item.partition("=")
        labels[key], origins[f"labels.{key}"] = value, "flag"
    if options.name is not None and any(
        item.partition("=")[0] == "name" for item in options.labels
    ):
        raise ConfigError("--name and --label name=... both set the job name", hint="keep one")
    if name is not None:
        labels["name"], origins["labels.name"] = name, origins["name"]
    for key, value in labels.items():
        flag = "--name" if key == "name" and options.name is not None else "--label"
        check_label(key, value, _describe(origins[f"labels.{key}"], flag))

    volumes: dict[str, dict[str, Any]] = {}
    for layer_name, layer in layers:
        for spec in layer.get("volumes", []):
            volume = parse_volume(spec, layer_name)
            volumes[volume["mountPath"]] = volume
            origins[f"volumes.{volume['mountPath']}"] = layer_name
    for spec in options.volumes:
        volume = parse_volume(spec, "-v")
        volumes[volume["mountPath"]] = volume
        origins[f"volumes.{volume['mountPath']}"] = "flag"

    aliases: list[str] = []
    for _layer_name, layer in layers:
        aliases = list(layer.get("network_aliases", aliases))
    if options.network_aliases:
        aliases = list(options.network_aliases)
    if aliases and not network_group:
        raise ConfigError("network aliases need a network group", hint="add --network-group")

    return LaunchConfig(
        image=image,
        flavor=flavor,
        python=python,
        timeout_seconds=timeout_seconds,
        name=name,
        namespace=namespace,
        env=env,
        secrets=SecretValues(secret_values),
        labels=labels,
        volumes=list(volumes.values()),
        network_group=network_group,
        network_aliases=aliases,
        max_cost=max_cost,
        attempts=attempts,
        expose=list(dict.fromkeys(expose)),
        expose_public=list(dict.fromkeys(expose_public)),
        origins=origins,
        warnings=warnings,
    )


def _refuse_python_without_image(python: str, origin: str) -> None:
    """The default image is uv's for that Python, which exists only for the supported ones."""
    from hfuv.lock import SUPPORTED_PYTHONS

    if python not in SUPPORTED_PYTHONS:
        raise ConfigError(
            f"python {python} (from {origin}) has no uv image: hfuv supports Python "
            f"{SUPPORTED_PYTHONS[0]} to {SUPPORTED_PYTHONS[-1]}",
            hint="pick one of those, or give an --image that has it",
        )


def _describe(origin: str, flag: str) -> str:
    return flag if origin == "flag" else origin


def _file_label(path: str) -> str:
    return "<stdin>" if path == "-" else path


def _read_text(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
