"""HLS mapping of ALQ's native kinds (``alq_dense``, ``alq_conv2d``): the hls4ml layer each becomes,
every type it pins, its folding facts and its pre-synthesis estimate. No hls4ml import here (the
hls4ml classes are :mod:`.layers_alq`, registered by :meth:`AlqMapping.register_hls`).

Types (all exact; see ``hls_templates/nnet_vecq_alq.h`` for the argument):

* ``basis`` (acc_k = sum_i x_i beta_ik): the exact width of the worst column, or ``accum``'s
  width where that is narrower (arithmetic modulo 2^W is enough for acc_j);
* ``accum`` (acc_j = sum_b alpha_jb acc_k): the layer's ``accum_type`` with AP_TRN / AP_WRAP
  (its grid is the input's, so nothing rounds; it must wrap for the modulo argument);
* ``alpha``: ap_int wide enough for every alpha; ``weight``: ap_uint<1> (a sign).

Cost (:meth:`AlqMapping.estimate`): the P = fan-in * K sign products per input fold like any
weighted layer's (P / R slots), each slot costing the LUTs per basis-MAC of the XOR add/subtract
form measured on yosys (``configs/hardware/alq_calibration.yaml``, written by
:mod:`.estimate.alq_form`): 'const' for R = 1 (the signs are constants), else the cheaper of
'var' (the sign read from the ROM) and R constant ones; then per output its alpha products
(at R = 1 one adder per signed digit of a channel's constant alphas, but one: a channel with
one basis and alpha 1 needs none; folded, a small multiplier per basis and requantisation unit), the requantisation DSPs, the plane ROM (R words of P / R
bits) and cycles as the levels kinds.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

from .. import ir
from ..errors import VecQError
from ..fixed import FixedType
from .costs import LayerEstimate, charge_ram, lut_per_product, requant_and_cycles
from .mappings import Mapping, _ConvMapping, int_type, register

#: the calibration file of the basis-MAC form (``python -m vecq_hw.hls.estimate.alq_form``)
CALIBRATION = "alq_calibration.yaml"


@lru_cache(maxsize=1)
def calibration() -> dict:
    import yaml

    from ..resources import CONFIG_DIR

    path = CONFIG_DIR / "hardware" / CALIBRATION
    if not path.is_file():
        raise VecQError("missing; run `python -m vecq_hw.hls.estimate.alq_form` (needs yosys)", file=path)
    return yaml.safe_load(path.read_text())


def lut_per_basis_mac(mode: str, w: int) -> float:
    """LUTs of one sign product x * (+-1) with its share of the adder tree, w-bit x ('const':
    constant sign, 'var': a sign bit from the ROM), from the fitted line a + b * w."""
    a, b = calibration()["coefficients"][mode]
    return max(a + b * w, 0.5)


def csd_digit_count(v: int) -> int:
    """Non-zero digits of v's canonical signed-digit form (the adders of a constant product + 1)."""
    n, v = 0, abs(int(v))
    while v:
        if v & 1:
            v -= 1 if (v & 3) == 1 else -1
            n += 1
        v >>= 1
    return n


def plain(t: FixedType) -> FixedType:
    """``t`` with AP_TRN / AP_WRAP (an accumulator on its input's grid: nothing rounds, it wraps)."""
    return FixedType(width=t.width, integer=t.integer, signed=t.signed)


def basis_type(layer: ir.AlqWeighted, in_type: FixedType) -> FixedType:
    """acc_k's type: exact over every column's signs, at most accum_type's width (modulo 2^W)."""
    signs = layer.planes.reshape(-1, layer.planes.shape[-1])
    exact = ir.accumulator_type(in_type, signs)
    width = min(exact.width, layer.accum_type.width)
    return FixedType(width=width, integer=width - in_type.frac, signed=True)


def _table(name: str, values) -> str:
    vals = ", ".join(str(int(v)) for v in values)
    return (f"    static unsigned {name}(unsigned i) {{\n"
            f"        static const unsigned t[{len(values)}] = {{{vals}}};\n        return t[i];\n    }}\n")


