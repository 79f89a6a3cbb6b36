"""The folded slot array in Verilog, in every product form we tried, for yosys (issue 21).

One cycle of a folded layer: m inputs x_i (w-bit signed) times the k-bit codes c_ij of n output
channels (ROM words: module inputs; or constants, ``codes``, for R = 1), each product added into
its channel's accumulator:

    y_j = acc_j + sum_i x_i * levels[c_ij]          mod 2^W (the kernels' wrapping accum_t)

W is the exact width of an m-term sum (at least 2 bits above the widest shifted multiple). yosys
``synth_xilinx -nodsp`` LUTs / (m n) is the cost of one MAC with its share of what the products
of one input share. Every form is proven equal to the plain ``x * levels[c]`` form by yosys SAT
(:func:`prove_array_form`). These are yosys technology-mapping counts, not Vivado results.

Forms (:data:`FORMS`):

* ``select`` -- the kernels' form (nnet_vecq_select.h, plan from :mod:`..select`): per input its
  multiples (x, 3x, ...) once; per MAC and group one adder. Each adder is written
  ``{acc[W-1:sh], n} + {sext(s ^ {n}), n}`` (bits W..1 kept): s the selected multiple, n the sign
  (one's complement plus a carry-in, the carry entering through the extra low bit). Why this
  spelling: yosys merges chained ``+`` into one multi-operand macc (a compressor tree, off the
  carry chain) unless each sum is re-sliced; and its $alu operand order decides which operand
  feeds CARRY4's DI: that must be the accumulator, so that the select, the complement and the sum
  bit share ONE LUT. ``alumacc`` orders operands by width, then chunk count, then hash; the
  sign-extended term has more chunks than the accumulator, so the order is fixed.
* ``select_psum`` -- the kernels' form with partial sums (hls/partial_sums.py): each output's m
  products chained from 0 at the width of their sum (``Wn``), then one add into the accumulator
  (``acc_width``: a layer's accumulator, wider than m products need).
* ``select_naive``: ``acc + sum (n ? -s : s)`` (a negation per term), ``select_macc``:
  ``acc + (s ^ {n}) + n`` chained (merged into one macc), ``select_cat``: the re-sliced adder with
  a term of as many chunks as the accumulator (operand order left to a hash) -- tried, dropped.
* ``shift_add_bits`` -- the previous named kernels: one shifted copy of x per code bit (k + 1 adds);
  ``digits`` -- signed-digit columns (shift_add / shift_add_n); ``addsub``; ``multiply`` -- x *
  levels[c] (the ROM multiplier, and the reference of every proof).
"""

from __future__ import annotations

import numpy as np

from ..select import SelectPlan
from .yosys import PROOF_PREP, yosys_equivalent, yosys_luts

FORMS = ("select", "select_psum", "select_naive", "select_macc", "select_cat", "shift_add_bits", "digits", "addsub",
         "multiply")


def _pattern(c: int, bits: int) -> int:
    return (int(c) + (1 << bits)) % (1 << bits)


def _const(v: int, width: int) -> str:
    return f"{'-' if v < 0 else ''}{width}'sd{abs(int(v))}"


def _case_function(name: str, bits: int, width: int, rows: list[tuple[int, int]]) -> str:
    cases = "\n".join(f"      {bits}'d{p}: {name} = {_const(v, width)};" for p, v in rows)
    return (f"  function signed [{width - 1}:0] {name};\n    input [{bits - 1}:0] c;\n    case (c)\n"
            f"{cases}\n      default: {name} = 0;\n    endcase\n  endfunction\n")


