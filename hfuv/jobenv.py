"""What a job process on this machine inherits from the host, and its local id.

Kept free of heavy imports: `hfuv run --local` replays a prepared run through this module
before anything else is loaded (see `hfuv.replay`).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing is not imported at run time, to keep this module cheap
if TYPE_CHECKING:
    from collections.abc import Mapping

# Only what uv and Python need on the host; never the whole shell environment.
HOST_VARIABLES = frozenset(
    (
        "PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TERM", "COLORTERM",
        "NO_COLOR", "FORCE_COLOR", "TMPDIR", "XDG_CACHE_HOME", "SSL_CERT_FILE", "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "NIX_SSL_CERT_FILE", "PYENV_ROOT",
        "PYENV_VERSION", "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX",
        "PIP_CERT",
    )
)  # fmt: skip
HOST_PREFIXES = ("UV_", "LC_")
PROXY_VARIABLES = frozenset(("http_proxy", "https_proxy", "no_proxy", "all_proxy"))


def is_host_variable(name: str) -> bool:
    return (
        name in HOST_VARIABLES
        or name.startswith(HOST_PREFIXES)
        or (name.lower() in PROXY_VARIABLES)
    )


def host_environment(environ: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in environ.items() if is_host_variable(key)}


def new_job_id() -> str:
    """24 hex characters, the shape of a Hugging Face job id."""
    return os.urandom(12).hex()
