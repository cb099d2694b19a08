"""Property tests: the metadata parser, timeouts, labels and the bundle, over generated inputs."""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from hfuv import pep723
from hfuv.errors import ConfigError, MetadataError
from hfuv.payload import make_bundle, read_bundle, split_bundle
from hfuv.pep723 import tomllib
from hfuv.plan import check_label, parse_timeout

LINES = [
    "# /// script", "# ///", "#", "# a = 1", '# dependencies = ["x"]', "# [tool.uv]",
    "# bad toml [", "", "code = 1", "  # /// script", "# /// other", "#x", "# /// script ",
    "# /// end", "\t# ///", '"""', 'X = "# /// script"', "# requires-python = '>=3'",
]  # fmt: skip
NEWLINES = ["\n", "\r\n", "\r"]


@st.composite
def scripts(draw: st.DrawFn) -> bytes:
    lines = draw(st.lists(st.sampled_from(LINES), max_size=12))
    newline = draw(st.sampled_from(NEWLINES))
    text = newline.join(lines) + draw(st.sampled_from(["", newline]))
    prefix = draw(st.sampled_from([b"", b"\xef\xbb\xbf", b"#!/usr/bin/env python\n"]))
    suffix = draw(st.sampled_from([b"", b"# caf\xe9\n"]))
    return prefix + text.encode() + suffix


def reference(content: bytes) -> tuple[str, str | None]:
    """An independent model of uv's rules → (`found`/`none`/`error`, the TOML when found)."""
    index = content.find(b"# /// script")
    if index < 0 or (index > 0 and content[index - 1 : index] not in (b"\n", b"\r")):
        return "none", None
    try:
        rest = content[index:].decode("utf-8")
        content[:index].decode("utf-8")
    except UnicodeDecodeError:
        return "error", None
    lines = rest.split("\n")
    lines = [line.removesuffix("\r") if i < len(lines) - 1 else line
             for i, line in enumerate(lines)]  # fmt: skip
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or lines[0] != "# /// script":
        return "none", None
    body = []
    for line in lines[1:]:
        match = re.fullmatch(r"#(?: (.*))?", line)
        if match is None:
            break
        body.append(match.group(1) or "")
    closers = [i for i, line in enumerate(body) if line == "///"]
    if not closers:
        return "error", None
    toml = "\n".join(body[: closers[-1]]) + "\n"
    tail = "\n".join(lines[closers[-1] + 2 :])
    if re.search(r"(?m)^# /// script$\s(^#(| .*)$\s)+^# ///$", tail):
        return "error", None
    try:
        tomllib.loads(toml)
    except tomllib.TOMLDecodeError:
        return "error", None
    return "found", toml


@settings(max_examples=400, deadline=None)
@given(scripts())
def test_parser_never_crashes_and_agrees_with_the_model(content: bytes) -> None:
    try:
        meta = pep723.parse(content, "s.py")
        outcome = ("found", meta.toml) if meta.found else ("none", None)
    except MetadataError as exc:
        assert exc.where.startswith("s.py:") and exc.where.split(":")[1].isdigit()
        outcome = ("error", None)
    expected = reference(content)
    if expected[0] == "found" and outcome[0] == "error":
        return  # a schema error (e.g. dependencies) the TOML-only model does not check
    assert outcome == expected


@given(st.integers(min_value=1, max_value=10**6), st.sampled_from(["", "s", "m", "h", "d"]))
def test_timeouts(number: int, unit: str) -> None:
    factor = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]
    assert parse_timeout(f"{number}{unit}", "--timeout") == number * factor
    assert parse_timeout(f"{number}.5{unit}", "--timeout") == int((number + 0.5) * factor)


LABEL_CHARS = st.sampled_from("abcXYZ019._-")


@given(st.text(LABEL_CHARS, min_size=1, max_size=100), st.text(LABEL_CHARS, max_size=100))
def test_valid_labels_pass(key: str, value: str) -> None:
    check_label(key, value, "-l")


@given(st.text(min_size=1, max_size=120), st.text(max_size=120))
def test_labels_outside_the_alphabet_fail(key: str, value: str) -> None:
    valid = re.fullmatch(r"[A-Za-z0-9._-]{1,100}", key) and re.fullmatch(
        r"[A-Za-z0-9._-]{0,100}", value
    )
    try:
        check_label(key, value, "-l")
        assert valid
    except ConfigError:
        assert not valid


