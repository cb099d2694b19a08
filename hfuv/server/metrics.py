"""A running job's CPU and memory, in the Jobs API's metric shape."""

from __future__ import annotations

import os

from hfuv.flavors import Flavor
from hfuv.runtime import Usage


def sample(usage: Usage, flavor: Flavor) -> dict[str, object]:
    """One metric event from what the runtime measured of the job (all zeros once it ended)."""
    cores = flavor.cpu_cores or os.cpu_count() or 1
    return {
        "cpu_usage_pct": round(usage.cpu_pct / cores, 2),
        "cpu_millicores": cores * 1000,  # the job's CPU allocation, as on Hugging Face
        "memory_used_bytes": usage.memory_bytes,
        "memory_total_bytes": flavor.ram_gb * 1024**3,
        "rx_bps": 0,
        "tx_bps": 0,
        "gpus": usage.extra.get("gpus", {}),
        "replica": "0",
    }
