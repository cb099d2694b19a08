"""What a script's `[tool.uv]` table declares: indexes, sources and other settings, each with the
line that declares it. Pure. `hfuv check` lists them (the hosts a job will need), and a failed
lock names the one that failed.
"""

from __future__ import annotations

import re
from typing import Any

from hfuv.pep723 import ScriptMetadata

INDEX_KEYS = ("index-url", "extra-index-url", "find-links")
_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def mask_credentials(url: str) -> str:
    """`https://user:token@host/…` → `https://***@host/…`: hfuv never prints credentials."""
    return _USERINFO.sub("***@", url)


def strip_credentials(url: str) -> str:
    """The URL as uv prints it in its errors: without credentials."""
    return _USERINFO.sub("", url)


def indexes(meta: ScriptMetadata) -> list[dict[str, Any]]:
    """`[[tool.uv.index]]` entries, then `index-url`, `extra-index-url` and `find-links`."""
    return [
        {"kind": kind, **_masked(entry), "line": meta.line_of(entry["url"])}
        for kind, entry in _index_entries(meta)
    ]


def sources(meta: ScriptMetadata) -> list[dict[str, Any]]:
    """`[tool.uv.sources]`, one item per package and entry."""
    return [
        {"package": package, **_masked(entry), "line": _source_line(meta, package, entry)}
        for package, entry in _source_entries(meta)
    ]


def settings(meta: ScriptMetadata) -> dict[str, dict[str, Any]]:
    """Every other `[tool.uv]` key: its value and line."""
    return {
        key: {"value": _masked(value), "line": _key_line(meta, key)}
        for key, value in meta.tool_uv.items()
        if key not in ("index", "sources", *INDEX_KEYS)
    }


def declared_urls(meta: ScriptMetadata) -> list[tuple[str, str, int]]:
    """(what, URL as uv prints it, line) for every location the script names: indexes,
    find-links, git and URL sources, and dependencies given by a direct URL."""
    found = []
    for kind, entry in _index_entries(meta):
        named = f"index {entry['name']}" if entry.get("name") else "index"
        found.append((named if kind == "index" else kind, entry["url"]))
    for package, entry in _source_entries(meta):
        found += [(f"source of {package}", entry[key]) for key in ("git", "url")
                  if isinstance(entry.get(key), str)]  # fmt: skip
    for dep in meta.dependencies or []:
        direct = re.search(r"@\s*(?:git\+)?([a-z][\w+.-]*://\S+)", dep)
        if direct:
            found.append((f"dependency {dep.split('@')[0].strip()}", direct.group(1)))
    return [(what, strip_credentials(url), meta.line_of(url)) for what, url in found]


def _index_entries(meta: ScriptMetadata) -> list[tuple[str, dict[str, Any]]]:
    uv = meta.tool_uv
    found = [("index", entry) for entry in uv.get("index") or []
             if isinstance(entry, dict) and isinstance(entry.get("url"), str)]  # fmt: skip
    for key in INDEX_KEYS:
        value = uv.get(key)
        found += [(key, {"url": url}) for url in (value if isinstance(value, list) else [value])
                  if isinstance(url, str)]  # fmt: skip
    return found


def _source_entries(meta: ScriptMetadata) -> list[tuple[str, dict[str, Any]]]:
    return [
        (package, entry)
        for package, entries in (meta.tool_uv.get("sources") or {}).items()
        for entry in (entries if isinstance(entries, list) else [entries])
        if isinstance(entry, dict)
    ]


def _source_line(meta: ScriptMetadata, package: str, entry: dict[str, Any]) -> int:
    location = next((entry[k] for k in ("git", "url", "path") if isinstance(entry.get(k), str)),
                    None)  # fmt: skip
    return meta.line_of(location) if location else _key_line(meta, package)


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_credentials(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value


def _key_line(meta: ScriptMetadata, key: str) -> int:
    """The line that sets `key` (`key = …`) or opens its table (`[….key]`)."""
    name = rf"\"?{re.escape(key)}\"?"
    pattern = re.compile(rf"\s*({name}\s*=|\[[^\]]*\.{name}\]\s*$)")
    for offset, line in enumerate(meta.toml.split("\n")):
        if pattern.match(line):
            return meta.opener_line + 1 + offset
    return meta.opener_line
