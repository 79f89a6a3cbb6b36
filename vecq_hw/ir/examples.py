"""Small random integer models for tests and benchmarks of the HLS path.

Codes are random k-bit codes; scales are picked so that y = acc * s + b spans the output
type (outputs are neither all zero nor all saturated); accumulators come from
:func:`vecq_hw.ir.accumulator_type`, so every model passes :meth:`Model.check`.
"""

from __future__ import annotations

import math

import numpy as np

from .. import ir  # noqa: F401 (vecq_hw.ir: this package)
from ..fixed import FixedType

ROUNDINGS = ("AP_RND", "AP_RND_CONV", "AP_TRN", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF", "AP_TRN_ZERO")


def weighted_layer(cls, name, rng, in_type, codes, bits, encoding, out_type, multiplier="auto", levels=None, **kw):
    d = ir.multipliers(codes, encoding) if levels is None else ir.multipliers(codes, levels, bits)
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
    if levels is not None:
        kw["levels"] = np.asarray(levels, dtype=np.int64)
    return cls(name=name, out_type=out_type, bits=bits, encoding=encoding, codes=codes.astype(np.int8),
               scale=scale, scale_type=scale_type, bias=bias, bias_type=bias_type, accum_type=acc,
               multiplier=multiplier, **kw)


def random_codes(rng, shape, bits):
    lo, hi = ir.code_range(bits)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def relu_type(t: FixedType) -> FixedType:
    if not t.signed:
        return t
    return FixedType(width=max(t.width - 1, 1), integer=t.integer - 1, signed=False)


def random_cnn(bits: int, *, seed: int = 0, size: int = 8, channels: tuple[int, int] = (4, 4), n_out: int = 10,
               encoding: str = "odd", multiplier: str = "auto", avg_pool: bool = False,
               in_type: FixedType | None = None, name: str = "cnn", levels=None, pools=None) -> ir.Model:
    """conv -> relu -> pool -> conv -> relu -> pool -> flatten -> dense, on a size x size x 1 input.

    ``pools``: two (kind 'max'|'avg', pool size, stride) for the two pools (default: 2x2 stride 2,
    average when ``avg_pool``); ``levels``: a custom level table for every weighted layer."""
    rng = np.random.default_rng(seed)
    in_type = in_type or FixedType(width=8, integer=1, signed=False)
    c1, c2 = channels
    layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(size, size, 1))]
    t1 = FixedType(8, 3, True, ROUNDINGS[seed % len(ROUNDINGS)], "AP_SAT")
    layers.append(weighted_layer(ir.Conv2D, "conv1", rng, in_type, random_codes(rng, (3, 3, 1, c1), bits), bits, encoding,
                            t1, multiplier, levels, padding=(1, 1, 1, 1)))
    r1 = relu_type(t1)
    layers.append(ir.ReLU(name="relu1", out_type=r1))
    p1 = _pool("pool1", r1, avg_pool, pools[0] if pools else None)
    layers.append(p1)
    t2 = FixedType(9, 4, True, ROUNDINGS[(seed + 1) % len(ROUNDINGS)], "AP_SAT")
    layers.append(weighted_layer(ir.Conv2D, "conv2", rng, p1.out_type, random_codes(rng, (3, 3, c1, c2), bits), bits,
                            encoding, t2, multiplier, levels))
    r2 = relu_type(t2)
    layers.append(ir.ReLU(name="relu2", out_type=r2))
    p2 = _pool("pool2", r2, avg_pool, pools[1] if pools else None)
    layers.append(p2)
    layers.append(ir.Flatten(name="flatten", out_type=p2.out_type))
    model = ir.Model(name=name, layers=layers)
    n_flat = model.output_shape[0]
    t3 = FixedType(12, 5, True, ROUNDINGS[(seed + 2) % len(ROUNDINGS)], "AP_SAT")
    layers.append(weighted_layer(ir.Dense, "dense", rng, p2.out_type, random_codes(rng, (n_flat, n_out), bits), bits,
                            encoding, t3, multiplier, levels))
    return model.check()


