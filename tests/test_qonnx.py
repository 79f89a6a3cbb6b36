"""QONNX out and in (issue 26 items 1 and 2), checked by the tools themselves.

Out: every weight Quant rounds back to our levels; qonnx's own executor (``execute_onnx``) on the
exported graph equals the simulator exactly on every layer whose float32 arithmetic is exact (all
layers of the random models), and within the stated per-layer bound (< 1 LSB) on a LeNet-5-shaped
k = 2 export from PyTorch with BatchNorm folded (17-bit scales, 23- to 27-bit biases), whose
hls4ml conversion predicts the simulator's outputs on MNIST test images with 0 mismatches. In: a
Brevitas CNN trained here, exported by Brevitas, imported, equals qonnx's execution of Brevitas's
file and g++ C simulation equals the simulator. Bad input: one line.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import onnx
import pytest
import torch
from onnx import helper, numpy_helper
from qonnx.core.modelwrapper import ModelWrapper
from qonnx.core.onnx_exec import execute_onnx
from qonnx.custom_op.general.quant import max_int, min_int
from qonnx.transformation.change_batchsize import ChangeBatchSize
from qonnx.transformation.infer_shapes import InferShapes
from qonnx.util.cleanup import cleanup_model

from vecq_hw import ir
from vecq_hw.data import load_dataset
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.flow import export_torch, images_to_inputs
from vecq_hw.hls import csim, write_project
from vecq_hw.ir.examples import random_cnn, random_inputs, random_mlp, random_mobilenet_block, random_resnet
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.models import build_model
from vecq_hw.quant import VecQ
from vecq_hw.qonnx import export_qonnx, from_qonnx, hls4ml_convert, import_qonnx, to_qonnx, write_graph
from vecq_hw.sim import simulate

from qonnx_bad_graphs import BAD_GRAPHS, mutated
from qonnx_compare import layer_diffs, to_mantissas

REQUANTISING = ("dense", "conv2d", "depthwise_conv2d", "add", "global_avg_pool")


def saturating(model: ir.Model) -> ir.Model:
    """The random examples wrap in some layers; QONNX's Quant saturates (AP_WRAP is refused)."""
    for layer in model.layers:
        if layer.kind in REQUANTISING and layer.out_type.overflow != "AP_SAT":
            layer.out_type = dataclasses.replace(layer.out_type, overflow="AP_SAT", sat_bits=0)
    return model.check()


RANDOM = {
    "cnn_k1_odd": lambda: random_cnn(1, seed=0),
    "cnn_k1_int": lambda: random_cnn(1, seed=1, encoding="int"),
    "cnn_k2": lambda: random_cnn(2, seed=2),
    "cnn_k3_custom": lambda: random_cnn(3, seed=3, levels=[-4, -1, 1, 4, 6, 7, -8, 0]),
    "cnn_k4_avgpool": lambda: random_cnn(4, seed=4, avg_pool=True),
    "cnn_k8_int": lambda: random_cnn(8, seed=5, encoding="int"),
    "mlp_k2": lambda: saturating(random_mlp(2, seed=6)),
    "resnet_gap16": lambda: saturating(random_resnet(2, seed=7)),
    "resnet_gap9": lambda: saturating(random_resnet(2, seed=8, size=6)),  # 3x3 window: ReduceSum * mult
    "mobilenet": lambda: saturating(random_mobilenet_block(3, seed=9)),
}


def nchw(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 3, 1, 2) if x.ndim == 4 else x


def nhwc(x: np.ndarray) -> np.ndarray:
    return x.transpose(0, 2, 3, 1) if x.ndim == 4 else x


def qonnx_execute(proto: onnx.ModelProto, x: np.ndarray, full: bool = False) -> dict:
    """qonnx's executor on channels-last float inputs ``x`` (N, ...), the whole batch at once."""
    mw = ModelWrapper(proto).transform(ChangeBatchSize(len(x))).transform(InferShapes())
    return execute_onnx(mw, {mw.graph.input[0].name: nchw(x).astype(np.float32)}, return_full_exec_context=full)


