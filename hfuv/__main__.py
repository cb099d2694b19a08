"""`hfuv` and `python -m hfuv`: replay a prepared `hfuv run` if one is current, else the CLI."""

import sys


def main() -> None:
    if sys.argv[1:2] == ["run"]:
        from hfuv.replay import run_if_prepared

        run_if_prepared(sys.argv[2:])
    from hfuv.cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
