"""Mixed precision deployed bit-exact (issue 25): a network whose weighted layers are at 2, 3,
5 and 8 bits, each with its own activation type, from SRQ quantisers (two of them learned
then frozen below their top width, as SRQ's width search leaves them) through export, the
simulator, g++ C simulation (io_parallel unfolded; io_stream with one folded layer) and
Verilator RTL simulation: 0 mismatches on 512 inputs. The estimate prices every layer at its
own weight bits and input width (checked against the calibrated product model directly).
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw import rtl
from vecq_hw.export.torch_export import ExportOptions, export
from vecq_hw.fixed import FixedType
from vecq_hw.flow import simulate_rtl
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.costs import product_luts
from vecq_hw.hls.estimate import estimate
from vecq_hw.hls.folding import products_per_input
from vecq_hw.ir import named_levels
from vecq_hw.nn import FixedQuant, SRQActivation, VecQConv2d, VecQLinear
from vecq_hw.quant import SRQ
from vecq_hw.sim import simulate

pytestmark = [pytest.mark.xdist_group("mixed_precision_e2e"),
              pytest.mark.skipif(shutil.which("g++") is None or shutil.which("verilator") is None,
                                 reason="needs g++ and verilator (make install)")]

N_INPUTS = 512
BITS = [2, 3, 5, 8]
ACT_TYPES = ["ap_ufixed<5,2,AP_RND,AP_SAT>", "ap_ufixed<6,3,AP_RND,AP_SAT>", "ap_ufixed<4,1,AP_RND,AP_SAT>"]
FOLDED = {"conv2": 4}  # the io_stream project folds the second conv (P = 3*3*4*4 = 144)


class MixedNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_in = FixedQuant("ap_ufixed<6,0,AP_RND,AP_SAT>")
        self.conv1 = VecQConv2d(1, 4, 3, padding=1, weight_quant=SRQ(bits=2))
        self.a1 = SRQActivation(ACT_TYPES[0])
        self.conv2 = VecQConv2d(4, 4, 3, weight_quant=SRQ(bits=3))
        self.a2 = SRQActivation("ap_ufixed<8,3,AP_RND,AP_SAT>", learn_bits=True)  # frozen at 6 below
        self.pool = nn.MaxPool2d(2)
        self.fc1 = VecQLinear(16, 8, weight_quant=SRQ(bits=8, learn_bits=True))  # frozen at 5 below
        self.a3 = SRQActivation(ACT_TYPES[2])
        self.fc2 = VecQLinear(8, 5, weight_quant=SRQ(bits=8))
        self.q_out = FixedQuant("ap_fixed<12,4,AP_RND,AP_SAT>")

    def forward(self, x):
        h = self.a1(F.relu(self.conv1(self.q_in(x))))
        h = self.pool(self.a2(F.relu(self.conv2(h))))
        h = self.a3(F.relu(self.fc1(torch.flatten(h, 1))))
        return self.q_out(self.fc2(h))


@pytest.fixture(scope="module")
def mixed():
    torch.manual_seed(3)
    net = MixedNet()
    with torch.no_grad():  # every layer's output spread over its type (not all 0 after a ReLU)
        for m in (net.conv1, net.conv2, net.fc1):
            m.bias.fill_(0.1)
        net.conv2.weight.mul_(6.0)
        net.fc1.weight.mul_(3.0)
    net.a2.widths.freeze(6)
    net.fc1.weight_quant.widths.freeze(5)
    net.eval()
    samples = torch.rand(256, 1, 6, 6)
    result = export(net, (1, 6, 6), ExportOptions(name="mixed"), samples=samples)
    model = result.model
    rng = np.random.default_rng(4)
    x = rng.integers(0, 64, size=(N_INPUTS, 6, 6, 1), dtype=np.int64)
    x[0], x[1] = 0, 63
    return net, model, x, simulate(model, x_mantissa=x).output


def test_every_layer_deploys_its_own_width_and_type(mixed):
    net, model, _x, y = mixed
    weighted = [layer for layer in model.layers if layer.kind in ("conv2d", "dense")]
    assert [layer.bits for layer in weighted] == BITS
    for layer in weighted:
        np.testing.assert_array_equal(layer.levels, named_levels("int", layer.bits))
    relus = [str(layer.out_type) for layer in model.layers if layer.kind == "relu"]
    assert relus == ACT_TYPES
    # the codes the layers deployed are the very codes their forward used
    for m, layer in zip((net.conv1, net.conv2, net.fc1, net.fc2), weighted):
        iw = m.integer_weights()
        assert iw.bits == layer.bits and int(np.abs(iw.codes).max()) <= 2 ** (layer.bits - 1)
    assert len(np.unique(y)) > 100  # the outputs are not degenerate


def _csim(model, x, y, path, options):
    prj = write_project(model, path, options, expected=(x, y))
    res = csim(prj, jobs=2)
    assert res.n == N_INPUTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-2000:]
    np.testing.assert_array_equal(res.outputs, y)


def test_c_simulation_io_parallel_unfolded_is_bit_exact(mixed, tmp_path):
    _net, model, x, y = mixed
    _csim(model, x, y, tmp_path / "par", HlsOptions(io_type="io_parallel"))


def test_c_simulation_io_stream_one_folded_layer_is_bit_exact(mixed, tmp_path):
    _net, model, x, y = mixed
    _csim(model, x, y, tmp_path / "stream", HlsOptions(io_type="io_stream", reuse=FOLDED))


def test_rtl_simulation_is_bit_exact(mixed, tmp_path):
    _net, model, x, _y = mixed
    res = simulate_rtl(rtl.write(model, tmp_path / "rtl", rtl.RtlOptions()), x)
    assert res.n == N_INPUTS and res.ok, res.summary()
    assert res.rtl_mismatches == 0 and res.interp_mismatches == 0


def test_estimate_prices_each_layer_at_its_own_widths(mixed):
    _net, model, _x, _y = mixed
    est = {e.name: e for e in estimate(model, io_type="io_parallel").layers}
    for node in model.nodes():
        layer = node.layer
        if layer.kind not in ("conv2d", "dense"):
            continue
        w = node.in_types[0].width
        p = products_per_input(node)
        assert est[layer.name].luts == pytest.approx(product_luts(p, 1, layer.bits, w), rel=1e-12)
    widths = {node.layer.name: (node.layer.bits, node.in_types[0].width) for node in model.nodes()
              if node.layer.kind in ("conv2d", "dense")}
    assert len(set(widths.values())) == 4  # four different (k, w) pairs priced
    assert FixedType.parse(ACT_TYPES[1]).width == widths["fc1"][1]  # fc1 reads a2's 6 bits (pooled)
