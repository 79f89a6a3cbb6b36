"""PyTorch (VecQ layers + fixed-point activations) -> the integer model.

The exporter follows ``forward`` with torch.fx (:mod:`.trace`) and reads the graph node by
node through a table of handlers (:mod:`.handlers`); whatever it cannot follow exactly is
refused with one line naming the module (``features.3``) or the line of ``forward``. The
patterns it turns into integer-model layers::

    FixedQuant on the input                                      -> Input
    VecQLinear|VecQConv2d [BatchNorm] [ReLU] FixedQuant          -> Dense|Conv2D|DepthwiseConv2D [+ ReLU]
    a + b [ReLU] FixedQuant (or no FixedQuant: the exact sum)    -> Add [+ ReLU]
    AdaptiveAvgPool2d(1) | mean((2, 3)) [Flatten] FixedQuant     -> GlobalAvgPool2D
    ReLU | MaxPool2d | AvgPool2d | Flatten | Dropout | Identity

BatchNorm (eval statistics) folds into the per-channel scale and bias (:mod:`.fold`); the
integer weight codes never change. The FixedQuant after a weighted layer, add or average
is the ONE requantisation of the contract: it names the deployed type.

Layout: PyTorch is channels-first, the integer model channels-last, so conv tables are
transposed and the first dense layer after a flatten of (C, H, W) has its rows permuted to
(H, W, C) order. Nothing else changes, so the deployed network is the same function.

Every export then runs both models on sample inputs (:mod:`.equivalence`) and refuses when
they part beyond the rounding of the constants; :func:`export` returns what it measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .. import ir
from ..errors import ExportError
from .build import Builder
from .equivalence import Equivalence, check
from .fold import MONOTONE_OVERFLOW
from .fold import split_relu as _split_relu  # noqa: F401  (kept for callers of the old name)
from . import alq  # noqa: F401  (registers ALQ's native weight form with the handlers)
from . import pq  # noqa: F401  (registers PQ's native weight form with the handlers)
from . import srq  # noqa: F401  (registers SRQ's activation quantiser with the handlers)
from . import gnn_handlers as _gnn_handlers  # noqa: F401,I001  (registers GCNConv's handler)
from .handlers import HANDLERS
from .trace import refuse_hidden_calls, trace

#: Overflow modes for which relu(requant(y)) == requant(relu(y)) (the recipe checker reads it).
_MONOTONE_OVERFLOW = MONOTONE_OVERFLOW

#: option ranges: significant bits of a scale; fractional bits of a scale or bias. Outside them
#: a constant is either meaningless (a 1-bit scale) or beyond the simulator's exact 62 bits.
SCALE_BITS = (2, 40)
#: the precisions the equivalence check may run PyTorch in
CHECK_DTYPES = ("float32", "float64")
CAST = {"float32": "float", "float64": "double"}
FRAC_RANGE = (-16, 56)


@dataclass
class ExportOptions:
    """How the float constants s_j, b_j become fixed point, and how the export is checked.

    ``scale_bits`` is the number of significant bits kept for each normal channel's scale
    (:func:`.fold.scale_frac`); ``scale_frac``, when given, fixes the fractional bits of
    the scale instead. Biases get the fractional bits of the product acc * s, so that adding
    them never needs an alignment shift wider than the product (``bias_frac`` overrides).
    ``check_samples`` random inputs (when the caller gives none) and ``min_agreement``
    (argmax) drive the equivalence check, which runs PyTorch in ``check_dtype`` ('float32', or
    'float64' for a model whose every sum and product is exact there: a GCN, :mod:`.gnn`).
    """

    scale_bits: int = 16
    scale_frac: int | None = None
    bias_frac: int | None = None
    multiplier: str = "auto"
    name: str = "model"
    check_samples: int = 256
    check_seed: int = 0
    min_agreement: float = 0.9
    check_dtype: str = "float32"

    def validate(self) -> "ExportOptions":
        def integer(v, name, lo, hi, optional=False):
            if optional and v is None:
                return
            if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
                raise ExportError(f"expected an integer in {lo}..{hi}, got {v!r}", field=name)
        integer(self.scale_bits, "scale_bits", *SCALE_BITS)
        integer(self.scale_frac, "scale_frac", *FRAC_RANGE, optional=True)
        integer(self.bias_frac, "bias_frac", *FRAC_RANGE, optional=True)
        integer(self.check_samples, "check_samples", 1, 1 << 20)
        integer(self.check_seed, "check_seed", 0, 1 << 62)
        if self.multiplier not in ir.MULTIPLIERS:
            raise ExportError(f"expected one of {', '.join(ir.MULTIPLIERS)}, got {self.multiplier!r}",
                              field="multiplier")
        if not isinstance(self.name, str) or not self.name.strip():
            raise ExportError(f"expected a non-empty name, got {self.name!r}", field="name")
        if self.check_dtype not in CHECK_DTYPES:
            raise ExportError(f"expected one of {', '.join(CHECK_DTYPES)}, got {self.check_dtype!r}",
                              field="check_dtype")
        a = self.min_agreement
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 <= a <= 1.0:
            raise ExportError(f"expected a fraction in [0, 1], got {a!r}", field="min_agreement")
        return self


@dataclass
class ExportResult:
    """The checked integer model and how far it agrees with the PyTorch model."""

    model: ir.Model
    equivalence: Equivalence

    def text(self) -> str:
        return self.equivalence.text()


def export(model: nn.Module, input_shape, options: ExportOptions | None = None, samples=None) -> ExportResult:
    """Trace ``model.forward``, build the integer model, check it against PyTorch.

    ``input_shape`` is PyTorch's per-sample shape: (C, H, W), (features,) or a graph's
    (nodes, features) (:mod:`.gnn`). ``samples``
    (N, *input_shape) are the inputs of the equivalence check (default: random ones over the
    input type). Raises ExportError (one line) on anything it cannot export exactly.
    """
    opts = (options or ExportOptions()).validate()
    imodel, builder = build_layers(model, input_shape, opts)
    eq = check(model, builder.gm, imodel, builder.mapped, builder.output, builder.input_shape, samples, opts)
    return ExportResult(model=imodel, equivalence=eq)


def build_layers(model: nn.Module, input_shape, options: ExportOptions | None = None) -> tuple[ir.Model, Builder]:
    """The integer model of ``model`` (checked by ``ir``) and the builder that made it (its fx
    graph and the layers' PyTorch counterparts), WITHOUT the equivalence check: for reading a
    network's structure (SRQ's width search prices it, vecq_hw.train.srq_cost), never for
    deployment, which goes through :func:`export`."""
    opts = (options or ExportOptions()).validate()
    if not isinstance(model, nn.Module):
        raise ExportError(f"expected a torch.nn.Module, got {type(model).__name__}", field="model")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) not in (1, 2, 3) or min(shape) < 1:
        raise ExportError(f"input shape must be (C, H, W), (features,) or a graph's (nodes, features), got "
                          f"{tuple(input_shape)}", field="input_shape")
    training = [name or type(model).__name__ for name, m in model.named_modules() if m.training]
    if training:
        raise ExportError("the model is in training mode (BatchNorm/Dropout would use batch behaviour); "
                          "call model.eval() before exporting", field=training[0])
    _check_tensors(model, opts.check_dtype)
    refuse_hidden_calls(model)
    builder = Builder(trace(model, leaves=tuple(HANDLERS.modules)), shape, opts, HANDLERS)
    layers = builder.run()
    if not builder.has_input:
        raise ExportError("forward must start with a FixedQuant input quantiser (the input's fixed-point type)",
                          field="forward")
    return ir.Model(name=opts.name, layers=layers).check(where=opts.name), builder


def _check_tensors(model: nn.Module, dtype: str = "float32") -> None:
    """Every floating-point parameter and buffer ``dtype`` on the CPU: PyTorch's reference run of
    the check feeds inputs of that dtype on the CPU (model.double(), .half() or .cuda() would fail
    there otherwise)."""
    import torch
    want = getattr(torch, dtype)
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point() and (t.dtype != want or t.device.type != "cpu"):
            raise ExportError(f"'{name}' is {str(t.dtype).replace('torch.', '')} on {t.device.type}; the exporter "
                              f"checks the model in {dtype} on the CPU: call model.{CAST[dtype]}().cpu() first",
                              field=name.rpartition(".")[0] or type(model).__name__)


def export_model(model: nn.Module, input_shape, options: ExportOptions | None = None, samples=None) -> ir.Model:
    """:func:`export`, returning the integer model only (the equivalence check still runs
    and still refuses)."""
    return export(model, input_shape, options, samples).model


__all__ = ["ExportOptions", "ExportResult", "Equivalence", "build_layers", "export", "export_model"]
