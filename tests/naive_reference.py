"""A deliberately naive reference for the simulator: plain Python ints, explicit loops.

Independent of ``vecq_hw.sim`` and of ``FixedType.quantize_mantissa``: the requantisation
here is written from the ap_types definitions (``quantization_adjust`` / ``overflow_adjust``
in ap_fixed_base.h) for the modes the tests use. It reads only a type's width, integer bits,
signedness and mode names. Slow by design: use it on small layers only.
"""

from __future__ import annotations

import numpy as np

from vecq_hw import ir

SUPPORTED_ROUNDING = ("AP_TRN", "AP_RND", "AP_RND_ZERO", "AP_RND_MIN_INF", "AP_RND_INF",
                      "AP_RND_CONV", "AP_TRN_ZERO")
SUPPORTED_OVERFLOW = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


def frac_of(t) -> int:
    return t.width - t.integer


def type_range(t) -> tuple[int, int]:
    if t.signed:
        return -(2 ** (t.width - 1)), 2 ** (t.width - 1) - 1
    return 0, 2 ** t.width - 1


def naive_round(y: int, frac: int, t) -> int:
    """y * 2**-frac on t's LSB grid, rounded by t's rounding mode (no overflow handling)."""
    sh = frac - frac_of(t)
    if sh <= 0:
        return y * 2 ** (-sh)
    q = y // 2 ** sh              # floor (Python // floors)
    rem = y - q * 2 ** sh         # 0 <= rem < 2**sh: the dropped bits
    half = 2 ** (sh - 1)
    qb = rem >= half              # the first dropped bit
    r = (rem % half) != 0         # any dropped bit below it
    s = y < 0
    mode = t.rounding
    assert mode in SUPPORTED_ROUNDING, mode
    if mode == "AP_TRN":
        inc = False
    elif mode == "AP_RND":        # half up (toward +inf)
        inc = qb
    elif mode == "AP_RND_ZERO":   # half toward zero
        inc = qb and (s or r)
    elif mode == "AP_RND_MIN_INF":
        inc = qb and r
    elif mode == "AP_RND_INF":    # half away from zero
        inc = qb and ((not s) or r)
    elif mode == "AP_RND_CONV":   # half to even
        inc = qb and (q % 2 == 1 or r)
    else:                         # AP_TRN_ZERO: toward zero
        inc = s and (qb or r)
    return q + int(inc)


def naive_overflow(r: int, t) -> tuple[int, bool]:
    """Apply t's overflow mode to the rounded value r; also say whether r was out of range."""
    lo, hi = type_range(t)
    mode = t.overflow
    assert mode in SUPPORTED_OVERFLOW, mode
    assert t.sat_bits == 0
    if mode == "AP_SAT_SYM" and t.signed:
        lo = -hi                  # ap_types: the most negative value underflows too
    if lo <= r <= hi:
        return r, False
    if mode == "AP_WRAP":
        v = r % 2 ** t.width
        if t.signed and v >= 2 ** (t.width - 1):
            v -= 2 ** t.width
        return v, True
    if mode == "AP_SAT_ZERO":
        return 0, True
    return (hi if r > hi else lo), True  # AP_SAT, AP_SAT_SYM


def naive_requant(y: int, frac: int, t) -> tuple[int, bool]:
    return naive_overflow(naive_round(y, frac, t), t)


def _shape(layer, in_shape):
    return layer.output_shape(in_shape)


def _d(layer, c):
    """The multiplier of code c: the layer's levels table, indexed from the lowest code."""
    return int(layer.levels.tolist()[c + 2 ** (layer.bits - 1)])


def naive_add(layer, xs, in_types, counts):
    """Exact sum on the finest input grid, then the one requantisation."""
    frac = max(frac_of(t) for t in in_types)

    def add(*vals):
        if isinstance(vals[0], list):
            return [add(*v) for v in zip(*vals)]
        y = sum(v * 2 ** (frac - frac_of(t)) for v, t in zip(vals, in_types))
        return _count(counts, layer, *naive_requant(y, frac, layer.out_type))
    return add(*xs)


def naive_gap(layer, x, in_type, counts):
    c = len(x[0][0])
    frac = frac_of(in_type) + frac_of(layer.mult_type)
    return [_count(counts, layer, *naive_requant(sum(x[i][j][ch] for i in range(len(x)) for j in range(len(x[0])))
                                                 * int(layer.mult), frac, layer.out_type))
            for ch in range(c)]


def _count(counts, layer, v, over):
    if counts is not None:
        counts["total"] += 1
        if over:
            counts["saturated" if layer.out_type.overflow != "AP_WRAP" else "wrapped"] += 1
    return v


