"""The hold registers of a folded conv with its requantisation overlapped (issue 21), in Verilog
for yosys: what ``costs.requant_hold`` prices.

``vecq_fold_row`` (hls_templates/nnet_vecq_fold.h) copies a pixel's n accumulators (w bits) into
hold registers at its last product cycle (clock enable: no logic) and, during the next pixel, its
``units`` requantisation units read outputs q * units + u in requant cycle q: per unit and bit a
ceil(n / units):1 multiplexer. The units themselves (DSP multipliers) are not in this module.
"""

from __future__ import annotations

import math


def hold_verilog(n: int, units: int, w: int) -> str:
    """Module ``dot``: hold[j] <= acc[j] when ``load``; y[u] = hold[q * units + u]."""
    cycles = math.ceil(n / units)
    qb = max(1, math.ceil(math.log2(cycles)))
    out = [f"module dot(input clk, input load, input [{qb - 1}:0] q, input [{n * w - 1}:0] acc, "
           f"output reg [{units * w - 1}:0] y);", f"  reg [{w - 1}:0] hold [0:{n - 1}];", "  integer j;",
           "  always @(posedge clk)",
           f"    if (load) for (j = 0; j < {n}; j = j + 1) hold[j] <= acc[j * {w} +: {w}];", "  always @* begin"]
    for u in range(units):
        out.append("    case (q)")
        out += [f"      {qb}'d{c}: y[{u * w} +: {w}] = hold[{c * units + u}];" for c in range(cycles)
                if c * units + u < n]
        out += [f"      default: y[{u * w} +: {w}] = hold[{u}];", "    endcase"]
    return "\n".join(out + ["  end", "endmodule"]) + "\n"


def accumulate_verilog(w: int, s: int, hold: bool) -> str:
    """Module ``dot``: a w-bit accumulator adding an s-bit term each cycle; with ``hold``, as
    vecq_fold_row builds it: at ``last`` the sum goes into ``hold`` (clock enable) and the
    accumulator resets to 0 (synchronous reset), so no multiplexer clears it before the adder."""
    sum_ = f"acc + {{{{{w - s}{{t[{s - 1}]}}}}, t}}"
    if not hold:
        return (f"module dot(input clk, input signed [{s - 1}:0] t, output reg signed [{w - 1}:0] acc);\n"
                f"  always @(posedge clk) acc <= {sum_};\nendmodule\n")
    return (f"module dot(input clk, input last, input signed [{s - 1}:0] t, output reg signed [{w - 1}:0] acc,\n"
            f"           output reg signed [{w - 1}:0] hold);\n  wire signed [{w - 1}:0] sum = {sum_};\n"
            f"  always @(posedge clk) begin\n    acc <= last ? {w}'sd0 : sum;\n    if (last) hold <= sum;\n"
            "  end\nendmodule\n")


__all__ = ["accumulate_verilog", "hold_verilog"]
