"""HLS back end on graphs and level tables: simulator == g++ C simulation, bit for bit.

Models built from ir layers (``vecq_hw.ir.examples``): a residual CNN (stem conv, two residual
adds, one with a strided 1x1 projection, global average pool, dense), a MobileNet-style block
(depthwise 3x3 + pointwise 1x1 + residual add, GAP, dense) and MLPs with custom level tables of
every product kind. Each project is written and C-simulated ONCE (module fixture), on 500 random
inputs over the whole input type, io_parallel and io_stream. The expected outputs handed to the
project are the simulator's; the test compares the C++ outputs against an independent
simulator run.
"""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.hls import HlsOptions, build_graph, csim, write_project
from vecq_hw.hls.convert import check_pinned
from vecq_hw.hls.products import choose_product
from vecq_hw.ir.examples import random_inputs, random_mlp, random_mobilenet_block, random_resnet
from vecq_hw.sim import simulate

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

N_TESTS = 500
SHIFT_ADD = [-4, -1, 1, 4]  # 2 bits: every level one signed power of two
MULTIPLY = [-23, -9, -3, 0, 5, 11, 19, 27]  # 3 bits: 23 = 32 - 8 - 1 needs three digits
ADDSUB = [0, -1, 1, 1]  # 2 bits: add, subtract or skip

CASES = {
    # name: (builder, io_type, product kinds the model must use)
    "resnet_parallel": (lambda: random_resnet(2, seed=1), "io_parallel", {"named"}),
    "resnet_stream": (lambda: random_resnet(2, seed=2), "io_stream", {"named"}),
    "mobilenet_shift_add_parallel": (lambda: random_mobilenet_block(2, seed=3, levels=SHIFT_ADD), "io_parallel",
                                     {"shift_add"}),
    "mobilenet_shift_add_stream": (lambda: random_mobilenet_block(2, seed=4, levels=SHIFT_ADD), "io_stream",
                                   {"shift_add"}),
    "mlp_multiply_stream": (lambda: random_mlp(3, seed=5, levels=MULTIPLY, multiplier="fabric"), "io_stream",
                            {"multiply"}),
    "mlp_addsub_parallel": (lambda: random_mlp(2, seed=6, levels=ADDSUB, sizes=(24, 12, 10)), "io_parallel",
                            {"addsub"}),
}


def _products(model):
    return {choose_product(n.layer, n.in_types[0]).kind for n in model.nodes() if isinstance(n.layer, ir.Weighted)}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    build, io_type, kinds = CASES[request.param]
    model = build()
    assert _products(model) == kinds
    x = random_inputs(model, N_TESTS, seed=7)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path_factory.mktemp(request.param) / "prj", HlsOptions(io_type=io_type),
                        expected=(x, y))
    return model, x, prj, csim(prj)


def test_csim_equals_simulator(built):
    model, x, prj, res = built
    assert res.synthesis_checked
    assert res.n == N_TESTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    np.testing.assert_array_equal(res.outputs, simulate(model, x_mantissa=x).output.reshape(N_TESTS, -1))
    # not degenerate: many distinct outputs, few saturated
    t = model.output_type
    assert len(np.unique(res.outputs)) > 50
    assert np.mean((res.outputs == t.max_mantissa) | (res.outputs == t.min_mantissa)) < 0.2
    print(f"\n{prj.parent.name}: {res.summary()}")


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_tampered_type_fails_pinned_check(io_type):
    model = random_resnet(2, seed=1)
    opts = HlsOptions(io_type=io_type)
    graph, names = build_graph(model, opts)
    for name, change in (("b1_add", {"out_type": FixedType(9, 4, True, "AP_TRN", "AP_SAT")}),
                         ("gap", {"mult_type": FixedType(14, 1, False)}),
                         ("stem_relu", {"out_type": FixedType(7, 3, False)})):
        other = random_resnet(2, seed=1)
        i = [layer.name for layer in other.layers].index(name)
        other.layers[i] = dataclasses.replace(other.layers[i], **change)
        with pytest.raises(VecQError, match=f"'{name}'|clone"):
            check_pinned(graph, other, names, opts)
    # and a type tampered inside the hls4ml graph itself: a layer's accumulator, a clone's copy
    from hls4ml.model.types import FixedPrecisionType

    check_pinned(graph, model, names, opts)
    layers = {n.name: n for n in graph.get_layers()}
    layers["gap"].get_attr("accum_t").precision = FixedPrecisionType(30, 12, True)
    with pytest.raises(VecQError, match="'gap'.*accum_t"):
        check_pinned(graph, model, names, opts)
    clones = [n for n in graph.get_layers() if n.class_name == "Clone"]
    assert bool(clones) == (io_type == "io_stream")  # stem_relu and b1_out are each read twice
    if clones:
        graph2, names2 = build_graph(model, opts)
        clone = next(n for n in graph2.get_layers() if n.class_name == "Clone")
        list(clone.variables.values())[-1].type.precision = FixedPrecisionType(16, 6, True)
        with pytest.raises(VecQError, match="clone layer"):
            check_pinned(graph2, model, names2, opts)


