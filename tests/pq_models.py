"""Small random models of the PQ kinds for the tests (tests/test_pq.py).

``pq_cnn`` holds one layer per block size d in {18, 9, 4, 1}: a 3x3 conv over 2 channels with
d = 18 (a block is both input channels' 3x3 slices), a strided 3x3 conv with d = 9 (one slice),
a dense layer after a channels-last flatten with d = 4 (blocks follow PyTorch's (c, h, w) order:
``flatten_channels``) and a dense layer with d = 1 (scalar levels). Codebooks hold both signs;
some layers have more output channels than codewords, some fewer.
"""

from __future__ import annotations

import numpy as np

from alq_models import random_constants
from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.ir.examples import relu_type


def pq_layer(cls, name, rng, in_type, fan_in, d, k, n_out, out_type, index_bits=None, **geometry):
    codebook = rng.integers(-20, 21, size=(k, d)).astype(np.int16)
    indices = rng.integers(0, k, size=(fan_in // d, n_out)).astype(np.uint16)
    bits = index_bits or max(1, (k - 1).bit_length())
    layer = cls(name=name, out_type=out_type, index_bits=bits, codebook=codebook, indices=indices, **geometry)
    return random_constants(layer, rng, in_type, out_type)


def pq_cnn(seed: int = 0, *, size: tuple[int, int] = (6, 5), filters: tuple[int, int] = (6, 4)) -> ir.Model:
    """pq_conv2d 3x3 d=18 (padding 1) -> relu -> pq_conv2d 3x3 d=9 stride 2 -> relu -> flatten
    -> pq_dense d=4 -> relu -> pq_dense d=1, on a non-square input of 2 channels."""
    rng = np.random.default_rng(seed)
    t_in = FixedType(8, 2, False)
    layers = [ir.Input(name="x", out_type=t_in, shape=size + (2,))]
    t1 = FixedType(9, 4, True, "AP_RND", "AP_SAT")
    layers.append(pq_layer(ir.PqConv2D, "c1", rng, t_in, 18, 18, 4, filters[0], t1, kernel=(3, 3), padding=(1, 1, 1, 1)))
    r1 = relu_type(t1)
    layers.append(ir.ReLU(name="r1", out_type=r1))
    t2 = FixedType(9, 4, True, "AP_RND_CONV", "AP_SAT")
    layers.append(pq_layer(ir.PqConv2D, "c2", rng, r1, 9 * filters[0], 9, 8, filters[1], t2, kernel=(3, 3), stride=(2, 2)))
    r2 = relu_type(t2)
    layers += [ir.ReLU(name="r2", out_type=r2), ir.Flatten(name="f", out_type=r2)]
    n_flat = ir.Model(name="pq", layers=list(layers)).output_shape[0]
    t3 = FixedType(9, 4, True, "AP_RND", "AP_SAT")
    layers.append(pq_layer(ir.PqDense, "d1", rng, r2, n_flat, 4, 16, 8, t3, flatten_channels=4))
    r3 = relu_type(t3)
    layers.append(ir.ReLU(name="r3", out_type=r3))
    layers.append(pq_layer(ir.PqDense, "d2", rng, r3, 8, 1, 2, 5, FixedType(10, 4, True, "AP_TRN", "AP_WRAP")))
    return ir.Model(name="pq_cnn", layers=layers).check()
