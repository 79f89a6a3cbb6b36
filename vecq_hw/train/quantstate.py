"""Running state that the weight quantisers keep outside the state_dict.

* adaptive VecQ with ``refresh_every = N`` (vecq_hw/quant/vecq.py, adaptive.py) caches the
  searched step and counts its forward calls: the step is searched again on every N-th call;
* SQ (vecq_hw/quant/sq.py) draws its full-precision channels from its own torch.Generator
  on every forward call (and wraps a base quantiser, which may itself be adaptive VecQ).

That state decides the forward pass, so it must be the same on every rank of a distributed
run and survive a checkpoint; it is read and written here as plain data, per layer name:
``{"calls": int, "step": tensor | None, "generator": uint8 tensor, "base": {...}}`` (only the
keys that quantiser has). The fixed-point activation quantisers (``FixedQuant``) keep no state
(fixed types, no EMA ranges); table VecQ, µL2Q and the others are pure functions of the weights.
"""

from __future__ import annotations

import torch
from torch import nn


def _quantizer(m: nn.Module):
    """The quantiser a layer's forward uses (None in float mode or without one)."""
    if not getattr(m, "quantize", False):
        return None  # float mode: forward does not call the quantiser
    return getattr(m, "weight_quant", None)


def _state_of(q) -> dict:
    s: dict = {}
    if hasattr(q, "_calls") and getattr(q, "adaptive", False):  # table VecQ never counts
        cache = getattr(q, "_step_cache", None)
        s["calls"] = int(q._calls)
        s["step"] = None if cache is None else cache[1].detach().to("cpu").clone()
    gen = getattr(q, "_gen", None)
    if isinstance(gen, torch.Generator):
        s["generator"] = gen.get_state()
    base = getattr(q, "_base", None)
    if base is not None and _state_of(base):
        s["base"] = _state_of(base)
    return s


def _set_state(q, s: dict, weight: torch.Tensor) -> None:
    if "calls" in s and hasattr(q, "_calls"):
        q._calls = int(s["calls"])
        if s["step"] is None:
            q._step_cache = None
        else:  # keyed to this process's weight the way adaptive.py's _torch_step keys it
            rows = q._rows(weight.detach())
            key = (tuple(rows.shape), rows.dtype, rows.device, rows.data_ptr())
            q._step_cache = (key, s["step"].to(device=weight.device, dtype=weight.dtype))
    if "generator" in s and isinstance(getattr(q, "_gen", None), torch.Generator):
        q._gen.set_state(s["generator"])
    if "base" in s and getattr(q, "_base", None) is not None:
        _set_state(q._base, s["base"], weight)


def _stateful(model: nn.Module):
    """(name, layer, quantiser, state) of every quantised layer whose quantiser keeps state."""
    for name, m in model.named_modules():
        q = _quantizer(m)
        if q is not None:
            s = _state_of(q)
            if s:
                yield name, m, q, s


def quant_state(model: nn.Module) -> dict:
    """The quantisers' running state as plain data (CPU tensors)."""
    return {name: s for name, _m, _q, s in _stateful(model)}


def load_quant_state(model: nn.Module, state: dict) -> None:
    """Put ``state`` (from :func:`quant_state`) into the model's quantisers (layers in float
    mode or absent are skipped: they have no running state)."""
    modules = dict(model.named_modules())
    for name, s in state.items():
        m = modules.get(name)
        q = None if m is None else _quantizer(m)
        if q is not None:
            _set_state(q, s, m.weight)


def _reads_state(q) -> bool:
    if getattr(q, "refresh_every", 1) > 1 or isinstance(getattr(q, "_gen", None), torch.Generator):
        return True
    base = getattr(q, "_base", None)
    return base is not None and _reads_state(base)


def needs_step_sync(model: nn.Module) -> bool:
    """True when some quantiser's state shapes its next forward pass (a cached step reused,
    random sampling): it is then synchronised after every optimizer step."""
    return any(_reads_state(q) for _n, _m, q, _s in _stateful(model))


def state_equal(a, b) -> bool:
    """Exact equality of two states (nested dicts of ints, None and tensors)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(state_equal(a[k], b[k]) for k in a)
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    return type(a) is type(b) and a == b
