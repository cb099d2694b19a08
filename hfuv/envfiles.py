"""Read `K=V` assignments: `-e`/`-s` values and dotenv files (`--env-file`, `--secrets-file`).

The dotenv dialect is the one `hf jobs` reads: an optional `export ` prefix, `#` comments (inline
only after whitespace), double-quoted values with backslash escapes, literal single quotes,
and bare keys whose value comes from the local environment.

Errors never quote a `-s` item or a file's line: either may hold a secret (a value pasted where a
name was expected, or the second line of a multi-line key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from hfuv.errors import ConfigError

_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_HF_TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")
_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\", "$": "$", "r": "\r"}


def split_assignment(item: str, option: str) -> tuple[str, str | None]:
    """`K=V` → (K, V); a bare `K` → (K, None)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not _KEY.fullmatch(key):
        typed = f"{key}=..." if sep else item
        shown = (
            "-s (not shown, as it may hold a secret)" if option == "-s" else f"{option} {typed!r}"
        )
        raise ConfigError(
            f"invalid {shown}: expected KEY=VALUE or KEY",
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
                f"{source}:{number}: not KEY=VALUE or KEY (the line is not shown, as it may "
                "hold a secret)",
                hint="names start with a letter or _ and hold letters, digits, _ . -; a value "
                "on several lines goes on one, in double quotes with \\n",
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


def refuse_values_as_names(option: str, unset: list[str], environ: Mapping[str, str]) -> None:
    """`-s $HF_TOKEN` typed for `-s HF_TOKEN`: refuse it without printing the value as a name."""
    for name in unset:
        holder = next((k for k, v in environ.items() if v == name and len(v) >= 8), None)
        if holder or _HF_TOKEN.fullmatch(name):
            what = f"the value of ${holder}" if holder else "a token"
            raise ConfigError(
                f"a bare {option} name is {what}, not a variable name (not shown)",
                hint=f"write {option} {holder or 'HF_TOKEN'}: a bare name is read from your "
                "environment",
            )
