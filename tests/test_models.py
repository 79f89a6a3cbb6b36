"""vecq_hw.models: reference networks as flat nn.Sequential chains."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vecq_hw.models import MODELS, build_model, model_options
from vecq_hw.nn import FixedQuant, VecQConv2d, VecQLinear, set_quantize
from vecq_hw.quant import UL2Q, VecQ

CASES = [
    ("lenet5", {}, (2, 1, 28, 28), 10),
    ("vgg_small", {}, (2, 1, 28, 28), 10),
    ("mlp", {}, (2, 784), 10),
    ("mlp", {"in_features": 16, "hidden": (64, 32, 32), "num_classes": 5,
             "in_type": "ap_fixed<16,6,AP_RND,AP_SAT>"}, (2, 16), 5),
]


@pytest.mark.parametrize("name,opts,shape,classes", CASES)
def test_shapes_and_structure(name, opts, shape, classes):
    torch.manual_seed(0)
    m = build_model(name, weight_quant=VecQ(2), **opts)
    assert type(m) is nn.Sequential
    assert all(not isinstance(c, nn.Sequential) for c in m)  # flat
    assert isinstance(m[0], FixedQuant) and isinstance(m[-1], FixedQuant)
    assert isinstance(m[-2], (VecQLinear,))
    assert m.input_shape == shape[1:] and m.num_classes == classes
    m.eval()
    with torch.no_grad():
        y = m(torch.rand(shape))
    assert y.shape == (shape[0], classes)
    # every weighted layer but the last is followed by BN -> ReLU -> FixedQuant
    mods = list(m)
    weighted = [i for i, c in enumerate(mods) if isinstance(c, (VecQLinear, VecQConv2d))]
    for i in weighted[:-1]:
        assert isinstance(mods[i + 1], (nn.BatchNorm1d, nn.BatchNorm2d))
        assert isinstance(mods[i + 2], nn.ReLU) and isinstance(mods[i + 3], FixedQuant)


def test_lenet5_layout():
    q = UL2Q(2, per_channel=True, offset=False)
    m = build_model("lenet5", weight_quant=q, act_type="ap_ufixed<6,2,AP_RND,AP_SAT>")
    convs = [c for c in m if isinstance(c, VecQConv2d)]
    dense = [c for c in m if isinstance(c, VecQLinear)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (1, 32, (5, 5), (2, 2)), (32, 64, (5, 5), (2, 2))]
    assert [(d.in_features, d.out_features) for d in dense] == [(64 * 7 * 7, 512), (512, 10)]
    assert sum(isinstance(c, nn.MaxPool2d) for c in m) == 2
    # every layer its own quantiser (caches), each with the given one's options
    assert all(c.weight_quant.get_config() == q.get_config() and c.weight_quant is not q for c in convs + dense)
    assert len({id(c.weight_quant) for c in convs + dense}) == 4
    assert str(m[4].fixed_type).startswith("ap_ufixed<6,2")


def test_float_mode_and_quantize_switch():
    torch.manual_seed(0)
    m = build_model("mlp", hidden=(16,), weight_quant={"method": "vecq", "bits": 2})
    x = torch.rand(4, 784)
    m.eval()
    with torch.no_grad():
        assert set_quantize(m, False) == 2  # a QAT schedule's float phase
        y_float = m(x)
        assert set_quantize(m, True) == 2
        y_q = m(x)
    assert not torch.equal(y_float, y_q)
    assert all(c.quantize and c.weight_quant.bits == 2 for c in m if isinstance(c, VecQLinear))
    plain = build_model("mlp", hidden=(16,), weight_quant=None)  # float layers, nothing to switch
    assert set_quantize(plain, True) == 0
    plain.load_state_dict(m.state_dict())
    plain.eval()
    with torch.no_grad():
        assert torch.equal(plain(x), y_float)


def test_registry_errors():
    assert set(MODELS) == {"lenet5", "vgg_small", "mlp", "resnet_small", "mobilenet_block"}
    assert build_model("lenet", weight_quant=None).arch == "lenet5"
    with pytest.raises(TypeError, match="no option"):
        build_model("mlp", bits=2)  # the old shorthand: the quantiser is weight_quant
    with pytest.raises(KeyError, match="unknown model"):
        build_model("resnet50")
    with pytest.raises(TypeError, match="no option"):
        build_model("mlp", depth=3)
    assert "hidden" in model_options("mlp")
