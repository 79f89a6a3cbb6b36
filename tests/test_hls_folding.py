"""Folding (per-layer reuse factor) in the HLS kernels: simulator == g++ C simulation, bit for bit.

Each project mixes foldings per layer, so one build covers several: R = 1 (unfolded), an
intermediate R, and R = P (fully folded: one product slot) for dense, conv2d (stride 1 and 2,
with and without padding) and depthwise layers, in io_parallel and io_stream. A CNN and an MLP
per io type, 500 random inputs each, the expected outputs from an independent simulator run.
io_stream convolutions run through the line buffer (``vecq_conv_stream_lines``); its own case
has a non-square input, stride 2 and asymmetric padding.
"""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.hls import HlsOptions, build_graph, csim, write_project
from vecq_hw.hls.folding import check_reuse, parse_reuse, products_per_input, weighted_nodes
from vecq_hw.hls.mappings import mapping_for
from vecq_hw.ir.examples import (random_codes, relu_type, weighted_layer, random_inputs, random_mlp, random_mobilenet_block,
                                 random_resnet)
from vecq_hw.sim import simulate

N_TESTS = 500


def line_buffer_model(bits: int = 2, seed: int = 0) -> ir.Model:
    """Non-square 9 x 12 x 2 input; conv 3x3 stride 2 with asymmetric padding (t1 b0 l2 r1);
    depthwise 3x3 stride (2, 1) padding 1; dense. io_stream runs both through the line buffer."""
    rng = np.random.default_rng(seed)
    t_in = FixedType(8, 2, True)
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(9, 12, 2))]
    t1 = FixedType(8, 3, True, "AP_RND", "AP_SAT")
    layers.append(weighted_layer(ir.Conv2D, "conv", rng, t_in, random_codes(rng, (3, 3, 2, 4), bits), bits, "odd", t1,
                            padding=(1, 0, 2, 1), stride=(2, 2)))
    r1 = relu_type(t1)
    layers.append(ir.ReLU(name="relu1", out_type=r1))
    t2 = FixedType(9, 4, True, "AP_RND_CONV", "AP_SAT")
    layers.append(weighted_layer(ir.DepthwiseConv2D, "dw", rng, r1, random_codes(rng, (3, 3, 4), bits), bits, "odd", t2,
                            padding=(1, 1, 1, 1), stride=(2, 1)))
    r2 = relu_type(t2)
    layers += [ir.ReLU(name="relu2", out_type=r2), ir.Flatten(name="flatten", out_type=r2)]
    n_flat = ir.Model(name="lb", layers=list(layers)).output_shape[0]
    layers.append(weighted_layer(ir.Dense, "fc", rng, r2, random_codes(rng, (n_flat, 10), bits), bits, "odd",
                            FixedType(12, 5, True, "AP_TRN", "AP_SAT")))
    return ir.Model(name="line_buffer", layers=layers).check()

CASES = {
    # name: (builder, io_type, {layer: R}); 'full' = that layer's product count P
    "mobilenet_parallel": (lambda: random_mobilenet_block(2, seed=3), "io_parallel",
                           {"stem": "full", "dw": 6, "fc": "full"}),  # pw stays unfolded (R = 1)
    "resnet_stream": (lambda: random_resnet(2, seed=2), "io_stream",
                      {"b1_conv": "full", "b2_conv1": 12, "b2_conv2": 64, "b2_proj": "full", "fc": 8}),
    "mlp_parallel": (lambda: random_mlp(3, seed=11, sizes=(24, 16, 12, 10)), "io_parallel",
                     {"fc1": "full", "fc2": 8}),
    "mlp_stream": (lambda: random_mlp(2, seed=12, sizes=(24, 16, 12, 10)), "io_stream",
                   {"fc2": "full", "fc3": 6}),
    # line buffer: stride 2, asymmetric padding, non-square input (conv and depthwise)
    "line_buffer_stream": (line_buffer_model, "io_stream", {"conv": 6, "dw": "full"}),
}


