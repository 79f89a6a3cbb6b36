"""Resource and latency estimate of the HLS design for an integer model, before any synthesis.

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
from functools import lru_cache

import numpy as np

from .. import ir
from ..errors import VecQError
from ..hls.folding import WEIGHTED_KINDS, check_reuse_names, check_reuse, inputs_per_frame, products_per_input
from ..hls.products import choose_product
from .parts import RESOURCES, Part, get_part

BRAM18_BITS = 18 * 1024
FOLDED_DEPTH = 3  # pipeline fill of one folded pixel (read, product, accumulate)


@lru_cache(maxsize=1)
def calibration() -> dict:
    import yaml

    from ..resources import CONFIG_DIR

    path = CONFIG_DIR / "hardware" / "lut_calibration.yaml"
    if not path.is_file():
        raise VecQError("missing; run `python -m vecq_hw.estimate.calibrate` (needs yosys)", file=path)
    return yaml.safe_load(path.read_text())


def lut_per_product(mode: str, k: int, w: int) -> float:
    a0, a1, a2, a3 = calibration()["coefficients"][mode]
    return max(a0 + a1 * w + a2 * k + a3 * k * w, 0.5)


def product_luts(p: int, r: int, k: int, w: int) -> float:
    """LUTs of the P products folded by R (non-increasing in R, increasing in P)."""
    slots = p // r
    return slots * min(lut_per_product("var", k, w), r * lut_per_product("const", k, w))


@dataclass
class LayerEstimate:
    name: str
    kind: str
    reuse: int = 0  # 0: not a weighted layer
    products: int = 0  # P per input
    slots: int = 0
    luts: float = 0.0
    ffs: float = 0.0
    dsps: int = 0
    bram18: int = 0
    uram: int = 0
    cycles: int = 1  # per frame (this layer's II in the dataflow pipeline)
    latency: int = 1


@dataclass
class Estimate:
    model: str
    part: Part
    io_type: str
    clock_period: float
    layers: list[LayerEstimate] = field(default_factory=list)

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
        return {"model": self.model, "part": self.part.name, "io_type": self.io_type,
                "clock_period_ns": self.clock_period, "ii_cycles": self.ii, "latency_cycles": self.latency,
                "fps": self.fps, "totals": self.totals(), "utilisation": self.utilisation(),
                "layers": [asdict(lyr) for lyr in self.layers]}


#: BRAM18 aspect ratios (depth, width)
_BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


def _bram_or_lutram(banks: int, depth: int, width: int) -> tuple[int, float]:
    """(BRAM18, LUTs) for ``banks`` memories of depth x width bits (LUTRAM when small or shallow)."""
    if depth < 64 or depth * width < 4096:
        return 0, banks * width * math.ceil(depth / 64)
    return banks * min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM18_SHAPES), 0.0


def _weighted(node: ir.Node, r: int, io_type: str) -> LayerEstimate:
    layer = node.layer
    p, per_frame = products_per_input(node), inputs_per_frame(node)
    w = int(node.in_types[0].width)
    product = choose_product(layer, node.in_types[0])
    k = 1 if product.kind == "addsub" else int(layer.bits)
    n_out = int(node.out_shape[-1])
    e = LayerEstimate(layer.name, layer.kind, reuse=r, products=p, slots=p // r)
    dsp_bound = layer.multiplier == "dsp" and product.kind in ("named", "multiply") and (
        product.kind == "multiply" or layer.bits >= 5)
    if dsp_bound:
        e.dsps += e.slots
        e.luts += e.slots * lut_per_product("const", 1, w)  # the adder share
    else:
        e.luts += product_luts(p, r, k, w)
    units = math.ceil(n_out / r)
    acc_w, s_w = int(layer.accum_type.width), int(layer.scale_type.width)
    e.dsps += units * math.ceil(acc_w / 25) * math.ceil(s_w / 18)
    e.ffs += n_out * acc_w + e.slots * int(product.term.width)
    rom = lut_per_product("var", k, w) <= r * lut_per_product("const", k, w)  # else constants, no ROM
    if r > 1 and (rom or dsp_bound):  # ARRAY_RESHAPE: one ROM of depth R, one word of slots x k bits
        b, lut = _bram_or_lutram(1, r, e.slots * int(layer.bits))
        e.bram18 += b
        e.luts += lut
    requant_cycles = math.ceil(n_out / units) if r > 1 else 0
    per_input = 1 if r == 1 else r + requant_cycles + (FOLDED_DEPTH if per_frame > 1 else 0)
    e.cycles = per_frame * per_input
    e.latency = e.cycles + math.ceil(math.log2(max(e.slots, 2))) + 2
    _io(e, node, io_type)
    return e


def _io(e: LayerEstimate, node: ir.Node, io_type: str) -> None:
    """Output registers (io_parallel); line or frame buffers and their cycles (io_stream)."""
    layer = node.layer
    out_bits = int(np.prod(node.out_shape)) * int(layer.out_type.width)
    if io_type == "io_parallel":
        e.ffs += out_bits
        return
    e.ffs += int(node.out_shape[-1]) * int(layer.out_type.width)  # one output pixel in flight
    if len(node.out_shape) != 3 or not node.in_shapes or len(node.in_shapes[0]) != 3 or layer.kind == "relu":
        return
    (h, w, c), (oh, ow, oc) = node.in_shapes[0], node.out_shape
    width = int(node.in_types[0].width)
    if layer.kind in ("conv2d", "depthwise_conv2d"):
        # vecq_conv_stream_lines: filt_height + 1 rows, n_chan banks; reading overlaps nothing
        b, lut = _bram_or_lutram(int(c), (int(layer.kernel[0]) + 1) * int(w), width)
        e.cycles += int(h * w)
    elif layer.kind in ("maxpool2d", "avgpool2d"):
        # hls4ml's streaming pool (stride == size) and ours (vecq_pool2d, any stride): pool_height
        # rows, n_chan banks (ours keeps one more row only for packs that straddle rows, which
        # hls4ml's one-pixel packs never do); each output row leaves as its last input row arrives
        b, lut = _bram_or_lutram(int(c), int(layer.pool[0]) * int(w), width)
        e.cycles = max(e.cycles, int(h * w))
    else:  # add: pixel by pixel, but its inputs' streams hold up to a frame (hls4ml's default
        # stream depth is the tensor's pixel count: the skip branch must not stall the other)
        b, lut = _bram_or_lutram(int(c), int(h * w), width)
        b2, lut2 = _bram_or_lutram(int(oc), int(oh * ow), int(layer.out_type.width))
        b, lut = b + b2, lut + lut2
        e.cycles += int(h * w + oh * ow)
    e.bram18 += b
    e.luts += lut
    e.latency = max(e.latency, e.cycles)


def _other(node: ir.Node, io_type: str) -> LayerEstimate:
    layer = node.layer
    e = LayerEstimate(layer.name, layer.kind)
    if layer.kind in ("input", "flatten"):
        e.cycles = e.latency = 1
        return e
    shape = node.out_shape if layer.kind != "global_avg_pool" else node.in_shapes[0]
    bits = int(layer.out_type.width) if layer.kind != "global_avg_pool" else int(node.in_types[0].width)
    pixels = int(np.prod(shape[:-1])) if len(shape) == 3 else 1
    lanes = int(np.prod(shape)) if io_type == "io_parallel" and layer.kind in ("relu", "add") else int(shape[-1])
    e.luts = 0.5 * lanes * bits * (len(layer.inputs) or 1)
    if layer.kind in ("maxpool2d", "avgpool2d"):
        e.luts = 0.5 * int(shape[-1]) * bits * int(np.prod(layer.pool))
        e.cycles = pixels
    elif layer.kind == "global_avg_pool":
        e.cycles = int(shape[-1])
    else:
        e.cycles = 1 if io_type == "io_parallel" else pixels
    e.latency = e.cycles + 1
    _io(e, node, io_type)
    return e


def estimate(model: ir.Model, reuse: dict[str, int] | None = None, *, default_reuse: int = 1, part=None,
             clock_period: float = 5.0, io_type: str = "io_parallel") -> Estimate:
    """Per-layer and total resources, II and latency of the HLS design with this folding."""
    reuse = dict(reuse or {})
    p = part if isinstance(part, Part) else get_part(part)
    if isinstance(clock_period, bool) or not isinstance(clock_period, (int, float)) or not clock_period > 0:
        raise VecQError(f"expected a positive number of nanoseconds, got {clock_period!r}", field="clock_period")
    if io_type not in ("io_parallel", "io_stream"):
        raise VecQError(f"expected io_parallel or io_stream, got {io_type!r}", field="io_type")
    check_reuse_names(model, reuse)
    est = Estimate(model.name, p, io_type, float(clock_period))
    for node in model.nodes():
        if node.layer.kind in WEIGHTED_KINDS:
            r = check_reuse(node, int(reuse.get(node.layer.name, default_reuse)))
            est.layers.append(_weighted(node, r, io_type))
        else:
            est.layers.append(_other(node, io_type))
    return est
