"""SRQ's activation quantiser exports as the FixedQuant it is at its deployed width: the
FixedQuant handler, registered for :class:`vecq_hw.nn.SRQActivation` (whose ``forward`` is its
own: SRQ's estimator in training, exactly ``fixed_quantize`` at ``fixed_type`` in eval). SRQ's
weights need nothing: codes of the 'int' table and a per-channel scale, like any quantiser."""

from __future__ import annotations

from ..nn import SRQActivation
from .handlers import HANDLERS, fixed_quant

HANDLERS.modules[SRQActivation] = fixed_quant
