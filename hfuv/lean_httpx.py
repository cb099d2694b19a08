"""httpx, imported without its own command line.

`import httpx` also imports `httpx._main` (its CLI), which pulls in click and pygments when they
are installed: a tenth of a short hfuv command's start-up, for code hfuv never runs. Marking
that module absent makes httpx skip it, as it does when its CLI extras are not installed.
"""

import sys

sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import httpx  # noqa: E402

__all__ = ["httpx"]
