"""hls4ml layer classes and templates for our kernels (hls4ml's extension API).

``VecQDense``, ``VecQConv2D``, ``VecQDepthwiseConv2D`` (weighted, the level-table product bound
in their config), ``VecQGlobalAvgPool2D`` and ``VecQPool2D`` (any stride), each naming its own
C++ header in ``hls_templates/`` (``kernel_headers``), are registered with hls4ml by
:func:`register` through :func:`.registration.register_hls_layer`. hls4ml's own layers serve
for ReLU, pooling with stride == size, add and flatten. Which class a layer kind becomes, and
every type it is pinned to, is decided in :mod:`.mappings`; this module only declares classes.
"""

from __future__ import annotations

import numpy as np
from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer
from hls4ml.model.types import WeightVariable

from .. import resources
from .registration import register_hls_layer
from .types import precision_of

#: our C++ kernels and file templates
TEMPLATE_DIR = resources.TEMPLATE_DIR
MULTIPLIER_CODES = {"auto": 0, "dsp": 1, "fabric": 2}
#: 'custom' tables do not read CONFIG_T::encoding (their product class reads the level ROM)
ENCODING_CODES = {"odd": 0, "int": 1, "custom": 2}


class ExactWeightVariable(WeightVariable):
    """A weight table whose C++ literals are exact.

    ``data`` holds the values (for hls4ml's min/max comments); ``exact_strings`` holds the
    literal written for each element: integer codes, or the exact decimal expansion of a
    fixed-point mantissa (m * 2**-F has exactly F decimal digits).
    """

    def __init__(self, var_name, type_name, precision, data, exact_strings, **kwargs):
        super().__init__(var_name, type_name, precision, data, **kwargs)
        self.exact_strings = list(exact_strings)
        self._pos = 0

    def __iter__(self):
        self._pos = 0
        return self

    def __next__(self):
        if self._pos >= len(self.exact_strings):
            raise StopIteration
        self._pos += 1
        return self.exact_strings[self._pos - 1]

    next = __next__


def exact_decimal(mantissa: int, frac: int) -> str:
    """Exact decimal spelling of mantissa * 2**-frac (any width, no float on the way)."""
    m = int(mantissa)
    if frac <= 0:
        return str(m << -frac)
    neg = m < 0
    num = abs(m) * 5**frac  # value = num / 10**frac
    digits = str(num).rjust(frac + 1, "0")
    text = digits[:-frac] + "." + digits[-frac:]
    return ("-" if neg else "") + text


class _VecQWeighted(Layer):
    """A weighted layer. Its code table ('weight', declared by each concrete class) is in the
    design; a ``streamed`` layer has none: it reads its codes over AXI (hls/offchip.py)."""

    _expected_attributes = [
        Attribute("bits"),
        Attribute("encoding", value_type=str),
        Attribute("multiplier", value_type=str),
        Attribute("product_config", value_type=str),
        WeightAttribute("scale"),
        WeightAttribute("bias"),
        TypeAttribute("weight"),
        TypeAttribute("scale"),
        TypeAttribute("bias"),
        TypeAttribute("accum"),
        TypeAttribute("term"),
    ]
    #: attribute names giving the output shape
    out_shape_attrs: tuple[str, ...] = ()
    streamed = False

    def initialize(self):
        types = add_output(self)
        if not self.streamed:
            add_integer_weight(self, "weight", "w{index}", precision_of(types["weight"]), self.get_attr("codes_data"))
        add_scale_bias(self, types)


def add_exact_weight(layer: Layer, name: str, var_name: str, precision, data, strings) -> None:
    """Set ``layer``'s weight attribute ``name`` to a table written with the exact ``strings``."""
    var = ExactWeightVariable(var_name, type_name=name + "{index}_t", precision=precision, data=data,
                              exact_strings=strings, index=layer.index)
    var.data_unquantized = data
    layer.set_attr(name, var)


