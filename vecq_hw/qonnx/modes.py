"""Our requantisation modes as QONNX ``Quant`` attributes, both ways (named once).

QONNX's ``Quant`` (qonnx ``intquant.int_quant``) divides by the scale, clamps to the integer
range of (bitwidth, signed, narrow), rounds with ``rounding_mode`` (``resolve_rounding_mode``),
and multiplies back. Clamping to integer bounds before a monotone rounding equals rounding
before saturating (ap_types' order), so AP_SAT is ``narrow=0`` and AP_SAT_SYM on a signed type
is ``narrow=1``. QONNX cannot wrap: AP_WRAP, AP_SAT_ZERO and saturation bits N > 0 are written
only where the value provably never leaves the type (then every overflow mode is the identity).

Rounding, t being the value in units of the output LSB:

* five ap_types modes have a QONNX name: AP_TRN = FLOOR, AP_RND_CONV = ROUND (numpy's
  ``np.round``: ties to even), AP_RND_ZERO = HALF_DOWN, AP_RND_INF = HALF_UP, AP_TRN_ZERO = DOWN;
* AP_RND (ties toward +inf) is floor(t + 1/2): FLOOR after adding half an output LSB;
* AP_RND_MIN_INF (ties toward -inf) is ceil(t - 1/2) = floor(t + 1/2 - 2^-r) when t lies on a
  grid of 2^-r (r = the fractional bits rounded away, r >= 1): FLOOR after adding that offset.

hls4ml 1.3.0 reads only ROUND and FLOOR (``hls4ml/model/optimizer/passes/quant_opt.py``,
``_calculate_precision_quantizer``), so the offset forms keep the two commonest modes (AP_RND,
AP_TRN) and AP_RND_MIN_INF inside what hls4ml converts.
"""

from __future__ import annotations

#: ap_types rounding -> (QONNX rounding_mode, offset kind added before it: None, 'half', 'half_down')
ROUND_OUT = {
    "AP_TRN": ("FLOOR", None),
    "AP_RND_CONV": ("ROUND", None),
    "AP_RND": ("FLOOR", "half"),
    "AP_RND_MIN_INF": ("FLOOR", "half_down"),
    "AP_RND_ZERO": ("HALF_DOWN", None),
    "AP_RND_INF": ("HALF_UP", None),
    "AP_TRN_ZERO": ("DOWN", None),
}

#: QONNX rounding_mode (upper case) -> ap_types rounding; CEIL and UP have no ap_types mode
ROUND_IN = {
    "ROUND": "AP_RND_CONV",
    "HALF_EVEN": "AP_RND_CONV",
    "FLOOR": "AP_TRN",
    "HALF_UP": "AP_RND_INF",
    "HALF_DOWN": "AP_RND_ZERO",
    "DOWN": "AP_TRN_ZERO",
}

def rounding_out(rounding: str, dropped_bits: int) -> tuple[str, int]:
    """(QONNX rounding_mode, offset) for requantising a value with ``dropped_bits`` fractional
    bits more than the target: the offset, in units of 2^-dropped_bits of the target LSB, is added
    before the Quant. No bits dropped: no rounding happens, FLOOR is the identity."""
    if dropped_bits <= 0:
        return "FLOOR", 0
    mode, offset = ROUND_OUT[rounding]
    half = 1 << (dropped_bits - 1)
    return mode, {None: 0, "half": half, "half_down": half - 1}[offset]


def narrow_for(overflow: str, signed: bool) -> int:
    """QONNX ``narrow`` for a saturating mode (AP_SAT_SYM on signed types drops the minimum)."""
    return int(signed and overflow == "AP_SAT_SYM")
