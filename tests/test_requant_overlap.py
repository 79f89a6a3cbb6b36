"""Issue 21: a folded conv requantises a pixel while the next pixel's products run
(hls_templates/nnet_vecq_fold.h, vecq_fold_row), so a pixel takes R cycles, not R + requant.

* cycles: the estimator's count is the kernel's loop trips, worked out by hand here for a small
  conv (io_stream and io_parallel); the schedule before (a product loop, then a requantisation
  loop, per pixel) stays where the hold registers do not pay (a fully folded conv), for dense
  layers and streamed codes. (tests/test_hls_folding.py: the kernel flag is emitted exactly where
  the estimate chose the overlap, and both schedules C-simulate bit-exactly.)
* LUTs: the hold registers (the accumulators' copies, read by each requantisation unit through a
  multiplexer) as the estimator prices them are within 10 % of yosys on their Verilog form at
  LeNet-5's conv1 and conv2 points; copying the sum into them while the accumulator resets
  costs no LUT on yosys. (The C simulation of the folded convs, bit-exact:
  tests/test_hls_folding.py and tests/test_products_array.py.)
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.hls.costs import LayerEstimate, requant_hold
from vecq_hw.hls.mappings import mapping_for
from vecq_hw.hls.partial_sums import sum_width
from vecq_hw.ir.examples import random_codes, weighted_layer


def _conv(n_filt: int = 8) -> ir.Model:
    """6 x 6 x 2 input, 3 x 3 conv, no padding: 4 x 4 output pixels, n_filt filters."""
    rng = np.random.default_rng(0)
    t_in = FixedType(8, 2, True)
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(6, 6, 2)),
              weighted_layer(ir.Conv2D, "conv", rng, t_in, random_codes(rng, (3, 3, 2, n_filt), 2), 2, "odd",
                             FixedType(8, 3, True, "AP_RND", "AP_SAT"))]
    return ir.Model(name="overlap", layers=layers).check()


def test_conv_cycles_are_the_overlapped_loop_trips():
    node = _conv().nodes()[1]
    m = mapping_for(node)
    # R = 4, 8 filters: 2 requantisation units, 4 requant cycles (<= R: hidden behind the next
    # pixel); a row: 4 pixels x 4 + 4 drain + 3 fill = 23 trips; 4 rows. io_stream also reads
    # the 36 input pixels (its line buffer's loop overlaps nothing).
    assert m.estimate(node, 4, "io_parallel").cycles == 4 * 23
    assert m.estimate(node, 4, "io_stream").cycles == 4 * 23 + 36
    # R = 3 (144 products / 3): 3 units, 3 requant cycles; row = 4 x 3 + 3 + 3
    assert m.estimate(node, 3, "io_parallel").cycles == 4 * 18


def test_conv_prices_the_hold_registers(monkeypatch):
    node = _conv().nodes()[1]
    m = mapping_for(node)
    held = m.estimate(node, 4, "io_parallel")
    assert held.overlap
    monkeypatch.setattr(type(m), "overlap_pays", lambda *a: False)
    waits = m.estimate(node, 4, "io_parallel")
    # priced at the accumulator's worst-case width over codes (18 products x max|level| x max|x|),
    # as the slot array is, so that SRQ's prices depend on the bits only
    acc_w = sum_width(18, node.layer.levels, node.in_types[0])
    assert acc_w >= int(node.layer.accum_type.width)
    assert held.ffs - waits.ffs == 8 * acc_w  # 8 accumulator copies
    assert held.luts - waits.luts == pytest.approx(2 * acc_w * 1.6)  # 2 units x acc_w bits x a 4:1 mux (one LUT6)
    assert waits.cycles == 16 * (4 + 4 + 3)


def test_slow_plans_keep_the_sequential_schedule():
    """Fully folded (R = P = 144, one product slot): the hold registers would cost more LUTs than
    the 8 + 3 cycles a pixel they save are worth (H R >= L (requant + fill))."""
    node = _conv().nodes()[1]
    e = mapping_for(node).estimate(node, 144, "io_parallel")
    assert not e.overlap and e.cycles == 16 * (144 + 8 + 3)


def test_dense_keeps_the_sequential_schedule():
    from vecq_hw.ir.examples import random_mlp
    model = random_mlp(2, seed=1, sizes=(24, 16, 10))
    node = next(n for n in model.nodes() if n.layer.name == "fc1")
    # one input per frame: R = 8 product cycles, then 16 outputs by ceil(16 / 8) = 2 units: 8 cycles
    assert mapping_for(node).estimate(node, 8, "io_parallel").cycles == 8 + 8


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys")
def test_the_copy_and_reset_cost_no_lut():
    """vecq_fold_row copies the sum into hold and resets the accumulator at a pixel's last cycle:
    yosys maps that to the plain accumulator's LUTs (the reset on the FFs, the copy a clock enable)."""
    from vecq_hw.hls.estimate.hold_form import accumulate_verilog
    from vecq_hw.hls.estimate.yosys import yosys_luts

    plain, held = (yosys_luts(accumulate_verilog(20, 10, h)) for h in (False, True))
    assert held["luts"] == plain["luts"] > 0 and held["ffs"] == 2 * plain["ffs"] == 40


@pytest.mark.skipif(shutil.which("yosys") is None, reason="needs yosys")
@pytest.mark.parametrize("n,units,w", [(64, 2, 20), (32, 7, 16)])  # LeNet-5 conv2 at R = 32, conv1 at R = 5
def test_hold_registers_cost_what_the_estimator_says(n, units, w):
    from vecq_hw.hls.estimate.hold_form import hold_verilog
    from vecq_hw.hls.estimate.yosys import yosys_luts

    got = yosys_luts(hold_verilog(n, units, w))
    e = LayerEstimate("conv", "conv2d")
    requant_hold(e, n, units, w)
    assert got["ffs"] == e.ffs == n * w  # the copies: clock enables, no logic
    assert abs(e.luts / got["luts"] - 1) < 0.1, (e.luts, got)
    assert math.ceil(n / units) > 1 and got["luts"] > 0


def test_sliced_output_packs_keep_the_pixel_loop():
    """The kernel overlaps only with whole-pixel output packs (vecq_conv_lines_pixel::row); a conv
    whose output leaves in 2 packs of 4 channels is estimated without the hold registers."""
    from vecq_hw.hls.estimate import estimate

    model = _conv()
    whole = estimate(model, {"conv": 4}, io_type="io_stream").layers[1]
    sliced = estimate(model, {"conv": 4}, io_type="io_stream", packs={"conv": 4}).layers[1]
    assert whole.overlap and not sliced.overlap
    assert sliced.cycles == 16 * (4 + 4 + 3) + 36 and sliced.luts < whole.luts
