"""``trace_model`` with every layer family's RTL ops registered: the built-in kinds' ops live in
:mod:`.trace`; a family's own op module (which imports ``.trace`` for ``rtl_op``) is imported
here, so ``vecq_hw.rtl.trace_model`` and ``rtl.write`` see it without an import by the caller."""

from __future__ import annotations

from . import alq  # noqa: F401  (alq_dense, alq_conv2d)
from . import pq  # noqa: F401  (pq_dense, pq_conv2d)
from . import gnn  # noqa: F401  (node_dense, gcn_aggregate)
from .trace import estimate_adder_bits, trace_model

__all__ = ["estimate_adder_bits", "trace_model"]
