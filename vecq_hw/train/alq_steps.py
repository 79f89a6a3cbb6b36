"""ALQ's training procedure on any nn.Module whose weighted layers carry an ``ALQ`` quantiser
(:mod:`vecq_hw.quant.alq` has the math). Three phases, driven by the caller's own loop:

1. ``ALQTrainer(model, lr)`` then ``init()``: greedy residual binarisation + least-squares
   alpha of each layer's (pre-trained) float weight; the layer runs in float mode on
   w_hat = B alpha, written into its weight.
2. ``step()`` after each ``loss.backward()``: Adam's moments of the gradient at w_hat, then
   ALQ's loss-aware alpha step and basis step (the caller's optimizer must not update the ALQ
   weights in this phase: ``trainer.other_parameters()`` lists the rest); ``prune()`` every
   few steps removes bases (cheapest modelled loss first) until the average bases per weight
   reaches the quantiser's ``target_bits``.
3. ``finish()``: writes w_hat and the per-group basis counts into the layers and turns
   quantisation on: ordinary STE post-training then trains bases and alpha through the float
   weight (each forward re-derives them with the pruned counts), and export reads the same.

``state_dict()`` / ``load_state_dict()`` hold everything the steps read (bases, alphas, which
bases are kept, Adam's moments and step count) as plain CPU tensors, exactly: a loop that
saves them with its checkpoint continues bit for bit (``vecq-hw train``: :mod:`.alq_schedule`).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.quant.alq import ALQ, decompose, least_squares_alpha, loss_aware_alpha, loss_aware_bases, prune_costs

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8


def alq_layers(model: nn.Module) -> list[nn.Module]:
    """The modules of ``model`` whose weight quantiser is an ALQ."""
    out = []
    for m in model.modules():
        q = getattr(m, "weight_quant", None)
        if isinstance(q, ALQ):
            out.append(m)
    return out


class _State:
    def __init__(self, layer, q: ALQ):
        self.layer, self.q = layer, q
        w = layer.weight.detach()
        self.shape = w.shape
        self.w2 = w.reshape(w.shape[0], -1).double() if q.per_channel else w.reshape(1, -1).double()
        counts = torch.full((self.w2.shape[0],), q.max_bases, dtype=torch.long)
        self.B, self.alpha = decompose(self.w2, counts, q.max_bases)
        self.on = torch.ones_like(self.alpha, dtype=torch.bool)
        self.m = torch.zeros_like(self.w2)
        self.v = torch.zeros_like(self.w2)
        self.t = 0

    def w_hat(self) -> torch.Tensor:
        return torch.einsum("gni,gi->gn", self.B, self.alpha * self.on)

    def write(self) -> None:
        with torch.no_grad():
            self.layer.weight.copy_(self.w_hat().reshape(self.shape).to(self.layer.weight.dtype))

    def counts(self) -> np.ndarray:
        return self.on.sum(1).cpu().numpy().astype(np.int64)

    def state(self) -> dict:
        """Plain CPU tensors; B is in {-1, 0, +1}, stored as int8 (exact)."""
        return {"B": self.B.to(torch.int8).cpu(), "alpha": self.alpha.cpu().clone(),
                "on": self.on.cpu().clone(), "m": self.m.cpu().clone(), "v": self.v.cpu().clone(),
                "t": int(self.t)}

    def load(self, st: dict, where: str) -> None:
        dev = self.layer.weight.device
        want = {"B": tuple(self.B.shape), "alpha": tuple(self.alpha.shape), "on": tuple(self.on.shape),
                "m": tuple(self.m.shape), "v": tuple(self.v.shape)}
        for k, shape in want.items():
            if not isinstance(st.get(k), torch.Tensor) or tuple(st[k].shape) != shape:
                raise VecQError(f"ALQ state does not fit the layer: expected {k} of shape {shape}",
                                field=f"{where}.{k}")
        self.B = st["B"].to(device=dev, dtype=torch.float64)
        self.alpha = st["alpha"].to(device=dev, dtype=torch.float64)
        self.on = st["on"].to(device=dev, dtype=torch.bool)
        self.m = st["m"].to(device=dev, dtype=torch.float64)
        self.v = st["v"].to(device=dev, dtype=torch.float64)
        self.t = int(st["t"])

    def sort(self) -> None:
        """Keep the bases of each group in decreasing |alpha| (unused last): the last used basis
        is the pruning candidate."""
        key = torch.where(self.on, self.alpha.abs(), -1.0)
        order = key.argsort(dim=1, descending=True)
        self.alpha = self.alpha.gather(1, order)
        self.on = self.on.gather(1, order)
        self.B = self.B.gather(2, order.unsqueeze(1).expand_as(self.B))


class ALQTrainer:
    def __init__(self, model: nn.Module, lr: float = 1e-3):
        self.model, self.lr = model, float(lr)
        self.layers = alq_layers(model)
        if not self.layers:
            raise VecQError("the model has no layer with an ALQ weight quantiser", field="weight_quant")
        self.states: list[_State] = []

    def other_parameters(self) -> list[nn.Parameter]:
        ids = {id(m.weight) for m in self.layers}
        return [p for p in self.model.parameters() if id(p) not in ids]

    def init(self) -> None:
        self.states = [_State(m, m.weight_quant) for m in self.layers]
        for s in self.states:
            s.sort()
            s.write()
            s.layer.quantize = False  # the forward uses the weight = w_hat itself

    def state_dict(self) -> dict:
        """Every layer's ALQ state (see :meth:`_State.state`), in ``self.layers`` order."""
        return {"layers": [s.state() for s in self.states]}

    def load_state_dict(self, state: dict) -> None:
        """Continue from :meth:`state_dict`: the layers run in float mode on w_hat, as after
        ``init()`` (the weights are rewritten from the stored bases and alphas)."""
        layers = state.get("layers") if isinstance(state, dict) else None
        if not isinstance(layers, list) or len(layers) != len(self.layers):
            n = len(layers) if isinstance(layers, list) else "no"
            raise VecQError(f"ALQ state holds {n} layers, the model has {len(self.layers)}", field="alq.layers")
        self.states = []
        for i, (m, st) in enumerate(zip(self.layers, layers)):
            s = _State(m, m.weight_quant)
            s.load(st, f"alq.layers[{i}]")
            s.write()
            m.quantize = False
            self.states.append(s)

    def _moments(self, s: _State):
        grad = s.layer.weight.grad
        if grad is None:
            raise VecQError("ALQTrainer.step() needs loss.backward() first", field="grad")
        g = grad.detach().reshape(s.w2.shape).double()
        s.t += 1
        s.m.mul_(BETA1).add_(g, alpha=1 - BETA1)
        s.v.mul_(BETA2).addcmul_(g, g, value=1 - BETA2)
        m_hat = s.m / (1 - BETA1**s.t)
        v_hat = s.v / (1 - BETA2**s.t)
        return m_hat, (v_hat.sqrt() + ADAM_EPS) / self.lr

    def step(self) -> None:
        """One loss-aware alpha step and one basis step per layer (the gradient must be fresh)."""
        for s in self.states:
            g, h = self._moments(s)
            w_hat = s.w_hat()
            s.alpha = loss_aware_alpha(w_hat, s.B, s.on, g, h)
            s.B = loss_aware_bases(s.B, s.alpha, s.on, w_hat, g, h, s.q.top_k)
            s.alpha = loss_aware_alpha(w_hat, s.B, s.on, g, h)
            s.sort()
            s.write()
            s.layer.weight.grad = None

    # --- pruning ------------------------------------------------------------------------------
    def average_bits(self) -> float:
        """Average bases per weight over every ALQ layer."""
        used = sum(int((s.on.sum(1) * s.w2.shape[1]).sum()) for s in self.states)
        total = sum(s.w2.numel() for s in self.states)
        return used / total

    def target(self) -> float:
        return min(s.q.target_bits for s in self.states)

    def prune(self, rounds: int | None = None) -> float:
        """Pruning rounds (``None``: until the target is reached): each removes up to
        ``prune_rate`` of the remaining bases, the cheapest last-bases first, and stops the
        moment the average is at most the target (so it ends within one basis of it).
        Returns the average bits per weight."""
        target = self.target()
        rate = min(s.q.prune_rate for s in self.states)
        total = sum(s.w2.numel() for s in self.states)
        done = 0
        while self.average_bits() > target and (rounds is None or done < rounds):
            cands = []  # (cost, state index, group)
            for si, s in enumerate(self.states):
                if s.m.abs().sum() == 0:
                    g, h = torch.zeros_like(s.w2), torch.full_like(s.w2, 1.0 / self.lr)
                else:
                    g = s.m / (1 - BETA1**s.t)
                    h = ((s.v / (1 - BETA2**s.t)).sqrt() + ADAM_EPS) / self.lr
                cost = prune_costs(s.B, s.alpha, g, h)
                last = s.on.sum(1) - 1
                for grp in torch.nonzero(last >= 0).flatten().tolist():
                    cands.append((float(cost[grp, last[grp]]), si, grp))
            if not cands:
                break
            cands.sort()
            before = [s.w_hat() for s in self.states]
            remaining = sum(int(s.on.sum()) for s in self.states)
            budget = max(1, int(rate * remaining))
            used = sum(int((s.on.sum(1) * s.w2.shape[1]).sum()) for s in self.states)
            for _, si, grp in cands[:budget]:
                if used / total <= target:
                    break
                s = self.states[si]
                i = int(s.on[grp].sum()) - 1
                s.on[grp, i] = False
                s.alpha[grp, i] = 0.0
                s.B[grp, :, i] = 0.0
                used -= s.w2.shape[1]
            for s, w_old in zip(self.states, before):  # least-squares alpha of the remaining bases
                s.alpha = least_squares_alpha(w_old, s.B, s.on)
                s.sort()
                s.write()
            done += 1
        return self.average_bits()

    def finish(self) -> None:
        """Hand the pruned structure to the quantisers and switch on STE training/export."""
        for s in self.states:
            s.write()
            s.q.counts = s.counts()
            s.layer.quantize = True

