"""Reference networks built from :mod:`vecq_hw.nn` layers.

``build_model(name, **options)`` with ``name`` one of :data:`MODELS` (``lenet5``, ``vgg_small``,
``mlp``, ``resnet_small``, ``mobilenet_block``; aliases ``lenet``, ``vgg``). Options common to
all: ``weight_quant``, a quantiser object or ``{method, ...options}`` config (any registered
method; default 2-bit VecQ), each weighted layer getting its own copy, or None for float
layers; ``act_type`` (ReLU output quantiser), ``in_type`` (input quantiser, first module),
``out_type`` (logit quantiser, last module), ``num_classes``. A QAT schedule runs a quantised
model in float mode with :func:`vecq_hw.nn.set_quantize`. Each model carries plain attributes
``input_shape`` (without the batch dimension: (C, H, W) for CNNs, (features,) for MLPs),
``num_classes`` and ``arch``.
"""

from __future__ import annotations

import inspect

from torch import nn

from ._common import DEFAULT_ACT_TYPE, DEFAULT_IN_TYPE, DEFAULT_OUT_TYPE
from .lenet import lenet5
from .mlp import mlp
from .mobilenet_block import mobilenet_block
from .resnet_small import resnet_small
from .vgg import vgg_small

MODELS = {"lenet5": lenet5, "vgg_small": vgg_small, "mlp": mlp, "resnet_small": resnet_small,
          "mobilenet_block": mobilenet_block}
ALIASES = {"lenet": "lenet5", "lenet-5": "lenet5", "vgg": "vgg_small"}

#: options every builder takes that a training recipe sets from its ``quant`` section
QUANT_OPTIONS = ("weight_quant", "act_type", "in_type", "out_type")

__all__ = ["MODELS", "build_model", "model_options", "canonical_name", "lenet5", "vgg_small",
           "resnet_small", "mobilenet_block",
           "mlp", "DEFAULT_ACT_TYPE", "DEFAULT_IN_TYPE", "DEFAULT_OUT_TYPE", "QUANT_OPTIONS"]


def canonical_name(name: str) -> str:
    key = str(name).lower()
    key = ALIASES.get(key, key)
    if key not in MODELS:
        raise KeyError(f"unknown model {name!r}; expected one of {', '.join(MODELS)}")
    return key


def model_options(name: str) -> dict:
    """Option name -> default value of a model builder."""
    fn = MODELS[canonical_name(name)]
    return {p.name: p.default for p in inspect.signature(fn).parameters.values()}


def build_model(name: str, **options) -> nn.Sequential:
    """Build a registered reference network."""
    fn = MODELS[canonical_name(name)]
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"model {name!r} has no option(s) {', '.join(unknown)}; "
                        f"expected some of {', '.join(allowed)}")
    return fn(**options)
