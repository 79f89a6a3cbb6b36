"""The pre-synthesis estimate and ``fit``: monotone where it must be, never above the budget.

The LUT coefficients come from configs/hardware/lut_calibration.yaml (yosys measurements); these tests
assert properties that hold for any calibration the model accepts, not numbers it produced.
"""

from __future__ import annotations

import pytest

from vecq_hw.errors import VecQError
from vecq_hw.hls.estimate import estimate, fit, get_part, known_parts, product_luts
from vecq_hw.hls.estimate.examples import paper_lenet5
from vecq_hw.hls.costs import calibration
from vecq_hw.hls.folding import divisors, products_per_input, weighted_nodes
from vecq_hw.ir.examples import random_cnn, random_mlp

PARTS = ("xc7z020", "xczu3eg", "xczu9eg", "xcvu9p", "xcu250")


def test_parts_table_and_unknown_part():
    assert set(PARTS) <= set(known_parts())
    z = get_part("xc7z020clg400-1")  # a full part name finds its entry
    assert z.name == "xc7z020" and z.luts == 53200 and z.dsps == 220 and z.bram18 == 280
    assert get_part("xcu250-figd2104-2L-e").uram > 0
    for p in PARTS:
        assert all(getattr(get_part(p), r) >= 0 for r in ("luts", "ffs", "dsps", "bram18", "uram"))
    with pytest.raises(VecQError, match="unknown part 'xc9x999'.*xc7z020.*xcu250") as exc:
        get_part("xc9x999")
    assert "\n" not in str(exc.value)
    with pytest.raises(VecQError, match="unknown part"):
        estimate(random_mlp(2), part="stratix10")


def test_calibration_is_measured():
    cal = calibration()
    assert set(cal["coefficients"]) == {"const", "var"}
    assert "yosys" in cal["source"].lower() and len(cal["points"]) >= 20 and len(cal["held_out"]) >= 10
    # the stored coefficients are the least-squares fit of the stored measurements, and the
    # held-out designs are not among the fitted ones
    from vecq_hw.hls.estimate.calibrate import fit as refit
    for mode, coef in refit(cal["points"]).items():
        assert coef == pytest.approx(cal["coefficients"][mode], abs=1e-4)
    fitted = {(p["mode"], p["k"], p["w"], p["n"]) for p in cal["points"]}
    assert not fitted & {(p["mode"], p["k"], p["w"], p["n"]) for p in cal["held_out"]}


@pytest.mark.parametrize("k,w", [(1, 8), (2, 8), (3, 6), (4, 12), (8, 16)])
def test_more_folding_never_more_product_luts(k, w):
    p = 720
    luts = [product_luts(p, r, k, w) for r in divisors(p)]
    assert all(b <= a for a, b in zip(luts, luts[1:])), luts
    assert luts[-1] < luts[0]  # folding does save LUTs
    # more products (more channels) -> more LUTs at the same folding
    for r in (1, 2, 8):
        assert product_luts(2 * p, r, k, w) > product_luts(p, r, k, w)


def test_layer_estimate_monotone_in_folding_and_channels():
    model = random_cnn(2, seed=1, channels=(4, 8))
    node = weighted_nodes(model)[1]  # conv2: 3 x 3 x 4 x 8 products per pixel
    prev = None
    for r in divisors(products_per_input(node)):
        lyr = next(x for x in estimate(model, {node.layer.name: r}).layers if x.name == node.layer.name)
        if prev is not None:
            assert lyr.slots < prev.slots and lyr.dsps <= prev.dsps and lyr.cycles > prev.cycles
        prev = lyr
    small = estimate(random_cnn(2, seed=1, channels=(4, 8)))
    big = estimate(random_cnn(2, seed=1, channels=(8, 16)))
    for name in ("conv1", "conv2"):
        a = next(x for x in small.layers if x.name == name)
        b = next(x for x in big.layers if x.name == name)
        assert b.luts > a.luts and b.slots > a.slots


def test_estimate_refuses_bad_folding():
    model = random_mlp(2, sizes=(24, 16, 10))
    with pytest.raises(VecQError, match="layer 'fc1' .*reuse factor 7 must divide"):
        estimate(model, {"fc1": 7})
    with pytest.raises(VecQError, match="'nope' is not a weighted layer"):
        estimate(model, {"nope": 2})


@pytest.mark.parametrize("part", ["xc7z020", "xczu3eg", "xcu250"])
@pytest.mark.parametrize("target", ["throughput", "latency"])
def test_fit_never_above_budget(part, target):
    model = random_cnn(2, seed=3, size=16, channels=(8, 16))
    for headroom in (0.8, 0.05, 0.001):
        r = fit(model, part, headroom=headroom, target=target)
        if r.ok:
            assert r.plan.fits(headroom)
            p = get_part(part)
            for res, used in r.plan.totals().items():
                assert used <= getattr(p, res) * headroom
            # each layer's reuse is legal, and the plan re-estimates to the same numbers
            again = estimate(model, r.plan.reuse(), part=part, io_type=r.plan.io_type)
            assert again.totals() == r.plan.totals()
        else:
            assert r.over_budget() and not r.closest.fits(headroom)


