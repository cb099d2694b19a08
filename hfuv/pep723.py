"""Find and parse a script's PEP 723 metadata block exactly as uv 0.13 does. Pure: no I/O.

uv's rules differ from the PEP's reference regex in ways that matter (see
shared/reference/uv-scripts.md §1): only the *first* `# /// script` in the raw bytes counts, and
only if it starts a line; lines split on `\\n` with one trailing `\\r` removed (so CR-only files
have no block); the *last* `# ///` among the comment lines closes the block; an unclosed block, a
second complete script block, invalid UTF-8, invalid TOML and schema errors are all errors. A
script hfuv accepts is a script uv accepts.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Any

from hfuv.errors import MetadataError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

OPENER = "# /// script"
_OPENER_BYTES = OPENER.encode()
BOM = b"\xef\xbb\xbf"
_ANY_BLOCK = re.compile(
    r"^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$", re.MULTILINE
)
_NEWLINE = re.compile(r"\r\n|\r|\n")
_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")

# Keys uv accepts in a script's [tool.uv] table (uv 0.13); anything else is "unknown field".
UV_TOOL_KEYS = frozenset(
    [
    "allow-insecure-host", "build-constraint-dependencies", "cache-dir", "compile-bytecode",
    "concurrent-builds", "concurrent-downloads", "concurrent-installs", "config-settings",
    "config-settings-package", "constraint-dependencies", "dependency-metadata",
    "exclude-dependencies", "exclude-newer", "exclude-newer-package", "extra-build-dependencies",
    "extra-build-variables", "extra-index-url", "find-links", "fork-strategy", "http-proxy",
    "https-proxy", "index", "index-strategy", "index-url", "keyring-provider", "link-mode",
    "native-tls", "no-binary", "no-binary-package", "no-build", "no-build-isolation",
    "no-build-isolation-package", "no-build-package", "no-cache", "no-index", "no-proxy",
    "no-sources", "no-sources-package", "offline", "override-dependencies", "prerelease",
    "prerelease-package", "preview", "preview-features", "python-downloads", "python-preference",
    "reinstall", "reinstall-package", "require-build-hashes", "required-version", "resolution",
    "sources", "system-certs", "torch-backend", "upgrade", "upgrade-package",
    ]
)  # fmt: skip


@dataclass(frozen=True)
class ScriptMetadata:
    """What a script's metadata block declares, and where the block sits in the text."""

    found: bool
    toml: str = ""
    data: dict[str, Any] = field(default_factory=dict)
    opener_line: int = 0
    closer_line: int = 0
    start: int = 0  # character offset of the opener in the decoded text
    end: int = 0  # character offset just after the closer line (and its newline)
    shadowed_block_line: int = 0  # a real block uv ignores, because of `shadowed_by`
    shadowed_by: str = ""  # "bom" (the file starts with one) or "tag" (an earlier stray tag)

    @property
    def dependencies(self) -> list[str] | None:
        """The array as written; [] for a block without the key; None without a block."""
        if not self.found:
            return None
        return list(self.data.get("dependencies", []))

    @property
    def requires_python(self) -> str | None:
        return self.data.get("requires-python") if self.found else None

    @property
    def tool(self) -> dict[str, Any]:
        return self.data.get("tool", {}) if self.found else {}

    @property
    def tool_uv(self) -> dict[str, Any]:
        return self.tool.get("uv", {})

    def ignored_block(self, name: str) -> MetadataError | None:
        """Why uv ignores the block at `shadowed_block_line`, as the error a run raises."""
        if not self.shadowed_block_line:
            return None
        if self.shadowed_by == "bom":
            why = "the file starts with a UTF-8 byte-order mark, right before `# /// script`"
            fix = "save the file as UTF-8 without a byte-order mark"
        else:
            why = "`# /// script` appears earlier in the file where it does not start a line"
            fix = "remove or rewrite the earlier `# /// script` text"
        return MetadataError(
            f"{name}:{self.shadowed_block_line}", f"uv ignores this metadata block because {why}",
            hint=fix,
        )  # fmt: skip

    def line_of(self, needle: str) -> int:
        """The file line of the first block line containing `needle`, else the opener's line."""
        for offset, line in enumerate(self.toml.split("\n")):
            if needle in line:
                return self.opener_line + 1 + offset
        return self.opener_line


