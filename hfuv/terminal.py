"""Text that others wrote, on its way to a terminal: shown, never obeyed.

A job's log lines, name, labels and status message are written by whoever runs the job (any
member of an org), and error texts by the server. Raw, their escape sequences would act on the
reader's terminal: set its title, write its clipboard (OSC 52), move the cursor over earlier
output. So control characters are shown as `\\x1b`-style text; the sequence after them is then
plain text. Colours (SGR, `ESC[…m`) pass where they are harmless. Piped log output is not
touched: it is the job's bytes, exactly.
"""

from __future__ import annotations

import os
import re
import sys

_NOT_SGR = r"|\x1b(?!\[[0-9;:]*m)"  # an escape that does not start a colour (SGR)
# Logs keep tabs, newlines and carriage returns (progress bars redraw their line with \r).
_LOG = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1a\x1c-\x1f\x7f-\x9f]" + _NOT_SGR)
_LOG_SUSPECT = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # what _LOG may change
# Messages (status lines, errors) may span lines, but a \r could overwrite their start.
_MESSAGE = re.compile(r"[\x00-\x08\x0b-\x1a\x1c-\x1f\x7f-\x9f]" + _NOT_SGR)
# A table cell or a field is one line: nothing passes.
_FIELD = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def safe_log(text: str) -> str:
    """Log lines for a terminal: colours stay, other control characters are shown.

    A plain character class finds nothing in most chunks, faster than the full pattern would.
    """
    return _LOG.sub(_escaped, text) if _LOG_SUSPECT.search(text) else text


def safe_message(text: str) -> str:
    """A status or error message: colours and line breaks stay, other controls are shown."""
    return text if text.isprintable() else _MESSAGE.sub(_escaped, text)


def safe_field(text: str) -> str:
    """One value in a table or summary: every control character is shown."""
    return text if text.isprintable() else _FIELD.sub(_escaped, text)


def stdout_closed() -> None:
    """The reader of stdout went away (`hfuv logs ID | head`): a normal end, not an error.

    Whatever is still buffered goes to /dev/null, so that no later flush fails on the way out.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass
