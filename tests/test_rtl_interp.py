"""The exact executor of traced da4ml graphs (``vecq_hw.rtl.interp.run_comb``).

It replaces da4ml's C++ interpreter as the RTL path's second execution (``rtlsim`` compares the
simulator with it and with Verilator) because that interpreter wraps values wider than 32 bits
wrongly. Checked here against da4ml's own Python interpreter (``CombLogic.__call__``, the
reference definition of every opcode, one sample at a time) and against the simulator.
"""

from __future__ import annotations

import numpy as np
import pytest
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from da4ml.types import minimal_kif

from vecq_hw import ir, rtl
from vecq_hw.fixed import FixedType
from vecq_hw.ir.examples import random_inputs, random_mlp, random_mobilenet_block, random_resnet
from vecq_hw.rtl.interp import run_comb
from vecq_hw.sim import simulate


def python_interpreter(comb, x_mantissa, in_frac, out_frac) -> np.ndarray:
    """da4ml's reference interpreter, sample by sample, as mantissas on the output grid."""
    vals = np.ldexp(np.asarray(x_mantissa, dtype=np.float64), -in_frac)
    out = np.array([[float(v) for v in comb(row)] for row in vals])
    m = np.ldexp(out, out_frac)
    assert np.array_equal(m, np.round(m))
    return m.astype(np.int64)


def wide_wrap_graph(width: int):
    """input (signed, width + 1 bits) -> wrap into ``width`` bits: one quantize op."""
    inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, -1))
    x = inp.quantize(1, width, 0)
    return comb_trace(inp, x.quantize(1, width - 1, 0))


@pytest.mark.parametrize("width", [8, 32, 33, 34, 47, 52])
def test_wide_wrap_is_exact(width):
    comb = wide_wrap_graph(width)
    half = 1 << (width - 1)
    x = np.array([[-5], [-half + 3], [half - 7], [half + 1], [-half - 2], [0]], dtype=np.int64)
    expected = ((x + half) % (2 * half)) - half  # two's complement wrap, written out
    np.testing.assert_array_equal(run_comb(comb, x, 0, 0), expected)
    np.testing.assert_array_equal(python_interpreter(comb, x, 0, 0), expected)


def test_da4ml_cpp_interpreter_wraps_wide_values_wrongly():
    """Why run_comb exists (da4ml 0.6.0): the C++ interpreter gets a 34-bit wrap wrong where
    the Python one and run_comb are right. If a later da4ml fixes it, this test says so."""
    comb = wide_wrap_graph(34)
    x = np.array([[-5.0]])
    assert float(comb(x[0])[0]) == -5.0
    assert comb.predict(x, n_threads=1)[0, 0] != -5.0


def wide_constants(model: ir.Model) -> ir.Model:
    """The first layer with 20-bit scales and 30-bit biases: y = acc * s + b then needs more than
    32 bits (as BatchNorm-folded constants of trained models do)."""
    rng = np.random.default_rng(0)
    layer = model.layers[1]
    layer.scale_type = FixedType(20, -2, False)
    layer.scale = rng.integers(1 << 18, 1 << 20, size=layer.n_out, dtype=np.int64)
    layer.bias_type = FixedType(30, 3, True)
    layer.bias = rng.integers(-(1 << 28), 1 << 28, size=layer.n_out, dtype=np.int64)
    return model.check()


MODELS = {
    "mlp_k8_wide": lambda: wide_constants(random_mlp(8, seed=11, sizes=(24, 9, 5))),
    "resnet_add_gap": lambda: random_resnet(2, seed=1, size=4, channels=(3, 4), n_out=4),
    "depthwise_add_gap": lambda: random_mobilenet_block(3, seed=2, size=4, channels=4, n_out=4),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_run_comb_equals_the_reference_interpreter_and_the_simulator(name):
    model: ir.Model = MODELS[name]()
    tr = rtl.trace_model(model)
    x = random_inputs(model, 300, seed=5).reshape(300, -1)
    tin, tout = model.input.out_type, model.output_type
    got = run_comb(tr.comb, x, tin.frac, tout.frac)
    np.testing.assert_array_equal(got, simulate(model, x_mantissa=x.reshape((300,) + tuple(model.input.shape)))
                                  .output.reshape(300, -1))
    np.testing.assert_array_equal(got[:12], python_interpreter(tr.comb, x[:12], tin.frac, tout.frac))
    codes = {op.opcode for op in tr.comb.ops}
    assert {-1, 0, 1, 3} <= codes  # inputs, adds, subtractions and quantisations were executed
    if name == "mlp_k8_wide":  # values past 32 bits: where da4ml's C++ interpreter goes wrong
        assert max(sum(minimal_kif(op.qint)) for op in tr.comb.ops) > 32
