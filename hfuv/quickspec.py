"""Fast answers for the common, simple forms of requirements and version specifiers.

`packaging` compiles dozens of regular expressions on import (~40 ms, a large share of a
short command). Strings in the simple forms below are valid PEP 508 / PEP 440 by construction,
so they are accepted here without it; anything else goes to `packaging`, which decides.
"""

from __future__ import annotations

import re

_VERSION = r"[0-9]+(?:\.[0-9]+)*"
_CLAUSE = rf"(?:>=|<=|==|!=|>|<)\s*{_VERSION}"  # not ~=: it needs two segments
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
SIMPLE_REQUIREMENT = re.compile(
    rf"\s*{_NAME}\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
    rf"(?:{_CLAUSE}(?:\s*,\s*{_CLAUSE})*)?\s*"
)
_BOUND = re.compile(rf"\s*(>=|<=|>|<)\s*({_VERSION})\s*")


def is_simple_requirement(text: str) -> bool:
    """True for `name`, `name[extra]>=1.2,<2` and the like (all valid PEP 508)."""
    return SIMPLE_REQUIREMENT.fullmatch(text) is not None


def simple_bounds(spec: str) -> list[tuple[str, tuple[int, ...]]] | None:
    """`>=3.10,<3.13` → [(">=", (3, 10)), ("<", (3, 13))]; None for any other form."""
    clauses = []
    for part in spec.split(","):
        match = _BOUND.fullmatch(part)
        if match is None:
            return None
        clauses.append((match.group(1), tuple(int(n) for n in match.group(2).split("."))))
    return clauses


def allows(bounds: list[tuple[str, tuple[int, ...]]], version: tuple[int, ...]) -> bool:
    """Does a release `version` (no pre-releases) satisfy every bound, as PEP 440 says?"""

    def pad(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        width = max(len(a), len(b))
        return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))

    for operator, bound in bounds:
        left, right = pad(version, bound)
        if not {
            ">=": left >= right, "<=": left <= right, ">": left > right, "<": left < right
        }[operator]:  # fmt: skip
            return False
    return True
