"""Issue 21: the folded slot array's products -- select plans, yosys counts and proofs, C simulation.

* Plans (vecq_hw/hls/select.py): the radix-4 digits the C++ named class computes (``named_plan``)
  are what the independent search finds for the odd and int tables, k = 1..8, and add up to the
  table; ESB's sign-and-magnitude tables (k = b - 2) have a plan at every b, ESB tables whose
  exponent shifts do not (their bits interact); every group fits one LUT6 per accumulator bit.
* yosys (a slot array: one input shared by 16 accumulating outputs, 8-bit activations): the
  kernels' select form costs fewer LUTs than the previous kernels' form (one shifted copy of x per
  code bit) at k = 2 and 4, and is proven equal to x * levels[c] by SAT (one stage, every
  accumulator value; two chained inputs at k = 2); the estimator's folded-layer model (one LUT per
  accumulator bit of each group's adder, plus the shared multiples) is within 10 % of yosys. Every form, k = 1..8, ESB against VecQ, full
  sizes: benchmarks/products.py (tests/test_estimate.py proves the forms of every product kind).
* A folded MLP with an ESB sign-and-magnitude table (the 'select' class: x's multiples once per
  input, shared by the slots of a cycle, an unaligned block included): g++ C simulation equals
  the simulator bit for bit.
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from vecq_hw.hls.select import check, find_plan, fits, named_plan
from vecq_hw.ir.levels import named_levels
from vecq_hw.quant import ESB
from vecq_hw.quant.esb import esb_levels


def test_named_plans_are_the_searched_plans_and_fit():
    for name in ("odd", "int"):
        for k in range(1, 9):
            levels = named_levels(name, k)
            plan = named_plan(name, k)
            assert check(plan, levels), (name, k)
            assert all(fits(g, e) for g, e in zip(plan.groups, plan.entries))
            assert len(plan.groups) == (k + 1) // 2  # one adder per two code bits
            if k > 6:  # the search over every pairing: k <= 6 here (benchmarks/products.py: all k)
                continue
            found = find_plan(levels, k)
            assert found is not None and check(found, levels)
            assert len(found.groups) == len(plan.groups)
            if name == "odd":  # digits {-3, -1, 1, 3} 4^t: the search finds exactly x and 3x
                assert found == plan and set(plan.multiples) <= {1, 3}


def test_esb_sign_magnitude_has_a_plan_shifting_exponents_do_not():
    for b in range(3, 6):
        for k in range(0, b - 1):
            plan = find_plan(esb_levels(b, k), b)
            if k == b - 2:  # one exponent bit: sign and magnitude, levels c + [c < 0]
                assert plan is not None and check(plan, ESB(b, False, k).levels())
                assert len(plan.groups) == (b + 1) // 2
            else:
                assert plan is None, (b, k)
    wrong = named_levels("odd", 3).copy()
    wrong[0] += 2
    assert not check(named_plan("odd", 3), wrong)


yosys = pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys")


@yosys
def test_select_form_beats_the_previous_form_and_is_proven():
    from vecq_hw.hls.estimate.array_forms import ArrayWriter, array_luts, prove_array_form
    from vecq_hw.hls.select import adder_luts, multiple_luts

    odd = {k: (named_levels("odd", k), named_plan("odd", k)) for k in (2, 4)}
    designs = [(lv, k, form, plan) for k, (lv, plan) in odd.items() for form in ("select", "shift_add_bits")]
    with ThreadPoolExecutor(max_workers=2) as pool:
        got = list(pool.map(lambda d: array_luts(d[0], d[1], d[2], d[3], m=1, n=16)["lut_per_mac"], designs))
    new2, old2, new4, old4 = got
    assert new2 < old2 and new4 < old4, got
    # the estimator's folded-layer cost (hls/mappings.py): one LUT per accumulator bit of each
    # group's adder per slot, plus the input's multiples -- within 10 % of yosys's count
    for k, lut_per_mac in ((2, new2), (4, new4)):
        lv, plan = odd[k]
        model = 16 * adder_luts(plan, ArrayWriter(lv, k, 8, 1, 16, plan).W) + multiple_luts(plan, 8)
        assert abs(model / (16 * lut_per_mac) - 1) < 0.1, (k, model, 16 * lut_per_mac)
    assert prove_array_form(odd[2][0], 2, "select", odd[2][1], w=4, m=2, n=2)  # two inputs chained
    assert prove_array_form(odd[4][0], 4, "select", odd[4][1])  # one stage, every accumulator value


def test_esb5_plan_splits_the_sign_over_two_groups():
    """ESB(5, 3), levels p - 15 s (p the four low code bits, s the sign bit): three groups with
    shifts 3, 1, 0 need s in two of them (-15 = -8 - 7), so no term reaches past +/-15 (a -16 term
    widens the sum: 41 LUT/MAC, benchmarks/results/products.md) and every sign is a plain code bit."""
    from vecq_hw.hls.select import reach, sign_cost

    levels = esb_levels(5, 3)
    plan = find_plan(levels, 5)
    assert check(plan, levels) and all(fits(g, e) for g, e in zip(plan.groups, plan.entries))
    assert sorted(plan.shift(t) for t in range(3)) == [0, 1, 3]
    assert sum(map(len, plan.groups)) == 6 and sum(4 in g for g in plan.groups) == 2
    assert reach(plan) == 4 and max(sign_cost(plan, t) for t in range(3)) <= 1
    # a zero entry's sign is free: chosen as a code bit, never changing the sum
    for t in range(3):
        assert all(e == 0 for e, n, (_, _, neg) in zip(plan.entries[t], plan.negates(t), plan.picks(t)) if n != neg)


@yosys
def test_esb5_select_costs_no_more_than_vecq5_and_is_proven():
    """Issue 21's done-when: ESB run-time LUT/MAC <= VecQ's at b = 5 (b = 3, 4: products.md), on
    the slot array (one input shared by 16 outputs), with the estimator's model within 10 %."""
    from vecq_hw.hls.estimate.array_forms import ArrayWriter, array_luts, prove_array_form
    from vecq_hw.hls.select import adder_luts, multiple_luts

    tables = [(esb_levels(5, 3), find_plan(esb_levels(5, 3), 5)), (named_levels("odd", 5), named_plan("odd", 5))]
    with ThreadPoolExecutor(max_workers=2) as pool:
        esb, vecq = pool.map(lambda t: array_luts(t[0], 5, "select", t[1], m=1, n=16)["lut_per_mac"], tables)
    assert esb <= vecq, (esb, vecq)
    lv, plan = tables[0]
    model = 16 * adder_luts(plan, ArrayWriter(lv, 5, 8, 1, 16, plan).W) + multiple_luts(plan, 8)
    assert abs(model / (16 * esb) - 1) < 0.1, (model, 16 * esb)
    assert prove_array_form(lv, 5, "select", plan, w=4)  # one stage, every accumulator value


