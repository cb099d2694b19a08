"""Short-lived Xet tokens and signed transfer URLs, both HMACs under a key the server makes at
start (so both end with the server: the client asks for a new token when one is refused).

A token grants `read` or `write` on one bucket of one namespace until its expiry; a transfer
URL grants one byte range of one xorb until its expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

TOKEN_SECONDS = 3600
TRANSFER_SECONDS = 3600
PREFIX = "xet_"


@dataclass(frozen=True)
class Grant:
    namespace: str
    bucket: str
    scope: str  # "read" or "write"; write implies read
    expires: int


class Signer:
    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, message: str) -> str:
        return hmac.new(self._key, message.encode(), hashlib.sha256).hexdigest()

    def token(self, namespace: str, bucket: str, scope: str) -> tuple[str, int]:
        expires = int(time.time()) + TOKEN_SECONDS
        body = json.dumps([namespace, bucket, scope, expires], separators=(",", ":"))
        encoded = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
        return f"{PREFIX}{encoded}.{self._mac(encoded)}", expires

    def grant(self, token: str) -> Grant | None:
        """What a valid, unexpired token grants; None for anything else."""
        if not token.startswith(PREFIX) or "." not in token:
            return None
        encoded, _, mac = token[len(PREFIX) :].partition(".")
        if not hmac.compare_digest(mac, self._mac(encoded)):
            return None
        try:
            padded = encoded + "=" * (-len(encoded) % 4)
            namespace, bucket, scope, expires = json.loads(base64.urlsafe_b64decode(padded))
        except (ValueError, TypeError):
            return None
        if expires < time.time():
            return None
        return Grant(namespace, bucket, scope, expires)

    def transfer_query(self, xorb: str, start: int, end: int) -> str:
        """The query string of a URL for bytes [start, end] (inclusive) of `xorb`."""
        expires = int(time.time()) + TRANSFER_SECONDS
        signature = self._mac(f"{xorb}:{start}-{end}:{expires}")
        return f"range={start}-{end}&exp={expires}&sig={signature}"

    def transfer_ok(self, xorb: str, byte_range: str, expires: str, signature: str) -> bool:
        if not expires.isdigit() or int(expires) < time.time():
            return False
        return hmac.compare_digest(signature, self._mac(f"{xorb}:{byte_range}:{expires}"))
