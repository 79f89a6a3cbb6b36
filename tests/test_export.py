"""Export from PyTorch: the integer model computes exactly what its constants say.

The reference here is a second, independent implementation: PyTorch's own conv2d/linear in
float64, in PyTorch's channels-first layout, on the codes the *PyTorch layers* hand out and
the scale/bias constants the export chose. Every intermediate is an integer multiple of a
power of two below 2^53, so float64 is exact and equality is the right test. It catches a
wrong transpose, a wrong flatten order, wrong padding or a wrong BatchNorm fold.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw import ir
from vecq_hw.errors import ExportError
from vecq_hw.export.torch_export import ExportOptions, export_model
from vecq_hw.fixed import FixedType
from vecq_hw.fixed_torch import quantize_tensor
from vecq_hw.nn import FixedQuant, VecQConv2d, VecQLinear
from vecq_hw.sim import simulate

IN_T = "ap_ufixed<8,0,AP_RND,AP_SAT>"
ACT_T = "ap_ufixed<8,3,AP_RND,AP_SAT>"
OUT_T = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"


def _randomise_bn(bn: nn.Module, gen: torch.Generator):
    with torch.no_grad():
        n = bn.num_features
        bn.running_mean.copy_(torch.randn(n, generator=gen) * 0.3)
        bn.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        bn.weight.copy_(torch.randn(n, generator=gen) * 0.5 + 1.0)
        bn.bias.copy_(torch.randn(n, generator=gen) * 0.2)


def small_cnn(bits, seed=0, per_channel=False, quantizer="vecq"):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    q = dict(weight_quant={"method": quantizer, "bits": bits, "per_channel": per_channel})
    m = nn.Sequential(
        FixedQuant(IN_T),
        VecQConv2d(2, 4, 3, padding=1, **q), nn.BatchNorm2d(4), nn.ReLU(), FixedQuant(ACT_T),
        nn.MaxPool2d(2),
        VecQConv2d(4, 6, 3, stride=1, padding=0, **q), nn.BatchNorm2d(6), nn.ReLU(), FixedQuant(ACT_T),
        nn.Flatten(),
        VecQLinear(6 * 2 * 2, 5, **q), FixedQuant(OUT_T),
    )
    for mod in m:
        if isinstance(mod, nn.BatchNorm2d):
            _randomise_bn(mod, gen)
    m.input_shape = (2, 8, 8)
    return m.eval()


def _fx(layer_type: FixedType, mant: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(mant.astype(np.float64) * 2.0 ** -layer_type.frac)


def reference_forward(torch_model: nn.Sequential, imodel: ir.Model, x_nchw: torch.Tensor) -> torch.Tensor:
    """Channels-first float64 forward on the PyTorch layers' codes and the exported s, b."""
    weighted = [lay for lay in imodel.layers if isinstance(lay, ir.Weighted)]
    mods = list(torch_model)
    h = quantize_tensor(x_nchw.double(), FixedType.parse(IN_T))
    k = 0
    i = 1
    while i < len(mods):
        m = mods[i]
        if isinstance(m, (VecQConv2d, VecQLinear)):
            lay = weighted[k]
            k += 1
            iw = m.integer_weights()
            d = torch.from_numpy(2 * iw.codes.astype(np.float64) + 1)
            if isinstance(m, VecQConv2d):
                acc = F.conv2d(h, d, stride=m.stride, padding=m.padding)
                shape = (1, -1, 1, 1)
            else:
                acc = F.linear(h, d)
                shape = (1, -1)
            y = acc * _fx(lay.scale_type, lay.scale).reshape(shape) + _fx(lay.bias_type, lay.bias).reshape(shape)
            # skip BN (folded); ReLU then the quantiser, as PyTorch orders them
            j = i + 1
            if isinstance(mods[j], nn.BatchNorm2d):
                j += 1
            if isinstance(mods[j], nn.ReLU):
                y = torch.relu(y)
                j += 1
            h = quantize_tensor(y, mods[j].fixed_type)
            i = j + 1
            continue
        h = m(h)
        i += 1
    return h


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_simulator_equals_independent_reference_on_exported_constants(bits):
    tm = small_cnn(bits, seed=bits)
    imodel = export_model(tm, tm.input_shape, ExportOptions(scale_bits=14))
    gen = torch.Generator().manual_seed(100 + bits)
    x = torch.randint(0, 256, (64, 2, 8, 8), generator=gen).double() / 256.0
    ref = reference_forward(tm, imodel, x).numpy()
    res = simulate(imodel, x.permute(0, 2, 3, 1).numpy())
    np.testing.assert_array_equal(res.values(), ref)


