"""Every user value that is written into generated code or scripts, checked the same way everywhere.

Names reach C++ (the HLS top function, the input port hls4ml names after the input layer, the
types ``<layer>_accum_t`` it names after every layer), Verilog/VHDL (the RTL top module) and
file names; a part name and a clock period reach Tcl (``build_prj.tcl``, da4ml's Vivado and
Quartus scripts, the xdc/sdc constraints) as text. Each is checked here against a strict
pattern, by every command that writes or reads one (``check``, ``hls``, ``fit``, ``estimate``,
``rtl``, ``synth``, ``csim`` reading a project), so that nothing typed on a command line or
written in a model file becomes code (``xc7z020[exec touch F]``) or a name the generated code
already uses (``int``, ``input_t``, ``w2``, ``layer2_out``). A refusal is one ``VecQError`` line
naming the field.
"""

from __future__ import annotations

import math
import re

from .errors import VecQError

#: longest name accepted (a file name <name>_test.cpp must stay under every file system's limit)
MAX_IDENTIFIER = 100
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")  # \Z: '$' would let a trailing newline through

#: C and C++ keywords (C++20 included), alternative tokens, and main
CXX_KEYWORDS = frozenset("""alignas alignof and and_eq asm auto bitand bitor bool break case catch char char8_t
char16_t char32_t class co_await co_return co_yield compl concept const consteval constexpr constinit const_cast
continue decltype default delete do double dynamic_cast else enum explicit export extern false float for friend
goto if inline int long mutable namespace new noexcept not not_eq nullptr operator or or_eq private protected
public register reinterpret_cast requires restrict return short signed sizeof static static_assert static_cast
struct switch template this thread_local throw true try typedef typeid typename union unsigned using virtual void
volatile wchar_t while xor xor_eq main""".split())

#: names of the generated C++ and its files that are not keywords: namespaces, hls4ml's files,
#: our testbench's constants
GENERATED = frozenset("""nnet hls std firmware defines parameters weights nnet_utils ap_types N_IN N_OUT""".split())

#: patterns of names hls4ml and our kernels generate: types (``input_t``, ``layer2_t``,
#: ``c1_accum_t``: anything ending in _t, as POSIX reserves it), per-layer variables and configs
#: (``layer2_out``, ``layer2_cpy1``, ``w2``, ``s2``, ``b2``, ``config2``, ``relu_config3``) and the
#: ap_types library (``ap_fixed``, ``AP_TRN``). The HLS writer also checks the top function and
#: the input port against every name the written project declares (hls/project.py).
_GENERATED_PATTERN = re.compile(r"(?:.*_t|layer\d+_.*|[wbs]\d+|.*config\d+|[aA][pP]_.*)\Z")

#: Verilog (IEEE 1364/1800 common words) and VHDL keywords: an RTL top module may be neither
HDL_KEYWORDS = frozenset("""always and assign automatic begin buf case casex casez cell config deassign default
defparam design disable edge else end endcase endconfig endfunction endgenerate endmodule endprimitive
endspecify endtable endtask event for force forever fork function generate genvar if ifnone incdir include
initial inout input instance integer join large liblist library localparam logic macromodule medium module
nand negedge nmos nor not notif0 notif1 or output parameter pmos posedge primitive pull0 pull1 pulldown pullup
rcmos real realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared signed small specify
specparam strong0 strong1 supply0 supply1 table task time tran tranif0 tranif1 tri tri0 tri1 triand trior
trireg unsigned use vectored wait wand weak0 weak1 while wire wor xnor xor abs access after alias all
architecture array assert attribute block body buffer bus component configuration constant disconnect downto
elsif entity exit file generic group guarded impure in inertial is label linkage literal loop map mod next
new null of on open others out package port postponed procedure process pure range record register reject
rem report return rol ror select severity shared sla sll sra srl subtype then to transport type units until
variable when with""".split())