def test_custom_levels_change_the_emitted_product():
    """A custom table binds its own product class and ROM; a named table keeps the released one."""
    named = random_mlp(2, seed=1)
    custom = random_mlp(3, seed=1, levels=MULTIPLY)
    n0, n1 = named.nodes()[1], custom.nodes()[1]
    p0, p1 = choose_product(n0.layer, n0.in_types[0]), choose_product(n1.layer, n1.in_types[0])
    assert p0.kind == "named" and "vecq_product_named" in p0.config
    assert p1.kind == "multiply" and "vecq_product_rom" in p1.config and "-23, -9, -3, 0, 5, 11, 19, 27" in p1.config
    # the term type holds every x * 27 of the (signed 8-bit) input type exactly
    t = n1.in_types[0]
    assert p1.term.max_mantissa >= max(abs(t.min_mantissa), t.max_mantissa) * 27


def test_graph_errors_refused_at_hls_in_one_line(tmp_path):
    good = random_resnet(2, seed=1)
    cases = []
    # unknown input name
    m = random_resnet(2, seed=1)
    m.layers[[lyr.name for lyr in m.layers].index("b1_add")].inputs = ("b1_relu", "nope")
    cases.append((m, "unknown input 'nope'"))
    # shape mismatch at an add
    m = random_resnet(2, seed=1)
    m.layers[[lyr.name for lyr in m.layers].index("b2_add")].inputs = ("b2_conv2", "b2_proj", "b1_out")
    cases.append((m, "one shape"))
    # a cycle
    m = random_resnet(2, seed=1)
    m.layers[[lyr.name for lyr in m.layers].index("b1_conv")].inputs = ("b1_out",)
    cases.append((m, "cycle"))
    # an add of three inputs: the graph is fine, the HLS back end refuses it
    m = random_resnet(2, seed=1)
    m.layers[[lyr.name for lyr in m.layers].index("b1_add")].inputs = ("b1_relu", "stem_relu", "stem_relu")
    cases.append((m, "two-input adds"))
    # io_stream only: a tensor added to itself (hls4ml's clone would rewire one read only)
    m = random_resnet(2, seed=1)
    m.layers[[lyr.name for lyr in m.layers].index("b1_add")].inputs = ("b1_relu", "b1_relu")
    cases.append((m, "to itself"))
    x = random_inputs(good, 4)
    for i, (model, msg) in enumerate(cases):
        with pytest.raises(VecQError, match=msg) as exc:
            write_project(model, tmp_path / f"p{i}", HlsOptions(io_type="io_stream"),
                          expected=(x, simulate(good, x_mantissa=x).output))
        assert "\n" not in str(exc.value)
        assert not (tmp_path / f"p{i}").exists()


def test_options_validated_in_one_place():
    assert HlsOptions().backend == "Vitis"
    for kw, field in (({"backend": "Quartus"}, "backend"), ({"io_type": "io_serial"}, "io_type"),
                      ({"strategy": "Fast"}, "strategy"), ({"reuse_factor": 0}, "reuse_factor"),
                      ({"part": "x y"}, "part"), ({"clock_period": -1}, "clock_period"),
                      ({"project_name": "1abc"}, "project_name"), ({"project_name": "int"}, "project_name")):
        with pytest.raises(VecQError, match=f"field '{field}'") as exc:
            HlsOptions(**kw)
        assert "\n" not in str(exc.value)
    with pytest.raises(VecQError, match="unknown HLS option 'bakend'"):
        HlsOptions.from_kwargs(bakend="Vitis")


def test_stream_read_by_too_many_layers_refused():
    """hls4ml's io_stream clone copies a stream to at most 7 readers: refused at hls, one line."""
    t = FixedType(8, 3, True)
    layers = [ir.Input(name="x", out_type=t, shape=(4,)), ir.ReLU(name="r", out_type=t),
              ir.Add(name="a0", out_type=t, inputs=("r", "r"))]
    for i in range(1, 7):  # r: two reads by a0, one by each of a1..a6
        layers.append(ir.Add(name=f"a{i}", out_type=t, inputs=(f"a{i - 1}", "r")))
    model = ir.Model(name="fan", layers=layers).check()
    assert len(model.consumers()["r"]) == 8
    with pytest.raises(VecQError, match="read by 8 layers") as exc:
        build_graph(model, HlsOptions(io_type="io_stream"))
    assert "\n" not in str(exc.value)
