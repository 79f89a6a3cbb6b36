"""Random integer models that are graphs: residual adds, depthwise convs, global average pool.

Built from ir layers only (no exporter), with random k-bit codes, levels tables and fixed-point
types; every model passes Model.check, so the accumulators are exact by construction.
"""

from __future__ import annotations

import numpy as np

from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.ir.examples import random_codes, weighted_layer

ROUNDINGS = ("AP_RND", "AP_RND_CONV", "AP_TRN", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_TRN_ZERO")
OVERFLOWS = ("AP_SAT", "AP_WRAP", "AP_SAT_SYM", "AP_SAT_ZERO")


def _weighted(cls, name, rng, in_type, codes_shape, bits, out_type, levels=None, inputs=(), **kw):
    codes = random_codes(rng, codes_shape, bits)
    encoding = "odd" if rng.random() < 0.5 else "int"  # a named table unless ``levels`` is given
    return weighted_layer(cls, name, rng, in_type, codes, bits, encoding, out_type, levels=levels,
                          inputs=tuple(inputs), **kw)


def _act(rng, width, integer, signed=True):
    return FixedType(width, integer, signed, ROUNDINGS[rng.integers(len(ROUNDINGS))],
                     OVERFLOWS[rng.integers(len(OVERFLOWS))])


def _relu_type(t):
    return t if not t.signed else FixedType(width=max(t.width - 1, 1), integer=t.integer - 1, signed=False)


def make_graph(seed: int = 0, *, bits: int | None = None, size: int = 6, levels=None) -> ir.Model:
    """input -> conv -> relu -> [depthwise] -> add(relu, dw) -> {1x1 s2, 3x3 s2} -> add -> relu
    -> global average pool -> dense. Every kind but the pools and flatten."""
    rng = np.random.default_rng(seed)
    k = bits or int(rng.integers(1, 9))
    lv = None if levels is None else np.asarray(levels, np.int64)
    tin = FixedType(8, 1, False)
    c = 3
    L = [ir.Input(name="input_1", out_type=tin, shape=(size, size, 2))]
    t1 = _act(rng, 8, 3)
    L.append(_weighted(ir.Conv2D, "conv1", rng, tin, (3, 3, 2, c), k, t1, lv, ["input_1"], padding=(1, 1, 1, 1)))
    r1 = _relu_type(t1) if t1.overflow != "AP_WRAP" else FixedType(t1.width, t1.integer, True)
    L.append(ir.ReLU(name="relu1", out_type=r1, inputs=("conv1",)))
    t2 = _act(rng, 9, 4)
    L.append(_weighted(ir.DepthwiseConv2D, "dw", rng, r1, (3, 3, c), k, t2, lv, ["relu1"], padding=(1, 1, 1, 1)))
    t3 = _act(rng, 9, 4)
    L.append(ir.Add(name="add1", out_type=t3, inputs=("relu1", "dw")))
    t4 = _act(rng, 8, 3)
    L.append(_weighted(ir.Conv2D, "proj", rng, t3, (1, 1, c, 4), k, t4, lv, ["add1"], stride=(2, 2)))
    t5 = _act(rng, 8, 3)
    L.append(_weighted(ir.Conv2D, "conv2", rng, t3, (3, 3, c, 4), k, t5, lv, ["add1"], stride=(2, 2),
                       padding=(1, 1, 1, 1)))
    t6 = _act(rng, 10, 4)
    L.append(ir.Add(name="add2", out_type=t6, inputs=("proj", "conv2")))
    r2 = FixedType(t6.width, t6.integer, True)
    L.append(ir.ReLU(name="relu2", out_type=r2, inputs=("add2",)))
    h = (size - 1) // 2 + 1
    mult, mult_t = ir.GlobalAvgPool2D.constant(h * h, 12)
    t7 = _act(rng, 10, 3)
    L.append(ir.GlobalAvgPool2D(name="gap", out_type=t7, inputs=("relu2",), mult=mult, mult_type=mult_t))
    t8 = _act(rng, 12, 5)
    L.append(_weighted(ir.Dense, "fc", rng, t7, (4, 5), k, t8, lv, ["gap"]))
    return ir.Model(name=f"graph{seed}", layers=L).check()


def graph_inputs(model: ir.Model, n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = model.input.out_type
    return rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(n,) + tuple(model.input.shape)).astype(np.int64)
