"""ALQ's procedure inside ``vecq-hw train`` (issue 14): :class:`ALQProcedure`, the hooks of
:class:`.procedure.QuantProcedure` registered for the :class:`~vecq_hw.quant.alq.ALQ` quantiser.

A recipe with ``quant.method: alq`` trains in three phases (:meth:`ALQProcedure.phases`):

1. ``float``: ``train.float_epochs`` of float pre-training (ALQ's init binarises a trained
   float weight, as the reference code's PRETRAIN step);
2. ``alq``: ``train.alq.loss_aware_epochs`` epochs of ALQ's loss-aware steps. At its start
   (``start_phase``) the greedy init; after every optimizer step (the optimizer holds every
   parameter *except* the ALQ weights: ``excluded_parameters``) one loss-aware alpha + basis
   step (:meth:`.alq_steps.ALQTrainer.step`), with the learning rate that step used; every
   ``train.alq.prune_every`` steps (null: at the end of each loss-aware epoch) one pruning round
   removes up to ``quant.prune_rate`` of the remaining bases. The last loss-aware epoch prunes
   until the average bases per weight is at most ``quant.target_bits`` (so the run always ends
   within one basis of it) and hands the counts to the quantisers;
3. ``qat``: the rest of ``train.epochs``: STE post-training with the pruned counts.

State kept in the checkpoint (``state`` / ``load_state``, under ``alq``): the stage, the
loss-aware steps done (the pruning clock), the pruning rounds done, and the trainer's exact
state (bases, alphas, kept bases per group, Adam's moments); after the loss-aware phase, the
per-group counts. A resumed run therefore continues the same schedule bit for bit. model.pt
carries the per-group counts (``alq_counts``: they are not in the state_dict).

Distributed runs: the ALQ state is DETERMINISTIC, not broadcast. Every rank starts from the
same weights, DDP averages the ALQ weights' gradients like any other, and the steps and the
pruning are float64 functions of (state, averaged gradient, learning rate) only, so every rank
computes the same state; the Trainer verifies that after every epoch (a hash of the state
gathered from every rank, :func:`.procedure.check_state_identical`) and refuses to continue otherwise.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from torch import nn

from ..errors import VecQError
from ..quant.alq import ALQ
from ..quant.registry import register_procedure
from .alq_steps import ALQTrainer, alq_layers
from .procedure import QAT, Phase, QuantProcedure
from .recipe import Spec, walk

STAGES = ("float", "loss_aware", "post")


def _is_alq(m: nn.Module) -> bool:
    return isinstance(getattr(m, "weight_quant", None), ALQ)


def alq_counts(model: nn.Module) -> dict[str, list[int]]:
    """Per ALQ layer (by module name) the bases kept per group, for the files a run writes;
    layers whose quantiser was never pruned (counts None) are left out."""
    out = {}
    for name, m in model.named_modules():
        if _is_alq(m) and m.weight_quant.counts is not None:
            out[name] = [int(c) for c in np.asarray(m.weight_quant.counts).reshape(-1)]
    return out


def load_alq_counts(model: nn.Module, counts: dict, where: str = "alq_counts") -> None:
    """Put :func:`alq_counts` back into the model's ALQ quantisers."""
    modules = dict(model.named_modules())
    for name, c in counts.items():
        m = modules.get(name)
        if m is None or not _is_alq(m):
            raise VecQError(f"no ALQ layer named {name!r} in the model", field=f"{where}.{name}")
        groups = m.weight.shape[0] if m.weight_quant.per_channel else 1
        arr = np.asarray(c, dtype=np.int64).reshape(-1)
        if arr.size != groups or arr.min(initial=0) < 0 or arr.max(initial=0) > m.weight_quant.max_bases:
            raise VecQError(f"expected {groups} basis counts in 0..{m.weight_quant.max_bases}", field=f"{where}.{name}")
        m.weight_quant.counts = arr


def average_bits(model: nn.Module) -> float:
    """Average bases per weight over every ALQ layer from the quantisers' counts (max_bases
    where not pruned): sum over groups of I_g * (weights in the group) / all weights."""
    used = total = 0
    for m in alq_layers(model):
        q = m.weight_quant
        groups = m.weight.shape[0] if q.per_channel else 1
        per_group = m.weight.numel() // groups
        c = np.full(groups, q.max_bases) if q.counts is None else np.asarray(q.counts)
        used += int(c.sum()) * per_group
        total += m.weight.numel()
    return used / total if total else 0.0


