"""VecQ layers and the activation quantiser (vecq_hw.nn)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from vecq_hw.errors import ExportError, VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.nn import DEFAULT_WEIGHT_QUANT, FixedQuant, VecQConv2d, VecQLinear, set_quantize
from vecq_hw.quant import UL2Q, VecQ


def _linear(**kw):
    torch.manual_seed(0)
    return VecQLinear(12, 5, **kw)


def _conv(**kw):
    torch.manual_seed(0)
    return VecQConv2d(3, 4, 3, stride=1, padding=1, **kw)


def _weights_from_codes(iw, ndim):
    """(2c + 1) * alpha / 2 in float64, alpha per output channel (axis 0)."""
    alpha = iw.alpha.reshape((-1,) + (1,) * (ndim - 1))
    return (2 * iw.codes.astype(np.float64) + 1) * alpha / 2


LAYERS = [_linear, _conv]
QUANT_OPTS = [
    dict(method="vecq", per_channel=False),
    dict(method="vecq", per_channel=True),
    dict(method="ul2q", per_channel=False),  # a config: ul2q without its mean offset
    dict(method="ul2q", per_channel=True),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("opts", QUANT_OPTS)
@pytest.mark.parametrize("bits", list(range(1, 9)))
def test_integer_weights_equal_forward_weights(make, opts, bits):
    layer = make(weight_quant={**opts, "bits": bits})
    # float32: forward computes (c + 1/2)*alpha in float32, i.e. the exact product rounded once
    iw = layer.integer_weights()
    assert iw.codes.dtype == np.int8 and iw.codes.shape == tuple(layer.weight.shape)
    assert iw.alpha.dtype == np.float64 and iw.alpha.shape == (layer.out_channels if hasattr(
        layer, "out_channels") else layer.out_features,)
    assert iw.bits == bits and iw.encoding == "odd" and iw.beta is None and iw.unit == 0.5
    assert iw.levels.dtype == np.int64 and iw.levels.tolist() == list(range(1 - 2**bits, 2**bits, 2))
    assert iw.codes.min() >= -(2 ** (bits - 1)) and iw.codes.max() <= 2 ** (bits - 1) - 1
    w64 = _weights_from_codes(iw, layer.weight.ndim)
    wq32 = layer.quantized_weight().detach().numpy()
    np.testing.assert_array_equal(w64.astype(np.float32), wq32)
    if not opts["per_channel"]:
        assert np.all(iw.alpha == iw.alpha[0])
    # float64: bit for bit
    layer = layer.double()
    iw = layer.integer_weights()
    w64 = torch.from_numpy(_weights_from_codes(iw, layer.weight.ndim))
    assert torch.equal(layer.quantized_weight().detach(), w64)
    x = torch.randn((2, 12) if isinstance(layer, nn.Linear) else (2, 3, 6, 6), dtype=torch.float64)
    ref = F.linear(x, w64, layer.bias) if isinstance(layer, nn.Linear) else \
        F.conv2d(x, w64, layer.bias, stride=1, padding=1)
    assert torch.equal(layer(x), ref)


@pytest.mark.parametrize("make", LAYERS)
def test_ste_gradient_reaches_float_weight(make):
    layer = make()  # DEFAULT_WEIGHT_QUANT: 2-bit VecQ
    assert layer.weight_quant.get_config() == VecQ(2).get_config() == {**VecQ(2).get_config(), **DEFAULT_WEIGHT_QUANT}
    x = torch.randn((3, 12) if isinstance(layer, nn.Linear) else (3, 3, 5, 5))
    layer(x).square().sum().backward()
    # identity STE: d/dw equals d/dw_hat of the same loss
    wq = layer.quantized_weight().detach().requires_grad_(True)
    out = F.linear(x, wq, layer.bias) if isinstance(layer, nn.Linear) else layer._conv_forward(x, wq, layer.bias)
    out.square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, wq.grad, rtol=0, atol=0)


def test_float_mode():
    layer = _linear(weight_quant=None)
    plain = nn.Linear(12, 5)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 12)
    assert layer.quantize is False
    assert torch.equal(layer(x), plain(x))
    with pytest.raises(ExportError, match="float mode"):
        layer.integer_weights()
    q = _linear(weight_quant=VecQ(3))
    q.quantize = False  # the switch of a QAT schedule: float mode, the quantiser kept
    assert torch.equal(q(x), F.linear(x, q.weight, q.bias))
    with pytest.raises(ExportError):
        q.integer_weights()
    q.quantize = True
    assert q.integer_weights().bits == 3


def test_ul2q_offset_layer_trains_but_does_not_export():
    layer = _linear(weight_quant=UL2Q(2, offset=True))
    with torch.no_grad():
        layer.weight.add_(0.3)
    x = torch.randn(4, 12)
    r = layer.quant_result()
    assert r.has_offset
    assert torch.equal(layer.quantized_weight().detach(), r.value())
    assert layer(x).shape == (4, 5)
    with pytest.raises(ExportError, match="offset"):
        layer.integer_weights()


@pytest.mark.parametrize("kwargs, field", [
    (dict(groups=2), "groups"),  # depthwise (groups == channels) only
    (dict(weight_quant={"method": "vecq", "bits": 0}), "weight_quant.bits"),
    (dict(weight_quant={"method": "vecq", "bits": 9}), "weight_quant.bits"),
    (dict(weight_quant={"method": "vecq", "bits": 2.0}), "weight_quant.bits"),
    (dict(weight_quant=VecQ(16)), "weight_quant.bits"),
    (dict(weight_quant={"method": "lsq"}), "weight_quant.method"),
    (dict(weight_quant={"method": "vecq", "offset": True}), "weight_quant.offset"),  # ul2q only
])
def test_bad_arguments(kwargs, field):
    if "groups" in kwargs:
        with pytest.raises(VecQError, match=field):
            VecQConv2d(4, 4, 3, **kwargs)
        return
    for make in (lambda: VecQLinear(4, 3, **kwargs), lambda: VecQConv2d(2, 3, 3, **kwargs)):
        with pytest.raises(VecQError, match=field) as exc:
            make()
        assert "\n" not in str(exc.value)


@pytest.mark.parametrize("shorthand", [dict(bits=2), dict(quantizer="ul2q"), dict(per_channel=True)])
def test_the_old_shorthand_is_gone(shorthand):
    for make in (lambda: VecQLinear(4, 3, **shorthand), lambda: VecQConv2d(2, 3, 3, **shorthand)):
        with pytest.raises(TypeError, match="unexpected keyword"):
            make()


def test_state_dict_deepcopy_and_to():
    lin = _linear(weight_quant=VecQ(3, per_channel=True))
    conv = _conv(weight_quant={"method": "ul2q", "bits": 4})
    assert set(lin.state_dict()) == {"weight", "bias"}
    assert set(conv.state_dict()) == set(nn.Conv2d(3, 4, 3).state_dict())
    x = torch.randn(2, 12)
    torch.manual_seed(1)
    other = VecQLinear(12, 5, weight_quant=VecQ(3, per_channel=True))
    other.load_state_dict(lin.state_dict())
    assert torch.equal(other(x), lin(x))
    dup = copy.deepcopy(conv)
    xc = torch.randn(1, 3, 6, 6)
    assert torch.equal(dup(xc), conv(xc))
    np.testing.assert_array_equal(dup.integer_weights().codes, conv.integer_weights().codes)
    moved = copy.deepcopy(lin).to("cpu").to(torch.float64)
    assert moved.weight.dtype == torch.float64 and moved.weight_quant.bits == 3
    assert "weight_quant=VecQ(bits=3, per_channel=True" in repr(lin)
    nobias = VecQLinear(3, 2, bias=False)
    assert set(nobias.state_dict()) == {"weight"}


def test_quantiser_can_change_after_construction():
    layer = _linear()
    layer.weight_quant = layer.weight_quant.with_bits(5)
    assert layer.integer_weights().bits == 5
    assert layer.integer_weights().codes.max() > 1


# --- activation quantiser -----------------------------------------------------------------

@pytest.mark.parametrize("spelling", ["ap_ufixed<8,0,AP_RND,AP_SAT>", "ap_fixed<6,2>",
                                      "ap_fixed<8,3,AP_RND_CONV,AP_SAT_SYM>"])
def test_fixed_quant_matches_fixed_type(spelling):
    fq = FixedQuant(spelling)
    t = FixedType.parse(spelling)
    assert fq.fixed_type == t
    assert str(t) in repr(fq)
    x = torch.linspace(-5, 5, 1001, dtype=torch.float64)
    np.testing.assert_array_equal(fq(x).numpy(), t.quantize(x.numpy()))
    x32 = torch.linspace(-5, 5, 1001)
    np.testing.assert_array_equal(fq(x32).double().numpy(), t.quantize(x32.double().numpy()))


def test_fixed_quant_module_behaviour():
    t = FixedType.parse("ap_fixed<8,3,AP_RND,AP_SAT>")
    fq = FixedQuant(t)
    assert fq.fixed_type is t
    assert fq.state_dict() == {}
    dup = copy.deepcopy(fq)
    assert dup.fixed_type == t and repr(dup) == repr(fq)
    x = torch.linspace(-1, 1, 11, requires_grad=True)
    fq(x).sum().backward()
    assert x.grad is not None and torch.all(torch.isfinite(x.grad))
    with pytest.raises(VecQError):
        FixedQuant("ap_fixed<8>")



def test_quantize_switch():
    layer = _linear(weight_quant=VecQ(4))
    model = nn.Sequential(layer, nn.ReLU(), _linear(weight_quant=None))
    assert set_quantize(model, False) == 1  # the float layer has nothing to switch
    assert not layer.quantize and layer.weight_quant.bits == 4
    assert "quantize=False" in repr(layer)
    assert set_quantize(model, True) == 1 and layer.quantize and layer.integer_weights().bits == 4
    assert not model[2].quantize
    for bad in ("yes", 1):
        with pytest.raises(VecQError, match="quantize"):
            layer.quantize = bad
    with pytest.raises(VecQError) as ei:
        model[2].quantize = True  # no quantiser to switch on
    assert ei.value.field == "weight_quant" and "\n" not in str(ei.value)


# --- quantiser objects ---------------------------------------------------------------------

@pytest.mark.parametrize("make", LAYERS)
def test_weight_quant_object_equals_config(make):
    for config, obj in [({"method": "vecq", "bits": 3, "per_channel": True, "adaptive": True},
                         VecQ(3, per_channel=True, adaptive=True)),
                        ({"method": "ul2q", "bits": 2}, UL2Q(2, offset=False)),
                        ({"method": "vecq", "bits": 4}, VecQ(4))]:
        a, b = make(weight_quant=config), make(weight_quant=obj)
        assert a.weight_quant.get_config() == b.weight_quant.get_config()
        ia, ib = a.integer_weights(), b.integer_weights()
        np.testing.assert_array_equal(ia.codes, ib.codes)
        np.testing.assert_array_equal(ia.alpha, ib.alpha)
        assert repr(a) == repr(b)
    q = VecQ(3)
    layer = make(weight_quant=q)
    assert layer.weight_quant is q  # the object itself


def test_weight_quant_none_is_a_float_layer_and_can_be_assigned():
    layer = _linear(weight_quant=None)
    x = torch.randn(4, 12)
    assert layer.weight_quant is None and not layer.quantize
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert "weight_quant=None" in repr(layer)
    with pytest.raises(ExportError, match="float mode"):
        layer.integer_weights()
    layer.weight_quant = VecQ(4, per_channel=True)
    assert layer.quantize and layer.integer_weights().bits == 4
    layer.weight_quant = layer.weight_quant.with_bits(2)  # a QAT schedule step
    assert layer.integer_weights().bits == 2 and layer.weight_quant.per_channel
    layer.weight_quant = None  # a float layer again
    assert not layer.quantize and torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.weight_quant = {"method": "ul2q", "bits": 2}
    assert layer.weight_quant.name == "ul2q" and not layer.weight_quant.offset
    assert layer.integer_weights().bits == 2


def test_bad_weight_quant():
    for kwargs, field in [(dict(weight_quant=VecQ(9)), "weight_quant.bits"),
                          (dict(weight_quant={"method": "vecq", "bits": 9}), "weight_quant.bits"),
                          (dict(weight_quant={"method": "lsq"}), "weight_quant.method"),
                          (dict(weight_quant={"method": "vecq", "offset": True}), "weight_quant.offset"),
                          (dict(weight_quant="vecq"), "weight_quant")]:
        with pytest.raises(VecQError) as ei:
            _linear(**kwargs)
        assert ei.value.field == field and "\n" not in str(ei.value)


@pytest.mark.parametrize("per_channel", [False, True])
def test_depthwise_conv(per_channel):
    torch.manual_seed(3)
    conv = VecQConv2d(6, 6, 3, padding=1, groups=6, weight_quant=VecQ(3, per_channel=per_channel)).double()
    iw = conv.integer_weights()
    assert iw.codes.shape == (6, 1, 3, 3) and iw.alpha.shape == (6,)
    w = conv.weight.detach().numpy()
    if per_channel:  # each output channel quantised on its own
        for j in range(6):
            rj = VecQ(3).quantize(w[j])
            np.testing.assert_array_equal(iw.codes[j], rj.codes)
            assert iw.alpha[j] == float(rj.alpha)
    w_hat = torch.from_numpy(_weights_from_codes(iw, 4))
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    assert torch.equal(conv(x), F.conv2d(x, w_hat, conv.bias, padding=1, groups=6))
    for c_in, c_out, groups in [(6, 6, 3), (6, 12, 6), (4, 4, 0)]:
        with pytest.raises(VecQError, match="groups"):
            VecQConv2d(c_in, c_out, 3, groups=groups)