NAMES = st.text(st.sampled_from("abcdef012_-."), min_size=1, max_size=20).filter(
    lambda n: n not in (".", "..")
)


@settings(deadline=None)
@given(st.dictionaries(NAMES, st.binary(max_size=300_000), min_size=1, max_size=5))
def test_bundle_round_trip(files: dict[str, bytes]) -> None:
    bundle = make_bundle(files)
    env = split_bundle(bundle)
    assert all(len(part) <= 100 * 1024 for part in env.values())
    import hashlib

    env["HFUV_BUNDLE_SHA256"] = hashlib.sha256(bundle).hexdigest()
    assert read_bundle(env) == files
    assert make_bundle(dict(reversed(list(files.items())))) == bundle


def tarfile_bundle(files: dict[str, bytes]) -> bytes:
    """The bundle as `tarfile` and `gzip` write it: what hfuv.bundle's own writer must match."""
    import gzip
    import io
    import tarfile

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), 0, 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            archive.addfile(info, io.BytesIO(files[name]))
    packed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=packed, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())
    return packed.getvalue()


SEGMENTS = st.text(st.sampled_from("abz09_-.éü中\udcff"), min_size=1, max_size=60).filter(
    lambda n: n not in (".", "..")
)
PATHS = st.lists(SEGMENTS, min_size=1, max_size=4).map("/".join)


@settings(deadline=None)
@given(st.dictionaries(PATHS, st.binary(max_size=3000), min_size=1, max_size=6))
@example({"a" * 99: b"", "b" * 100: b"x", "c" * 101: b"y" * 512, "d/" * 60 + "e": b"z"})
def test_the_bundle_is_the_archive_tarfile_and_gzip_write(files: dict[str, bytes]) -> None:
    """Long names, non-ASCII ones and names that are not UTF-8 included."""
    assert make_bundle(files) == tarfile_bundle(files)


VERSIONS = st.lists(st.integers(0, 20), min_size=1, max_size=3).map(
    lambda parts: ".".join(map(str, parts))
)
SIMPLE_SPECS = st.lists(
    st.tuples(st.sampled_from([">=", "<=", ">", "<"]), VERSIONS), min_size=1, max_size=3
).map(lambda clauses: ",".join(op + v for op, v in clauses))


@given(SIMPLE_SPECS, st.integers(0, 20), st.integers(0, 20), st.integers(0, 30))
def test_quick_specifiers_agree_with_packaging(spec: str, major: int, minor: int,
                                                patch: int) -> None:  # fmt: skip
    from packaging.specifiers import SpecifierSet

    from hfuv.quickspec import allows, simple_bounds

    bounds = simple_bounds(spec)
    assert bounds is not None
    version = f"{major}.{minor}.{patch}"
    assert allows(bounds, (major, minor, patch)) == SpecifierSet(spec).contains(version)


REQUIREMENT_TEXT = st.text(st.sampled_from("abcZ09._-[], <>=!~3"), max_size=25)


@settings(max_examples=500)
@given(REQUIREMENT_TEXT)
def test_quick_requirements_are_valid_pep508(text: str) -> None:
    from packaging.requirements import InvalidRequirement, Requirement

    from hfuv.quickspec import is_simple_requirement

    if is_simple_requirement(text):
        try:
            Requirement(text)
        except InvalidRequirement as exc:  # pragma: no cover - the failure this test hunts
            raise AssertionError(f"{text!r} passed the fast path but is invalid") from exc


events = st.lists(
    st.dictionaries(st.sampled_from(["data", "timestamp", "x"]), st.text() | st.integers()),
    max_size=20,
)


@settings(max_examples=200, deadline=None)
@given(events)
def test_a_batch_of_log_events_decodes_as_each_line_would(batch: list[dict]) -> None:
    import json

    from hfuv.client import _events

    lines = [b"data: " + json.dumps(event).encode() for event in batch]
    assert _events(lines) == batch


def test_a_bad_log_event_is_refused_even_in_a_batch() -> None:
    import pytest

    from hfuv.client import JobsApiError, _events

    good = b'data: {"data": "a"}'
    for bad in (b'data: {"data": "b"}, {"data": "c"}', b'data: {"data": "cut'):
        with pytest.raises(JobsApiError) as caught:
            _events([good, bad, good])
        assert caught.value.status == 599
