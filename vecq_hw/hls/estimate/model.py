"""Resource and latency estimate of the HLS design for an integer model, before any synthesis.

Each layer's cost comes from its kind's mapping (``Mapping.estimate`` in :mod:`vecq_hw.hls.mappings`,
built from the primitives in :mod:`vecq_hw.hls.costs`); a kind with no mapping, or whose mapping
gives no estimate, is refused with one line naming the layer, never guessed. The built-in kinds:

Per weighted layer with P products per input and reuse factor R (:mod:`vecq_hw.hls.folding`):

* product LUTs = (P / R) * min(var(k, w), R * const(k, w)): each of the P / R product slots is
  either a general k x w multiplier fed from the weight ROM (var) or, when cheaper, the R
  constant products it serves (const; R = 1 is the unfolded layer, all constants). const and var
  are the LUTs per product (with its share of the adder tree) calibrated on yosys synth_xilinx
  mappings (``configs/hardware/lut_calibration.yaml``, :mod:`.calibrate`); w = input bits, k = weight
  bits. Layers bound to DSPs (multiplier 'dsp') use one DSP per slot instead.
* requantisation (acc * s + b): ceil(n_out / R) units, each ceil(acc/25) * ceil(scale/18) DSPs.
* weight ROM (R > 1, when the slots are multipliers; constants need none): one ROM of R words of
  (P / R) x k bits (ARRAY_RESHAPE); BRAM18 (best aspect ratio) when R >= 64 and it holds >= 4 Kb,
  else LUTRAM (one LUT per bit per 64 words).
* io_stream buffers: conv/depthwise line buffers (filt_height + 1 rows), hls4ml's pool line
  buffers, whole frames for our other pools; BRAM18 or LUTRAM per channel bank.
* FFs: accumulators, one register per product slot, and (io_parallel) every layer output.
* cycles per input: dense R (+ ceil(n_out / units) requant cycles when folded); conv: output
  pixels x (1 unfolded | R + requant cycles + 3 folded) (+ reading the input in io_stream).
  The layers overlap as a dataflow pipeline: II = the slowest layer, latency = the sum.
Non-weighted layers are charged a crude 0.5 LUT per bit they touch in parallel.
The numbers are a pre-synthesis guide (how far to trust them: README, benchmarks/estimate.py),
not a Vivado report.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from ... import ir
from ...errors import VecQError
from ...names import check_clock_period
from ..costs import LayerEstimate
from ..folding import check_reuse, check_reuse_names, is_weighted
from ..mappings import Mapping
from ..mappings_da import mapping_for
from ..options import DEFAULTS as HLS_DEFAULTS
from ..options import HlsOptions
from .parts import RESOURCES, Part, get_part


@dataclass
class Estimate:
    model: str
    part: Part
    io_type: str
    clock_period: float
    layers: list[LayerEstimate] = field(default_factory=list)

    @property
    def design(self) -> str:
        """What this estimate describes, in one line (it is not the RTL design of `vecq-hw rtl`)."""
        return (f"HLS design (hls4ml + vecq kernels, {self.io_type}): convolutions one output pixel at a time, each "
                "weighted layer's products folded by its R (R = 1: all of a pixel's or vector's products in "
                "parallel); not the fully unrolled da4ml RTL of `vecq-hw rtl`/`synth`")

    def total(self, what: str) -> float:
        return sum(getattr(lyr, what) for lyr in self.layers)

    @property
    def ii(self) -> int:
        return max(lyr.cycles for lyr in self.layers)

    @property
    def latency(self) -> int:
        return sum(lyr.latency for lyr in self.layers)

    @property
    def fps(self) -> float:
        return 1e9 / (self.clock_period * self.ii)

    def totals(self) -> dict[str, float]:
        return {r: self.total(r) for r in RESOURCES}

    def utilisation(self) -> dict[str, float]:
        t = self.totals()
        return {r: (t[r] / getattr(self.part, r) if getattr(self.part, r) else (math.inf if t[r] else 0.0))
                for r in RESOURCES}

    def fits(self, headroom: float = 1.0) -> bool:
        return all(u <= headroom for u in self.utilisation().values())

    def reuse(self) -> dict[str, int]:
        return {lyr.name: lyr.reuse for lyr in self.layers if lyr.reuse}

    def to_dict(self) -> dict:
        return {"model": self.model, "design": self.design, "part": self.part.name, "io_type": self.io_type,
                "clock_period_ns": self.clock_period, "ii_cycles": self.ii, "latency_cycles": self.latency,
                "fps": self.fps, "totals": self.totals(), "utilisation": self.utilisation(),
                "layers": [asdict(lyr) for lyr in self.layers]}


def _layer_estimate(mapping: Mapping, node: ir.Node, reuse: int, io_type: str):
    e = mapping.estimate(node, reuse, io_type)
    if e is None:
        raise VecQError(f"layer '{node.layer.name}': kind '{node.layer.kind}' has an HLS mapping but no estimate "
                        "(its Mapping.estimate gives none)")
    return e


def estimate(model: ir.Model, reuse: dict[str, int] | None = None, *, default_reuse: int = 1, part=None,
             clock_period: float = 5.0, io_type: str = "io_parallel", strategy: str = HLS_DEFAULTS.strategy,
             da_max_products: int = HLS_DEFAULTS.da_max_products) -> Estimate:
    """Per-layer and total resources, II and latency of the HLS design with this folding.

    ``strategy='distributed_arithmetic'``: the layers it builds from da4ml's adder graph
    (R = 1, :mod:`vecq_hw.hls.da`) are charged da4ml's own LUT estimate of that graph."""
    reuse = dict(reuse or {})
    p = part if isinstance(part, Part) else get_part(part)
    check_clock_period(clock_period)
    if io_type not in ("io_parallel", "io_stream"):
        raise VecQError(f"expected io_parallel or io_stream, got {io_type!r}", field="io_type")
    nodes = model.nodes()
    check_reuse_names(model, reuse)
    # validated per layer (one line naming it); a kind without a mapping is refused here too
    rs = {node.layer.name: check_reuse(node, int(reuse.get(node.layer.name, default_reuse)))
          for node in nodes if is_weighted(node)}
    opts = HlsOptions(strategy=strategy, reuse=rs, reuse_factor=default_reuse, da_max_products=da_max_products)
    est = Estimate(model.name, p, io_type, float(clock_period))
    for node in nodes:
        est.layers.append(_layer_estimate(mapping_for(node, opts), node, rs.get(node.layer.name, 0), io_type))
    return est


__all__ = ["Estimate", "LayerEstimate", "estimate"]
