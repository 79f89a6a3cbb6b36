"""ResNet-18 and MobileNetV2 at ImageNet shape as PyTorch modules written with our layers (VecQ
2-bit convs and dense, BatchNorm, FixedQuant activations), for ``big_networks.py`` to time their
export: the same topologies as ``vecq_hw.ir.imagenet`` builds directly (its two changes included:
a 2x2 stem pool in ResNet-18, ReLU for MobileNetV2's ReLU6), untrained. Their parameter counts
are torchvision's (11,689,512 and 3,504,872).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from vecq_hw.ir.imagenet import MOBILENET_V2_STAGES
from vecq_hw.models._common import DEFAULT_ACT_TYPE, DEFAULT_OUT_TYPE, fixed_quant, linear
from vecq_hw.models.resnet_small import DEFAULT_RES_TYPE, ResidualBlock, conv_bn
from vecq_hw.nn import DEFAULT_WEIGHT_QUANT

IN_TYPE = "ap_fixed<8,2,AP_RND,AP_SAT>"  # signed, as the ImageNet-normalised input


class _Head(nn.Module):
    """Global average pool -> act quant -> dense -> out quant."""

    def __init__(self, channels: int, num_classes: int, wq):
        super().__init__()
        self.gap_q = fixed_quant(DEFAULT_ACT_TYPE)
        self.fc = linear(channels, num_classes, wq)
        self.out_q = fixed_quant(DEFAULT_OUT_TYPE)

    def forward(self, x):
        return self.out_q(self.fc(self.gap_q(x.mean((2, 3)))))


class ResNet18(nn.Module):
    def __init__(self, wq=DEFAULT_WEIGHT_QUANT, num_classes: int = 1000):
        super().__init__()
        self.in_q = fixed_quant(IN_TYPE)
        self.stem, self.stem_bn = conv_bn(3, 64, 7, wq, stride=2)
        self.stem_q = fixed_quant(DEFAULT_ACT_TYPE)
        self.pool = nn.MaxPool2d(2)
        blocks, c = [], 64
        for stage, w in enumerate((64, 128, 256, 512)):
            blocks += [ResidualBlock(c, w, 2 if stage else 1, wq, DEFAULT_ACT_TYPE, DEFAULT_RES_TYPE),
                       ResidualBlock(w, w, 1, wq, DEFAULT_ACT_TYPE, DEFAULT_RES_TYPE)]
            c = w
        self.blocks = nn.Sequential(*blocks)
        self.head = _Head(512, num_classes, wq)

    def forward(self, x):
        x = self.pool(self.stem_q(F.relu(self.stem_bn(self.stem(self.in_q(x))))))
        return self.head(self.blocks(x))


class InvertedResidual(nn.Module):
    """1x1 expand -> ReLU -> depthwise 3x3 -> ReLU -> 1x1 linear projection (+ the input)."""

    def __init__(self, c_in: int, c_out: int, t: int, stride: int, wq):
        super().__init__()
        hidden = c_in * t
        self.expand = None
        if t != 1:
            self.expand, self.expand_bn = conv_bn(c_in, hidden, 1, wq)
            self.expand_q = fixed_quant(DEFAULT_ACT_TYPE)
        self.dw, self.dw_bn = conv_bn(hidden, hidden, 3, wq, stride=stride, groups=hidden)
        self.dw_q = fixed_quant(DEFAULT_ACT_TYPE)
        self.project, self.project_bn = conv_bn(hidden, c_out, 1, wq)
        self.project_q = fixed_quant(DEFAULT_RES_TYPE)
        self.residual = stride == 1 and c_in == c_out
        self.out_q = fixed_quant(DEFAULT_RES_TYPE) if self.residual else None

    def forward(self, x):
        h = x if self.expand is None else self.expand_q(F.relu(self.expand_bn(self.expand(x))))
        h = self.project_q(self.project_bn(self.project(self.dw_q(F.relu(self.dw_bn(self.dw(h)))))))
        return self.out_q(x + h) if self.residual else h


class MobileNetV2(nn.Module):
    def __init__(self, wq=DEFAULT_WEIGHT_QUANT, num_classes: int = 1000, last_channels: int = 1280):
        super().__init__()
        self.in_q = fixed_quant(IN_TYPE)
        self.stem, self.stem_bn = conv_bn(3, 32, 3, wq, stride=2)
        self.stem_q = fixed_quant(DEFAULT_ACT_TYPE)
        blocks, c = [], 32
        for t, c_out, n, s in MOBILENET_V2_STAGES:
            for j in range(n):
                blocks.append(InvertedResidual(c, c_out, t, s if j == 0 else 1, wq))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.last, self.last_bn = conv_bn(c, last_channels, 1, wq)
        self.last_q = fixed_quant(DEFAULT_ACT_TYPE)
        self.head = _Head(last_channels, num_classes, wq)

    def forward(self, x):
        x = self.blocks(self.stem_q(F.relu(self.stem_bn(self.stem(self.in_q(x))))))
        return self.head(self.last_q(F.relu(self.last_bn(self.last(x)))))


TORCH_MODELS = {"resnet18": ResNet18, "mobilenet_v2": MobileNetV2}
