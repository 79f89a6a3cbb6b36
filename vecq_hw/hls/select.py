"""Select groups (issue 21): x * levels[c] as one selected multiple of x per group of code bits.

The k bits of a weight code are split into groups of one or two bits. Group t adds
``entries[t][v] * x`` to the product, v the value of its bits (the group's first bit is v's bit 0),
and the groups' entries add up to the level of every code:

    levels[c] = sum_t entries[t][v_t(c)]            (checked for all 2^k codes by :func:`check`)

Every entry is 0 or +/- one of a few **multiples** m * x (x, 3x, ...), each computed once per
input and shared by every product of that input: all the output channels a folded slot array
multiplies one input by in a cycle. A product then costs one adder per group, adding a selected
multiple, or subtracting it (one's complement and a carry-in), into the accumulator. On a 6-input
LUT device each accumulator bit of that adder is ONE LUT feeding the carry chain: its inputs are
the accumulator bit, the group's <= 2 code bits and the bits of its <= 3 candidate multiples
(:data:`LUT_INPUTS`); the sign is a function of the code bits inside the same LUT.

* VecQ's odd table d = 2c + 1 (:func:`named_plan`): radix-4 digits in {-3, -1, 1, 3}, one per two
  code bits (x and 3x: a select and an add/sub per digit); the 'int' table d = c: radix-4 digits
  {0, 1, 2, 3} below a signed top digit {-2, -1, 0, 1} (x, 2x = x << 1, 3x).
* Any other table (:func:`find_plan`): when ``levels`` is additively separable over groups of <= 2
  code bits whose entries fit the LUT (ESB at k = b - 2: sign and magnitude, levels c + [c < 0];
  d = sum_i w_i c_i for any weights). Tables whose bits interact across groups (ESB's exponent
  times significand) have no plan.

No hls4ml import (the estimator and calibrate.py read it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: inputs of one accumulator bit's LUT besides the accumulator bit: group code bits + candidate multiples
LUT_INPUTS = 5


def _odd(m: int) -> tuple[int, int]:
    """m = odd << shift."""
    sh = (m & -m).bit_length() - 1
    return m >> sh, sh


@dataclass(frozen=True)
class SelectPlan:
    bits: int
    groups: tuple  # per group: its code bit positions (1 or 2), lowest first
    entries: tuple  # per group: the signed multiple of x for each value v of its bits (2^len entries)

    def shift(self, t: int) -> int:
        """Trailing zero bits shared by group t's nonzero entries: its adder starts there."""
        nz = [abs(e) for e in self.entries[t] if e]
        return min(_odd(e)[1] for e in nz) if nz else 0

    def picks(self, t: int) -> list[tuple[int, int, bool]]:
        """Per value v: (odd multiple o, shift s, negate), entries[t][v] = +/- (o << s) << shift(t);
        o = 0: nothing to add."""
        sh = self.shift(t)
        return [(*_odd(abs(e) >> sh), e < 0) if e else (0, 0, False) for e in self.entries[t]]

    def negates(self, t: int) -> list[bool]:
        """Per value v: subtract? A zero entry's sign is free (adding ~0 with a carry-in adds 0):
        chosen so that the sign is a constant or one of the group's code bits when it can be (then
        the adder's carry-in is that bit, no LUT: :func:`sign_cost`)."""
        fixed = [neg if o else None for o, _, neg in self.picks(t)]
        size = len(self.groups[t])
        for cand in ([False] * (1 << size), [True] * (1 << size), *_bit_signs(size)):
            if all(f is None or f == c for f, c in zip(fixed, cand)):
                return cand
        return [bool(f) for f in fixed]

    @property
    def multiples(self) -> tuple:
        """The distinct odd multiples o (x, 3x, 7x, ...): o * x computed once per input; every
        entry is one of them shifted."""
        return tuple(sorted({o for t in range(len(self.groups)) for o, _, _ in self.picks(t) if o}))

    def value(self, code: int) -> int:
        pattern = int(code) % (1 << self.bits)
        return sum(e[sum(((pattern >> b) & 1) << j for j, b in enumerate(g))] for g, e in zip(self.groups, self.entries))


def fits(group: tuple, entries) -> bool:
    """One LUT per accumulator bit: the group's code bits and its distinct magnitudes (after the
    group's shift: each a multiple's bit) fit LUT_INPUTS."""
    nz = [abs(int(e)) for e in entries if e]
    if not nz:
        return True
    sh = min(_odd(e)[1] for e in nz)
    return len(group) + len({e >> sh for e in nz}) <= LUT_INPUTS


def check(plan: SelectPlan, levels) -> bool:
    half = 1 << (plan.bits - 1)
    return all(plan.value(c) == int(levels[c + half]) for c in range(-half, half))