class ArrayWriter:
    """One slot array's Verilog: ports, shared per-input wires, one sum per output."""

    def __init__(self, levels, bits: int, w: int, m: int, n: int, plan: SelectPlan | None, codes=None,
                 acc_width: int | None = None):
        self.levels = np.asarray(levels, dtype=np.int64)
        self.bits, self.w, self.m, self.n, self.plan, self.codes = int(bits), int(w), int(m), int(n), plan, codes
        mag = int(np.max(np.abs(self.levels)))
        self.lw = max(mag.bit_length() + 1, 2)
        self.W = (self.m * (mag << (self.w - 1))).bit_length() + 1
        if plan is not None:
            self.wx = self.w + max(plan.multiples).bit_length()  # one multiple times x, signed
            self.W = max([self.W] + [self.term_width(t) + plan.shift(t) + 2 for t in range(len(plan.groups))])
        from ..products import csd_digits

        self.Wn = self.W  # the exact width of the m products' sum (select_psum's partial sums)
        if acc_width is not None:  # a layer's accumulator: the whole fan-in's width
            self.W = max(self.W, int(acc_width))
        shift = max([e for v in self.levels for _, e in csd_digits(int(v))] + [self.bits])
        self.pw = self.w + max(self.lw, shift + 1) + 1  # one product, every partial sum of it (any form)
        self.head, self.body = [], []

    def ports(self) -> list[str]:
        out = [f"input signed [{self.w - 1}:0] x{i}" for i in range(self.m)]
        if self.codes is None:
            out += [f"input [{self.bits - 1}:0] c{i}_{j}" for i in range(self.m) for j in range(self.n)]
        out += [f"input [{self.W - 1}:0] acc{j}" for j in range(self.n)]
        return out + [f"output [{self.W - 1}:0] y{j}" for j in range(self.n)]

    def module(self, form: str, top: str) -> str:
        if self.codes is not None:
            for i in range(self.m):
                for j in range(self.n):
                    self.body.append(f"  wire [{self.bits - 1}:0] c{i}_{j} = {self.bits}'d"
                                     f"{_pattern(self.codes[i][j], self.bits)};")
        xw = self.W if form.startswith("select") else self.pw  # holds any shifted copy of x either form makes
        for i in range(self.m):  # x sign-extended once per input
            self.body.append(f"  wire signed [{xw - 1}:0] xs{i} = x{i};")
        if form.startswith("select"):
            self.multiples()
        for j in range(self.n):
            self.body.append(f"  assign y{j} = {self.output(form, j)};")
        return (f"module {top}(\n  " + ",\n  ".join(self.ports()) + "\n);\n" + "".join(self.head)
                + "\n".join(self.body) + "\nendmodule\n")

    # -- the select forms -------------------------------------------------------------------------
    def term_width(self, t: int) -> int:
        """Signed width of group t's selected term (before the group's shift)."""
        return self.w + max(abs(e) >> self.plan.shift(t) for e in self.plan.entries[t]).bit_length()

    def multiples(self) -> None:
        from ..products import csd_digits

        for i in range(self.m):
            for q, mult in enumerate(self.plan.multiples):
                terms = " + ".join(f"{'-' if s < 0 else ''}(xs{i} <<< {e})" for s, e in csd_digits(mult))
                self.body.append(f"  wire signed [{self.wx - 1}:0] m{q}_{i} = {terms};")

    def selected(self, i: int, j: int, t: int) -> tuple[str, str, int]:
        """(selected multiple wire, sign wire, shift) of group t of product (i, j)."""
        g, picks, mults = self.plan.groups[t], self.plan.picks(t), self.plan.multiples
        v = "{" + ", ".join(f"c{i}_{j}[{b}]" for b in reversed(g)) + "}"
        tw = self.term_width(t)
        opts = [f"(m{mults.index(o)}_{i} <<< {s})" if o else f"{tw}'sd0" for o, s, _ in picks]
        sel = "".join(f"{v} == {len(g)}'d{k} ? {o} : " for k, o in enumerate(opts[:-1])) + opts[-1]
        negs = [f"{v} == {len(g)}'d{k}" for k, ng in enumerate(self.plan.negates(t)) if ng]
        name = f"{i}_{j}_{t}"
        self.body.append(f"  wire signed [{tw - 1}:0] s{name} = {sel};")
        sign = " | ".join(negs) if negs else "1'b0"
        self.body.append(f"  wire n{name} = {sign};")
        return f"s{name}", f"n{name}", self.plan.shift(t)

    def select_sum(self, form: str, j: int) -> str:
        W, prev = self.W, f"acc{j}"
        if form == "select_psum":  # the chain from 0 at the m products' width, then one add into acc
            W, prev = self.Wn, f"z{j}"
            self.body.append(f"  wire [{W - 1}:0] z{j} = 0;")
        terms = []
        for i in range(self.m):
            for t in range(len(self.plan.groups)):
                s, n, sh = self.selected(i, j, t)
                name, wt, wx = f"{i}_{j}_{t}", W - sh, self.term_width(t)
                if form == "select_naive":
                    self.body.append(f"  wire signed [{W - 1}:0] g{name} = {s} <<< {sh};")
                    terms.append(f"({n} ? -g{name} : g{name})")
                    continue
                if form == "select_macc":
                    self.body.append(f"  wire signed [{W - 1}:0] g{name} = {s} <<< {sh};")
                    self.body.append(f"  wire [{W - 1}:0] a{name} = {prev} + (g{name} ^ {{{W}{{{n}}}}}) + {n};")
                    prev = f"a{name}"
                    continue
                hi = f"{prev}[{W - 1}:{sh}]" if sh else prev
                if form == "select_cat":  # the term one wire: operand order by hash
                    self.body.append(f"  wire signed [{wt - 1}:0] g{name} = {s};")
                    term = f"g{name} ^ {{{wt}{{{n}}}}}"
                else:  # select: the sign-extended term has more chunks than the accumulator
                    self.body.append(f"  wire [{wx - 1}:0] t{name} = {s} ^ {{{wx}{{{n}}}}};")
                    term = f"{{{wt - wx}{{t{name}[{wx - 1}]}}}}, t{name}"
                self.body.append(f"  wire [{wt}:0] e{name} = {{{hi}, {n}}} + {{{term}, {n}}};")
                low = f", {prev}[{sh - 1}:0]" if sh else ""
                self.body.append(f"  wire [{W - 1}:0] a{name} = {{e{name}[{wt}:1]{low}}};")
                prev = f"a{name}"
        if form == "select_psum":
            return f"acc{j} + {{{{{self.W - W}{{{prev}[{W - 1}]}}}}, {prev}}}" if self.W > W else f"acc{j} + {prev}"
        return f"acc{j} + " + " + ".join(terms) if terms else prev

    # -- the product-then-sum forms ---------------------------------------------------------------
    def product(self, form: str, i: int, j: int) -> str:
        from ..products import csd_digits

        x, c, k, pw, name = f"xs{i}", f"c{i}_{j}", self.bits, self.pw, f"p{i}_{j}"
        rows = [(_pattern(v, k), int(self.levels[v + (1 << (k - 1))])) for v in range(-(1 << (k - 1)), 1 << (k - 1))]
        if form in ("multiply", "addsub") and not self.head:
            self.head.append(_case_function("lvl", k, self.lw, rows))
        if form == "multiply":
            return f"{x} * lvl({c})"
        if form == "table":  # the proofs' reference: one constant product per code, selected
            return " : ".join(f"{c} == {k}'d{p} ? {x} * {_const(v, self.lw)}" for p, v in rows[:-1]) + \
                f" : {x} * {_const(rows[-1][1], self.lw)}"
        if form == "addsub":
            self.body.append(f"  wire signed [{self.lw - 1}:0] l{i}_{j} = lvl({c});")
            return f"l{i}_{j} > 0 ? {x} : (l{i}_{j} < 0 ? -{x} : 0)"
        if form == "digits":
            digits = [csd_digits(v) for _, v in rows]
            cols = max(len(d) for d in digits)
            if not self.head:
                for col in range(cols):
                    sgn = [(p, d[col][0] if col < len(d) else 0) for (p, _), d in zip(rows, digits)]
                    exp = [(p, d[col][1] if col < len(d) else 0) for (p, _), d in zip(rows, digits)]
                    self.head.append(_case_function(f"sgn{col}", k, 2, sgn) + _case_function(f"exp{col}", k, 8, exp))
            terms = []
            for col in range(cols):
                self.body.append(f"  wire signed [1:0] s{name}_{col} = sgn{col}({c});")
                self.body.append(f"  wire signed [{pw - 1}:0] t{name}_{col} = {x} <<< exp{col}({c});")
                terms.append(f"(s{name}_{col} > 0 ? t{name}_{col} : (s{name}_{col} < 0 ? -t{name}_{col} : 0))")
            return " + ".join(terms)
        odd = 1 if np.array_equal(self.levels, 2 * np.arange(-(1 << (k - 1)), 1 << (k - 1)) + 1) else 0
        terms = ([x] if odd else []) + [f"({c}[{b}] ? ({x} <<< {b + odd}) : 0)" for b in range(k - 1)]
        return f"{' + '.join(terms) or '0'} - ({c}[{k - 1}] ? ({x} <<< {k - 1 + odd}) : 0)"

    def output(self, form: str, j: int) -> str:
        if form.startswith("select"):
            return self.select_sum(form, j)
        for i in range(self.m):
            self.body.append(f"  wire signed [{self.pw - 1}:0] p{i}_{j} = {self.product(form, i, j)};")
        return f"acc{j} + " + " + ".join(f"p{i}_{j}" for i in range(self.m))