# -- out ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(RANDOM))
def test_weight_quants_round_to_our_levels(name):
    """round(W / scale) of every exported weight tensor is levels[code] (in ONNX's order), and the
    Quant's integer range holds it (so its clamp is the identity)."""
    model = RANDOM[name]()
    graph = write_graph(model)
    g = graph.proto.graph
    inits = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    nodes = {n.name: n for n in g.node}
    for layer in model.layers:
        if not isinstance(layer, ir.Weighted):
            continue
        q = nodes[f"{layer.name}.wq.quant"]
        w, scale = inits[q.input[0]], inits[q.input[1]]
        d = layer.levels[layer.codes.astype(np.int64) + (1 << (layer.bits - 1))]
        order = {"dense": (0, 1), "conv2d": (3, 2, 0, 1)}.get(layer.kind)
        expect = d.transpose(order) if order else d.transpose(2, 0, 1)[:, None]
        np.testing.assert_array_equal(np.round(w / scale), expect)
        if layer.encoding == "odd" and layer.bits == 1:
            assert q.op_type == "BipolarQuant"
            continue
        a = {x.name: helper.get_attribute_value(x) for x in q.attribute}
        bits = int(inits[q.input[3]])
        lo, hi = min_int(a["signed"], a["narrow"], bits), max_int(a["signed"], a["narrow"], bits)
        assert lo <= expect.min() and expect.max() <= hi
        if layer.encoding == "odd":  # the fact: d = 2c + 1 at k bits is Quant(k + 1, narrow)
            assert (bits, a["narrow"]) == (layer.bits + 1, 1)
        elif layer.encoding == "int" and layer.bits > 1:
            assert (bits, a["narrow"]) == (layer.bits, 0)
        else:  # no QONNX op keeps the code table: the smallest width, and the output says so
            assert bits == max(2, ir.signed_width_for(int(layer.levels.min()), int(layer.levels.max())))
            assert any(note.startswith(f"{layer.name}: levels") for note in graph.notes)


def _check_layers_against_trace(model: ir.Model, ctx: dict, sim, bounds: dict) -> dict:
    """Every layer output the graph names, judged on the samples whose inputs to it agree: equal
    to the simulator's where its bound is 0, within ceil(bound) LSBs elsewhere. Returns the
    number of differing values per layer."""
    diffs = layer_diffs(model, ctx, sim.trace)
    for name, d in diffs.items():
        assert d["max"] <= math.ceil(bounds[name]), (name, d, bounds[name])
        assert d["samples"] > 0
    return {name: d["differ"] for name, d in diffs.items()}


@pytest.mark.parametrize("name", list(RANDOM))
def test_qonnx_executor_equals_simulator(name):
    """Exact on every layer whose float32 arithmetic is (bound 0), within the bound (< 1 LSB) on the
    others; the whole output exactly when every bound is 0 (all models but the k = 4 and 8 ones,
    whose wider accumulators times 10-bit scales pass 2^24)."""
    model = RANDOM[name]()
    g = write_graph(model)
    inexact = [k for k, v in g.f32_error.items() if v]
    assert bool(inexact) == (name in ("cnn_k4_avgpool", "cnn_k8_int")), g.f32_error
    assert all(g.f32_error[k] < 1 for k in inexact), g.f32_error
    x = random_inputs(model, 200, seed=3)
    sim = simulate(model, x_mantissa=x, trace=True)
    ctx = qonnx_execute(g.proto, model.input.out_type.to_float(x), full=True)
    counts = _check_layers_against_trace(model, ctx, sim, g.f32_error)
    assert len(counts) >= len(model.layers) - 2  # every layer but the input's Quant (and a no-op flatten)
    out = to_mantissas(nhwc(ctx[g.proto.graph.output[0].name]), model.output_type)
    if not inexact:
        np.testing.assert_array_equal(out, sim.output)
    assert len(np.unique(sim.output)) > 10  # not a degenerate comparison


@pytest.fixture(scope="module")
def mnist_test():
    images, labels = load_dataset("mnist", "test", limit=500)
    return images, labels


