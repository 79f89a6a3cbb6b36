"""Integer model -> da4ml combinational logic (``CombLogic``), layer by layer.

Each weighted layer is traced as the arithmetic contract says (``shared/DESIGN.md``):
``acc = x @ d`` as one da4ml constant matrix-vector product (an adder graph over the integer
multipliers d, shared across outputs), ``y = acc * s + b`` (a per-channel constant
shift-add and a constant add), then the ONE requantisation (``requant.requantize``). ReLU,
max/avg pooling and flatten are exact. Convolutions are fully unrolled over the frame: every
output pixel gets its own adder graph (interior pixels share one solved graph).

Activations are numpy object arrays of da4ml ``FixedVariable`` in channels-last order, so
flatten is a C-order reshape exactly like the simulator's.
"""

from __future__ import annotations

import decimal
import time
from dataclasses import dataclass, field
from decimal import Decimal

import numpy as np
from da4ml.cmvm import solve
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from da4ml.types import QInterval, minimal_kif

from .. import ir
from ..fixed import FixedType
from .options import RtlOptions
from .requant import MAX_FRAC, RtlUnsupported, const, max_var, requantize, unsupported

#: widest value anywhere in the graph: da4ml's interpreter is int64 inside and moves values
#: through float64, so 52 bits keeps every step exact
MAX_GRAPH_WIDTH = 52
#: da4ml's Verilator binder moves each input and output value as an int32
MAX_IO_WIDTH = 32
#: Decimal digits for da4ml's symbolic arithmetic (see trace_model)
EXACT_DECIMAL_DIGITS = 200


def _kif(t: FixedType) -> tuple[int, int, int]:
    """da4ml's (keep_negative, integer bits without sign, fractional bits) of an ap type."""
    return int(t.signed), t.integer - int(t.signed), t.frac


def _csd_digits(d: np.ndarray) -> np.ndarray:
    """Non-zero digits of each integer in canonical signed-digit form (adders it costs + 1)."""
    a = np.abs(np.asarray(d, dtype=np.int64))
    n = np.zeros(a.shape, dtype=np.int64)
    while np.any(a):
        odd = (a & 1) == 1
        # digit +1 when a % 4 == 1, -1 (borrow) when a % 4 == 3
        a = np.where(odd & ((a & 3) == 3), a + 1, np.where(odd, a - 1, a))
        n += odd
        a >>= 1
    return n


def _pixels(layer: ir.Layer, out_shape) -> int:
    return int(np.prod(out_shape[:2])) if len(out_shape) == 3 else 1


def estimate_adder_bits(model: ir.Model) -> int:
    """Size estimate before tracing: per weighted layer, output pixels x shift-add terms
    (CSD digits of every multiplier) x accumulator width. An upper bound on the unshared
    adder graph, and what the tracing time grows with."""
    total = 0
    for layer, _, _, out_shape in model.walk():
        if isinstance(layer, ir.Weighted):
            terms = int(_csd_digits(layer.multipliers()).sum())
            total += _pixels(layer, out_shape) * terms * layer.accum_type.width
    return total


@dataclass
class TraceResult:
    comb: object  # da4ml.types.CombLogic
    seconds: float
    adder_bits_estimate: int
    layers: list[dict] = field(default_factory=list)
    in_type: FixedType | None = None
    in_shape: tuple = ()
    out_type: FixedType | None = None
    out_shape: tuple = ()


