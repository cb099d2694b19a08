"""Sweeps: one locked script, many jobs, one per point of a parameter grid.

`{key}` placeholders are filled in the script's arguments and in env values. A `{name}` that is
not a matrix key is refused (keys are case-sensitive, like the env names they often mirror).
`{{` and `}}` are literal braces, as in Python's str.format; a text that also holds a lone brace
(JSON such as `{"lr": {lr}}`) keeps every brace but its placeholders as typed. Every job carries
HFUV_SWEEP_ID and HFUV_SWEEP_INDEX, and labels naming the sweep, its index and its values, so
sweep membership lives in the jobs themselves and works from any machine.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import secrets
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hfuv.errors import ConfigError

SWEEP_LABEL = "hfuv-sweep"
INDEX_LABEL = "hfuv-sweep-index"
VALUE_LABEL_PREFIX = "hfuv-v-"
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BRACES = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}|[{}]")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def new_sweep_id() -> str:
    return secrets.token_hex(4)


def parse_grid(matrix: Sequence[str], matrix_file: str | None) -> list[dict[str, str]]:
    """`--matrix k=v1,v2` (cartesian product) and `--matrix-file grid.jsonl` → the points."""
    axes: dict[str, list[str]] = {}
    for item in matrix:
        key, sep, values = item.partition("=")
        if not sep or not _KEY.fullmatch(key) or not values:
            raise ConfigError(f"invalid --matrix {item!r}", hint="write --matrix lr=1e-3,1e-4")
        if key in axes:
            raise ConfigError(f"--matrix {key} is given twice", hint="list all values once")
        axes[key] = values.split(",")
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    if matrix_file is None:
        return points
    rows = _read_grid_file(matrix_file)
    if not axes:
        return rows
    for key in axes:
        if any(key in row for row in rows):
            raise ConfigError(f"--matrix {key} is also a key in {matrix_file}",
                              hint="give each key in one place")  # fmt: skip
    return [{**row, **point} for row in rows for point in points]


def _read_grid_file(path: str) -> list[dict[str, str]]:
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read --matrix-file {path}: {exc.strerror}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not all(_KEY.fullmatch(str(k)) for k in row):
            raise ConfigError(
                f"{path}:{number}: expected one JSON object of parameters per line",
                hint='write e.g. {"lr": 0.001, "seed": 1}',
            )
        rows.append({k: v if isinstance(v, str) else json.dumps(v) for k, v in row.items()})
    if not rows:
        raise ConfigError(f"--matrix-file {path} holds no parameters")
    return rows


def placeholders(text: str) -> list[str]:
    """The names of the `{name}` placeholders in `text`, in order."""
    return [match.group(1) for match in _BRACES.finditer(text) if match.group(1)]


def fill(text: str, point: dict[str, str]) -> str:
    """Replace each `{key}` with the point's value; `{{` and `}}` unless a lone brace is there."""
    escaped = all(len(match.group(0)) > 1 for match in _BRACES.finditer(text))

    def replace(match: re.Match[str]) -> str:
        if match.group(1):
            return point[match.group(1)]
        return match.group(0)[0] if escaped else match.group(0)

    return _BRACES.sub(replace, text)


def _fillable(body: dict[str, Any], first_arg: int) -> list[tuple[str, str]]:
    """(where, text) for each text a sweep fills: the script's arguments and env values."""
    arguments = body["command"][first_arg:]
    return [
        *((f"argument {number}", arg) for number, arg in enumerate(arguments, start=1)),
        *((f"env {key}", value) for key, value in body["environment"].items()
          if not key.startswith("HFUV_")),
    ]  # fmt: skip


def check_placeholders(
    body: dict[str, Any], points: Sequence[dict[str, str]], first_arg: int
) -> None:
    """Refuse a `{name}` that is not a matrix key, or that some point gives no value."""
    keys = list(dict.fromkeys(key for point in points for key in point))
    for where, text in _fillable(body, first_arg):
        for name in placeholders(text):
            lacking = [index for index, point in enumerate(points) if name not in point]
            if not lacking:
                continue
            literal = f"write {{{{{name}}}}} for a literal {{{name}}}"
            if len(lacking) < len(points):
                values = " ".join(f"{k}={v}" for k, v in points[lacking[0]].items())
                raise ConfigError(
                    f"{{{name}}} in {where} has no value in job {lacking[0]} ({values})",
                    hint=f"give {name} in every line of the --matrix-file, or {literal}",
                )
            same = [key for key in keys if key.lower() == name.lower()]
            case = f"keys are case-sensitive: write {{{same[0]}}}, or " if same else ""
            raise ConfigError(
                f"{{{name}}} in {where} is not a matrix key (keys: {', '.join(keys) or 'none'})",
                hint=case + literal,
            )


