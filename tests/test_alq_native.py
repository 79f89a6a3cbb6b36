"""ALQ in its native form (issue 21 item 3): bit-planes + alpha constants, end to end.

* the folder format stores exactly the native bits (n_j bits per weight of channel j, nothing for
  a channel with 0 bases) plus the alpha table, round-trips, and refuses bad files in one line;
* the simulator equals an independent per-basis reference written here (acc_jb = sum x beta,
  then the alphas, then the ONE requantisation from the ap_types definitions);
* an ALQ-quantised PyTorch LeNet (groups with 0 bases) exports to alq_conv2d / alq_dense whose
  stored bits are the quantisers' native count, not 8 bits per weight;
* g++ C simulation of the HLS kernel (nnet_vecq_alq.h) equals the simulator on 300 random
  inputs: io_parallel with R = 1 and R > 1 layers in one project, io_stream (line buffer) in
  another; Verilator RTL (da4ml, native structure) equals it on 500;
* the basis-MAC form the estimate is calibrated on is proved equal to sum x * beta by yosys SAT
  (and a wrong reference is not), and the estimate folds the sign products like any layer's.
"""

from __future__ import annotations

import hashlib
import io
import shutil

import numpy as np
import pytest
import torch
import yaml

from alq_models import alq_cnn
from naive_reference import naive_requant
from vecq_hw import ir, rtl
from vecq_hw.errors import FormatError
from vecq_hw.export.torch_export import export
from vecq_hw.flow import simulate_rtl
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.estimate import estimate
from vecq_hw.hls.estimate.alq_form import prove_basis_form
from vecq_hw.ir.examples import random_inputs
from vecq_hw.ir.io import load_model, save_model, weight_memory_report
from vecq_hw.models.lenet import lenet5
from vecq_hw.sim import simulate

def _alq_layers(model):
    return [layer for layer in model.layers if isinstance(layer, ir.AlqWeighted)]


# ----------------------------------------------------------------------------- format, memory

def test_folder_stores_the_native_bits_and_round_trips(tmp_path):
    model = alq_cnn()
    rep = save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m") == model
    for layer, rec in zip(_alq_layers(model), rep.weight_memory["layers"]):
        counts = np.count_nonzero(layer.alpha, axis=1)  # n_j, read off the alpha table built here
        assert counts[0] == 0 and counts[1] == 1 and counts.max() >= 2
        fan_in = int(np.prod(layer.planes.shape[:-1]))
        native = int(counts.sum()) * fan_in  # n_j bits per weight of channel j
        assert rec["code_bits"] == native and rec["n_weights"] == fan_in * len(counts)
        planes_file = tmp_path / "m" / f"{layer.name}.planes.bin"
        assert planes_file.stat().st_size == (native + 7) // 8 == rec["image_bytes"]
        width = max(int(np.abs(layer.alpha).max()).bit_length() + 1, 2)
        assert rec["alpha_bits"] == int(counts.sum()) * width
        # bit 0 of the image is plane column 0 of input 0: channel 1's only basis, +1 -> 1
        assert (planes_file.read_bytes()[0] & 1) == (layer.planes.reshape(-1)[0] > 0)
    t = rep.weight_memory["total"]
    assert t["total_bits"] == t["code_bits"] + t["scale_bias_bits"] + t["alpha_bits"]