class _Solver:
    """da4ml's CMVM solve, cached on (matrix, input intervals): interior conv pixels repeat."""

    def __init__(self, opts: RtlOptions, hw: HWConfig):
        self.opts, self.hw, self.cache = opts, hw, {}

    def matvec(self, xs: np.ndarray, d: np.ndarray) -> np.ndarray:
        """acc_j = sum_i xs_i d_ij exactly (xs: FixedVariables, some maybe constant)."""
        xs = list(xs)
        n_out = d.shape[1]
        live = [i for i, v in enumerate(xs) if v.low != v.high]
        # constant inputs (zero padding, a ReLU that is always 0) fold into a constant term
        const_rows = [i for i in range(len(xs)) if xs[i].low == xs[i].high]
        consts = [sum((xs[i].low * int(d[i, j]) for i in const_rows), Decimal(0)) for j in range(n_out)]
        if not live:
            return np.array([const(cj, self.hw) for cj in consts], dtype=object)
        k = d[live]
        qints = tuple(QInterval(float(xs[i].low), float(xs[i].high), float(xs[i].step)) for i in live)
        key = (k.tobytes(), k.shape, qints)
        sol = self.cache.get(key)
        if sol is None:
            sol = solve(np.ascontiguousarray(k.astype(np.float32)), qintervals=list(qints),
                        latencies=[float(xs[i].latency) for i in live], hard_dc=self.opts.hard_dc,
                        adder_size=self.hw.adder_size, carry_size=self.hw.carry_size)
            self.cache[key] = sol
        out = np.asarray(sol([xs[i] for i in live]), dtype=object)
        for j in range(n_out):
            if consts[j] != 0:
                out[j] = out[j] + consts[j]
        return out


def _post(layer: ir.Weighted, in_type: FixedType):
    """acc -> requant(acc * s_j + b_j) per output channel j (the contract's tail)."""
    where = f"layer '{layer.name}'"
    for name, t in (("scale_type", layer.scale_type), ("bias_type", layer.bias_type)):
        if abs(t.frac) > MAX_FRAC or t.width > 52:
            raise RtlUnsupported(f"{where}: {name} {t} is beyond the RTL path's constants "
                                 f"(|frac| <= {MAX_FRAC}, width <= 52)")
    why = unsupported(layer.out_type)
    if why:
        raise RtlUnsupported(f"{where}: {why}")
    d = layer.multipliers().astype(np.int64)
    if np.abs(d).max() >= 1 << 24:  # da4ml solves in float32  # pragma: no cover - k <= 8
        raise RtlUnsupported(f"{where}: multipliers beyond float32's exact integers")
    sq = Decimal(2) ** -layer.scale_type.frac
    bq = Decimal(2) ** -layer.bias_type.frac
    s = [Decimal(int(v)) * sq for v in layer.scale]
    b = [Decimal(int(v)) * bq for v in layer.bias]
    # the contract's product grid: y = acc*s + b is exact on the finer of the two grids
    pf = max(in_type.frac + layer.scale_type.frac, layer.bias_type.frac)

    def post(acc, channels=None):
        """``acc[i]`` belongs to output channel ``channels[i]`` (default: i)."""
        chans = range(len(acc)) if channels is None else channels
        out = np.empty(len(acc), dtype=object)
        for i, (j, a) in enumerate(zip(chans, acc)):
            y = a * s[j] if s[j] != 1 else a
            y = y + b[j] if b[j] != 0 else y
            out[i] = requantize(y, pf, layer.out_type, where)
        return out

    return post


def _weighted(layer: ir.Weighted, x: np.ndarray, in_type: FixedType, out_shape, solver: _Solver, hw) -> np.ndarray:
    post = _post(layer, in_type)
    d = layer.multipliers().astype(np.int64)
    if isinstance(layer, ir.Dense):
        return post(solver.matvec(x, d))
    d2 = d.reshape(-1, d.shape[-1])  # rows in (kh, kw, cin) order, as the simulator's im2col
    out = np.empty(tuple(out_shape), dtype=object)
    for r, c, patch in _windows(x, layer, out_shape, hw):
        out[r, c] = post(solver.matvec(patch.reshape(-1), d2))
    return out


def _windows(x: np.ndarray, layer, out_shape, hw):
    """(r, c, patch (kh, kw, channels)) per output pixel, zero constants in the padding."""
    kh, kw = layer.multipliers().shape[:2]
    sh, sw = layer.stride
    pt, _, pl, _ = layer.padding
    oh, ow = out_shape[:2]
    h, w, cin = x.shape
    zero = const(0, hw)
    for r in range(oh):
        for c in range(ow):
            patch = np.empty((kh, kw, cin), dtype=object)
            for dy in range(kh):
                for dx in range(kw):
                    yy, xx = r * sh + dy - pt, c * sw + dx - pl
                    inside = 0 <= yy < h and 0 <= xx < w
                    patch[dy, dx] = x[yy, xx] if inside else [zero] * cin
            yield r, c, patch


