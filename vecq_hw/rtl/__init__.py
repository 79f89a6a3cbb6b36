"""The RTL back end: da4ml Verilog, Verilator simulation, yosys resource counts.

Verbs, like the HLS back end's: ``write`` (trace + write a project folder), ``build``
(Verilate), ``simulate`` (simulator vs da4ml interpreter vs RTL, exactly), ``predict_rtl``,
``synth`` (yosys counts). Options: :class:`RtlOptions`. A layer kind is traced by the op
registered for it with ``@rtl_op("kind")`` (:mod:`.trace`).
"""

from .options import RtlOptions
from .project import RtlProject, load_project, write
from .requant import RtlUnsupported
from .synth import SynthReport, synth
from .trace import RTL_OPS, TraceStep, estimate_adder_bits, rtl_op, trace_model
from .verilator import RtlSimResult, build, predict_interp, predict_rtl, simulate

__all__ = ["RTL_OPS", "RtlOptions", "RtlProject", "RtlSimResult", "RtlUnsupported", "SynthReport", "TraceStep", "build",
           "estimate_adder_bits", "load_project", "predict_interp", "predict_rtl", "rtl_op", "simulate",
           "synth", "trace_model", "write"]
