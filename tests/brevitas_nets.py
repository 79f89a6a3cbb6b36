"""Small Brevitas networks for the QONNX import tests (tests/test_qonnx.py) and the quantiser
survey (benchmarks/qonnx_interop.py): what a Brevitas user writes, exported with Brevitas."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import brevitas.nn as qnn
from brevitas.export import export_qonnx
from brevitas.quant import (Int8ActPerTensorFixedPoint, Int8WeightPerTensorFixedPoint, Int16Bias,
                            Uint8ActPerTensorFixedPoint)
from brevitas.quant.fixed_point import Int8WeightPerChannelFixedPoint


class SmallCNN(nn.Module):
    """in quant -> conv3x3 -> QuantReLU -> maxpool2 -> conv3x3 -> QuantReLU -> maxpool2 -> flatten ->
    linear -> out quant, on (1, size, size) images. ``w1``/``w2``/``w3``: (weight quantiser, bits)."""

    def __init__(self, *, size=28, channels=(4, 8), w1=(Int8WeightPerTensorFixedPoint, 4),
                 w2=(Int8WeightPerChannelFixedPoint, 3), w3=(Int8WeightPerTensorFixedPoint, 2),
                 act=Uint8ActPerTensorFixedPoint, act2_bits=6, in_quant=Uint8ActPerTensorFixedPoint,
                 out_quant=Int8ActPerTensorFixedPoint, out_bits=10, bias_quant=Int16Bias):
        super().__init__()
        c1, c2 = channels
        rq = {"return_quant_tensor": True}
        self.inp = qnn.QuantIdentity(act_quant=in_quant, **rq)
        self.c1 = qnn.QuantConv2d(1, c1, 3, padding=1, weight_quant=w1[0], weight_bit_width=w1[1],
                                  bias_quant=bias_quant)
        self.r1 = qnn.QuantReLU(act_quant=act, **rq)
        self.c2 = qnn.QuantConv2d(c1, c2, 3, padding=1, weight_quant=w2[0], weight_bit_width=w2[1],
                                  bias_quant=bias_quant)
        self.r2 = qnn.QuantReLU(act_quant=act, bit_width=act2_bits, **rq)
        self.pool = nn.MaxPool2d(2)
        self.fc = qnn.QuantLinear(c2 * (size // 4) ** 2, 10, weight_quant=w3[0], weight_bit_width=w3[1],
                                  bias_quant=bias_quant)
        # out_quant None: the float result y = acc * s + b leaves the network unquantised
        self.out = nn.Identity() if out_quant is None else qnn.QuantIdentity(act_quant=out_quant, bit_width=out_bits)

    def forward(self, x):
        x = self.pool(self.r1(self.c1(self.inp(x))))
        x = self.pool(self.r2(self.c2(x)))
        return self.out(self.fc(torch.flatten(x, 1)))


def train(net: nn.Module, images: np.ndarray, labels: np.ndarray, *, steps: int, seed: int = 0,
          batch: int = 32, lr: float = 3e-3) -> float:
    """Seeded Adam steps on (N, H, W) uint8 images / 256; the last loss. One torch thread: on a
    shared 2-core machine more threads only fight each other (40x slower measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        x = torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 256
        y = torch.tensor(labels)
        opt = torch.optim.Adam(net.parameters(), lr)
        gen = torch.Generator().manual_seed(seed)
        net.train()
        for _ in range(steps):
            idx = torch.randint(0, len(x), (batch,), generator=gen)
            loss = nn.functional.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        net.eval()
        return float(loss.detach())
    finally:
        torch.set_num_threads(threads)


def export(net: nn.Module, path, size: int = 28):
    """Brevitas's own QONNX export (the TorchScript exporter: 1 s here, the dynamo one 6 s)."""
    net.eval()
    export_qonnx(net, torch.zeros(1, 1, size, size), export_path=str(path), dynamo=False)
    return path


def predict(net: nn.Module, images: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return net(torch.tensor(images, dtype=torch.float32).unsqueeze(1) / 256).numpy()
