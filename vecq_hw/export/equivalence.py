"""Every export runs both models on sample inputs: the integer model must compute the network
the user wrote.

Inputs: the caller's samples, or random ones over the input type (uniform mantissas).
PyTorch runs twice on them: the model itself (its real ``forward``) and the traced graph
(recording every intermediate); the two must agree exactly, or the trace did not follow
``forward`` (an in-place op fx cannot see, ...).

**Tolerance** (compared as mantissas of the deployed types, i.e. in LSBs):

* *Per layer, in isolation*: every integer-model layer with a PyTorch counterpart is run on
  PyTorch's own inputs to it (so earlier differences do not compound) and compared with
  PyTorch's output. A layer whose arithmetic is exact (input, ReLU, pooling, flatten, an add,
  a power-of-two average) must agree to the bit. A layer with rounded constants (weighted:
  s_j and b_j rounded to fixed point; PyTorch's float32 sums; a global average's 1/n) may
  differ where the two values of y fall on either side of a rounding boundary of its output
  type: by at most ``floor(E / LSB) + 1`` LSB, where E bounds |y_integer - y_pytorch| from the
  constants' rounding errors and the layer's worst-case input (``values.Pending*.error_bound``);
  with the default 16-bit scales that is 1 LSB. Anything further is a different network, and
  the export is refused naming that layer and its PyTorch module.
* *End to end*: the deployed output is compared with PyTorch's; the exact-match fraction and
  the largest difference are reported (they compound through layers), and the argmax
  agreement must reach ``ExportOptions.min_agreement`` (default 0.9): near-ties may flip, a
  network that only matches layer by layer because its constants are too coarse
  (``scale_bits`` 1 or 2) does not pass.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
import torch.fx as fx

from .. import ir
from ..errors import ExportError
from ..sim import simulate
from .build import Mapped
from .trace import where


@dataclass
class LayerAgreement:
    layer: str
    torch: str
    exact: float  # fraction of values equal to PyTorch's (in isolation)
    max_lsb: int
    allowed_lsb: int


@dataclass
class Equivalence:
    """What the export check measured."""

    n_samples: int
    inputs: str  # 'caller' or 'random'
    exact: float  # fraction of output values equal to PyTorch's
    max_lsb: int  # largest output difference, in LSBs of the output type
    argmax: float  # fraction of samples with the same argmax
    layers: list[LayerAgreement]

    def text(self) -> str:
        worst = max((la.max_lsb for la in self.layers), default=0)
        return (f"equivalence check on {self.n_samples} {self.inputs} inputs: outputs equal to PyTorch's "
                f"{100 * self.exact:.2f} % (max {self.max_lsb} LSB), argmax agreement {100 * self.argmax:.2f} %; "
                f"{len(self.layers)} layers each within their rounding bound (worst {worst} LSB)")


def sample_inputs(imodel: ir.Model, tshape: tuple, n: int, seed: int) -> torch.Tensor:
    """n random inputs, uniform over the input type's mantissas, in PyTorch's layout."""
    t = imodel.input.out_type
    m = np.random.default_rng(seed).integers(t.min_mantissa, t.max_mantissa, size=(n,) + tuple(tshape),
                                             endpoint=True)
    return torch.from_numpy(t.to_float(m)).float()


def _to_ir(x: torch.Tensor, ishape: tuple, order) -> np.ndarray:
    a = x.detach().double().cpu().numpy()
    if len(ishape) == 3:
        return a.transpose(0, 2, 3, 1)
    if len(ishape) == 2:  # a graph's (nodes, features): the same layout
        return a
    a = a.reshape(a.shape[0], -1)
    return a[:, order] if order is not None else a


def _mantissas(values: np.ndarray, typ) -> np.ndarray:
    """Float values -> mantissas of ``typ``; NaN where a value is not on the type's grid."""
    m = np.ldexp(values, typ.frac)
    bad = (m != np.round(m)) | (m < typ.min_mantissa) | (m > typ.max_mantissa)
    return np.where(bad, np.nan, m)


