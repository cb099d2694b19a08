"""CPU and memory of a job's processes (its process group), in the Jobs API's metric shape."""

from __future__ import annotations

import os
import subprocess

from hfuv.flavors import Flavor


def sample(pgid: int | None, flavor: Flavor) -> dict[str, object]:
    """One metric event for the processes of group `pgid` (all zeros once they are gone)."""
    cpu_pct = 0.0
    rss_kib = 0
    if pgid:
        try:
            out = subprocess.run(
                ["ps", "-A", "-o", "pgid=,rss=,pcpu="], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[0] == str(pgid):
                rss_kib += int(fields[1])
                cpu_pct += float(fields[2])
    cores = flavor.cpu_cores or os.cpu_count() or 1
    return {
        "cpu_usage_pct": round(cpu_pct / cores, 2),
        "cpu_millicores": cores * 1000,  # the job's CPU allocation, as on Hugging Face
        "memory_used_bytes": rss_kib * 1024,
        "memory_total_bytes": flavor.ram_gb * 1024**3,
        "rx_bps": 0,
        "tx_bps": 0,
        "gpus": {},
        "replica": "0",
    }
