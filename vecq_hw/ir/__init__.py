"""The integer model: the hub every downstream step reads.

A :class:`Model` is a DAG of layer records (:mod:`.graph`), one class per layer kind
(:mod:`.layers`); weights are k-bit codes with a table of integer levels (:mod:`.levels`).
Everything in it is an integer or a fixed-point type; the float PyTorch model is gone by the
time one of these exists. On disk it is a folder of YAML + integer tables (:mod:`.io`,
docs/FORMAT.md). The simulator (``vecq_hw.sim``) defines what each kind computes; the back
ends (``vecq_hw.hls``, ``vecq_hw.rtl``) mirror it. Nothing here imports a back end, the
simulator, the exporter or torch.
"""

from __future__ import annotations

from .arith import MAX_EXACT_WIDTH, accumulator_type, aligned_sum_type, code_range, signed_width_for
from .graph import Model, Node, find_cycle
from .layers import (
    LAYER_KINDS,
    MULTIPLIERS,
    Add,
    AvgPool2D,
    Conv2D,
    Dense,
    DepthwiseConv2D,
    Flatten,
    GlobalAvgPool2D,
    Input,
    Layer,
    MaxPool2D,
    Pool2D,
    ReLU,
    Weighted,
    fan_in,
    register_kind,
)
from .gnn import GCNAggregate, NodeDense
from .levels import NAMED_LEVELS, level_width, levels_name, multipliers, named_levels, product_kind
from .alq import AlqConv2D, AlqDense, AlqWeighted  # ALQ's native form: registers alq_dense, alq_conv2d
from .pq import PqConv2D, PqDense, PqWeighted  # product quantisation: registers pq_dense, pq_conv2d

#: the two named level tables (the ``encoding`` of format v1)
ENCODINGS = NAMED_LEVELS

__all__ = [
    "Add", "AlqConv2D", "AlqDense", "AlqWeighted", "AvgPool2D", "GCNAggregate", "NodeDense",
    "Conv2D", "Dense", "DepthwiseConv2D", "ENCODINGS", "Flatten", "GlobalAvgPool2D",
    "Input", "LAYER_KINDS", "Layer", "MAX_EXACT_WIDTH", "MULTIPLIERS", "MaxPool2D", "Model", "NAMED_LEVELS",
    "Node", "Pool2D", "PqConv2D", "PqDense", "PqWeighted", "ReLU", "Weighted", "accumulator_type", "aligned_sum_type", "code_range", "fan_in",
    "find_cycle", "level_width", "levels_name", "multipliers", "named_levels", "product_kind",
    "register_kind", "signed_width_for",
]
