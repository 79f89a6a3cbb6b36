"""Write an HLS project for an integer model: hls4ml writer + our kernels, exact testbench and scripts.

Layout of a written project (``out_dir``)::

    firmware/               hls4ml's writer output (top function, parameters, weights, nnet_utils
                            including every registered kernel header, ap_types)
    <project>_test.cpp      our exact testbench (replaces hls4ml's float testbench)
    tb_data/vecq_input.dat  input mantissas  (first line: N n_in)
    tb_data/vecq_expected.dat  simulator output mantissas (first line: N n_out)
    vecq_weights.bin        the codes of the layers that read them over AXI (hls/offchip.py), only
                            when some layer does; the testbench feeds it through the same ports
    build_prj.tcl           for vivado_hls -f / vitis_hls -f   } both rendered from one
    hls_config.cfg          for v++ -c --mode hls (2023.2+)     } description (hls_description)
    vecq_project.json       what csim needs to know (project name, io type, shapes, types)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import jinja2
import numpy as np

from .. import ir
from ..errors import VecQError
from ..outputs import creatable
from .convert import build_graph, resolve_streamed
from .csim import BUILD_DIR
from .layers import TEMPLATE_DIR, streamed_port
from .mappings_da import da_layers
from .offchip import BLOB_NAME, layout, write_blob
from .options import DEFAULTS, DISTRIBUTED_ARITHMETIC, HlsOptions
from .registration import registered_headers
from .stream_depths import apply_fifo_plan, apply_packs
from .top_patch import add_weight_ports, bind_fifos_to_uram

GENERATOR = "vecq_hw.hls"
CFLAGS = "-std=c++0x"

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True)


def hls_description(*, project_name=DEFAULTS.project_name, part=DEFAULTS.part, clock_period=DEFAULTS.clock_period,
                    backend=DEFAULTS.backend, clock_uncertainty=None, steps=("csim", "synth"),
                    version="1.0.0") -> dict:
    """The one description both tool scripts (Tcl and the v++ config) are rendered from."""
    if clock_uncertainty is None:
        clock_uncertainty = DEFAULTS.replace(backend=backend).clock_uncertainty()
    return {
        "generator": GENERATOR,
        "project": project_name,
        "top": project_name,
        "part": part,
        "clock_period": clock_period,
        "clock_uncertainty": clock_uncertainty,
        "cflags": CFLAGS,
        "tb_cflags": CFLAGS,
        "steps": list(steps),
        "version": version,
    }


def render_scripts(desc: dict, out_dir: Path) -> None:
    for name in ("build_prj.tcl", "hls_config.cfg"):
        (out_dir / name).write_text(_env.get_template(name + ".j2").render(**desc))


def _input_mantissas(model: ir.Model, test_inputs) -> np.ndarray:
    t = model.input.out_type
    x = np.asarray(test_inputs)
    shape = tuple(model.input.shape)
    if x.shape == shape:
        x = x[None]
    if x.shape[1:] != shape:
        raise VecQError(f"test inputs: expected shape (N,) + {shape}, got {x.shape}")
    if np.issubdtype(x.dtype, np.integer):
        m = x.astype(np.int64)
        if m.size and (m.min() < t.min_mantissa or m.max() > t.max_mantissa):
            raise VecQError(f"test inputs: integer inputs are mantissas of {t} and must lie in "
                            f"[{t.min_mantissa}, {t.max_mantissa}]")
        return m
    return np.asarray(t.from_float(x.astype(np.float64)), dtype=np.int64)


def _checked_expected(model: ir.Model, expected):
    """The caller's (input mantissas, output mantissas), shapes and ranges checked."""
    try:
        x, y = expected
    except (TypeError, ValueError):
        raise VecQError("expected: a pair (input mantissas, output mantissas)", field="expected") from None
    x = _input_mantissas(model, x)
    y = np.asarray(y)
    n = x.shape[0]
    out_shape = tuple(model.output_shape)
    if y.dtype.kind not in "iu" or y.shape not in ((n,) + out_shape, (n, int(np.prod(out_shape)))):
        raise VecQError(f"expected outputs: {n} integer mantissa rows of shape {out_shape}, got {y.dtype} "
                        f"{y.shape}", field="expected")
    t = model.output_type
    y = y.astype(np.int64)
    if y.size and (y.min() < t.min_mantissa or y.max() > t.max_mantissa):
        raise VecQError(f"expected outputs: mantissas outside the output type {t}", field="expected")
    return x, y


