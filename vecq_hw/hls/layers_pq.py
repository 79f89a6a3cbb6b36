"""hls4ml layer classes and templates of the PQ kinds: ``VecQPqDense``, ``VecQPqConv2D`` (kernel
``hls_templates/nnet_vecq_pq.h``), registered with :func:`.registration.register_hls_layer` by
:func:`register` (:class:`.mappings_pq.PqMapping` calls it before a graph is built).

Weights: ``idx`` (the index ROM: ap_uint<index_bits>, (n_blocks, n_out) in C order),
``codeword`` (the codebook ROM: ap_int codeword entries, (K, d) in C order), ``scale`` and
``bias``, every literal exact. The config struct carries the block geometry, the fan-in view
(PyTorch's block order, see :mod:`vecq_hw.ir.pq`) and the form the mapping chose.
"""

from __future__ import annotations

from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer

from .layers import CONV_GEOMETRY, CONV_GEOMETRY_CONFIG, TEMPLATE_DIR, add_integer_weight, add_scale_bias
from .registration import register_hls_layer
from .types import precision_of

HEADER = TEMPLATE_DIR / "nnet_vecq_pq.h"


class _VecQPq(Layer):
    _expected_attributes = [Attribute(n) for n in ("block", "codewords", "n_blocks", "view_rows", "view_cols",
                                                   "view_chan")] + \
        [Attribute("codebook_first", value_type=str), WeightAttribute("idx"), WeightAttribute("codeword"),
         WeightAttribute("scale"), WeightAttribute("bias"), TypeAttribute("idx"), TypeAttribute("codeword"),
         TypeAttribute("scale"), TypeAttribute("bias"), TypeAttribute("part"), TypeAttribute("accum")]
    out_shape_attrs: tuple[str, ...] = ()

    def initialize(self):
        types = self.get_attr("vecq_types")
        self.add_output_variable([self.get_attr(a) for a in self.out_shape_attrs], precision=precision_of(types["out"]))
        for name, var, key in (("idx", "i{index}", "indices_data"), ("codeword", "k{index}", "codebook_data")):
            add_integer_weight(self, name, var, precision_of(types[name]), self.get_attr(key))
        add_scale_bias(self, types)


class VecQPqDense(_VecQPq):
    _expected_attributes = [Attribute("n_in"), Attribute("n_out")]
    out_shape_attrs = ("n_out",)


class VecQPqConv2D(_VecQPq):
    _expected_attributes = [Attribute(n) for n in CONV_GEOMETRY]
    out_shape_attrs = ("out_height", "out_width", "n_filt")


_common_config = """    static const unsigned block = {block}, codewords = {codewords}, n_blocks = {n_blocks};
    static const unsigned view_rows = {view_rows}, view_cols = {view_cols}, view_chan = {view_chan};
    static const bool codebook_first = {codebook_first};
    static const unsigned reuse_factor = {reuse};
    typedef {idx_t.name} index_t;
    typedef {codeword_t.name} codeword_t;
    typedef {part_t.name} part_t;
    typedef {accum_t.name} accum_t;
    typedef {scale_t.name} scale_t;
    typedef {bias_t.name} bias_t;
"""

CONFIG_TEMPLATES = {
    VecQPqDense: "struct config{index} : nnet::vecq_pq_dense_config {{\n"
                 "    static const unsigned n_in = {n_in}, n_out = {n_out};\n" + _common_config + "}};\n",
    VecQPqConv2D: "struct config{index} : nnet::vecq_pq_conv2d_config {{\n"
                  "    static const unsigned n_out = {n_filt};\n" + CONV_GEOMETRY_CONFIG + _common_config + "}};\n",
}
_call = "<{input_t}, {output_t}, {config}>({input}, {output}, {i}, {k}, {s}, {b});"
FUNCTION_TEMPLATES = {VecQPqDense: "nnet::vecq_pq_dense" + _call, VecQPqConv2D: "nnet::vecq_pq_conv2d" + _call}


def _params(node) -> dict:
    return {key: node.get_weights(name).name for key, name in
            (("i", "idx"), ("k", "codeword"), ("s", "scale"), ("b", "bias"))}


def register() -> None:
    """Register both classes, their templates and the kernel header with hls4ml (idempotent)."""
    for cls, config in CONFIG_TEMPLATES.items():
        register_hls_layer(cls, config, FUNCTION_TEMPLATES[cls], [HEADER], params=_params)
