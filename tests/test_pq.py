"""Product quantisation (issue 24, Stock et al. ICLR 2020): vector levels end to end.

* the folder format stores the codebook and index tables, counts their bits, round-trips, and
  refuses tables of the wrong shape, dtype or range, a block that does not tile the filter and K
  above the index width in one line (the CLI: exit 2);
* the simulator equals an independent per-block reference written here from PyTorch's block
  order (a (C_in, kh, kw) filter; a dense layer's (c, pixels) features after a flatten);
* one small CNN with d = 18, 9, 4, 1: g++ C simulation (every form: lookup and codebook-first,
  each unfolded and folded, in one project; io_parallel and io_stream) and Verilator RTL equal the simulator on 500 inputs;
  the estimate prefers codebook-first where the outputs exceed K;
* the quantiser: the G-weighted assignment is the brute-force minimiser, activation-weighted EM
  reconstructs a layer's outputs better than weight k-means, K follows the cut rule, a block
  that does not tile is refused;
* ``vecq-hw train``'s PQ procedure trains (EM, distillation) and resumes bit for bit, and its run
  exports to pq_dense layers whose deployed accuracy is the PyTorch model's;
* ResNet-18 / ResNet-50 sizes from layer shapes equal the paper's Table 1.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from naive_reference import naive_requant
from pq_models import pq_cnn
from vecq_hw import ir, rtl
from vecq_hw.errors import FormatError, RecipeError, VecQError
from vecq_hw.flow import export_run, simulate_rtl
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.mappings import MAPPINGS
from vecq_hw.ir.examples import random_inputs
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.quant.pq import PQ, assign, codewords_for, em
from vecq_hw.quant.pq_size import NETWORKS, PAPER, REGIMES, pq_size
from vecq_hw.sim import simulate
from vecq_hw.train import load_run, train
from vecq_hw.train.recipe import load_recipe
from vecq_hw.train.runtime import determinism

# ----------------------------------------------------------------------------- format


def test_folder_stores_the_tables_and_round_trips(tmp_path):
    model = pq_cnn()
    rep = save_model(model, tmp_path / "m")
    assert load_model(tmp_path / "m") == model
    recs = {r["name"]: r for r in rep.weight_memory["layers"]}
    # c1: 6 filters of 3x3x2 = 18 weights, one block of d = 18 each, K = 4 (2-bit indices)
    c1 = recs["c1"]
    width = int(np.abs(model.layer("c1").codebook).max()).bit_length() + 1
    assert (c1["block"], c1["codewords"], c1["index_bits"]) == (18, 4, 6 * 1 * 2)
    assert c1["codebook_bits"] == 4 * 18 * width and c1["code_bits"] == 12 + 4 * 18 * width
    # d1: 2 x 2 x 4 = 16 inputs in blocks of 4 -> 4 blocks x 8 outputs of 4-bit indices
    assert recs["d1"]["index_bits"] == 4 * 8 * 4 and recs["d1"]["n_weights"] == 16 * 8
    assert np.load(tmp_path / "m" / "c2.indices.npy").shape == (54 // 9, 4)


def _rewrite_table(folder, rec, key, arr):
    buf = io.BytesIO()
    np.save(buf, arr)
    (folder / rec[key]["file"]).write_bytes(buf.getvalue())
    rec[key].update(sha256=hashlib.sha256(buf.getvalue()).hexdigest(), dtype=str(arr.dtype),
                    shape=list(arr.shape))


BAD = [  # (case, field, message)
    ("k_above_index_width", "codebook.shape", "K <= 2^index_bits = 2"),
    ("codebook_dtype", "codebook.dtype", "expected int16"),
    ("codebook_range", "codebook", "|codeword entries| <= 32767"),
    ("codebook_2d", "codebook.shape", "expected [K, d]"),
    ("block_does_not_tile", "indices.shape", "a block of d = 5 weights does not tile the filter of 18"),
    ("indices_shape", "indices.shape", "expected [1, n_out]"),
    ("indices_dtype", "indices.dtype", "expected uint16"),
    ("index_range", "indices", "index 4 is not below K = 4"),
]


@pytest.mark.parametrize("case, field, message", BAD, ids=[c[0] for c in BAD])
def test_bad_tables_are_refused_in_one_line(tmp_path, case, field, message):
    model = pq_cnn()
    folder = tmp_path / "m"
    save_model(model, folder)
    doc = yaml.safe_load((folder / "model.yaml").read_text())
    c1, layer = doc["layers"][1], model.layer("c1")
    cb, idx = layer.codebook, layer.indices
    if case == "k_above_index_width":
        c1["index_bits"] = 1
    elif case == "codebook_dtype":
        _rewrite_table(folder, c1, "codebook", cb.astype(np.int8))
    elif case == "codebook_range":
        bad = cb.copy()
        bad[0, 0] = -32768
        _rewrite_table(folder, c1, "codebook", bad)
    elif case == "codebook_2d":
        _rewrite_table(folder, c1, "codebook", cb.reshape(-1))
    elif case == "block_does_not_tile":
        _rewrite_table(folder, c1, "codebook", np.zeros((4, 5), dtype=np.int16))
    elif case == "indices_shape":
        _rewrite_table(folder, c1, "indices", np.zeros((2, 6), dtype=np.uint16))
    elif case == "indices_dtype":
        _rewrite_table(folder, c1, "indices", idx.astype(np.int32))
    else:
        bad = idx.copy()
        bad[0, 0] = 4
        _rewrite_table(folder, c1, "indices", bad)
    (folder / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    with pytest.raises(FormatError) as e:
        load_model(folder)
    text = str(e.value)
    assert "\n" not in text and f"field 'layers[1] (c1).{field}'" in text and message in text, text
    if case == "index_range":  # the CLI: that line, exit 2
        from click.testing import CliRunner

        from vecq_hw.cli import cli

        r = CliRunner().invoke(cli, ["check", str(folder)])
        lines = r.stderr.strip().splitlines()
        assert r.exit_code == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr


# ----------------------------------------------------------------------------- simulator

def _torch_filters(layer) -> np.ndarray:
    """(n_out, fan-in) in PyTorch's filter order: block b of output j is codeword indices[b, j]."""
    return np.stack([np.concatenate([layer.codebook[k] for k in layer.indices[:, j]])
                     for j in range(layer.n_out)]).astype(np.int64)


