"""Read `K=V` assignments: `-e`/`-s` values and dotenv files (`--env-file`, `--secrets-file`).

The dotenv dialect is the one `hf jobs` reads: an optional `export ` prefix, `#` comments (inline
only after whitespace), double-quoted values with backslash escapes, literal single quotes,
and bare keys whose value comes from the local environment.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hfuv.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$", "r": "\r"}


def split_assignment(item: str, option: str) -> tuple[str, str | None]:
    """`K=V` → (K, V); a bare `K` → (K, None)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not _KEY.fullmatch(key):
        raise ConfigError(
            f"invalid {option} {item!r}: expected KEY=VALUE or KEY",
            hint="names start with a letter or _ and hold letters, digits, _ . -",
        )
    return key, (value if sep else None)


def parse_dotenv(text: str, source: str) -> dict[str, str | None]:
    """Parse dotenv text; a bare key maps to None (its value is looked up by the caller)."""
    result: dict[str, str | None] = {}
    text = text.removeprefix("\ufeff")
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not _KEY.fullmatch(key):
            raise ConfigError(
                f"{source}:{number}: invalid line {raw.strip()!r}",
                hint="write KEY=VALUE, one per line",
            )
        if not sep:
            result[key] = None
            continue
        result[key] = _parse_value(rest.strip(), f"{source}:{number}")
    return result


def _parse_value(value: str, where: str) -> str:
    if value.startswith("'"):
        end = value.find("'", 1)
        if end < 0:
            raise ConfigError(f"{where}: unterminated single quote", hint="close the quote")
        return value[1:end]
    if value.startswith('"'):
        out: list[str] = []
        index = 1
        while index < len(value):
            char = value[index]
            if char == "\\" and index + 1 < len(value):
                nxt = value[index + 1]
                out.append(_ESCAPES.get(nxt, "\\" + nxt))
                index += 2
                continue
            if char == '"':
                return "".join(out)
            out.append(char)
            index += 1
        raise ConfigError(f"{where}: unterminated double quote", hint="close the quote")
    comment = re.search(r"\s#", value)
    return value[: comment.start()].rstrip() if comment else value


def resolve(
    items: Mapping[str, str | None], environ: Mapping[str, str]
) -> tuple[dict[str, str], list[str]]:
    """Fill bare keys from `environ`; return (values, names that have no value)."""
    values: dict[str, str] = {}
    missing: list[str] = []
    for key, value in items.items():
        if value is None:
            value = environ.get(key)
        if value is None:
            missing.append(key)
        else:
            values[key] = value
    return values, missing