@pytest.mark.xdist_group("qonnx_lenet")
def test_lenet_executor_within_the_stated_bound(small_lenet, mnist_test):
    lenet = small_lenet  # its float32 arithmetic is inexact in every requantising layer
    g = write_graph(lenet)
    requant = [layer.name for layer in lenet.layers if layer.kind in REQUANTISING]
    assert all(0 < g.f32_error[n] < 1 for n in requant), g.f32_error  # inexact, but below one LSB
    x = lenet.input.out_type.from_float(images_to_inputs(mnist_test[0], lenet))
    sim = simulate(lenet, x_mantissa=x, trace=True)
    ctx = qonnx_execute(g.proto, lenet.input.out_type.to_float(x), full=True)
    counts = _check_layers_against_trace(lenet, ctx, sim, g.f32_error)
    print("values differing by one LSB, per layer:", counts)


@pytest.fixture(scope="module")
def small_lenet(mnist_test):
    """A LeNet-5-shaped k = 2 export (2C5-4C5-FC16-FC10, BatchNorm folded) small enough for a quick
    hls4ml compile: untrained weights, BatchNorm statistics from 500 MNIST images, so its
    constants look like a trained model's (17-bit scales, 23- to 27-bit biases: float32 cannot
    hold y = acc*s + b exactly). The paper-size LeNet-5's run is benchmarks/qonnx_interop.py."""
    torch.manual_seed(1)
    net = build_model("lenet5", weight_quant=VecQ(bits=2), conv_channels=(2, 4), hidden=16)
    net.train()
    with torch.no_grad():
        net(torch.tensor(mnist_test[0], dtype=torch.float32).unsqueeze(1) / 256)
    return export_torch(net.eval())


@pytest.fixture(scope="module")
def small_lenet_hls4ml(small_lenet, tmp_path_factory):
    """hls4ml 1.3.0's QONNX flow on small_lenet's QONNX graph (hls4ml_convert: qonnx cleanup,
    channels-last, config by name plus the precisions hls4ml_precisions pins), not compiled."""
    return hls4ml_convert(to_qonnx(small_lenet), tmp_path_factory.mktemp("hls4ml") / "prj", io_type="io_stream")


@pytest.mark.xdist_group("qonnx_lenet")
def test_hls4ml_conversion_of_our_qonnx_is_exact(small_lenet, small_lenet_hls4ml, mnist_test):
    """hls4ml's conversion of a LeNet-5-shaped k = 2 export, compiled by hls4ml: 0 mismatches on
    500 MNIST test images (the whole test set: benchmarks/qonnx_interop.py)."""
    model, hls_model = small_lenet, small_lenet_hls4ml
    hls_model.compile()
    x = model.input.out_type.from_float(images_to_inputs(mnist_test[0], model))
    y = hls_model.predict(np.ascontiguousarray(model.input.out_type.to_float(x).reshape(len(x), -1)))
    want = simulate(model, x_mantissa=x).output
    np.testing.assert_array_equal(to_mantissas(np.asarray(y).reshape(want.shape), model.output_type), want)
    assert len(np.unique(want)) > 100


@pytest.mark.xdist_group("qonnx_lenet")
def test_hls4ml_alone_gives_the_fused_bias_its_default_type(small_lenet, small_lenet_hls4ml, tmp_path):
    """Why hls4ml_precisions exists: without it, hls4ml fuses each layer's Mul(s) and Add(b) into one
    ApplyAlpha and drops the bias's exact type (hls4ml/model/optimizer/passes/batchnorm_opt.py,
    FuseConsecutiveBatchNormalization: ``if (b0 == np.ones_like(b0)).all():`` tests for a bias of
    ones where zeros were meant), so the bias falls back to the default fixed<16,6>: 10 fractional
    bits for biases that have 26 and more. With the pins it is the exact type."""
    types = {}
    for pin, hm in ((False, hls4ml_convert(to_qonnx(small_lenet), tmp_path / "unpinned", io_type="io_stream",
                                          pin=False)), (True, small_lenet_hls4ml)):
        types[pin] = [str(layer.types["bias_t"].precision) for layer in hm.get_layers()
                      if layer.class_name == "ApplyAlpha"]
    assert len(types[False]) == 4 and set(types[False]) == {"fixed<16,6,TRN,WRAP,0>"}
    exact = [str(layer.bias_type) for layer in small_lenet.layers if isinstance(layer, ir.Weighted)]
    assert all(int(t.split("<")[1].split(",")[0]) > 16 for t in types[True]), types[True]
    assert len(types[True]) == len(exact) == 4


# -- out: refusals, the file API, the round trip -------------------------------------------------