def _per_block_reference(layer, x, in_type):
    """One sample, every output, from PyTorch's order: a conv reads x[row, col, c] * W[j, c, u, v]
    over the window, a dense layer input i = pixel * c + ch as PyTorch's feature ch * pixels +
    pixel; then y = acc * s + b and the requantisation from ap_types' definitions."""
    W = _torch_filters(layer)
    pf = layer.product_frac(in_type)
    s = [int(v) << (pf - in_type.frac - layer.scale_type.frac) for v in layer.scale]
    b = [int(v) << (pf - layer.bias_type.frac) for v in layer.bias]

    def out(acc):
        return [naive_requant(int(acc[j]) * s[j] + b[j], pf, layer.out_type)[0] for j in range(layer.n_out)]

    if isinstance(layer, ir.PqDense):
        c = layer.flatten_channels
        pixels = x.size // c
        acc = [sum(int(x[p * c + ch]) * W[j, ch * pixels + p] for p in range(pixels) for ch in range(c))
               for j in range(layer.n_out)]
        return np.array(out(acc))
    kh, kw = layer.kernel
    cin = x.shape[2]
    Wt = W.reshape(layer.n_out, cin, kh, kw)
    pt, pb, pl, pr = layer.padding
    xp = np.pad(x, ((pt, pb), (pl, pr), (0, 0)))
    oh, ow, _ = layer.infer_shape((x.shape,))
    sh, sw = layer.stride
    return np.array([[out([sum(int(xp[r * sh + u, q * sw + v, ch]) * Wt[j, ch, u, v]
                               for ch in range(cin) for u in range(kh) for v in range(kw))
                           for j in range(layer.n_out)]) for q in range(ow)] for r in range(oh)])


def test_simulator_equals_a_per_block_reference():
    model = pq_cnn(seed=3)
    x = random_inputs(model, 12, seed=2)
    trace = simulate(model, x_mantissa=x, trace=True).trace
    checked = 0
    for node in model.nodes():
        if isinstance(node.layer, ir.PqWeighted):
            src = trace[node.layer.inputs[0]]
            for i in range(len(x)):
                want = _per_block_reference(node.layer, src[i].astype(np.int64), node.in_types[0])
                np.testing.assert_array_equal(trace[node.layer.name][i], want)
                checked += want.size
    assert checked == 12 * (6 * 5 * 6 + 2 * 2 * 4 + 8 + 5)
    t1 = model.layer("c1").out_type  # saturation happens and the outputs vary
    assert trace["c1"].max() == t1.max_mantissa and trace["c1"].min() == t1.min_mantissa
    assert len(np.unique(trace["d2"])) > 20


# ----------------------------------------------------------------------------- HLS, RTL

N_INPUTS = 500
#: per layer its reuse factor and the form the estimate must choose there: every form, unfolded and folded
FORMS = {"c1": (6, "codebook_first"), "c2": (1, "lookup"), "d1": (4, "lookup"), "d2": (1, "codebook_first")}


