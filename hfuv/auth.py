"""Where the Hugging Face token comes from, in the order `hf auth login` users expect."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def token_file(environ: Mapping[str, str]) -> Path:
    """`HF_TOKEN_PATH`, else `$HF_HOME/token`, else `~/.cache/huggingface/token`."""
    if environ.get("HF_TOKEN_PATH"):
        return Path(environ["HF_TOKEN_PATH"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "token"
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(environ.get("HOME", "~"), ".cache")
    return Path(cache).expanduser() / "huggingface" / "token"


def find_hf_token(environ: Mapping[str, str], explicit: str | None = None) -> str | None:
    """`--token` > `HF_TOKEN` > the saved token file; None when there is none."""
    if explicit:
        return explicit
    if environ.get("HF_TOKEN"):
        return environ["HF_TOKEN"]
    try:
        token = token_file(environ).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None
