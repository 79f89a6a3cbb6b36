"""PQ's training steps on any nn.Module whose weighted layers carry a ``PQ`` quantiser
(:mod:`vecq_hw.quant.pq` has the math); :mod:`.pq_schedule` drives them from ``vecq-hw train``.

1. :func:`quantize_layers`: the layers in forward order, each quantised with the ones before it
   already in place: the layer's inputs on a sample of unlabelled images (the model in eval mode,
   the forward stopped at the layer), cut into sub-vectors of d consecutive entries in PyTorch's
   filter order (``F.unfold``'s (C_in, kh, kw) order for a convolution), give the d x d Gram matrix
   G = sum x x^T; activation-weighted EM (``quant.pq.em`` with G) gives the codebook and the
   indices, which become the quantiser's state, and the layer starts quantising.
2. :class:`CodebookTuner`: fine-tuning of the codewords (with :func:`distillation_loss` from a
   :func:`frozen_copy` of the float network). The forward uses C_int[a] * alpha with a
   straight-through gradient into the layer's (float) weight; after each backward, the gradient
   of codeword k is the average of the weight gradient's sub-vectors assigned to k, and an Adam
   step (the phase's learning rate) moves the codewords. The indices stay fixed; the float
   weights are left alone (the optimizer of the run leaves them out).

:meth:`CodebookTuner.state_dict` holds the codebooks, the indices and Adam's state as plain CPU
tensors, so a checkpoint continues bit for bit.
"""

from __future__ import annotations

import copy
import time

import torch
import torch.nn.functional as F
from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.quant.pq import PQ, em, subvectors