def test_bn_fold_keeps_codes_and_argmax_agrees_with_qat_model():
    tm = small_cnn(2, seed=7, per_channel=True)
    imodel = export_model(tm, tm.input_shape)
    convs = [lay for lay in imodel.layers if isinstance(lay, ir.Conv2D)]
    codes = tm[1].integer_weights().codes
    np.testing.assert_array_equal(convs[0].codes, codes.transpose(2, 3, 1, 0))
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (400, 2, 8, 8), generator=gen).float() / 256.0
    with torch.no_grad():
        qat = tm(x).argmax(1).numpy()
    sim = simulate(imodel, x.permute(0, 2, 3, 1).double().numpy()).output.argmax(1)
    agreement = float(np.mean(qat == sim))
    print(f"QAT vs exported argmax agreement: {agreement:.4f}")
    # the export rounds s and b to 16 significant bits: only near-ties may flip
    assert agreement >= 0.97


def test_relu_before_unsigned_quantiser_becomes_signed_requant_then_relu():
    tm = small_cnn(2)
    imodel = export_model(tm, tm.input_shape)
    conv, relu = imodel.layers[1], imodel.layers[2]
    assert isinstance(conv, ir.Conv2D) and isinstance(relu, ir.ReLU)
    assert str(relu.out_type) == ACT_T
    assert conv.out_type.signed and conv.out_type.frac == relu.out_type.frac
    assert conv.out_type.max_value == relu.out_type.max_value


def test_accumulator_is_the_narrowest_that_holds_the_worst_case():
    tm = small_cnn(8)
    imodel = export_model(tm, tm.input_shape)
    conv = imodel.layers[1]
    d = (2 * conv.codes.astype(np.int64) + 1).reshape(-1, conv.n_out)
    x_max = imodel.input.out_type.max_mantissa  # unsigned input: x in [0, x_max]
    hi = int(np.where(d > 0, d, 0).sum(axis=0).max()) * x_max
    lo = int(np.where(d < 0, d, 0).sum(axis=0).min()) * x_max
    acc = conv.accum_type
    assert acc.min_mantissa <= lo and hi <= acc.max_mantissa
    narrower = -(1 << (acc.width - 2)), (1 << (acc.width - 2)) - 1
    assert lo < narrower[0] or hi > narrower[1]
    assert acc.frac == imodel.input.out_type.frac


@pytest.mark.parametrize("build, needle", [
    (lambda: nn.Sequential(FixedQuant(IN_T), nn.LSTM(4, 4)), "LSTM"),
    (lambda: nn.Sequential(FixedQuant(IN_T), nn.Conv2d(2, 4, 3, groups=2)), "Conv2d"),
    (lambda: nn.Sequential(VecQLinear(4, 2)), "FixedQuant"),
    (lambda: nn.Sequential(FixedQuant(IN_T), VecQLinear(4, 2), nn.ReLU()), "followed by"),
    (lambda: nn.Sequential(FixedQuant(IN_T), VecQLinear(4, 2), nn.ReLU(), FixedQuant("ap_ufixed<8,3,AP_RND,AP_WRAP>")),
     "saturating"),
    (lambda: nn.Sequential(FixedQuant(IN_T), VecQLinear(4, 2, weight_quant=None), FixedQuant(OUT_T)), "float mode"),
    (lambda: nn.Sequential(FixedQuant(IN_T), VecQLinear(5, 2), FixedQuant(OUT_T)), "expects 5 inputs"),
])
def test_unsupported_models_are_one_clear_error(build, needle):
    model = build().eval()
    with pytest.raises(ExportError) as err:
        export_model(model, (4,))
    msg = str(err.value)
    assert needle in msg and "\n" not in msg


def test_flatten_order_is_channels_last():
    """A dense layer after a flatten sees its rows permuted from (C,H,W) to (H,W,C)."""
    tm = small_cnn(4, seed=11)
    imodel = export_model(tm, tm.input_shape)
    dense = [lay for lay in imodel.layers if isinstance(lay, ir.Dense)][0]
    torch_codes = tm[11].integer_weights().codes  # (out, C*H*W) in (C, H, W) order
    c, h, w = 6, 2, 2
    expect = torch_codes.T.reshape(c, h, w, -1).transpose(1, 2, 0, 3).reshape(c * h * w, -1)
    np.testing.assert_array_equal(dense.codes, expect)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one torch thread is much faster than several on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
