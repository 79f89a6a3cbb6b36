"""Integer model -> da4ml combinational logic (``CombLogic``), layer by layer.

Each weighted layer is traced as the arithmetic contract says (``shared/DESIGN.md``):
``acc = x @ d`` as one da4ml constant matrix-vector product (an adder graph over the integer
multipliers d, shared across outputs), ``y = acc * s + b`` (a per-channel constant
shift-add and a constant add), then the ONE requantisation (``requant.requantize``). ReLU,
max/avg pooling and flatten are exact. Convolutions are fully unrolled over the frame: every
output pixel gets its own adder graph (interior pixels share one solved graph).

Activations are numpy object arrays of da4ml ``FixedVariable`` in channels-last order, so
flatten is a C-order reshape exactly like the simulator's.

Each kind is traced by one op registered with ``@rtl_op("kind")`` (like the simulator's
``@kernel_for``), from inside or outside the package; a kind without one is refused with one
line naming the layer before anything is traced.
"""

from __future__ import annotations

import decimal
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import numpy as np
from da4ml.cmvm import solve
from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace
from da4ml.types import QInterval, minimal_kif

from .. import ir
from ..fixed import FixedType
from .options import RtlOptions
from .requant import MAX_FRAC, RtlUnsupported, const, max_var, requantize, unsupported

#: widest value anywhere in the graph: da4ml's Python interpreter (the reference our exact
#: executor, rtl/interp.py, is tested against) moves values through float64: 52 bits keep it exact
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
    """How often a weighted layer's products repeat: output pixels (h, w, c), nodes (n, f), once (n,)."""
    return int(np.prod(out_shape[:-1])) if len(out_shape) >= 2 else 1


def estimate_adder_bits(model: ir.Model) -> int:
    """Size estimate before tracing: per weighted layer, output pixels x shift-add terms
    (CSD digits of every multiplier) x accumulator width. An upper bound on the unshared
    adder graph, and what the tracing time grows with."""
    total = 0
    for layer, _, _, out_shape in model.walk():
        if callable(getattr(layer, "multipliers", None)):  # every weighted kind, ALQ's too
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


@dataclass
class TraceStep:
    """One node to trace, as an op (:func:`rtl_op`) receives it: the layer, its input values
    (object arrays of da4ml ``FixedVariable``, one per input, channels-last) and their types, its
    output shape, and what the whole trace shares (the cached CMVM solver, da4ml's HWConfig)."""

    layer: ir.Layer
    xs: list
    in_types: tuple
    out_shape: tuple
    solver: _Solver
    hw: HWConfig

    @property
    def x(self) -> np.ndarray:
        return self.xs[0]

    @property
    def in_type(self) -> FixedType:
        return self.in_types[0]

    @property
    def where(self) -> str:
        return f"layer '{self.layer.name}'"


#: layer kind -> op(step) -> the node's output values (an object array of FixedVariables)
RTL_OPS: dict[str, Callable[[TraceStep], np.ndarray]] = {}


def rtl_op(*kinds: str):
    """Decorator: register a function that traces one node of these layer kinds into da4ml
    values (``op(step: TraceStep) -> np.ndarray`` of FixedVariables, shaped like the node's output).
    Every requantisation it needs goes through :func:`.requant.requantize` (exact or refused)."""
    def register(op):
        for kind in kinds:
            RTL_OPS[kind] = op
        return op
    return register


@rtl_op("dense")
def _dense(s: TraceStep) -> np.ndarray:
    return _post(s.layer, s.in_type)(s.solver.matvec(s.x, s.layer.multipliers().astype(np.int64)))


@rtl_op("conv2d")
def _conv(s: TraceStep) -> np.ndarray:
    post = _post(s.layer, s.in_type)
    d = s.layer.multipliers().astype(np.int64)
    d2 = d.reshape(-1, d.shape[-1])  # rows in (kh, kw, cin) order, as the simulator's im2col
    out = np.empty(tuple(s.out_shape), dtype=object)
    for r, c, patch in _windows(s.x, s.layer, s.out_shape, s.hw):
        out[r, c] = post(s.solver.matvec(patch.reshape(-1), d2))
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


