"""The integer model as a graph: structure checks, the new kinds, levels tables, format v2
and the loading of format-v1 folders written by the released code."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from graph_models import graph_inputs, make_graph
from naive_reference import naive_simulate
from vecq_hw import ir
from vecq_hw.errors import FormatError
from vecq_hw.fixed import FixedType
from vecq_hw.ir.io import FORMAT_VERSION, load_model, save_model
from vecq_hw.sim import simulate
from vecq_hw.sim.simulator import Simulator

FIXTURES = Path(__file__).parent / "fixtures"
F = FixedType.parse


# ------------------------------------------------------------------ simulator vs naive reference

@pytest.mark.parametrize("seed", range(10))
def test_graph_model_matches_naive_reference(seed):
    m = make_graph(seed)
    x = graph_inputs(m, 5, seed)
    out, trace, counts = naive_simulate(m, x)
    for force in (None, "int64"):
        r = Simulator(m, force_dtype=force).run(x_mantissa=x, trace=True, count_overflow=True)
        assert np.array_equal(r.output, out)
        for name, t in trace.items():
            assert np.array_equal(r.trace[name], t), name
        assert r.overflow == counts


@pytest.mark.parametrize("levels", [[-4, -1, 1, 4], [0, 3, -5, 7], [-1, 1, -1, 1]])
def test_custom_levels_table_matches_naive_reference(levels):
    m = make_graph(3, bits=2, levels=levels)
    assert all(layer.encoding == "custom" for layer in m.layers if isinstance(layer, ir.Weighted))
    x = graph_inputs(m, 5, 11)
    out, _, _ = naive_simulate(m, x)
    assert np.array_equal(simulate(m, x_mantissa=x).output, out)


def test_shared_activation_is_not_overwritten_by_a_reader():
    # relu1 is read by the depthwise conv and by add1: whichever runs first must not change it
    m = make_graph(1)
    x = graph_inputs(m, 7, 2)
    a = simulate(m, x_mantissa=x, trace=True)
    b = simulate(m, x_mantissa=x, chunk_size=1, trace=True)
    assert np.array_equal(a.output, b.output)
    out, trace, _ = naive_simulate(m, x)
    assert np.array_equal(a.trace["relu1"], trace["relu1"])


def test_global_average_pool_power_of_two_is_the_exact_mean():
    t = F("ap_fixed<8,3>")
    mult, mt = ir.GlobalAvgPool2D.constant(16, 4)
    assert (mult, mt.frac) == (1, 4)  # exactly 1/16
    m = ir.Model("g", [ir.Input("x", t, shape=(4, 4, 2)),
                       ir.GlobalAvgPool2D("gap", F("ap_fixed<12,3>"), mult=mult, mult_type=mt)]).check()
    x = np.random.default_rng(0).integers(-128, 128, (50, 4, 4, 2))
    out = simulate(m, x_mantissa=x).output
    # exact mean on a grid 4 bits finer than the input: sum * 2**4 / 16 = sum
    assert np.array_equal(out, x.sum(axis=(1, 2)))


def test_add_aligns_fractions_exactly():
    a, b = F("ap_fixed<6,2>"), F("ap_fixed<8,1>")  # 4 and 7 fractional bits
    m = ir.Model("a", [ir.Input("x", a, shape=(3,)),
                       ir.Dense("d", b, bits=1, codes=np.zeros((3, 3), np.int8), scale=np.ones(3, np.int64),
                                scale_type=F("ap_ufixed<1,1>"), bias=np.zeros(3, np.int64),
                                bias_type=F("ap_fixed<2,2>"), accum_type=F("ap_fixed<8,4>")),
                       ir.Add("s", F("ap_fixed<16,6>"), inputs=("x", "d"))]).check()
    x = np.array([[1, -5, 31]])
    r = simulate(m, x_mantissa=x, trace=True)
    d = r.trace["d"][0]
    # out frac 10: x * 2**6 + d * 2**3, no rounding needed
    assert list(r.output[0]) == [int(v) * 64 + int(w) * 8 for v, w in zip(x[0], d)]


# ------------------------------------------------------------------ structure errors (API)

def _chain():
    t = F("ap_fixed<8,3>")
    return [ir.Input("x", t, shape=(4,)), ir.ReLU("r1", t, inputs=("x",)), ir.ReLU("r2", t, inputs=("r1",))]


def _check_fails(layers, field, match):
    with pytest.raises(FormatError, match=match) as info:
        ir.Model("m", layers).check()
    assert info.value.field == field and "\n" not in str(info.value)


def test_cycle_is_named():
    L = _chain()
    t = L[0].out_type
    L[1] = ir.ReLU("r1", t, inputs=("r2",))
    L.append(ir.Add("s", t, inputs=("r2", "x")))
    _check_fails(L, "layers[1] (r1).inputs", "cycle: r1 -> r2 -> r1")


def test_unknown_input_name():
    L = _chain()
    L[2] = ir.ReLU("r2", L[0].out_type, inputs=("nope",))
    _check_fails(L, "layers[2] (r2).inputs", "unknown input 'nope'")


def test_two_outputs_and_unreachable_layer():
    L = _chain()
    L[2] = ir.ReLU("r2", L[0].out_type, inputs=("x",))
    _check_fails(L, "layers[1] (r1)", "not read by any layer")


def test_add_shape_mismatch_and_arity():
    t = F("ap_fixed<8,3>")
    base = [ir.Input("x", t, shape=(2, 2, 2)), ir.Flatten("f", t)]
    _check_fails(base + [ir.Add("s", t, inputs=("x", "f"))], "layers[2] (s).inputs", "one shape")
    _check_fails(base + [ir.Add("s", t, inputs=("f",))], "layers[2] (s).inputs", "takes 2 to 8 inputs")


def test_layers_out_of_topological_order():
    L = _chain()
    L[1], L[2] = L[2], L[1]
    L[1].inputs, L[2].inputs = ("r1",), ("x",)
    _check_fails(L, "layers[1] (r2).inputs", "listed after this layer")


def test_ap_wrap_sm_refused_naming_the_layer():
    L = _chain()
    L[2] = ir.ReLU("r2", F("ap_fixed<8,3,AP_TRN,AP_WRAP_SM>"), inputs=("r1",))
    _check_fails(L, "layers[2] (r2).out_type", "AP_WRAP_SM is not supported")


def test_levels_table_must_fit_bits():
    m = make_graph(0, bits=2)
    m.layers[1].levels = np.array([1, 2, 3], dtype=np.int64)
    with pytest.raises(FormatError, match="4 int64 levels") as info:
        m.check()
    assert info.value.field == "layers[1] (conv1).levels"


# ------------------------------------------------------------------ file format

@pytest.mark.parametrize("seed", range(4))
def test_graph_round_trip(tmp_path, seed):
    m = make_graph(seed)
    save_model(m, tmp_path / "m")
    text = (tmp_path / "m" / "model.yaml").read_text()
    assert f"format_version: {FORMAT_VERSION}" in text and "inputs: [relu1, dw]" in text
    back = load_model(tmp_path / "m")
    assert back == m
    x = graph_inputs(m, 4)
    assert np.array_equal(simulate(back, x_mantissa=x).output, simulate(m, x_mantissa=x).output)


@pytest.mark.parametrize("name", ["v1_cnn", "v1_mlp_int"])
def test_v1_folder_from_the_released_code_loads_and_simulates_identically(tmp_path, name):
    """tests/fixtures/v1_*: saved by release c2f4f7a (format_version 1) with that release's
    simulator outputs on fixed inputs; nothing a user exported may change meaning."""
    src = FIXTURES / name
    assert "format_version: 1" in (src / "model.yaml").read_text()
    m = load_model(src)
    x = np.load(src / "x_mantissa.npy")
    assert np.array_equal(simulate(m, x_mantissa=x).output, np.load(src / "y_mantissa.npy"))
    # and it re-saves as v2 with the same meaning
    save_model(m, tmp_path / "v2")
    assert "format_version: 2" in (tmp_path / "v2" / "model.yaml").read_text()
    assert load_model(tmp_path / "v2") == m


V1_CASES = [
    ("in_shape_does_not_chain", "in_shape: [8, 8, 3]", "in_shape: [8, 8, 4]", "layers[2] (relu1).in_shape"),
    ("bad_encoding", "encoding: odd", "encoding: even", "layers[1] (conv1).encoding"),
    ("v2_key_in_v1", "encoding: odd", "levels: [-3, -1, 1, 3]", "layers[1] (conv1).levels"),
]


@pytest.mark.parametrize("old,new,field", [c[1:] for c in V1_CASES], ids=[c[0] for c in V1_CASES])
def test_v1_folder_errors_still_named(tmp_path, old, new, field):
    d = tmp_path / "m"
    shutil.copytree(FIXTURES / "v1_cnn", d)
    text = (d / "model.yaml").read_text()
    assert old in text
    (d / "model.yaml").write_text(text.replace(old, new, 1))
    with pytest.raises(FormatError) as info:
        load_model(d)
    assert info.value.field == field, str(info.value)
