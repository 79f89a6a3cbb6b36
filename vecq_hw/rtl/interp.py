"""An exact, vectorised executor of da4ml's traced logic (``CombLogic``): int64 mantissas.

Why not da4ml's own interpreter: the C++ one (``CombLogic.predict``, da4ml 0.6.0) wraps a
quantisation wider than 32 bits wrongly (a 34-bit two's-complement wrap of -60662.2 gave
-60662.2 + 2**26; ``tests/test_rtl_interp.py`` keeps the smallest case), and its Python one
(``CombLogic.__call__``) runs one sample at a time. This executor follows the Python one's
definition of every opcode our traces produce, op by op, on a whole batch at once, holding each
value as an int64 mantissa on its op's own grid (``minimal_kif(op.qint)``): every step is
integer arithmetic, exact while values stay within 62 bits (``trace.MAX_GRAPH_WIDTH`` keeps
them within 52). An op whose result does not land on its declared grid is a ToolError (it
would mean the graph and this reading of it disagree), never a rounding.

Opcodes (``da4ml.types.Op``): -1 input, 0/1 a +/- (b << s), 2/-2 relu(+/-a) into the op's type
(truncate, wrap), 3/-3 quantize(+/-a) (truncate, wrap), 4 a + constant, 5 constant, 6/-6
msb(c) ? a : +/-(b << s), 7 a * b. Look-ups and bit operations (8, 9, 10) are not produced by
our traces and are refused.
"""

from __future__ import annotations

import numpy as np
from da4ml.types import minimal_kif

from ..errors import ToolError

#: widest intermediate (bits) this executor handles exactly in int64
MAX_WIDTH = 62


def _step_frac(qint) -> int:
    """Fractional bits of the grid a constant op's ``data`` counts in (its qint's step)."""
    return int(-np.log2(qint.step)) if qint.step > 0 else 0


def _align(m: np.ndarray, f_from: int, f_to: int) -> np.ndarray:
    """The same values on the grid 2**-f_to (exact: only ever a finer grid)."""
    return m << np.int64(f_to - f_from) if f_to > f_from else m


def _onto(m: np.ndarray, f_from: int, f_to: int, i: int) -> np.ndarray:
    """Exact values with f_from fractional bits, stored with f_to: refused if they do not fit."""
    if f_to >= f_from:
        return m << np.int64(f_to - f_from)
    shift = np.int64(f_from - f_to)
    if np.any(m & ((np.int64(1) << shift) - 1)):
        raise ToolError(f"da4ml graph op {i}: a value falls between the grid points of its declared type")
    return m >> shift


def _wrap(m: np.ndarray, k: int, bits: int) -> np.ndarray:
    """Two's-complement (k = 1) or unsigned (k = 0) wrap of mantissas into ``bits`` bits."""
    if bits <= 0:
        return np.zeros_like(m)
    mask = (np.int64(1) << np.int64(bits)) - 1
    u = m & mask
    if k:
        half = np.int64(1) << np.int64(bits - 1)
        u = np.where(u >= half, u - (mask + 1), u)
    return u


def _truncate(m: np.ndarray, f_from: int, f_to: int) -> np.ndarray:
    """floor onto the coarser grid 2**-f_to (arithmetic shift), or exact onto a finer one."""
    return m >> np.int64(f_from - f_to) if f_from > f_to else _align(m, f_from, f_to)


