"""What crosses the wire of `hfuv server`: request bodies parsed strictly, responses that always
render.

A body with NaN, Infinity or a lone surrogate is refused (it could be stored, but never answered
as JSON); a record stored before that rule still renders, with such values replaced. Error text
goes in the `X-Error-Message` header as printable ASCII, since it may quote what a client sent.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from starlette.responses import JSONResponse

MAX_HEADER_CHARS = 1000  # an error header stays far below any client's header size limit
_SURROGATE = re.compile("[\ud800-\udfff]")
_NOT_PRINTABLE_ASCII = re.compile(r"[^\x20-\x7e]")


class BodyError(ValueError):
    """The body is not JSON this server accepts; the message says where and why."""


def parse_json(raw: bytes) -> Any:
    """The JSON value of `raw`; BodyError for invalid JSON, NaN/Infinity or lone surrogates."""
    try:
        value = json.loads(raw, parse_constant=_no_constant, parse_float=_finite_float)
    except BodyError:
        raise
    except (ValueError, RecursionError):
        raise BodyError("Request body is not valid JSON") from None
    where = _first_surrogate(value)
    if where is not None:
        raise BodyError(
            f"Request body has a lone surrogate (an unpaired \\ud800-\\udfff escape) in {where}; "
            "JSON text must be valid Unicode"
        )
    return value


def _no_constant(name: str) -> Any:
    raise BodyError(f"Request body has {name}, which JSON does not allow; send a number or null")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise BodyError(f"Request body has the number {text[:40]}, too large for a double")
    return number


def _first_surrogate(value: Any) -> str | None:
    """Where in `value` a string (or key) holds a lone surrogate: `a.b[2]`, or None."""
    pending: list[tuple[str, Any]] = [("the body", value)]
    while pending:
        where, item = pending.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return f"`{where}`"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"a key of `{where}`"
                pending.append((key if where == "the body" else f"{where}.{key}", child))
        elif isinstance(item, list):
            pending.extend((f"{where}[{index}]", child) for index, child in enumerate(item))
    return None


def scrubbed(value: Any) -> Any:
    """`value` with non-finite numbers as null and lone surrogates as U+FFFD."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {scrubbed(key): scrubbed(child) for key, child in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(child) for child in value]
    return value


class SafeJSONResponse(JSONResponse):
    """A JSONResponse that renders whatever a record holds (one stored before the rules above,
    say) rather than failing the whole answer."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except (ValueError, UnicodeEncodeError):
            return super().render(scrubbed(content))


def header_value(text: str) -> str:
    """`text` as a header value: printable ASCII (others as escapes), at most MAX_HEADER_CHARS,
    no space at either end (HTTP forbids it)."""
    escaped = _NOT_PRINTABLE_ASCII.sub(_escape, text).strip(" ")
    if len(escaped) > MAX_HEADER_CHARS:
        escaped = escaped[: MAX_HEADER_CHARS - 3] + "..."
    return escaped


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return (
        f"\\x{code:02x}"
        if code < 0x100
        else f"\\u{code:04x}"
        if code < 0x10000
        else f"\\U{code:08x}"
    )