def sameness_warnings(
    body: dict[str, Any],
    points: Sequence[dict[str, str]],
    bodies: Sequence[dict[str, Any]],
    first_arg: int,
) -> list[str]:
    """Matrix keys that `body` uses nowhere, and jobs of `bodies` that repeat an earlier one."""
    used = {name for _, text in _fillable(body, first_arg) for name in placeholders(text)}
    keys = list(dict.fromkeys(key for point in points for key in point))
    warnings = [
        f"matrix key {key} is used in no argument or env value, so it changes only the jobs' "
        f"labels; write {{{key}}} where the script should get it"
        for key in keys
        if key not in used
    ]
    first_of: dict[str, int] = {}
    repeats: list[tuple[int, int]] = []
    for index, job in enumerate(bodies):
        environment = {k: v for k, v in job["environment"].items() if k != "HFUV_SWEEP_INDEX"}
        what = json.dumps([job["command"], environment], sort_keys=True)
        if what in first_of:
            repeats.append((index, first_of[what]))
        else:
            first_of[what] = index
    if len(first_of) == 1 and len(bodies) > 1:
        warnings.append(f"all {len(bodies)} jobs are identical (same arguments and env); "
                        "only HFUV_SWEEP_INDEX tells them apart")  # fmt: skip
    elif repeats:
        index, earlier = repeats[0]
        warnings.append(f"jobs that repeat an earlier one: {len(repeats)} of {len(bodies)} "
                        f"(job {index} = job {earlier}: same arguments and env)")  # fmt: skip
    return warnings


def label_value(value: str) -> str:
    return _LABEL_UNSAFE.sub("_", value)[:100]


def expand(
    body: dict[str, Any], points: Sequence[dict[str, str]], sweep_id: str, first_arg: int
) -> list[dict[str, Any]]:
    """One job body per point; `first_arg` is where the user's arguments start in `command`."""
    check_placeholders(body, points, first_arg)
    bodies = []
    for index, point in enumerate(points):
        job = copy.deepcopy(body)
        command = job["command"]
        job["command"] = command[:first_arg] + [fill(arg, point) for arg in command[first_arg:]]
        job["environment"] = {
            key: value if key.startswith("HFUV_") else fill(value, point)
            for key, value in job["environment"].items()
        }
        job["environment"]["HFUV_SWEEP_ID"] = sweep_id
        job["environment"]["HFUV_SWEEP_INDEX"] = str(index)
        labels = job.setdefault("labels", {})
        labels["name"] = f"{labels.get('name', 'sweep')}-{index}"[:100]
        labels[SWEEP_LABEL] = sweep_id
        labels[INDEX_LABEL] = str(index)
        for key, value in point.items():
            labels[f"{VALUE_LABEL_PREFIX}{key}"[:100]] = label_value(value)
        bodies.append(job)
    return bodies


def latest_per_index(jobs: Iterable[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    """The newest job of each index (a retried index has several)."""
    latest: dict[int, dict[str, Any]] = {}
    for job in jobs:
        raw = (job.get("labels") or {}).get(INDEX_LABEL)
        if raw is None or not raw.isdigit():
            continue
        index = int(raw)
        current = latest.get(index)
        if current is None or (job.get("createdAt") or "", job["id"]) > (
            current.get("createdAt") or "",
            current["id"],
        ):
            latest[index] = job
    return dict(sorted(latest.items()))


def values_of(job: dict[str, Any]) -> str:
    labels = job.get("labels") or {}
    return " ".join(
        f"{key[len(VALUE_LABEL_PREFIX) :]}={value}"
        for key, value in labels.items()
        if key.startswith(VALUE_LABEL_PREFIX)
    )
