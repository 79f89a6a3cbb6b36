"""What the HLS kernels cost, in the units of the pre-synthesis estimate: the per-layer record and
the cost primitives each kind's mapping (:mod:`.mappings`) builds its estimate from.

* LUTs per product: a + b*w + c*k + d*k*w per mode ('const': a constant product of an unfolded
  layer; 'var': a k x w multiplier fed from the weight ROM), fitted on yosys ``synth_xilinx``
  mappings (``configs/hardware/lut_calibration.yaml``, written by :mod:`.estimate.calibrate`).
* memories: BRAM18 at its best aspect ratio, or LUTRAM when small or shallow.

The estimator (:mod:`.estimate`) sums the mappings' :class:`LayerEstimate` records. No hls4ml
import here (the estimator and the CLI read it cheaply).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from ..errors import VecQError

FOLDED_DEPTH = 3  # pipeline fill of one folded pixel (read, product, accumulate)
#: BRAM18 aspect ratios (depth, width)
_BRAM18_SHAPES = ((512, 36), (1024, 18), (2048, 9), (4096, 4), (8192, 2), (16384, 1))


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


def bram_or_lutram(banks: int, depth: int, width: int) -> tuple[int, float]:
    """(BRAM18, LUTs) for ``banks`` memories of depth x width bits (LUTRAM when small or shallow)."""
    if depth < 64 or depth * width < 4096:
        return 0, banks * width * math.ceil(depth / 64)
    return banks * min(math.ceil(width / w) * math.ceil(depth / d) for d, w in _BRAM18_SHAPES), 0.0


__all__ = ["FOLDED_DEPTH", "LayerEstimate", "bram_or_lutram", "calibration", "lut_per_product", "product_luts"]
