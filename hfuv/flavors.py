"""The Hugging Face Jobs hardware catalog: names, specs, prices, and the worst-case cost of a run.

Figures are the published ones (https://huggingface.co/docs/hub/jobs-pricing). The live catalog
comes from `GET /api/jobs/hardware`; this built-in copy is what hfuv uses without a network.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from hfuv.errors import ConfigError

DEFAULT_FLAVOR = "cpu-basic"


@dataclass(frozen=True)
class Flavor:
    name: str
    pretty_name: str
    cpu_cores: int
    ram_gb: int
    disk_gb: int
    usd_per_hour: float
    gpu_model: str = ""
    gpu_count: int = 0
    vram_gb: int = 0

    @property
    def is_gpu(self) -> bool:
        return self.gpu_count > 0

    @property
    def accelerator(self) -> str:
        """The job's `ACCELERATOR` variable: the flavor name on GPUs, empty on CPUs."""
        return self.name if self.is_gpu else ""

    @property
    def memory(self) -> str:
        """The job's `MEMORY` variable, e.g. `16Gi`."""
        return f"{self.ram_gb}Gi"

    def describe(self) -> str:
        gpu = f", {self.gpu_count}x {self.gpu_model} ({self.vram_gb} GB)" if self.is_gpu else ""
        return f"{self.pretty_name}: {self.cpu_cores} vCPU, {self.ram_gb} GB RAM{gpu}"


def _cpu(name: str, pretty: str, cpu: int, ram: int, disk: int, price: float) -> Flavor:
    return Flavor(name, pretty, cpu, ram, disk, price)


def _gpu(
    name: str, pretty: str, cpu: int, ram: int, disk: int, model: str, count: int, vram: int,
    price: float,
) -> Flavor:  # fmt: skip
    return Flavor(name, pretty, cpu, ram, disk, price, model, count, vram)


CATALOG: dict[str, Flavor] = {
    f.name: f
    for f in (
        _cpu("cpu-basic", "CPU Basic", 2, 16, 50, 0.01),
        _cpu("cpu-upgrade", "CPU Upgrade", 8, 32, 50, 0.03),
        _cpu("cpu-performance", "CPU Performance", 32, 256, 1024, 1.90),
        _cpu("cpu-xl", "CPU XL", 16, 124, 1000, 1.00),
        _gpu("t4-small", "Nvidia T4 - small", 4, 15, 50, "T4", 1, 16, 0.40),
        _gpu("t4-medium", "Nvidia T4 - medium", 8, 30, 100, "T4", 1, 16, 0.60),
        _gpu("l4x1", "1x Nvidia L4", 8, 30, 400, "L4", 1, 24, 0.80),
        _gpu("l4x4", "4x Nvidia L4", 48, 186, 3200, "L4", 4, 96, 3.80),
        _gpu("l40sx1", "1x Nvidia L40S", 8, 62, 380, "L40S", 1, 48, 1.80),
        _gpu("l40sx4", "4x Nvidia L40S", 48, 382, 3200, "L40S", 4, 192, 8.30),
        _gpu("l40sx8", "8x Nvidia L40S", 192, 1534, 6500, "L40S", 8, 384, 23.50),
        _gpu("a10g-small", "Nvidia A10G - small", 4, 15, 110, "A10G", 1, 24, 1.00),
        _gpu("a10g-large", "Nvidia A10G - large", 12, 46, 200, "A10G", 1, 24, 1.50),
        _gpu("a10g-largex2", "2x Nvidia A10G - large", 24, 92, 1000, "A10G", 2, 48, 3.00),
        _gpu("a10g-largex4", "4x Nvidia A10G - large", 48, 184, 2000, "A10G", 4, 96, 5.00),
        _gpu("a100-large", "Nvidia A100 - large", 12, 142, 1000, "A100", 1, 80, 2.50),
        _gpu("a100x4", "4x Nvidia A100", 48, 568, 4000, "A100", 4, 320, 10.00),
        _gpu("a100x8", "8x Nvidia A100", 96, 1136, 8000, "A100", 8, 640, 20.00),
        _gpu("h200", "Nvidia H200", 23, 256, 3000, "H200", 1, 141, 5.00),
        _gpu("h200x2", "2x Nvidia H200", 46, 512, 6000, "H200", 2, 282, 10.00),
        _gpu("h200x4", "4x Nvidia H200", 92, 1024, 12000, "H200", 4, 564, 20.00),
        _gpu("h200x8", "8x Nvidia H200", 184, 2048, 24000, "H200", 8, 1128, 40.00),
        _gpu("rtx-pro-6000", "Nvidia RTX PRO 6000", 23, 256, 475, "RTX PRO 6000", 1, 96, 2.75),
        _gpu(
            "rtx-pro-6000x2", "2x Nvidia RTX PRO 6000", 46, 512, 950, "RTX PRO 6000", 2, 192, 5.50
        ),
        _gpu(
            "rtx-pro-6000x4",
            "4x Nvidia RTX PRO 6000",
            92,
            1024,
            1900,
            "RTX PRO 6000",
            4,
            384,
            11.00,
        ),
        _gpu(
            "rtx-pro-6000x8",
            "8x Nvidia RTX PRO 6000",
            184,
            2048,
            3800,
            "RTX PRO 6000",
            8,
            768,
            22.00,
        ),
    )
}


