"""Networks bigger than the chip (issue 28): weights from off-chip memory, FIFOs sized from the
dataflow schedule, memory per kind, ``fit`` over the whole range, the ImageNet-shape builders.

One HLS project is written and built once (module fixture): ResNet-18 at 32 x 32 and 8 channels
(the full topology: identity and projection shortcuts), one conv streaming its codes from DDR
and the classifier loading them into UltraRAM, io_stream, 2 test images. It is C-simulated
against the simulator's outputs (exactly), and run once more with FIFOs of their pragma depths in
one thread per process (hls/dataflow_check.py) to show that the depths computed from the
schedule keep the dataflow alive and that one token less deadlocks. The full-size networks are in
benchmarks/big_networks.py.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.costs import bram18_blocks, uram_blocks
from vecq_hw.hls.dataflow_check import dataflow_check
from vecq_hw.hls.estimate import estimate, fit, get_part
from vecq_hw.hls.fifos import DEFAULT_DEPTH, plan_fifos
from vecq_hw.hls.offchip import BLOB_ALIGN, BLOB_NAME
from vecq_hw.hls.synth_check import FULL_VALUES, _cut
from vecq_hw.ir.examples import random_inputs, random_mlp, random_resnet
from vecq_hw.ir.imagenet import mobilenet_v2, resnet18
from vecq_hw.ir.packing import unpack_codes
from vecq_hw.sim import simulate

SMALL = dict(size=32, width=8, num_classes=10)
STREAMED = {"l4b2_conv2": "offchip", "fc": "uram"}
REUSE = {"l4b2_conv2": 576, "fc": 64}  # 3x3x64x64 / 576 = 64 codes x 2 bits = one 128-bit word a cycle


def test_builders_match_the_published_parameter_counts():
    """torchvision's resnet18 has 11,689,512 parameters and mobilenet_v2 3,504,872: the conv and
    dense weights, one bias per class and two BatchNorm parameters per conv output channel
    (folded into our scales and biases)."""
    for model, published in ((resnet18(), 11_689_512), (mobilenet_v2(), 3_504_872)):
        weights = sum(layer.codes.size for layer in model.layers if isinstance(layer, ir.Weighted))
        bn = sum(int(layer.codes.shape[-1]) for layer in model.layers
                 if isinstance(layer, (ir.Conv2D, ir.DepthwiseConv2D)))
        assert weights + 2 * bn + 1000 == published, model.name
        assert model.input.shape == (224, 224, 3) and model.output_shape == (1000,)


def test_parts_table_ddr_and_uram():
    zu7 = get_part("xczu7ev-ffvc1156-2-e")
    assert (zu7.luts, zu7.ffs, zu7.dsps, zu7.bram18, zu7.uram) == (230400, 460800, 1728, 624, 96)
    zu9 = get_part("xczu9eg")
    assert zu9.has_ddr and zu9.uram == 0 and not get_part("xc7z020").has_ddr
    assert zu9.ddr_bytes_per_cycle(5.0) == pytest.approx(96.0)  # 19.2e9 B/s x 5e-9 s


def test_memories_take_the_best_block_ram_aspect_ratio():
    """UG573's shapes: BRAM18 16K x 1, 8K x 2, 4K x 4, 2K x 9, 1K x 18, 512 x 36 (simple dual port);
    UltraRAM 4K x 72 only. Each case needs a different shape to reach its minimum."""
    assert bram18_blocks(4096, 8) == 2  # 4K x 4 twice wide (1K x 18: 4 deep; 512 x 36: 8 deep)
    assert bram18_blocks(700, 40) == 3  # 1K x 18 three times wide (512 x 36: 2 x 2)
    assert bram18_blocks(512, 100) == 3  # 512 x 36 three times wide (1K x 18: 6 wide)
    assert (uram_blocks(4096, 72), uram_blocks(4097, 72), uram_blocks(4096, 73)) == (1, 2, 2)


def test_offchip_layer_memory_ddr_and_ii():
    """Streaming a dense layer's codes frees its ROM, costs an AXI port, reads its table once a
    frame from DDR (ceil(P k / W) words of W bits), and the DDR bounds the II."""
    model = random_mlp(2, sizes=(256, 64, 10))
    kw = dict(part="xczu9eg", io_type="io_stream")
    on = estimate(model, {"fc1": 256}, **kw)
    off = estimate(model, {"fc1": 256}, weights={"fc1": "offchip"}, **kw)
    fc1 = {e.name: e for e in on.layers}["fc1"], {e.name: e for e in off.layers}["fc1"]
    assert fc1[0].memory["weights"]["bits"] == 256 * 64 * 2 and "axi" not in fc1[0].memory
    assert "weights" not in fc1[1].memory and fc1[1].memory["axi"]["bram18"] + fc1[1].memory["axi"]["luts"] > 0
    assert off.ddr_bytes == math.ceil(256 * 64 * 2 / 128) * 16 and on.ddr_bytes == 0
    assert off.weights() == {"fc1": "offchip"} and off.utilisation()["ddr"] <= 1
    slow = dataclasses.replace(get_part("xczu9eg"), ddr_gbps=0.001)
    starved = estimate(model, {"fc1": 256}, weights={"fc1": "offchip"}, part=slow, io_type="io_stream")
    assert starved.ii == math.ceil(off.ddr_bytes / slow.ddr_bytes_per_cycle(5.0)) > off.ii


@pytest.mark.parametrize("weights,reuse,kw,msg", [
    ({"fc1": "offchip"}, {"fc1": 128}, dict(part="xczu9eg", io_type="io_parallel"), "needs io_stream"),
    ({"fc1": "offchip"}, {"fc1": 2}, dict(part="xczu9eg", io_type="io_stream"), "use R >= 256"),
    ({"fc1": "offchip"}, {"fc1": 128}, dict(part="xc7z020", io_type="io_stream"), "has no DDR bandwidth"),
    ({"fc1": "uram"}, {"fc1": 128}, dict(part="xczu9eg", io_type="io_stream"), "has no UltraRAM"),
    ({"fc9": "offchip"}, {}, dict(part="xczu9eg", io_type="io_stream"), "'fc9' is not a weighted layer"),
])
def test_streamed_layers_refused_in_one_line(weights, reuse, kw, msg):
    with pytest.raises(VecQError, match=msg) as exc:
        estimate(random_mlp(2, sizes=(256, 64, 10)), reuse, weights=weights, **kw)
    assert "\n" not in str(exc.value)


def test_cli_estimate_with_weights_off_chip(tmp_path):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    from vecq_hw.ir.io import save_model

    save_model(random_mlp(2, sizes=(256, 64, 10)), tmp_path / "m")
    run = CliRunner().invoke
    r = run(cli, ["estimate", str(tmp_path / "m"), "--part", "xczu9eg", "--io-type", "io_stream", "--reuse",
                  "fc1=256", "--weights", "fc1=offchip"])
    assert r.exit_code == 0, r.output
    assert any(line.split()[:3] == ["fc1", "dense", "256"] and line.rstrip().endswith("ddr")
               for line in r.output.splitlines())
    assert "DDR: " in r.output and "memory: " in r.output and "AXI ports" in r.output
    for bad, msg in (("fc1=dram", "expected LAYER=MODE"), ("fc1", "expected LAYER=MODE")):
        r = run(cli, ["estimate", str(tmp_path / "m"), "--io-type", "io_stream", "--weights", bad])
        assert r.exit_code == 2 and msg in r.output and len(r.output.strip().splitlines()) == 1, r.output


def test_fit_streams_what_does_not_fit_on_chip():
    """2-bit codes of a 2048 x 2048 layer (8.4 Mbit) against 20 % of a ZU9EG's BRAM (6.7 Mbit):
    on chip at any folding it cannot fit; fit streams it and stays within every budget."""
    model = random_mlp(2, sizes=(2048, 2048, 10))
    r = fit(model, "xczu9eg", headroom=0.2, io_type="io_stream")
    assert r.ok and r.plan.fits(0.2) and r.plan.weights().get("fc1") in ("offchip", "uram")
    onchip = estimate(model, r.plan.reuse(), part="xczu9eg", io_type="io_stream")
    assert not onchip.fits(0.2) and onchip.utilisation()["bram18"] > 0.2
    # placements the caller gives are kept, the rest chosen
    pinned = fit(model, "xczu9eg", headroom=0.8, weights={"fc2": "offchip"})
    assert pinned.ok and pinned.plan.io_type == "io_stream" and pinned.plan.weights()["fc2"] == "offchip"
    assert "fc1" not in fit(model, "xczu9eg", headroom=0.8, weights={"fc1": "onchip"}).plan.weights()
    with pytest.raises(VecQError, match="'fc9' is not a weighted layer"):
        fit(model, "xczu9eg", weights={"fc9": "offchip"})


def test_fit_offers_a_plan_at_every_halving_of_throughput():
    model = resnet18(size=64, width=16, num_classes=100)
    r = fit(model, "xcu250", io_type="io_stream")
    fitting = sorted((e for e in r.tried if e.fits(r.headroom)), key=lambda e: -e.fps)
    fastest, slowest = fitting[0].fps, fitting[-1].fps
    assert r.plan.fps == pytest.approx(fastest) and fastest / slowest > 100
    step = fastest
    while step / 2 >= slowest:  # every band (step / 2, step] holds a fitting plan
        assert any(step / 2 < e.fps <= step for e in fitting), step
        step /= 2
    assert [e.fps for e in r.frontier] == sorted((e.fps for e in r.frontier), reverse=True)
    assert all(a.fps / b.fps <= 4 for a, b in zip(r.frontier, r.frontier[1:]))


def test_skip_fifo_depth_from_the_schedule():
    """The identity shortcut of a 3x3 pad-1 conv on a W-wide input: the conv writes its first
    output row after reading 2 input rows (2W tokens); the clone feeds the conv path first, so
    the conv path gets one token more than the skip FIFO holds: depth 2W - 1. Every FIFO the
    schedule does not ask more of keeps the default depth (1 for a one-token vector)."""
    for size in (8, 16):
        fifos = {f.name: f for f in plan_fifos(random_resnet(2, size=size))}
        assert fifos["stem_relu->b1_add"].depth == 2 * size - 1
        assert all(f.depth == min(DEFAULT_DEPTH, f.tokens) for f in fifos.values() if not f.reason)


def test_synthesis_check_cuts_long_tables_after_checking_them(tmp_path):
    ranges = {"weight5_t": (-2, 1)}
    header = "#else\nweight5_t w5[{n}] = {{{values}}};\n#endif\n"
    values = ", ".join(str(v) for v in np.tile([-2, -1, 0, 1], FULL_VALUES))
    text, cut = _cut(tmp_path / "w5.h", header.format(n=4 * FULL_VALUES, values=values), ranges)
    assert cut and text.count(",") == FULL_VALUES - 1 and f"w5[{4 * FULL_VALUES}]" in text
    with pytest.raises(VecQError, match="outside weight5_t's range"):
        _cut(tmp_path / "w5.h", header.format(n=4 * FULL_VALUES, values=values.replace("-2", "2")), ranges)
    with pytest.raises(VecQError, match="declared"):
        _cut(tmp_path / "w5.h", header.format(n=4 * FULL_VALUES + 1, values=values), ranges)
    small = header.format(n=4, values="1, 0, -1, -2")
    assert _cut(tmp_path / "w5.h", small, ranges) == (small, False)


# --------------------------------------------------------------------------- the built project

@pytest.fixture(scope="module")
def project(tmp_path_factory):
    model = resnet18(**SMALL)
    x = random_inputs(model, 2, seed=3)
    y = simulate(model, x_mantissa=x).output
    opts = HlsOptions(io_type="io_stream", part="xczu7ev-ffvc1156-2-e", reuse=REUSE, weights=STREAMED)
    prj = write_project(model, tmp_path_factory.mktemp("bignet") / "prj", opts, expected=(x, y))
    return model, prj, y


@pytest.mark.xdist_group("big_networks")
def test_blob_is_the_packed_weight_image(project):
    model, prj, _ = project
    meta = json.loads((prj / "vecq_project.json").read_text())
    blob = (prj / BLOB_NAME).read_bytes()
    assert meta["blob"]["bytes"] == len(blob) and {p["layer"]: p["mode"] for p in meta["ports"]} == STREAMED
    layers = {layer.name: layer for layer in model.layers}
    for port in meta["ports"]:
        codes = layers[port["layer"]].codes
        assert port["offset"] % BLOB_ALIGN == 0 and port["words"] == math.ceil(codes.size * 2 / port["word_bits"])
        region = blob[port["offset"]:port["offset"] + port["words"] * port["word_bits"] // 8]
        image = region[:(codes.size * 2 + 7) // 8]
        assert np.array_equal(unpack_codes(image, 2, codes.size), codes.reshape(-1))
        assert not any(region[len(image):])  # zero padding to whole words
        assert "vecq_wmem" in port["name"] and port["name"] in (prj / "firmware" / "myproject.h").read_text()


@pytest.mark.xdist_group("big_networks")
def test_csim_with_streamed_weights_is_bit_exact(project, tmp_path):
    model, prj, y = project
    r = csim(prj, opt="-O0")
    assert r.ok and r.n == 2 and np.array_equal(r.outputs, y.reshape(2, -1))
    assert r.synthesis_checked and r.synthesis_cut > 0  # the 4x4 stage's tables are longer than FULL_VALUES
    # the codes do come from the blob: the same build on a blob with every streamed code negated disagrees
    bad = tmp_path / "bad"
    shutil.copytree(prj, bad)
    data = bytearray((bad / BLOB_NAME).read_bytes())
    (bad / BLOB_NAME).write_bytes(bytes(b ^ 0xAA for b in data))
    r2 = csim(bad, opt="-O0")
    assert r2.cached and r2.value_mismatches > 0


@pytest.mark.xdist_group("big_networks")
def test_fifo_depths_keep_the_dataflow_alive_and_one_less_deadlocks(project):
    _, prj, _ = project
    fifos = json.loads((prj / "vecq_project.json").read_text())["fifos"]
    sized = [f for f in fifos if f["reason"]]
    adds = {f["reason"].split(":")[0] for f in sized}
    # every shortcut of the 8x8 and 4x4 stages (identity and projection) waits for rows of the
    # other path; at 1x1 a frame is one token and the default depth holds it
    assert {"l1b1_add", "l1b2_add", "l2b1_add", "l2b2_add"} <= adds and not any(a.startswith("l4") for a in adds)
    ok = dataflow_check(prj)
    assert not ok.deadlock and ok.mismatches == 0 and ok.n == 2
    # one token less deadlocks (within the first frame): an identity shortcut (l1b1) and a
    # projection shortcut (l2b1: its FIFO is on the 1x1 conv's output), not all six, for time
    for add in ("l1b1_add", "l2b1_add"):
        (f,) = [f for f in sized if f["reason"].startswith(add + ":")]
        short = dataflow_check(prj, depths={f["stream"]: f["depth"] - 1}, samples=1)
        assert short.deadlock and f"'{f['stream']}'" in short.log, f
