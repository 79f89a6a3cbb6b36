"""SQ (issue 14): error-proportional channel selection, the stage schedule, full export;
BWN and TWN as published.

The statistical test: 8 channels with fixed relative errors, n_fp = 2 channels kept full
precision per call, 20000 seeded calls of the training forward. The exact inclusion
probability p_i of sampling without replacement ∝ e_i is enumerated. By Hoeffding, each
channel's frequency deviates from p_i by >= 0.02 with probability <= 2 exp(-2·20000·0.02²)
= 2.3e-7; over the 8 channels the test fails falsely with probability <= 1.8e-6 (for an
arbitrary seed; the seed is fixed, so the run is reproducible). Uniform sampling (p = 0.25
each) and the paper's ∝ 1/e rule are both more than 0.05 away on some channel, so either
would fail.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from vecq_hw.errors import VecQError
from vecq_hw.quant import BWN, SQ, TWN, quantizer_from_config
from vecq_hw.quant.sq import channel_errors
from vecq_hw.train.sq_schedule import set_sq_ratio, stage_ratio

N_CALLS, TOL = 20000, 0.02


def inclusion(e: np.ndarray, k: int) -> np.ndarray:
    """P(i among k successive draws without replacement, each ∝ e over those left)."""
    n, p = len(e), np.zeros(len(e))
    for seq in itertools.permutations(range(n), k):
        pr, left = 1.0, e.sum()
        for i in seq:
            pr *= e[i] / left
            left -= e[i]
        for i in seq:
            p[i] += pr
    return p


def _weights_with_errors():
    """8 channels whose TWN relative errors differ widely."""
    rng = np.random.default_rng(0)
    rows = []
    for j in range(8):
        r = rng.normal(size=32)
        mix = j / 7  # from near-ternary (tiny error) to Gaussian (large error)
        tern = np.sign(r) * (np.abs(r) > 0.5)
        rows.append((1 - mix) * tern + mix * r + 0.01 * rng.normal(size=32))
    return torch.tensor(np.array(rows))


def test_selection_is_error_proportional():
    w = _weights_with_errors()
    q = SQ(2, True, "twn", ratio=0.75, seed=123)
    e = channel_errors(w, q.base_quantizer.quantize_torch(w).value()).numpy()
    assert e.max() / e.min() > 4  # the errors really differ
    p = inclusion(e, 2)
    counts = np.zeros(8)
    wq = q.base_quantizer.quantize_torch(w).value()
    for _ in range(N_CALLS):
        out = q(w)
        fp = (out == w).all(1).numpy() & ~(wq == w).all(1).numpy()
        assert fp.sum() == 2
        counts += fp
        # the quantised channels are the base's, exactly
        assert torch.equal(out[~torch.from_numpy(fp)], wq[~torch.from_numpy(fp)])
    freq = counts / N_CALLS
    assert np.max(np.abs(freq - p)) < TOL, (freq, p)
    assert np.max(np.abs(np.full(8, 0.25) - p)) > 0.05  # uniform would fail
    assert np.max(np.abs(inclusion(1 / e, 2) - p)) > 0.05  # so would the inverse rule


def test_ratio_schedule_and_export_is_full():
    from vecq_hw.nn import VecQLinear

    assert [stage_ratio(s, 8) for s in range(8)] == [0.5, 0.5, 0.75, 0.75, 0.875, 0.875, 1.0, 1.0]
    layer = VecQLinear(16, 8, weight_quant={"method": "sq", "base": "vecq", "bits": 2, "per_channel": True})
    model = torch.nn.Sequential(layer)
    assert set_sq_ratio(model, 0.5) == 1 and layer.weight_quant.ratio == 0.5
    w_train = layer.weight_quant(layer.weight)
    assert int((w_train == layer.weight).all(1).sum()) == 4  # half the channels float
    r = layer.integer_weights()  # export: the base on every channel, whatever the ratio
    base = layer.weight_quant.base_quantizer.quantize_torch(layer.weight).to_numpy()
    np.testing.assert_array_equal(r.codes, base.codes)
    assert r.encoding == "odd"
    with pytest.raises(VecQError, match="ratio"):
        set_sq_ratio(model, 1.5)
    with pytest.raises(VecQError, match="base"):
        quantizer_from_config({"method": "sq", "base": "nope"})


def test_gradient_reaches_both_kinds_of_channel():
    w = _weights_with_errors().requires_grad_(True)
    q = SQ(2, True, "twn", ratio=0.5, seed=1)
    (q(w) * torch.arange(32.0).double()).sum().backward()
    torch.testing.assert_close(w.grad, torch.arange(32.0).double().expand(8, 32))


def test_bwn_and_twn_as_published():
    w = np.random.default_rng(5).normal(size=(4, 50))
    r = BWN().quantize(w)
    np.testing.assert_array_equal(r.levels, [-1, 1])
    np.testing.assert_allclose(r.alpha, np.abs(w).mean(1))
    np.testing.assert_array_equal(r.value(), np.where(w >= 0, 1.0, -1.0) * np.abs(w).mean(1, keepdims=True))
    r = TWN().quantize(w)
    np.testing.assert_array_equal(r.levels, [-1, -1, 0, 1])
    delta = 0.7 * np.abs(w).mean(1, keepdims=True)
    keep = np.abs(w) > delta
    alpha = (np.abs(w) * keep).sum(1) / keep.sum(1)
    np.testing.assert_allclose(r.alpha, alpha)
    np.testing.assert_array_equal(r.value(), np.sign(w) * keep * alpha[:, None])
    assert set(np.unique(r.codes)) <= {-1, 0, 1}
    with pytest.raises(VecQError, match="bits"):
        TWN(bits=3)


def test_vecq_hw_train_steps_the_ratio_over_qat_epochs(tmp_path, monkeypatch):
    """`vecq-hw train` with `quant: {method: sq, base: twn}`: the QAT epochs run at 50, 75,
    87.5 and 100 %, and the saved run exports fully quantised."""
    import copy
    from pathlib import Path

    import yaml

    from vecq_hw.train import load_run, sq_schedule, train

    rec = yaml.safe_load((Path(__file__).resolve().parent.parent / "configs" / "tiny_test.yaml").read_text())
    rec = copy.deepcopy(rec)
    rec["quant"].update({"method": "sq", "base": "twn", "bits": 2, "per_channel": True})
    rec["train"].update({"float_epochs": 1, "epochs": 4})
    seen = []
    original = sq_schedule.set_sq_ratio

    def spy(model, ratio):
        seen.append(ratio)
        return original(model, ratio)

    monkeypatch.setattr(sq_schedule, "set_sq_ratio", spy)
    train(rec, tmp_path / "run", progress=False, plot=False, threads=1)
    assert seen == [0.5, 0.75, 0.875, 1.0]
    model, _ = load_run(tmp_path / "run")
    layers = [m for m in model.modules() if isinstance(getattr(m, "weight_quant", None), SQ)]
    assert layers and all(m.integer_weights().encoding == "custom" for m in layers)
    for m in layers:
        assert set(np.unique(m.integer_weights().codes)) <= {-1, 0, 1}
