"""hls4ml layer classes and templates of ALQ's native kinds: ``VecQAlqDense``, ``VecQAlqConv2D``
(kernel ``hls_templates/nnet_vecq_alq.h``), registered with :func:`.registration.register_hls_layer`
by :func:`register` (:class:`.mappings_alq.AlqMapping` calls it before a graph is built).

Weights: ``planes`` (ap_uint<1> signs, 1 = +1, the planes' C order), ``alpha`` (one integer per
plane column), ``scale`` and ``bias``, every literal exact. The config struct carries each
channel's first column and basis count and each column's count of -1 signs as constant tables.
"""

from __future__ import annotations

from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer

from .layers import CONV_GEOMETRY, CONV_GEOMETRY_CONFIG, TEMPLATE_DIR, add_integer_weight, add_scale_bias
from .registration import register_hls_layer
from .types import precision_of

HEADER = TEMPLATE_DIR / "nnet_vecq_alq.h"


class _VecQAlq(Layer):
    _expected_attributes = [Attribute("n_basis"), Attribute("max_bases"), Attribute("tables", value_type=str),
                            WeightAttribute("weight"), WeightAttribute("alpha"), WeightAttribute("scale"),
                            WeightAttribute("bias"), TypeAttribute("weight"), TypeAttribute("alpha"),
                            TypeAttribute("scale"), TypeAttribute("bias"), TypeAttribute("basis"),
                            TypeAttribute("accum")]
    out_shape_attrs: tuple[str, ...] = ()

    def initialize(self):
        types = self.get_attr("vecq_types")
        self.add_output_variable([self.get_attr(a) for a in self.out_shape_attrs], precision=precision_of(types["out"]))
        for name, var, key in (("weight", "w{index}", "planes_data"), ("alpha", "a{index}", "alpha_data")):
            add_integer_weight(self, name, var, precision_of(types[name]), self.get_attr(key))
        add_scale_bias(self, types)


class VecQAlqDense(_VecQAlq):
    _expected_attributes = [Attribute("n_in"), Attribute("n_out")]
    out_shape_attrs = ("n_out",)


class VecQAlqConv2D(_VecQAlq):
    _expected_attributes = [Attribute(n) for n in CONV_GEOMETRY]
    out_shape_attrs = ("out_height", "out_width", "n_filt")


_common_config = """    static const unsigned n_basis = {n_basis}, max_bases = {max_bases};
    static const unsigned reuse_factor = {reuse};
    typedef {weight_t.name} weight_t;
    typedef {basis_t.name} basis_t;
    typedef {accum_t.name} accum_t;
    typedef {alpha_t.name} alpha_t;
    typedef {scale_t.name} scale_t;
    typedef {bias_t.name} bias_t;
{tables}"""

CONFIG_TEMPLATES = {
    VecQAlqDense: "struct config{index} : nnet::vecq_alq_dense_config {{\n"
                  "    static const unsigned n_in = {n_in}, n_out = {n_out};\n" + _common_config + "}};\n",
    VecQAlqConv2D: "struct config{index} : nnet::vecq_alq_conv2d_config {{\n"
                   "    static const unsigned n_out = {n_filt};\n" + CONV_GEOMETRY_CONFIG + _common_config + "}};\n",
}
_call = "<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {a}, {s}, {b});"
FUNCTION_TEMPLATES = {VecQAlqDense: "nnet::vecq_alq_dense" + _call, VecQAlqConv2D: "nnet::vecq_alq_conv2d" + _call}


def _params(node) -> dict:
    return {key: node.get_weights(name).name for key, name in
            (("w", "weight"), ("a", "alpha"), ("s", "scale"), ("b", "bias"))}


def register() -> None:
    """Register both classes, their templates and the kernel header with hls4ml (idempotent)."""
    for cls, config in CONFIG_TEMPLATES.items():
        register_hls_layer(cls, config, FUNCTION_TEMPLATES[cls], [HEADER], params=_params)