def _decode(content: bytes, name: str, base: int = 0, base_line: int = 1) -> str:
    """Decode `content`, which starts at byte `base` (on line `base_line`) of the file."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = base_line + content[: exc.start].count(b"\n")
        raise MetadataError(
            f"{name}:{line}",
            f"invalid UTF-8 (byte 0x{content[exc.start]:02x} at offset {base + exc.start}); uv "
            "reads a script that has a metadata block as UTF-8",
            hint="save the file as UTF-8",
        ) from None


def parse(content: bytes, name: str = "<script>") -> ScriptMetadata:
    """Parse `content` (a whole script, raw bytes) as uv does; `name` is used in error messages."""
    index = content.find(_OPENER_BYTES)
    if index < 0:
        return ScriptMetadata(found=False)
    if index > 0 and content[index - 1] not in b"\r\n":
        return _absent_with_shadow(content, index)

    prelude = _decode(content[:index], name)
    opener_line = len(_NEWLINE.findall(prelude)) + 1
    rest = _decode(content[index:], name, base=index, base_line=opener_line)

    lines = _split_lines(rest)
    if not lines or lines[0] != OPENER:
        return ScriptMetadata(found=False)

    toml_lines = _collect_comment_lines(lines[1:])
    closer = _last_index(toml_lines, "///")
    if closer is None:
        for offset, line in enumerate(toml_lines):
            if line.startswith("///"):
                raise MetadataError(
                    f"{name}:{opener_line + 1 + offset}",
                    "the closing tag of the metadata block has trailing content",
                    hint="make the closing line exactly `# ///`",
                )
        stop = opener_line + 1 + len(toml_lines)
        raise MetadataError(
            f"{name}:{opener_line}",
            f"the `# /// script` block is never closed (line {stop} is not a `#` comment line)",
            hint="end the block with a line `# ///`, and start every line inside it, blank "
            "ones included, with `#`",
        )

    toml_text = "\n".join(toml_lines[:closer]) + "\n"
    closer_line = opener_line + 1 + closer
    end = len(prelude) + _offset_after_line(rest, closer + 1)
    _reject_second_block(lines[closer + 2 :], name, closer_line)

    data = _load_toml(toml_text, name, opener_line)
    metadata = ScriptMetadata(
        found=True,
        toml=toml_text,
        data=data,
        opener_line=opener_line,
        closer_line=closer_line,
        start=len(prelude),
        end=end,
    )
    _validate(metadata, name)
    return metadata


def _split_lines(text: str) -> list[str]:
    """Split like Rust's `str::lines`: on `\\n`, dropping one `\\r` before it."""
    pieces = text.split("\n")
    last = pieces.pop()
    lines = [piece[:-1] if piece.endswith("\r") else piece for piece in pieces]
    if last:
        lines.append(last)
    return lines


def _offset_after_line(text: str, line_index: int) -> int:
    """Character offset just after line `line_index` (0-based) of `text`, newline included."""
    offset = 0
    for _ in range(line_index + 1):
        newline = text.find("\n", offset)
        if newline < 0:
            return len(text)
        offset = newline + 1
    return offset


def _collect_comment_lines(lines: list[str]) -> list[str]:
    collected: list[str] = []
    for line in lines:
        if not line.startswith("#"):
            break
        tail = line[1:]
        if not tail:
            collected.append("")
            continue
        if not tail.startswith(" "):
            break
        collected.append(tail[1:])
    return collected


def _last_index(items: list[str], wanted: str) -> int | None:
    for position in range(len(items) - 1, -1, -1):
        if items[position] == wanted:
            return position
    return None


def _reject_second_block(rest: list[str], name: str, closer_line: int) -> None:
    text = "\n".join(rest)
    for match in _ANY_BLOCK.finditer(text):
        if match.group("type") == "script":
            line = closer_line + 1 + text.count("\n", 0, match.start())
            raise MetadataError(
                f"{name}:{line}",
                f"a second `# /// script` block starts here (the first closes on line "
                f"{closer_line}); uv refuses scripts with more than one",
                hint="merge them into one block",
            )


