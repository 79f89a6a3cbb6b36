"""Strategy distributed_arithmetic (issue 21): layers at R = 1 from da4ml's adder graph, as HLS C++.

* g++ C simulation equals the simulator exactly on 1,000 inputs, on a small MobileNet-style CNN
  that holds every kind with a DA form (conv, depthwise, pointwise conv, dense) at k = 1, 2, 4
  (one model, mixed k: one C build per io type), in both io types: the generated adder-graph
  lines and their da4ml-interval types are exact, and so are our scale, bias and requantisation
  after them;
* which layers use it (R = 1, kinds, size limit), what is refused, what hls4ml sees;
* ``estimate`` charges da4ml's own cost of the layer's CMVM (solved independently here), and
  ``fit`` can choose the unfolded DA plan where the per-product model cannot fit;
* yosys: the DA layers' Verilog (the same adder graph + the layer's tail) costs within 1.2x of
  ``vecq-hw rtl`` on the same model.
The full-size runs (MLP 16-64-32-32-5 and a 12x12 CNN at k = 1, 2, 4) are in
benchmarks/da_strategy.py.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from vecq_hw import ir, rtl
from vecq_hw.cli import cli
from vecq_hw.errors import VecQError
from vecq_hw.flow import da_layer_luts, fit_hls
from vecq_hw.hls import HlsOptions, csim, da, layer_list, write_project
from vecq_hw.hls.costs import product_luts
from vecq_hw.hls.estimate import estimate, fit
from vecq_hw.hls.options import DISTRIBUTED_ARITHMETIC as DA
from vecq_hw.ir.examples import random_inputs, random_mlp, random_mobilenet_block
from vecq_hw.ir.io import save_model
from vecq_hw.sim import simulate

pytestmark = pytest.mark.xdist_group("hls_da")

N_TESTS = 1000
#: the mixed CNN's weighted layers and their k
MIXED_BITS = {"stem": 1, "dw": 2, "pw": 4, "fc": 2}


def _cnn():
    """stem conv 3x3 (padding 1) -> depthwise 3x3 -> pointwise 1x1 (+ add) -> GAP -> dense, 6x6x3
    input, each weighted layer at its MIXED_BITS k (the blocks at k = 1, 2, 4 share every type and
    shape for one seed, so their layers combine)."""
    blocks = {k: random_mobilenet_block(k, seed=5, size=6, channels=3, n_out=3) for k in set(MIXED_BITS.values())}
    layers = [blocks[MIXED_BITS.get(lyr.name, 1)].layer(lyr.name) for lyr in blocks[1].layers]
    return ir.Model(name="mixed", layers=layers).check()


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_da_csim_equals_simulator(tmp_path, io_type):
    model = _cnn()
    assert {lyr.name: int(lyr.bits) for lyr in model.layers if isinstance(lyr, ir.Weighted)} == MIXED_BITS
    x = random_inputs(model, N_TESTS, seed=3)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "prj", HlsOptions(io_type=io_type, strategy=DA), expected=(x, y))
    meta = json.loads((prj / "vecq_project.json").read_text())
    assert meta["strategy"] == DA and meta["da_layers"] == ["stem", "dw", "pw", "fc"]
    # every weighted layer is an adder graph: no code table written, one da_product each
    assert not list((prj / "firmware" / "weights").glob("w*.h"))
    assert (prj / "firmware" / "parameters.h").read_text().count("static void da_product(") == 4
    top = (prj / "firmware" / "myproject.cpp").read_text()
    assert top.count("nnet::vecq_da_conv2d<") == 4  # one kernel: a dense layer is a 1 x 1 conv
    # -O1: the adder-graph lines compile faster (same outputs); the synthesis-only path (no
    # different code for these kernels) is type-checked once, with io_stream
    res = csim(prj, opt="-O1", check_synthesis=io_type == "io_stream")
    assert res.synthesis_checked == (io_type == "io_stream") and res.n == N_TESTS
    assert res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    np.testing.assert_array_equal(res.outputs, y.reshape(N_TESTS, -1))
    assert len(np.unique(y)) > 10  # not a degenerate comparison


def test_which_layers_and_what_hls4ml_sees():
    model = random_mlp(2, sizes=(16, 12, 8, 5), seed=1)  # fc1 192, fc2 96, fc3 40 products
    opts = HlsOptions(strategy=DA, reuse={"fc2": 4}, da_max_products=100)
    layers, cfg, names = layer_list(model, opts)
    classes = {d["name"]: d["class_name"] for d in layers}
    # fc1 is above da_max_products, fc2 is folded: both keep the level-table kernel
    assert classes["fc1"] == "VecQDense" and classes["fc2"] == "VecQDense" and classes["fc3"] == "VecQDenseDA"
    assert {c["Strategy"] for c in cfg.values()} == {"Latency"}  # hls4ml's own DA passes never run
    assert [d.get("strategy") for d in layers if d["name"] == "fc2"] == ["Latency"]
    with pytest.raises(VecQError, match=r"reuse_factor.*1 with strategy distributed_arithmetic.*got 2"):
        HlsOptions(strategy=DA, reuse_factor=2)
    assert da.SOLVER == {k: getattr(rtl.RtlOptions(), k) for k in ("adder_size", "carry_size", "hard_dc")}


def test_cli_refuses_folding_every_layer(tmp_path):
    save_model(random_mlp(1, sizes=(8, 4), seed=1), tmp_path / "m")
    r = CliRunner().invoke(cli, ["hls", str(tmp_path / "m"), "--out", str(tmp_path / "prj"), "--strategy", DA,
                                 "--reuse-factor", "2"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert "reuse_factor" in r.output and not (tmp_path / "prj").exists()


def _independent_cmvm_cost(d: np.ndarray, t) -> float:
    """da4ml's cost of acc = x . d for x of type t, solved here as ``vecq-hw rtl`` solves it."""
    from da4ml.cmvm import solve
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
    from da4ml.types import QInterval

    inp = FixedVariableArrayInput((d.shape[0],), hwconf=HWConfig(1, -1, -1))
    xs = list(inp.quantize(int(t.signed), t.integer - int(t.signed), t.frac)._vars)
    q = [QInterval(float(v.low), float(v.high), float(v.step)) for v in xs]
    sol = solve(d.astype(np.float32), qintervals=q, latencies=[0.0] * len(xs), hard_dc=-1, adder_size=1, carry_size=-1)
    return float(comb_trace(inp, list(sol(xs))).cost)


