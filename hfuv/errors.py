"""One exception tree, named by what the user must fix.

Every error carries a one-line message that says what is wrong, where, and how to fix it, and the
exit code the CLI uses for it: 2 for bad input (usage, metadata, option values), 1 for failures.
"""

from __future__ import annotations

USAGE = 2
FAILURE = 1


class HfuvError(Exception):
    """Base of every error hfuv reports to the user."""

    exit_code = FAILURE

    def __init__(self, message: str, *, hint: str | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.detail = detail  # e.g. a tool's whole output; shown only with HFUV_DEBUG=1

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class UsageError(HfuvError):
    """An option or argument is invalid; nothing was done."""

    exit_code = USAGE


class MetadataError(UsageError):
    """The script's PEP 723 block is invalid; `where` is `file:line`."""

    def __init__(self, where: str, message: str, *, hint: str | None = None) -> None:
        super().__init__(f"{where}: {message}", hint=hint)
        self.where = where
        self.reason = message


class ConfigError(UsageError):
    """A launch-configuration value (flag, [tool.hfuv], [tool.hf-jobs]) is invalid."""


class MissingSecretError(UsageError):
    """A secret was requested by name but has no value here."""


class SourceError(HfuvError):
    """The script could not be read or fetched."""


class UvNotFoundError(HfuvError):
    """No uv binary is available."""


class UvError(HfuvError):
    """uv failed; the message carries uv's own error lines."""


class LockError(HfuvError):
    """The environment could not be locked, or an existing lock is stale."""


class PythonNotFoundError(HfuvError):
    """The chosen Python X.Y is not installed on this machine."""


class BundleTooLargeError(HfuvError):
    """The job's files do not fit in the job's environment."""


class ServerError(HfuvError):
    """`hfuv server` cannot start (its port is taken, for instance)."""


class NotAvailableError(UsageError):
    """The feature asked for does not exist yet."""


def report(exc: HfuvError) -> int:
    """Print `exc` as hfuv's one `error:` line on stderr; → the exit code to use.

    With HFUV_DEBUG=1 the traceback and the error's detail come first (errors never hold
    secret values).
    """
    import os
    import sys

    if os.environ.get("HFUV_DEBUG") == "1":
        import traceback

        traceback.print_exc()
        if exc.detail:
            sys.stderr.write(exc.detail.rstrip("\n") + "\n")
    from hfuv.terminal import safe_message

    hint = f" (hint: {exc.hint})" if exc.hint else ""
    sys.stderr.write(safe_message(f"error: {exc.message}{hint}") + "\n")  # may quote the server
    sys.stderr.flush()
    return exc.exit_code