def add_integer_weight(layer: Layer, name: str, var_name: str, precision, values) -> None:
    """A table of integers (codes, signs, alphas), each written as itself."""
    ints = np.asarray(values, dtype=np.int64)
    add_exact_weight(layer, name, var_name, precision, ints.astype(np.float64), [str(int(v)) for v in ints.ravel()])


def add_scale_bias(layer: Layer, types: dict) -> None:
    """The per-channel scale and bias ('s{index}', 'b{index}'), from the layer's attributes
    '<name>_mantissas' and '<name>_frac', each written as its exact decimal."""
    for name, var in (("scale", "s{index}"), ("bias", "b{index}")):
        mant = [int(m) for m in np.asarray(layer.get_attr(name + "_mantissas")).ravel()]
        frac = int(layer.get_attr(name + "_frac"))
        values = np.array([m * 2.0**-frac for m in mant], dtype=np.float64)
        add_exact_weight(layer, name, var, precision_of(types[name]), values, [exact_decimal(m, frac) for m in mant])


def add_output(layer: Layer) -> dict:
    """A weighted layer's output variable (shape from its ``out_shape_attrs``); its ``vecq_types``."""
    types = layer.get_attr("vecq_types")
    layer.add_output_variable([layer.get_attr(a) for a in layer.out_shape_attrs], precision=precision_of(types["out"]))
    return types


CONV_GEOMETRY = ("in_height", "in_width", "n_chan", "out_height", "out_width", "n_filt", "filt_height",
                 "filt_width", "stride_height", "stride_width", "pad_top", "pad_bottom", "pad_left", "pad_right")


_DENSE_ATTRS = [Attribute("n_in"), Attribute("n_out")]
_CONV_ATTRS = [Attribute(n) for n in CONV_GEOMETRY]
#: what a streamed layer's reader needs (hls/offchip.py: StreamedLayer)
_STREAM_ATTRS = [Attribute(n) for n in ("word_bits", "words", "passes", "cached")]


class VecQDense(_VecQWeighted):
    kernel_headers = ("nnet_vecq_dense.h",)
    _expected_attributes = _DENSE_ATTRS + [WeightAttribute("weight")]
    out_shape_attrs = ("n_out",)


class VecQConv2D(_VecQWeighted):
    kernel_headers = ("nnet_vecq_conv.h",)
    _expected_attributes = _CONV_ATTRS + [WeightAttribute("weight")]
    out_shape_attrs = ("out_height", "out_width", "n_filt")


class VecQDepthwiseConv2D(_VecQWeighted):
    kernel_headers = ("nnet_vecq_depthwise.h",)
    _expected_attributes = _CONV_ATTRS + [WeightAttribute("weight")]
    out_shape_attrs = ("out_height", "out_width", "n_chan")


class VecQDenseStreamed(_VecQWeighted):
    kernel_headers = ("nnet_vecq_streamed.h",)
    _expected_attributes = _DENSE_ATTRS + _STREAM_ATTRS
    out_shape_attrs = VecQDense.out_shape_attrs
    streamed = True


class VecQConv2DStreamed(_VecQWeighted):
    kernel_headers = ("nnet_vecq_streamed.h",)
    _expected_attributes = _CONV_ATTRS + _STREAM_ATTRS
    out_shape_attrs = VecQConv2D.out_shape_attrs
    streamed = True


class VecQDepthwiseConv2DStreamed(_VecQWeighted):
    kernel_headers = ("nnet_vecq_streamed.h",)
    _expected_attributes = _CONV_ATTRS + _STREAM_ATTRS
    out_shape_attrs = VecQDepthwiseConv2D.out_shape_attrs
    streamed = True


class VecQGlobalAvgPool2D(Layer):
    kernel_headers = ("nnet_vecq_global_pool.h",)
    _expected_attributes = [Attribute("n_pixels"), Attribute("n_chan"), Attribute("mult"), TypeAttribute("accum"),
                            TypeAttribute("mult")]

    def initialize(self):
        self.add_output_variable([self.get_attr("n_chan")], precision=precision_of(self.get_attr("vecq_out_type")))


