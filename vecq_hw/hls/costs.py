"""What the HLS kernels cost, in the units of the pre-synthesis estimate: the per-layer record and
the cost primitives each kind's mapping (:mod:`.mappings`) builds its estimate from.

* LUTs per product: a + b*w + c*k + d*k*w per mode ('const': a constant product of an unfolded
  layer; 'var': a k x w multiplier fed from the weight ROM), fitted on yosys ``synth_xilinx``
  mappings (``configs/hardware/lut_calibration.yaml``, written by :mod:`.estimate.calibrate`).
  A folded product with a select plan (issue 21) is costed from its plan instead
  (:func:`.select.adder_luts`, in ``_WeightedMapping.select_array_luts``).
* memories: BRAM18 (or BRAM36, counted as two BRAM18) at its best aspect ratio, LUTRAM when small
  or shallow, UltraRAM (always 4K x 72, never a ROM: it has no initial contents on UltraScale+)
  for RAMs the kernels bind to it; each charged to one of :data:`MEMORY_KINDS`, so the estimate
  reports where the memory goes.

The estimator (:mod:`.estimate`) sums the mappings' :class:`LayerEstimate` records. No hls4ml
import here (the estimator and the CLI read it cheaply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache

from ..errors import VecQError

FOLDED_DEPTH = 3  # pipeline fill of one folded pixel (read, product, accumulate)
#: (depth, width, cost in BRAM18) of the block RAM aspect ratios: BRAM18, then BRAM36 (two BRAM18)
_BRAM_SHAPES = tuple((d, w, 1) for d, w in ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))) + \
    tuple((d, w, 2) for d, w in ((512, 72), (1024, 36), (2048, 18), (4096, 9), (8192, 4), (16384, 2), (32768, 1)))
#: UltraRAM: one aspect ratio, 4K x 72 (UG901, "Differences between UltraRAM and Block RAM")
URAM_DEPTH, URAM_WIDTH = 4096, 72
#: where the memory of a design goes (LayerEstimate.memory)
MEMORY_KINDS = ("weights", "line_buffers", "fifos", "axi")


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
    adder_graph: bool = False  # products from da4ml's adder graph (strategy distributed_arithmetic)
    overlap: bool = False  # a folded conv requantises during the next pixel's products (requant_hold)
    #: where the weights live: 'onchip' (ROM), 'offchip' (read from DDR every pass), 'uram' (loaded once)
    weights: str = "onchip"
    #: bytes read from DDR per frame (off-chip weights)
    ddr_bytes: float = 0.0
    #: {kind: {'bits', 'bram18', 'uram', 'luts'}} of the memories charged above (MEMORY_KINDS)
    memory: dict = field(default_factory=dict)


@lru_cache(maxsize=1)
def calibration() -> dict:
    import yaml

    from ..resources import CONFIG_DIR

    path = CONFIG_DIR / "hardware" / "lut_calibration.yaml"
    if not path.is_file():
        raise VecQError("missing; run `python -m vecq_hw.hls.estimate.calibrate` (needs yosys)", file=path)
    return yaml.safe_load(path.read_text())


def lut_per_product(mode: str, k: int, w: int) -> float:
    a0, a1, a2, a3 = calibration()["coefficients"][mode]
    return max(a0 + a1 * w + a2 * k + a3 * k * w, 0.5)


def product_luts(p: int, r: int, k: int, w: int) -> float:
    """LUTs of the P products folded by R (non-increasing in R, increasing in P)."""
    slots = p // r
    return slots * min(lut_per_product("var", k, w), r * lut_per_product("const", k, w))


def bram18_blocks(depth: int, width: int) -> int:
    """BRAM18 of one depth x width memory at its best aspect ratio (BRAM36 counted as two BRAM18)."""
    return min(cost * math.ceil(width / w) * math.ceil(depth / d) for d, w, cost in _BRAM_SHAPES)


def uram_blocks(depth: int, width: int) -> int:
    """UltraRAM blocks (4K x 72) of one depth x width memory."""
    return math.ceil(width / URAM_WIDTH) * math.ceil(depth / URAM_DEPTH)


def requant_and_cycles(e: LayerEstimate, n_out: int, r: int, per_frame: int, acc_w: int, s_w: int) -> None:
    """The tail of the ALQ and PQ estimates (their ROMs are on chip): ceil(n_out / R)
    requantisation units (DSPs for acc * s), and per input R product cycles, the outputs' cycles
    and the pipeline fill (one cycle unfolded); the latency adds the adder tree of the product slots."""
    units = math.ceil(n_out / r)
    e.dsps += units * math.ceil(acc_w / 25) * math.ceil(s_w / 18)
    requant_cycles = math.ceil(n_out / units) if r > 1 else 0
    e.cycles = per_frame * (1 if r == 1 else r + requant_cycles + (FOLDED_DEPTH if per_frame > 1 else 0))
    e.latency = e.cycles + math.ceil(math.log2(max(e.slots, 2))) + 2


def mux_luts(n: int) -> float:
    """LUTs per bit of an n:1 read multiplexer: 1.6 per 4 inputs (a LUT6 is a 4:1 multiplexer),
    fitted on yosys ``synth_xilinx`` counts of the folded convs' hold registers
    (estimate/hold_form.py): n = 8, 32, 64 within 10 % (tests/test_requant_overlap.py checks the
    LeNet-5 points), n = 16 20 % above, n = 5 from 2 % above (7 units) to 20 % below (2 units)."""
    return 0.0 if n <= 1 else 1.6 * math.ceil(n / 4)


def hold_luts(n_out: int, units: int, acc_w: int) -> float:
    """LUTs of a folded conv's hold registers (:func:`requant_hold`): per requantisation unit a
    ceil(n_out / units):1 read multiplexer per accumulator bit (the copies themselves are FFs)."""
    return units * acc_w * mux_luts(math.ceil(n_out / units))


def requant_hold(e: LayerEstimate, n_out: int, units: int, acc_w: int) -> None:
    """The hold registers of a folded conv whose requantisation overlaps the next pixel's products
    (nnet_vecq_fold.h, vecq_fold_row): n_out accumulator copies (loaded by clock enable: FFs
    only) and their read multiplexers (:func:`hold_luts`)."""
    e.overlap = True
    e.ffs += n_out * acc_w
    e.luts += hold_luts(n_out, units, acc_w)


def bram_or_lutram(banks: int, depth: int, width: int) -> tuple[int, float]:
    """(BRAM18, LUTs) for ``banks`` memories of depth x width bits (LUTRAM when small or shallow)."""
    if depth < 64 or depth * width < 4096:
        return 0, banks * width * math.ceil(depth / 64)
    return banks * bram18_blocks(depth, width), 0.0


def charge_memory(e: LayerEstimate, kind: str, bits: int, *, bram18: int = 0, uram: int = 0, luts: float = 0.0):
    """Add a memory of ``bits`` held in these resources to the layer, under ``kind`` (MEMORY_KINDS)."""
    if kind not in MEMORY_KINDS:
        raise ValueError(f"memory kind {kind!r}, expected one of {MEMORY_KINDS}")
    m = e.memory.setdefault(kind, {"bits": 0, "bram18": 0, "uram": 0, "luts": 0.0})
    m["bits"] += int(bits)
    m["bram18"] += int(bram18)
    m["uram"] += int(uram)
    m["luts"] += float(luts)
    e.bram18 += int(bram18)
    e.uram += int(uram)
    e.luts += float(luts)


def prefers_uram(depth: int, width: int) -> bool:
    """A RAM of depth x width takes less silicon in UltraRAM than in block RAM (one URAM holds the
    bits of 16 BRAM18; small or shallow memories stay LUTRAM)."""
    bram, luts = bram_or_lutram(1, depth, width)
    return luts == 0 and 16 * uram_blocks(depth, width) < bram


def charge_ram(e: LayerEstimate, kind: str, banks: int, depth: int, width: int, *, uram: bool = False) -> None:
    """``banks`` memories of depth x width bits: in UltraRAM when ``uram`` (the code binds them
    there), else BRAM or LUTRAM at the best aspect ratio."""
    bits = banks * depth * width
    if uram:
        charge_memory(e, kind, bits, uram=banks * uram_blocks(depth, width))
        return
    bram, luts = bram_or_lutram(banks, depth, width)
    charge_memory(e, kind, bits, bram18=bram, luts=luts)


__all__ = ["FOLDED_DEPTH", "LayerEstimate", "MEMORY_KINDS", "bram18_blocks", "bram_or_lutram", "calibration",
           "charge_memory", "charge_ram", "hold_luts", "lut_per_product", "mux_luts", "prefers_uram", "product_luts",
           "requant_and_cycles", "requant_hold", "uram_blocks"]
