"""`hfuv stats`: CPU, memory, network and GPU use of running jobs, once or live.

Columns as in `hf jobs stats`; one row per GPU. A snapshot takes the first metrics event of each
job (in parallel); `follow` keeps one stream per job open and redraws the table in place on a
terminal, or prints a row per job each second when piped, until every job has ended.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from hfuv.client import TERMINAL_STAGES, JobsApiError, JobsClient
from hfuv.display import redraw, table

HEADERS = ["JOB ID", "CPU %", "NUM CPU", "MEM %", "MEM USAGE", "NET I/O", "GPU UTIL %",
           "GPU MEM %", "GPU MEM USAGE"]  # fmt: skip


def _size(value: float) -> str:
    """1417216 → `1.4M` (decimal prefixes, as `hf jobs stats` shows them)."""
    if abs(value) < 1000:
        return f"{value:.0f}"
    for prefix in ("k", "M", "G"):
        value /= 1000
        if abs(value) < 1000:
            return f"{value:.1f}{prefix}"
    return f"{value / 1000:.1f}T"


def _pct(used: float, total: float) -> str:
    return f"{100 * used / total:.2f}%" if total else "N/A"


def _number(sample: dict[str, Any], key: str) -> float:
    value = sample.get(key)
    return float(value) if isinstance(value, (int, float)) else 0.0


def rows_of(job_id: str, sample: dict[str, Any]) -> list[list[str]]:
    """The table rows of one metrics event: one per GPU (sorted by id), or one with N/A."""
    used, total = _number(sample, "memory_used_bytes"), _number(sample, "memory_total_bytes")
    base = [
        job_id,
        f"{_number(sample, 'cpu_usage_pct'):g}%",
        f"{_number(sample, 'cpu_millicores') / 1000:.1f}",
        _pct(used, total),
        f"{_size(used)}B / {_size(total)}B",
        f"{_size(_number(sample, 'rx_bps'))}bps / {_size(_number(sample, 'tx_bps'))}bps",
    ]
    gpus = sample.get("gpus")
    if not isinstance(gpus, dict) or not gpus:
        return [[*base, "N/A", "N/A", "N/A"]]
    rows = []
    for index, gpu_id in enumerate(sorted(gpus)):
        gpu = gpus[gpu_id] if isinstance(gpus[gpu_id], dict) else {}
        gpu_used, gpu_total = _number(gpu, "memory_used_bytes"), _number(gpu, "memory_total_bytes")
        rows.append([*(base if index == 0 else [""] * len(base)),
                     f"{_number(gpu, 'utilization'):g}%", _pct(gpu_used, gpu_total),
                     f"{_size(gpu_used)}B / {_size(gpu_total)}B"])  # fmt: skip
    return rows


def stats_table(samples: dict[str, dict[str, Any]]) -> str:
    return table(HEADERS, [row for job_id, s in samples.items() for row in rows_of(job_id, s)])


def first_sample(client: JobsClient, namespace: str, job_id: str) -> dict[str, Any] | None:
    """The job's next metrics event; None when it is not running (or sends none)."""
    stream = client.metrics(namespace, job_id)
    try:
        return next(stream, None)
    except JobsApiError as exc:
        if exc.status in (406, 599):  # ended, or the stream broke as it ended
            return None
        raise
    finally:
        stream.close()


def snapshot(client: JobsClient, namespace: str, job_ids: list[str]) -> dict[str, dict]:
    with ThreadPoolExecutor(max_workers=min(8, len(job_ids) or 1)) as pool:
        found = list(pool.map(lambda job_id: first_sample(client, namespace, job_id), job_ids))
    return {job_id: s for job_id, s in zip(job_ids, found, strict=True) if s is not None}


def follow(
    client: JobsClient,
    namespace: str,
    job_ids: list[str],
    *,
    live: bool,
    out: TextIO,
    status: Callable[[str], None],
    interval: float = 1.0,
) -> None:
    """Show every job's latest sample each `interval` until all of them have ended."""
    latest: dict[str, dict[str, Any]] = {}
    active = set(job_ids)
    for job_id in job_ids:
        threading.Thread(target=_keep_latest, args=(client, namespace, job_id, latest, active),
                         daemon=True).start()  # fmt: skip
    drawn = 0
    printed_header = False
    next_check = 0.0
    while active:
        time.sleep(interval)
        if time.monotonic() >= next_check:  # the job record, not the stream, says it ended
            for job_id in sorted(active):
                stage = client.get_job(namespace, job_id)["status"]["stage"]
                if stage in TERMINAL_STAGES:
                    active.discard(job_id)
                    latest.pop(job_id, None)
                    status(f"job {namespace}/{job_id} ended: {stage}")
                    drawn = 0  # the status line broke the drawn block
            next_check = time.monotonic() + 5.0
        current = {job_id: latest[job_id] for job_id in job_ids if job_id in latest}
        if not current:
            continue
        text = stats_table(current)
        if live:
            drawn = redraw(out, text, drawn)
        else:
            lines = text.splitlines()
            out.write("\n".join(lines if not printed_header else lines[1:]) + "\n")
            out.flush()
            printed_header = True


def _keep_latest(
    client: JobsClient, namespace: str, job_id: str, latest: dict[str, dict], active: set[str]
) -> None:
    """Keep `latest[job_id]` current, reconnecting while the job is active."""
    while job_id in active:
        try:
            for sample in client.metrics(namespace, job_id):
                if job_id not in active:
                    return
                latest[job_id] = sample
        except JobsApiError:
            pass
        time.sleep(1.0)