class VecQPool2D(Layer):
    kernel_headers = ("nnet_vecq_pool.h",)
    _expected_attributes = [Attribute(n) for n in ("in_height", "in_width", "n_chan", "out_height", "out_width",
                                                   "pool_height", "pool_width", "stride_height", "stride_width",
                                                   "average", "log2_area")] + [TypeAttribute("accum")]

    def initialize(self):
        shape = [self.get_attr("out_height"), self.get_attr("out_width"), self.get_attr("n_chan")]
        self.add_output_variable(shape, precision=precision_of(self.get_attr("vecq_out_type")))


_common_config = """    static const unsigned bits = {bits};
    static const unsigned encoding = {encoding_code};
    static const unsigned multiplier = {multiplier_code};
    static const unsigned reuse_factor = {reuse};
    static const bool latency = {latency};
    typedef {weight_t.name} weight_t;
    typedef {term_t.name} term_t;
    typedef {accum_t.name} accum_t;
    typedef {scale_t.name} scale_t;
    typedef {bias_t.name} bias_t;
{product_config}"""

CONV_GEOMETRY_CONFIG = """    static const unsigned n_in = {in_height} * {in_width} * {n_chan};
    static const unsigned in_height = {in_height}, in_width = {in_width}, n_chan = {n_chan};
    static const unsigned out_height = {out_height}, out_width = {out_width}, n_filt = {n_filt};
    static const unsigned filt_height = {filt_height}, filt_width = {filt_width};
    static const unsigned stride_height = {stride_height}, stride_width = {stride_width};
    static const unsigned pad_top = {pad_top}, pad_bottom = {pad_bottom};
    static const unsigned pad_left = {pad_left}, pad_right = {pad_right};
"""

_stream_config = """    static const unsigned word_bits = {word_bits}, words = {words}, passes = {passes};
    static const bool cached = {cached_cpp};
    typedef ap_uint<{word_bits}> word_t;
"""

CONFIG_TEMPLATES = {
    VecQDense: "struct config{index} : nnet::vecq_dense_config {{\n"
               "    static const unsigned n_in = {n_in};\n    static const unsigned n_out = {n_out};\n"
               + _common_config + "}};\n",
    VecQConv2D: "struct config{index} : nnet::vecq_conv2d_config {{\n"
                "    static const unsigned n_out = {out_height} * {out_width} * {n_filt};\n"
                + CONV_GEOMETRY_CONFIG + _common_config + "}};\n",
    VecQDepthwiseConv2D: "struct config{index} : nnet::vecq_depthwise_config {{\n"
                         "    static const unsigned n_out = {out_height} * {out_width} * {n_chan};\n"
                         + CONV_GEOMETRY_CONFIG + _common_config + "}};\n",
    VecQDenseStreamed: "struct config{index} : nnet::vecq_dense_config {{\n"
                       "    static const unsigned n_in = {n_in};\n    static const unsigned n_out = {n_out};\n"
                       + _common_config + _stream_config + "}};\n",
    VecQConv2DStreamed: "struct config{index} : nnet::vecq_conv2d_config {{\n"
                        "    static const unsigned n_out = {out_height} * {out_width} * {n_filt};\n"
                        + CONV_GEOMETRY_CONFIG + _common_config + _stream_config + "}};\n",
    VecQDepthwiseConv2DStreamed: "struct config{index} : nnet::vecq_depthwise_config {{\n"
                                 "    static const unsigned n_out = {out_height} * {out_width} * {n_chan};\n"
                                 + CONV_GEOMETRY_CONFIG + _common_config + _stream_config + "}};\n",
    VecQGlobalAvgPool2D: """struct config{index} : nnet::vecq_global_pool_config {{
    static const unsigned n_pixels = {n_pixels}, n_chan = {n_chan};
    static const unsigned long long mult = {mult}ULL;
    static const unsigned reuse_factor = {reuse};
    typedef {accum_t.name} accum_t;
    typedef {mult_t.name} mult_t;
}};\n""",
    VecQPool2D: """struct config{index} : nnet::vecq_pool2d_config {{
    static const unsigned in_height = {in_height}, in_width = {in_width}, n_chan = {n_chan};
    static const unsigned out_height = {out_height}, out_width = {out_width};
    static const unsigned pool_height = {pool_height}, pool_width = {pool_width};
    static const unsigned stride_height = {stride_height}, stride_width = {stride_width};
    static const unsigned average = {average}, log2_area = {log2_area};
    static const unsigned reuse_factor = {reuse};
    typedef {accum_t.name} accum_t;
}};\n""",
}

