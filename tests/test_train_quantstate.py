"""Quantiser running state as plain data (vecq_hw.train.quantstate): read, restore, compare."""

from __future__ import annotations

import torch

from vecq_hw.nn import VecQLinear
from vecq_hw.train.quantstate import load_quant_state, needs_step_sync, quant_state, state_equal


def _net(weight_quant, seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(VecQLinear(20, 12, weight_quant=weight_quant), torch.nn.ReLU(),
                               VecQLinear(12, 4, weight_quant=weight_quant))


def test_sq_sampling_generator_round_trips():
    cfg = {"method": "sq", "base": "vecq", "bits": 2, "ratio": 0.5, "seed": 3}
    a, b = _net(cfg), _net(cfg)
    x = torch.rand(5, 20)
    for _ in range(3):
        a(x)  # a's generators advance, b's do not
    assert needs_step_sync(a)
    sa = quant_state(a)
    assert set(sa) == {"0", "2"} and "generator" in sa["0"]
    assert not state_equal(sa, quant_state(b))
    load_quant_state(b, sa)
    assert state_equal(quant_state(b), sa)
    assert torch.equal(a(x), b(x))  # the same channels stay float on the next call
    assert state_equal(quant_state(a), quant_state(b))


def test_adaptive_cache_round_trips_and_table_vecq_has_no_state():
    cfg = {"method": "vecq", "bits": 3, "adaptive": True, "refresh_every": 4}
    a, b = _net(cfg), _net(cfg)
    x = torch.rand(5, 20)
    a(x)
    a(x)
    s = quant_state(a)
    assert s["0"]["calls"] == 2 and s["0"]["step"] is not None
    load_quant_state(b, s)
    with torch.no_grad():  # the same weight change in both: b must reuse the cached step
        for net in (a, b):
            net[0].weight.mul_(1.5)
    assert torch.equal(a(x), b(x))
    assert quant_state(_net({"method": "vecq", "bits": 2})) == {}
    assert not needs_step_sync(_net({"method": "vecq", "bits": 2}))
