"""`hfuv server`: the Hugging Face Jobs API on this machine (needs `pip install 'hfuv[server]'`)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from hfuv.errors import UsageError


def serve(
    *,
    host: str,
    port: int,
    data_dir: Path,
    token_specs: tuple[str, ...],
    tokens_file: Path | None,
    max_parallel: int,
    announce: Callable[[str], None],
) -> None:
    """Run the server until interrupted; jobs still running then end as ERROR."""
    try:
        import uvicorn

        from hfuv.server.app import build_state, create_app
    except ImportError:
        raise UsageError(
            "hfuv server needs its extra dependencies",
            hint="pip install 'hfuv[server]'",
        ) from None
    from hfuv.server import tokens as token_store

    tokens, generated = token_store.load(token_specs, tokens_file, data_dir)
    state = build_state(data_dir, tokens, max_parallel=max_parallel)
    state.executor.start()
    assert state.scheduler is not None
    state.scheduler.start()
    url = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    users = ", ".join(sorted({identity.name for identity in tokens.values()}))
    announce(f"hfuv server on {url} for {users}; data in {data_dir}")
    if generated:
        announce(f"HF_ENDPOINT={url} HF_TOKEN={generated}")
    else:
        announce(f"HF_ENDPOINT={url} HF_TOKEN=<one of the tokens you gave>")
    config = uvicorn.Config(
        create_app(state),
        host=host,
        port=port,
        log_level="warning",
        lifespan="off",
        date_header=False,  # the logs route sets an exact one (clients cut replays at Date + 1s)
    )
    server = uvicorn.Server(config)
    try:
        server.run()
    finally:
        state.scheduler.stop()
        state.executor.stop()
        state.store.close()
    if not server.started:
        print(f"error: could not listen on {host}:{port}", file=sys.stderr)
        sys.exit(1)


def default_data_dir() -> Path:
    from hfuv.cache import cache_dir

    return Path(os.environ.get("HFUV_SERVER_DATA", cache_dir() / "server"))
