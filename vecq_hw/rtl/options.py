"""Every option of the RTL back end, in one place."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from ..errors import VecQError
from ..names import check_clock_period, check_identifier, check_part

#: the HDL da4ml writes
FLAVORS = ("verilog", "vhdl")
#: parts whose yosys ``synth_xilinx -family`` we know, by name prefix (longest first)
FAMILIES = (("xc7", "xc7"), ("xczu", "xcup"), ("xcvu", "xcup"), ("xcku", "xcup"), ("xcau", "xcup"))


@dataclass(frozen=True)
class RtlOptions:
    """How ``vecq_hw.rtl`` traces, writes, simulates and synthesises a model.

    ``latency_cutoff``: da4ml's pipelining unit (its own adder-delay estimate); each pipeline
    stage holds at most this much delay, so the design has one register stage per step.
    ``<= 0`` writes one combinational block (no clock). ``max_adder_bits``: refuse models whose
    estimated size (``trace.estimate_adder_bits``) exceeds it: a fully unrolled conv over a big
    frame would otherwise trace for hours. ``hard_dc``: da4ml's delay constraint on each adder
    tree (-1: none). ``synth_dsp``: let yosys map wide adders to DSPs (default: LUTs + carry,
    since every product here is a constant shift-add).
    """

    flavor: str = "verilog"
    latency_cutoff: float = 5.0
    clock_period: float = 5.0
    part: str = "xc7z020clg400-1"
    project_name: str = "vecq_rtl"
    max_adder_bits: int = 3_000_000
    hard_dc: int = -1
    adder_size: int = 1
    carry_size: int = -1
    synth_dsp: bool = False
    synth_retime: bool = False

    def __post_init__(self):
        if self.flavor not in FLAVORS:
            raise VecQError(f"expected {' or '.join(FLAVORS)}, got {self.flavor!r}", field="flavor")
        check_identifier(self.project_name, "project_name", hdl=True)  # the top module, in Verilog/VHDL
        if not isinstance(self.max_adder_bits, int) or self.max_adder_bits < 1:
            raise VecQError(f"expected a positive integer, got {self.max_adder_bits!r}", field="max_adder_bits")
        check_clock_period(self.clock_period)  # written into the xdc/sdc constraints
        family(self.part)
        c = self.latency_cutoff
        if isinstance(c, bool) or not isinstance(c, (int, float)) or not math.isfinite(c):
            raise VecQError(f"expected a finite number, got {c!r}", field="latency_cutoff")
        for name in ("hard_dc", "adder_size", "carry_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise VecQError(f"expected an integer, got {v!r}", field=name)
        for name in ("synth_dsp", "synth_retime"):
            if not isinstance(getattr(self, name), bool):
                raise VecQError(f"expected true or false, got {getattr(self, name)!r}", field=name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RtlOptions":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def family(part: str) -> str:
    """yosys ``synth_xilinx -family`` for a Xilinx part name, or a one-line refusal."""
    p = check_part(part).lower()  # written into da4ml's Vivado/Quartus Tcl
    for prefix, fam in FAMILIES:
        if p.startswith(prefix):
            return fam
    raise VecQError(f"unknown Xilinx part {part!r}: expected a name starting with "
                    + ", ".join(p for p, _ in FAMILIES), field="part")


#: every option at its default (the CLI's defaults)
DEFAULTS = RtlOptions()