def _reuse(model, spec):
    p = {n.layer.name: products_per_input(n) for n in weighted_nodes(model)}
    return {name: p[name] if r == "full" else r for name, r in spec.items()}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.fail("g++ is required for the C simulation tests")
    build, io_type, spec = CASES[request.param]
    model = build()
    reuse = _reuse(model, spec)
    x = random_inputs(model, N_TESTS, seed=5)
    y = simulate(model, x_mantissa=x).output
    opts = HlsOptions(io_type=io_type, reuse=reuse)
    prj = write_project(model, tmp_path_factory.mktemp(request.param) / "prj", opts, expected=(x, y))
    return model, reuse, x, prj, csim(prj), io_type


def test_folded_csim_equals_simulator(built):
    model, reuse, x, prj, res, io_type = built
    p = {n.layer.name: products_per_input(n) for n in weighted_nodes(model)}
    # the case really covers unfolded, intermediate and fully folded layers
    folds = {reuse.get(name, 1) for name in p}
    assert 1 in folds and any(reuse.get(n, 1) == p[n] for n in p) and any(1 < reuse.get(n, 1) < p[n] for n in p)
    assert res.n == N_TESTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    np.testing.assert_array_equal(res.outputs, simulate(model, x_mantissa=x).output.reshape(N_TESTS, -1))
    assert len(np.unique(res.outputs)) > 50  # not degenerate
    # each layer's config carries its own reuse factor, and the folded kernel is the one bound
    params = (prj / "firmware" / "parameters.h").read_text()
    emitted = [int(v) for v in re.findall(r"reuse_factor = (\d+);", params)]
    for name, r in reuse.items():
        assert r in emitted, name
    # the folded convs whose estimate overlaps the requantisation (vecq_fold_row) get the kernel's flag
    overlap = [n.layer.name for n in weighted_nodes(model) if reuse.get(n.layer.name, 1) > 1 and
               mapping_for(n).estimate(n, reuse[n.layer.name], io_type).overlap]
    assert params.count("static const bool overlap = true;") == len(overlap)
    # the kernel headers the project received (every registered one, named in its vecq_project.json)
    names = json.loads((prj / "vecq_project.json").read_text())["kernel_headers"]
    assert "nnet_vecq_fold.h" in names
    header = "".join((prj / "firmware" / "nnet_utils" / name).read_text() for name in names)
    for pragma in ("PIPELINE II=1", "ARRAY_RESHAPE variable=weights cyclic factor=block",
                   "BIND_STORAGE variable=weights type=rom_np"):
        assert pragma in header


def test_bad_reuse_refused_in_one_line():
    model = random_mlp(2, seed=1, sizes=(24, 16, 10))  # fc1: 384 products, fc2: 160
    node = weighted_nodes(model)[0]
    with pytest.raises(VecQError, match=r"layer 'fc1' \(dense\): reuse factor 7 must divide its 384 .*6, 8") as exc:
        check_reuse(node, 7)
    assert "\n" not in str(exc.value)
    with pytest.raises(VecQError, match="reuse factor 500 must divide"):
        build_graph(model, HlsOptions(reuse={"fc1": 500}))
    with pytest.raises(VecQError, match="'fc9' is not a weighted layer.*fc1, fc2"):
        build_graph(model, HlsOptions(reuse={"fc9": 2}))
    with pytest.raises(VecQError, match="layer 'fc2'.*reuse factor 3 must divide its 160"):
        build_graph(model, HlsOptions(reuse_factor=3))  # the global default is checked per layer too
    with pytest.raises(VecQError, match="field 'reuse.fc1'"):
        HlsOptions(reuse={"fc1": 0})
    assert parse_reuse(["fc1=4", "fc2 = 2"]) == {"fc1": 4, "fc2": 2}
    for bad in ("fc1", "fc1=", "=3", "fc1=-2", "fc1=x"):
        with pytest.raises(VecQError, match="expected LAYER=R"):
            parse_reuse([bad])
