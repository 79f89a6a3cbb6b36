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
* io_stream buffers: conv/depthwise line buffers (filt_height + 1 rows), pool line buffers;
  BRAM18 or LUTRAM per channel bank; and the FIFOs between the layers, at the depths the
  dataflow schedule asks for (:mod:`vecq_hw.hls.fifos`), one row "(fifos)".
* weights: on chip (above), or streamed from DDR (``weights`` {layer: 'offchip' | 'uram'},
  :mod:`vecq_hw.hls.offchip`): no ROM; an m_axi port; 'uram' a copy in UltraRAM. The DDR the
  streamed layers read per frame bounds the II (at the part's peak bandwidth) and is reported
  as a resource ('ddr': the share of the peak used at the design's frame rate).
* memory is reported per kind (weights, line buffers, FIFOs, AXI): :meth:`Estimate.memory`.
* FFs: accumulators (and a folded conv's hold copies), one register per product slot, and
  (io_parallel) every layer output.
* cycles per input: dense R (+ ceil(n_out / units) requant cycles when folded); conv: output
  pixels x 1 unfolded; folded, pixels x (R + requant cycles + 3), or where the hold registers
  pay (_ConvMapping.overlap_pays) per output row (vecq_fold_row) its pixels x R + requant
  cycles + 3, a pixel requantised during the next one's products (+ reading the input in
  io_stream). Loop trips, not co-simulation.
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
from ..costs import MEMORY_KINDS, LayerEstimate, charge_memory, charge_ram, prefers_uram
from ..fifos import plan_fifos
from ..folding import check_reuse, check_reuse_names, is_weighted, streamed_plan
from ..mappings import Mapping
from ..mappings_da import mapping_for
from ..options import DEFAULTS as HLS_DEFAULTS
from ..options import HlsOptions
from ..packs import resolve_packs
from .packed import packed_layers
from .parts import RESOURCES, Part, get_part


@dataclass
class Estimate:
    model: str
    part: Part
    io_type: str
    clock_period: float
    layers: list[LayerEstimate] = field(default_factory=list)  # one per layer of the model, in order
    #: the io_stream FIFOs between the layers (a row of their own; None in io_parallel)
    fifos: LayerEstimate | None = None
    #: {layer: values per token} of the io_stream tensors sliced narrower than a pixel (:mod:`.packed`)
    packs: dict = field(default_factory=dict)

    def rows(self) -> list[LayerEstimate]:
        """The layers, then the FIFO row: everything the totals sum."""
        return self.layers + ([self.fifos] if self.fifos is not None else [])

    @property
    def design(self) -> str:
        """What this estimate describes, in one line (it is not the RTL design of `vecq-hw rtl`)."""
        return (f"HLS design (hls4ml + vecq kernels, {self.io_type}): convolutions one output pixel at a time, each "
                "weighted layer's products folded by its R (R = 1: all of a pixel's or vector's products in "
                "parallel); not the fully unrolled da4ml RTL of `vecq-hw rtl`/`synth`")

    def total(self, what: str) -> float:
        return sum(getattr(lyr, what) for lyr in self.rows())

    @property
    def ddr_bytes(self) -> float:
        """Bytes the streamed layers read from DDR per frame."""
        return self.total("ddr_bytes")

    @property
    def ddr_cycles(self) -> int:
        """Cycles per frame the DDR needs for them at the part's peak bandwidth (0: none read)."""
        if not self.ddr_bytes:
            return 0
        per_cycle = self.part.ddr_bytes_per_cycle(self.clock_period)
        return math.ceil(self.ddr_bytes / per_cycle) if per_cycle else 2**62

    @property
    def ii(self) -> int:
        """The slowest layer, or the DDR when it cannot deliver the streamed codes that fast."""
        return max(max(lyr.cycles for lyr in self.layers), self.ddr_cycles)

    @property
    def ddr_gbps(self) -> float:
        """DDR bandwidth used at this design's frame rate (GB/s)."""
        return self.ddr_bytes * self.fps / 1e9

    def memory(self) -> dict[str, dict]:
        """{kind: {'bits', 'bram18', 'uram', 'luts'}} summed over the layers (MEMORY_KINDS)."""
        out = {k: {"bits": 0, "bram18": 0, "uram": 0, "luts": 0.0} for k in MEMORY_KINDS}
        for lyr in self.rows():
            for kind, m in lyr.memory.items():
                for key, v in m.items():
                    out[kind][key] += v
        return out

    @property
    def latency(self) -> int:
        return sum(lyr.latency for lyr in self.layers)

    @property
    def fps(self) -> float:
        return 1e9 / (self.clock_period * self.ii)

    def totals(self) -> dict[str, float]:
        return {r: self.total(r) for r in RESOURCES}

    def utilisation(self) -> dict[str, float]:
        """Share of each part resource, and of its peak DDR bandwidth ('ddr', when any is read)."""
        t = self.totals()
        out = {r: (t[r] / getattr(self.part, r) if getattr(self.part, r) else (math.inf if t[r] else 0.0))
               for r in RESOURCES}
        if self.ddr_bytes:
            per_cycle = self.part.ddr_bytes_per_cycle(self.clock_period)
            out["ddr"] = self.ddr_bytes / (per_cycle * self.ii) if per_cycle else math.inf
        return out

    def fits(self, headroom: float = 1.0) -> bool:
        return all(u <= headroom for u in self.utilisation().values())

    def reuse(self) -> dict[str, int]:
        return {lyr.name: lyr.reuse for lyr in self.layers if lyr.reuse}

    def weights(self) -> dict[str, str]:
        """{layer: mode} of the layers whose codes are not on chip."""
        return {lyr.name: lyr.weights for lyr in self.layers if lyr.weights != "onchip"}

    def to_dict(self) -> dict:
        return {"model": self.model, "design": self.design, "part": self.part.name, "io_type": self.io_type,
                "clock_period_ns": self.clock_period, "ii_cycles": self.ii, "latency_cycles": self.latency,
                "fps": self.fps, "totals": self.totals(), "utilisation": self.utilisation(),
                "ddr_bytes_per_frame": self.ddr_bytes, "ddr_gbps": self.ddr_gbps, "weights": self.weights(),
                "packs": dict(self.packs),
                "memory": self.memory(), "layers": [asdict(lyr) for lyr in self.rows()]}


def layer_estimate(mapping: Mapping, node: ir.Node, reuse: int, io_type: str, streamed=None):
    e = mapping.estimate(node, reuse, io_type) if streamed is None else mapping.estimate(node, reuse, io_type,
                                                                                         weights=streamed)
    if e is None:
        raise VecQError(f"layer '{node.layer.name}': kind '{node.layer.kind}' has an HLS mapping but no estimate "
                        "(its Mapping.estimate gives none)")
    return e


def fifo_estimate(model: ir.Model, part: Part, packs: dict | None = None, memo: dict | None = None) -> LayerEstimate:
    """The io_stream FIFOs between the layers at their scheduled depths, as one row '(fifos)': a
    register when 1 deep, a shift register (one SRL32 LUT per bit, an output register) up to 32
    deep, else a RAM (UltraRAM where the part has it and that takes less silicon, as the project
    writer binds it). A token is a whole pixel (hls4ml's io_stream packs every channel; a vector is
    one token), so wide layers have wide FIFOs, unless ``packs`` slices it (:mod:`vecq_hw.hls.packs`).
    ``memo``: :func:`~vecq_hw.hls.fifos.plan_fifos`'s, kept by a caller that plans many packs."""
    e = LayerEstimate("(fifos)", "fifos", cycles=1, latency=0)
    for f in plan_fifos(model, packs=packs, memo=memo):
        if f.depth <= 32:
            charge_memory(e, "fifos", f.bits, luts=f.width if f.depth > 1 else 0)
            e.ffs += f.width
        else:
            charge_ram(e, "fifos", 1, f.depth, f.width, uram=part.uram > 0 and prefers_uram(f.depth, f.width))
    return e


def estimate(model: ir.Model, reuse: dict[str, int] | None = None, *, default_reuse: int = 1, part=None,
             clock_period: float = 5.0, io_type: str = "io_parallel", weights: dict[str, str] | None = None,
             fifos: LayerEstimate | None = None, strategy: str = HLS_DEFAULTS.strategy,
             da_max_products: int = HLS_DEFAULTS.da_max_products, packs: dict | None = None) -> Estimate:
    """Per-layer and total resources, II and latency of the HLS design with this folding and
    weight placement (``weights`` {layer: 'onchip' | 'offchip' | 'uram'}). ``fifos``: the FIFO
    row, when the caller has it already (it depends on the model and the packs only).
    ``packs`` {layer: k}: io_stream tensors sliced to k channels a token (:mod:`vecq_hw.hls.packs`).

    ``strategy='distributed_arithmetic'``: the layers it builds from da4ml's adder graph
    (R = 1, codes on chip, :mod:`vecq_hw.hls.da`) are charged da4ml's own LUT estimate of that graph."""
    reuse = dict(reuse or {})
    p = part if isinstance(part, Part) else get_part(part)
    check_clock_period(clock_period)
    if io_type not in ("io_parallel", "io_stream"):
        raise VecQError(f"expected io_parallel or io_stream, got {io_type!r}", field="io_type")
    nodes = model.nodes()
    mappings = [mapping_for(node) for node in nodes]  # a kind without one: one line naming the layer
    check_reuse_names(model, reuse)
    plan = {n.layer.name: check_reuse(n, int(reuse.get(n.layer.name, default_reuse))) for n in nodes if is_weighted(n)}
    streamed = streamed_plan(model, plan, dict(weights or {}), io_type=io_type, part=p)
    opts = HlsOptions(strategy=strategy, reuse=plan, reuse_factor=default_reuse, da_max_products=da_max_products,
                      weights=dict(weights or {}))
    est = Estimate(model.name, p, io_type, float(clock_period))
    for node, mapping in zip(nodes, mappings):
        name = node.layer.name
        mapping = mapping_for(node, opts) if name in plan and name not in streamed else mapping
        est.layers.append(layer_estimate(mapping, node, plan.get(name, 0), io_type, streamed.get(name)))
    if packs and io_type != "io_stream":
        raise VecQError("expected no packs in io_parallel (packs are io_stream tokens)", field="packs")
    if io_type == "io_stream":
        est.packs = resolve_packs(model, packs)
        est.layers = packed_layers(model, est.layers, est.packs)
        est.fifos = fifos if fifos is not None else fifo_estimate(model, p, est.packs)
    return est


__all__ = ["Estimate", "LayerEstimate", "estimate", "fifo_estimate", "layer_estimate"]
