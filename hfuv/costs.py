"""The cost guard: the worst case of a submission (price/hour × timeout × jobs) against a limit.

Prices come from the endpoint's `GET /api/jobs/hardware` (cached for a day), else from the
built-in catalog.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hfuv.cache import cache_dir
from hfuv.errors import HfuvError
from hfuv.flavors import CATALOG, format_duration, get_flavor

if TYPE_CHECKING:
    from pathlib import Path

    from hfuv.client import JobsClient

CACHE_SECONDS = 24 * 3600


class CostLimitError(HfuvError):
    """The worst case of a submission is over the user's limit; nothing was submitted."""


@dataclass(frozen=True)
class Estimate:
    flavor: str
    usd_per_hour: float
    timeout_seconds: int
    jobs: int
    source: str  # "endpoint" or "built-in catalog"

    @property
    def max_usd(self) -> float:
        return self.usd_per_hour * self.timeout_seconds / 3600 * self.jobs

    def summary(self) -> str:
        count = f" × {self.jobs} jobs" if self.jobs > 1 else ""
        return (
            f"{self.flavor} at ${self.usd_per_hour:.2f}/h × {format_duration(self.timeout_seconds)}"
            f" timeout{count} = at most ${self.max_usd:.2f}"
        )


def hourly_prices(client: JobsClient) -> tuple[dict[str, float], str]:
    """Flavor → USD/hour from the endpoint (cached), else from the built-in catalog."""
    try:
        cached = json.loads(_cache_path(client.endpoint).read_text())
        if time.time() - cached["at"] < CACHE_SECONDS:
            return cached["prices"], "endpoint"
    except (OSError, ValueError, KeyError):
        pass
    try:
        items = client.hardware(patient=False)
        prices = remember_hardware(client.endpoint, items)
    except (HfuvError, KeyError, TypeError, ValueError):
        return {name: f.usd_per_hour for name, f in CATALOG.items()}, "built-in catalog"
    return prices, "endpoint"


def remember_hardware(endpoint: str, items: list[dict]) -> dict[str, float]:
    """Cache an endpoint's hardware list (its prices, and flavors newer than hfuv's catalog);
    → flavor → USD/hour. Raises KeyError/TypeError/ValueError on a list of another shape."""
    prices = {item["name"]: float(item["unitCostUSD"]) * 60 for item in items}
    path = _cache_path(endpoint)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"at": time.time(), "prices": prices, "hardware": items}))
    except OSError:
        pass
    return prices


def _cache_path(endpoint: str) -> Path:
    return cache_dir() / "hardware" / f"{hashlib.sha256(endpoint.encode()).hexdigest()[:16]}.json"


def estimate(
    client: JobsClient | None, flavor: str, timeout_seconds: int, jobs: int = 1
) -> Estimate:
    prices, source = (
        hourly_prices(client)
        if client is not None
        else ({n: f.usd_per_hour for n, f in CATALOG.items()}, "built-in catalog")
    )
    price = prices.get(flavor)
    if price is None:
        price, source = get_flavor(flavor).usd_per_hour, "built-in catalog"
    return Estimate(flavor, price, timeout_seconds, jobs, source)


def guard(worst: Estimate, max_cost: float | None, origin: str) -> None:
    """Refuse, before anything is sent, a submission whose worst case is over `max_cost`."""
    if max_cost is not None and worst.max_usd > max_cost:
        raise CostLimitError(
            f"refusing to submit: {worst.summary()}, over the max cost of ${max_cost:.2f} "
            f"({origin}); nothing was submitted",
            hint="lower --timeout, pick a smaller --flavor, or raise --max-cost",
        )