class _Recorder(fx.Interpreter):
    def __init__(self, gm, want):
        super().__init__(gm)
        self.want, self.seen = want, {}

    def run_node(self, n):
        r = super().run_node(n)
        if n in self.want:
            self.seen[n] = r
        return r


def check(model, gm: fx.GraphModule, imodel: ir.Model, mapped: dict[str, Mapped], output, tshape: tuple,
          samples, options) -> Equivalence:
    """Both models on the samples: every mapped layer within its bound (in isolation), and the
    integer model's output against ``model(x)`` itself (``output``: the exporter's value of the
    model output, i.e. its layout and type), never against an intermediate the exporter mapped."""
    if samples is None:
        x = sample_inputs(imodel, tshape, options.check_samples, options.check_seed)
        source = "random"
    else:
        x = torch.as_tensor(np.asarray(samples) if not isinstance(samples, torch.Tensor) else samples)
        x = x if x.is_floating_point() else x.float()
        if tuple(x.shape[1:]) != tuple(tshape) or x.shape[0] < 1:
            raise ExportError(f"expected sample inputs of shape (N, {', '.join(map(str, tshape))}), got "
                              f"{tuple(x.shape)}", field="samples")
        source = "caller"
    n = x.shape[0]
    x = x.to(getattr(torch, options.check_dtype))  # the check's precision (the model's: _check_tensors)
    with torch.no_grad():
        try:
            y_model = model(x)
            rec = _Recorder(gm, {m.node for m in mapped.values()})
            y_graph = rec.run(x)
        except RuntimeError as exc:  # a dtype/device/shape PyTorch itself refuses on these inputs
            first = " ".join(str(exc).split())[:200]
            raise ExportError(f"PyTorch cannot run the model on {n} {source} sample inputs of shape "
                              f"{tuple(x.shape[1:])} ({options.check_dtype}, CPU): {first}", field="forward") from None
    if not isinstance(y_model, torch.Tensor) or not torch.equal(y_model, y_graph):
        raise ExportError("the traced graph does not reproduce forward() on the sample inputs (an in-place "
                          "operation or state fx cannot see?); refusing to certify it", field="forward")
    xs = x.double().numpy()
    if xs.ndim == 4:
        xs = xs.transpose(0, 2, 3, 1)
    sim = simulate(imodel, xs, trace=True)
    torch_m = {}  # layer -> PyTorch's mantissas in the integer model's layout
    for name, mp in mapped.items():
        v = mp.value
        torch_m[name] = _mantissas(_to_ir(rec.seen[mp.node], v.ishape, v.order), v.typ)
    layers = []
    for layer in imodel.layers:
        mp = mapped.get(layer.name)
        if mp is None:
            continue
        ours = _isolated(imodel, mp, torch_m, sim)
        ref = torch_m[layer.name]
        diff = np.abs(ours - ref)
        frac = layer.out_type.frac
        allowed = 0 if mp.error == 0 else int(np.floor(np.ldexp(mp.error, frac))) + 1
        _check_tolerance(layer, mp, allowed)
        worst = float(np.nanmax(diff)) if not np.all(np.isnan(diff)) else 0.0
        bad_grid = int(np.isnan(diff).sum())
        if bad_grid or worst > allowed:
            share = 100 * float(np.mean(~(diff <= allowed)))
            what = (f"PyTorch's values are not on the {layer.out_type} grid for {bad_grid} of them" if bad_grid
                    else f"by up to {int(worst)} LSB of {layer.out_type} on {share:.1f} % of values")
            raise ExportError(f"the integer model parts from PyTorch at layer '{layer.name}' ({where(mp.node)}): fed "
                              f"PyTorch's own inputs on {n} {source} samples it differs {what}; the rounding of its "
                              f"constants allows {allowed} LSB", field=where(mp.node))
        layers.append(LayerAgreement(layer=layer.name, torch=where(mp.node), exact=float(np.mean(diff == 0)),
                                     max_lsb=int(worst), allowed_lsb=allowed))
    # one prediction per row: a sample's logits, or (a graph's node features) every node's
    rows = n * int(output.ishape[0]) if len(output.ishape) == 2 else n
    ours = sim.output.reshape(rows, -1).astype(np.float64)
    ref = _mantissas(_to_ir(y_model, output.ishape, output.order), output.typ).reshape(rows, -1)
    if np.isnan(ref).any():
        raise ExportError(f"PyTorch's model(x) is not on the output type {output.typ}'s grid for "
                          f"{int(np.isnan(ref).sum())} of {ref.size} values: something after the last layer the "
                          "exporter follows changes the output", field="forward")
    diff = np.abs(ours - ref)
    agree = float(np.mean(np.argmax(ours, axis=1) == np.argmax(np.nan_to_num(ref, nan=-np.inf), axis=1)))
    eq = Equivalence(n_samples=n, inputs=source, exact=float(np.mean(diff == 0)),
                     max_lsb=int(np.nanmax(diff)) if diff.size else 0, argmax=agree, layers=layers)
    if agree < options.min_agreement:
        raise ExportError(f"the integer model's argmax agrees with PyTorch's on only {100 * agree:.1f} % of {n} "
                          f"{source} samples (at least {100 * options.min_agreement:.0f} % needed; every layer is "
                          "within its rounding bound, so its constants are too coarse: raise scale_bits)",
                          field="scale_bits")
    return eq