@yosys
def test_partial_sums_cost_what_the_estimator_says_and_are_proven():
    """A cycle's products of one output summed at their own width, then one add into the wide
    accumulator (hls/partial_sums.py): fewer yosys LUTs than chaining them into the accumulator,
    the estimator's model within 10 % of yosys, and SAT-proven equal to acc + sum x * levels[c]."""
    from vecq_hw.hls.estimate.array_forms import ArrayWriter, array_luts, prove_array_form
    from vecq_hw.hls.select import adder_luts, multiple_luts

    lv, plan = named_levels("odd", 2), named_plan("odd", 2)
    m, n, acc = 4, 4, 20  # 4 inputs a cycle into 20-bit accumulators (a conv layer's fan-in)
    aw = ArrayWriter(lv, 2, 8, m, n, plan, acc_width=acc)
    with ThreadPoolExecutor(max_workers=2) as pool:
        chain, psum = pool.map(lambda f: array_luts(lv, 2, f, plan, m=m, n=n, acc_width=acc)["luts"],
                               ("select", "select_psum"))
    assert psum < chain, (psum, chain)
    model = n * m * adder_luts(plan, aw.Wn) + n * aw.W + m * multiple_luts(plan, 8)
    assert abs(model / psum - 1) < 0.1, (model, psum)
    assert prove_array_form(lv, 2, "select_psum", plan, w=4, m=2, n=2, acc_width=aw.Wn + 3)
    wrong = lv.copy()
    wrong[1] += 2
    assert not prove_array_form(lv, 2, "select_psum", plan, w=4, m=2, n=2, acc_width=aw.Wn + 3, gold_levels=wrong)


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_folded_esb5_split_plan_and_partial_sums_csim_equals_simulator(tmp_path):
    """The split plan through the HLS 'select' class (the sign bit read by two groups, free zero
    signs in the negate table), fc1 with partial sums (R = 8: 8 products per output a cycle summed
    in psum_t), fc2 without (2 a cycle: not cheaper): g++ C simulation equals the simulator."""
    from vecq_hw.hls import HlsOptions, csim, write_project
    from vecq_hw.hls.mappings import mapping_for
    from vecq_hw.hls.products import choose_product
    from vecq_hw.ir.examples import random_inputs, random_mlp
    from vecq_hw.sim import simulate

    model = random_mlp(5, seed=5, levels=esb_levels(5, 3), sizes=(64, 8, 4))
    reuse = {"fc1": 8, "fc2": 4}
    weighted = [n for n in model.nodes() if hasattr(n.layer, "levels")]
    assert {choose_product(n.layer, n.in_types[0]).kind for n in weighted} == {"select"}
    widths = [mapping_for(n).psum_width(n, reuse[n.layer.name]) for n in weighted]
    assert widths[0] is not None and widths[0] < weighted[0].layer.accum_type.width and widths[1] is None
    x = random_inputs(model, 300, seed=4)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "prj", HlsOptions(io_type="io_parallel", reuse=reuse), expected=(x, y))
    assert "typedef ap_fixed<%d," % widths[0] in (prj / "firmware" / "parameters.h").read_text()
    out = csim(prj)
    assert out.mismatches == 0 and out.value_mismatches == 0, out.log[-2000:]
    np.testing.assert_array_equal(out.outputs, y.reshape(len(x), -1))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_folded_select_products_csim_equals_simulator(tmp_path):
    from vecq_hw.hls import HlsOptions, csim, write_project
    from vecq_hw.hls.products import choose_product
    from vecq_hw.ir.examples import random_inputs, random_mlp
    from vecq_hw.sim import simulate

    model = random_mlp(4, seed=21, levels=esb_levels(4, 2), sizes=(12, 10, 6))
    kinds = {choose_product(n.layer, n.in_types[0]).kind for n in model.nodes() if hasattr(n.layer, "levels")}
    assert kinds == {"select"}
    # fc1: 120 products, R = 15: 8 slots a cycle over 10-product groups (not aligned); fc2: R = 6
    x = random_inputs(model, 200, seed=3)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "prj", HlsOptions(io_type="io_parallel", reuse={"fc1": 15, "fc2": 6}),
                        expected=(x, y))
    out = csim(prj)
    assert out.mismatches == 0 and out.value_mismatches == 0, out.log[-2000:]
    np.testing.assert_array_equal(out.outputs, simulate(model, x_mantissa=x).output.reshape(len(x), -1))


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_folded_conv_partial_sums_csim_equals_simulator(tmp_path):
    """Partial sums in the folded conv kernels (io_stream: the line buffer; padding taps, a
    stride-2 conv and its projection): three convs with psum_t on, bit-exact in C simulation."""
    from vecq_hw.hls import HlsOptions, csim, write_project
    from vecq_hw.hls.mappings import mapping_for
    from vecq_hw.ir.examples import random_inputs, random_resnet
    from vecq_hw.sim import simulate

    model = random_resnet(2, seed=2)
    reuse = {"b1_conv": 4, "b2_conv1": 4, "b2_conv2": 8}
    on = [n.layer.name for n in model.nodes() if n.layer.name in reuse and mapping_for(n).psum_width(n, reuse[n.layer.name])]
    assert on == list(reuse)
    x = random_inputs(model, 100, seed=6)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "prj", HlsOptions(io_type="io_stream", reuse=reuse), expected=(x, y))
    assert (prj / "firmware" / "parameters.h").read_text().count("static const bool psum = true;") == 3
    out = csim(prj)
    assert out.mismatches == 0 and out.value_mismatches == 0, out.log[-2000:]
    np.testing.assert_array_equal(out.outputs, y.reshape(len(x), -1))