def array_verilog(levels, bits: int, form: str, plan: SelectPlan | None = None, *, w: int = 8, m: int = 8,
                  n: int = 16, codes=None, top: str = "dot", acc_width: int | None = None) -> str:
    """The slot array in ``form`` (``plan`` for the select forms; ``codes``: m x n constants;
    ``acc_width``: the accumulators' width when wider than the m products need)."""
    if form not in FORMS:
        raise ValueError(f"unknown form {form!r}, expected one of {FORMS}")
    if form.startswith("select") and plan is None:
        raise ValueError(f"form {form!r} needs a select plan")
    return ArrayWriter(levels, bits, w, m, n, plan, codes, acc_width).module(form, top)


def array_luts(levels, bits: int, form: str, plan: SelectPlan | None = None, *, w: int = 8, m: int = 8,
               n: int = 16, constant: bool = False, seed: int = 0, acc_width: int | None = None) -> dict:
    """yosys counts of the array and LUTs per MAC; ``constant``: codes drawn uniformly (seeded)."""
    codes = None
    if constant:
        half = 1 << (bits - 1)
        codes = np.random.default_rng(seed).integers(-half, half, size=(m, n))
    r = yosys_luts(array_verilog(levels, bits, form, plan, w=w, m=m, n=n, codes=codes, acc_width=acc_width))
    return {**r, "macs": m * n, "lut_per_mac": r["luts"] / (m * n)}


def prove_array_form(levels, bits: int, form: str, plan: SelectPlan | None = None, *, w: int = 6, m: int = 1,
                     n: int = 2, gold_levels=None, timeout: float = 1800, acc_width: int | None = None) -> bool:
    """yosys SAT: the array in ``form`` equals acc_j + sum_i x_i * levels[c_ij] (``gold_levels``
    when given: a check that a wrong reference is caught) for every input, code and accumulator.

    The default instance (one input, two outputs sharing its multiples, every accumulator value)
    proves one stage of the array: each output's sum is that stage applied once per input, so the
    stage proof covers any m (m = 2 is proven too, on small k: SAT on longer chains of differently
    associated adders takes minutes)."""
    writer = ArrayWriter(levels, bits, w, m, n, plan, acc_width=acc_width)
    gold = ArrayWriter(levels if gold_levels is None else gold_levels, bits, w, m, n, None)
    gold.W = gold.pw = writer.W  # the same modulus
    return yosys_equivalent(writer.module(form, "gate"), gold.module("table", "gold"), PROOF_PREP, timeout)
