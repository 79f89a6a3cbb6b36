"""The RTL back end: da4ml Verilog, Verilator predictions, yosys resource counts.

Verbs, like the HLS back end's: ``write`` (trace + write a project folder), ``build``
(Verilate), ``predict_rtl`` / ``predict_interp`` (output mantissas of the Verilated design and
of da4ml's interpreter), ``synth`` (yosys counts). The comparison with the simulator is the
flow's (``vecq_hw.flow.simulate_rtl``): nothing here runs it. Options: :class:`RtlOptions`.

Names that need da4ml load lazily: ``from vecq_hw.rtl.options import RtlOptions`` (the CLI's
defaults) does not import it. A layer kind is traced by the op registered for it with
``@rtl_op("kind")`` (:mod:`.trace`).
"""

from ..lazy import lazy_names

# eager and cheap (no da4ml); also keeps ``vecq_hw.rtl.synth`` the function, not the submodule
from .options import RtlOptions
from .project import RtlProject, load_project, write, write_logic
from .synth import SynthReport, synth

_EXPORTS = {
    "RtlUnsupported": ".requant", "estimate_adder_bits": ".ops", "trace_model": ".ops",
    "trace_weighted": ".trace",
    "RTL_OPS": ".trace", "TraceStep": ".trace", "rtl_op": ".trace",
    "BuildResult": ".verilator", "build": ".verilator", "predict_interp": ".verilator", "predict_rtl": ".verilator",
}

__all__ = sorted(set(_EXPORTS) | {"RtlOptions", "RtlProject", "SynthReport", "load_project", "synth", "write",
                                  "write_logic"})

__getattr__ = lazy_names(__name__, _EXPORTS)
