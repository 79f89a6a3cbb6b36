"""ALQ's procedure inside ``vecq-hw train`` (issue 14): which epochs run which ALQ step.

A recipe with ``quant.method: alq`` trains in three phases (:func:`.loop._phases`):

1. ``float``: ``train.float_epochs`` of float pre-training (ALQ's init binarises a trained
   float weight, as the reference code's PRETRAIN step);
2. ``alq``: ``train.alq.loss_aware_epochs`` epochs of ALQ's loss-aware steps. At its start
   :meth:`ALQSchedule.start` runs the greedy init; after every optimizer step (the optimizer
   holds every parameter *except* the ALQ weights: :meth:`parameters`) one loss-aware alpha +
   basis step (:meth:`.alq_steps.ALQTrainer.step`), with the learning rate that step used;
   every ``train.alq.prune_every`` steps (null: at the end of each loss-aware epoch) one
   pruning round removes up to ``quant.prune_rate`` of the remaining bases. The last
   loss-aware epoch prunes until the average bases per weight is at most ``quant.target_bits``
   (so the run always ends within one basis of it) and hands the counts to the quantisers;
3. ``qat``: the rest of ``train.epochs``: STE post-training with the pruned counts.

State kept in the checkpoint (:meth:`state` / :meth:`load`): the stage, the loss-aware steps
done (the pruning clock), the pruning rounds done, and the trainer's exact state (bases,
alphas, kept bases per group, Adam's moments); after the loss-aware phase, the per-group
counts. A resumed run therefore continues the same schedule bit for bit.

Distributed runs: the ALQ state is DETERMINISTIC, not broadcast. Every rank starts from the
same weights, DDP averages the ALQ weights' gradients like any other, and the steps and the
pruning are float64 functions of (state, averaged gradient, learning rate) only, so every rank
computes the same state; :func:`check_identical` verifies that after every epoch (a hash of
the state gathered from every rank) and refuses to continue otherwise.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from torch import nn

from ..errors import ToolError, VecQError
from ..quant.alq import ALQ
from .alq_steps import ALQTrainer, alq_layers

STAGES = ("float", "loss_aware", "post")


def _is_alq(m: nn.Module) -> bool:
    return isinstance(getattr(m, "_wq", None), ALQ)


def alq_counts(model: nn.Module) -> dict[str, list[int]]:
    """Per ALQ layer (by module name) the bases kept per group, for the files a run writes;
    layers whose quantiser was never pruned (counts None) are left out."""
    out = {}
    for name, m in model.named_modules():
        if _is_alq(m) and m._wq.counts is not None:
            out[name] = [int(c) for c in np.asarray(m._wq.counts).reshape(-1)]
    return out


def load_alq_counts(model: nn.Module, counts: dict, where: str = "alq_counts") -> None:
    """Put :func:`alq_counts` back into the model's ALQ quantisers."""
    modules = dict(model.named_modules())
    for name, c in counts.items():
        m = modules.get(name)
        if m is None or not _is_alq(m):
            raise VecQError(f"no ALQ layer named {name!r} in the model", field=f"{where}.{name}")
        groups = m.weight.shape[0] if m._wq.per_channel else 1
        arr = np.asarray(c, dtype=np.int64).reshape(-1)
        if arr.size != groups or arr.min(initial=0) < 0 or arr.max(initial=0) > m._wq.max_bases:
            raise VecQError(f"expected {groups} basis counts in 0..{m._wq.max_bases}", field=f"{where}.{name}")
        m._wq.counts = arr


def average_bits(model: nn.Module) -> float:
    """Average bases per weight over every ALQ layer from the quantisers' counts (max_bases
    where not pruned): sum over groups of I_g * (weights in the group) / all weights."""
    used = total = 0
    for m in alq_layers(model):
        q = m._wq
        groups = m.weight.shape[0] if q.per_channel else 1
        per_group = m.weight.numel() // groups
        c = np.full(groups, q.max_bases) if q.counts is None else np.asarray(q.counts)
        used += int(c.sum()) * per_group
        total += m.weight.numel()
    return used / total if total else 0.0


