"""Adaptive VecQ (issue #6) wired into the layers, the model builders and the recipes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from vecq_hw.errors import RecipeError, VecQError
from vecq_hw.models import build_model
from vecq_hw.nn import VecQConv2d, VecQLinear
from vecq_hw.quant import VecQ
from vecq_hw.quant import adaptive as ad
from vecq_hw.train.recipe import load_recipe, recipe_model_options

TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "tiny_test.yaml").read_text())


def _with_quant(**fields) -> dict:
    rec = yaml.safe_load(yaml.safe_dump(TINY))
    rec["quant"].update(fields)
    return rec


def _loss(layer) -> float:
    with torch.no_grad():
        return float(((layer.weight.double() - layer.quantized_weight().double()) ** 2).sum())


@pytest.mark.parametrize("make", [lambda **kw: VecQLinear(96, 16, **kw),
                                  lambda **kw: VecQConv2d(8, 6, 3, padding=1, **kw)])
@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_adaptive_layer_never_worse_than_table(make, per_channel, bits):
    torch.manual_seed(bits)
    table = make(weight_quant=VecQ(bits, per_channel))
    with torch.no_grad():  # heavy-tailed weights: the table step is not the best there
        table.weight.copy_(torch.distributions.Laplace(0.0, 0.1).sample(table.weight.shape))
    adap = make(weight_quant=VecQ(bits, per_channel, adaptive=True))
    adap.load_state_dict(table.state_dict())
    lt, la = _loss(table), _loss(adap)
    assert la <= lt * (1 + 1e-6)
    if bits >= 3 and not per_channel:
        assert la < lt  # Laplace weights: the searched step is strictly better
    # what export sees is what forward uses
    iw = adap.integer_weights()
    assert iw.codes.shape == tuple(adap.weight.shape)
    assert "adaptive=True" in repr(adap)


def test_layer_options_refused():
    with pytest.raises(VecQError, match="adaptive"):
        VecQLinear(4, 2, weight_quant={"method": "ul2q", "adaptive": True})
    with pytest.raises(VecQError, match="refresh_every"):
        VecQLinear(4, 2, weight_quant={"method": "ul2q", "refresh_every": 3})
    with pytest.raises(VecQError, match="refresh_every"):
        VecQLinear(4, 2, weight_quant={"method": "vecq", "adaptive": True, "refresh_every": 0})
    with pytest.raises(VecQError, match="adaptive"):
        VecQLinear(4, 2, weight_quant={"method": "vecq", "adaptive": "yes"})


def test_refresh_every_searches_every_nth_forward(monkeypatch):
    calls = []
    real = ad.optimal_steps

    def counting(*a, **kw):
        calls.append(1)
        return real(*a, **kw)

    monkeypatch.setattr(ad, "optimal_steps", counting)
    torch.manual_seed(0)
    layer = VecQLinear(64, 8, weight_quant=VecQ(3, adaptive=True, refresh_every=3))
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    x = torch.randn(5, 64)
    q0 = layer.weight_quant
    for _ in range(7):  # forward + an in-place update, as in training
        opt.zero_grad()
        layer(x).sum().backward()
        opt.step()
    assert layer.weight_quant is q0  # one quantiser kept across forward calls
    assert len(calls) == 3  # calls 0, 3 and 6 searched; the other 4 reused the step

    calls.clear()
    every = VecQLinear(64, 8, weight_quant=VecQ(3, adaptive=True))  # refresh_every=1: every call
    for _ in range(4):
        every(x)
    assert len(calls) == 4

    calls.clear()
    layer.reset_quant_cache()
    layer(x)
    assert len(calls) == 1  # a reset cache searches at once
    layer.weight_quant = q0.with_bits(4)  # new bits: a new quantiser, a new search
    assert layer.weight_quant is not q0 and layer.weight_quant.bits == 4
    layer(x)
    assert len(calls) == 2


def test_recipe_fields_validate_and_reach_the_layers():
    rec, _ = load_recipe(TINY)
    assert rec["quant"]["adaptive"] is False and rec["quant"]["refresh_every"] == 1

    rec, _ = load_recipe(_with_quant(adaptive=True, refresh_every=4))
    opts = recipe_model_options(rec)
    assert opts["weight_quant"] == {"method": "vecq", "bits": 2, "per_channel": False, "adaptive": True,
                                    "refresh_every": 4}
    model = build_model(rec["model"]["name"], **opts)
    layers = [m for m in model.modules() if isinstance(m, (VecQLinear, VecQConv2d))]
    assert layers and all(m.weight_quant.adaptive and m.weight_quant.refresh_every == 4 for m in layers)

    for fields, where in [(dict(adaptive="yes"), "quant.adaptive"),
                          (dict(adaptive=1), "quant.adaptive"),
                          (dict(refresh_every=0), "quant.refresh_every"),
                          (dict(refresh_every=2.5), "quant.refresh_every"),
                          (dict(method="ul2q", adaptive=True), "quant.adaptive"),
                          (dict(method="ul2q", refresh_every=2), "quant.refresh_every")]:
        with pytest.raises(RecipeError, match=where.replace(".", r"\.")):
            load_recipe(_with_quant(**fields))
    bad = yaml.safe_load(yaml.safe_dump(TINY))
    bad["model"]["options"] = {"adaptive": True}
    with pytest.raises(RecipeError, match="quant section"):
        load_recipe(bad)