def _depthwise(layer, x: np.ndarray, in_type: FixedType, out_shape, solver: _Solver, hw) -> np.ndarray:
    """One kh x kw filter per channel: a one-column product per channel and pixel."""
    post = _post(layer, in_type)
    d = layer.multipliers().astype(np.int64)  # (kh, kw, c)
    ch = d.shape[2]
    out = np.empty(tuple(out_shape), dtype=object)
    for r, c, patch in _windows(x, layer, out_shape, hw):
        acc = [solver.matvec(patch[:, :, k].reshape(-1), d[:, :, k].reshape(-1, 1))[0] for k in range(ch)]
        out[r, c] = post(acc)
    return out


def _pool(layer, x: np.ndarray, out_shape) -> np.ndarray:
    oh, ow, ch = out_shape
    (ph, pw), (sh, sw) = layer.pool, layer.stride
    out = np.empty((oh, ow, ch), dtype=object)
    area_shift = Decimal(2) ** -((ph * pw).bit_length() - 1)
    for r in range(oh):
        for c in range(ow):
            for k in range(ch):
                win = [x[r * sh + dy, c * sw + dx, k] for dy in range(ph) for dx in range(pw)]
                acc = win[0]
                for v in win[1:]:
                    acc = max_var(acc, v) if isinstance(layer, ir.MaxPool2D) else acc + v
                if isinstance(layer, ir.AvgPool2D):
                    acc = acc * area_shift  # exact: Model.check pins a power-of-two window
                out[r, c, k] = acc
    return out


def _relu(x: np.ndarray) -> np.ndarray:
    flat = [v.relu() if v.low < 0 else v for v in x.ravel()]
    return np.array(flat, dtype=object).reshape(x.shape)


def trace_model(model: ir.Model, opts: RtlOptions | None = None, progress=None) -> TraceResult:
    """Trace ``model`` into a da4ml ``CombLogic`` (inputs and outputs flattened, C order).

    Refuses (``RtlUnsupported``, one line naming the layer) kinds, modes and sizes it cannot
    build exactly."""
    # da4ml keeps every signal's binary point as a Decimal scale factor that drifts by the
    # scales' exponents layer after layer (2**-39 after five layers is 28 digits); Decimal's
    # default 28-digit context then rounds constants silently. 200 digits keep every product
    # of our <= 52-bit values and power-of-two factors exact.
    with decimal.localcontext() as ctx:
        ctx.prec = EXACT_DECIMAL_DIGITS
        return _trace(model, opts or RtlOptions(), progress)


def _kind(name: str):
    """An ir class by name, or None where this version of the model has no such kind."""
    return getattr(ir, name, None)


def _is(layer, name: str) -> bool:
    cls = _kind(name)
    return cls is not None and isinstance(layer, cls)


def _nodes(model: ir.Model):
    """(layer, input names, input shapes, input types, out_shape) in topological order:
    ``model.nodes()`` where the model is a graph, else the chain of ``model.walk()``."""
    if hasattr(model, "nodes"):
        for n in model.nodes():
            names = tuple(getattr(n.layer, "inputs", ()) or ())
            yield n.layer, names, tuple(n.in_shapes), tuple(n.in_types), tuple(n.out_shape)
        return
    prev = None
    for layer, in_shape, in_type, out_shape in model.walk():
        ins = () if prev is None else (prev,)
        yield layer, ins, (() if prev is None else (in_shape,)), (() if prev is None else (in_type,)), out_shape
        prev = layer.name


def _add(layer, xs, in_types) -> np.ndarray:
    """Sum exactly (da4ml aligns the grids), then the ONE requantisation from the finest grid."""
    frac = max(t.frac for t in in_types)
    where = f"layer '{layer.name}'"
    total = xs[0]
    for x in xs[1:]:
        total = total + x  # object arrays: elementwise FixedVariable additions
    flat = [requantize(v, frac, layer.out_type, where) for v in total.ravel()]
    return np.array(flat, dtype=object).reshape(total.shape)


