"""Plain-text tables and summaries for jobs, hardware and metrics."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, TextIO

from hfuv.flavors import Flavor
from hfuv.terminal import safe_field


def redraw(stream: TextIO, text: str, drawn: int) -> int:
    """Write `text` over the `drawn` lines written last (a live view on a terminal); → the
    number of lines now drawn, for the next call."""
    stream.write("\x1b[F\x1b[2K" * drawn + text + "\n")
    stream.flush()
    return text.count("\n") + 1


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Aligned columns; each cell on one line, its control characters shown, not obeyed (job
    names, messages and labels are anyone's text)."""
    rows = [[safe_field(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(headers)]  # fmt: skip
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return "\n".join(lines)


def short_command(job: dict[str, Any], width: int = 40) -> str:
    command = job.get("command") or []
    if len(command) >= 3 and command[1] == "-c" and "hfuv bootstrap" in command[2]:
        env = job.get("environment") or {}
        shown = ["hfuv:", env.get("HFUV_SCRIPT", "script"), *command[3:]]
    else:
        shown = [*command, *(job.get("arguments") or [])]
    text = " ".join(shown)
    return text if len(text) <= width else text[: width - 1] + "…"


def age(iso: str | None) -> str:
    if not iso:
        return "-"
    try:
        moment = datetime.strptime(iso.replace("Z", "+0000")[:19] + "+0000",
                                   "%Y-%m-%dT%H:%M:%S%z")  # fmt: skip
    except ValueError:
        return iso
    seconds = int((datetime.now(timezone.utc) - moment).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{max(seconds, 0)}s ago"


def jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows = [
        [
            job["id"],
            (job.get("labels") or {}).get("name", "-"),
            job.get("dockerImage") or job.get("spaceId") or "-",
            short_command(job),
            age(job.get("createdAt")),
            job["status"]["stage"],
        ]
        for job in jobs
    ]
    return table(["JOB ID", "NAME", "IMAGE", "COMMAND", "CREATED", "STATUS"], rows)


def job_summary(job: dict[str, Any], url: str) -> str:
    status = job["status"]
    durations = job.get("durations") or {}
    lines = [
        ("id", f"{job['owner']['name']}/{job['id']}"),
        ("name", (job.get("labels") or {}).get("name", "-")),
        ("status", status["stage"] + (f": {status['message']}" if status.get("message") else "")),
        ("exit code", str(status.get("exitCode", "-"))),
        ("image", job.get("dockerImage") or job.get("spaceId") or "-"),
        ("command", short_command(job, 100)),
        ("flavor", job.get("flavor") or "-"),
        ("created", job.get("createdAt") or "-"),
        ("running", f"{durations.get('runningSecs') or 0}s"),
        ("labels", ", ".join(f"{k}={v}" for k, v in (job.get("labels") or {}).items()) or "-"),
        ("secrets", ", ".join(job.get("secrets") or []) or "-"),
        ("url", url),
    ]
    lines += [("exposed", exposed) for exposed in status.get("exposeUrls") or []]
    return "\n".join(f"{key:<10}{safe_field(value)}" for key, value in lines)


def hardware_table(items: list[dict[str, Any]]) -> str:
    rows = []
    for item in items:
        accelerator = item.get("accelerator")
        gpu = (f"{accelerator['quantity']}x {accelerator['model']} ({accelerator['vram']})"
               if accelerator else "-")  # fmt: skip
        per_hour = float(item.get("unitCostUSD") or 0) * 60
        rows.append([item["name"], item.get("prettyName", ""), item.get("cpu", ""),
                     item.get("ram", ""), gpu, f"{per_hour:.2f}"])  # fmt: skip
    return table(["NAME", "PRETTY NAME", "CPU", "RAM", "ACCELERATOR", "$/HOUR"], rows)


def catalog_as_api(flavors: list[Flavor]) -> list[dict[str, Any]]:
    """The built-in catalog in the shape of GET /api/jobs/hardware."""
    items = []
    for flavor in flavors:
        per_minute = flavor.usd_per_hour / 60
        accelerator = None
        if flavor.is_gpu:
            accelerator = {"type": "gpu", "model": flavor.gpu_model,
                           "quantity": str(flavor.gpu_count), "vram": f"{flavor.vram_gb} GB",
                           "manufacturer": "Nvidia"}  # fmt: skip
        items.append({
            "name": flavor.name, "prettyName": flavor.pretty_name,
            "cpu": f"{flavor.cpu_cores} vCPU", "ram": f"{flavor.ram_gb} GB",
            "ephemeralStorage": f"{flavor.disk_gb} GB", "accelerator": accelerator,
            "unitCostMicroUSD": round(per_minute * 1_000_000),
            "unitCostUSD": round(per_minute, 6), "unitLabel": "minute",
        })  # fmt: skip
    return items


def schedules_table(items: list[dict[str, Any]]) -> str:
    def utc(iso: str | None) -> str:
        return iso[:16].replace("T", " ") + " UTC" if iso else "-"

    rows = []
    for item in items:
        spec = item.get("jobSpec") or {}
        last = (item.get("status") or {}).get("lastJob") or {}
        rows.append([
            item["id"], (spec.get("labels") or {}).get("name", "-"), item["schedule"],
            short_command(spec, 30), utc((item.get("status") or {}).get("nextJobRunAt")),
            f"{utc(last.get('at'))} ({last['id']})" if last else "-",
            "yes" if item.get("suspend") else "no",
        ])  # fmt: skip
    return table(["ID", "NAME", "SCHEDULE", "COMMAND", "NEXT RUN", "LAST RUN", "SUSPENDED"], rows)
