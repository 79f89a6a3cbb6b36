"""The FPGA parts table (``configs/hardware/parts.yaml``): resources of common devices, by name."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from ...errors import VecQError
from ...names import check_part

RESOURCES = ("luts", "ffs", "dsps", "bram18", "uram")


@dataclass(frozen=True)
class Part:
    name: str
    family: str
    luts: int
    ffs: int
    dsps: int
    bram18: int
    uram: int
    hls_part: str  # a full part name (package, speed grade) for the HLS project
    #: peak bandwidth (GB/s) of the board DDR the kernel reads off-chip weights from; None: no off-chip weights
    ddr_gbps: float | None = None
    #: width of one AXI master port of the kernel (bits); one word per cycle per off-chip layer
    axi_bits: int | None = None

    @property
    def has_ddr(self) -> bool:
        return bool(self.ddr_gbps) and bool(self.axi_bits)

    def ddr_bytes_per_cycle(self, clock_period_ns: float) -> float:
        """Peak DDR bytes per kernel clock cycle (0 without DDR)."""
        return float(self.ddr_gbps or 0.0) * clock_period_ns

    def budget(self, headroom: float) -> dict[str, float]:
        return {r: getattr(self, r) * headroom for r in RESOURCES}


@lru_cache(maxsize=1)
def load_parts() -> tuple[dict[str, Part], str]:
    import yaml

    from ...resources import CONFIG_DIR

    path = CONFIG_DIR / "hardware" / "parts.yaml"
    data = yaml.safe_load(path.read_text())
    parts = {}
    for name, d in data["parts"].items():
        try:
            parts[name] = Part(name=name, **d)
        except TypeError as exc:
            raise VecQError(f"part '{name}': {exc}", file=path, field="parts") from None
    return parts, str(data["default"])


def known_parts() -> list[str]:
    return sorted(load_parts()[0])


def default_part() -> str:
    return load_parts()[1]


def get_part(name: "str | Part | None") -> Part:
    """The table entry ``name`` starts with (``xc7z020clg400-1`` -> xc7z020); else one line listing them."""
    if isinstance(name, Part):
        return name
    parts, default = load_parts()
    key = check_part(name if name is not None else default).lower()
    for short in sorted(parts, key=len, reverse=True):
        if key.startswith(short):
            return parts[short]
    raise VecQError(f"unknown part '{name}': known parts are {', '.join(sorted(parts))} (configs/hardware/parts.yaml)",
                    field="part")
