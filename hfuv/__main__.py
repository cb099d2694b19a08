"""`hfuv` and `python -m hfuv`: replay a prepared `hfuv run` if one is current, else the CLI."""

import os
import sys


def main() -> None:
    try:
        if sys.argv[1:2] == ["run"]:
            from hfuv.replay import run_if_prepared

            run_if_prepared(sys.argv[2:])
        from hfuv.cli import main as cli_main

        cli_main()
        code = 0
    except SystemExit as exc:
        code = exc.code
    exit_now(code)


def exit_now(code: object) -> None:
    """Exit with `code` once the output is flushed, without the interpreter's teardown.

    Tearing down the hundreds of modules a command imports costs more than many commands take
    to run, and hfuv keeps nothing that needs it: files are written through `with` blocks, and
    a process that still runs other threads exits the usual way, after them.
    """
    if isinstance(code, str):
        sys.stderr.write(code + "\n")
        code = 1
    status = 0 if code is None else code if isinstance(code, int) else 1
    if "threading" in sys.modules and sys.modules["threading"].active_count() > 1:
        sys.exit(status)
    from contextlib import suppress

    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed pipe (`hfuv ps | head`) is not our error
            stream.flush()
    os._exit(status)


if __name__ == "__main__":
    main()