def _pool(name, t, avg, spec=None):
    kw = {}
    if spec is not None:
        kind, pool, stride = spec
        avg, kw = kind == "avg", {"pool": tuple(pool), "stride": tuple(stride)}
    if not avg:
        return ir.MaxPool2D(name=name, out_type=t, **kw)
    extra = (int(kw.get("pool", (2, 2))[0]) * int(kw.get("pool", (2, 2))[1])).bit_length() - 1
    out = FixedType(width=t.width + extra, integer=t.integer, signed=t.signed)
    return ir.AvgPool2D(name=name, out_type=out, **kw)


def random_mlp(bits: int, *, seed: int = 0, sizes: tuple[int, ...] = (32, 16, 10), encoding: str = "odd",
               multiplier: str = "auto", in_type: FixedType | None = None, name: str = "mlp",
               levels=None) -> ir.Model:
    """dense -> relu -> ... -> dense on a flat input (``levels``: a custom level table for every layer)."""
    rng = np.random.default_rng(seed)
    in_type = in_type or FixedType(width=8, integer=2, signed=True)
    layers: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(sizes[0],))]
    t = in_type
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        last = i == len(sizes) - 2
        out = FixedType(14 if last else 8, 6 if last else 3, True, ROUNDINGS[(seed + i) % len(ROUNDINGS)],
                        "AP_SAT" if i % 2 == 0 else "AP_WRAP")
        layers.append(weighted_layer(ir.Dense, f"fc{i + 1}", rng, t, random_codes(rng, (n_in, n_out), bits), bits, encoding,
                                out, multiplier, levels))
        t = out
        if not last:
            t = relu_type(out)
            layers.append(ir.ReLU(name=f"relu{i + 1}", out_type=t))
    return ir.Model(name=name, layers=layers).check()


def _gap(name, in_type, in_shape, out_type, frac=12):
    mult, mult_type = ir.GlobalAvgPool2D.constant(int(in_shape[0] * in_shape[1]), frac)
    return ir.GlobalAvgPool2D(name=name, out_type=out_type, mult=mult, mult_type=mult_type)


def random_resnet(bits: int = 2, *, seed: int = 0, size: int = 8, channels: tuple[int, int] = (4, 8),
                  n_out: int = 10, levels=None, multiplier: str = "auto", name: str = "resnet") -> ir.Model:
    """A small residual CNN: stem conv, an identity block (add), a stride-2 block whose shortcut
    is a strided 1x1 projection (add), global average pool, dense. The two inputs of the first
    add have different fractional widths (the add aligns them)."""
    rng = np.random.default_rng(seed)
    c1, c2 = channels
    enc = "odd"
    in_type = FixedType(width=8, integer=1, signed=False)
    R = ROUNDINGS
    L: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(size, size, 1))]

    def conv(nm, src, t_in, cin, cout, out_type, k=3, stride=(1, 1), pad=1, inputs=None):
        layer = weighted_layer(ir.Conv2D, nm, rng, t_in, random_codes(rng, (k, k, cin, cout), bits), bits, enc, out_type,
                          multiplier, levels, stride=stride, padding=(pad,) * 4)
        layer.inputs = (src,)
        L.append(layer)
        return layer

    def relu(nm, src, t):
        r = ir.ReLU(name=nm, out_type=relu_type(t), inputs=(src,))
        L.append(r)
        return r

    stem = conv("stem", "input_1", in_type, 1, c1, FixedType(8, 3, True, R[seed % 7], "AP_SAT"))
    r0 = relu("stem_relu", "stem", stem.out_type)  # ufixed<7,2>: frac 5
    b1 = conv("b1_conv", "stem_relu", r0.out_type, c1, c1, FixedType(10, 4, True, R[(seed + 1) % 7], "AP_SAT"))
    relu("b1_relu", "b1_conv", b1.out_type)  # ufixed<9,3>: frac 6
    a1 = ir.Add(name="b1_add", out_type=FixedType(9, 4, True, R[(seed + 2) % 7], "AP_SAT"),
                inputs=("b1_relu", "stem_relu"))
    L.append(a1)
    r2 = relu("b1_out", "b1_add", a1.out_type)
    d1 = conv("b2_conv1", "b1_out", r2.out_type, c1, c2, FixedType(8, 3, True, R[(seed + 3) % 7], "AP_SAT"),
              stride=(2, 2))
    r3 = relu("b2_relu", "b2_conv1", d1.out_type)
    conv("b2_conv2", "b2_relu", r3.out_type, c2, c2, FixedType(9, 4, True, R[(seed + 4) % 7], "AP_WRAP"))
    conv("b2_proj", "b1_out", r2.out_type, c1, c2, FixedType(8, 3, True, R[(seed + 5) % 7], "AP_SAT"), k=1,
         stride=(2, 2), pad=0)
    a2 = ir.Add(name="b2_add", out_type=FixedType(10, 4, True, R[(seed + 6) % 7], "AP_SAT"),
                inputs=("b2_conv2", "b2_proj"))
    L.append(a2)
    r4 = relu("b2_out", "b2_add", a2.out_type)
    shape = ir.Model(name=name, layers=list(L)).shapes()["b2_out"]
    gap = _gap("gap", r4.out_type, shape, FixedType(10, 3, True, R[seed % 7], "AP_SAT"))
    gap.inputs = ("b2_out",)
    L.append(gap)
    fc = weighted_layer(ir.Dense, "fc", rng, gap.out_type, random_codes(rng, (c2, n_out), bits), bits, enc,
                   FixedType(12, 5, True, R[(seed + 1) % 7], "AP_SAT"), multiplier, levels)
    fc.inputs = ("gap",)
    L.append(fc)
    return ir.Model(name=name, layers=L).check()