def naive_layer(layer, x, in_shape, in_type, counts):
    """x: nested Python lists (one sample). Returns the output as nested lists."""
    out_shape = _shape(layer, in_shape)
    if isinstance(layer, ir.GlobalAvgPool2D):
        return naive_gap(layer, x, in_type, counts)
    if isinstance(layer, ir.DepthwiseConv2D):
        h, w, cin = in_shape
        oh, ow, _ = out_shape
        kh, kw = layer.kernel
        pt, _, pl, _ = layer.padding
        codes = layer.codes.tolist()
        out = [[[0] * cin for _ in range(ow)] for _ in range(oh)]
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(cin):
                    acc = 0
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * layer.stride[0] + ky - pt
                            ix = ox * layer.stride[1] + kx - pl
                            if 0 <= iy < h and 0 <= ix < w:
                                acc += x[iy][ix][ch] * _d(layer, codes[ky][kx][ch])
                    out[oy][ox][ch] = _finish(layer, acc, ch, in_type, counts)
        return out
    if isinstance(layer, ir.Dense):
        d = [[_d(layer, c) for c in row] for row in layer.codes.tolist()]
        return [_finish(layer, sum(x[i] * d[i][j] for i in range(len(x))), j, in_type, counts)
                for j in range(out_shape[0])]
    if isinstance(layer, ir.Conv2D):
        h, w, cin = in_shape
        oh, ow, cout = out_shape
        kh, kw = layer.kernel
        pt, _, pl, _ = layer.padding
        codes = layer.codes.tolist()
        out = [[[0] * cout for _ in range(ow)] for _ in range(oh)]
        for oy in range(oh):
            for ox in range(ow):
                for co in range(cout):
                    acc = 0
                    for ky in range(kh):
                        for kx in range(kw):
                            iy = oy * layer.stride[0] + ky - pt
                            ix = ox * layer.stride[1] + kx - pl
                            if not (0 <= iy < h and 0 <= ix < w):
                                continue  # zero padding
                            for ci in range(cin):
                                acc += x[iy][ix][ci] * _d(layer, codes[ky][kx][ci][co])
                    out[oy][ox][co] = _finish(layer, acc, co, in_type, counts)
        return out
    if isinstance(layer, ir.ReLU):
        k = frac_of(layer.out_type) - frac_of(in_type)
        return _map(x, lambda v: max(v, 0) * 2 ** k)
    if isinstance(layer, (ir.MaxPool2D, ir.AvgPool2D)):
        oh, ow, c = out_shape
        ph, pw = layer.pool
        out = [[[0] * c for _ in range(ow)] for _ in range(oh)]
        for oy in range(oh):
            for ox in range(ow):
                for ch in range(c):
                    vals = [x[oy * layer.stride[0] + a][ox * layer.stride[1] + b][ch]
                            for a in range(ph) for b in range(pw)]
                    if isinstance(layer, ir.MaxPool2D):
                        out[oy][ox][ch] = max(vals)
                    else:
                        # mean = sum / area, exact on the output grid
                        num = sum(vals) * 2 ** frac_of(layer.out_type)
                        den = ph * pw * 2 ** frac_of(in_type)
                        assert num % den == 0
                        out[oy][ox][ch] = num // den
        return out
    if isinstance(layer, ir.Flatten):
        return [v for row in x for col in row for v in col]
    raise TypeError(layer)


def _finish(layer, acc, j, in_type, counts):
    """y = acc*s + b as an exact rational on a common grid, then the one requantisation."""
    fs, fb = frac_of(layer.scale_type), frac_of(layer.bias_type)
    fx = frac_of(in_type)
    frac = max(fx + fs, fb)
    y = acc * int(layer.scale[j]) * 2 ** (frac - fx - fs) + int(layer.bias[j]) * 2 ** (frac - fb)
    return _count(counts, layer, *naive_requant(y, frac, layer.out_type))


def _map(x, f):
    if isinstance(x, list):
        return [_map(v, f) for v in x]
    return f(x)


def naive_simulate(model: ir.Model, x_mantissa: np.ndarray):
    """Returns (output int64 array, trace dict of int64 arrays, overflow counts dict)."""
    xs = np.asarray(x_mantissa, dtype=np.int64)
    requantising = (ir.Weighted, ir.Add, ir.GlobalAvgPool2D)
    counts = {layer.name: {"saturated": 0, "wrapped": 0, "total": 0}
              for layer in model.layers if isinstance(layer, requantising)}
    per_layer = {layer.name: [] for layer in model.layers}
    model.link()
    for sample in xs:
        h = sample.tolist()
        val = {model.input.name: (h, tuple(model.input.shape), model.input.out_type)}
        per_layer[model.input.name].append(h)
        for layer in model.layers[1:]:
            ins = [val[n] for n in layer.inputs]
            if isinstance(layer, ir.Add):
                h = naive_add(layer, [v for v, _, _ in ins], [t for _, _, t in ins], counts.get(layer.name))
                shape = ins[0][1]
            else:
                x, shape_in, typ = ins[0]
                h = naive_layer(layer, x, shape_in, typ, counts.get(layer.name))
                shape = layer.output_shape(shape_in)
            val[layer.name] = (h, shape, layer.out_type)
            per_layer[layer.name].append(h)
    trace = {name: np.array(v, dtype=np.int64) for name, v in per_layer.items()}
    return trace[model.layers[-1].name], trace, counts


__all__ = ["naive_simulate", "naive_requant", "naive_round", "naive_overflow", "type_range"]
