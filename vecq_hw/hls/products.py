"""The HLS product x * levels[c] of a weighted layer, chosen in Python from its level table.

One C++ class per product kind (``hls_templates/nnet_vecq_products.h``), bound in the layer's config
struct by ``template <class x_T, class C> using product = nnet::<class><x_T, C>;`` plus the
constant tables that class reads:

* the named tables ('odd': d = 2c + 1, 'int': d = c): ``vecq_product_named``, the radix-4
  select form of :mod:`.select` (x and 3x once per input, one select and add/sub per two code
  bits); k >= 5 bound to a DSP (``multiplier: dsp``): one multiply on the DSP;
* any other table, by :func:`vecq_hw.ir.product_kind`: 'addsub' (every level -1/0/+1):
  ``vecq_product_addsub``; from k = 3, a table with a select plan (:func:`.select.find_plan`:
  ESB at k = b - 2, linear tables): 'select', ``vecq_product_select`` with the plan's tables
  (issue 21: a signed-digit column's shift and sign then depend on more code bits than one LUT
  takes beside the accumulator bit, a select group on two); 'shift_add' (every level <= 2 signed
  powers of two): ``vecq_product_shift_add`` with the canonical signed digits as two ROMs;
  'multiply': ``vecq_product_rom``, a multiplier by the level read from a constant ROM.

``term`` is the exact type of one product (and of each shifted copy in a shift-add).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import ir
from ..fixed import FixedType
from .select import SelectPlan, find_plan, named_plan

CPP_CLASSES = {"named": "vecq_product_named", "addsub": "vecq_product_addsub",
               "shift_add": "vecq_product_shift_add", "multiply": "vecq_product_rom",
               "shift_add_n": "vecq_product_shift_add_n",  # issue 14 (ESB): <= k/2 shifted copies
               "select": "vecq_product_select"}  # issue 21: one select and add/sub per code-bit group
#: custom tables from this many bits get a select plan when they have one (see the module docstring)
SELECT_FROM_BITS = 3


@dataclass(frozen=True)
class Product:
    kind: str  # a key of CPP_CLASSES
    term: FixedType  # exact type of x * d for every code
    config: str  # C++ lines for the config struct (the product binding and its tables)


def csd_digits(v: int) -> list[tuple[int, int]]:
    """(sign, exponent) of v's canonical signed-digit form, lowest first: v = sum s * 2**e."""
    out, e, v = [], 0, int(v)
    while v:
        if v & 1:
            s = 1 if (v & 3) == 1 else -1  # ...01 -> +1, ...11 -> -1 (and carry)
            out.append((s, e))
            v -= s
        v >>= 1
        e += 1
    return out


def _named_term(in_type: FixedType, bits: int) -> FixedType:
    """The released kernels' term type: |d| <= 2**bits - 1 (unchanged, so is their cost)."""
    extra = bits + 2
    return FixedType(width=min(in_type.width + extra, 64), integer=in_type.integer + extra, signed=True)


def _bounded_term(in_type: FixedType, magnitude: int) -> FixedType:
    """Exact signed type of x * m for every |m| <= magnitude and every x of in_type."""
    lo = min(in_type.min_mantissa * magnitude, -in_type.max_mantissa * magnitude, 0)
    hi = max(in_type.max_mantissa * magnitude, -in_type.min_mantissa * magnitude, 0)
    w = ir.signed_width_for(lo, hi)
    return FixedType(width=w, integer=w - in_type.frac, signed=True)


def _rom(name: str, values, ctype: str = "int") -> str:
    vals = ", ".join(str(int(v)) for v in values)
    return (f"    static {ctype} {name}(unsigned i) {{\n"
            f"        static const {ctype} t[{len(values)}] = {{{vals}}};\n"
            f"        return t[i];\n    }}\n")


def _rom2(name: str, rows, ctype: str, cols: int = 2) -> str:
    vals = ", ".join("{" + ", ".join(str(int(v)) for v in r) + "}" for r in rows)
    return (f"    static {ctype} {name}(unsigned i, unsigned k) {{\n"
            f"        static const {ctype} t[{len(rows)}][{cols}] = {{{vals}}};\n"
            f"        return t[i][k];\n    }}\n")


def _binding(kind: str) -> str:
    return f"    template <class x_T, class C> using product = nnet::{CPP_CLASSES[kind]}<x_T, C>;\n"