@rtl_op("depthwise_conv2d")
def _depthwise(s: TraceStep) -> np.ndarray:
    """One kh x kw filter per channel: a one-column product per channel and pixel."""
    post = _post(s.layer, s.in_type)
    d = s.layer.multipliers().astype(np.int64)  # (kh, kw, c)
    ch = d.shape[2]
    out = np.empty(tuple(s.out_shape), dtype=object)
    for r, c, patch in _windows(s.x, s.layer, s.out_shape, s.hw):
        acc = [s.solver.matvec(patch[:, :, k].reshape(-1), d[:, :, k].reshape(-1, 1))[0] for k in range(ch)]
        out[r, c] = post(acc)
    return out


def _pool(s: TraceStep, combine, scale: Decimal) -> np.ndarray:
    """Each window folded with ``combine``, times ``scale`` (1: unchanged)."""
    oh, ow, ch = s.out_shape
    (ph, pw), (sh, sw) = s.layer.pool, s.layer.stride
    out = np.empty((oh, ow, ch), dtype=object)
    for r in range(oh):
        for c in range(ow):
            for k in range(ch):
                win = [s.x[r * sh + dy, c * sw + dx, k] for dy in range(ph) for dx in range(pw)]
                acc = win[0]
                for v in win[1:]:
                    acc = combine(acc, v)
                out[r, c, k] = acc * scale if scale != 1 else acc
    return out


@rtl_op("maxpool2d")
def _max_pool(s: TraceStep) -> np.ndarray:
    return _pool(s, max_var, Decimal(1))


@rtl_op("avgpool2d")
def _avg_pool(s: TraceStep) -> np.ndarray:
    ph, pw = s.layer.pool
    # exact: Model.check pins a power-of-two window
    return _pool(s, lambda a, b: a + b, Decimal(2) ** -((ph * pw).bit_length() - 1))


@rtl_op("relu")
def _relu(s: TraceStep) -> np.ndarray:
    """Exact: Model.check guarantees out_type holds every non-negative input value."""
    flat = [v.relu() if v.low < 0 else v for v in s.x.ravel()]
    return np.array(flat, dtype=object).reshape(s.x.shape)


@rtl_op("flatten")
def _flatten(s: TraceStep) -> np.ndarray:
    return s.x.reshape(-1)  # channels-last C order, as the simulator's


@rtl_op("add")
def _add(s: TraceStep) -> np.ndarray:
    """Sum exactly (da4ml aligns the grids), then the ONE requantisation from the finest grid."""
    frac = max(t.frac for t in s.in_types)
    total = s.xs[0]
    for x in s.xs[1:]:
        total = total + x  # object arrays: elementwise FixedVariable additions
    flat = [requantize(v, frac, s.layer.out_type, s.where) for v in total.ravel()]
    return np.array(flat, dtype=object).reshape(total.shape)


@rtl_op("global_avg_pool")
def _global_avg(s: TraceStep) -> np.ndarray:
    """Exact window sum times the pinned constant mult (a mantissa of mult_type), then the
    ONE requantisation from in_frac + mult_type.frac fractional bits."""
    layer, x = s.layer, s.x
    h, w, c = x.shape
    mult = Decimal(int(layer.mult)) * Decimal(2) ** -layer.mult_type.frac
    out = np.empty(c, dtype=object)
    for k in range(c):
        acc = x[0, 0, k]
        for v in list(x[:, :, k].ravel())[1:]:
            acc = acc + v
        out[k] = requantize(acc * mult, s.in_type.frac + layer.mult_type.frac, layer.out_type, s.where)
    return out


