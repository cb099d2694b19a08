"""A running job's CPU and memory, in the Jobs API's metric shape."""

from __future__ import annotations

from hfuv.runtime import Usage


def sample(usage: Usage, cpus: float, memory_bytes: int) -> dict[str, object]:
    """One metric event from what the runtime measured of the job (all zeros once it ended);
    `cpus` and `memory_bytes` are the job's limits (its flavor's, capped at this host's)."""
    cores = cpus or 1
    return {
        "cpu_usage_pct": round(usage.cpu_pct / cores, 2),
        "cpu_millicores": round(cores * 1000),  # the job's CPU allocation, as on Hugging Face
        "memory_used_bytes": usage.memory_bytes,
        "memory_total_bytes": memory_bytes,
        "rx_bps": 0,
        "tx_bps": 0,
        "gpus": usage.extra.get("gpus", {}),
        "replica": "0",
    }