def _global_avg(layer, x, in_type) -> np.ndarray:
    """Exact window sum times the pinned constant mult (a mantissa of mult_type), then the
    ONE requantisation from in_frac + mult_type.frac fractional bits."""
    h, w, c = x.shape
    mult = Decimal(int(layer.mult)) * Decimal(2) ** -layer.mult_type.frac
    where = f"layer '{layer.name}'"
    out = np.empty(c, dtype=object)
    for k in range(c):
        acc = x[0, 0, k]
        for v in list(x[:, :, k].ravel())[1:]:
            acc = acc + v
        out[k] = requantize(acc * mult, in_type.frac + layer.mult_type.frac, layer.out_type, where)
    return out


def _trace(model: ir.Model, opts: RtlOptions, progress) -> TraceResult:
    model.check()
    est = estimate_adder_bits(model)
    if est > opts.max_adder_bits:
        raise RtlUnsupported(f"model '{model.name}': estimated {est:,} adder bits, above the budget of "
                             f"{opts.max_adder_bits:,} (fully unrolled; raise --max-adder-bits to try anyway)")
    t0 = time.perf_counter()
    hw = HWConfig(opts.adder_size, opts.carry_size, -1)
    solver = _Solver(opts, hw)
    inp = None
    values: dict[str, np.ndarray] = {}
    info = []
    for layer, names, in_shapes, in_types, out_shape in _nodes(model):
        t1 = time.perf_counter()
        xs = [values[n] for n in names]
        x = xs[0] if xs else None
        in_type = in_types[0] if in_types else None
        if isinstance(layer, ir.Input):
            t = layer.out_type
            if t.width > MAX_IO_WIDTH:
                raise RtlUnsupported(f"input '{layer.name}': {t} is wider than the {MAX_IO_WIDTH} bits "
                                     "da4ml's Verilator binder moves")
            in_t, in_s = t, out_shape
            inp = FixedVariableArrayInput(tuple(out_shape), hwconf=hw)
            y = np.asarray(inp.quantize(*_kif(t))._vars, dtype=object)
        elif _is(layer, "DepthwiseConv2D"):
            y = _depthwise(layer, x, in_type, out_shape, solver, hw)
        elif isinstance(layer, ir.Weighted):
            y = _weighted(layer, x, in_type, out_shape, solver, hw)
        elif isinstance(layer, ir.ReLU):
            y = _relu(x)  # exact: Model.check guarantees out_type holds every non-negative input
        elif isinstance(layer, (ir.MaxPool2D, ir.AvgPool2D)):
            y = _pool(layer, x, out_shape)
        elif isinstance(layer, ir.Flatten):
            y = x.reshape(-1)
        elif _is(layer, "Add"):
            y = _add(layer, xs, in_types)
        elif _is(layer, "GlobalAvgPool2D"):
            y = _global_avg(layer, x, in_type)
        else:
            kind = getattr(layer, "kind", type(layer).__name__)
            raise RtlUnsupported(f"layer '{layer.name}': kind '{kind}' is not supported by the RTL path")
        values[layer.name] = y
        info.append({"name": layer.name, "kind": getattr(layer, "kind", type(layer).__name__),
                     "out_shape": list(out_shape), "seconds": round(time.perf_counter() - t1, 4)})
        if progress:
            progress(layer.name)
    t = layer.out_type  # the last layer is the model's output
    if t.width > MAX_IO_WIDTH:
        raise RtlUnsupported(f"output of layer '{layer.name}': {t} is wider than the "
                             f"{MAX_IO_WIDTH} bits da4ml's Verilator binder moves")
    outs = list(values[layer.name].ravel())
    comb = comb_trace(inp, outs, keep_dead_inputs=True)
    widest = max(sum(minimal_kif(op.qint)) for op in comb.ops)
    if widest > MAX_GRAPH_WIDTH:
        raise RtlUnsupported(f"model '{model.name}': an intermediate value needs {widest} bits, more than "
                             f"the {MAX_GRAPH_WIDTH} da4ml's interpreter computes exactly")
    return TraceResult(comb=comb, seconds=time.perf_counter() - t0, adder_bits_estimate=est, layers=info,
                       in_type=in_t, in_shape=tuple(in_s), out_type=t, out_shape=tuple(out_shape))
