"""ALQ (issue 14): init, loss-aware steps, pruning to a target average bit-width, deployed form.

* greedy residual binarisation + least-squares alpha reproduces an exact sum of bases and is
  never worse than the greedy alphas;
* the loss-aware alpha step is the exact minimiser of the quadratic model (gradient zero);
* pruning on a tiny MLP reaches the recipe's target average bit-width (0.6 and 1.5 bases per
  weight) within one basis: avg <= target and target - avg < one group's share;
* the deployed weights (codes in the 'int' table times the per-channel scale) equal
  sum_i a_i*beta_i*s_j with |a_i| <= 2**P, and the training forward uses those very values.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.nn import VecQLinear
from vecq_hw.quant import ALQ, quantizer_from_config
from vecq_hw.quant.alq import decompose, grid_bits, loss_aware_alpha
from vecq_hw.train.alq_steps import ALQTrainer


def test_decompose_recovers_one_basis_and_improves_with_more():
    g = torch.Generator().manual_seed(0)
    B = torch.where(torch.rand(4, 50, 1, generator=g) < 0.5, -1.0, 1.0).double()
    w = B[:, :, 0] * torch.tensor([[0.3], [1.0], [2.0], [0.01]]).double()
    B2, a2 = decompose(w, torch.full((4,), 1), 1)
    torch.testing.assert_close(torch.einsum("gni,gi->gn", B2, a2), w, rtol=1e-10, atol=0)
    w = torch.randn(5, 64, generator=g).double()
    errs = []
    for n in (1, 2, 3, 4):
        Bn, an = decompose(w, torch.full((5,), n), n)
        errs.append(((w - torch.einsum("gni,gi->gn", Bn, an)) ** 2).sum(1))
    for a, b in zip(errs, errs[1:]):
        assert torch.all(b < a)


def test_least_squares_never_worse_than_greedy():
    w = torch.randn(6, 80, generator=torch.Generator().manual_seed(1)).double()
    for n_bases in (1, 2, 3):
        B, a = decompose(w, torch.full((6,), n_bases), n_bases)
        # the greedy alphas: mean |residual| per step
        r, greedy = w.clone(), []
        for i in range(n_bases):
            ai = (r * B[:, :, i]).mean(1, keepdim=True)
            greedy.append(ai)
            r = r - ai * B[:, :, i]
        e_ls = ((w - torch.einsum("gni,gi->gn", B, a)) ** 2).sum(1)
        e_gr = (r**2).sum(1)
        assert torch.all(e_ls <= e_gr + 1e-12)


def test_loss_aware_alpha_minimises_the_quadratic_model():
    gen = torch.Generator().manual_seed(2)
    w_hat = torch.randn(3, 40, generator=gen).double()
    B, _ = decompose(w_hat, torch.tensor([3, 2, 1]), 3)
    on = torch.arange(3).reshape(1, -1) < torch.tensor([3, 2, 1]).reshape(-1, 1)
    grad, h = torch.randn(3, 40, generator=gen).double(), torch.rand(3, 40, generator=gen).double() + 0.5
    alpha = loss_aware_alpha(w_hat, B, on, grad, h)
    d = torch.einsum("gni,gi->gn", B, alpha) - w_hat  # model: g^T d + 1/2 d^T H d
    model_grad = torch.einsum("gn,gni->gi", grad + h * d, B) * on  # d/d alpha
    assert model_grad.abs().max() < 1e-8
    assert torch.all(alpha[~on] == 0)


def _tiny(seed=0):
    torch.manual_seed(seed)
    q = {"method": "alq", "bits": 8, "max_bases": 3, "target_bits": 0.6, "prune_rate": 0.3, "top_k": 0.5}
    return nn.Sequential(nn.Flatten(), VecQLinear(64, 24, weight_quant=q), nn.ReLU(),
                         VecQLinear(24, 10, weight_quant=dict(q)))


@pytest.mark.parametrize("target", [0.6, 1.5])
def test_pruning_reaches_the_target_within_one_basis(target):
    model = _tiny()
    for m in model:
        if isinstance(m, VecQLinear):
            m.weight_quant.target_bits = target
    x = torch.randn(256, 64, generator=torch.Generator().manual_seed(3))
    y = (x[:, :10] * 3).argmax(1)
    tr = ALQTrainer(model, lr=1e-3)
    tr.init()
    assert tr.average_bits() == 3.0
    opt = torch.optim.Adam(tr.other_parameters(), lr=1e-3)
    for step in range(30):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        tr.step()
        if step % 10 == 9:
            tr.prune(rounds=1)
    avg = tr.prune()
    groups = [(m.weight.shape[1], m.weight.shape[0]) for m in tr.layers]
    total = sum(n * g for n, g in groups)
    one_basis = max(n for n, _ in groups) / total
    assert avg <= target and target - avg < one_basis, (avg, target, one_basis)
    tr.finish()
    counts = np.concatenate([m.weight_quant.counts for m in tr.layers])
    assert abs(sum(int(c) * n for c, (n, g) in zip(counts, [gg for gg in groups for _ in range(gg[1])]))
               / total - avg) < 1e-12
    # deployed form: int table, codes = sum a_i beta_i with |a_i| <= 2**P, a pruned row is 0
    for m in tr.layers:
        r = m.integer_weights()
        q = m.weight_quant
        assert r.encoding == "int" and r.bits == 8
        for j, c in enumerate(q.counts):
            vals = np.unique(r.codes[j])
            assert len(vals) <= 2 ** int(c)
            if c == 0:
                assert np.all(r.codes[j] == 0)
            assert np.abs(r.codes[j]).max() <= int(c) * 2 ** grid_bits(8, 3)
        # the training forward is the exported weight, bit for bit
        w_fwd = m.weight_quant(m.weight).detach()
        torch.testing.assert_close(w_fwd.double(), torch.from_numpy(r.value()).double(), rtol=0, atol=1e-7)


def test_options_and_errors():
    q = quantizer_from_config({"method": "alq", "max_bases": 2, "target_bits": 0.4})
    assert q.get_config()["target_bits"] == 0.4 and q.bits == 8
    with pytest.raises(VecQError, match="target_bits"):
        ALQ(target_bits=5.0)
    with pytest.raises(VecQError, match="top_k"):
        ALQ(top_k=0)
    with pytest.raises(VecQError, match="bits"):
        ALQ(bits=3, max_bases=4)
