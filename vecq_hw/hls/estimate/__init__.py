"""Pre-synthesis estimate of the HLS design (resources, II, latency) and the folding search.

    estimate(model, reuse={layer: R}, part='xc7z020', clock_period=5.0,
             weights={layer: 'onchip' | 'offchip' | 'uram'}) -> Estimate   # .memory() per kind, .ddr_gbps
    fit(model, part='xc7z020', headroom=0.8, target='throughput') -> FitResult  # .plan, .frontier
    get_part(name) / known_parts()          # configs/hardware/parts.yaml

Each layer's cost comes from its kind's HLS mapping (:mod:`vecq_hw.hls.mappings`); the LUT model
(:mod:`vecq_hw.hls.costs`) is calibrated on yosys mappings (:mod:`.calibrate`,
configs/hardware/lut_calibration.yaml).
"""

from ..costs import LayerEstimate, product_luts
from .fit import FitResult, fit
from .model import Estimate, estimate
from .parts import Part, get_part, known_parts

__all__ = ["Estimate", "FitResult", "LayerEstimate", "Part", "estimate", "fit", "get_part", "known_parts",
           "product_luts"]