def write_test_data(model: ir.Model, out_dir, expected) -> int:
    """Write input mantissas and the expected output mantissas; returns N.

    ``expected``: (input mantissas, output mantissas) computed by the caller (the simulator's
    outputs, as ``vecq_hw.flow.write_hls_project`` computes them): hls/ runs no simulator."""
    out_dir = Path(out_dir)
    m, expected = _checked_expected(model, expected)
    n = m.shape[0]
    tb = out_dir / "tb_data"
    tb.mkdir(parents=True, exist_ok=True)
    for fname, arr in (("vecq_input.dat", m), ("vecq_expected.dat", expected)):
        flat = arr.reshape(n, -1)
        with open(tb / fname, "w") as f:
            f.write(f"{n} {flat.shape[1]}\n")
            for row in flat:
                f.write(" ".join(str(int(v)) for v in row))
                f.write("\n")
    return n


def _part_has_uram(part_name: str) -> bool:
    from .estimate.parts import get_part

    try:
        return get_part(part_name).uram > 0
    except VecQError:  # a part the table does not know: no UltraRAM assumed
        return False


def _write_streamed(graph, model: ir.Model, names: dict, opts: HlsOptions, out_dir: Path) -> dict:
    """The blob of the streamed layers' codes and their ports on the top function; returns what
    the testbench and vecq_project.json need (nothing when every layer keeps its codes on chip)."""
    _, plan = resolve_streamed(model, opts)
    if not plan:
        return {"ports": [], "blob": None}
    laid = layout([plan[layer.name] for layer in model.layers if layer.name in plan])
    codes = {layer.name: layer.codes for layer in model.layers if layer.name in plan}
    sha = write_blob(out_dir / BLOB_NAME, [(sl, codes[sl.name]) for sl in laid])
    ports = [{"layer": sl.name, "mode": sl.mode, "name": streamed_port(graph.graph[names[sl.name]].index),
              "word_bits": sl.word_bits, "words": sl.words, "offset": sl.offset, "passes": sl.passes,
              "ddr_bytes_per_frame": sl.ddr_bytes_per_frame} for sl in laid]
    add_weight_ports(out_dir / "firmware", opts.project_name, [(p["name"], p["word_bits"], p["words"]) for p in ports])
    size = (out_dir / BLOB_NAME).stat().st_size
    return {"ports": ports, "blob": {"file": BLOB_NAME, "bytes": size, "sha256": sha}}


#: the tracing hook hls4ml's writer puts after a layer's call when tracing is on
_TRACE_CALL = re.compile(r'nnet::save_layer_output<[^;]*?>\(\s*\w+\s*,\s*"(\w+)"\s*,\s*([^;]*?)\s*\);')


def traced_layers(prj: Path, project_name: str) -> dict[str, str]:
    """{hls4ml layer name: its output's size as a C expression} of the layers the top function
    traces, in call order (none unless ``HlsOptions.trace``)."""
    calls = _TRACE_CALL.findall((prj / "firmware" / f"{project_name}.cpp").read_text())
    out: dict[str, str] = {}
    for name, size in calls:
        out.setdefault(name, size)  # a layer with two outputs (io_stream clones): equal sizes
    return out


def _write_testbench(graph, model: ir.Model, out_dir: Path, project_name: str, io_type: str,
                     streamed: dict | None = None) -> dict:
    in_var = graph.get_input_variables()[0]
    out_var = graph.get_output_variables()[0]
    n_in = int(np.prod(model.input.shape))
    n_out = int(np.prod(model.output_shape))
    streamed = streamed or {"ports": [], "blob": None}
    info = {
        "generator": GENERATOR, "project": project_name, "top": project_name, "io_stream": io_type == "io_stream",
        "in_t": in_var.type.name, "out_t": out_var.type.name, "n_in": n_in, "n_out": n_out,
        "in_type": str(model.input.out_type), "out_type": str(model.output_type),
        "ports": streamed["ports"], "blob": streamed["blob"],
    }
    traced = traced_layers(out_dir, project_name)
    info.update(traced=list(traced), traced_sizes=list(traced.values()))
    (out_dir / f"{project_name}_test.cpp").write_text(_env.get_template("vecq_test.cpp.j2").render(**info))
    return info


