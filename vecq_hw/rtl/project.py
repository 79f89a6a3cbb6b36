"""``write``: an integer model -> an RTL project folder (da4ml Verilog/VHDL + our manifest).

Layout of ``DIR`` (written into a temporary sibling and renamed, so a failure leaves nothing)::

    rtl.json        our manifest: options, io types and shapes, pipeline stages, da4ml's cost
                    estimate, trace/write times, the input vectors' seed
    model/          the integer model (model.yaml + tables): rtlsim's reference
    comb.json       da4ml's traced combinational logic (its interpreter runs this)
    hdl/            da4ml's project: src/*.v (or .vhd), Vivado/Quartus Tcl, xdc/sdc, metadata
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import ir
from ..errors import VecQError
from .options import RtlOptions

MANIFEST = "rtl.json"
FORMAT_VERSION = 1
_MANIFEST_KEYS = ("format_version", "model", "top", "options", "input_type", "input_shape", "output_type",
                  "output_shape", "n_inputs", "n_outputs", "layer_kinds", "stages", "da4ml_cost", "reg_bits",
                  "adder_bits_estimate", "trace_seconds", "layers")
#: what an RTL project is (it is not the HLS design that `vecq-hw estimate`/`fit` describe)
RTL_DESIGN = ("da4ml RTL design: fully unrolled, every product of every output pixel in its own constant "
              "shift-add logic, a new frame each clock; not the pixel-serial, folded HLS design of "
              "`vecq-hw estimate`/`fit`")


@dataclass
class RtlProject:
    path: Path
    manifest: dict

    @property
    def options(self) -> RtlOptions:
        return RtlOptions.from_dict(self.manifest["options"])

    @property
    def hdl(self) -> Path:
        return self.path / "hdl"

    def model(self) -> ir.Model:
        from ..ir.io import load_model
        if not (self.path / "model").is_dir():
            raise VecQError("holds a logic block, not a model (rtl.write_logic): it can be synthesised, not "
                            "simulated against the simulator", file=str(self.path))
        return load_model(self.path / "model")

    def comb(self):
        from da4ml.types import CombLogic
        return CombLogic.load(self.path / "comb.json")

    def sources(self) -> list[Path]:
        """The HDL files of the design (ours to simulate and synthesise), sorted."""
        suffix = "v" if self.options.flavor == "verilog" else "vhd"
        return sorted(p for p in (self.hdl / "src").rglob(f"*.{suffix}"))

    def summary(self) -> str:
        m = self.manifest
        lines = [f"RTL project {self.path} ({m['options']['flavor']}, top '{m['top']}')", f"  {RTL_DESIGN}",
                 f"  model '{m['model']}': {m['n_inputs']} inputs {m['input_type']} -> "
                 f"{m['n_outputs']} outputs {m['output_type']}",
                 f"  traced in {m['trace_seconds']:.2f} s, written in {m['write_seconds']:.2f} s; "
                 f"estimated {m['adder_bits_estimate']:,} adder bits before tracing",
                 f"  da4ml estimate: {m['da4ml_cost']:.0f} LUTs, {m['reg_bits']} FFs",
                 f"  latency: {m['stages']} clock cycles (pipeline stages at cutoff "
                 f"{m['options']['latency_cutoff']}), target clock {m['options']['clock_period']} ns "
                 "(da4ml's delay model, not a timing result)" if m["stages"] else
                 "  latency: combinational (no registers)"]
        return "\n".join(lines)


def _fix_lint_codes(src: Path) -> None:
    """da4ml's static modules name the lint code WIDTHTRUNC, which Verilator < 5.008 rejects
    as unknown; WIDTH (its parent code in every version) waives the same warning."""
    for p in src.rglob("*.v"):
        text = p.read_text()
        if "WIDTHTRUNC" in text:
            p.write_text(text.replace("WIDTHTRUNC", "WIDTH"))


def write(model: ir.Model, out_dir, options: RtlOptions | None = None, *, overwrite: bool = False,
          progress=None) -> RtlProject:
    """Trace ``model`` with da4ml and write the RTL project folder ``out_dir``."""
    from ..ir.io import save_model
    from .ops import trace_model  # da4ml's tracer (every family's ops), only when a project is written

    opts = options or RtlOptions()
    out = _checked_out_dir(out_dir, overwrite)
    tr = trace_model(model, opts, progress=progress)
    manifest = {"model": model.name, "input_type": str(tr.in_type), "input_shape": list(tr.in_shape),
                "output_type": str(tr.out_type), "output_shape": list(tr.out_shape),
                "layer_kinds": sorted({layer.kind for layer in model.layers}),
                "adder_bits_estimate": tr.adder_bits_estimate, "trace_seconds": round(tr.seconds, 4),
                "layers": tr.layers}
    return _write(tr.comb, out, opts, manifest, lambda tmp: save_model(model, tmp / "model"))


def write_logic(comb, out_dir, options: RtlOptions | None = None, *, name: str = "logic",
                overwrite: bool = False) -> RtlProject:
    """Write the Verilog/VHDL project of any da4ml ``CombLogic`` (e.g. the HLS back end's adder
    graph of one layer) for :func:`.synth.synth`; it holds no integer model, so ``rtlsim`` refuses it."""
    opts = options or RtlOptions()
    out = _checked_out_dir(out_dir, overwrite)
    manifest = {"model": name, "input_type": None, "input_shape": [int(comb.shape[0])], "output_type": None,
                "output_shape": [int(comb.shape[1])], "layer_kinds": [], "adder_bits_estimate": 0,
                "trace_seconds": 0.0, "layers": []}
    return _write(comb, out, opts, manifest, lambda tmp: None)


def _checked_out_dir(out_dir, overwrite: bool) -> Path:
    out = Path(out_dir).absolute()
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        if not (out / MANIFEST).is_file():
            raise VecQError("exists and is not an RTL project folder: refusing to replace it", file=str(out))
        if not overwrite:
            raise VecQError("an RTL project exists here (use --overwrite to replace it)", file=str(out))
    return out


def _write(comb, out: Path, opts: RtlOptions, fields: dict, extra) -> RtlProject:
    """da4ml's HDL project of ``comb`` and our manifest (``fields`` + what the HDL says), written
    into a temporary sibling and renamed; ``extra(tmp)`` adds files."""
    from da4ml.codegen import RTLModel
    from da4ml.trace.pipeline import to_pipeline

    t0 = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        extra(tmp)
        comb.save(tmp / "comb.json")
        sol = to_pipeline(comb, opts.latency_cutoff, verbose=False) if opts.latency_cutoff > 0 else comb
        rtl = RTLModel(sol, opts.project_name, tmp / "hdl", flavor=opts.flavor, part_name=opts.part,
                       clock_period=opts.clock_period, print_latency=False)
        rtl.write()
        _fix_lint_codes(tmp / "hdl" / "src")
        stages = len(sol.solutions) if opts.latency_cutoff > 0 else 0
        made = {"format_version": FORMAT_VERSION, "top": opts.project_name, "options": opts.to_dict(),
                "n_inputs": int(comb.shape[0]), "n_outputs": int(comb.shape[1]), "stages": stages,
                "da4ml_cost": float(comb.cost), "reg_bits": int(sol.reg_bits) if stages else 0}
        manifest = {k: made[k] if k in made else fields[k] for k in _MANIFEST_KEYS}
        manifest["write_seconds"] = round(time.perf_counter() - t0, 4)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():
            old = out.with_name(f".{out.name}.old-{int(time.time() * 1e6)}")
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return RtlProject(out, manifest)


def load_project(path) -> RtlProject:
    p = Path(path)
    f = p / MANIFEST
    if not f.is_file():
        raise VecQError(f"not an RTL project folder: no {MANIFEST} (write one with `vecq-hw rtl`)", file=str(p))
    try:
        manifest = json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise VecQError(f"unreadable JSON: {exc}", file=str(f)) from None
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        raise VecQError(f"expected format_version {FORMAT_VERSION}", file=str(f), field="format_version")
    _check_manifest(manifest, f)
    return RtlProject(p.absolute(), manifest)


#: manifest entries the commands read, and what each must be
_MANIFEST_TYPES = {"model": str, "top": str, "options": dict, "input_type": str, "output_type": str,
                   "input_shape": list, "output_shape": list, "n_inputs": int, "n_outputs": int, "stages": int,
                   "reg_bits": int, "adder_bits_estimate": int, "da4ml_cost": (int, float),
                   "trace_seconds": (int, float), "write_seconds": (int, float)}


def _check_manifest(m: dict, f: Path) -> None:
    """Every entry of rtl.json the commands read, with its type; the names and part that reach
    shell commands, Verilator and yosys scripts checked as ``write`` checks them."""
    from ..fixed import FixedType
    from ..names import check_identifier
    for key, typ in _MANIFEST_TYPES.items():
        v = m.get(key)
        if not isinstance(v, typ) or isinstance(v, bool):
            raise VecQError(f"expected {getattr(typ, '__name__', 'a number')}, got {type(v).__name__}", file=str(f),
                            field=key)
    check_identifier(m["top"], "top", hdl=True, file=str(f))
    for key in ("input_shape", "output_shape"):
        if not m[key] or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in m[key]):
            raise VecQError("expected a list of positive integers", file=str(f), field=key)
    for key in ("input_type", "output_type"):
        try:
            FixedType.parse(m[key])
        except VecQError as exc:
            raise VecQError(exc.detail, file=str(f), field=key) from None
    try:
        opts = RtlOptions.from_dict(m["options"])
    except TypeError as exc:  # a wrongly typed option (a dataclass field compared with a string, ...)
        raise VecQError(f"malformed options ({exc})", file=str(f), field="options") from None
    except VecQError as exc:
        raise VecQError(exc.detail, file=str(f), field=f"options.{exc.field}") from None
    if opts.project_name != m["top"]:
        raise VecQError(f"top '{m['top']}' differs from options.project_name '{opts.project_name}'", file=str(f),
                        field="top")
