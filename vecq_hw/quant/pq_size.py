"""The memory of a PQ-compressed network from its layer shapes alone, counted as Stock et al.
count it (ICLR 2020, Table 1: ResNet-18 at 1.54 MB with small blocks, 1.03 MB with large ones;
ResNet-50 at 5.09 / 3.19 MB), so our block and codeword rules can be checked against the paper.

Per compressed layer (every conv but the first 7x7 one, and the classifier): one index of
log2(K) bits per sub-vector plus its codebook of K x d entries in float16; K and d come from a
:class:`~vecq_hw.quant.pq.PQ` (``block`` for 3x3 convs, ``block_pointwise`` for 1x1 ones,
``block_linear`` for the classifier; ``codewords`` / ``codewords_linear`` cut to the largest power
of two <= sub-vectors / 4). Not compressed, in float32: the first conv, the BatchNorm weights and
biases (2 per channel) and the classifier's bias. MB = 2^20 bytes, as the paper's 44.59 MB for
ResNet-18's 11.69 M float32 parameters. The layer shapes are torchvision's.
"""

from __future__ import annotations

from dataclasses import dataclass

from vecq_hw.quant.pq import PQ, index_bits

MB = 1 << 20


@dataclass(frozen=True)
class LayerShape:
    """A weight of shape (c_out, c_in, k, k) (a conv) or (c_out, c_in) (``k`` 0: a linear layer)."""

    c_in: int
    c_out: int
    k: int
    compressed: bool = True

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.c_out, self.c_in, self.k, self.k) if self.k else (self.c_out, self.c_in)

    @property
    def n(self) -> int:
        return self.c_out * self.c_in * max(self.k, 1) ** 2


@dataclass(frozen=True)
class Network:
    layers: tuple[LayerShape, ...]
    bn_channels: int  # channels with a BatchNorm (2 float parameters each)
    classes: int  # the classifier's bias

    @property
    def n_params(self) -> int:
        return sum(layer.n for layer in self.layers) + 2 * self.bn_channels + self.classes


def resnet(blocks: tuple[int, ...], bottleneck: bool, classes: int = 1000) -> Network:
    """torchvision's ResNet-18 (blocks (2, 2, 2, 2), basic) / ResNet-50 ((3, 4, 6, 3), bottleneck)."""
    layers, bn, c = [LayerShape(3, 64, 7, compressed=False)], 64, 64
    for stage, count in enumerate(blocks):
        width = 64 << stage
        out = 4 * width if bottleneck else width
        for b in range(count):
            body = ([LayerShape(c, width, 1), LayerShape(width, width, 3), LayerShape(width, out, 1)] if bottleneck
                    else [LayerShape(c, width, 3), LayerShape(width, width, 3)])
            if b == 0 and c != out:
                body.append(LayerShape(c, out, 1))  # the projection shortcut
            layers += body
            bn += sum(layer.c_out for layer in body)
            c = out
    layers.append(LayerShape(c, classes, 0))
    return Network(tuple(layers), bn, classes)


def pq_size(net: Network, q: PQ, codebook_bits: int = 16, float_bits: int = 32) -> dict:
    """{"bits", "mb", "float_mb", "ratio", "layers": [(d, K) per compressed layer]} of ``net``
    compressed with ``q``'s blocks and codewords (module docstring)."""
    bits, blocks = 0, []
    for layer in net.layers:
        if not layer.compressed:
            bits += float_bits * layer.n
            continue
        d, k = q.block_for(layer.shape), q.codewords_for(layer.shape)
        bits += layer.n // d * index_bits(k) + k * d * codebook_bits
        blocks.append((d, k))
    bits += float_bits * (2 * net.bn_channels + net.classes)
    mb, float_mb = bits / 8 / MB, 32 * net.n_params / 8 / MB
    return {"bits": bits, "mb": mb, "float_mb": float_mb, "ratio": float_mb / mb, "layers": blocks}


#: the paper's regimes (its code's documented settings): blocks of 3x3 / 1x1 convs and the
#: classifier, codewords of convs and the classifier
REGIMES = {
    "resnet18": {"small": PQ(block=9, block_pointwise=4, block_linear=4, codewords=256, codewords_linear=2048),
                 "large": PQ(block=18, block_pointwise=4, block_linear=4, codewords=256, codewords_linear=2048)},
    "resnet50": {"small": PQ(block=9, block_pointwise=4, block_linear=4, codewords=256, codewords_linear=1024),
                 "large": PQ(block=18, block_pointwise=8, block_linear=4, codewords=256, codewords_linear=1024)},
}
NETWORKS = {"resnet18": resnet((2, 2, 2, 2), bottleneck=False), "resnet50": resnet((3, 4, 6, 3), bottleneck=True)}
#: the paper's Table 1 (MB, compression factor)
PAPER = {("resnet18", "small"): (1.54, 29), ("resnet18", "large"): (1.03, 43),
         ("resnet50", "small"): (5.09, 19), ("resnet50", "large"): (3.19, 31)}

__all__ = ["LayerShape", "MB", "NETWORKS", "Network", "PAPER", "REGIMES", "pq_size", "resnet"]
