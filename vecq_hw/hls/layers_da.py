"""hls4ml layer classes for layers built with distributed arithmetic (:mod:`.da`, ``nnet_vecq_da.h``).

``VecQDenseDA`` and ``VecQConvDA`` (conv2d and depthwise: the depthwise matrix is
block-diagonal) share one config template and one kernel (a dense layer is a 1 x 1 filter on a
1 x 1 image); they differ only in their output's shape. They carry no weight table: their constants live in the
adder graph, emitted into the config struct as ``da_product`` (so ``parameters.h`` holds the
layer's generated C++ and the C simulation's build cache keys on it). They keep the exact
per-channel scale and bias tables of the other weighted layers. Registered by :func:`register`
through :func:`.registration.register_hls_layer`.
"""

from __future__ import annotations

from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer

from .layers import CONV_GEOMETRY, CONV_GEOMETRY_CONFIG, TEMPLATE_DIR, add_output, add_scale_bias
from .registration import register_hls_layer

HEADER = TEMPLATE_DIR / "nnet_vecq_da.h"


class _VecQDA(Layer):
    _expected_attributes = [Attribute("da_product", value_type=str), WeightAttribute("scale"),
                            WeightAttribute("bias"), TypeAttribute("scale"), TypeAttribute("bias"),
                            TypeAttribute("accum")] + [Attribute(n) for n in CONV_GEOMETRY]
    out_shape_attrs: tuple[str, ...] = ()

    def initialize(self):
        add_scale_bias(self, add_output(self))


class VecQDenseDA(_VecQDA):
    """A dense layer, as the kernel sees it: a 1 x 1 filter on a 1 x 1 image of n_in channels."""

    out_shape_attrs = ("n_filt",)


class VecQConvDA(_VecQDA):
    out_shape_attrs = ("out_height", "out_width", "n_filt")


_CONFIG = ("struct config{index} : nnet::vecq_conv2d_config {{\n"
           "    static const unsigned n_out = {out_height} * {out_width} * {n_filt};\n"
           + CONV_GEOMETRY_CONFIG + """    static const unsigned reuse_factor = 1;
    typedef {accum_t.name} accum_t;
    typedef {scale_t.name} scale_t;
    typedef {bias_t.name} bias_t;
{da_product}}};
""")
_CALL = "nnet::vecq_da_conv2d<{input_t}, {output_t}, {config}>({input}, {output}, {s}, {b});"


def _params(node) -> dict:
    return {"s": node.get_weights("scale").name, "b": node.get_weights("bias").name}


def register() -> None:
    """Register the distributed-arithmetic layers with hls4ml (idempotent)."""
    for cls in (VecQDenseDA, VecQConvDA):
        register_hls_layer(cls, _CONFIG, _CALL, [HEADER], params=_params)


__all__ = ["VecQConvDA", "VecQDenseDA", "register"]
