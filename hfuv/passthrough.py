"""Which of the options hfuv does not know may go to the script, and which are refused.

`hfuv run s.py --lr 1e-4` passes `--lr` to the script. Passed the same way, a misspelled hfuv
option (`--dryrun`) or an hfuv option the command lacks (`schedule create … --local`) would turn
into an argument of a real job. This check finds those before anything is sent, reading the
command line as click's parser does: `--` ends the options, an option's value is never an option,
and `-abc` is a cluster of short options (`-e K=V` may be written `-eK=V`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from hfuv.errors import UsageError

NEGATIVE_NUMBER = re.compile(r"-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def negative_numbers_protected(args: Sequence[str]) -> tuple[list[str], Callable[[Any], Any]]:
    """`args` with each negative number (`-1e-4`, `-5`, `-.5`) as a placeholder, and what puts
    them back in a parsed value (a string, or a tuple of them). click would read `-1e-4` as
    the short options -1 and `-e -4`; a number is a value, never an option."""
    numbers = {f"\0{index}\0": arg for index, arg in enumerate(args)
               if NEGATIVE_NUMBER.fullmatch(arg)}  # fmt: skip
    protected = [f"\0{index}\0" if f"\0{index}\0" in numbers else arg
                 for index, arg in enumerate(args)]  # fmt: skip

    def restore(value: Any) -> Any:
        if isinstance(value, str):
            return numbers.get(value, value)
        if isinstance(value, (list, tuple)):
            return type(value)(restore(item) for item in value)
        return value

    return protected, restore


def check(args: Sequence[str], own: Mapping[str, str | None],
          others: Mapping[str, Sequence[str]], *, where: str, target: str) -> None:  # fmt: skip
    """Refuse the first unknown option before `--` that is a near miss of one of `own` (option
    → None for a flag, else how its value is best attached: `--label` for `-l`), or an option of
    other commands (`others`: option → their names) that this one lacks; and a value, given as
    the next word, that is one of `own` (the value is missing: `--name --dry-run`)."""
    tokens = iter(args)
    for token in tokens:
        if token == "--":
            return
        if not token.startswith("-") or token == "-":
            continue
        typed = token.partition("=")[0] if token.startswith("--") or len(token) > 2 else token
        if typed in own:  # `--flavor`, `--flavor=X`, `-p`: their value is not an option
            if own[typed] and "=" not in token:
                _refuse_option_as_value(typed, next(tokens, None), own)
            continue
        if typed != token[:2]:  # a long name; `-dry-run` is one too, not -d -r -y …
            long_name = "-" + typed if not typed.startswith("--") else typed
            long_options = [option for option in own if option[1] == "-"]
            suggestion = near_miss(long_name, long_options)
            if not suggestion and typed.startswith("--"):
                suggestion = ", ".join(abbreviated(typed, long_options))
            if suggestion:
                _refuse(f"no such option {typed} (did you mean {suggestion}?)", target)
            if long_name in others:
                _refuse_missing(long_name, others[long_name], where, target)
            if typed.startswith("--"):
                continue
        for index, letter in enumerate(token[1:], start=2):  # a cluster, as click reads it
            short = "-" + letter
            if short in others:
                _refuse_missing(short, others[short], where, target)
            if own.get(short):  # the rest of the token is its value, or else the next token
                if index == len(token):
                    _refuse_option_as_value(short, next(tokens, None), own)
                break


def near_miss(name: str, options: Sequence[str]) -> str | None:
    """The option `name` looks like a typo of: the same but for case, `-` and `_`, or a few
    edits away (a swap of two neighbours for a name of up to four letters, one edit up to
    seven, two beyond)."""
    typed = name.lstrip("-").lower().replace("_", "-")
    best: tuple[int, str] | None = None
    for option in options:
        real = option.lstrip("-")
        if typed.replace("-", "") == real.replace("-", ""):
            return option
        if len(real) <= 4 and sorted(typed) != sorted(real):
            continue  # `--width` is not a typo of `--with`, nor `--lr` of anything
        distance = edit_distance(typed, real)
        if distance <= (2 if len(real) >= 8 else 1) and (best is None or distance < best[0]):
            best = (distance, option)
    return best[1] if best else None


def abbreviated(name: str, options: Sequence[str]) -> list[str]:
    """The options `name` is a strict prefix of, if it has 3 letters or more: `--dry` is
    `--dry-run` cut short (click does not expand it, so it would reach the script)."""
    typed = name.lstrip("-").lower().replace("_", "-")
    if len(typed) < 3:
        return []
    return [option for option in options if option.lstrip("-").startswith(typed)
            and option.lstrip("-") != typed]  # fmt: skip


def edit_distance(a: str, b: str) -> int:
    """Insertions, deletions, substitutions and swaps of neighbours that turn `a` into `b`."""
    rows = [list(range(len(b) + 1))]
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(rows[-1][j] + 1, row[j - 1] + 1, rows[-1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], rows[-2][j - 2] + 1)
        rows.append(row)
    return rows[-1][-1]


def _refuse(what: str, target: str) -> None:
    raise UsageError(f"{what}; to give it to the {target}, put it after --")


def _refuse_option_as_value(option: str, value: str | None, own: Mapping[str, str | None]) -> None:
    """`--name --dry-run`: click would take `--dry-run` as the name; far likelier, the name was
    forgotten. `--name=--dry-run` says the value is meant."""
    if value != "--" and (value is None or value.partition("=")[0] not in own):
        return
    what = "--" if value == "--" else f"the option {value}"
    spelled = own[option] or option
    attached = f"{spelled}={value}" if spelled.startswith("--") else f"{spelled}{value}"
    raise UsageError(f"{option} needs a value, but the next word is {what}",
                     hint=f"write {attached} if you mean that")  # fmt: skip


def _refuse_missing(option: str, owners: Sequence[str], where: str, target: str) -> None:
    _refuse(f"{where} has no option {option} (it is an option of {', '.join(owners)})", target)
