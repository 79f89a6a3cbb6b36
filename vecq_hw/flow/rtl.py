"""RTL steps of the flow: write a da4ml project, simulate it against the simulator, synthesise.

``rtl/`` predicts (da4ml's interpreter, the Verilated design) and never runs the simulator;
the comparison with the simulator's outputs, exact on every output value, is made here, as
for the HLS C simulation.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from ..errors import ToolError, VecQError


def generate_rtl(model_dir, out_dir, options=None, *, overwrite=False) -> str:
    """``vecq-hw rtl``: trace a model folder with da4ml and write the RTL project (``RtlOptions``,
    default: its defaults); the project's summary."""
    from ..ir.io import load_model
    from ..rtl import write
    return write(load_model(model_dir), out_dir, options, overwrite=overwrite).summary()


@dataclass
class RtlSimResult:
    n: int
    n_values: int
    rtl_mismatches: int
    interp_mismatches: int
    build: object  # rtl.verilator.BuildResult: .seconds, .cached
    rtl_seconds: float
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.rtl_mismatches == 0 and self.interp_mismatches == 0

    def summary(self) -> str:
        b = "cached build" if self.build.cached else f"Verilator build {self.build.seconds:.1f} s"
        lines = [f"RTL simulation ({b}, run {self.rtl_seconds:.2f} s): {self.n} inputs, {self.n_values} output values",
                 f"  Verilator RTL vs simulator:      {self.rtl_mismatches} mismatches",
                 f"  da4ml interpreter vs simulator:  {self.interp_mismatches} mismatches"]
        lines += [f"  {e}" for e in self.examples]
        lines.append("OK: bit-exact" if self.ok else "FAILED: mismatches")
        return "\n".join(lines)


def simulate_rtl(project, x_mantissa: np.ndarray | None = None, *, n: int = 2000, jobs: int = 2,
                 max_examples: int = 5) -> RtlSimResult:
    """The simulator (the reference), da4ml's interpreter on the traced graph and the Verilated
    RTL on the same input mantissas (default: ``n`` random ones from the generator and seed of
    the HLS testbench's vectors), compared exactly on every output value."""
    from ..ir.examples import random_inputs
    from ..rtl import RtlProject, build, load_project, predict_interp, predict_rtl
    from ..sim import simulate
    prj = project if isinstance(project, RtlProject) else load_project(project)
    model = prj.model()
    if x_mantissa is None:
        x_mantissa = random_inputs(model, n)
    n = x_mantissa.shape[0]
    ref = simulate(model, x_mantissa=x_mantissa).output.reshape(n, -1)
    interp = predict_interp(prj, x_mantissa)
    b = build(prj, jobs=jobs)
    t0 = time.perf_counter()
    rtl = predict_rtl(prj, x_mantissa, build_result=b)
    secs = time.perf_counter() - t0
    examples = []
    for name, got in (("RTL", rtl), ("interpreter", interp)):
        bad = np.argwhere(got != ref)
        for s, j in bad[:max_examples]:
            examples.append(f"{name}: input {s} output {j}: got {got[s, j]}, simulator {ref[s, j]}")
    return RtlSimResult(n=n, n_values=int(ref.size), rtl_mismatches=int((rtl != ref).sum()),
                        interp_mismatches=int((interp != ref).sum()), build=b, rtl_seconds=secs,
                        examples=examples)


def load_rtl_inputs(project, path) -> np.ndarray:
    """Input mantissas from a .npy file: integers are mantissas, floats are converted (read and
    checked as every input file is: numeric, finite, the input shape, at least one sample)."""
    from ..fixed import FixedType
    from .inputs import load_array
    t = FixedType.parse(project.manifest["input_type"])
    x = load_array(path, what="inputs", expect_shape=tuple(project.manifest["input_shape"]))
    if np.issubdtype(x.dtype, np.integer):
        if x.min() < t.min_mantissa or x.max() > t.max_mantissa:
            raise VecQError(f"integer inputs are mantissas of {t} and must lie in "
                            f"[{t.min_mantissa}, {t.max_mantissa}]", file=str(path))
        return x.astype(np.int64)
    return np.asarray(t.from_float(x.astype(np.float64)), dtype=np.int64)


def simulate_rtl_files(project_dir, input_path=None, *, n: int = 2000, show=print) -> RtlSimResult:
    """``vecq-hw rtlsim``: :func:`simulate_rtl` on ``input_path`` (.npy mantissas or values;
    default: ``n`` random inputs); ``show`` the summary, then raise ``ToolError`` on any mismatch."""
    from ..rtl import load_project
    prj = load_project(project_dir)
    x = load_rtl_inputs(prj, input_path) if input_path else None
    result = simulate_rtl(prj, x, n=n)
    show(result.summary())
    if not result.ok:
        raise ToolError(f"rtlsim: {result.rtl_mismatches} RTL and {result.interp_mismatches} interpreter "
                        f"mismatches of {result.n_values} values")
    return result


def synth_rtl(project_dir, *, part=None, dsp=False, retime=False, json_path=None) -> str:
    """``vecq-hw synth``: yosys counts of an RTL project as a table (also written to ``json_path``)."""
    from ..outputs import atomic_text, output_file
    from ..rtl import load_project, synth
    from ..rtl.options import family
    prj = load_project(project_dir)
    if part is not None:
        family(part)  # a part name yosys cannot map: refused before yosys runs
    if json_path:
        json_path = output_file(json_path, "--json")  # before yosys runs, not after
    report = synth(prj, part=part, dsp=dsp, retime=retime)
    if json_path:
        atomic_text(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    return report.table()