@pytest.mark.parametrize("case, field, message", [
    ("zero_before", "layers[1] (c1).alpha", "a zero before a non-zero alpha"),
    ("all_zero", "layers[1] (c1).alpha", "every channel has 0 bases"),
    ("planes_shape", "layers[1] (c1).planes.shape", "expected shape (kh, kw, 2, "),
    ("padding_bits", "planes.file", "nonzero padding bits"),
    ("layout", "layers[1] (c1).planes.layout", "expected bit-planes-lsb-first"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, case, field, message):
    model = alq_cnn()
    folder = tmp_path / "m"
    save_model(model, folder)
    doc = yaml.safe_load((folder / "model.yaml").read_text())
    c1 = doc["layers"][1]

    def rewrite(rec, key, data):
        (folder / rec[key]["file"]).write_bytes(data)
        rec[key]["sha256"] = hashlib.sha256(data).hexdigest()

    if case in ("zero_before", "all_zero"):
        a = model.layers[1].alpha.copy()
        if case == "zero_before":
            j = int(np.flatnonzero(np.count_nonzero(a, axis=1) >= 2)[0])
            a[j, 0] = 0
        else:
            a[:] = 0
        buf = io.BytesIO()
        np.save(buf, a)
        rewrite(c1, "alpha", buf.getvalue())
    elif case == "planes_shape":
        c1["planes"]["shape"][3] += 1
    elif case == "padding_bits":  # the first layer whose last planes byte is partly used
        i, rec = next((i, r) for i, r in enumerate(doc["layers"]) if "planes" in r and np.prod(r["planes"]["shape"]) % 8)
        field = f"layers[{i}] ({rec['name']}).{field}"
        data = bytearray((folder / rec["planes"]["file"]).read_bytes())
        data[-1] |= 0x80
        rewrite(rec, "planes", bytes(data))
    else:
        c1["planes"]["layout"] = "k-bit-lsb-first"
    (folder / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(FormatError) as e:
        load_model(folder)
    text = str(e.value)
    assert "\n" not in text and f"field '{field}'" in text and message in text, text


# ----------------------------------------------------------------------------- simulator

def _per_basis_reference(layer, x, in_type):
    """One sample, every output: acc_k = sum x * beta_k (the window, zero padding), acc_j = sum
    alpha_k acc_k over channel j's columns, y = acc * s + b, the requantisation from ap_types'
    definitions. Independent of the simulator and of layer.multipliers()."""
    planes = layer.planes.astype(np.int64)
    cols, k = [], 0
    for j, row in enumerate(layer.alpha.astype(np.int64)):
        cols.append([(k + b, int(a)) for b, a in enumerate(row[row != 0])])
        k += len(cols[-1])
    pf = layer.product_frac(in_type)
    s = [int(v) << (pf - in_type.frac - layer.scale_type.frac) for v in layer.scale]
    b = [int(v) << (pf - layer.bias_type.frac) for v in layer.bias]

    def outputs(window):  # window: the fan-in values, planes' row order
        acc_k = window.reshape(-1) @ planes.reshape(-1, planes.shape[-1])
        return [naive_requant(sum(a * int(acc_k[c]) for c, a in cols[j]) * s[j] + b[j], pf, layer.out_type)[0]
                for j in range(layer.n_out)]

    if isinstance(layer, ir.AlqDense):
        return np.array(outputs(x))
    kh, kw = layer.kernel
    pt, pb, pl, pr = layer.padding
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    oh, ow, _ = layer.infer_shape((x.shape,))
    sh, sw = layer.stride
    return np.array([[outputs(xp[r * sh:r * sh + kh, c * sw:c * sw + kw]) for c in range(ow)] for r in range(oh)])


def test_simulator_equals_a_per_basis_reference():
    model = alq_cnn(seed=0)
    x = random_inputs(model, 40, seed=2)
    trace = simulate(model, x_mantissa=x, trace=True).trace
    checked = 0
    for node in model.nodes():
        if isinstance(node.layer, ir.AlqWeighted):
            src = trace[node.layer.inputs[0]]
            for i in range(len(x)):
                want = _per_basis_reference(node.layer, src[i].astype(np.int64), node.in_types[0])
                np.testing.assert_array_equal(trace[node.layer.name][i], want)
                checked += want.size
    assert checked > 40 * 100
    # saturation happens (c1 is AP_SAT) and the outputs are far from constant
    t1 = model.layer("c1").out_type
    assert trace["c1"].max() == t1.max_mantissa and trace["c1"].min() == t1.min_mantissa
    assert len(np.unique(trace["d1"])) > 100


# ----------------------------------------------------------------------------- export

def test_pytorch_alq_exports_its_bases_as_planes():
    torch.manual_seed(0)
    net = lenet5(weight_quant={"method": "alq", "bits": 8, "max_bases": 3, "per_channel": True},
                 image_size=8, conv_channels=(3, 4), hidden=6, num_classes=3)
    rng = np.random.default_rng(0)
    quantised = [m for m in net.modules() if getattr(m, "weight_quant", None) is not None]
    for m in quantised:
        c = rng.integers(0, 4, size=m.weight.shape[0])
        c[0] = 0
        m.weight_quant.counts = c
    net.eval()
    res = export(net, net.input_shape, samples=torch.rand(64, 1, 8, 8))  # checked against PyTorch
    layers = _alq_layers(res.model)
    assert [layer.kind for layer in layers] == ["alq_conv2d", "alq_conv2d", "alq_dense", "alq_dense"]
    mem = weight_memory_report(res.model)
    n_weights = sum(m.weight.numel() for m in quantised)
    native = sum(int(np.sum(m.weight_quant.counts)) * m.weight[0].numel() for m in quantised)
    assert mem["total"]["n_weights"] == n_weights
    assert mem["total"]["code_bits"] == native < 8 * n_weights / 4  # 8-bit codes before
    for layer, m in zip(layers, quantised):
        np.testing.assert_array_equal(layer.counts(), m.weight_quant.counts)
        assert set(layer.alpha[layer.counts() == 1, 0].tolist()) <= {1}  # one basis: the scale holds alpha


# ----------------------------------------------------------------------------- HLS and RTL

N_CSIM = 300
CSIM_CASES = {"io_parallel": {"c1": 1, "c2": 12, "d1": 8}, "io_stream": {"c1": 6, "c2": 1, "d1": "full"}}


@pytest.fixture(scope="module", params=sorted(CSIM_CASES))
def csim_case(request, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.fail("g++ is required for the C simulation tests")
    model = alq_cnn(seed=1)
    reuse = {name: (model.layer(name).fan_in() * model.layer(name).planes.shape[-1] if r == "full" else r)
             for name, r in CSIM_CASES[request.param].items()}
    x = random_inputs(model, N_CSIM, seed=4)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path_factory.mktemp("alq") / request.param,
                        HlsOptions(io_type=request.param, reuse=reuse), expected=(x, y))
    return prj, csim(prj, opt="-O1"), y


def test_csim_equals_the_simulator(csim_case):
    prj, out, y = csim_case
    text = "".join(f.read_text() for f in (prj / "firmware").glob("*.cpp"))
    assert text.count("nnet::vecq_alq_conv2d<") == 2 and text.count("nnet::vecq_alq_dense<") == 1
    assert out.n == N_CSIM and out.mismatches == 0 and out.value_mismatches == 0, out.log[-3000:]
    np.testing.assert_array_equal(out.outputs, y.reshape(N_CSIM, -1))


def test_rtl_equals_the_simulator(tmp_path):
    model = alq_cnn(seed=2, size=(4, 4), filters=(3, 2), n_out=3)
    prj = rtl.write(model, tmp_path / "rtl", rtl.RtlOptions(latency_cutoff=0))
    result = simulate_rtl(prj, n=500)
    assert result.ok, result.summary()
    assert result.n_values == 500 * 3


# ----------------------------------------------------------------------------- form and cost

def test_basis_form_is_proved_and_the_estimate_folds_it():
    assert prove_basis_form(w=6, n=3)
    assert not prove_basis_form(w=6, n=3, gold="masked")  # the proof can fail
    model = alq_cnn()
    c1 = model.layer("c1")
    p = c1.fan_in() * c1.planes.shape[-1]
    unfolded, folded = (estimate(model, {"c1": r}).layers[1] for r in (1, p))
    assert (unfolded.products, unfolded.slots, folded.slots) == (p, p, 1)
    assert folded.luts < unfolded.luts and folded.cycles > unfolded.cycles
