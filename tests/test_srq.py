"""SRQ with DropBits (issue 25): the estimator, the DropBits schedule, the width cost, the
training procedure and the deployed widths.

* the multi-class straight-through estimator's gradients (SRQRound's backward, eq. (3) of
  vecq_hw.quant.srq_grid) against central finite differences of E[ĉ](u) = Σ_c c·π_c(u) built
  from the bin probabilities of eq. (1) (an independent formula), and one hand-computed case;
* DropBits: the drawn widths are a pure function of (seed, stream, step), continue exactly
  after a state_dict round trip, and their frequencies match P(width >= j) = Π (1 - p^(top-i+1));
* the width cost: E[cost] is the exact expectation of the per-assignment cost (brute force),
  and the per-assignment cost equals ``estimate`` of the model exported at those widths;
* a tiny LeNet-5 trained through ``vecq_hw.train.train`` with learned weight widths against a
  LUT budget: the deployed widths keep the decided design under the budget (and fill it: no
  width can grow by one bit within it), the price the training logged is ``estimate`` of the
  exported design, every exported layer carries its own learned width, the simulator agrees
  with the PyTorch model, and a run interrupted after the search and resumed ends
  bit-identical (bit-exactness of mixed widths in C simulation and RTL:
  tests/test_mixed_precision_e2e.py);
* bad input: a width outside 1..8 or an activation type no back end builds, one line naming
  the layer.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
from dataclasses import replace as dc_replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vecq_hw import ir
from vecq_hw.errors import RecipeError, VecQError
from vecq_hw.export.torch_export import ExportOptions, export
from vecq_hw.fixed import FixedType
from vecq_hw.hls.estimate import estimate
from vecq_hw.hls.estimate.model import fifo_estimate
from vecq_hw.hls.estimate.parts import get_part
from vecq_hw.hls.estimate.widths import total, width_tables
from vecq_hw.ir.examples import random_resnet
from vecq_hw.nn import SRQActivation
from vecq_hw.quant.srq_grid import BitWidths, SRQRound, bin_probs, width_probs
from vecq_hw.sim import simulate
from vecq_hw.train import CHECKPOINT, load_run, train
from vecq_hw.train.recipe import build_recipe_model, load_recipe
from vecq_hw.train.srq_cost import price_model
from vecq_hw.train.srq_schedule import SRQProcedure

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())
SRQ_RECIPE = copy.deepcopy(TINY)
SRQ_RECIPE["name"] = "tiny_srq"
SRQ_RECIPE["data"].update(train_limit=128, test_limit=64)
SRQ_RECIPE["quant"] = {"method": "srq", "bits": 6, "min_bits": 2, "per_channel": True, "learn_bits": True,
                       "act_type": TINY["quant"]["act_type"], "out_type": TINY["quant"]["out_type"]}
#: fps fixes the folding; the budget lies between uniform 2 bits and uniform 6 bits (priced below)
SRQ_OPTS = {"search_epochs": 2, "cost": "luts", "io_type": "io_parallel", "fps": 20000, "width_lr": 0.2}
SRQ_RECIPE["train"].update(float_epochs=1, epochs=3, srq=SRQ_OPTS)


# ----------------------------------------------------------------------------- the estimator

def _expected_code(u: torch.Tensor, lo: int, hi: int, tau: float) -> torch.Tensor:
    """E[ĉ](u) = Σ_c c·π_c(u), eq. (1)-(2), from the bin probabilities."""
    c = torch.arange(lo, hi + 1, dtype=torch.float64)
    return (bin_probs(u, lo, hi, tau) * c).sum(-1)


def _srq_grads(u: torch.Tensor, delta: float, tau: float, lo: int, hi: int, window):
    x = (u * delta).clone().requires_grad_(True)
    alpha = torch.tensor(delta, dtype=torch.float64, requires_grad=True)
    t = torch.tensor(tau, dtype=torch.float64, requires_grad=True)
    code = torch.clamp(torch.round(u), lo, hi)
    out = SRQRound.apply(x, alpha, torch.tensor(1.0, dtype=torch.float64), t, code, lo, hi, window)
    assert torch.equal(out.detach(), code * delta)  # the forward pass is the hard, deployed code
    out.sum().backward()
    return x.grad, alpha.grad, t.grad, code


def test_estimator_gradient_matches_finite_differences():
    lo, hi, tau, delta, h = -4, 3, 0.4, 0.25, 1e-5
    u = torch.tensor([-5.3, -4.0, -1.7, -0.5, 0.0, 0.26, 1.49, 2.9, 3.6], dtype=torch.float64)
    g_x, g_alpha, g_tau, code = _srq_grads(u, delta, tau, lo, hi, window=None)
    d_u = (_expected_code(u + h, lo, hi, tau) - _expected_code(u - h, lo, hi, tau)) / (2 * h)
    d_tau = (_expected_code(u, lo, hi, tau + h) - _expected_code(u, lo, hi, tau - h)) / (2 * h)
    # ∂L/∂x = D_u (x = u·Δ: the Δ cancels), ∂L/∂τ = Δ·D_τ, ∂L/∂Δ = ĉ - u·D_u, eq. (3)
    np.testing.assert_allclose(g_x.numpy(), d_u.numpy(), rtol=1e-6, atol=1e-9)
    assert float(g_tau) == pytest.approx(float((delta * d_tau).sum()), rel=1e-6)
    assert float(g_alpha) == pytest.approx(float((code - u * d_u).sum()), rel=1e-6)
    # the local grid (window 4 boundaries each side) drops terms below F'(4/τ)/τ per boundary
    g_w, _, _, _ = _srq_grads(u, delta, tau, lo, hi, window=4)
    bound = 2 * (lambda s: s * (1 - s))(torch.sigmoid(torch.tensor(3.5 / tau))) / tau
    assert float((g_w - g_x).abs().max()) <= float(bound)


def test_estimator_hand_computed_case():
    # grid {-1, 0, 1}, u = 0, τ = 1: D_u = F'(1/2) + F'(-1/2) = 2·σ(½)(1-σ(½))
    g_x, _, _, _ = _srq_grads(torch.tensor([0.0], dtype=torch.float64), 1.0, 1.0, -1, 1, None)
    s = 1 / (1 + math.exp(-0.5))
    assert float(g_x) == pytest.approx(2 * s * (1 - s), rel=1e-12)
    assert float(g_x) == pytest.approx(0.4700074, abs=1e-7)


# ----------------------------------------------------------------------------- DropBits

def test_dropbits_schedule_is_seeded_and_matches_its_probabilities():
    low, top, p = 2, 5, 0.5
    a, b = BitWidths(low, top, p, False, 0.9), BitWidths(low, top, p, False, 0.9)
    first = a.draw((4000,), seed=7, stream=1)
    assert torch.equal(first, b.draw((4000,), seed=7, stream=1))  # same seed, stream and step
    assert not torch.equal(first, BitWidths(low, top, p, False, 0.9).draw((4000,), seed=7, stream=2))
    assert not torch.equal(first, a.draw((4000,), seed=7, stream=1))  # the step counts
    c = BitWidths(low, top, p, False, 0.9)
    c.load_state_dict(a.state_dict())  # a checkpoint resumes the schedule where it stopped
    assert torch.equal(a.draw((4000,), seed=7, stream=1), c.draw((4000,), seed=7, stream=1))
    # P(width >= j) = Π_{i=low+1..j} (1 - p^(top - i + 1)): 7/8, 7/8·3/4, 7/8·3/4·1/2
    ge = {3: 7 / 8, 4: 7 / 8 * 3 / 4, 5: 7 / 8 * 3 / 4 / 2}
    n = 200_000
    w = BitWidths(low, top, p, False, 0.9).draw((n,), seed=3, stream=0)
    assert int(w.min()) >= low and int(w.max()) <= top
    for j, pj in ge.items():
        assert abs(float((w >= j).double().mean()) - pj) < 5 * math.sqrt(pj * (1 - pj) / n), j
    # training without DropBits (drop_rate 0, nothing learned) draws nothing
    assert not BitWidths(low, top, 0.0, False, 0.9).draws()


# ----------------------------------------------------------------------------- the width cost

@pytest.fixture(scope="module")
def priced():
    rec, _ = load_recipe(SRQ_RECIPE)
    model = build_recipe_model(rec)
    torch.manual_seed(0)
    model.eval()
    return model, price_model(model, model.input_shape, rec["train"]["srq"])


def test_expected_cost_is_the_exact_expectation(priced):
    _model, cost = priced
    variables = sorted(cost.low)
    torch.manual_seed(1)
    keep = {v: torch.rand(4, dtype=torch.float64) for v in variables}
    probs = {v: width_probs(keep[v]) for v in variables}
    brute = 0.0
    for combo in itertools.product(range(5), repeat=len(variables)):
        pr = math.prod(float(probs[v][i]) for v, i in zip(variables, combo))
        brute += pr * cost.at({v: cost.low[v] + i for v, i in zip(variables, combo)})
    assert float(cost.expected(probs)) == pytest.approx(brute, rel=1e-12)


def _set_widths(model, widths):
    for path, k in widths.items():
        model.get_submodule(path).weight_quant.widths.freeze(k)


def test_price_of_an_assignment_is_the_estimate_of_its_export(priced):
    model, cost = priced
    net = copy.deepcopy(model)
    widths = dict(zip(sorted(cost.low), (2, 6, 3, 5)))
    _set_widths(net, widths)
    x = torch.rand(16, *net.input_shape)
    imodel = export(net, net.input_shape, ExportOptions(name="priced"), samples=x).model
    assert sorted(layer.bits for layer in imodel.layers if isinstance(layer, ir.Weighted)) == [2, 3, 5, 6]
    est = estimate(imodel, cost.reuse, io_type="io_parallel")
    assert cost.at(widths) == pytest.approx(est.total("luts"), rel=1e-9)



def test_io_stream_price_includes_the_fifos_at_their_widths():
    """In io_stream the estimate has a FIFO row whose width follows each producer's activation
    type: the price of an assignment of weight AND activation widths is still the estimate of
    its export (without the FIFO terms the price was short by the whole row: 600 LUTs on the
    benchmark's LeNet-5, so a learned design could exceed the budget it was trained for)."""

    rec = copy.deepcopy(SRQ_RECIPE)
    rec["train"]["srq"] = dict(SRQ_OPTS, io_type="io_stream", act_learn=True)
    rec, _ = load_recipe(rec)
    model = build_recipe_model(rec)
    SRQProcedure.prepare_model(model, rec)
    model.eval()
    cost = price_model(model, model.input_shape, rec["train"]["srq"])
    acts = [v for v in cost.low if isinstance(model.get_submodule(v), SRQActivation)]
    assert len(acts) >= 2, "the activation quantisers are width variables"
    fifo_luts = []
    for shift in (0, 2):
        widths = {v: cost.low[v] + (i + shift) % 3 for i, v in enumerate(sorted(cost.low))}
        net = copy.deepcopy(model)
        for path, k in widths.items():
            q = net.get_submodule(path)
            (q.widths if isinstance(q, SRQActivation) else q.weight_quant.widths).freeze(k)
        x = torch.rand(16, *net.input_shape)
        imodel = export(net, net.input_shape, ExportOptions(name="priced"), samples=x).model
        est = estimate(imodel, cost.reuse, io_type="io_stream", part=rec["train"]["srq"]["part"])
        fifo_luts.append(est.fifos.luts)
        assert cost.at(widths) == pytest.approx(est.total("luts"), rel=1e-9)
    assert fifo_luts[0] != fifo_luts[1], "the two assignments' FIFO rows differ (the check covers them)"


def test_fifo_prices_where_paths_meet_are_the_row_of_every_combination():
    """A residual add: FIFO depths may depend on the widths, so the row is one table over the
    activation variables, each entry the estimator's row for that combination."""

    model = random_resnet(2, size=8, channels=(4, 8))
    assert any(len(layer.inputs) > 1 for layer in model.layers)
    convs = [layer.name for layer in model.layers if layer.kind == "conv2d"][:2]
    choices = [FixedType.parse(f"ap_fixed<{w},3,AP_RND,AP_SAT>") for w in (4, 6, 8)]
    types = {name: (f"act{i}", choices) for i, name in enumerate(convs)}
    reuse = {n.layer.name: 1 for n in model.nodes() if isinstance(n.layer, ir.Weighted)}
    terms = width_tables(model, reuse, "io_stream", {}, types, part="xc7z020")
    fifo = [t for t in terms if t.layer == "(fifos)"]
    assert len(fifo) == 1 and fifo[0].variables == ("act0", "act1")
    for a, b in itertools.product(range(3), repeat=2):
        pick = {convs[0]: choices[a], convs[1]: choices[b]}
        variant = dc_replace(model, layers=[dc_replace(layer, out_type=pick[layer.name]) if layer.name in pick
                                            else layer for layer in model.layers])
        assert fifo[0].table[a, b] == fifo_estimate(variant, get_part("xc7z020")).luts
    assert len({float(v) for v in fifo[0].table.ravel()}) > 1
    assert total(terms, {"act0": 0, "act1": 0}) < total(terms, {"act0": 2, "act1": 2})

# ----------------------------------------------------------------------------- training

def _train(out, **kw):
    return train(SRQ_RECIPE, out, progress=False, plot=False, threads=1, **kw)


@pytest.fixture(scope="module")
def srq_run(mnist, tmp_path_factory, priced):
    _model, cost = priced
    top, bottom = cost.at({v: 6 for v in cost.low}), cost.at({v: 2 for v in cost.low})
    SRQ_OPTS["lut_budget"] = bottom + 0.4 * (top - bottom)
    run = tmp_path_factory.mktemp("srq") / "run"
    return run, _train(run)


def test_learned_widths_fit_the_budget_at_the_estimated_price(srq_run, priced):
    run, metrics = srq_run
    widths = {p: k for p, k in metrics["srq_widths"].items() if isinstance(k, int)}
    assert len(widths) == 4 and all(2 <= k <= 6 for k in widths.values())
    assert len(set(widths.values())) > 1  # mixed precision: the budget is spent where it pays
    assert metrics["srq_cost"] <= metrics["srq_budget"] < 92_000  # below uniform 6 bits
    cost = priced[1]  # fill_budget: one more bit anywhere would exceed the budget
    assert all(cost.at({**widths, p: k + 1}) > metrics["srq_budget"] for p, k in widths.items() if k < 6)
    model, _rec = load_run(run)
    model.eval()
    x = torch.rand(32, *model.input_shape)
    imodel = export(model, model.input_shape, ExportOptions(name="learned"), samples=x).model
    deployed = [layer.bits for layer in imodel.layers if isinstance(layer, ir.Weighted)]
    assert deployed == [widths[p] for p in sorted(widths, key=int)]
    for layer in imodel.layers:
        if isinstance(layer, ir.Weighted):
            np.testing.assert_array_equal(layer.levels, ir.named_levels("int", layer.bits))
    est = estimate(imodel, metrics["srq_reuse"], io_type="io_parallel")
    assert metrics["srq_cost"] == pytest.approx(est.total("luts"), rel=1e-9)
    # the simulator against the PyTorch model (a float reference: export() already bounded each
    # layer by its rounding, so only a near-tie may flip an argmax)
    sim = simulate(imodel, x=x.permute(0, 2, 3, 1).numpy())
    with torch.no_grad():
        ref = model(x).double().numpy() * 2.0 ** sim.out_type.frac
    assert np.mean(sim.output.argmax(1) == ref.argmax(1)) >= 0.9


def test_resume_after_the_search_is_bit_identical(srq_run, tmp_path):
    run, _ = srq_run
    out = tmp_path / "run"
    r = _train(out, stop_after_epochs=3)  # float + both search epochs: widths just frozen
    assert r["interrupted"]
    ck = torch.load(out / CHECKPOINT, weights_only=True)
    assert ck["srq"]["cost"] is not None
    _train(out, resume=True)
    a = torch.load(run / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(out / "model.pt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and any("keep_logits" in k for k in a)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    drop = lambda h: {k: v for k, v in h.items() if k != "time_s"}  # noqa: E731
    logs = [[drop(json.loads(s)) for s in (d / "log.jsonl").read_text().splitlines()] for d in (run, out)]
    assert logs[0] == logs[1]


# ----------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("pin,field,words", [
    ({"bits": 9}, "train.srq.layers.6.bits", "expected a width in 1..8"),
    ({"act_type": "ap_ufixed<6,2,AP_RND,AP_WRAP>"}, "train.srq.layers.6.act_type", "AP_WRAP"),
    ({"act_type": "ap_ufixed<12,4,AP_RND,AP_SAT>"}, "train.srq.layers.6.act_type", "expected a width in 3..8"),
])
def test_bad_pins_name_the_layer(tmp_path, pin, field, words):
    rec = copy.deepcopy(SRQ_RECIPE)
    rec["train"]["srq"] = dict(rec["train"]["srq"], layers={"6": pin})
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(rec))
    with pytest.raises(RecipeError) as ei:
        load_recipe(f)
    msg = str(ei.value)
    assert ei.value.field == field and "layer '6'" in msg and words in msg and "\n" not in msg, msg


def test_a_learned_width_outside_1_to_8_is_refused_naming_the_layer(srq_run):
    run, _ = srq_run
    blob = torch.load(run / "model.pt", weights_only=True)
    rec, _ = load_recipe(SRQ_RECIPE)
    model = build_recipe_model(rec)
    from vecq_hw.train.procedure import procedure_for

    proc = procedure_for(rec, model)
    model.load_state_dict(blob["state_dict"])
    model.get_submodule("12").weight_quant.widths.width.fill_(9)
    with pytest.raises(VecQError) as ei:
        proc.load_model_extras({})
    assert "layer '12'" in str(ei.value) and "1..8" in str(ei.value)