def identifier_problem(name, *, hdl: bool = False) -> str | None:
    """Why ``name`` cannot be a name in the generated C++ (``hdl``: the RTL top module), or None.

    A name must be a C identifier of at most MAX_IDENTIFIER characters; in C++ it may not be a
    keyword, reserved by C++ (``__`` anywhere, ``_`` and a capital first) or a name the generated
    code itself uses (GENERATED, _GENERATED_PATTERN); in Verilog/VHDL not a keyword of either."""
    if not isinstance(name, str) or not _IDENTIFIER.match(name):
        return "expected a C identifier (letters, digits and '_', not starting with a digit)"
    if len(name) > MAX_IDENTIFIER:
        return f"expected at most {MAX_IDENTIFIER} characters, got {len(name)}"
    if hdl:
        return f"'{name}' is a Verilog or VHDL keyword" if name.lower() in HDL_KEYWORDS else None
    if name in CXX_KEYWORDS:
        return f"'{name}' is a C++ keyword"
    if "__" in name or re.match(r"_[A-Z]", name):
        return f"'{name}' is reserved in C++ ('__' anywhere, or '_' and a capital first)"
    if name in GENERATED or _GENERATED_PATTERN.match(name):
        return (f"'{name}' is a name the generated code uses itself (types end in _t; layer<N>_*, w<N>, s<N>, "
                "b<N>, *config<N>, ap_* and nnet, hls, std are taken)")
    return None


def layer_identifier(base: str, kind: str, taken) -> str:
    """A layer name made from ``base`` (a module path ``features.0``, an ONNX node name) that the
    generated code can take and that is not in ``taken`` (compared case-insensitively, as file
    systems and the HLS back end compare names): characters other than letters, digits and '_'
    become '_' (``features_0``); a base that is still no good name (a Sequential's index ``1``, a
    keyword) gets ``kind`` in front (``conv2d_1``); a clash gets ``_2``, ``_3``, ..."""
    stem = re.sub(r"__+", "_", re.sub(r"\W", "_", str(base), flags=re.ASCII))[:MAX_IDENTIFIER - 20] or kind
    if identifier_problem(stem) is not None:
        stem = f"{kind}_{stem}"
    lowered = {str(t).lower() for t in taken}
    name, n = stem, 1
    while name.lower() in lowered or identifier_problem(name) is not None:
        n += 1
        name = f"{stem}_{n}"
    return name


def check_identifier(name, field: str, *, hdl: bool = False, file=None) -> str:
    """``name`` if :func:`identifier_problem` finds nothing, else one VecQError line naming ``field``."""
    why = identifier_problem(name, hdl=hdl)
    if why:
        shown = name if not isinstance(name, str) or len(name) <= 40 else name[:40] + "..."
        raise VecQError(f"{why}; got {shown!r}", field=field, file=file)
    return name


#: an FPGA part name: letters, digits, '-', '_', '.' (xc7z020clg400-1, xcu250-figd2104-2L-e)
_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")


def check_part(part, field: str = "part", *, file=None) -> str:
    """A part name that is safe to write into Tcl, a constraint file or a shell command."""
    if not isinstance(part, str) or not _PART.match(part):
        shown = part if not isinstance(part, str) or len(part) <= 40 else part[:40] + "..."
        raise VecQError(f"expected an FPGA part name (letters, digits, '-', '_', '.'; at most 64), got {shown!r}",
                        field=field, file=file)
    return part


#: clock periods accepted, in ns: 10 GHz to 1 kHz (a number outside cannot be a real target, and
#: 5e-324 would print as 'inf frames/s' or as a Tcl literal no tool reads)
CLOCK_PERIOD_NS = (0.1, 1e6)


def check_clock_period(value, field: str = "clock_period", *, file=None) -> float:
    """A clock period in ns within CLOCK_PERIOD_NS, as a float; one line otherwise."""
    lo, hi = CLOCK_PERIOD_NS
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not lo <= value <= hi):
        raise VecQError(f"expected a clock period in ns from {lo:g} to {hi:g}, got {value!r}", field=field,
                        file=file)
    return float(value)


__all__ = ["CLOCK_PERIOD_NS", "CXX_KEYWORDS", "GENERATED", "HDL_KEYWORDS", "MAX_IDENTIFIER", "check_clock_period",
           "check_identifier", "check_part", "identifier_problem", "layer_identifier"]
