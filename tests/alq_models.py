"""Small random models of ALQ's native kinds for the tests (tests/test_alq_native.py).

Each layer has several groups (output channels) with 0..max_bases bases, at least one with 0
and one with exactly one, alphas of both signs, and a scale that makes y = acc * s + b span the
output type (so rounding and saturation both happen).
"""

from __future__ import annotations

import math

import numpy as np

from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.ir.examples import relu_type


def random_alpha(rng, n_out: int, max_bases: int) -> np.ndarray:
    """(n_out, max_bases) int16: channel 0 has 0 bases, channel 1 one, the rest 0..max_bases."""
    counts = rng.integers(0, max_bases + 1, size=n_out)
    counts[0], counts[1 % n_out] = 0, 1
    alpha = np.zeros((n_out, max_bases), dtype=np.int16)
    for j, c in enumerate(counts):
        alpha[j, :c] = rng.integers(1, 33, size=c) * rng.choice([-1, 1], size=c)
    return alpha


def alq_layer(cls, name, rng, in_type, fan_shape, n_out, max_bases, out_type, **geometry):
    alpha = random_alpha(rng, n_out, max_bases)
    k = int(np.count_nonzero(alpha))
    planes = rng.choice(np.array([-1, 1], dtype=np.int8), size=tuple(fan_shape) + (k,))
    layer = cls(name=name, out_type=out_type, alpha=alpha, planes=planes, **geometry)
    return random_constants(layer, rng, in_type, out_type)


def random_constants(layer, rng, in_type, out_type):
    """Set ``layer``'s accumulator type, scale and bias (its multipliers fixed): y = acc * s + b
    spans about twice the output range, so rounding and saturation both happen; returns it."""
    n_out = layer.n_out
    d = layer.multipliers_by_output()
    layer.accum_type = ir.accumulator_type(in_type, d)
    # typical |acc|: sqrt(fan) * rms(d) * rms(x); s makes it about twice the output range
    acc_rms = math.sqrt(d.shape[0]) * float(np.sqrt(np.mean(d.astype(np.float64) ** 2)) or 1.0) * \
        max(abs(in_type.max_value), abs(in_type.min_value)) / 2
    target = 2 * max(abs(out_type.max_value), abs(out_type.min_value)) / acc_rms
    layer.scale_type = FixedType(width=10, integer=math.ceil(math.log2(target)) + 1, signed=True)
    m = np.round(rng.uniform(0.3, 1.0, n_out) * target * 2.0 ** layer.scale_type.frac) * rng.choice([-1, 1], n_out)
    layer.scale = np.clip(m, -layer.scale_type.max_mantissa, layer.scale_type.max_mantissa).astype(np.int64)
    layer.bias_type = FixedType(width=10, integer=max(out_type.integer, 1), signed=True)
    layer.bias = rng.integers(layer.bias_type.min_mantissa // 4, layer.bias_type.max_mantissa // 4 + 1,
                              n_out).astype(np.int64)
    return layer


def alq_cnn(seed: int = 0, *, size: tuple[int, int] = (7, 6), filters: tuple[int, int] = (5, 4),
            n_out: int = 6) -> ir.Model:
    """alq_conv2d 3x3 (padding t1 b0 l1 r1) -> relu -> alq_conv2d 2x2 stride 2 -> relu -> flatten
    -> alq_dense, on a non-square input of 2 channels."""
    rng = np.random.default_rng(seed)
    t_in = FixedType(8, 2, False)
    layers = [ir.Input(name="x", out_type=t_in, shape=size + (2,))]
    t1 = FixedType(9, 4, True, "AP_RND", "AP_SAT")
    layers.append(alq_layer(ir.AlqConv2D, "c1", rng, t_in, (3, 3, 2), filters[0], 3, t1,
                            padding=(1, 0, 1, 1), stride=(1, 1)))
    r1 = relu_type(t1)
    layers.append(ir.ReLU(name="r1", out_type=r1))
    t2 = FixedType(9, 4, True, "AP_RND_CONV", "AP_SAT")
    layers.append(alq_layer(ir.AlqConv2D, "c2", rng, r1, (2, 2, filters[0]), filters[1], 2, t2, stride=(2, 2)))
    r2 = relu_type(t2)
    layers += [ir.ReLU(name="r2", out_type=r2), ir.Flatten(name="f", out_type=r2)]
    n_flat = ir.Model(name="alq", layers=list(layers)).output_shape[0]
    layers.append(alq_layer(ir.AlqDense, "d1", rng, r2, (n_flat,), n_out, 3, FixedType(10, 4, True, "AP_TRN", "AP_WRAP")))
    return ir.Model(name="alq_cnn", layers=layers).check()
