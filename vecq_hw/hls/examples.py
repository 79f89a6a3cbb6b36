"""Small random integer models for tests and benchmarks of the HLS path.

Codes are random k-bit codes; scales are picked so that y = acc * s + b spans the output
type (outputs are neither all zero nor all saturated); accumulators come from
:func:`vecq_hw.ir.accumulator_type`, so every model passes :meth:`Model.check`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir
from ..fixed import FixedType

ROUNDINGS = ("AP_RND", "AP_RND_CONV", "AP_TRN", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_TRN_ZERO")


def _weighted(cls, name, rng, in_type, codes, bits, encoding, out_type, multiplier="auto", **kw):
    d = ir.multipliers(codes, encoding)
    acc = ir.accumulator_type(in_type, d)
    n_out = codes.shape[-1]
    fan = int(np.prod(codes.shape[:-1]))
    # typical |acc| in value units: sqrt(fan) * rms(d) * rms(x)
    x_rms = max(abs(in_type.max_value), abs(in_type.min_value)) / 2
    acc_rms = math.sqrt(fan) * float(np.sqrt(np.mean(d.astype(np.float64) ** 2)) or 1.0) * x_rms
    target = max(abs(out_type.max_value), abs(out_type.min_value)) / (2.0 * acc_rms)
    s_int = math.ceil(math.log2(target)) + 1
    scale_type = FixedType(width=10, integer=s_int, signed=False)
    scale = np.clip(np.round(rng.uniform(0.4, 1.0, n_out) * target * 2.0**scale_type.frac), 1,
                    scale_type.max_mantissa).astype(np.int64)
    bias_type = FixedType(width=10, integer=max(out_type.integer, 1), signed=True)
    bias = rng.integers(bias_type.min_mantissa // 4, bias_type.max_mantissa // 4 + 1, n_out).astype(np.int64)
    return cls(name=name, out_type=out_type, bits=bits, encoding=encoding, codes=codes.astype(np.int8),
               scale=scale, scale_type=scale_type, bias=bias, bias_type=bias_type, accum_type=acc,
               multiplier=multiplier, **kw)


def _codes(rng, shape, bits):
    lo, hi = ir.code_range(bits)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def _relu_type(t: FixedType) -> FixedType:
    if not t.signed:
        return t
    return FixedType(width=max(t.width - 1, 1), integer=t.integer - 1, signed=False)


def random_cnn(bits: int, *, seed: int = 0, size: int = 8, channels: tuple[int, int] = (4, 4), n_out: int = 10,
               encoding: str = "odd", multiplier: str = "auto", avg_pool: bool = False,
               in_type: FixedType | None = None, name: str = "cnn") -> ir.Model:
    """conv -> relu -> pool -> conv -> relu -> pool -> flatten -> dense, on a size x size x 1 input."""
    rng = np.random.default_rng(seed)
    in_type = in_type or FixedType(width=8, integer=1, signed=False)
    c1, c2 = channels
    layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(size, size, 1))]
    t1 = FixedType(8, 3, True, ROUNDINGS[seed % len(ROUNDINGS)], "AP_SAT")
    layers.append(_weighted(ir.Conv2D, "conv1", rng, in_type, _codes(rng, (3, 3, 1, c1), bits), bits, encoding,
                            t1, multiplier, padding=(1, 1, 1, 1)))
    r1 = _relu_type(t1)
    layers.append(ir.ReLU(name="relu1", out_type=r1))
    p1 = _pool("pool1", r1, avg_pool)
    layers.append(p1)
    t2 = FixedType(9, 4, True, ROUNDINGS[(seed + 1) % len(ROUNDINGS)], "AP_SAT")
    layers.append(_weighted(ir.Conv2D, "conv2", rng, p1.out_type, _codes(rng, (3, 3, c1, c2), bits), bits,
                            encoding, t2, multiplier))
    r2 = _relu_type(t2)
    layers.append(ir.ReLU(name="relu2", out_type=r2))
    p2 = _pool("pool2", r2, avg_pool)
    layers.append(p2)
    layers.append(ir.Flatten(name="flatten", out_type=p2.out_type))
    model = ir.Model(name=name, layers=layers)
    n_flat = model.output_shape[0]
    t3 = FixedType(12, 5, True, ROUNDINGS[(seed + 2) % len(ROUNDINGS)], "AP_SAT")
    layers.append(_weighted(ir.Dense, "dense", rng, p2.out_type, _codes(rng, (n_flat, n_out), bits), bits,
                            encoding, t3, multiplier))
    return model.check()


def _pool(name, t, avg):
    if not avg:
        return ir.MaxPool2D(name=name, out_type=t)
    out = FixedType(width=t.width + 2, integer=t.integer, signed=t.signed)
    return ir.AvgPool2D(name=name, out_type=out)


def random_mlp(bits: int, *, seed: int = 0, sizes: tuple[int, ...] = (32, 16, 10), encoding: str = "odd",
               multiplier: str = "auto", in_type: FixedType | None = None, name: str = "mlp") -> ir.Model:
    """dense -> relu -> ... -> dense on a flat input."""
    rng = np.random.default_rng(seed)
    in_type = in_type or FixedType(width=8, integer=2, signed=True)
    layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(sizes[0],))]
    t = in_type
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        out = FixedType(14 if last else 8, 6 if last else 3, True, ROUNDINGS[(seed + i) % len(ROUNDINGS)],
                        "AP_SAT" if i % 2 == 0 else "AP_WRAP")
        layers.append(_weighted(ir.Dense, f"fc{i + 1}", rng, t, _codes(rng, (n_in, n_out), bits), bits, encoding,
                                out, multiplier))
        t = out
        if not last:
            t = _relu_type(out)
            layers.append(ir.ReLU(name=f"relu{i + 1}", out_type=t))
    return ir.Model(name=name, layers=layers).check()


def random_inputs(model: ir.Model, n: int, *, seed: int = 1) -> np.ndarray:
    """n random input mantissas covering the whole input type (shape (n,) + input shape)."""
    rng = np.random.default_rng(seed)
    t = model.input.out_type
    return rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(n,) + tuple(model.input.shape)).astype(np.int64)
