"""A layer kind added from outside the package, through the public registries only.

The kind (an exact negation, defined here) is registered with the IR (``ir.register_kind``).
The estimate refuses it, naming the layer, until an HLS mapping with an estimate is registered
(``hls.mappings.register``), and the mapping alone decides whether it folds; the RTL path refuses
it until an op is registered (``rtl.rtl_op``), then traces it exactly (da4ml's interpreter
against numpy). Every registration is undone after each test.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

from vecq_hw import ir, rtl
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.hls import mappings
from vecq_hw.hls.estimate import estimate, fit
from vecq_hw.hls.folding import check_reuse, weighted_nodes
from vecq_hw.ir.examples import random_codes, weighted_layer
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.rtl.requant import RtlUnsupported, requantize
from vecq_hw.sim import simulate

KIND = "test_negate"


@dataclass(eq=False)
class Negate(ir.Layer):
    """y = -x exactly: out_type must hold the negation of every input value on its grid."""

    kind: ClassVar[str] = KIND

    def check(self, in_shapes, in_types, fail):
        t, o = in_types[0], self.out_type
        if o.frac < t.frac or o.max_value < -t.min_value or o.min_value > -t.max_value:
            fail("out_type", f"{o} cannot hold -x for every {t} value x")


@pytest.fixture
def negate_kind():
    ir.register_kind(Negate)
    saved = dict(mappings.MAPPINGS)
    yield Negate
    ir.LAYER_KINDS.pop(KIND, None)
    mappings.MAPPINGS.clear()
    mappings.MAPPINGS.update(saved)
    rtl.RTL_OPS.pop(KIND, None)


T_IN = FixedType(6, 2, True)
T8 = FixedType(8, 3, True, "AP_RND", "AP_SAT")
T_NEG = FixedType(9, 4, True)  # one more integer bit: -(-4) = 4 fits


def dense_negate(with_tail: bool = True, seed: int = 0) -> ir.Model:
    """input(6) -> dense fc1 -> negate -> [dense fc2]."""
    rng = np.random.default_rng(seed)
    layers = [ir.Input(name="x", out_type=T_IN, shape=(6,)),
              weighted_layer(ir.Dense, "fc1", rng, T_IN, random_codes(rng, (6, 4), 2), 2, "odd", T8),
              Negate(name="neg", out_type=T_NEG)]
    if with_tail:
        layers.append(weighted_layer(ir.Dense, "fc2", rng, T_NEG, random_codes(rng, (4, 3), 3), 3, "odd",
                                     FixedType(10, 5, True, "AP_RND", "AP_SAT")))
    return ir.Model(name="negate", layers=layers).check()


class NegateMapping(mappings.Mapping):
    """A mapping with a cost: one LUT per output bit, one cycle; ``P`` set: it folds."""

    kind = KIND
    P: int | None = None

    def __init__(self):
        self.seen_reuse = []

    def class_name(self, node, opts):
        return "TestNegate"

    def products_per_input(self, node):
        return self.P

    def estimate(self, node, reuse, io_type):
        self.seen_reuse.append(reuse)
        bits = int(np.prod(node.out_shape)) * node.layer.out_type.width
        return self.logic_estimate(node, io_type, float(bits), 1)


def test_ir_registration_round_trips_the_folder_format(negate_kind, tmp_path):
    model = dense_negate()
    save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m") == model
    with pytest.raises(ValueError, match="'relu' is already registered by ReLU"):
        ir.register_kind(type("OtherReLU", (ir.ReLU,), {}))


def test_estimate_refuses_a_kind_without_mapping_or_estimate(negate_kind):
    model = dense_negate()
    for call in (lambda: estimate(model), lambda: fit(model, "xc7z020")):
        with pytest.raises(VecQError, match=r"^layer 'neg': kind 'test_negate' has no HLS implementation$"):
            call()

    class NoCost(mappings.Mapping):
        kind = KIND

    mappings.register(NoCost)  # the class form (a decorator) registers an instance
    with pytest.raises(VecQError, match=r"^layer 'neg': kind 'test_negate' has an HLS mapping but no estimate"):
        estimate(model)


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_estimate_costs_a_registered_kind_by_its_mapping(negate_kind, io_type):
    model = dense_negate()
    mappings.register(NegateMapping())
    est = estimate(model, {"fc1": 2}, io_type=io_type)
    assert [(e.name, e.kind) for e in est.layers] == [("x", "input"), ("fc1", "dense"), ("neg", KIND),
                                                      ("fc2", "dense")]
    neg = est.layers[2]
    out_bits = 4 * T_NEG.width
    # the test mapping's own cost, plus the output registers add_io charges: the whole output in
    # io_parallel, one pixel (here the whole 1-d output too) in io_stream
    assert (neg.luts, neg.ffs, neg.cycles, neg.latency, neg.reuse) == (out_bits, out_bits, 1, 2, 0)
    # the built-in layers before it cost what they cost without it
    alone = estimate(dense_negate(with_tail=False), {"fc1": 2}, io_type=io_type)
    assert est.layers[1] == alone.layers[1] and est.layers[1].reuse == 2
    assert est.total("luts") == sum(e.luts for e in est.rows())  # the layers and (io_stream) the FIFO row
    # not foldable unless its mapping says so
    with pytest.raises(VecQError, match="reuse: 'neg' is not a weighted layer"):
        estimate(model, {"neg": 2})
    assert fit(model, "xc7z020").plan.reuse().keys() == {"fc1", "fc2"}


def test_folding_asks_the_mapping(negate_kind):
    model = dense_negate()

    class Folding(NegateMapping):
        P = 6

    folding = mappings.register(Folding())
    neg = next(n for n in model.nodes() if n.layer.name == "neg")
    assert [n.layer.name for n in weighted_nodes(model)] == ["fc1", "neg", "fc2"]
    with pytest.raises(VecQError, match=r"layer 'neg' \(test_negate\): reuse factor 4 must divide its 6 products"):
        check_reuse(neg, 4)
    estimate(model, {"neg": 3})
    assert folding.seen_reuse == [3]  # the validated reuse factor reaches the mapping's estimate


def test_rtl_refuses_an_unregistered_kind_then_traces_its_op(negate_kind):
    model = dense_negate(with_tail=False)
    with pytest.raises(RtlUnsupported, match=r"^layer 'neg': kind 'test_negate' is not supported by the RTL path$"):
        rtl.trace_model(model)

    @rtl.rtl_op(KIND)
    def negate(step: rtl.TraceStep) -> np.ndarray:
        flat = [requantize(-v, step.in_type.frac, step.layer.out_type, step.where) for v in step.x.ravel()]
        return np.array(flat, dtype=object).reshape(step.x.shape)

    tr = rtl.trace_model(model)
    assert [row["kind"] for row in tr.layers] == ["dense", KIND]
    # every input mantissa in every lane (and random mixes): interpreter == -(simulated fc1)
    rng = np.random.default_rng(3)
    ms = np.arange(T_IN.min_mantissa, T_IN.max_mantissa + 1)
    x = np.concatenate([np.repeat(ms[:, None], 6, axis=1), rng.choice(ms, size=(500, 6))])
    fc1 = simulate(ir.Model(name="fc1", layers=model.layers[:2]).check(), x_mantissa=x).output
    expected = -fc1 * 2 ** (T_NEG.frac - T8.frac)  # mantissas of -y on the negation's grid
    vals = np.ldexp(x.astype(np.float64), -T_IN.frac)
    got = np.ldexp(tr.comb.predict(vals, n_threads=1), T_NEG.frac)
    np.testing.assert_array_equal(got, expected)
    assert np.any(expected == -(T8.min_mantissa << (T_NEG.frac - T8.frac)))  # the end -min is reached


def test_mappings_and_estimate_import_without_hls4ml_or_other_back_ends():
    """The estimator and the CLI read the mappings cheaply: no hls4ml, and no rtl/sim (da4ml)."""
    code = ("import sys, vecq_hw.hls.mappings, vecq_hw.hls.folding, vecq_hw.hls.estimate; "
            "print(sorted(m for m in ('hls4ml', 'da4ml', 'vecq_hw.rtl', 'vecq_hw.sim') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