def _is_our_project(path: Path) -> bool:
    """A folder this module wrote: its vecq_project.json names our generator."""
    try:
        meta = json.loads((path / "vecq_project.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("generator") == GENERATOR


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Write into a new or empty folder; replace only a project of ours, and only when asked (the
    flow asks this before any work, the writer again before it writes)."""
    out_dir = creatable(out_dir, "--out")
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise VecQError("exists and is a file, expected an HLS project folder", file=out_dir)
    if not any(out_dir.iterdir()):
        return
    if not _is_our_project(out_dir):
        raise VecQError("exists and is not a vecq_hw HLS project; refusing to replace it", file=out_dir)
    if not overwrite:
        raise VecQError("already holds an HLS project; pass --overwrite (overwrite=True) to replace it, files "
                        "added to it included", file=out_dir)


_CODE_NOISE = re.compile(r'//[^\n]*|/\*.*?\*/|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\'', re.S)
_IDENTIFIER = re.compile(r"\b[A-Za-z_][A-Za-z0-9_]*\b")
_PLACEHOLDER = "vecq_placeholder_top"


def _identifiers(code: str) -> set[str]:
    """The identifiers of C++ source (comments and string literals removed)."""
    return set(_IDENTIFIER.findall(_CODE_NOISE.sub(" ", code)))


def _names_taken(prj: Path, own: set[Path]) -> set[str]:
    """Names the generated C++ declares outside ``own`` files: the types, configs and weight
    arrays hls4ml writes (``input_t``, ``config2``, ``w2``), every macro of the headers and the
    file names beside ``<project>.h`` (``defines``, ``parameters``)."""
    fw = prj / "firmware"
    taken: set[str] = set()
    for name in ("defines.h", "parameters.h"):
        if (fw / name).is_file():
            taken |= _identifiers((fw / name).read_text(errors="replace"))
    taken |= {p.stem for p in fw.rglob("*") if p.is_file() and p.suffix in (".h", ".cpp", ".txt") and p not in own}
    define = re.compile(r"^\s*#\s*define\s+([A-Za-z_][A-Za-z0-9_]*)", re.M)
    for p in fw.rglob("*.h"):
        if p not in own:
            taken |= set(define.findall(p.read_text(errors="replace")))
    # hls4ml's own file names beside <project>.h (a project 'defines' would overwrite defines.h)
    return taken | {"defines", "parameters", "weights", "nnet_utils", "ap_types", "nnet", "hls", "std", "main",
                    "firmware"}


def _check_name_is_free(project_name: str, prj: Path, info: dict, input_port: str) -> None:
    """The top function's name, and the input port's (named after the input layer), must not be
    names the generated C++ already uses.

    ``HlsOptions`` and ``Model.check`` (:mod:`vecq_hw.names`) make them C identifiers that are not
    keywords nor the names hls4ml generates by pattern; here they are checked against what the
    project declares besides them (:func:`_names_taken`), and the top function also against our
    testbench's names (``x``, ``in``, ``main``, ...). A clash would only show as a g++ error at
    csim time (or a silently different meaning).
    """
    fw = prj / "firmware"
    taken = _names_taken(prj, {fw / f"{project_name}.h", fw / f"{project_name}.cpp"})
    if input_port in taken - {project_name}:
        raise VecQError(f"the input layer's name '{input_port}' is already a name in the generated C++ (hls4ml's "
                        "types, weights or header macros); rename the input layer", field="layers[0].name")
    taken |= _identifiers(_env.get_template("vecq_test.cpp.j2").render(**dict(info, project=_PLACEHOLDER,
                                                                               top=_PLACEHOLDER)))
    taken.discard(_PLACEHOLDER)
    if project_name in taken | {input_port}:
        raise VecQError(f"'{project_name}' is already a name in the generated C++ (our testbench, hls4ml's types, "
                        f"weights, headers or the input port); choose another top function name",
                        field="project_name")


def write_project(model: ir.Model, out_dir, options: HlsOptions | None = None, *, expected=None,
                  check: bool = True, overwrite: bool = False, **option_kw) -> Path:
    """Write the HLS project for ``model`` to ``out_dir`` (atomically) and return its path.

    ``options``: :class:`HlsOptions` (the keywords backend=, io_type=, reuse_factor=, strategy=,
    part=, clock_period=, project_name= still work and override it). ``expected``: the caller's
    (input mantissas (N,) + input shape, the simulator's output mantissas) for the testbench;
    without it the project has no test data (it synthesises, but ``csim`` has nothing to run).
    ``check=False`` skips :meth:`Model.check` (tests that break a model on purpose only).
    ``out_dir`` must be new, empty, or (with ``overwrite=True``) a project written here before:
    a folder that is not one of our projects is never replaced. Every file lands inside it.
    """
    for gone in ("test_inputs", "reference"):
        if gone in option_kw:  # hls/ no longer runs the simulator
            raise VecQError(f"write_project no longer takes {gone}=; pass expected=(input mantissas, the "
                            "simulator's output mantissas)")
    opts = HlsOptions.from_kwargs(options, **option_kw)
    backend, io_type, project_name = opts.backend, opts.io_type, opts.project_name
    reuse_factor, strategy = opts.reuse_factor, opts.strategy
    out_dir = Path(out_dir).resolve()
    check_out_dir(out_dir, overwrite)
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VecQError(f"cannot create the project's parent folder ({exc.strerror or exc})", file=out_dir) from None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        graph, names = build_graph(model, opts, output_dir=str(tmp), trace=opts.trace, check=check)
        fifos, packs = [], {}
        if io_type == "io_stream":
            packs = apply_packs(graph, model, names, opts.packs)
            fifos = apply_fifo_plan(graph, model, names, uram=_part_has_uram(opts.part), packs=packs)
        graph.write()
        bind_fifos_to_uram(tmp / "firmware", project_name, [f["stream"] for f in fifos if f["uram"]])
        streamed = _write_streamed(graph, model, names, opts, tmp)
        info = _write_testbench(graph, model, tmp, project_name, io_type, streamed)
        _check_name_is_free(project_name, tmp, info, names[model.input.name])
        n = write_test_data(model, tmp, expected) if expected is not None else 0
        render_scripts(hls_description(project_name=project_name, part=opts.part, clock_period=opts.clock_period,
                                       backend=backend), tmp)
        meta = dict(info, backend=backend, io_type=io_type, strategy=strategy, reuse_factor=reuse_factor,
                    reuse=dict(opts.reuse), weights=dict(opts.weights), fifos=fifos, trace=opts.trace,
                    packs=packs,
                    n_tests=n, model=model.name, layer_names=names,
                    kernel_headers=[p.name for p in registered_headers()],
                    layer_types={names[layer.name]: str(layer.out_type) for layer in model.layers})
        if opts.strategy == DISTRIBUTED_ARITHMETIC:  # default projects keep their manifest unchanged
            meta["da_layers"] = [names[n] for n in da_layers(model, opts)]
        (tmp / "vecq_project.json").write_text(json.dumps(meta, indent=1))
        # hls4ml also leaves its float testbench data hooks; ours replaces the testbench file.
        _check_confined(tmp)
        if out_dir.exists():
            check_out_dir(out_dir, overwrite)  # unchanged while we worked
            # keep the csim build cache: it is keyed by content, so an identical project
            # regenerated here is not compiled again
            if (out_dir / BUILD_DIR).is_dir():
                os.replace(out_dir / BUILD_DIR, tmp / BUILD_DIR)
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.replace(out_dir, old / "prj")
            os.replace(tmp, out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _check_confined(prj: Path) -> None:
    """Nothing the writers made points outside the project (the last line of defence)."""
    root = prj.resolve()
    for p in prj.rglob("*"):
        if p.is_symlink() or root not in p.resolve().parents:
            raise VecQError(f"the generated project holds '{p.relative_to(prj)}', which points outside it",
                            file=prj)


def build_hls_model(model: ir.Model, out_dir=None, options: HlsOptions | None = None, *, trace=False, **option_kw):
    """The compiled hls4ml ModelGraph (hls4ml's own g++ build) for in-process ``predict``/``trace``.

    Feed it float64 arrays of exactly representable input values (``T.to_float(mantissas)``).
    """
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="vecq_hls_")
    graph, _ = build_graph(model, HlsOptions.from_kwargs(options, **option_kw), output_dir=str(out_dir), trace=trace)
    graph.compile()
    return graph