def _absent_with_shadow(content: bytes, index: int) -> ScriptMetadata:
    """No metadata (uv's rule), but remember a complete block uv ignores: one right after a
    byte-order mark, or one after a stray tag."""
    by_bom = index == len(BOM) and content.startswith(BOM)
    text = content.decode("utf-8", errors="replace").removeprefix("\ufeff").replace("\r\n", "\n")
    for match in _ANY_BLOCK.finditer(text):
        if match.group("type") == "script":
            line = text.count("\n", 0, match.start()) + 1
            return ScriptMetadata(found=False, shadowed_block_line=line,
                                  shadowed_by="bom" if by_bom else "tag")  # fmt: skip
    return ScriptMetadata(found=False)


def _load_toml(toml_text: str, name: str, opener_line: int) -> dict[str, Any]:
    try:
        return tomllib.loads(toml_text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position:
            line = opener_line + int(position.group(1))
        else:  # "at end of document": the last line of the block
            line = opener_line + max(1, toml_text.count("\n"))
        reason = _TOML_POSITION.sub("", message).replace("(at end of document)", "").strip()
        raise MetadataError(
            f"{name}:{line}",
            f"invalid TOML in the metadata block: {reason}",
            hint="fix the TOML syntax on that line",
        ) from None


def _validate(metadata: ScriptMetadata, name: str) -> None:
    from hfuv.quickspec import is_simple_requirement, simple_bounds

    data = metadata.data
    if "dependencies" in data:
        deps = data["dependencies"]
        where = f"{name}:{metadata.line_of('dependencies')}"
        if not isinstance(deps, list):
            raise MetadataError(
                where,
                f"`dependencies` must be an array of strings, not {_toml_type(deps)}",
                hint='write e.g. dependencies = ["numpy>=2"]',
            )
        for dep in deps:
            if not isinstance(dep, str):
                raise MetadataError(
                    f"{name}:{metadata.line_of(str(dep))}",
                    f"`dependencies` must hold PEP 508 strings; {_toml_type(dep)} {dep!r} is not",
                    hint='quote each requirement, e.g. "numpy>=2"',
                )
            if is_simple_requirement(dep):
                continue
            from packaging.requirements import InvalidRequirement, Requirement

            try:
                Requirement(dep)
            except InvalidRequirement as exc:
                reason = str(exc).splitlines()[0] if str(exc) else "invalid syntax"
                raise MetadataError(
                    f"{name}:{metadata.line_of(dep) if dep else metadata.line_of('dependencies')}",
                    f"invalid requirement {dep!r}: {reason}",
                    hint="write it as PEP 508, e.g. numpy>=2 or torch==2.5.*",
                ) from None

    if "requires-python" in data:
        spec = data["requires-python"]
        where = f"{name}:{metadata.line_of('requires-python')}"
        if not isinstance(spec, str):
            raise MetadataError(
                where,
                f"`requires-python` must be a string, not {_toml_type(spec)}",
                hint='write e.g. requires-python = ">=3.11"',
            )
        try:
            if simple_bounds(spec) is None:
                from packaging.specifiers import SpecifierSet

                SpecifierSet(spec)
        except ValueError:  # packaging's InvalidSpecifier
            bare = re.fullmatch(r"\s*\d+(\.\d+)*\s*", spec)
            hint = f'did you mean "=={spec.strip()}" or ">={spec.strip()}"?' if bare else None
            raise MetadataError(
                where,
                f"invalid `requires-python` {spec!r}",
                hint=hint or 'write a version specifier, e.g. ">=3.11"',
            ) from None

    if "tool" in data:
        tool = data["tool"]
        if not isinstance(tool, dict):
            raise MetadataError(
                f"{name}:{metadata.line_of('tool')}",
                f"`tool` must be a table, not {_toml_type(tool)}",
                hint="use [tool.NAME] tables",
            )
        if "uv" in tool:
            uv = tool["uv"]
            if not isinstance(uv, dict):
                raise MetadataError(
                    f"{name}:{metadata.line_of('uv')}",
                    f"`tool.uv` must be a table, not {_toml_type(uv)}",
                    hint="write [tool.uv] followed by its settings",
                )
            for key in uv:
                if key not in UV_TOOL_KEYS:
                    raise MetadataError(
                        f"{name}:{metadata.line_of(key)}",
                        f"unknown setting `{key}` in [tool.uv]; uv rejects it",
                        hint="see https://docs.astral.sh/uv/reference/settings/ for valid keys",
                    )


def _toml_type(value: object) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a float",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)
