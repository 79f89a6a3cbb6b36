"""SQ's stage schedule: the quantisation ratio r steps 50 % -> 75 % -> 87.5 % -> 100 %
(:data:`vecq_hw.quant.sq.SQ_STAGES`), each stage continuing from the previous weights.

``set_sq_ratio(model, r)`` sets r on every SQ weight quantiser of a model;
``stage_ratio(step, total, stages)`` is the r of a training step when ``total`` steps are split
into equal stages (a caller's loop calls ``set_sq_ratio(model, stage_ratio(step, total))`` each
step or epoch). The last stage is always r = 100 %, the form that is exported.
"""

from __future__ import annotations

from torch import nn

from vecq_hw.errors import VecQError
from vecq_hw.quant.sq import SQ, SQ_STAGES, check_ratio


def sq_quantizers(model: nn.Module) -> list[SQ]:
    return [m._wq for m in model.modules() if isinstance(getattr(m, "_wq", None), SQ)]


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
