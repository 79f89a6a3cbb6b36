"""Bit-exact checks for your own pytest (or any script): the toolkit's proofs as a library.

    assert_bit_exact(expected, actual, layer=...)   zero tolerance; names the layer, the first
                                                    differing index, both values, how many differ
    check(model_dir, inputs, backends=("sim", "csim", "rtlsim"))
                                                    simulator, g++ C simulation of the HLS project,
                                                    Verilated RTL: compared exactly; a stage whose
                                                    tool is missing is skipped with the reason
    random_inputs / edge_inputs / saturating_inputs input mantissas for a model's input type
    ProjectCache                                    built projects cached by content hash

The pytest plugin (``vecq_hw.testing.plugin``; fixtures ``vecq_check``, ``vecq_hls_project``,
``vecq_rtl_project``, ``vecq_cache``) keeps one built project per model and options for the
whole session, and across sessions in pytest's cache folder. README: "Bit-exact checks in your
own CI".
"""

from .cache import ProjectCache, ToolMissing, missing_tool
from .check import STAGES, CheckResult, StageResult, as_mantissas, check
from .compare import assert_bit_exact, mismatch
from .inputs import edge_inputs, random_inputs, saturating_inputs

__all__ = ["CheckResult", "ProjectCache", "STAGES", "StageResult", "ToolMissing", "as_mantissas",
           "assert_bit_exact", "check", "edge_inputs", "mismatch", "missing_tool", "random_inputs",
           "saturating_inputs"]