class _Run:
    def __init__(self, comb, x: np.ndarray, in_frac: int):
        self.comb, self.x, self.in_frac = comb, x, in_frac
        self.m: list[np.ndarray | None] = [None] * len(comb.ops)
        # each value's grid is its op's step (minimal_kif says 0 fractional bits for a value that
        # is always 0, whatever its step: the step keeps the grids of its neighbours close)
        self.f = [_step_frac(op.qint) for op in comb.ops]

    def value(self, j: int, f: int) -> np.ndarray:
        return _align(self.m[j], self.f[j], f)

    def _shifted(self, op):
        """(a, b << s) on one common grid, and that grid's fractional bits."""
        s = int(op.data)
        f = max(self.f[op.id0], self.f[op.id1] - s)
        b = _align(self.m[op.id1], self.f[op.id1] - s, f)  # b * 2**s has f_b - s fractional bits
        return self.value(op.id0, f), b, f

    def step(self, i: int, op) -> np.ndarray:
        code, f_op = op.opcode, self.f[i]
        k, ii, _ = minimal_kif(op.qint)  # sign and integer bits of the op's type
        if code == -1:
            f_in = self.in_frac - int(self.comb.inp_shifts[op.id0])
            return _onto(self.x[:, op.id0], f_in, f_op, i)
        if code in (0, 1):
            a, b, f = self._shifted(op)
            return _onto(a + b if code == 0 else a - b, f, f_op, i)
        if code in (2, -2, 3, -3):
            src = self.m[op.id0] if code > 0 else -self.m[op.id0]
            if code in (2, -2):
                src = np.maximum(src, 0)
            bits = int(k) + int(ii) + int(minimal_kif(op.qint).fractional)
            return _wrap(_truncate(src, self.f[op.id0], f_op), int(k) if code in (3, -3) else 0, bits)
        if code == 4:
            fc = _step_frac(op.qint)
            f = max(self.f[op.id0], fc)
            c = np.int64(int(op.data)) << np.int64(f - fc)
            return _onto(self.value(op.id0, f) + c, f, f_op, i)
        if code == 5:
            c = np.full(self.x.shape[0], int(op.data), dtype=np.int64)
            return _onto(c, _step_frac(op.qint), f_op, i)
        if code in (6, -6):
            return self._mux(i, op)
        if code == 7:
            return _onto(self.m[op.id0] * self.m[op.id1], self.f[op.id0] + self.f[op.id1], f_op, i)
        raise ToolError(f"da4ml graph op {i}: opcode {code} is not one our traces produce")

    def _mux(self, i: int, op) -> np.ndarray:
        c_id = int(op.data) & 0xFFFFFFFF
        s = (int(op.data) >> 32) & 0xFFFFFFFF
        s = s - 0x100000000 if s >= 0x80000000 else s
        # the result is one operand or the other, unchanged: each is put on the op's grid alone
        a = _onto(self.m[op.id0], self.f[op.id0], self.f[i], i)
        b = _onto(self.m[op.id1], self.f[op.id1] - s, self.f[i], i)
        if op.opcode == -6:
            b = -b
        cq = self.comb.ops[c_id].qint
        c = self.m[c_id]
        if cq.min < 0:
            take_a = c < 0
        else:  # unsigned: the most significant bit of its minimal type
            _, ci, _ = minimal_kif(cq)
            e = ci - 1 + self.f[c_id]  # value >= 2**(ci - 1)  <=>  mantissa >= 2**e (>= 1 when e < 0)
            take_a = c >= (np.int64(1) << np.int64(e)) if e >= 0 else c > 0
        return np.where(take_a, a, b)


def run_comb(comb, x_mantissa: np.ndarray, in_frac: int, out_frac: int) -> np.ndarray:
    """Output mantissas (N, n_out) on the grid 2**-out_frac of ``comb`` for input mantissas
    ``x_mantissa`` (N, n_in) on the grid 2**-in_frac."""
    widest = max(sum(minimal_kif(op.qint)) for op in comb.ops)
    if widest > MAX_WIDTH:
        raise ToolError(f"da4ml graph: a value needs {widest} bits, more than the {MAX_WIDTH} executed exactly")
    run = _Run(comb, np.asarray(x_mantissa, dtype=np.int64).reshape(len(x_mantissa), -1), in_frac)
    for i, op in enumerate(comb.ops):
        run.m[i] = run.step(i, op)
    out = np.zeros((run.x.shape[0], len(comb.out_idxs)), dtype=np.int64)
    for j, (idx, shift, neg) in enumerate(zip(comb.out_idxs, comb.out_shifts, comb.out_negs)):
        if idx < 0:
            continue
        v = _onto(run.m[idx], run.f[idx] - int(shift), out_frac, idx)
        out[:, j] = -v if neg else v
    return out
