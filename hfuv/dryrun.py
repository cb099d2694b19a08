"""What `--dry-run` prints: the request a command would send, with secret values as `***`."""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def api_url(endpoint: str | None, path: str) -> str:
    base = (endpoint or os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    return f"{base}{path}"


def readable_body(spec: Any) -> dict[str, Any]:
    """A JobSpec's redacted body, with the bundle and the bootstrap program shortened to a line
    each (`spec` is `hfuv.payload`'s JobSpec; `--json` shows them in full)."""
    body = spec.redacted()
    environment = dict(body["environment"])
    for key in [k for k in environment if k.removeprefix("HFUV_BUNDLE_").isdigit()]:
        environment[key] = f"<{len(environment[key])} chars of base64: {', '.join(spec.files)}>"
    lines = body["command"][2].count("\n")
    command = [body["command"][0], "-c", f"<hfuv bootstrap, {lines} lines>", *body["command"][3:]]
    return {**body, "environment": environment, "command": command}


def print_request(url: str, body: Any, estimate: dict[str, Any] | None = None) -> None:
    """The request as one JSON object on stdout: method, url, body and the worst-case cost."""
    document: dict[str, Any] = {"method": "POST", "url": url, "body": body}
    if estimate is not None:
        document["estimate"] = estimate
    sys.stdout.write(json.dumps(document, indent=2) + "\n")


def print_readable(url: str, body: Any, summary: str) -> None:
    """The request for reading: `POST URL`, the body, and the cost summary."""
    sys.stdout.write(f"POST {url}\n{json.dumps(body, indent=2)}\nestimate: {summary}\n")