def kind_and_plan(levels, bits: int, multiplier: str = "auto") -> tuple[str, SelectPlan | None]:
    """The product kind :func:`choose_product` binds for this table and the select plan its C++
    class computes (None: no select form; 'named' with a DSP binding at k >= 5)."""
    levels = np.asarray(levels, dtype=np.int64)
    name = ir.levels_name(levels, int(bits))
    if name is not None:
        return "named", (None if multiplier == "dsp" and bits >= 5 else named_plan(name, int(bits)))
    kind = ir.product_kind(levels)
    plan = find_plan(levels, int(bits)) if kind != "addsub" and bits >= SELECT_FROM_BITS else None
    return ("select", plan) if plan is not None else (kind, None)


def choose_product(layer: ir.Weighted, in_type: FixedType) -> Product:
    """The product for ``layer``'s level table on inputs of ``in_type``."""
    levels = np.asarray(layer.levels, dtype=np.int64)
    kind, plan = kind_and_plan(levels, int(layer.bits), layer.multiplier)
    if kind == "named":
        return Product("named", _named_term(in_type, int(layer.bits)), _binding("named"))
    mag = int(np.max(np.abs(levels)))
    if kind == "addsub":
        return Product(kind, _bounded_term(in_type, 1), _binding(kind) + _rom("level", levels))
    if kind == "select":
        return Product("select", _bounded_term(in_type, mag), _binding("select") + select_config(plan))
    if kind == "shift_add":
        digits = [csd_digits(v) for v in levels]
        rows_s = [[s for s, _ in d] + [0] * (2 - len(d)) for d in digits]
        rows_e = [[e for _, e in d] + [0] * (2 - len(d)) for d in digits]
        # each shifted copy x * 2**e must be exact in term_t too (CSD may overshoot |d|: 7 = 8 - 1)
        top = max([mag] + [1 << e for d in digits for _, e in d])
        return Product(kind, _bounded_term(in_type, top),
                       _binding(kind) + _rom2("digit_sign", rows_s, "int") + _rom2("digit_shift", rows_e, "unsigned"))
    if kind == "shift_add_n":  # issue 14: as shift_add, with n_terms digit columns
        digits = [csd_digits(v) for v in levels]
        n = max(len(d) for d in digits)
        rows_s = [[s for s, _ in d] + [0] * (n - len(d)) for d in digits]
        rows_e = [[e for _, e in d] + [0] * (n - len(d)) for d in digits]
        top = max([mag] + [1 << e for d in digits for _, e in d])
        return Product(kind, _bounded_term(in_type, top),
                       _binding(kind) + f"    static const unsigned n_terms = {n};\n"
                       + _rom2("digit_sign", rows_s, "int", n) + _rom2("digit_shift", rows_e, "unsigned", n))
    width = ir.level_width(levels)
    return Product("multiply", _bounded_term(in_type, mag),
                   _binding("multiply") + f"    typedef ap_int<{width}> level_t;\n" + _rom("level", levels))


def select_config(plan: SelectPlan) -> str:
    """The config-struct tables vecq_product_select reads (nnet_vecq_select.h)."""
    mults = plan.multiples
    digits = [csd_digits(m) for m in mults]
    nd = max(len(d) for d in digits)
    n_groups = len(plan.groups)

    def table(col):  # per group, per value of its bits (one-bit groups: 2 of the 4 columns)
        return [[col(*pk) for pk in plan.picks(t)] + [0] * (4 - len(plan.picks(t))) for t in range(n_groups)]

    return (f"    static const unsigned n_mults = {len(mults)};\n"
            f"    static const unsigned n_mult_digits = {nd};\n"
            + _rom2("mult_sign", [[s for s, _ in d] + [0] * (nd - len(d)) for d in digits], "int", nd)
            + _rom2("mult_shift", [[e for _, e in d] + [0] * (nd - len(d)) for d in digits], "unsigned", nd)
            + f"    static const unsigned n_groups = {n_groups};\n"
            + _rom("group_size", [len(g) for g in plan.groups], "unsigned")
            + _rom2("group_bit", [list(g) + [g[0]] * (2 - len(g)) for g in plan.groups], "unsigned")
            + _rom("group_shift", [plan.shift(t) for t in range(n_groups)], "unsigned")
            + _rom2("pick", table(lambda o, s, n: mults.index(o) if o else len(mults)), "unsigned", 4)
            + _rom2("pick_shift", table(lambda o, s, n: s), "unsigned", 4)
            + _rom2("negate", [[int(n) for n in plan.negates(t)] + [0] * (4 - len(plan.picks(t)))
                               for t in range(n_groups)], "int", 4))
