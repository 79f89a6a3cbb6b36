"""Fixed-point types in hls4ml's spellings, and C names (the base every other hls/ module uses)."""

from __future__ import annotations

import re

from hls4ml.model.types import FixedPrecisionType, IntegerPrecisionType

from ..errors import VecQError
from ..fixed import FixedType


def precision_of(t: FixedType):
    """hls4ml precision object for a FixedType (all modes explicit)."""
    if t.overflow == "AP_WRAP_SM":
        raise VecQError(f"{t}: AP_WRAP_SM is not supported by the HLS generation (hls4ml has no such mode)")
    if t.kind == "int":
        return IntegerPrecisionType(width=t.width, signed=t.signed)
    return FixedPrecisionType(width=t.width, integer=t.integer, signed=t.signed, rounding_mode=t.rounding[3:],
                              saturation_mode=t.overflow[3:], saturation_bits=t.sat_bits)


def precision_string(t: FixedType) -> str:
    """Fully explicit spelling for hls4ml's config parser."""
    if t.kind == "int":
        return str(t)
    u = "" if t.signed else "u"
    return f"ap_{u}fixed<{t.width},{t.integer},{t.rounding},{t.overflow},{t.sat_bits}>"


def same_precision(prec, t: FixedType) -> bool:
    """An hls4ml precision object is exactly the FixedType (width, modes, everything)."""
    want = precision_of(t)
    if (isinstance(prec, FixedPrecisionType) != isinstance(want, FixedPrecisionType) or prec.width != want.width
            or prec.signed != want.signed):
        return False
    if isinstance(want, FixedPrecisionType):
        return (prec.integer == want.integer and prec.rounding_mode == want.rounding_mode
                and prec.saturation_mode == want.saturation_mode
                and (prec.saturation_bits or 0) == (want.saturation_bits or 0))
    return True


def hls_name(name: str, taken: set[str]) -> str:
    """A C identifier for a layer name, unique within the model."""
    base = re.sub(r"\W", "_", name)
    if not base or base[0].isdigit():
        base = "l_" + base
    if base.lower() in ("input",):
        base = base + "_1"
    out, i = base, 1
    while out.lower() in taken:
        i += 1
        out = f"{base}_{i}"
    taken.add(out.lower())
    return out

