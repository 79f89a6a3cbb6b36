"""hls4ml layer classes and templates of the graph layers (``nnet_vecq_gnn.h``), registered through
:func:`.registration.register_hls_layer` by :func:`register`. Their types and tables come from
:mod:`.mappings_gnn`; every table is written with exact literals (:class:`.layers.ExactWeightVariable`).
"""

from __future__ import annotations

import numpy as np
from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer

from .layers import (CONFIG_TEMPLATES, TEMPLATE_DIR, ExactWeightVariable, VecQDense, _VecQWeighted, _weighted_params,
                     exact_decimal)
from .registration import register_hls_layer
from .types import precision_of

HEADER = "nnet_vecq_gnn.h"
#: the aggregation's tables: hls4ml weight name -> C variable prefix (the config's <name>_t types)
GCN_TABLES = {"ptr": "gp", "nbr": "gi", "bucket": "gb", "slot": "gs", "pre": "gpre", "post": "gpost",
              "bias": "gbias"}
_GCN_TYPES = ("u0", "u1", "u2", "u3", "store", "sum")


class VecQNodeDense(_VecQWeighted):
    kernel_headers = (HEADER,)
    _expected_attributes = [Attribute("n_in"), Attribute("n_out"), Attribute("n_nodes")]
    out_shape_attrs = ("n_nodes", "n_out")


class VecQGcnAggregate(Layer):
    kernel_headers = (HEADER,)
    _expected_attributes = ([Attribute(n) for n in ("n_nodes", "n_feat", "n_edges", "rows0", "rows1", "rows2", "rows3")]
                            + [WeightAttribute(t) for t in GCN_TABLES] + [TypeAttribute(t) for t in GCN_TABLES]
                            + [TypeAttribute(t) for t in _GCN_TYPES])

    def initialize(self):
        self.add_output_variable([self.get_attr("n_nodes"), self.get_attr("n_feat")],
                                 precision=precision_of(self.get_attr("vecq_out_type")))
        for name, (mantissas, t) in self.get_attr("vecq_tables").items():
            frac = t.frac if t.kind == "fixed" else 0
            m = [int(v) for v in np.asarray(mantissas).ravel()]
            data = np.array([v * 2.0**-frac for v in m], dtype=np.float64)
            var = ExactWeightVariable(GCN_TABLES[name] + "{index}", type_name=name + "{index}_t",
                                      precision=precision_of(t), data=data,
                                      exact_strings=[exact_decimal(v, frac) for v in m], index=self.index)
            var.data_unquantized = data
            self.set_attr(name, var)


NODE_DENSE_CONFIG = CONFIG_TEMPLATES[VecQDense].replace(
    "nnet::vecq_dense_config {{\n", "nnet::vecq_node_dense_config {{\n    static const unsigned n_nodes = {n_nodes};\n")
#: the config's types: C name in the kernel -> the hls4ml type attribute pinned by the mapping
_CONFIG_TYPES = {"u0": "u0", "u1": "u1", "u2": "u2", "u3": "u3", "store": "store", "sum": "sum", "pre": "pre",
                 "post": "post", "bias": "bias", "ptr": "ptr", "index": "nbr", "slot": "slot", "bucket": "bucket"}
GCN_CONFIG = ("struct config{index} : nnet::vecq_gcn_aggregate_config {{\n"
              "    static const unsigned n_nodes = {n_nodes}, n_feat = {n_feat}, n_edges = {n_edges};\n"
              "    static const unsigned rows0 = {rows0}, rows1 = {rows1}, rows2 = {rows2}, rows3 = {rows3};\n"
              + "".join(f"    typedef {{{attr}_t.name}} {name}_t;\n" for name, attr in _CONFIG_TYPES.items())
              + "}};\n")
GCN_CALL = ("nnet::vecq_gcn_aggregate<{input_t}, {output_t}, {config}>({input}, {output}, "
            + ", ".join("{" + t + "_var}" for t in GCN_TABLES) + ");")


def _gcn_params(node) -> dict:
    return {f"{t}_var": node.get_weights(t).name for t in GCN_TABLES}


def register() -> None:
    """Register the graph layers with hls4ml (idempotent)."""
    register_hls_layer(VecQNodeDense, NODE_DENSE_CONFIG,
                       "nnet::vecq_node_dense<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {s}, {b});",
                       [TEMPLATE_DIR / HEADER], params=_weighted_params)
    register_hls_layer(VecQGcnAggregate, GCN_CONFIG, GCN_CALL, [TEMPLATE_DIR / HEADER], params=_gcn_params)