def config_tables(layer: ir.AlqWeighted) -> str:
    """The config struct's constant tables: each channel's first column and basis count, each
    column's count of -1 signs (the ulps the XOR form preloads)."""
    counts = layer.counts()
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    neg = (layer.planes.reshape(-1, layer.planes.shape[-1]) < 0).sum(axis=0)
    return _table("first", first) + _table("count", counts) + _table("neg", neg)


class AlqMapping(Mapping):
    """Shared by both kinds (the conv geometry comes from :class:`.mappings._ConvMapping`)."""

    def register_hls(self) -> None:
        from . import layers_alq

        layers_alq.register()

    def types(self, node, opts):
        layer, t_in = node.layer, node.in_types[0]
        return {"result": layer.out_type, "accum": plain(layer.accum_type), "basis": basis_type(layer, t_in),
                "alpha": int_type(layer.alpha_width()), "weight": FixedType(width=1, integer=1, signed=False,
                                                                          kind="int"),
                "scale": layer.scale_type, "bias": layer.bias_type}

    def attrs(self, node, opts):
        layer = node.layer
        types = self.types(node, opts)
        return dict(n_basis=int(layer.planes.shape[-1]), max_bases=int(layer.counts().max()),
                    tables=config_tables(layer), planes_data=(layer.planes > 0).astype(np.int64),
                    alpha_data=layer.column_alpha(), scale_mantissas=layer.scale, scale_frac=layer.scale_type.frac,
                    bias_mantissas=layer.bias, bias_frac=layer.bias_type.frac,
                    vecq_types={"weight": types["weight"], "alpha": types["alpha"], "scale": layer.scale_type,
                                "bias": layer.bias_type, "out": layer.out_type},
                    strategy=opts.strategy, reuse_factor=int(opts.reuse_of(layer.name)), **self.geometry(node))

    def geometry(self, node) -> dict:
        return {"n_in": int(node.in_shapes[0][0]), "n_out": int(node.out_shape[0])}

    def products_per_input(self, node):
        return node.layer.fan_in() * int(node.layer.planes.shape[-1])

    def estimate(self, node, reuse, io_type):
        layer, r = node.layer, reuse
        p, per_frame = self.products_per_input(node), self.inputs_per_frame(node)
        w = int(node.in_types[0].width)
        e = LayerEstimate(layer.name, layer.kind, reuse=r, products=p, slots=p // r)
        e.luts += e.slots * min(lut_per_basis_mac("var", w), r * lut_per_basis_mac("const", w))
        n_out, units = layer.n_out, math.ceil(layer.n_out / r)
        acc_w, b_w = int(layer.accum_type.width), int(basis_type(layer, node.in_types[0]).width)
        if r == 1:  # constant alphas: per output, one adder of acc_j's width per signed digit but one
            digits = np.zeros(n_out, dtype=np.int64)
            np.add.at(digits, layer.column_outputs(), [csd_digit_count(a) for a in layer.column_alpha()])
            e.luts += acc_w * int(np.maximum(digits - 1, 0).sum())
        else:  # a small alpha x acc_k multiplier per basis and unit
            e.luts += units * int(layer.counts().max()) * lut_per_product("var", layer.alpha_width(), b_w)
            charge_ram(e, "weights", 1, r, e.slots)  # the plane ROM: R words of P / R sign bits
        requant_and_cycles(e, n_out, r, per_frame, acc_w, int(layer.scale_type.width))
        e.ffs += int(layer.planes.shape[-1]) * b_w + n_out * acc_w
        return self.add_io(e, node, io_type)


@register
class AlqDenseMapping(AlqMapping):
    kind = "alq_dense"

    def class_name(self, node, opts):
        return "VecQAlqDense"


@register
class AlqConv2DMapping(AlqMapping):
    kind = "alq_conv2d"
    geometry = _ConvMapping.geometry
    inputs_per_frame = _ConvMapping.inputs_per_frame
    stream_buffers = _ConvMapping.stream_buffers

    def class_name(self, node, opts):
        return "VecQAlqConv2D"


__all__ = ["AlqConv2DMapping", "AlqDenseMapping", "AlqMapping", "basis_type", "calibration", "config_tables",
           "csd_digit_count", "lut_per_basis_mac", "plain"]