def pq_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The modules of ``model`` whose weight quantiser is a PQ, by name (definition order)."""
    return {name: m for name, m in model.named_modules() if isinstance(getattr(m, "weight_quant", None), PQ)}


class _Stop(Exception):
    """Ends a forward pass once the layer of interest has seen its input."""


def forward_order(model: nn.Module, x: torch.Tensor) -> list[str]:
    """The PQ layers' names in the order one forward pass of ``x`` reaches them."""
    layers, seen = pq_layers(model), []
    hooks = [m.register_forward_pre_hook(lambda _m, _a, n=name: seen.append(n) if n not in seen else None)
             for name, m in layers.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return seen + [n for n in layers if n not in seen]


def input_subvectors(m: nn.Module, x: torch.Tensor, d: int) -> torch.Tensor:
    """The layer's input as rows of d entries, each aligned with one weight sub-vector."""
    if isinstance(m, nn.Conv2d):
        if isinstance(m.padding, str) or m.padding_mode != "zeros":
            raise VecQError("PQ's Gram matrix needs a conv2d with integer zero padding", field="padding")
        cols = F.unfold(x, m.kernel_size, dilation=m.dilation, padding=m.padding, stride=m.stride)
        return cols.transpose(1, 2).reshape(-1, d)  # (N * L, C_in * kh * kw) rows, PyTorch's order
    return x.reshape(-1, d)


def gram(model: nn.Module, m: nn.Module, batches, d: int) -> torch.Tensor:
    """G = sum x x^T over the layer's input sub-vectors on ``batches`` (float64, (d, d))."""
    G = torch.zeros(d, d, dtype=torch.float64)

    def hook(_m, args):
        X = input_subvectors(m, args[0].detach(), d).double().cpu()
        G.add_(X.T @ X)
        raise _Stop

    h = m.register_forward_pre_hook(hook)
    try:
        with torch.no_grad():
            for xb in batches:
                try:
                    model(xb)
                except _Stop:
                    pass
    finally:
        h.remove()
    return G


def quantize_layers(model: nn.Module, images: torch.Tensor, batch: int = 256) -> dict[str, dict]:
    """Step 1 of the module on ``images`` (a sample of inputs); returns per layer its d, K,
    the sampled sub-vector rows and the EM seconds."""
    was = model.training
    model.eval()
    layers = pq_layers(model)
    for m in layers.values():
        m.quantize = False
    batches = [images[s:s + batch] for s in range(0, len(images), batch)]
    report = {}
    try:
        for name in forward_order(model, batches[0][:2]):
            m = layers[name]
            q: PQ = m.weight_quant
            t0 = time.perf_counter()
            d, K = q.block_for(m.weight.shape), q.codewords_for(m.weight.shape)
            G = gram(model, m, batches, d)
            W = subvectors(m.weight.detach().double().cpu(), d)
            C, a = em(W, K, q.iterations, torch.Generator().manual_seed(q.seed), G)
            q.set_state(C, a)
            m.quantize = True
            report[name] = {"block": d, "codewords": K, "seconds": round(time.perf_counter() - t0, 3)}
    finally:
        model.train(was)
    return report


class CodebookTuner:
    """Step 2 of the module: Adam on the codewords of every PQ layer (their state)."""

    def __init__(self, model: nn.Module, lr: float):
        self.layers = pq_layers(model)
        self.books = {n: nn.Parameter(m.weight_quant.codebook.clone()) for n, m in self.layers.items()}
        self.opt = torch.optim.Adam(list(self.books.values()), lr=lr)

    def clear_gradients(self) -> None:
        """Before a step: the PQ weights are outside the run's optimizer, which clears only its own
        gradients; drop any left from an earlier phase or step."""
        for m in self.layers.values():
            m.weight.grad = None

    def step(self, lr: float) -> None:
        """After a backward pass: codeword gradients from the weight gradients, one Adam step."""
        for name, m in self.layers.items():
            q, book = m.weight_quant, self.books[name]
            g = m.weight.grad
            m.weight.grad = None  # the run's optimizer never sees it; do not let it accumulate
            if g is None:
                continue
            a = q.assignments.to(g.device)
            rows = subvectors(g.double(), book.shape[1])
            counts = torch.bincount(a, minlength=book.shape[0]).clamp(min=1).to(rows)
            sums = torch.zeros(book.shape, dtype=rows.dtype, device=rows.device).index_add_(0, a, rows)
            book.grad = (sums / counts[:, None]).to(book)
        for group in self.opt.param_groups:
            group["lr"] = float(lr)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        for name, m in self.layers.items():
            m.weight_quant.set_state(self.books[name].detach().clone(), m.weight_quant.assignments)

    def state_dict(self) -> dict:
        return {"optimizer": self.opt.state_dict(),
                "books": {n: b.detach().cpu().clone() for n, b in self.books.items()}}

    def load_state_dict(self, state: dict) -> None:
        for n, b in self.books.items():
            got = state["books"].get(n)
            if not isinstance(got, torch.Tensor) or got.shape != b.shape:
                raise VecQError(f"PQ tuner state does not fit layer {n!r}", field=f"pq.tuner.{n}")
            with torch.no_grad():
                b.copy_(got)
        self.opt.load_state_dict(state["optimizer"])


def distillation_loss(teacher: nn.Module):
    """``loss(x, out, y)``: the KL divergence from the teacher's softmax output on x to the
    student's (batch mean; the labels are not used)."""
    def loss(x, out, y):
        with torch.no_grad():
            target = F.log_softmax(teacher(x).float(), dim=1)
        return F.kl_div(F.log_softmax(out.float(), dim=1), target, log_target=True, reduction="batchmean")

    return loss


def frozen_copy(model: nn.Module) -> nn.Module:
    """The network as it is now, in float mode and eval mode, without gradients (a teacher)."""
    from vecq_hw.nn import set_quantize

    t = copy.deepcopy(model)
    set_quantize(t, False)
    t.eval()
    for p in t.parameters():
        p.requires_grad_(False)
    return t


def pq_state(model: nn.Module) -> dict[str, dict]:
    """Every PQ layer's codebook and indices (plain CPU tensors; layers without state left out)."""
    return {n: {"codebook": m.weight_quant.codebook.cpu().clone(), "assignments": m.weight_quant.assignments.cpu().clone()}
            for n, m in pq_layers(model).items() if m.weight_quant.codebook is not None}


def load_pq_state(model: nn.Module, state: dict, where: str = "pq_state") -> None:
    """Put :func:`pq_state` back into the model's PQ quantisers (and switch those layers on)."""
    layers = pq_layers(model)
    for name, s in state.items():
        m = layers.get(name)
        if m is None or not isinstance(s, dict):
            raise VecQError(f"no PQ layer named {name!r} in the model", field=f"{where}.{name}")
        try:
            m.weight_quant.set_state(s.get("codebook"), s.get("assignments"))
            m.weight_quant.state_for(m.weight)  # fits the weight's shape
        except VecQError as exc:
            raise VecQError(exc.detail, field=f"{where}.{name}") from None
        m.quantize = True
