"""What a job's flavor asks of this server: its limits, whether it can ever run, what it waits for.

The rules (the executor's dispatch applies them):
- GPUs gate: a GPU job starts only with its flavor's number of GPUs free, and holds them alone.
  A flavor with more GPUs than the pool has is refused at create (400).
- CPU and memory cap, they do not gate: the flavor's CPUs and memory become the job's limits,
  capped at what the host has. Hugging Face sizes flavors for machines of their own (cpu-basic is
  2 vCPU / 16 GiB); reserving them here would let one cpu-basic job fill a small box and leave the
  rest of the queue waiting on nothing. How many jobs share the host is `--max-parallel`'s call.
- FIFO: jobs start in the order they were created. A job behind one that waits for GPUs may pass
  it only if it needs no GPU: free GPUs are kept for the oldest GPU job waiting, so a big GPU job
  is never starved by smaller ones created after it.
"""

from __future__ import annotations

from collections.abc import Callable

from hfuv.flavors import Flavor
from hfuv.runtime import Capacity
from hfuv.runtime.gpus import GpuPool


def _gpus(count: int) -> str:
    return f"{count} GPU{'s' if count != 1 else ''}"


def _gib(size: float) -> str:
    return f"{size / 1024**3:.1f}".removesuffix(".0") + " GiB"


def refusal(flavor: Flavor, pool: GpuPool) -> str | None:
    """Why a job of `flavor` can never run on this server, or None when it can."""
    if flavor.gpu_count <= pool.size:
        return None
    if not pool.size:
        return (f"flavor {flavor.name} needs {_gpus(flavor.gpu_count)}; this server has none; "
                "choose a CPU flavor, or a server with GPUs (hfuv server --gpus)")  # fmt: skip
    return (f"flavor {flavor.name} needs {_gpus(flavor.gpu_count)}; this server has "
            f"{pool.size}; choose a flavor with at most {_gpus(pool.size)}")  # fmt: skip


def limits(flavor: Flavor, capacity: Capacity) -> tuple[float, int, str]:
    """The job's CPU and memory limits, and how the status message says them:
    `limits: 2 CPUs, 16 GiB capped to 1.5 GiB (this host)`."""
    cpus, memory = float(flavor.cpu_cores), flavor.ram_gb * 1024**3
    cpu_text, memory_text = f"{cpus:g} CPUs", _gib(memory)
    if capacity.cpus and cpus > capacity.cpus:
        cpus = capacity.cpus
        cpu_text += f" capped to {cpus:g} (this host)"
    if capacity.memory_bytes and memory > capacity.memory_bytes:
        memory = capacity.memory_bytes
        memory_text += f" capped to {_gib(memory)} (this host)"
    return cpus, memory, f"limits: {cpu_text}, {memory_text}"


def shape(cpus: float, memory: float, flavor: Flavor) -> str:
    """`2 CPUs, 16 GiB memory` (and the flavor's GPUs): what a cluster reserves for a job."""
    text = f"{cpus:g} CPUs, {_gib(memory)} memory"
    return text + (f", {_gpus(flavor.gpu_count)}" if flavor.gpu_count else "")


def gpu_wait(need: int, pool: GpuPool, kept_for: str | None, visible: Callable[[str], bool]) -> str:
    """What a GPU job waits for: `Waiting for 1 GPU: 0 of 1 free (job ID uses it)`; only jobs
    `visible` to the waiting job's owner are named (others' ids are theirs)."""
    free = len(pool.free())
    text = f"Waiting for {_gpus(need)}: {free} of {pool.size} free"

    def named(job_id: str) -> str:
        return f"job {job_id}" if visible(job_id) else "a job of another namespace"

    if kept_for is not None:
        return f"{text}, kept for {named(kept_for)}, created earlier"
    holders = pool.holders()
    if not holders:
        return text
    if len(holders) == 1:
        who = f"{named(holders[0])} uses"
    else:
        names = [named(h) for h in holders]
        shown = [n for n in names if n.startswith("job ")]
        others = len(names) - len(shown)
        who = "jobs " + ", ".join(n[4:] for n in shown) if shown else ""
        if others:
            who += f"{' and ' if shown else ''}{others} job{'s' * (others > 1)} of other namespaces"
        who += " use"
    return f"{text} ({who} {'it' if pool.size - free == 1 else 'them'})"


def slot_wait(running: int, max_parallel: int) -> str:
    return f"Waiting for a free slot: {running} of {max_parallel} jobs running (--max-parallel)"
