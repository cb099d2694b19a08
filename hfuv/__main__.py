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
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:  # outside click (a replayed run): a closed stdout ends it quietly
        from hfuv.terminal import stdout_closed

        stdout_closed()
        code = 0
    except Exception as exc:  # one line, as for hfuv's own errors
        from hfuv.errors import HfuvError, report

        if isinstance(exc, OSError) and exc.strerror:
            where = f": {exc.filename}" if exc.filename else ""
            error = HfuvError(f"{exc.strerror}{where}", hint="check that path and its permissions")
        else:
            hint = "this is a bug in hfuv; run again with HFUV_DEBUG=1 and report the traceback"
            error = HfuvError(f"unexpected {type(exc).__name__}: {exc}", hint=hint)
        code = report(error)
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