def test_fit_prefers_throughput_when_budget_grows():
    model = random_cnn(2, seed=3, size=16, channels=(8, 16))
    small, big = fit(model, "xc7z020", headroom=0.02), fit(model, "xcu250", headroom=0.8)
    assert big.ok
    if small.ok:
        assert big.plan.ii <= small.plan.ii


def test_paper_lenet5_fits_xcu250_not_unfolded():
    model = paper_lenet5(2)
    assert estimate(model, part="xc7z020").utilisation()["luts"] > 1  # unfolded: far beyond a Zynq-7020
    r = fit(model, "xcu250")
    assert r.ok and r.plan.fits(0.8) and max(r.plan.reuse().values()) > 1


def _cli(*args):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_cli_estimate_fit_and_reuse(tmp_path):
    from vecq_hw.ir.io import save_model

    model = random_mlp(2, seed=4, sizes=(24, 16, 10))
    save_model(model, tmp_path / "m")
    r = _cli("estimate", tmp_path / "m", "--reuse", "fc1=8", "--part", "xczu3eg")
    assert r.exit_code == 0, r.output
    assert "total on xczu3eg" in r.output and "frames/s" in r.output
    assert any(line.split()[:3] == ["fc1", "dense", "8"] for line in r.output.splitlines())
    for args, msg in ((["--part", "xc0bogus"], "unknown part 'xc0bogus'"), (["--reuse", "fc1=7"], "must divide"),
                      (["--reuse", "fc1"], "expected LAYER=R")):
        r = _cli("estimate", tmp_path / "m", *args)
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = _cli("hls", tmp_path / "m", "--out", tmp_path / "p", "--reuse", "fc9=2")
    assert r.exit_code == 2 and "'fc9' is not a weighted layer" in r.output
    r = _cli("fit", tmp_path / "m", "--part", "xc7z020", "--out", tmp_path / "prj")
    assert r.exit_code == 0, r.output
    assert r.output.startswith("plan (") and (tmp_path / "prj" / "vecq_project.json").is_file()
    r = _cli("fit", tmp_path / "m", "--part", "xc7z020", "--headroom", "0.00001", "--out", tmp_path / "none")
    assert r.exit_code == 1 and "NOTHING FITS xc7z020" in r.output and not (tmp_path / "none").exists()


def test_stream_pool_estimate_is_a_line_buffer_not_a_frame():
    """io_stream pools with stride != size stream through pool_height rows (vecq_pool2d): their
    buffer estimate must not grow with the input's height (the frame-buffered kernel's did)."""
    from vecq_hw import ir
    from vecq_hw.fixed import FixedType

    def pool_layer(height):
        t = FixedType(8, 2, True)
        m = ir.Model(name="p", layers=[ir.Input(name="input_1", out_type=t, shape=(height, 13, 3)),
                                       ir.MaxPool2D(name="pool", out_type=t, pool=(3, 3), stride=(2, 2))]).check()
        return next(x for x in estimate(m, io_type="io_stream").layers if x.name == "pool")

    short, tall = pool_layer(16), pool_layer(16 * 64)
    assert (tall.bram18, tall.luts) == (short.bram18, short.luts)
    assert tall.cycles == 64 * short.cycles  # one input pixel per cycle: h * w


def test_methods_product_forms_are_proven_and_measured():
    """The per-method LUT/MAC of benchmarks/methods.py is measured on Verilog written in our
    kernels' form for every product kind (on a slot array: inputs shared by output channels);
    yosys proves each form equal to x * levels[c] for every input (SAT), catches a wrong
    reference, and the constant-weight {-1, 0, +1} product (add/subtract/skip) costs fewer LUTs
    than an 8-bit one."""
    import numpy as np

    from vecq_hw.hls.estimate.calibrate import kernel_lut_per_mac, kernel_product, prove_kernel_form
    from vecq_hw.ir.levels import named_levels
    from vecq_hw.quant import ESB

    tables = ([(named_levels("odd", k), k) for k in (1, 2, 3, 4)] + [(named_levels("int", 3), 3)]
              + [(np.array([-1, 0, 1, 1]), 2), (ESB(4, False, 2).levels(), 4), (ESB(4, False, 1).levels(), 4),
                 (np.array([-23, -9, -3, 0, 5, 11, 19, 27]), 3)])
    assert {kernel_product(lv, b)[0] for lv, b in tables} == {"select", "addsub", "digits", "multiply"}
    for lv, b in tables:
        assert prove_kernel_form(lv, b, n=1), (b, lv)
    wrong = named_levels("odd", 2).copy()
    wrong[1] += 2
    assert not prove_kernel_form(named_levels("odd", 2), 2, n=1, gold_levels=wrong)
    ternary = kernel_lut_per_mac(np.array([-1, 0, 1, 1]), 2, m=2, n=2, constant=True)
    int8 = kernel_lut_per_mac(named_levels("int", 8), 8, m=2, n=2, constant=True)
    assert 0 < ternary < int8