def named_plan(name: str, bits: int) -> SelectPlan:
    """The radix-4 digits the C++ named class (nnet_vecq_products.h, vecq_radix4) computes.

    odd, d = 2c + 1 = sum_b s_b 2^b with s_b = 2u_b - 1, u = c's bits with the top one inverted:
    each pair (s_{2t+1}, s_{2t}) is a digit in {-3, -1, 1, 3} times 4^t, an odd k's top bit
    +/- 2^(k-1). int, d = c: unsigned pairs {0, 1, 2, 3} 4^t, top pair {0, 1, -2, -1} 4^t (top
    single bit {0, -2^(k-1)})."""
    groups, entries = [], []
    for lo in range(0, bits, 2):
        g = (lo,) if lo + 1 == bits else (lo, lo + 1)
        scale = 1 << lo
        if name == "odd":
            s = [(1, -1) if b == bits - 1 else (-1, 1) for b in g]  # s_b for bit value 0 / 1
            vals = [sum(s[j][(v >> j) & 1] << j for j in range(len(g))) for v in range(1 << len(g))]
        else:
            w = [-(1 << j) if b == bits - 1 else 1 << j for j, b in enumerate(g)]
            vals = [sum(w[j] for j in range(len(g)) if (v >> j) & 1) for v in range(1 << len(g))]
        groups.append(g)
        entries.append(tuple(v * scale for v in vals))
    return SelectPlan(bits, tuple(groups), tuple(entries))


def _patterns(levels, bits: int) -> np.ndarray:
    """level by bit pattern p = c mod 2^k (the code's two's complement bits)."""
    half = 1 << (bits - 1)
    out = np.zeros(1 << bits, dtype=np.int64)
    for c in range(-half, half):
        out[c % (1 << bits)] = int(levels[c + half])
    return out


def _groupings(lv: np.ndarray, bits: int):
    """Every split of the bits into groups of <= 2 the table is separable over: bits that interact
    (a nonzero second difference) share a group, and no bit interacts with two others; the other
    bits pair up every way (the fewest groups: at most one left alone)."""
    partner = {}
    for i, j in itertools.combinations(range(bits), 2):
        bi, bj = 1 << i, 1 << j
        rest = [p for p in range(1 << bits) if not p & (bi | bj)]
        if any(lv[p | bi | bj] - lv[p | bi] - lv[p | bj] + lv[p] for p in rest):
            if i in partner or j in partner:
                return
            partner[i], partner[j] = j, i
    fixed = [(i, partner[i]) for i in sorted(partner) if i < partner[i]]
    yield from (sorted(fixed + rest) for rest in _pairings([b for b in range(bits) if b not in partner]))


def _pairings(bits: list):
    if len(bits) <= 1:
        yield [tuple(bits)] if bits else []
        return
    if len(bits) % 2:  # one bit alone: each choice
        for b in bits:
            yield from ([(b,)] + rest for rest in _pairings([c for c in bits if c != b]))
        return
    first = bits[0]
    for other in bits[1:]:
        yield from ([(first, other)] + rest for rest in _pairings([c for c in bits[1:] if c != other]))


def _bit_signs(size: int) -> list[list[bool]]:
    """Per value of a group's bits: its bit j, or that bit inverted."""
    return [[bool((v >> j) & 1) != inv for v in range(1 << size)] for inv in (False, True) for j in range(size)]


def sign_cost(plan: SelectPlan, t: int) -> int:
    """0: group t's sign is a constant, 1: one of its code bits or its inverse (the carry-in: free
    on yosys, VecQ's odd digits), 2: a function of two code bits (one more LUT per product)."""
    neg = plan.negates(t)
    if len(set(neg)) == 1:
        return 0
    return 1 if neg in _bit_signs(len(plan.groups[t])) else 2


def reach(plan: SelectPlan) -> int:
    """Bits of the largest term magnitude: a term past the table's own range widens the sum."""
    return max(abs(e) for es in plan.entries for e in es).bit_length()


def _cost(plan: SelectPlan, need: int) -> tuple:
    """Fewer adders, terms within the table's range (no wider sum), fewer adder bits (larger group
    shifts), no sign needing its own LUT, fewer multiples to precompute, no code bit read twice,
    then constant signs."""
    n = len(plan.groups)
    signs = [sign_cost(plan, t) for t in range(n)]
    return (n, reach(plan) > need, -sum(plan.shift(t) for t in range(n)), signs.count(2),
            sum(o > 1 for o in plan.multiples), sum(map(len, plan.groups)) > plan.bits, sum(c > 0 for c in signs),
            plan.groups, plan.entries)


