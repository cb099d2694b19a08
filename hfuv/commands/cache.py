"""`hfuv cache dir | prune | clean`: where hfuv keeps its state, and making room."""

from __future__ import annotations

import click

from hfuv.cli import cli
from hfuv.submission import status


@cli.group(name="cache")
def cache_group() -> None:
    """hfuv's cache: fetched scripts, locks, prepared runs and local run dirs."""


@cache_group.command(name="dir")
def cache_dir_command() -> None:
    """Print where the cache is (HFUV_CACHE_DIR, else the platform's cache dir)."""
    from hfuv.cache import cache_root

    click.echo(cache_root())


@cache_group.command(name="prune")
@click.option("--older-than", default="7d", show_default=True, metavar="AGE",
              help="Remove what is older: seconds, or 30m, 12h, 7d.")  # fmt: skip
def cache_prune(older_than: str) -> None:
    """Remove local run dirs (with what the scripts wrote there), replay records and unpacked
    code older than AGE. Locks, fetched scripts and the code of runs still going stay."""
    from hfuv.cache import prune
    from hfuv.plan import parse_timeout

    files, size = prune(parse_timeout(older_than, "--older-than", what="age"))
    status(f"removed {files} files ({size / 2**20:.1f} MiB)")


@cache_group.command(name="clean")
def cache_clean() -> None:
    """Remove the whole cache (the next runs lock and fetch again)."""
    from hfuv.cache import clean

    files, size = clean()
    status(f"removed {files} files ({size / 2**20:.1f} MiB)")
