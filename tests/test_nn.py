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
from vecq_hw.nn import FixedQuant, VecQConv2d, VecQLinear
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
    dict(quantizer="vecq", per_channel=False),
    dict(quantizer="vecq", per_channel=True),
    dict(quantizer="ul2q", per_channel=False),
    dict(quantizer="ul2q", per_channel=True),
]


@pytest.mark.parametrize("make", LAYERS)
@pytest.mark.parametrize("opts", QUANT_OPTS)
@pytest.mark.parametrize("bits", list(range(1, 9)))
def test_integer_weights_equal_forward_weights(make, opts, bits):
    layer = make(bits=bits, **opts)
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
    layer = make(bits=2, quantizer="vecq")
    x = torch.randn((3, 12) if isinstance(layer, nn.Linear) else (3, 3, 5, 5))
    layer(x).square().sum().backward()
    # identity STE: d/dw equals d/dw_hat of the same loss
    wq = layer.quantized_weight().detach().requires_grad_(True)
    out = F.linear(x, wq, layer.bias) if isinstance(layer, nn.Linear) else layer._conv_forward(x, wq, layer.bias)
    out.square().sum().backward()
    torch.testing.assert_close(layer.weight.grad, wq.grad, rtol=0, atol=0)


@pytest.mark.parametrize("bits", [None, 32])
def test_float_mode(bits):
    layer = _linear(bits=bits)
    plain = nn.Linear(12, 5)
    plain.load_state_dict(layer.state_dict())
    x = torch.randn(4, 12)
    assert layer.quantize is False
    assert torch.equal(layer(x), plain(x))
    with pytest.raises(ExportError, match="float mode"):
        layer.integer_weights()
    q = _linear(bits=3)
    q.quantize = False
    assert torch.equal(q(x), F.linear(x, q.weight, q.bias))
    with pytest.raises(ExportError):
        q.integer_weights()
    q.quantize = True
    q.integer_weights()


def test_ul2q_offset_layer_trains_but_does_not_export():
    layer = _linear(bits=2, quantizer="ul2q", offset=True)
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
    (dict(bits=0), "bits"),
    (dict(bits=9), "bits"),
    (dict(bits=2.0), "bits"),
    (dict(bits=16), "bits"),
    (dict(quantizer="lsq"), "quantizer"),
    (dict(offset=True), "offset"),  # offset only with ul2q
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


def test_state_dict_deepcopy_and_to():
    lin = _linear(bits=3, quantizer="vecq", per_channel=True)
    conv = _conv(bits=4, quantizer="ul2q")
    assert set(lin.state_dict()) == {"weight", "bias"}
    assert set(conv.state_dict()) == set(nn.Conv2d(3, 4, 3).state_dict())
    x = torch.randn(2, 12)
    torch.manual_seed(1)
    other = VecQLinear(12, 5, bits=3, per_channel=True)
    other.load_state_dict(lin.state_dict())
    assert torch.equal(other(x), lin(x))
    dup = copy.deepcopy(conv)
    xc = torch.randn(1, 3, 6, 6)
    assert torch.equal(dup(xc), conv(xc))
    np.testing.assert_array_equal(dup.integer_weights().codes, conv.integer_weights().codes)
    moved = copy.deepcopy(lin).to("cpu").to(torch.float64)
    assert moved.weight.dtype == torch.float64 and moved.bits == 3
    assert "bits=3" in repr(lin) and "quantizer='vecq'" in repr(lin) and "per_channel=True" in repr(lin)
    nobias = VecQLinear(3, 2, bias=False)
    assert set(nobias.state_dict()) == {"weight"}


def test_bits_can_change_after_construction():
    layer = _linear(bits=2)
    layer.bits = 5
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



def test_set_bits():
    layer = _linear(bits=None)
    layer.set_bits(4)
    assert layer.quantize and layer.integer_weights().bits == 4
    layer.set_bits(None)
    assert not layer.quantize and layer.bits == 4
    layer.set_bits(32)
    assert not layer.quantize
    with pytest.raises(VecQError, match="bits"):
        layer.set_bits(9)


# --- quantiser objects ---------------------------------------------------------------------

@pytest.mark.parametrize("make", LAYERS)
def test_weight_quant_object_equals_shorthand(make):
    for short, obj in [(dict(bits=3, per_channel=True, adaptive=True), VecQ(3, per_channel=True, adaptive=True)),
                       (dict(bits=2, quantizer="ul2q"), UL2Q(2, offset=False)),
                       (dict(bits=4), {"method": "vecq", "bits": 4})]:
        a, b = make(**short), make(weight_quant=obj)
        assert a.weight_quant.get_config() == b.weight_quant.get_config()
        ia, ib = a.integer_weights(), b.integer_weights()
        np.testing.assert_array_equal(ia.codes, ib.codes)
        np.testing.assert_array_equal(ia.alpha, ib.alpha)
        assert repr(a) == repr(b)
    q = VecQ(3)
    layer = make(weight_quant=q)
    assert layer.weight_quant is q and layer.weight_quantizer is q  # the object itself


def test_weight_quant_none_is_float_mode_and_can_be_assigned():
    layer = _linear(weight_quant=None)
    x = torch.randn(4, 12)
    assert layer.weight_quant is None and not layer.quantize and layer.bits is None
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    assert "weight_quant=None" in repr(layer)
    with pytest.raises(ExportError, match="float mode"):
        layer.integer_weights()
    with pytest.raises(VecQError, match="weight_quant"):
        layer.set_bits(2)  # no quantiser to switch on
    layer.weight_quant = VecQ(4, per_channel=True)
    assert layer.quantize and layer.bits == 4 and layer.integer_weights().bits == 4
    layer.weight_quant = layer.weight_quant.with_bits(2)  # a QAT schedule step
    assert layer.integer_weights().bits == 2 and layer.per_channel
    layer.weight_quant = None  # float again, the quantiser kept for set_bits
    assert torch.equal(layer(x), F.linear(x, layer.weight, layer.bias))
    layer.set_bits(3)
    assert layer.weight_quant.bits == 3 and layer.weight_quant.per_channel
    layer.weight_quant = {"method": "ul2q", "bits": 2}
    assert layer.quantizer == "ul2q" and not layer.offset and layer.integer_weights().bits == 2


def test_weight_quant_with_bits_and_conflicts():
    q = VecQ(4, per_channel=True)
    lazy = _linear(weight_quant=q, bits=None)  # float for now, q when switched on
    assert not lazy.quantize and lazy.weight_quant is None and lazy.bits == 4
    lazy.quantize = True
    assert lazy.weight_quant is q
    assert _linear(weight_quant=q, bits=2).weight_quant.get_config() == {**q.get_config(), "bits": 2}
    assert _linear(weight_quant=q, bits=4).weight_quant is q
    for kwargs, field in [(dict(weight_quant=q, quantizer="ul2q"), "quantizer"),
                          (dict(weight_quant=q, per_channel=True), "per_channel"),
                          (dict(weight_quant=None, bits=3), "bits"),
                          (dict(weight_quant=VecQ(9)), "weight_quant.bits"),
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