#: the largest share of a layer's output range its tolerance may cover: beyond it the check
#: could not tell the layer from a different network
MAX_TOLERANCE_SHARE = 1 / 8


def _check_tolerance(layer, mp: Mapped, allowed: int) -> None:
    """A tolerance is a bound on rounding, not a licence: refuse one so wide (coarse constants,
    or PyTorch's own float32 sums at an extreme weight scale) that the check proves nothing."""
    span = 2 ** layer.out_type.width  # output values the type holds, in LSBs
    if allowed > span * MAX_TOLERANCE_SHARE:
        raise ExportError(f"layer '{layer.name}' ({where(mp.node)}): the rounding of its constants and PyTorch's "
                          f"float32 sums allow {allowed} LSB, more than {MAX_TOLERANCE_SHARE:.3g} of the {span} "
                          f"values of {layer.out_type}; a check that loose proves nothing: raise scale_bits, or bring the "
                          "weights to a normal scale", field=where(mp.node))


def _isolated(imodel: ir.Model, mp: Mapped, torch_m: dict, sim) -> np.ndarray:
    """The integer model's output of ``mp``'s segment, computed from PyTorch's inputs to it."""
    first = imodel.layer(mp.segment[0])
    if isinstance(first, ir.Input):
        return sim.trace[first.name].astype(np.float64)
    if len(mp.inputs) == 1:
        src = mp.inputs[0]
        m = torch_m[src]
        if np.isnan(m).any():  # its producer already failed; caught there
            return np.full_like(torch_m[mp.segment[-1]], np.nan)
        if all(imodel.layer(name).kind == "flatten" for name in mp.segment):  # channels-last order, exact
            return m.reshape(m.shape[0], -1)
        src_layer = imodel.layer(src)
        shape = tuple(m.shape[1:])
        # the segment's source becomes the input layer of its own model (same name, so the layers
        # read it unchanged)
        sub = [ir.Input(name=src, out_type=src_layer.out_type, shape=shape)]
        sub += [dataclasses.replace(imodel.layer(name)) for name in mp.segment]
        res = simulate(ir.Model(name="segment", layers=sub), x_mantissa=m.astype(np.int64))
        return res.output.astype(np.float64)
    # an add (two inputs): exact aligned sum, then the one requantisation (and the ReLU)
    vals = sum(imodel.layer(src).out_type.to_float(np.nan_to_num(torch_m[src]).astype(np.int64))
               for src in mp.inputs)
    for name in mp.segment:
        lay = imodel.layer(name)
        if isinstance(lay, ir.ReLU):
            vals = np.maximum(vals, 0.0)
        m = lay.out_type.from_float(vals)
        vals = lay.out_type.to_float(m)
    return m.astype(np.float64)