def test_the_estimate_prefers_codebook_first_where_outputs_exceed_k():
    model = pq_cnn()
    for node in model.nodes():
        if node.layer.name in FORMS:
            r, form = FORMS[node.layer.name]
            m = MAPPINGS[node.layer.kind]
            assert m.form(node, r) == form, node.layer.name
            assert (node.layer.n_out > node.layer.codewords) == (form == "codebook_first")
            forms = m.forms(node, r)
            assert forms[form].luts < forms["lookup" if form != "lookup" else "codebook_first"].luts
    d2 = next(n for n in model.nodes() if n.layer.name == "d2")  # 8 x 5 products; 8 x 2 codebook-first ones
    assert set(MAPPINGS["pq_dense"].forms(d2, 8)) == {"lookup", "codebook_first"}
    assert set(MAPPINGS["pq_dense"].forms(d2, 5)) == {"lookup"}


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])  # io_stream: the conv line buffer
def test_csim_equals_the_simulator_in_every_form(tmp_path, io_type):
    if shutil.which("g++") is None:
        pytest.fail("g++ is required for the C simulation tests")
    model = pq_cnn(seed=1)
    x = random_inputs(model, N_INPUTS, seed=4)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "hls", HlsOptions(io_type=io_type,
                                                            reuse={k: r for k, (r, _f) in FORMS.items()}),
                        expected=(x, y))
    params = (prj / "firmware" / "parameters.h").read_text()
    assert params.count("codebook_first = true") == 2 and params.count("codebook_first = false") == 2
    out = csim(prj, opt="-O1")
    assert out.n == N_INPUTS and out.mismatches == 0 and out.value_mismatches == 0, out.log[-3000:]
    np.testing.assert_array_equal(out.outputs, y.reshape(N_INPUTS, -1))


def test_rtl_equals_the_simulator(tmp_path):
    model = pq_cnn(seed=2, size=(3, 3), filters=(3, 4))  # small: the build grows with the unrolled graph
    assert sorted(layer.block for layer in model.layers if isinstance(layer, ir.PqWeighted)) == [1, 4, 9, 18]
    prj = rtl.write(model, tmp_path / "rtl", rtl.RtlOptions(latency_cutoff=0))
    result = simulate_rtl(prj, n=N_INPUTS)
    assert result.ok, result.summary()
    assert result.n_values == N_INPUTS * 5


# ----------------------------------------------------------------------------- the quantiser

@pytest.fixture
def one_thread():
    """Small matrix products: one torch thread (two contend on a busy machine)."""
    with determinism(1):
        yield


def test_assignment_minimises_the_weighted_distance(one_thread):
    g = torch.Generator().manual_seed(0)
    W, C = torch.randn(300, 4, generator=g, dtype=torch.float64), torch.randn(8, 4, generator=g, dtype=torch.float64)
    A = torch.randn(4, 4, generator=g, dtype=torch.float64)
    G = A @ A.T + 0.1 * torch.eye(4, dtype=torch.float64)
    diff = W[:, None, :] - C[None, :, :]  # (300, 8, 4)
    brute = torch.einsum("nkd,de,nke->nk", diff, G, diff).argmin(1)
    assert torch.equal(assign(W, C, G), brute)
    assert not torch.equal(assign(W, C), brute)  # G matters


def test_activation_weighted_em_reconstructs_outputs_better(one_thread):
    """Inputs whose first coordinate dominates: EM with their Gram matrix keeps the outputs x.w
    closer than plain k-means of the weights (the paper's point), with the same K."""
    g = torch.Generator().manual_seed(1)
    X = torch.randn(1000, 4, generator=g, dtype=torch.float64) * torch.tensor([10.0, 1.0, 0.3, 0.1], dtype=torch.float64)
    W = torch.randn(256, 4, generator=g, dtype=torch.float64)
    G = X.T @ X

    def output_error(C, a):
        return float(((X @ (W - C[a]).T) ** 2).sum())

    weighted = output_error(*em(W, 16, 30, torch.Generator().manual_seed(0), G))
    plain = output_error(*em(W, 16, 30, torch.Generator().manual_seed(0)))
    assert weighted < 0.6 * plain