def trace_weighted(layer: ir.Weighted, in_type: FixedType, n_in: int, product, opts: RtlOptions | None = None):
    """One weighted layer's logic around a given product, as a da4ml ``CombLogic``: an input port
    of ``n_in`` values of ``in_type``, ``product`` (a list of da4ml values -> the accumulators, one
    per output channel: e.g. the HLS back end's solved CMVM of the layer) and the contract's tail
    (scale, bias, the ONE requantisation, exactly as :func:`trace_model` builds it): what the
    layer costs as gates, for yosys."""
    opts = opts or RtlOptions()
    with decimal.localcontext() as ctx:
        ctx.prec = EXACT_DECIMAL_DIGITS
        hw = HWConfig(opts.adder_size, opts.carry_size, -1)
        inp = FixedVariableArrayInput((int(n_in),), hwconf=hw)
        xs = list(np.asarray(inp.quantize(*_kif(in_type))._vars, dtype=object))
        out = _post(layer, in_type)(np.asarray(product(xs), dtype=object))
        return comb_trace(inp, list(out))


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


def _check_traceable(model: ir.Model, opts: RtlOptions) -> int:
    """Refuse, before any tracing, a kind without an op or a model above the size budget;
    returns the adder-bits estimate."""
    model.check()
    for layer in model.layers[1:]:
        if layer.kind not in RTL_OPS:
            raise RtlUnsupported(f"layer '{layer.name}': kind '{layer.kind}' is not supported by the RTL path")
    est = estimate_adder_bits(model)
    if est > opts.max_adder_bits:
        raise RtlUnsupported(f"model '{model.name}': estimated {est:,} adder bits, above the budget of "
                             f"{opts.max_adder_bits:,} (fully unrolled; raise --max-adder-bits to try anyway)")
    return est


def _input(layer: ir.Input, hw: HWConfig):
    """The traced design's input port and its values, quantised to the model's input type."""
    t = layer.out_type
    if t.width > MAX_IO_WIDTH:
        raise RtlUnsupported(f"input '{layer.name}': {t} is wider than the {MAX_IO_WIDTH} bits "
                             "da4ml's Verilator binder moves")
    inp = FixedVariableArrayInput(tuple(layer.shape), hwconf=hw)
    return inp, np.asarray(inp.quantize(*_kif(t))._vars, dtype=object)


def _trace(model: ir.Model, opts: RtlOptions, progress) -> TraceResult:
    est = _check_traceable(model, opts)
    t0 = time.perf_counter()
    hw = HWConfig(opts.adder_size, opts.carry_size, -1)
    solver = _Solver(opts, hw)
    inp, values = _input(model.input, hw)
    values = {model.input.name: values}
    info = []
    nodes = model.nodes()
    for node in nodes[1:]:  # the first is the input
        t1 = time.perf_counter()
        layer = node.layer
        step = TraceStep(layer, [values[n] for n in layer.inputs], node.in_types, node.out_shape, solver, hw)
        values[layer.name] = RTL_OPS[layer.kind](step)
        info.append({"name": layer.name, "kind": layer.kind, "out_shape": list(node.out_shape),
                     "seconds": round(time.perf_counter() - t1, 4)})
        if progress:
            progress(layer.name)
    out = nodes[-1]
    t = out.layer.out_type  # the last layer is the model's output
    if t.width > MAX_IO_WIDTH:
        raise RtlUnsupported(f"output of layer '{out.layer.name}': {t} is wider than the "
                             f"{MAX_IO_WIDTH} bits da4ml's Verilator binder moves")
    comb = comb_trace(inp, list(values[out.layer.name].ravel()), keep_dead_inputs=True)
    widest = max(sum(minimal_kif(op.qint)) for op in comb.ops)
    if widest > MAX_GRAPH_WIDTH:
        raise RtlUnsupported(f"model '{model.name}': an intermediate value needs {widest} bits, more than "
                             f"the {MAX_GRAPH_WIDTH} da4ml's interpreter computes exactly")
    return TraceResult(comb=comb, seconds=time.perf_counter() - t0, adder_bits_estimate=est, layers=info,
                       in_type=model.input.out_type, in_shape=tuple(nodes[0].out_shape), out_type=t,
                       out_shape=tuple(out.out_shape))
