"""How long to wait before trying a request again: exponential backoff with jitter, bounded."""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime


@dataclass
class Backoff:
    """One request's retry budget: at most `attempts` tries within `max_seconds`."""

    attempts: int = 6
    max_seconds: float = field(
        default_factory=lambda: float(os.environ.get("HFUV_RETRY_MAX_SECONDS", "60"))
    )
    base: float = 0.5
    cap: float = 10.0
    tried: int = 0
    started: float = field(default_factory=time.monotonic)

    def next_delay(self, retry_after: str | None = None) -> float | None:
        """Seconds to wait before the next try, or None when the budget is spent."""
        self.tried += 1
        if self.tried >= self.attempts:
            return None
        delay = parse_retry_after(retry_after)
        if delay is None:
            delay = min(self.cap, self.base * 2 ** (self.tried - 1)) * random.uniform(0.5, 1.0)
        if time.monotonic() - self.started + delay > self.max_seconds:
            return None
        return delay


def parse_retry_after(value: str | None) -> float | None:
    """`Retry-After` as seconds (a number or an HTTP date), capped at a minute."""
    if not value:
        return None
    try:
        return min(60.0, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return min(60.0, max(0.0, moment.timestamp() - time.time()))
