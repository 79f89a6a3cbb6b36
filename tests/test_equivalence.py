"""Every export runs the integer model and the PyTorch model on sample inputs and refuses when
they part beyond the rounding of the constants (issue #11 items 1, 3, 4).

The refusals are provoked by breaking one step of the exporter on purpose (monkeypatch):
a BatchNorm that is not folded, a flatten whose rows are not permuted, an add that drops an
input. Each is a network PyTorch does not compute; the check must name the layer where the
two part. The BatchNorm-outlier test checks item 4: one channel with running_var ~ 0 leaves
the other channels' constants and outputs unchanged.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw import ir
from vecq_hw.errors import ExportError
from vecq_hw.export import fold, handlers
from vecq_hw.export.torch_export import ExportOptions, export
from vecq_hw.fixed import FixedType
from vecq_hw.nn import FixedQuant, VecQConv2d, VecQLinear
from vecq_hw.sim import simulate

IN_T = "ap_ufixed<8,0,AP_RND,AP_SAT>"
ACT_T = "ap_ufixed<8,3,AP_RND,AP_SAT>"
RES_T = "ap_fixed<9,4,AP_RND,AP_SAT>"
OUT_T = "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"
SHAPE = (2, 8, 8)


class Net(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        self.inq = FixedQuant(IN_T)
        self.conv1, self.bn1, self.q1 = VecQConv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), FixedQuant(ACT_T)
        self.conv2, self.bn2, self.q2 = VecQConv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), FixedQuant(RES_T)
        self.addq = FixedQuant(ACT_T)
        self.pool = nn.MaxPool2d(2)
        self.fc, self.outq = VecQLinear(4 * 16, 5), FixedQuant(OUT_T)
        with torch.no_grad():
            for bn in (self.bn1, self.bn2):
                bn.running_mean.copy_(torch.randn(4, generator=gen) * 0.3)
                bn.running_var.copy_(torch.rand(4, generator=gen) + 0.5)
                bn.weight.copy_(torch.randn(4, generator=gen) * 0.5 + 1.0)
                bn.bias.copy_(torch.randn(4, generator=gen) * 0.2)
        self.eval()

    def forward(self, x):
        h = self.q1(F.relu(self.bn1(self.conv1(self.inq(x)))))
        r = self.q2(self.bn2(self.conv2(h)))
        h = self.pool(self.addq(F.relu(h + r)))
        return self.outq(self.fc(h.flatten(1)))


def test_a_passing_export_reports_its_measured_agreement():
    res = export(Net(), SHAPE)
    eq = res.equivalence
    assert eq.n_samples == 256 and eq.inputs == "random"
    assert 0.9 <= eq.exact <= 1.0 and eq.argmax >= 0.9 and eq.max_lsb >= 0
    named = {la.layer: la for la in eq.layers}
    # exact layers agree to the bit; layers with rounded constants within their bound
    assert named["input"].allowed_lsb == 0 and named["input"].max_lsb == 0
    assert all(la.max_lsb <= la.allowed_lsb for la in eq.layers)
    assert {"inq", "q1", "q2", "addq", "pool", "outq"} <= {la.torch for la in eq.layers}
    text = res.text()
    assert "256 random inputs" in text and "argmax agreement" in text and "\n" not in text


def test_caller_samples_are_used_and_checked():
    x = torch.rand(40, *SHAPE)
    res = export(Net(), SHAPE, samples=x)
    assert res.equivalence.inputs == "caller" and res.equivalence.n_samples == 40
    with pytest.raises(ExportError, match="samples"):
        export(Net(), SHAPE, samples=torch.rand(4, 3, 8, 8))


def _refusal(monkeypatch, target, attr, replacement):
    monkeypatch.setattr(target, attr, replacement)
    with pytest.raises(ExportError) as err:
        export(Net(), SHAPE)
    return err.value


def test_an_unfolded_batchnorm_is_caught_at_its_layer(monkeypatch):
    err = _refusal(monkeypatch, handlers, "fold_batchnorm", lambda bn, s, b, where: (s, b))
    assert "parts from PyTorch at layer 'conv1_relu'" in str(err) and err.field == "q1"


def test_a_flatten_in_the_wrong_order_is_caught(monkeypatch):
    real = handlers._flatten

    def no_order(b, node):
        v = real(b, node)
        v.order = None  # as if (H, W, C) were PyTorch's (C, H, W) order
        return v
    err = _refusal(monkeypatch, handlers, "_flatten", no_order)
    assert "layer 'flatten'" in str(err) and "allows 0 LSB" in str(err)


class GapNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.inq = FixedQuant(IN_T)
        self.conv, self.q = VecQConv2d(2, 4, 3, padding=1), FixedQuant(ACT_T)
        self.gq = FixedQuant(ACT_T)
        self.fc, self.outq = VecQLinear(4, 5), FixedQuant(OUT_T)
        self.eval()

    def forward(self, x):
        h = self.q(F.relu(self.conv(self.inq(x))))
        return self.outq(self.fc(self.gq(h.mean((2, 3)))))


def test_a_wrong_global_average_constant_is_caught(monkeypatch):
    assert export(GapNet(), SHAPE).model.layer("mean").mult == 1  # 8x8: exactly 1/64
    monkeypatch.setattr(ir.GlobalAvgPool2D, "constant",
                        staticmethod(lambda n, frac: (3, FixedType(width=2, integer=2 - frac, signed=False))))
    with pytest.raises(ExportError) as err:
        export(GapNet(), SHAPE)
    assert "layer 'mean'" in str(err.value) and "not 1/64" in str(err.value)


def test_a_graph_that_differs_from_forward_is_refused():
    class Stateful(Net):
        """forward depends on Python state fx fixes at trace time."""
        calls = 0

        def forward(self, x):
            self.calls += 1
            y = super().forward(x)
            return y if self.calls == 1 else self.outq(self.fc(self.pool(self.q1(F.relu(self.bn1(
                self.conv1(self.inq(x)))))).flatten(1)))
    with pytest.raises(ExportError, match="does not reproduce forward"):
        export(Stateful(), SHAPE)


@pytest.mark.parametrize("field, value", [
    ("scale_bits", 0), ("scale_bits", 1), ("scale_bits", -5), ("scale_bits", 41), ("scale_bits", True),
    ("scale_bits", 2.5), ("scale_frac", -100), ("scale_frac", 57), ("bias_frac", 100), ("multiplier", "lut"),
    ("min_agreement", 1.5), ("check_samples", 0),
])
def test_options_out_of_range_are_refused_before_anything_runs(field, value):
    with pytest.raises(ExportError) as err:
        export(Net(), SHAPE, ExportOptions(**{field: value}))
    assert err.value.field == field and "\n" not in str(err.value)


def test_coarse_constants_fail_the_argmax_threshold():
    # scale_bits 4: every layer's tolerance stays within its bound (2 and 3 are refused layer by
    # layer, see test_a_tolerance_wider_than_an_eighth_of_the_output_range_is_refused)
    with pytest.raises(ExportError, match="argmax") as err:
        export(Net(), SHAPE, ExportOptions(scale_bits=4, min_agreement=1.0, check_samples=512))
    assert err.value.field == "scale_bits"


def test_one_batchnorm_channel_with_zero_variance_leaves_the_others_exact():
    """Issue #11 item 4: the layer has one scale type; the odd channel widens it instead of
    taking the other channels' precision away (and is named in a warning)."""
    x = np.random.default_rng(0).integers(0, 256, size=(300, 8, 8, 2))
    good = export(Net(), SHAPE).model
    bad_net = Net()
    with torch.no_grad():
        bad_net.bn1.running_var[2] = 1e-12
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bad = export(bad_net, SHAPE).model
    msgs = [str(w.message) for w in caught if issubclass(w.category, fold.ScalePrecisionWarning)]
    assert any("conv1" in m and "channel 2" in m for m in msgs), msgs
    g, b = good.layer("conv1"), bad.layer("conv1")
    keep = [0, 1, 3]
    assert b.scale_type.frac == g.scale_type.frac
    np.testing.assert_array_equal(b.scale[keep], g.scale[keep])
    np.testing.assert_array_equal(b.bias[keep], g.bias[keep])
    tg = simulate(good, x_mantissa=x, trace=True).trace["conv1_relu"]
    tb = simulate(bad, x_mantissa=x, trace=True).trace["conv1_relu"]
    np.testing.assert_array_equal(tb[..., keep], tg[..., keep])
    assert not np.array_equal(tb[..., 2], tg[..., 2])


def test_scale_frac_keeps_scale_bits_for_every_normal_channel():
    s = np.array([0.01, 0.013, 0.02, 0.011, 5.0])  # one outlier, 400x the median
    with pytest.warns(fold.ScalePrecisionWarning, match="channel 4"):
        frac = fold.scale_frac(s, 12, "t")
    m = np.round(s * 2.0 ** frac)
    assert np.all(np.abs(m[:4]) >= 2 ** 11)  # >= 12 significant bits each


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These models are tiny: one torch thread is much faster than several on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