def test_estimate_charges_da4ml_cost_of_the_layer_cmvm():
    model = _cnn()
    old = {lyr.name: lyr for lyr in estimate(model).layers}
    new = {lyr.name: lyr for lyr in estimate(model, strategy=DA).layers}
    for node in model.nodes():
        layer = node.layer
        if layer.kind not in ("dense", "conv2d"):
            continue
        d = layer.multipliers().astype(np.int64)
        cost = _independent_cmvm_cost(d.reshape(-1, d.shape[-1]), node.in_types[0])
        k, w = int(layer.bits), int(node.in_types[0].width)
        # the calibrated per-product LUTs of the R = 1 layer are replaced by da4ml's cost
        assert new[layer.name].adder_graph and not old[layer.name].adder_graph
        assert new[layer.name].luts == pytest.approx(old[layer.name].luts - product_luts(d.size, 1, k, w) + cost)
    assert new["dw"].adder_graph  # depthwise: the block-diagonal matrix
    assert sum(lyr.luts for lyr in new.values()) < sum(lyr.luts for lyr in old.values())


def test_fit_chooses_the_unfolded_da_plan_where_products_would_not_fit(tmp_path):
    model = random_mlp(2, sizes=(32, 48, 5), seed=1)
    # unfolded on xc7z020 at 80 %: the per-product model needs more than the 42,560 LUTs, DA far less
    assert estimate(model).total("luts") > 0.8 * 53_200 > 4 * estimate(model, strategy=DA).total("luts")
    kept = fit(model, "xc7z020", io_type="io_parallel")
    chose = fit(model, "xc7z020", io_type="io_parallel", strategy=DA)
    assert max(kept.plan.reuse().values()) > 1  # the per-product model has to fold
    assert set(chose.plan.reuse().values()) == {1} and all(lyr.adder_graph for lyr in chose.plan.layers if lyr.reuse)
    save_model(model, tmp_path / "m")
    text, ok = fit_hls(tmp_path / "m", tmp_path / "prj", part="xc7z020", io_type="io_parallel", strategy=DA)
    assert ok and "distributed arithmetic (da4ml adder graphs): fc1, fc2" in text
    assert json.loads((tmp_path / "prj" / "vecq_project.json").read_text())["da_layers"] == ["fc1", "fc2"]


def test_da_layers_yosys_luts_within_1_2x_of_rtl(tmp_path):
    model = random_mlp(2, sizes=(10, 6), seed=1)  # one layer: two yosys runs
    rows = da_layer_luts(model, tmp_path / "da", adder=False)
    assert [r.layer for r in rows] == ["fc1"] and rows[0].adder_luts == -1
    ref = rtl.synth(rtl.write(model, tmp_path / "rtl")).luts
    ours = sum(r.layer_luts * r.pixels for r in rows)
    assert ref / 1.2 <= ours <= 1.2 * ref, (ours, ref)