def random_mobilenet_block(bits: int = 2, *, seed: int = 0, size: int = 8, channels: int = 6, n_out: int = 10,
                           levels=None, name: str = "mobilenet") -> ir.Model:
    """stem conv -> relu -> [depthwise 3x3 -> relu -> pointwise 1x1] + shortcut (add) -> relu -> GAP -> dense."""
    rng = np.random.default_rng(seed)
    enc, c, R = "odd", channels, ROUNDINGS
    in_type = FixedType(width=8, integer=2, signed=True)
    L: list[ir.Layer] = [ir.Input(name="input_1", out_type=in_type, shape=(size, size, 3))]
    stem = weighted_layer(ir.Conv2D, "stem", rng, in_type, random_codes(rng, (3, 3, 3, c), bits), bits, enc,
                     FixedType(8, 3, True, R[seed % 7], "AP_SAT"), levels=levels, padding=(1, 1, 1, 1))
    L.append(stem)
    r0 = ir.ReLU(name="stem_relu", out_type=relu_type(stem.out_type))
    L.append(r0)
    dw = weighted_layer(ir.DepthwiseConv2D, "dw", rng, r0.out_type, random_codes(rng, (3, 3, c), bits), bits, enc,
                   FixedType(9, 4, True, R[(seed + 1) % 7], "AP_SAT"), levels=levels, padding=(1, 1, 1, 1))
    L.append(dw)
    r1 = ir.ReLU(name="dw_relu", out_type=relu_type(dw.out_type))
    L.append(r1)
    pw = weighted_layer(ir.Conv2D, "pw", rng, r1.out_type, random_codes(rng, (1, 1, c, c), bits), bits, enc,
                   FixedType(8, 3, True, R[(seed + 2) % 7], "AP_SAT"), levels=levels)
    L.append(pw)
    add = ir.Add(name="add", out_type=FixedType(9, 4, True, R[(seed + 3) % 7], "AP_SAT"), inputs=("pw", "stem_relu"))
    L.append(add)
    r2 = ir.ReLU(name="out_relu", out_type=relu_type(add.out_type))
    L.append(r2)
    gap = _gap("gap", r2.out_type, (size, size), FixedType(10, 3, True, R[(seed + 4) % 7], "AP_SAT"))
    L.append(gap)
    L.append(weighted_layer(ir.Dense, "fc", rng, gap.out_type, random_codes(rng, (c, n_out), bits), bits, enc,
                       FixedType(12, 5, True, R[(seed + 5) % 7], "AP_SAT"), levels=levels))
    return ir.Model(name=name, layers=L).check()


def random_inputs(model: ir.Model, n: int, *, seed: int = 1) -> np.ndarray:
    """n random input mantissas covering the whole input type (shape (n,) + input shape)."""
    rng = np.random.default_rng(seed)
    t = model.input.out_type
    return rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(n,) + tuple(model.input.shape)).astype(np.int64)
