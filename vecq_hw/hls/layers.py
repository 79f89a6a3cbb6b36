"""hls4ml layer classes and templates for the VecQ weighted layers (extension API).

``VecQDense`` and ``VecQConv2D`` are registered with :func:`hls4ml.model.layers.register_layer`;
their config/function templates and the C++ header ``hls_templates/nnet_vecq.h`` are registered
with the 'Vivado' and 'Vitis' backends (``register_template`` / ``register_source``). hls4ml's
own layers serve for ReLU, pooling and flatten (their precisions pinned by :mod:`.convert`).
"""

from __future__ import annotations

import numpy as np
from hls4ml.backends import get_backend
from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute, TypeAttribute, WeightAttribute
from hls4ml.model.layers import Layer, register_layer
from hls4ml.model.types import WeightVariable

from .. import resources

#: our C++ kernels and file templates
TEMPLATE_DIR = resources.TEMPLATE_DIR
KERNEL_HEADER = TEMPLATE_DIR / "nnet_vecq.h"
BACKENDS = ("Vivado", "Vitis")
MULTIPLIER_CODES = {"auto": 0, "dsp": 1, "fabric": 2}
ENCODING_CODES = {"odd": 0, "int": 1}


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
    _expected_attributes = [
        Attribute("bits"),
        Attribute("encoding", value_type=str),
        Attribute("multiplier", value_type=str),
        WeightAttribute("weight"),
        WeightAttribute("scale"),
        WeightAttribute("bias"),
        TypeAttribute("weight"),
        TypeAttribute("scale"),
        TypeAttribute("bias"),
        TypeAttribute("accum"),
        TypeAttribute("term"),
    ]

    def _out_precision(self):
        from .convert import precision_of

        return precision_of(self.get_attr("vecq_types")["out"])

    def _add_tables(self):
        from .convert import precision_of

        types = self.get_attr("vecq_types")
        codes = np.asarray(self.get_attr("codes_data"), dtype=np.int64)
        self._add_exact("weight", "w{index}", precision_of(types["weight"]), codes.astype(np.float64),
                        [str(int(c)) for c in codes.ravel()])
        for name, var in (("scale", "s{index}"), ("bias", "b{index}")):
            mant = [int(m) for m in np.asarray(self.get_attr(name + "_mantissas")).ravel()]
            frac = int(self.get_attr(name + "_frac"))
            values = np.array([m * 2.0**-frac for m in mant], dtype=np.float64)
            self._add_exact(name, var, precision_of(types[name]), values,
                            [exact_decimal(m, frac) for m in mant])

    def _add_exact(self, name, var_name, precision, data, strings):
        var = ExactWeightVariable(var_name, type_name=name + "{index}_t", precision=precision, data=data,
                                  exact_strings=strings, index=self.index)
        var.data_unquantized = data
        self.set_attr(name, var)


class VecQDense(_VecQWeighted):
    _expected_attributes = [Attribute("n_in"), Attribute("n_out")]

    def initialize(self):
        self.add_output_variable([self.get_attr("n_out")], precision=self._out_precision())
        self._add_tables()


class VecQConv2D(_VecQWeighted):
    _expected_attributes = [
        Attribute(n)
        for n in ("in_height", "in_width", "n_chan", "out_height", "out_width", "n_filt", "filt_height",
                  "filt_width", "stride_height", "stride_width", "pad_top", "pad_bottom", "pad_left", "pad_right")
    ]

    def initialize(self):
        shape = [self.get_attr("out_height"), self.get_attr("out_width"), self.get_attr("n_filt")]
        self.add_output_variable(shape, precision=self._out_precision())
        self._add_tables()


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
"""

dense_config_template = (
    """struct config{index} : nnet::vecq_dense_config {{
    static const unsigned n_in = {n_in};
    static const unsigned n_out = {n_out};
"""
    + _common_config
    + "}};\n"
)

conv2d_config_template = (
    """struct config{index} : nnet::vecq_conv2d_config {{
    static const unsigned n_in = {in_height} * {in_width} * {n_chan};
    static const unsigned n_out = {out_height} * {out_width} * {n_filt};
    static const unsigned in_height = {in_height}, in_width = {in_width}, n_chan = {n_chan};
    static const unsigned out_height = {out_height}, out_width = {out_width}, n_filt = {n_filt};
    static const unsigned filt_height = {filt_height}, filt_width = {filt_width};
    static const unsigned stride_height = {stride_height}, stride_width = {stride_width};
    static const unsigned pad_top = {pad_top}, pad_bottom = {pad_bottom};
    static const unsigned pad_left = {pad_left}, pad_right = {pad_right};
"""
    + _common_config
    + "}};\n"
)

dense_function_template = "nnet::vecq_dense<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {s}, {b});"
conv2d_function_template = "nnet::vecq_conv2d<{input_t}, {output_t}, {config}>({input}, {output}, {w}, {s}, {b});"
include_list = ["nnet_utils/nnet_vecq.h"]


class _VecQConfigTemplate(LayerConfigTemplate):
    def __init__(self, layer_class, template):
        super().__init__(layer_class)
        self.template = template

    def format(self, node):
        params = self._default_config_params(node)
        params["encoding_code"] = ENCODING_CODES[node.get_attr("encoding")]
        params["multiplier_code"] = MULTIPLIER_CODES[node.get_attr("multiplier")]
        params["latency"] = "true" if str(node.get_attr("strategy", "latency")).lower() == "latency" else "false"
        return self.template.format(**params)


class _VecQFunctionTemplate(FunctionCallTemplate):
    def __init__(self, layer_class, template):
        super().__init__(layer_class, include_header=include_list)
        self.template = template

    def format(self, node):
        params = self._default_function_params(node)
        params["w"] = node.get_weights("weight").name
        params["s"] = node.get_weights("scale").name
        params["b"] = node.get_weights("bias").name
        return self.template.format(**params)


class VecQDenseConfigTemplate(_VecQConfigTemplate):
    def __init__(self):
        super().__init__(VecQDense, dense_config_template)


class VecQConv2DConfigTemplate(_VecQConfigTemplate):
    def __init__(self):
        super().__init__(VecQConv2D, conv2d_config_template)


class VecQDenseFunctionTemplate(_VecQFunctionTemplate):
    def __init__(self):
        super().__init__(VecQDense, dense_function_template)


class VecQConv2DFunctionTemplate(_VecQFunctionTemplate):
    def __init__(self):
        super().__init__(VecQConv2D, conv2d_function_template)


_registered = False


def register() -> None:
    """Register our layers, templates and kernel header with hls4ml (idempotent)."""
    global _registered
    if _registered:
        return
    register_layer("VecQDense", VecQDense)
    register_layer("VecQConv2D", VecQConv2D)
    for name in BACKENDS:
        backend = get_backend(name)
        for tmpl in (VecQDenseConfigTemplate, VecQConv2DConfigTemplate, VecQDenseFunctionTemplate,
                     VecQConv2DFunctionTemplate):
            backend.register_template(tmpl)
        backend.register_source(KERNEL_HEADER)
    _registered = True
