"""The server's GPU pool: which devices jobs may have, and which job has each one now.

`hfuv server --gpus all|none|0,1,...` (env HFUV_SERVER_GPUS): `all`, the default, is every GPU
`nvidia-smi -L` lists (none without nvidia-smi); a declared list is used as given, and checked
against nvidia-smi's when it lists any. A GPU job gets its flavor's number of devices, its alone,
until it ends. Ids are what CUDA_VISIBLE_DEVICES, CDI (`nvidia.com/gpu=ID`) and docker's
`--gpus device=ID` all take: an index, or a `GPU-…`/`MIG-…` UUID.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

from hfuv.errors import UsageError

_LISTED = re.compile(r"^GPU (\d+): (.*?)(?: \(UUID: (\S+)\))?$")
_ID = re.compile(r"^(\d+|GPU-[0-9A-Za-z-]+|MIG-[0-9A-Za-z/-]+)$")
_HINT = "give all, none, or GPU ids as nvidia-smi -L numbers them, e.g. 0,1"


@dataclass(frozen=True)
class Gpu:
    id: str
    model: str = ""  # as nvidia-smi names it; empty for a declared GPU it does not list
    uuid: str = ""


def _nvidia_smi(*args: str) -> str | None:
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        done = subprocess.run([binary, *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def detect() -> list[Gpu]:
    """The GPUs `nvidia-smi -L` lists (none when it is missing or fails)."""
    found = []
    for line in (_nvidia_smi("-L") or "").splitlines():
        match = _LISTED.match(line.strip())
        if match:
            found.append(Gpu(match[1], match[2], match[3] or ""))
    return found


def pool_from_option(value: str) -> GpuPool:
    """The pool `--gpus VALUE` names; a usage error (one line) for anything else."""
    value = value.strip()
    if value == "none":
        return GpuPool([], declared=True)
    listed = detect()
    if value == "all":
        return GpuPool(listed, declared=False)
    ids = [item.strip() for item in value.split(",")]
    for item in ids:
        if not _ID.match(item):
            raise UsageError(f"--gpus {value}: {item!r} is not a GPU id", hint=_HINT)
    if len(set(ids)) != len(ids):
        raise UsageError(f"--gpus {value}: a GPU is listed twice", hint=_HINT)
    known = {key: gpu for gpu in listed for key in (gpu.id, gpu.uuid) if key}
    if listed:
        missing = [item for item in ids if item not in known]
        if missing:
            raise UsageError(
                f"--gpus {value}: this machine has no GPU {', '.join(missing)} "
                f"(nvidia-smi -L lists {', '.join(gpu.id for gpu in listed)})",
                hint=_HINT,
            )
    return GpuPool([known.get(item, Gpu(item)) for item in ids], declared=True)


class GpuPool:
    """The GPUs jobs may have, and which job holds each. Not thread-safe: the executor locks."""

    def __init__(self, gpus: Sequence[Gpu], *, declared: bool) -> None:
        self.gpus = list(gpus)
        self.declared = declared
        self._holder: dict[str, str] = {}  # GPU id → job id

    @property
    def size(self) -> int:
        return len(self.gpus)

    def free(self) -> list[str]:
        return [gpu.id for gpu in self.gpus if gpu.id not in self._holder]

    def holders(self) -> list[str]:
        """The jobs that hold GPUs now, each once, in the pool's order."""
        return list(dict.fromkeys(self._holder[g.id] for g in self.gpus if g.id in self._holder))

    def held_by(self, job_id: str) -> tuple[str, ...]:
        return tuple(gpu for gpu, holder in self._holder.items() if holder == job_id)

    def take(self, job_id: str, count: int) -> tuple[str, ...] | None:
        """`count` free GPUs for `job_id` (the lowest first), or None when fewer are free."""
        free = self.free()
        if len(free) < count:
            return None
        chosen = tuple(free[:count])
        for gpu in chosen:
            self._holder[gpu] = job_id
        return chosen

    def hold(self, job_id: str, ids: Sequence[str]) -> None:
        """Give `job_id` these GPUs again (a job re-attached after a restart); ids no longer in
        the pool are skipped."""
        for gpu in self.gpus:
            if gpu.id in ids:
                self._holder[gpu.id] = job_id

    def release(self, job_id: str) -> None:
        for gpu in self.held_by(job_id):
            del self._holder[gpu]

    def describe(self) -> str:
        """For the start-up message: `GPUs: 0 (Tesla T4), 1 (Tesla T4)`."""
        if not self.gpus:
            how = "--gpus none" if self.declared else "nvidia-smi found none"
            return f"GPUs: none ({how}; GPU flavors are refused)"
        names = ", ".join(f"{gpu.id} ({gpu.model or 'declared'})" for gpu in self.gpus)
        return f"GPUs: {names}"


_QUERY = "index,uuid,utilization.gpu,memory.used,memory.total"


def metrics(ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """The metrics event's `gpus` field for these GPUs: from nvidia-smi, zeros without it."""
    result = {gpu: {"utilization": 0, "memory_used_bytes": 0, "memory_total_bytes": 0}
              for gpu in ids}  # fmt: skip
    if not ids:
        return result
    out = _nvidia_smi(f"--query-gpu={_QUERY}", "--format=csv,noheader,nounits", "-i", ",".join(ids))
    for line in (out or "").splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 5:
            continue
        index, uuid, utilization, used_mib, total_mib = fields
        gpu = index if index in result else uuid if uuid in result else None
        if gpu is None:
            continue
        try:
            result[gpu] = {
                "utilization": int(float(utilization)),
                "memory_used_bytes": int(float(used_mib) * 1024**2),
                "memory_total_bytes": int(float(total_mib) * 1024**2),
            }
        except ValueError:  # "[N/A]" on some boards
            continue
    return result
