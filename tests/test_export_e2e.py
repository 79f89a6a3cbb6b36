"""Ordinary nn.Modules with a residual forward, trained briefly, exported, C-simulated.

The issue's headline: a small ResNet-style CNN (stem, two residual blocks with add, one
stride-2 block with a 1x1 projection, global average pool, dense) and a MobileNet-style block
(depthwise 3x3 + pointwise 1x1 with a residual add) are trained on MNIST for a few hundred
steps, exported by tracing their forward, and the g++ C simulation of the generated HLS
project equals the simulator on 500 test images, io_parallel and io_stream: 0 mismatches.
And a quantiser with its own levels table, defined here, goes to C simulation unchanged.
"""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw.data import load_dataset
from vecq_hw.export.torch_export import export
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.models import build_model
from vecq_hw.nn import FixedQuant, VecQConv2d, VecQLinear
from vecq_hw.quant import WeightQuantizer
from vecq_hw.sim import simulate

pytestmark = [pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++"), pytest.mark.slow]

N_TEST = 500
STEPS = 400


def _train(model, images, labels, steps=STEPS, batch=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x_all = torch.from_numpy(images.astype(np.float32) / 256.0).unsqueeze(1)
    y_all = torch.from_numpy(labels.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    # linear decay to 0: the 2-bit weights settle instead of flipping codes at the end
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 1 - i / steps)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x_all), (batch,), generator=gen)
        loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


@pytest.fixture(scope="module")
def mnist():
    train = load_dataset("mnist", "train", limit=8000)
    test = load_dataset("mnist", "test", limit=N_TEST)
    return train, test


@pytest.fixture(scope="module", params=["resnet_small", "mobilenet_block"])
def trained(request, mnist):
    (images, labels), (test_images, test_labels) = mnist
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is ~10x faster than two on a shared machine
    try:
        t0 = time.perf_counter()
        model = _train(build_model(request.param), images, labels)
        t_train = time.perf_counter() - t0
    finally:
        torch.set_num_threads(threads)
    x = torch.from_numpy(test_images.astype(np.float32) / 256.0).unsqueeze(1)
    res = export(model, model.input_shape, samples=x[:256])
    with torch.no_grad():
        torch_pred = model(x).argmax(1).numpy()
    xm = res.model.input.out_type.from_float(x.permute(0, 2, 3, 1).double().numpy()).astype(np.int64)
    sim = simulate(res.model, x_mantissa=xm)
    sim_pred = sim.output.reshape(N_TEST, -1).argmax(1)
    print(f"\n{request.param}: trained {STEPS} steps in {t_train:.1f} s; PyTorch accuracy "
          f"{100 * np.mean(torch_pred == test_labels):.1f} %, integer model {100 * np.mean(sim_pred == test_labels):.1f} %"
          f" on {N_TEST} test images; {res.text()}")
    return request.param, model, res, xm, sim, test_labels


def test_trained_networks_learn_and_export_with_their_structure(trained):
    name, model, res, xm, sim, labels = trained
    kinds = [layer.kind for layer in res.model.layers]
    assert kinds.count("add") >= (2 if name == "resnet_small" else 1)
    assert "global_avg_pool" in kinds
    if name == "mobilenet_block":
        assert "depthwise_conv2d" in kinds
    else:  # the stride-2 block's 1x1 projection
        assert any(layer.kind == "conv2d" and layer.kernel == (1, 1) and tuple(layer.stride) == (2, 2)
                   for layer in res.model.layers)
    acc = float(np.mean(sim.output.reshape(N_TEST, -1).argmax(1) == labels))
    assert acc > 0.55, f"{name}: integer-model accuracy {acc:.3f} after {STEPS} steps"
    assert res.equivalence.argmax >= 0.97


@pytest.mark.parametrize("io_type", ["io_parallel", "io_stream"])
def test_csim_equals_simulator_on_500_test_images(tmp_path, trained, io_type):
    name, model, res, xm, sim, labels = trained
    prj = write_project(res.model, tmp_path / "prj", HlsOptions(io_type=io_type), expected=(xm, sim.output))
    out = csim(prj)
    print(f"\n{name} {io_type}: {out.summary()}")
    assert out.n == N_TEST
    assert out.mismatches == 0 and out.value_mismatches == 0, out.log[-3000:]
    np.testing.assert_array_equal(out.outputs, sim.output.reshape(N_TEST, -1))


# --------------------------------------------------------------------------- custom levels

class FourLevels(WeightQuantizer):
    """The whole quantiser: 2-bit codes for the levels {-4, -1, 1, 4} times a least-squares
    alpha (a few alternations from mean|w|). Nothing else in the package knows it."""

    name = "four_levels_e2e"
    unit = 1.0

    def levels(self) -> np.ndarray:
        return np.array([-4, -1, 1, 4], dtype=np.int64)

    def _quantize_rows(self, w, ops):
        table = self.level_table() * self.unit
        alpha = ops.sum(abs(w)) / w.shape[1] / 2 + 1e-12
        for _ in range(4):
            idx, q = ops.nearest(w / alpha, table)
            alpha = ops.sum(w * q) / (ops.sum(q * q) + 1e-12) + 1e-12
        idx, q = ops.nearest(w / alpha, table)
        return idx + self.cmin, ops.sum(w * q) / (ops.sum(q * q) + 1e-12), None


class CustomLevelsNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.inq = FixedQuant("ap_ufixed<8,0,AP_RND,AP_SAT>")
        self.conv = VecQConv2d(2, 4, 3, padding=1, weight_quant=FourLevels(per_channel=True))
        self.bn = nn.BatchNorm2d(4)
        self.q = FixedQuant("ap_ufixed<8,3,AP_RND,AP_SAT>")
        self.pool = nn.MaxPool2d(2)
        self.fc = VecQLinear(4 * 16, 5, weight_quant=FourLevels())
        self.outq = FixedQuant("ap_fixed<16,6,AP_RND_CONV,AP_SAT>")
        with torch.no_grad():
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.bias.uniform_(-0.2, 0.4)

    def forward(self, x):
        h = self.q(F.relu(self.bn(self.conv(self.inq(x)))))
        return self.outq(self.fc(self.pool(h).flatten(1)))


def test_custom_levels_quantiser_goes_to_c_simulation(tmp_path):
    model = CustomLevelsNet().eval()
    res = export(model, (2, 8, 8))
    for name in ("conv", "fc"):
        layer = res.model.layer(name)
        assert layer.levels.tolist() == [-4, -1, 1, 4] and layer.encoding == "custom"
    t = res.model.input.out_type
    xm = np.random.default_rng(0).integers(t.min_mantissa, t.max_mantissa, size=(200, 8, 8, 2), endpoint=True)
    sim = simulate(res.model, x_mantissa=xm)
    with torch.no_grad():  # the deployed output is PyTorch's up to the rounding of the constants
        ref = model(torch.from_numpy(t.to_float(xm)).permute(0, 3, 1, 2).float()).numpy()
    assert np.mean(np.argmax(ref, 1) == np.argmax(sim.output, 1)) > 0.95
    prj = write_project(res.model, tmp_path / "prj", HlsOptions(io_type="io_parallel"), expected=(xm, sim.output))
    out = csim(prj)
    assert out.n == 200 and out.mismatches == 0 and out.value_mismatches == 0, out.log[-3000:]
    np.testing.assert_array_equal(out.outputs, sim.output)
