"""Channel-sliced io_stream packs (issue 28, vecq_hw/hls/packs.py): a token of an image stream
carries k of its C channels, so folded layers get FIFOs C / k times narrower.

One HLS project (module fixture): a MobileNetV2 cut to 16 x 16 and two stages (stem, depthwise,
pointwise expand and project, relu, a residual add, 1x1 conv, global pool, dense), each tensor
with a different pack (1, 2, 3, 4, 8, 16 values a token, whole pixels elsewhere) and one expand
conv reading its codes from DDR. It is C-simulated against the simulator (exactly), run with
FIFOs of their pragma depths (one token less on the skip FIFO deadlocks), and rebuilt with the
line-buffer conv counting tokens as pixels, which must disagree.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from vecq_hw.errors import VecQError
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.dataflow_check import dataflow_check
from vecq_hw.hls.estimate import estimate, fit
from vecq_hw.hls.estimate.packed import SLACK
from vecq_hw.hls.fifos import plan_fifos
from vecq_hw.hls.packs import packable_groups, resolve_packs
from vecq_hw.ir.examples import random_inputs, random_resnet
from vecq_hw.ir.imagenet import mobilenet_v2, resnet18
from vecq_hw.sim import simulate

STAGES = ((1, 16, 1, 1), (6, 24, 2, 2))
PACKS = {"input_1": 1, "stem": 4, "b1_1_dw": 2, "b1_1_project": 1, "b2_1_expand": 8, "b2_1_dw": 16,
         "b2_1_project": 4, "b2_2_expand": 3, "last": 8}


def small_mobilenet():
    return mobilenet_v2(size=16, width_mult=0.5, last_channels=32, num_classes=10, stages=STAGES)


def test_tensors_an_activation_or_add_joins_share_one_pack():
    """hls4ml's relu and add read one pack and write one of the same size (its add asserts it),
    so a relu's input and output, and an add's inputs and output, are one group; vectors and the
    tensors of hls4ml's own pool (ResNet-18's stem pool: stride == size) keep whole pixels."""
    groups = {tuple(sorted(g)) for g in packable_groups(small_mobilenet()).values()}
    assert ("b2_1_project", "b2_2_add", "b2_2_project") in groups and ("stem", "stem_relu") in groups
    assert not any("gap" in g or "fc" in g for g in groups)
    resolved = resolve_packs(small_mobilenet(), {"b2_2_add": 4})
    assert resolved == {"b2_1_project": 4, "b2_2_project": 4, "b2_2_add": 4}
    r18 = {m for g in packable_groups(resnet18(size=32, width=8, num_classes=10)).values() for m in g}
    assert "stem_pool" not in r18 and "stem_relu" not in r18 and "l1b1_conv1" in r18


@pytest.mark.parametrize("packs,msg", [
    ({"nope": 2}, "'nope' is not a layer"),
    ({"stem": 3}, "a divisor of the layer's 16 channels"),
    ({"stem": 0}, "a positive number"),
    ({"stem": 4, "stem_relu": 2}, "shares its stream's pack with 'stem'"),
    ({"gap": 4}, "must carry whole pixels"),
])
def test_bad_packs_refused_in_one_line(packs, msg):
    with pytest.raises(VecQError, match=msg) as exc:
        resolve_packs(small_mobilenet(), packs)
    assert "\n" not in str(exc.value)


def test_options_and_estimate_refuse_packs_outside_io_stream():
    with pytest.raises(VecQError, match="packs"):
        HlsOptions(packs={"stem": 4})
    with pytest.raises(VecQError, match="packs.stem"):
        HlsOptions(io_type="io_stream", packs={"stem": True})
    with pytest.raises(VecQError, match="io_parallel"):
        estimate(small_mobilenet(), part="xczu9eg", io_type="io_parallel", packs={"stem": 4})


def test_skip_fifo_depth_counts_tokens_of_a_slice():
    """random_resnet's identity shortcut (test_big_networks: 2W - 1 with whole pixels): the conv
    writes its first output token after 2 input rows = 2W pixels of S tokens each, and the clone
    feeds the conv path first, so the skip FIFO must hold 2WS - 1 tokens, each 1/S as wide."""
    for size in (8, 16):
        model = random_resnet(2, size=size)  # 4 channels in the first block
        for k, s in ((4, 1), (2, 2), (1, 4)):
            fifos = {f.name: f for f in plan_fifos(model, packs={"stem_relu": k})}
            skip = fifos["stem_relu->b1_add"]
            assert (skip.depth, skip.tokens, skip.width) == (2 * size * s - 1, size * size * s, k * 7)


def test_estimate_charges_slices_in_fifo_width_and_cycles():
    """A relu moves one token a cycle: C / k tokens a pixel; an unfolded conv (one output pixel a
    cycle) reads one pack a cycle and waits for its s_out packs to leave; FIFOs are k values wide."""
    model = small_mobilenet()
    whole = estimate(model, part="xczu9eg", io_type="io_stream")
    sliced = estimate(model, part="xczu9eg", io_type="io_stream", packs=PACKS)
    w, s = {e.name: e for e in whole.layers}, {e.name: e for e in sliced.layers}
    assert s["b2_1_expand_relu"].cycles == 8 * 8 * 6 == w["b2_1_expand_relu"].cycles * 6  # 48 channels, 8 a token
    # b2_1_expand: 8 x 8 x 8 input (b1_1_project: 1 a token), 48 outputs (8 a token), R = 1
    assert w["b2_1_expand"].cycles == 64 + 64 and s["b2_1_expand"].cycles == 64 * 6 + 64 * 8
    # a relu holds one token in flight, not a pixel: 8 of its 48 values of 7 bits; so does the
    # level-table conv, which requantises each pack as it leaves (vecq_requant_out): 8 of 48 x 8 bits
    assert (w["b2_1_expand_relu"].ffs, s["b2_1_expand_relu"].ffs) == (48 * 7, 8 * 7)
    assert w["b2_1_expand"].ffs - s["b2_1_expand"].ffs == (48 - 8) * 8
    assert sliced.fifos.memory["fifos"]["bits"] < whole.fifos.memory["fifos"]["bits"]
    assert sliced.packs["b2_1_expand_relu"] == 8 and "gap" not in sliced.packs


def test_fit_takes_the_narrowest_pack_that_keeps_the_ii():
    model = small_mobilenet()
    full = fit(model, "xczu9eg", io_type="io_stream", slicing=False)
    r = fit(model, "xczu9eg", io_type="io_stream")
    limit = int(full.plan.ii * (1 + SLACK))
    assert r.ok and full.plan.ii <= r.plan.ii <= limit and r.plan.reuse() == full.plan.reuse()
    assert r.plan.fifos.luts < full.plan.fifos.luts and r.plan.packs
    # every sliced group: one value fewer a token (the next divisor down) would slow the design
    channels = {n.layer.name: int(n.out_shape[-1]) for n in model.nodes()}
    for members in packable_groups(model).values():
        k = r.plan.packs.get(members[0], channels[members[0]])
        narrower = [d for d in range(1, k) if channels[members[0]] % d == 0]
        if narrower:
            packs = dict(r.plan.packs, **{m: narrower[-1] for m in members})
            slower = estimate(model, r.plan.reuse(), part="xczu9eg", io_type="io_stream", packs=packs)
            assert slower.ii > limit, members
    fixed = fit(model, "xczu9eg", io_type="io_stream", packs={"stem": 16})
    assert "stem" not in fixed.plan.packs  # whole pixels, as asked


# --------------------------------------------------------------------------- the built project

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    model = small_mobilenet()
    x = random_inputs(model, 2, seed=3)
    y = simulate(model, x_mantissa=x).output
    opts = HlsOptions(io_type="io_stream", part="xczu9eg", packs=PACKS, weights={"b2_2_expand": "offchip"},
                      reuse={"b2_2_expand": 48, "b2_1_dw": 9})
    prj = write_project(model, tmp_path_factory.mktemp("sliced") / "prj", opts, expected=(x, y))
    return model, prj, y


@pytest.mark.xdist_group("sliced_packs")
def test_sliced_streams_are_declared_and_csim_bit_exact(project):
    model, prj, y = project
    defines = (prj / "firmware" / "defines.h").read_text()
    sizes = {int(m) for m in re.findall(r"nnet::array<[^;]*, (\d+)\*1> layer\d+_t;", defines)}
    assert {1, 2, 3, 4, 8, 16} <= sizes  # the packs, declared
    meta = json.loads((prj / "vecq_project.json").read_text())
    assert meta["packs"] == resolve_packs(model, PACKS)
    r = csim(prj, opt="-O0")
    assert r.ok and r.n == 2 and r.value_mismatches == 0 and np.array_equal(r.outputs, y.reshape(2, -1))


@pytest.mark.xdist_group("sliced_packs")
def test_sliced_fifo_depths_keep_the_dataflow_alive_and_one_less_deadlocks(project):
    _, prj, _ = project
    fifos = json.loads((prj / "vecq_project.json").read_text())["fifos"]
    (skip,) = [f for f in fifos if f["reason"]]
    # b2_2_add: 4 x 4 pixels of 4 tokens; the 3x3 depthwise needs 2 rows before its first output
    assert skip["fifo"] == "b2_1_project->b2_2_add" and skip["tokens"] == 64 and skip["width"] == 4 * 8
    ok = dataflow_check(prj, samples=1)
    assert not ok.deadlock and ok.mismatches == 0 and ok.n == 1
    short = dataflow_check(prj, depths={skip["stream"]: skip["depth"] - 1}, samples=1)
    assert short.deadlock and f"'{skip['stream']}'" in short.log


@pytest.mark.xdist_group("sliced_packs")
def test_a_conv_that_counts_tokens_as_pixels_disagrees(project, tmp_path):
    """The check can fail: the line-buffer conv rebuilt to count input rows in tokens as if each
    were a pixel (what whole-pixel packs allow) emits rows before they are in."""
    _, prj, _ = project
    bad = tmp_path / "bad"
    shutil.copytree(prj, bad)
    header = bad / "firmware" / "nnet_utils" / "nnet_vecq_conv.h"
    text = header.read_text()
    wrong = text.replace("int(((p + 1) * data_T::size) / row_len)", "int((p + 1) / CONFIG_T::in_width)")
    assert wrong != text
    header.write_text(wrong)
    r = csim(bad, opt="-O0")
    assert not r.cached and r.value_mismatches > 0


def test_cli_pack_option_and_fit_writes_its_packs(tmp_path):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    from vecq_hw.ir.io import save_model

    save_model(small_mobilenet(), tmp_path / "m")
    run = CliRunner().invoke
    r = run(cli, ["estimate", str(tmp_path / "m"), "--part", "xczu9eg", "--io-type", "io_stream", "--pack",
                  "b2_2_add=4"])
    assert r.exit_code == 0 and "b2_1_project=4" in r.output and "b2_2_project=4" in r.output, r.output
    for bad, msg in (("stem=x", "expected LAYER=K"), ("stem=3", "divisor")):
        r = run(cli, ["estimate", str(tmp_path / "m"), "--io-type", "io_stream", "--pack", bad])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output
    r = run(cli, ["fit", str(tmp_path / "m"), "--part", "xczu9eg", "--io-type", "io_stream", "--out",
                  str(tmp_path / "prj")])
    assert r.exit_code == 0 and "sliced streams" in r.output, r.output
    written = json.loads((tmp_path / "prj" / "vecq_project.json").read_text())["packs"]
    assert written == fit(small_mobilenet(), "xczu9eg", io_type="io_stream").plan.packs and written
