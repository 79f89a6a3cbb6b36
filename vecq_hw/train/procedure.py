"""The quantiser hook protocol: how a quantiser with its own training procedure joins the Trainer.

A procedure is a :class:`QuantProcedure` subclass registered beside its quantiser class::

    @register_procedure(MyQuantizer)          # vecq_hw.quant.registry
    class MyProcedure(QuantProcedure):
        key = "mine"                          # train.mine in recipes, "mine" in checkpoints
        def start_epoch(self, phase, epoch): ...

The Trainer (:mod:`.trainer`) looks the procedure up from the recipe's ``quant.method``
(:func:`procedure_for`; a quantiser without one gets this base class: plain STE QAT) and calls
the hooks below; it never names a method. Every hook is optional. In the order they run:

=============================================  ==================================================
``check_options(options, recipe, fail)``       classmethod, when the recipe is validated: the
                                               ``train.<key>`` section (None when absent) ->
                                               its normalised dict (None: nothing stored);
                                               ``fail(field, message)`` refuses it
``prepare_model(model, recipe)``               classmethod, whenever the recipe's model is
                                               built (training and ``load_run``), before any
                                               weights are loaded: may replace modules (SRQ's
                                               activation quantisers)
``__init__(model, recipe)``                    once the model is built (``self.options`` holds
                                               ``recipe["train"][key]``)
``set_training_data(train)``                   once, when the data is loaded: the training set
                                               (a TensorDataset of images and labels)
``phases(phases)``                             once: the default ``[float (if float_epochs),
                                               qat]`` -> the run's :class:`Phase` list
``load_state(state, phase)``                   resuming: ``state()`` from the checkpoint, after
                                               the weights; ``phase``: the last one run
``start_phase(phase)``                         a phase begins, after the layers were switched
                                               to ``phase.quantize`` and before its optimizer
``excluded_parameters(phase)``                 parameters the phase's optimizer leaves out
                                               (the procedure updates them itself)
``loss(phase)``                                before each epoch's training pass: the steps'
                                               loss, None (the cross-entropy with the labels)
                                               or ``fn(x, out, y)`` -> a scalar tensor
``start_epoch(phase, epoch)``                  before each epoch (``epoch`` counts from 0 in
                                               the phase)
``before_step()``                              before each batch's forward pass
``penalty()``                                  after the forward pass: a scalar tensor added
                                               to the batch's loss before backward (None:
                                               nothing; the logged loss leaves it out)
``after_step(lr)``                             after each optimizer (and scheduler) step;
                                               ``lr``: the learning rate that step used
``end_epoch(phase, last)``                     after the epoch's last step, before evaluation;
                                               ``last``: the phase's last epoch
``progress(phase)``                            fields added to the epoch's log record
``progress_text(fields)``                      what the progress line shows of them
``state()``                                    plain data for the checkpoint (under ``key``),
                                               after every epoch
``metrics()``                                  entries added to metrics.json at the end
``model_extras()``                             entries saved with model.pt at the end
``load_model_extras(blob)``                    ``load_run``: model.pt's entries, after the
                                               weights
=============================================  ==================================================

A procedure with a ``key`` keeps state: in a distributed run the Trainer compares a hash of
``state()`` across ranks after every epoch and refuses to continue if they differ, so the state
must be a deterministic function of what every rank shares (weights, averaged gradients, the
epoch). The quantisers' own running state (adaptive step caches, SQ's generator) is not the
procedure's: the Trainer broadcasts it from rank 0 (:mod:`.quantstate`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import nn

from ..errors import ToolError, VecQError
from ..quant.registry import PROCEDURES, procedure_class

#: the Trainer's own phases: float pre-training, then QAT with the recipe's quantiser
FLOAT, QAT = "float", "qat"
#: checkpoint entries (and model.pt's state_dict): a procedure's key may be none of them
RESERVED = ("version", "recipe", "epochs_done", "phase", "model", "optimizer", "scheduler", "rng",
            "history", "quant_state", "world_size", "threads", "float_test_acc", "train_time_s",
            "finished", "state_dict")


@dataclass(frozen=True)
class Phase:
    """A run of epochs with one learning rate, optimizer and schedule; ``quantize``: the
    weighted layers quantise (True) or run in float mode; ``start``: the epochs before it."""

    name: str
    epochs: int
    lr: float
    quantize: bool
    start: int = 0


class QuantProcedure:
    """Plain STE QAT: every hook does nothing (see the module for the hooks and their order)."""

    #: the name of its recipe section (``train.<key>``) and checkpoint entry; None: neither
    key: ClassVar[str | None] = None
    #: how messages name it
    title: ClassVar[str] = "QAT"

    def __init__(self, model: nn.Module, recipe: dict):
        self.model, self.recipe = model, recipe
        self.options = recipe["train"].get(self.key) if self.key else None

    @classmethod
    def check_options(cls, options, recipe: dict, fail) -> dict | None:
        if options is not None:
            fail(f"train.{cls.key}", f"expected no train.{cls.key} section for quant.method "
                                     f"{recipe['quant']['method']!r}")
        return None

    def set_training_data(self, train) -> None:
        pass

    @classmethod
    def prepare_model(cls, model: nn.Module, recipe: dict) -> None:
        pass

    def phases(self, phases: list[Phase]) -> list[Phase]:
        return phases

    def loss(self, phase: Phase):
        return None

    def load_state(self, state, phase: Phase) -> None:
        pass

    def start_phase(self, phase: Phase) -> None:
        pass

    def excluded_parameters(self, phase: Phase) -> list[nn.Parameter]:
        return []

    def start_epoch(self, phase: Phase, epoch: int) -> None:
        pass

    def before_step(self) -> None:
        pass

    def penalty(self) -> torch.Tensor | None:
        return None

    def after_step(self, lr: float) -> None:
        pass

    def end_epoch(self, phase: Phase, last: bool) -> None:
        pass

    def progress(self, phase: Phase) -> dict:
        return {}

    def progress_text(self, fields: dict) -> str:
        return "".join(f" | {k} {v}" for k, v in fields.items())

    def state(self) -> dict:
        return {}

    def metrics(self) -> dict:
        return {}

    def model_extras(self) -> dict:
        return {}

    def load_model_extras(self, blob: dict) -> None:
        pass


def procedure_type(method, taken=()) -> type[QuantProcedure]:
    """The training procedure class of quantiser ``method`` (QuantProcedure when it has none),
    checked: a QuantProcedure whose key is an identifier that replaces no checkpoint entry
    (:data:`RESERVED`) and none of ``taken`` (the recipe's train fields)."""
    cls = procedure_class(method, prefix="quant.") or QuantProcedure
    if not (isinstance(cls, type) and issubclass(cls, QuantProcedure)):
        raise VecQError(f"the training procedure registered for {method!r} is {cls!r}, not a "
                        f"QuantProcedure subclass", field="quant.method")
    if cls.key is not None and not _key_ok(cls.key, taken):
        raise VecQError(f"expected a procedure key that is an identifier and none of "
                        f"{', '.join(RESERVED + tuple(taken))}, got {cls.key!r}", field="quant.method")
    return cls


def _key_ok(key, taken=()) -> bool:
    return isinstance(key, str) and key.isidentifier() and key not in RESERVED and key not in taken


def procedure_for(recipe: dict, model: nn.Module) -> QuantProcedure:
    """The training procedure of the recipe's quantiser, built for ``model``."""
    return procedure_type(recipe["quant"]["method"])(model, recipe)


def plan_phases(recipe: dict, proc: QuantProcedure) -> list[Phase]:
    """The run's phases: float pre-training (``train.float_epochs``), then QAT
    (``train.epochs`` at ``train.qat_lr``), as the procedure rearranges them; starts filled."""
    t = recipe["train"]
    default = [Phase(FLOAT, t["float_epochs"], t["lr"], quantize=False)] if t["float_epochs"] else []
    default.append(Phase(QAT, t["epochs"], t["qat_lr"], quantize=True))
    out, start = [], 0
    for p in proc.phases(default):
        if not isinstance(p, Phase) or p.epochs < 1:
            raise TypeError(f"{type(proc).__name__}.phases returned {p!r}: expected Phases of >= 1 epoch")
        out.append(replace(p, start=start))
        start += p.epochs
    return out


def phase_of(phases: list[Phase], epoch: int) -> Phase:
    for p in phases:
        if p.start <= epoch < p.start + p.epochs:
            return p
    raise AssertionError(epoch)


def procedure_options(recipe: dict, sections: dict, fail, taken=()) -> None:
    """Recipe validation: put the recipe's procedure section ``train.<key>`` (from
    ``sections``, the procedure sections the raw ``train`` mapping holds) into
    ``recipe["train"]``, checked by the procedure; a section of another method's procedure is
    refused naming that method. ``taken``: the recipe's own train fields."""
    method = recipe["quant"]["method"]
    try:
        cls = procedure_type(method, taken)
    except VecQError as exc:
        fail(exc.field, exc.detail)
    for qcls, other in PROCEDURES.items():
        key = getattr(other, "key", None)
        if key != cls.key and key in sections:
            fail(f"train.{key}", f"expected no {other.title} schedule: quant.method is {method!r}, "
                                 f"not {qcls.name!r}")
    if cls.key is not None:
        options = cls.check_options(sections.get(cls.key), recipe, fail)
        if options is not None:
            recipe["train"][cls.key] = options


def procedure_keys(taken=()) -> set[str]:
    """The recipe sections (``train.<key>``) the registered procedures own."""
    return {k for k in (getattr(c, "key", None) for c in PROCEDURES.values()) if _key_ok(k, taken)}


# ----------------------------------------------------------------------------- distributed runs

def _digest(state) -> str:
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


def check_state_identical(d, proc: QuantProcedure) -> None:
    """Distributed run: raise ToolError unless every rank holds the same procedure state (it is
    computed on every rank, not broadcast: see the module docstring)."""
    if proc.key is None or not d.active:
        return
    import torch.distributed as tdist

    prints = [None] * d.world
    tdist.all_gather_object(prints, _digest(proc.state()))
    if len(set(prints)) != 1:
        bad = [r for r, p in enumerate(prints) if p != prints[0]]
        raise ToolError(f"distributed training: ranks {bad} hold a different {proc.title} state "
                        f"than rank 0; refusing to continue")