def get_flavor(name: str, *, origin: str = "--flavor") -> Flavor:
    """The flavor called `name`: built in, or listed by an endpoint hfuv has asked (so a flavor
    added after this release works once `hfuv hardware` or a submission has seen it); else fail
    with the closest names."""
    flavor = CATALOG.get(name)
    if flavor is not None:
        return flavor
    learned = endpoint_flavors()
    if name in learned:
        return learned[name]
    names = list(dict.fromkeys([*CATALOG, *learned]))  # an endpoint lists the built-in ones too
    typed = name.strip().lower()
    close = [known for known in names if known.lower() == typed or known.startswith(typed)][:3]
    close = close or difflib.get_close_matches(typed, names, n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "run `hfuv hardware` for the list"
    raise ConfigError(f"unknown flavor {name!r} (from {origin})", hint=hint)


def endpoint_flavors() -> dict[str, Flavor]:
    """Flavors from the hardware lists of the endpoints hfuv has asked (cached by `costs`)."""
    import json

    from hfuv.cache import cache_dir

    found: dict[str, Flavor] = {}
    folder = cache_dir() / "hardware"
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            items = json.loads(path.read_text()).get("hardware") or []
        except (OSError, ValueError, AttributeError):
            continue
        for item in items:
            flavor = flavor_from_api(item)
            if flavor is not None:
                found.setdefault(flavor.name, flavor)
    return found


def flavor_from_api(item: object) -> Flavor | None:
    """A `GET /api/jobs/hardware` item as a Flavor; None when it does not have that shape."""
    try:
        assert isinstance(item, dict)
        accelerator = item.get("accelerator") or {}
        return Flavor(
            name=str(item["name"]),
            pretty_name=str(item.get("prettyName") or item["name"]),
            cpu_cores=_leading_int(item.get("cpu")),
            ram_gb=_leading_int(item.get("ram")),
            disk_gb=_leading_int(item.get("ephemeralStorage")),
            usd_per_hour=round(float(item["unitCostUSD"]) * 60, 4),
            gpu_model=str(accelerator.get("model") or ""),
            gpu_count=_leading_int(accelerator.get("quantity")),
            vram_gb=_leading_int(accelerator.get("vram")),
        )
    except (AssertionError, KeyError, TypeError, ValueError, AttributeError):
        return None


def _leading_int(text: object) -> int:
    """`"8 vCPU"` → 8, `"46 GB"` → 46, `2` → 2; 0 when absent or not a number."""
    words = str(text or "").split()
    try:
        return int(float(words[0])) if words else 0
    except ValueError:
        return 0


def format_duration(seconds: int) -> str:
    if seconds % 86400 == 0:
        return f"{seconds // 86400}d"
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds % 60 == 0:
        return f"{seconds // 60}m"
    return f"{seconds}s"
