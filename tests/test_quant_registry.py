"""Quantiser objects: configs, the registry, levels as data, and a custom quantiser defined
here (one class, nothing edited elsewhere) used by the layers, the model builders and the
recipes (issue #10, items 2 and 5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vecq_hw.errors import RecipeError, VecQError
from vecq_hw.models import build_model
from vecq_hw.nn import VecQConv2d, VecQLinear
from vecq_hw.quant import (
    QUANTIZERS,
    UL2Q,
    QuantResult,
    VecQ,
    WeightQuantizer,
    get_quantizer,
    quantizer_from_config,
    register_quantizer,
)
from vecq_hw.train.recipe import load_recipe, recipe_model_options

TINY = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "tiny_test.yaml").read_text())


# --- a custom quantiser: the whole definition -------------------------------------------

class FourLevels(WeightQuantizer):
    """2-bit codes for the levels {-s, -1, 1, s} (s = ``spread``, default 4) times alpha: the
    least-squares alpha of the nearest-level codes, a few alternations from mean|w|."""

    name = "four_levels"
    unit = 1.0

    def __init__(self, bits: int = 2, per_channel: bool = False, spread: int = 4):
        if bits != 2:
            raise VecQError(f"expected 2 bits, got {bits!r}", field="bits")
        super().__init__(bits, per_channel)
        self.spread = spread

    def levels(self) -> np.ndarray:
        return np.array([-self.spread, -1, 1, self.spread], dtype=np.int64)

    def _quantize_rows(self, w, ops):
        table = self.level_table() * self.unit
        alpha = ops.sum(abs(w)) / w.shape[1] / 2 + 1e-12
        for _ in range(4):
            idx, q = ops.nearest(w / alpha, table)
            alpha = ops.sum(w * q) / (ops.sum(q * q) + 1e-12) + 1e-12
        idx, q = ops.nearest(w / alpha, table)
        alpha = ops.sum(w * q) / (ops.sum(q * q) + 1e-12)
        return idx + self.cmin, alpha, None


@pytest.fixture
def registry():
    """The registry with FourLevels added, restored afterwards."""
    saved = dict(QUANTIZERS)
    register_quantizer(FourLevels)
    yield QUANTIZERS
    QUANTIZERS.clear()
    QUANTIZERS.update(saved)


def _rows(w: np.ndarray, per_channel: bool) -> np.ndarray:
    return w.reshape(w.shape[0], -1) if per_channel else w.reshape(1, -1)


@pytest.mark.parametrize("per_channel", [False, True])
def test_custom_levels_quantiser_in_a_layer(registry, per_channel):
    torch.manual_seed(0)
    q = FourLevels(per_channel=per_channel)
    layer = VecQLinear(16, 5, weight_quant=q).double()
    assert layer.weight_quant is q and layer.quantize
    iw = layer.integer_weights()
    assert iw.levels.dtype == np.int64 and iw.levels.tolist() == [-4, -1, 1, 4]
    assert iw.unit == 1.0 and iw.encoding == "custom" and iw.beta is None and iw.bits == 2
    assert iw.codes.dtype == np.int8 and iw.codes.shape == (5, 16) and iw.alpha.shape == (5,)
    assert set(np.unique(iw.codes)) <= {-2, -1, 0, 1}
    # the weight is levels[c + 2] * unit * alpha: computed here from the table we wrote above
    table = np.array([-4.0, -1.0, 1.0, 4.0])
    w_hat = table[iw.codes + 2] * iw.alpha[:, None]
    assert torch.equal(layer.quantized_weight().detach(), torch.from_numpy(w_hat))
    np.testing.assert_array_equal(iw.value(), w_hat)
    np.testing.assert_array_equal(iw.multipliers(), table[iw.codes + 2].astype(np.int64))
    # alpha is the least-squares scale of those codes; each code is the nearest level for the
    # step the codes were picked with (the last alternation), so no other code does better
    w = layer.weight.detach().numpy()
    qv = _rows(table[iw.codes + 2], per_channel)
    ls = (_rows(w, per_channel) * qv).sum(1) / (qv * qv).sum(1)
    np.testing.assert_allclose(iw.alpha if per_channel else iw.alpha[:1], ls, rtol=1e-9)
    assert ((w - w_hat) ** 2).sum() < (w**2).sum()
    # numpy and torch paths agree; float32 forward is the float64 weight rounded once
    np.testing.assert_array_equal(q.quantize(w).codes, iw.codes)
    layer32 = VecQLinear(16, 5, weight_quant=FourLevels(per_channel=per_channel))
    layer32.load_state_dict({k: v.float() for k, v in layer.state_dict().items()})
    iw32 = layer32.integer_weights()
    w32 = table[iw32.codes + 2] * iw32.alpha[:, None]
    assert torch.equal(layer32.quantized_weight().detach(), torch.from_numpy(w32).float())
    # and it trains: the straight-through gradient reaches the float weight
    x = torch.randn(3, 16, dtype=torch.float64)
    layer(x).square().sum().backward()
    assert layer.weight.grad is not None and torch.count_nonzero(layer.weight.grad) > 0


def test_custom_quantiser_through_configs_builders_and_recipes(registry):
    # a config names it and its own option; the registry checks the option for us
    q = quantizer_from_config({"method": "four_levels", "bits": 2, "spread": 8})
    assert isinstance(q, FourLevels) and q.get_config() == {"method": "four_levels", "bits": 2,
                                                            "per_channel": False, "spread": 8}
    with pytest.raises(VecQError, match=r"field 'spread'.*expected an integer"):
        quantizer_from_config({"method": "four_levels", "spread": "wide"})
    conv = VecQConv2d(3, 4, 3, weight_quant={"method": "four_levels", "spread": 8, "per_channel": True})
    assert conv.integer_weights().levels.tolist() == [-8, -1, 1, 8]
    # a model builder: one quantiser per layer, each with the config's options
    m = build_model("mlp", hidden=(8,), weight_quant={"method": "four_levels", "spread": 2})
    qs = [c.weight_quant for c in m if isinstance(c, VecQLinear)]
    assert len(qs) == 2 and qs[0] is not qs[1]
    assert all(isinstance(x, FourLevels) and x.spread == 2 for x in qs)
    # a recipe: the quant section takes the method's own options, nothing else was edited
    rec = yaml.safe_load(yaml.safe_dump(TINY))
    rec["quant"].update(method="four_levels", bits=2, spread=8)
    rec, _ = load_recipe(rec)
    assert rec["quant"]["spread"] == 8 and rec["quant"]["method"] == "four_levels"
    model = build_model(rec["model"]["name"], **recipe_model_options(rec))
    layers = [c for c in model if isinstance(c, (VecQLinear, VecQConv2d))]
    assert all(c.quantize and isinstance(c.weight_quant, FourLevels) and c.weight_quant.spread == 8
               for c in layers)
    rec2 = yaml.safe_load(yaml.safe_dump(TINY))
    rec2["quant"].update(method="four_levels", bits=2, adaptive=True)
    with pytest.raises(RecipeError, match=r"field 'quant\.adaptive': unknown option for method "
                                          r"'four_levels'; expected some of bits, per_channel, spread"):
        load_recipe(rec2)


# --- configs -----------------------------------------------------------------------------

@pytest.mark.parametrize("q", [VecQ(3), VecQ(4, per_channel=True, adaptive=True, refresh_every=5),
                               UL2Q(2, True, offset=True), UL2Q(5, offset=False)])
def test_config_round_trip(q):
    cfg = q.get_config()
    assert cfg["method"] == q.name and cfg["bits"] == q.bits
    assert yaml.safe_load(yaml.safe_dump(cfg)) == cfg  # plain data
    r = quantizer_from_config(cfg)
    assert type(r) is type(q) and r is not q and r.get_config() == cfg
    w = np.random.default_rng(1).standard_normal((6, 9))
    np.testing.assert_array_equal(r.quantize(w).codes, q.quantize(w).codes)
    assert type(q).from_config(cfg).get_config() == cfg
    assert repr(q).startswith(type(q).__name__ + "(bits=")


def test_with_bits_is_a_fresh_quantiser_with_the_same_options():
    q = VecQ(3, per_channel=True, adaptive=True, refresh_every=4)
    q._calls = 7
    r = q.with_bits(5)
    assert r is not q and r.bits == 5 and r._calls == 0 and r._step_cache is None
    assert {**r.get_config(), "bits": 3} == q.get_config()
    assert q.clone().get_config() == q.get_config()
    with pytest.raises(VecQError, match="bits"):
        q.with_bits(0)


def test_ul2q_offset_default_in_configs_vs_constructor():
    assert UL2Q(2).offset is True  # the published method
    assert get_quantizer("ul2q", 2).offset is True
    assert quantizer_from_config({"method": "ul2q"}).offset is False  # the hardware form
    assert quantizer_from_config({"method": "UL2Q", "offset": True}).offset is True


@pytest.mark.parametrize("config, field, words", [
    ({"method": "lsq"}, "quant.method", "unknown quantiser method 'lsq'; expected one of alq, bwn, esb, pq, sq, srq, twn, ul2q, vecq"),
    ({"method": 3}, "quant.method", "expected one of"),
    ({"bits": 2}, "quant.method", "expected a mapping with a method"),
    ("vecq", "quant.method", "expected a mapping with a method"),
    ({"method": "vecq", "offset": True}, "quant.offset",
     "unknown option for method 'vecq'; expected some of bits, per_channel, adaptive, refresh_every"),
    ({"method": "ul2q", "adaptive": True}, "quant.adaptive",
     "unknown option for method 'ul2q'; expected some of bits, per_channel, offset"),
    ({"method": "vecq", "bits": 9}, "quant.bits", "expected an integer number of bits in 1..8, got 9"),
    ({"method": "vecq", "bits": "2"}, "quant.bits", "expected an integer"),
    ({"method": "vecq", "bits": True}, "quant.bits", "expected an integer"),
    ({"method": "vecq", "per_channel": "yes"}, "quant.per_channel", "expected true or false"),
    ({"method": "vecq", "adaptive": 1}, "quant.adaptive", "expected true or false"),
    ({"method": "vecq", "refresh_every": 0}, "quant.refresh_every", "expected an integer >= 1"),
    ({"method": "vecq", "refresh_every": 2.5}, "quant.refresh_every", "expected an integer"),
])
def test_config_errors_name_the_option(config, field, words):
    with pytest.raises(VecQError) as ei:
        quantizer_from_config(config, max_bits=8, prefix="quant.", file="r.yaml")
    msg = str(ei.value)
    assert ei.value.field == field and words in msg and "\n" not in msg and msg.startswith("r.yaml: ")


def test_register_quantizer_checks(registry):
    assert registry["four_levels"] is FourLevels and {"vecq", "ul2q"} <= set(registry)
    assert register_quantizer(FourLevels) is FourLevels  # again: the same class is fine

    class Other(FourLevels):
        pass

    with pytest.raises(VecQError, match="already registered"):
        register_quantizer(Other)
    assert register_quantizer(Other, replace=True) is Other and registry["four_levels"] is Other
    with pytest.raises(VecQError, match="WeightQuantizer subclass"):
        register_quantizer(dict)

    class BadName(FourLevels):
        name = "Bad Name"

    with pytest.raises(VecQError, match="lower-case identifier"):
        register_quantizer(BadName)


# --- the levels table of a QuantResult ---------------------------------------------------

def test_levels_must_be_2_to_the_bits_integers():
    codes, alpha = np.zeros(3, np.int8), np.float64(1.0)
    r = QuantResult(codes=codes, alpha=alpha, bits=2, levels=[-3, -1, 1, 3], unit=0.5)
    assert r.levels.dtype == np.int64 and not r.levels.flags.writeable and r.encoding == "odd"
    assert QuantResult(codes=codes, alpha=alpha, bits=2, levels=[-2, -1, 0, 1], unit=1).encoding == "int"
    custom = QuantResult(codes=codes, alpha=alpha, bits=2, levels=np.array([-4.0, -1, 1, 4]), unit=1)
    assert custom.encoding == "custom" and custom.levels.dtype == np.int64
    with pytest.raises(VecQError, match="odd"):
        custom.odd()
    for levels, unit, words in [([-1, 1], 1.0, "2\\*\\*2 = 4 levels"), ([-1.5, -1, 1, 2], 1.0, "integer"),
                                ([[-3, -1, 1, 3]], 1.0, "shape"), ([-3, -1, 1, 3], 0.0, "unit"),
                                ([-3, -1, 1, 3], float("nan"), "unit")]:
        with pytest.raises(VecQError, match=words):
            QuantResult(codes=codes, alpha=alpha, bits=2, levels=levels, unit=unit)
    with pytest.raises(AttributeError):
        custom.encoding = "odd"  # derived, read-only


@pytest.mark.parametrize("levels_of, unit", [(lambda c: 3 * c + 1, 0.25), (lambda c: c, 1.0),
                                             (lambda c: c * c * np.sign(c), 0.5),
                                             (lambda c: 2 * c + 1, 0.1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_value_is_the_table_times_unit_times_alpha(levels_of, unit, dtype):
    """Every code, numpy and torch: value() == (levels[c] * unit) * alpha computed here by a
    plain lookup (value() takes an exact shortcut for affine tables with a power-of-two unit)."""
    k = 4
    c = np.arange(-8, 8)
    levels = levels_of(c).astype(np.int64)
    alpha = np.array([0.37, 1.9], dtype=dtype)
    codes = np.stack([c, c[::-1]]).astype(np.int8)
    want = (levels.astype(np.float64) * unit).astype(dtype)[codes.astype(np.int64) + 8] * alpha[:, None]
    r = QuantResult(codes=codes, alpha=alpha, bits=k, levels=levels, unit=unit)
    np.testing.assert_array_equal(r.value(), want)
    rt = QuantResult(codes=torch.from_numpy(codes), alpha=torch.from_numpy(alpha), bits=k, levels=levels,
                     unit=unit)
    assert torch.equal(rt.value(), torch.from_numpy(want))