def test_codewords_follow_the_cut_and_blocks_must_tile():
    assert [codewords_for(n, 256) for n in (3, 4, 160, 1000, 1024, 5000)] == [1, 1, 32, 128, 256, 256]
    q = PQ(block=9, codewords=256, block_linear=8, codewords_linear=64)
    assert q.block_for((64, 32, 3, 3)) == 9 and q.codewords_for((64, 32, 3, 3)) == 256  # 2048 blocks
    assert q.codewords_for((10, 512)) == 64 and q.codewords_for((10, 64)) == 16  # 80 blocks -> 20 -> 16
    with pytest.raises(VecQError) as e:
        q.block_for((32, 1, 5, 5))
    assert "block=9 does not tile a filter of 25 weights" in str(e.value) and e.value.field == "block"
    with pytest.raises(VecQError):
        PQ(per_channel=True)
    bad = {**RECIPE, "model": {"name": "lenet5", "options": {}}, "quant": {**RECIPE["quant"], "block": 9}}
    with pytest.raises(RecipeError) as e:  # refused before any training
        load_recipe(bad)
    assert e.value.field == "quant.block" and "(layer 1)" in str(e.value)


# ----------------------------------------------------------------------------- training

RECIPE = {"format_version": 1, "name": "mlp_pq",
          "model": {"name": "mlp", "options": {"hidden": [16]}},
          "data": {"dataset": "mnist", "train_limit": 1024, "test_limit": 200},
          "quant": {"method": "pq", "bits": 8, "block_linear": 4, "codewords_linear": 32, "iterations": 20},
          "train": {"lr": 0.01, "qat_lr": 0.002, "batch_size": 64, "float_epochs": 2, "epochs": 2, "seed": 0,
                    "pq": {"samples": 128}}}


def _train(out, **kw):
    return train(RECIPE, out, progress=False, plot=False, threads=1, **kw)


@pytest.fixture(scope="module")
def pq_run(mnist, tmp_path_factory):
    run = tmp_path_factory.mktemp("pq") / "run"
    return run, _train(run)


def test_the_procedure_quantises_and_fine_tunes(pq_run):
    run, metrics = pq_run
    model, _ = load_run(run)
    layers = [m for m in model.modules() if isinstance(getattr(m, "weight_quant", None), PQ)]
    # 784*16/4 = 3136 blocks: K = 32; 16*10/4 = 40 blocks: cut to 8 (<= 40/4)
    assert [tuple(m.weight_quant.codebook.shape) for m in layers] == [(32, 4), (8, 4)]
    assert set(metrics["pq_em"]) == {"1", "5"} and metrics["pq_em_seconds"] > 0
    for m, k in zip(layers, (32, 8)):  # the forward's weight: every block one of K codewords
        rows = {tuple(r) for r in m.quantized_weight().detach().reshape(-1, 4).tolist()}
        assert 1 < len(rows) <= k
    # after EM the student is within a few points of its float teacher, and the fine-tuning
    # lowers the distillation loss (a KL divergence: far below the float phase's cross-entropy)
    assert abs(metrics["qat_test_acc"] - metrics["float_test_acc"]) <= 0.05
    log = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in log] == ["float", "float", "pq", "pq"]
    assert log[3]["train_loss"] < log[2]["train_loss"] < 0.5 * log[1]["train_loss"]


@pytest.mark.parametrize("stop", [1, 2], ids=["before-em", "inside-fine-tuning"])
def test_a_resumed_run_ends_identical(pq_run, tmp_path, stop):
    run, metrics = pq_run
    out = tmp_path / "run"
    assert _train(out, stop_after_epochs=stop)["interrupted"]
    resumed = _train(out, resume=True)
    a, b = torch.load(run / "model.pt", weights_only=True), torch.load(out / "model.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    for name, s in a["pq_state"].items():
        assert torch.equal(s["codebook"], b["pq_state"][name]["codebook"])
        assert torch.equal(s["assignments"], b["pq_state"][name]["assignments"])
    assert metrics["qat_test_acc"] == resumed["qat_test_acc"]


def test_the_run_exports_to_pq_layers(pq_run, tmp_path):
    run, metrics = pq_run
    rep = export_run(run, tmp_path / "model", eval_limit=200)
    model = load_model(tmp_path / "model")
    assert [layer.kind for layer in model.layers if isinstance(layer, ir.PqWeighted)] == ["pq_dense", "pq_dense"]
    assert rep.agreement == 1.0 and rep.deployed_accuracy == pytest.approx(metrics["qat_test_acc"], abs=0.011)


# ----------------------------------------------------------------------------- the paper's sizes

@pytest.mark.parametrize("net, regime", sorted(PAPER), ids=[f"{n}-{r}" for n, r in sorted(PAPER)])
def test_sizes_from_layer_shapes_equal_the_paper(net, regime):
    size = pq_size(NETWORKS[net], REGIMES[net][regime])
    mb, ratio = PAPER[(net, regime)]
    assert round(size["mb"], 2) == mb and round(size["ratio"]) == ratio
    assert round(size["float_mb"], 2) == {"resnet18": 44.59, "resnet50": 97.49}[net]