class ALQSchedule:
    """Drives :class:`.alq_steps.ALQTrainer` from the training loop (see the module)."""

    def __init__(self, model: nn.Module, prune_every: int | None):
        if not alq_layers(model):
            raise VecQError("quant.method is alq but the model has no ALQ layer", field="quant.method")
        self.model, self.prune_every = model, prune_every
        self.trainer: ALQTrainer | None = None
        self.stage = "float"
        self.steps = 0          # loss-aware steps done: the pruning clock
        self.prune_rounds = 0   # pruning rounds run (scheduled ones; the final prune counts as one)

    # --- the phases ---------------------------------------------------------------------------
    def start(self, lr: float) -> None:
        """Greedy init of every ALQ layer from its current (float) weight."""
        self.trainer = ALQTrainer(self.model, lr=lr)
        self.trainer.init()
        self.stage = "loss_aware"

    def parameters(self) -> list[nn.Parameter]:
        """What the ordinary optimizer trains in the loss-aware phase (not the ALQ weights)."""
        return self.trainer.other_parameters()

    def after_step(self, lr: float) -> None:
        """One loss-aware step (``lr``: the learning rate the optimizer step just used; it sets
        the curvature h = (sqrt(v_hat) + eps) / lr) and, on the clock, one pruning round."""
        self.trainer.lr = float(lr)
        self.trainer.step()
        self.steps += 1
        if self.prune_every is not None and self.steps % self.prune_every == 0:
            self._prune_round()

    def end_epoch(self, last: bool) -> None:
        """After a loss-aware epoch; ``last``: the phase's last epoch (prune to the target and
        switch the layers to quantised STE training with the pruned counts)."""
        if self.prune_every is None:
            self._prune_round()
        if last:
            if self.trainer.average_bits() > self.trainer.target():
                self.trainer.prune()
                self.prune_rounds += 1
            self.trainer.finish()
            self.stage = "post"

    def _prune_round(self) -> None:
        if self.trainer.average_bits() > self.trainer.target():
            self.trainer.prune(rounds=1)
            self.prune_rounds += 1

    def average_bits(self) -> float:
        """Average bases per weight now (the trainer's kept bases while it runs)."""
        if self.stage == "loss_aware":
            return self.trainer.average_bits()
        return average_bits(self.model)

    # --- checkpoint ---------------------------------------------------------------------------
    def state(self) -> dict:
        s = {"stage": self.stage, "steps": self.steps, "prune_rounds": self.prune_rounds,
             "counts": alq_counts(self.model)}
        if self.stage == "loss_aware":
            s["trainer"] = self.trainer.state_dict()
        return s

    def load(self, state: dict, lr: float) -> None:
        """Continue from :meth:`state` (call after the model's state_dict is loaded)."""
        if not isinstance(state, dict) or state.get("stage") not in STAGES:
            raise VecQError("the checkpoint has no valid ALQ state (stage)", field="alq.stage")
        self.stage = state["stage"]
        self.steps, self.prune_rounds = int(state["steps"]), int(state["prune_rounds"])
        load_alq_counts(self.model, state.get("counts", {}), "alq.counts")
        if self.stage == "loss_aware":
            self.trainer = ALQTrainer(self.model, lr=lr)
            self.trainer.load_state_dict(state["trainer"])


def _digest(state: dict) -> str:
    h = hashlib.sha256()

    def add(obj):
        if isinstance(obj, dict):
            for k in sorted(obj):
                h.update(f"{k}:".encode())
                add(obj[k])
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                add(v)
        elif isinstance(obj, torch.Tensor):
            h.update(obj.detach().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
        else:
            h.update(repr(obj).encode())

    add(state)
    return h.hexdigest()


def check_identical(d, sched: ALQSchedule | None) -> None:
    """Distributed run: raise ToolError unless every rank holds the same ALQ state (it is
    computed, not broadcast: see the module docstring)."""
    if sched is None or not d.active:
        return
    import torch.distributed as tdist

    prints = [None] * d.world
    tdist.all_gather_object(prints, _digest(sched.state()))
    if len(set(prints)) != 1:
        bad = [r for r, p in enumerate(prints) if p != prints[0]]
        raise ToolError(f"distributed training: ranks {bad} hold a different ALQ state (bases, "
                        f"alphas, pruning) than rank 0; refusing to continue")