def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_export_refuses_what_a_quant_cannot_write():
    wrapping = random_mlp(2, seed=6)  # its fc2 wraps (AP_WRAP) and can overflow
    with pytest.raises(VecQError) as e:
        to_qonnx(wrapping)
    assert "layers[3] (fc2).out_type" in _one_line(e) and "AP_WRAP" in str(e.value)
    one_bit = random_cnn(2, seed=2)
    one_bit.layers[-1].out_type = FixedType(1, 1, True, "AP_TRN", "AP_SAT")
    with pytest.raises(VecQError, match="bipolar"):
        to_qonnx(one_bit.check())
    wide = random_cnn(2, seed=2)
    wide.layers[1].scale_type = FixedType(30, 2, False)
    wide.layers[1].scale = wide.layers[1].scale * 1048576 + 1  # 25+ significant bits
    with pytest.raises(VecQError, match=r"conv1\).scale_type.*24 significant bits"):
        to_qonnx(wide)


def test_export_and_import_files(tmp_path):
    model = saturating(random_resnet(2, seed=7))
    save_model(model, tmp_path / "m")
    report = export_qonnx(tmp_path / "m", tmp_path / "out" / "m.onnx")
    assert report.path.is_file() and "computes every layer exactly" in report.text()
    onnx.checker.check_model(onnx.load(str(report.path)))
    saved = import_qonnx(report.path, tmp_path / "back")
    back = load_model(saved.path)
    x = random_inputs(model, 100)
    np.testing.assert_array_equal(simulate(back, x_mantissa=x).output, simulate(model, x_mantissa=x).output)
    # a refused export leaves no file behind
    save_model(random_mlp(2, seed=6), tmp_path / "wraps")
    with pytest.raises(VecQError):
        export_qonnx(tmp_path / "wraps", tmp_path / "wraps.onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["back", "m", "out", "wraps"]


@pytest.mark.parametrize("name", list(RANDOM))
def test_round_trip_keeps_the_computation_and_the_code_tables(name):
    """from_qonnx(to_qonnx(m)) computes what m computes; odd and int tables come back as the same
    codes (custom tables come back as the integers they were written as)."""
    model = RANDOM[name]()
    back = from_qonnx(to_qonnx(model))
    x = random_inputs(model, 200, seed=5)
    np.testing.assert_array_equal(simulate(back, x_mantissa=x).output, simulate(model, x_mantissa=x).output)
    # the same layers under the same names (the graph's nodes are named after them; a valid
    # topological order may list branches differently)
    assert sorted(layer.name for layer in back.layers[1:]) == sorted(layer.name for layer in model.layers[1:])
    for a in model.layers[1:]:
        b = back.layer(a.name)
        assert b.kind == a.kind and b.out_type.width == a.out_type.width, a.name
        kept = isinstance(a, ir.Weighted) and (a.encoding == "odd" or (a.encoding == "int" and a.bits > 1))
        if kept:
            assert (b.encoding, b.bits) == (a.encoding, a.bits) and np.array_equal(a.codes, b.codes), a.name


# -- in: Brevitas --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def brevitas_cnn(tmp_path_factory):
    """SmallCNN (4-bit per-tensor and 3-bit per-channel fixed-point convs, 2-bit linear, 8/6-bit
    power-of-two activations, Int16Bias), trained 100 seeded steps on 4000 MNIST training images
    (82 % on the 500 test images: trained weights, not initial ones), exported by Brevitas.
    Imported once here (the tests check what came in)."""
    import brevitas_nets
    images, labels = load_dataset("mnist", "train", limit=4000)
    net = brevitas_nets.SmallCNN()
    brevitas_nets.train(net, images, labels, steps=100, seed=0)
    path = brevitas_nets.export(net, tmp_path_factory.mktemp("brevitas") / "small_cnn.onnx")
    return net, path, from_qonnx(path)


@pytest.mark.xdist_group("qonnx_brevitas")
def test_brevitas_cnn_imports_exactly(brevitas_cnn, mnist_test):
    import brevitas_nets
    net, path, model = brevitas_cnn
    kinds = [layer.kind for layer in model.layers]
    assert kinds == ["input", "conv2d", "relu", "maxpool2d", "conv2d", "relu", "maxpool2d", "flatten", "dense"]
    weighted = [layer for layer in model.layers if isinstance(layer, ir.Weighted)]
    assert [(w.encoding, w.bits) for w in weighted] in ([("int", 4), ("int", 3), ("int", 2)],
                                                        [("odd", 3), ("int", 3), ("int", 2)],)
    assert str(model.input.out_type) == "ap_ufixed<8,0,AP_RND_CONV,AP_SAT>"  # Uint8ActPerTensorFixedPoint
    images, labels = mnist_test
    x = images.astype(np.float64).reshape(-1, 28, 28, 1) / 256
    sim = simulate(model, x=x)  # the float input goes through the input Quant's conversion
    mw = cleanup_model(ModelWrapper(str(path))).transform(ChangeBatchSize(len(x))).transform(InferShapes())
    out = execute_onnx(mw, {mw.graph.input[0].name: nchw(x).astype(np.float32)})[mw.graph.output[0].name]
    np.testing.assert_array_equal(to_mantissas(out, model.output_type), sim.output)
    # and Brevitas's own PyTorch forward (power-of-two scales: float32 is exact there too)
    np.testing.assert_array_equal(brevitas_nets.predict(net, images), sim.values())
    assert np.mean(np.argmax(sim.output, axis=1) == labels) > 0.7  # it did train


@pytest.mark.xdist_group("qonnx_brevitas")
def test_brevitas_cnn_csim_equals_simulator(brevitas_cnn, mnist_test, tmp_path):
    _, _, model = brevitas_cnn
    x = model.input.out_type.from_float(mnist_test[0].astype(np.float64).reshape(-1, 28, 28, 1) / 256)
    y = simulate(model, x_mantissa=x).output
    res = csim(write_project(model, tmp_path / "prj", expected=(x, y)))
    assert res.n == len(x) and res.mismatches == 0 and res.value_mismatches == 0, res.log[-2000:]
    np.testing.assert_array_equal(res.outputs, y.reshape(len(x), -1))


def test_brevitas_binary_weights_and_float_activations(tmp_path):
    """1-bit weights come in as BipolarQuant (the odd table at k = 1); a float (non power-of-two)
    activation scale is refused, naming its Quant node. (Brevitas's binary constant scale is 0.1:
    it imports exactly too, but float32 cannot hold x * 0.1, so qonnx's executor rounds; a
    power-of-two scale keeps that comparison exact. benchmarks/qonnx_interop.py has the survey.)"""
    import brevitas_nets
    from brevitas.quant import SignedBinaryWeightPerTensorConst, Uint8ActPerTensorFloat

    class Binary(SignedBinaryWeightPerTensorConst):
        scaling_const = 0.125

    net = brevitas_nets.SmallCNN(size=8, w2=(Binary, 1))
    model = from_qonnx(brevitas_nets.export(net, tmp_path / "binary.onnx", size=8))
    conv2 = [layer for layer in model.layers if isinstance(layer, ir.Weighted)][1]
    assert (conv2.encoding, conv2.bits) == ("odd", 1)
    x = random_inputs(model, 300)
    mw = cleanup_model(ModelWrapper(str(tmp_path / "binary.onnx"))).transform(ChangeBatchSize(300))
    out = execute_onnx(mw.transform(InferShapes()), {mw.graph.input[0].name: nchw(model.input.out_type.to_float(x))
                                                      .astype(np.float32)})[mw.graph.output[0].name]
    np.testing.assert_array_equal(to_mantissas(out, model.output_type), simulate(model, x_mantissa=x).output)
    net = brevitas_nets.SmallCNN(size=8, act=Uint8ActPerTensorFloat)
    with pytest.raises(VecQError) as e:
        from_qonnx(brevitas_nets.export(net, tmp_path / "float_act.onnx", size=8))
    assert "/r1/act_quant/export_handler/Quant" in _one_line(e) and "not a power of two" in str(e.value)


# -- in: bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_bad_graphs_are_one_line_naming_file_and_node(case, tmp_path):
    change, where, why = BAD_GRAPHS[case]
    path = tmp_path / "bad.onnx"
    onnx.save(mutated(random_cnn(2, seed=2), change), str(path))
    with pytest.raises(VecQError) as e:
        from_qonnx(path)
    assert _one_line(e).startswith(f"{path}: field '{where}'") and why in str(e.value)


def test_malformed_files_are_one_line(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe")
    with pytest.raises(VecQError) as e:
        from_qonnx(junk)
    assert _one_line(e).startswith(f"{junk}: not an ONNX model")
    proto = to_qonnx(random_cnn(2, seed=2))
    proto.graph.node[3].input[0] = "nowhere"  # a dangling edge: onnx's checker refuses it
    broken = tmp_path / "broken.onnx"
    onnx.save(proto, str(broken))
    with pytest.raises(VecQError) as e:
        from_qonnx(broken)
    assert _one_line(e).startswith(f"{broken}: malformed ONNX graph")
    with pytest.raises(VecQError, match="no such file"):
        from_qonnx(tmp_path / "missing.onnx")


def _dense_graph(w_scale: float, bias: float) -> onnx.ModelProto:
    """x (1, 4) -> Quant(2^-8, 8-bit unsigned) -> MatMul(Quant(W, w_scale, 4-bit)) -> Add(bias) ->
    Quant(2^-4, 8-bit signed): a QONNX graph written by hand, not by to_qonnx."""
    dom = "qonnx.custom_op.general"
    f32 = lambda name, v: numpy_helper.from_array(np.asarray(v, dtype=np.float32), name)  # noqa: E731
    inits = [f32("s_in", 2.0 ** -8), f32("zero", 0.0), f32("b8", 8.0), f32("b4", 4.0), f32("s_out", 2.0 ** -4),
             f32("w", np.arange(-8, 8).reshape(4, 4) * w_scale), f32("s_w", w_scale), f32("bias", [bias] * 4)]
    nodes = [helper.make_node("Quant", ["x", "s_in", "zero", "b8"], ["xq"], name="in_q", domain=dom, signed=0,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("Quant", ["w", "s_w", "zero", "b4"], ["wq"], name="w_q", domain=dom, signed=1,
                              narrow=0, rounding_mode="ROUND"),
             helper.make_node("MatMul", ["xq", "wq"], ["acc"], name="fc"),
             helper.make_node("Add", ["acc", "bias"], ["y"], name="fc_bias"),
             helper.make_node("Quant", ["y", "s_out", "zero", "b8"], ["out"], name="out_q", domain=dom, signed=1,
                              narrow=0, rounding_mode="FLOOR")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("out", onnx.TensorProto.FLOAT, [1, 4])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(dom, 1)])


def test_hand_written_graph_and_a_scale_too_fine_to_compute_exactly():
    """A float weight scale is a dyadic rational, so it always has an exact fixed-point type; what
    can fail is the width: y = acc*s + b with s ~ 1e-30 and b = 0.5 needs over 100 bits, and
    biases from 1e-30 to 1e10 need a 153-bit type."""
    model = from_qonnx(_dense_graph(0.375, 0.3125))
    fc = model.layer("fc")
    assert (fc.encoding, fc.bits) == ("int", 4) and str(model.output_type) == "ap_fixed<8,4,AP_TRN,AP_SAT>"
    assert fc.scale_type.to_float(fc.scale).tolist() == [0.375] * 4 and str(fc.scale_type) == "ap_ufixed<2,-1>"
    x = random_inputs(model, 300)
    out = qonnx_execute(_dense_graph(0.375, 0.3125), model.input.out_type.to_float(x))["out"]
    np.testing.assert_array_equal(to_mantissas(out, model.output_type), simulate(model, x_mantissa=x).output)
    with pytest.raises(VecQError) as e:
        from_qonnx(_dense_graph(1e-30, 0.5))
    assert "cannot be represented exactly" in _one_line(e) and "(fc).scale_type" in str(e.value)
    wide = _dense_graph(0.375, 0.5)  # biases from 1e-30 to 1e10: no ap_fixed of <= 64 bits holds them all
    bias = next(t for t in wide.graph.initializer if t.name == "bias")
    bias.CopyFrom(numpy_helper.from_array(np.array([1e-30, 1e10, 0.5, 1.0], dtype=np.float32), "bias"))
    with pytest.raises(VecQError) as e:
        from_qonnx(wide)
    assert _one_line(e).startswith("tiny: field 'node 'fc'': cannot be represented exactly")