def _offsets(raw: list) -> list[int]:
    """Candidate constants for one group: one entry 0, or the entries symmetric about 0."""
    return sorted({0} | {-r for r in raw} | {-(a + b) // 2 for a in raw for b in raw if (a + b) % 2 == 0})


def _plans(lv: np.ndarray, bits: int, groups: list):
    raw = [[int(lv[sum(((v >> j) & 1) << b for j, b in enumerate(g))] - lv[0]) for v in range(1 << len(g))]
           for g in groups]
    yield from _with_offsets(bits, groups, raw, int(lv[0]))


def _with_offsets(bits: int, groups: list, raw: list, const: int):
    """Plans adding ``const`` to the groups' raw entries, split over the groups every way that fits."""
    ok = [[o for o in _offsets(rs) if fits(g, [r + o for r in rs])] for g, rs in zip(groups[:-1], raw)]
    for offs in itertools.product(*ok):
        last = const - sum(offs)
        if fits(groups[-1], [r + last for r in raw[-1]]):
            entries = tuple(tuple(r + o for r in rs) for rs, o in zip(raw, list(offs) + [last]))
            yield SelectPlan(bits, tuple(groups), entries)


def _linear_weights(lv: np.ndarray, bits: int) -> list[int] | None:
    """w with lv[p] = lv[0] + sum_b w_b p_b for every pattern p, or None."""
    w = [int(lv[1 << b] - lv[0]) for b in range(bits)]
    ok = all(lv[p] == lv[0] + sum(w[b] for b in range(bits) if (p >> b) & 1) for p in range(1 << bits))
    return w if ok else None


def _shift_bound(raw: list) -> int:
    """The largest shift any offset can give a group: the trailing zeros its entries' differences share."""
    diff = [abs(a - raw[0]) for a in raw[1:] if a != raw[0]]
    return min(_odd(d)[1] for d in diff) if diff else 64


def _split_plans(lv: np.ndarray, bits: int, min_shift: int = 0):
    """An odd number of code bits leaves one group with a free slot: a linear table may use it for
    a second copy of one bit b, its weight split w_b = u + (w_b - u) over two groups (ESB's sign at
    k = b - 2: -15 = -8 - 7, so that no group's term reaches past the table). b: a bit of the
    largest |weight| (the one no power of two covers), u = +/- 2^e (a wider search takes minutes
    at 7 bits and found nothing better on ESB and the named tables). Groupings whose shifts cannot
    reach ``min_shift`` in total are skipped."""
    w = _linear_weights(lv, bits)
    if w is None or bits % 2 == 0 or bits < 3:
        return
    parts = sorted({s << e for s in (1, -1) for e in range(bits + 1)})
    for b in [b for b in range(bits) if abs(w[b]) == max(map(abs, w))]:
        for slots in _pairings(list(range(bits + 1))):  # slot `bits`: b's second copy
            groups = [tuple(sorted(b if s == bits else s for s in g)) for g in slots]
            if any(len(set(g)) < len(g) for g in groups):
                continue
            for first, u in itertools.product([t for t, g in enumerate(groups) if b in g], parts):
                def weight(t, bit):  # one group holding b takes u, the other the rest
                    return (u if t == first else w[b] - u) if bit == b else w[bit]

                raw = [[sum(weight(t, bit) for j, bit in enumerate(g) if (v >> j) & 1) for v in range(1 << len(g))]
                       for t, g in enumerate(groups)]
                if sum(map(_shift_bound, raw)) < min_shift:
                    continue
                yield from _with_offsets(bits, sorted(groups), [r for _, r in sorted(zip(groups, raw))], int(lv[0]))


@lru_cache(maxsize=256)
def _find(levels: tuple, bits: int) -> SelectPlan | None:
    lv = _patterns(levels, bits)
    need = int(np.max(np.abs(lv))).bit_length()
    plans = [p for groups in _groupings(lv, bits) for p in _plans(lv, bits, groups)]
    within = [sum(p.shift(t) for t in range(len(p.groups))) for p in plans if reach(p) <= need]
    plans += list(_split_plans(lv, bits, max(within, default=0)))
    return min(plans, key=lambda p: _cost(p, need)) if plans else None


def find_plan(levels, bits: int) -> SelectPlan | None:
    """A select plan for this table (each group one LUT per accumulator bit), or None."""
    plan = _find(tuple(int(v) for v in np.asarray(levels).reshape(-1)), int(bits))
    assert plan is None or check(plan, np.asarray(levels))
    return plan


# -- what the slot array spends on a plan (the estimator's folded-layer cost, hls/mappings.py) ------
def adder_luts(plan: SelectPlan, acc_width: int) -> int:
    """LUTs of one slot: per group one adder on the accumulator bits from the group's shift up, one
    LUT6 per bit (select, complement and sum bit in the LUT feeding CARRY4). yosys maps the
    select form to this count (benchmarks/results/products.md: 'one LUT per adder bit')."""
    return sum(max(int(acc_width) - plan.shift(t), 1) for t in range(len(plan.groups)))


def multiple_luts(plan: SelectPlan, w: int) -> int:
    """LUTs of one input's shared multiples (3x = x + 2x, ...): one adder per extra signed digit,
    as wide as the multiple (o's canonical signed digits: the ones of o ^ 3o)."""
    return sum((bin(o ^ 3 * o).count("1") - 1) * (int(w) + o.bit_length()) for o in plan.multiples)


def block_inputs(block: int, group: int) -> int:
    """Inputs one cycle's block of ``block`` consecutive products reads when ``group`` consecutive
    products read one input (nnet_vecq_fold.h, vecq_block_inputs)."""
    if block % group == 0:
        return block // group
    return 1 if group % block == 0 else (block - 1) // group + 2
