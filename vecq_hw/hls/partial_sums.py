"""Per-cycle partial sums of a folded layer's slot array (issue 21).

A folded cycle gives each of the layer's n outputs ``block / n`` products (when the block is a
whole number of input groups: every input it reads feeds all n outputs). Chained into the
accumulator, each product's adder is as wide as the accumulator W (the fan-in's bound). Summed
first among themselves, the cycle's products of one output need only the width of ``block / n``
products (``psum_t``), and the cycle then adds that sum into the accumulator once: per slot one
narrow adder instead of a W-bit one, plus per output one W-bit adder per cycle.

Exact: psum_t has x's fraction bits and holds block / n x max|x| x max|level| (the true partial
sum of the cycle lies inside), and wraps like accum_t (nnet_vecq_fold.h). Used by the kernel
(``CONFIG_T::psum``, the config lines :func:`psum_config` writes) and priced by the estimator
(hls/mappings.py) from the same decision, :func:`partial_sum_width`, taken where it is cheaper
by the estimator's select-array model (one LUT per adder bit).
"""

from __future__ import annotations

import numpy as np

from .. import ir
from ..fixed import FixedType
from .select import SelectPlan, adder_luts


def sum_width(terms: int, levels, in_type: FixedType) -> int:
    """Signed width holding any sum of ``terms`` products x * level (worst case over codes)."""
    bound = int(terms) * int(np.max(np.abs(levels))) * max(-in_type.min_mantissa, in_type.max_mantissa)
    return ir.signed_width_for(-bound, bound)


def partial_sum_width(plan: SelectPlan | None, levels, in_type: FixedType, products: int, group: int, n_acc: int,
                      reuse: int) -> int | None:
    """psum_t's width for a folded select-form layer (P = ``products`` per input, ``group``
    consecutive products per input, ``n_acc`` outputs), or None: no partial sums (R = 1, no select
    plan, a block that is not whole input groups feeding every output, < 2 products per output a
    cycle, or not cheaper)."""
    block = products // reuse if reuse > 1 else 0
    if plan is None or not block or group != n_acc or block % n_acc:
        return None
    per = block // n_acc
    if per < 2:
        return None
    wide = sum_width(products // n_acc, levels, in_type)
    narrow = sum_width(per, levels, in_type)
    cheaper = block * adder_luts(plan, narrow) + n_acc * wide < block * adder_luts(plan, wide)
    return narrow if cheaper else None


def psum_type(width: int, in_type: FixedType) -> FixedType:
    return FixedType(width=int(width), integer=int(width) - in_type.frac, signed=True)


def psum_config(width: int | None, in_type: FixedType) -> str:
    """The config-struct lines turning the kernel's partial sums on (nothing when off)."""
    if width is None:
        return ""
    return f"    static const bool psum = true;\n    typedef {psum_type(width, in_type)} psum_t;\n"