_weighted_call = "<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {s}, {b});"
#: a streamed layer is two dataflow processes: the reader of its AXI port (vecq_wmem<index>, a
#: top-level argument: hls/offchip_project.py) and the layer, joined by a stream of AXI words
_streamed_call = "\n    ".join([
    "hls::stream<config{index}::word_t> vecq_wstream{index}(\"vecq_wstream{index}\");",
    "#pragma HLS STREAM variable=vecq_wstream{index} depth=2",
    "#pragma HLS INTERFACE m_axi port={w} offset=slave bundle=vecq_gmem{index} depth={words} "
    "max_read_burst_length=64 num_read_outstanding=4",
    "nnet::vecq_weight_reader<config{index}>({w}, vecq_wstream{index});",
    "nnet::vecq_{kernel}_streamed<{input_t}, {output_t}, {config}>({input}, {output}, vecq_wstream{index}, {s}, {b});"])
FUNCTION_TEMPLATES = {
    VecQDense: "nnet::vecq_dense" + _weighted_call,
    VecQConv2D: "nnet::vecq_conv2d" + _weighted_call,
    VecQDepthwiseConv2D: "nnet::vecq_depthwise_conv2d" + _weighted_call,
    VecQDenseStreamed: _streamed_call.replace("{kernel}", "dense"),
    VecQConv2DStreamed: _streamed_call.replace("{kernel}", "conv2d"),
    VecQDepthwiseConv2DStreamed: _streamed_call.replace("{kernel}", "depthwise_conv2d"),
    VecQGlobalAvgPool2D: "nnet::vecq_global_avg_pool<{input_t}, {output_t}, {config}>({input}, {output});",
    VecQPool2D: "nnet::vecq_pool2d<{input_t}, {output_t}, {config}>({input}, {output});",
}


def streamed_port(index) -> str:
    """The top-level argument (m_axi port) of the streamed layer with this hls4ml index."""
    return f"vecq_wmem{index}"


def _weighted_params(node) -> dict:
    """The template keys of a weighted layer beyond hls4ml's defaults (both templates read them)."""
    streamed = getattr(node, "streamed", False)
    return {"encoding_code": ENCODING_CODES[node.get_attr("encoding")],
            "multiplier_code": MULTIPLIER_CODES[node.get_attr("multiplier")],
            "latency": "true" if str(node.get_attr("strategy", "latency")).lower() == "latency" else "false",
            "w": streamed_port(node.index) if streamed else node.get_weights("weight").name,
            "s": node.get_weights("scale").name, "b": node.get_weights("bias").name,
            "cached_cpp": "true" if streamed and node.get_attr("cached") else "false"}


def register() -> None:
    """Register our layers, templates and kernel headers with hls4ml (idempotent)."""
    for cls in CONFIG_TEMPLATES:
        register_hls_layer(cls, CONFIG_TEMPLATES[cls], FUNCTION_TEMPLATES[cls],
                           [TEMPLATE_DIR / h for h in cls.kernel_headers],
                           params=_weighted_params if issubclass(cls, _VecQWeighted) else None)