@register_procedure(ALQ)
class ALQProcedure(QuantProcedure):
    """Drives :class:`.alq_steps.ALQTrainer` from the Trainer (see the module)."""

    key = "alq"
    title = "ALQ"
    #: train.alq (the per-round pruning rate, top-k fraction, max bases and target average
    #: bits are the quantiser's own options, quant.*)
    SCHEMA = {"loss_aware_epochs": Spec("int", None, lo=1, hi=10000, nullable=True),
              "prune_every": Spec("int", None, lo=1, nullable=True)}

    def __init__(self, model: nn.Module, recipe: dict):
        super().__init__(model, recipe)
        if not alq_layers(model):
            raise VecQError("quant.method is alq but the model has no ALQ layer", field="quant.method")
        self.prune_every = self.options["prune_every"]
        self.trainer: ALQTrainer | None = None
        self.stage = "float"
        self.steps = 0          # loss-aware steps done: the pruning clock
        self.prune_rounds = 0   # pruning rounds run (scheduled ones; the final prune counts as one)

    @classmethod
    def check_options(cls, options, recipe: dict, fail) -> dict:
        """train.alq, always filled in (defaults); loss_aware_epochs: at most train.epochs."""
        if options is not None and not isinstance(options, dict):
            fail("train.alq", f"expected a mapping with fields {', '.join(cls.SCHEMA)}, got "
                              f"{type(options).__name__}")
        cfg = walk(cls.SCHEMA, {} if options is None else options, "train.alq.", fail)
        epochs = recipe["train"]["epochs"]
        if cfg["loss_aware_epochs"] is None:
            cfg["loss_aware_epochs"] = max(1, epochs // 2)
        elif cfg["loss_aware_epochs"] > epochs:
            fail("train.alq.loss_aware_epochs", f"expected at most train.epochs = {epochs} (the loss-aware "
                                                f"epochs are the first of them), got {cfg['loss_aware_epochs']}")
        return cfg

    # --- the phases ---------------------------------------------------------------------------
    def phases(self, phases: list[Phase]) -> list[Phase]:
        """QAT becomes ``alq`` (the first loss_aware_epochs) then ``qat`` (the rest, if any)."""
        la = self.options["loss_aware_epochs"]
        out = []
        for p in phases:
            if p.name != QAT:
                out.append(p)
                continue
            out.append(replace(p, name="alq", epochs=la))
            if p.epochs > la:
                out.append(replace(p, epochs=p.epochs - la))
        return out

    def start_phase(self, phase: Phase) -> None:
        """The loss-aware phase: greedy init of every ALQ layer from its current (float) weight;
        the layers then run in float mode on w_hat."""
        if phase.name == "alq":
            self.trainer = ALQTrainer(self.model, lr=phase.lr)
            self.trainer.init()
            self.stage = "loss_aware"

    def excluded_parameters(self, phase: Phase) -> list[nn.Parameter]:
        """The loss-aware phase's own steps update the ALQ weights, not the optimizer."""
        return [m.weight for m in alq_layers(self.model)] if phase.name == "alq" else []

    def after_step(self, lr: float) -> None:
        """One loss-aware step (``lr``: the learning rate the optimizer step just used; it sets
        the curvature h = (sqrt(v_hat) + eps) / lr) and, on the clock, one pruning round."""
        if self.stage != "loss_aware":
            return
        self.trainer.lr = float(lr)
        self.trainer.step()
        self.steps += 1
        if self.prune_every is not None and self.steps % self.prune_every == 0:
            self._prune_round()

    def end_epoch(self, phase: Phase, last: bool) -> None:
        """After a loss-aware epoch; ``last``: the phase's last epoch (prune to the target and
        switch the layers to quantised STE training with the pruned counts)."""
        if phase.name != "alq":
            return
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

    # --- progress, results --------------------------------------------------------------------
    def progress(self, phase: Phase) -> dict:
        return {"avg_bits": self.average_bits()} if phase.quantize else {}

    def progress_text(self, fields: dict) -> str:
        return f" | {fields['avg_bits']:.3f} bits/weight" if "avg_bits" in fields else ""

    def metrics(self) -> dict:
        return {"alq_average_bits": self.average_bits()}

    def model_extras(self) -> dict:
        return {"alq_counts": alq_counts(self.model)}

    def load_model_extras(self, blob: dict) -> None:
        if "alq_counts" in blob:
            load_alq_counts(self.model, blob["alq_counts"])

    # --- checkpoint ---------------------------------------------------------------------------
    def state(self) -> dict:
        s = {"stage": self.stage, "steps": self.steps, "prune_rounds": self.prune_rounds,
             "counts": alq_counts(self.model)}
        if self.stage == "loss_aware":
            s["trainer"] = self.trainer.state_dict()
        return s

    def load_state(self, state, phase: Phase) -> None:
        """Continue from :meth:`state` (after the model's state_dict is loaded; ``phase``: the
        last phase run, whose learning rate the trainer starts from)."""
        if not isinstance(state, dict) or state.get("stage") not in STAGES:
            raise VecQError("the checkpoint has no valid ALQ state (stage)", field="alq.stage")
        self.stage = state["stage"]
        self.steps, self.prune_rounds = int(state["steps"]), int(state["prune_rounds"])
        load_alq_counts(self.model, state.get("counts", {}), "alq.counts")
        if self.stage == "loss_aware":
            self.trainer = ALQTrainer(self.model, lr=phase.lr)
            self.trainer.load_state_dict(state["trainer"])
