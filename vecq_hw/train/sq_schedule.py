"""SQ's stage schedule: the quantisation ratio r steps 50 % -> 75 % -> 87.5 % -> 100 %
(:data:`vecq_hw.quant.sq.SQ_STAGES`), each stage continuing from the previous weights.

``set_sq_ratio(model, r)`` sets r on every SQ weight quantiser of a model;
``stage_ratio(step, total, stages)`` is the r of a training step when ``total`` steps are split
into equal stages (a caller's loop calls ``set_sq_ratio(model, stage_ratio(step, total))`` each
step or epoch). The last stage is always r = 100 %, the form that is exported.
:class:`SQProcedure` does that per epoch of the QAT phase inside ``vecq-hw train``.
"""

from __future__ import annotations

from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.quant.registry import register_procedure
from vecq_hw.quant.sq import SQ, SQ_STAGES, check_ratio

from .procedure import Phase, QuantProcedure


def sq_quantizers(model: nn.Module) -> list[SQ]:
    return [m.weight_quant for m in model.modules() if isinstance(getattr(m, "weight_quant", None), SQ)]


def set_sq_ratio(model: nn.Module, ratio: float) -> int:
    """Set ``ratio`` on every SQ quantiser of ``model``; returns how many there were."""
    r = check_ratio(ratio)
    qs = sq_quantizers(model)
    for q in qs:
        q.ratio = r
    return len(qs)


def stage_ratio(step: int, total: int, stages: tuple[float, ...] = SQ_STAGES) -> float:
    """The ratio of ``step`` (0-based) of ``total`` steps split into len(stages) equal stages."""
    if total <= 0 or not 0 <= step:
        raise VecQError(f"expected 0 <= step and total > 0, got step={step}, total={total}", field="step")
    if not stages or stages[-1] != 1.0:
        raise VecQError(f"the last SQ stage must be 1.0 (fully quantised), got {stages}", field="stages")
    return float(stages[min(len(stages) - 1, step * len(stages) // total)])


@register_procedure(SQ)
class SQProcedure(QuantProcedure):
    """SQ in ``vecq-hw train``: the ratio of each epoch of a quantised phase is its stage's
    (the epochs split into equal stages). Stateless: the epoch alone decides it."""

    title = "SQ"

    def start_epoch(self, phase: Phase, epoch: int) -> None:
        if phase.quantize:
            set_sq_ratio(self.model, stage_ratio(epoch, phase.epochs))
