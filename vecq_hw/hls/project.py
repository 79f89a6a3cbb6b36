"""Write an HLS project for an integer model: hls4ml writer + our kernels, exact testbench and scripts.

Layout of a written project (``out_dir``)::

    firmware/               hls4ml's writer output (top function, parameters, weights, nnet_utils
                            including our nnet_vecq.h, ap_types)
    <project>_test.cpp      our exact testbench (replaces hls4ml's float testbench)
    tb_data/vecq_input.dat  input mantissas  (first line: N n_in)
    tb_data/vecq_expected.dat  simulator output mantissas (first line: N n_out)
    build_prj.tcl           for vivado_hls -f / vitis_hls -f   } both rendered from one
    hls_config.cfg          for v++ -c --mode hls (2023.2+)     } description (hls_description)
    vecq_project.json       what csim needs to know (project name, io type, shapes, types)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import jinja2
import numpy as np

from .. import ir
from ..errors import VecQError
from .convert import build_graph
from .csim import BUILD_DIR
from .layers import TEMPLATE_DIR

GENERATOR = "vecq_hw.hls"
CFLAGS = "-std=c++0x"
N_DEFAULT_TESTS = 64

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)), undefined=jinja2.StrictUndefined,
                          keep_trailing_newline=True)


def hls_description(*, project_name="myproject", part="xcu250-figd2104-2L-e", clock_period=5, backend="Vivado",
                    clock_uncertainty=None, steps=("csim", "synth"), version="1.0.0") -> dict:
    """The one description both tool scripts (Tcl and the v++ config) are rendered from."""
    if clock_uncertainty is None:
        clock_uncertainty = "27%" if backend == "Vitis" else "12.5%"
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
    from .examples import random_inputs

    t = model.input.out_type
    if test_inputs is None:
        return random_inputs(model, N_DEFAULT_TESTS, seed=12345)
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


def write_test_data(model: ir.Model, out_dir, test_inputs=None) -> int:
    """Write input mantissas and the simulator's expected output mantissas; returns N."""
    from ..sim import simulate

    out_dir = Path(out_dir)
    m = _input_mantissas(model, test_inputs)
    expected = np.asarray(simulate(model, x_mantissa=m).output, dtype=np.int64)
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


def _write_testbench(graph, model: ir.Model, out_dir: Path, project_name: str, io_type: str) -> dict:
    in_var = graph.get_input_variables()[0]
    out_var = graph.get_output_variables()[0]
    n_in = int(np.prod(model.input.shape))
    n_out = int(np.prod(model.output_shape))
    info = {
        "generator": GENERATOR, "project": project_name, "top": project_name, "io_stream": io_type == "io_stream",
        "in_t": in_var.type.name, "out_t": out_var.type.name, "n_in": n_in, "n_out": n_out,
        "in_type": str(model.input.out_type), "out_type": str(model.output_type),
    }
    (out_dir / f"{project_name}_test.cpp").write_text(_env.get_template("vecq_test.cpp.j2").render(**info))
    return info


def write_project(model: ir.Model, out_dir, *, backend="Vivado", io_type="io_parallel", reuse_factor=1,
                  strategy="Latency", part="xcu250-figd2104-2L-e", clock_period=5, project_name="myproject",
                  test_inputs=None, reference: ir.Model | None = None, check: bool = True) -> Path:
    """Write the HLS project for ``model`` to ``out_dir`` (atomically) and return its path.

    ``test_inputs``: (N,) + input shape, integer mantissas of the input type or floats (converted
    with the input type's ``from_float``); default: 64 random inputs. The expected outputs are the
    simulator's on ``reference`` (default: ``model`` itself; tests pass a deliberately broken
    ``model`` with ``check=False`` and the intact model as ``reference``).
    """
    out_dir = Path(out_dir).resolve()
    if out_dir.exists() and not (out_dir / "vecq_project.json").is_file() and (
            not out_dir.is_dir() or any(out_dir.iterdir())):
        raise VecQError("exists and is not a vecq_hw HLS project; refusing to replace it", file=out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        graph, names = build_graph(model, backend=backend, io_type=io_type, reuse_factor=reuse_factor,
                                   strategy=strategy, part=part, clock_period=clock_period,
                                   project_name=project_name, output_dir=str(tmp), check=check)
        graph.write()
        info = _write_testbench(graph, model, tmp, project_name, io_type)
        n = write_test_data(reference if reference is not None else model, tmp, test_inputs)
        render_scripts(hls_description(project_name=project_name, part=part, clock_period=clock_period,
                                       backend=backend), tmp)
        meta = dict(info, backend=backend, io_type=io_type, strategy=strategy, reuse_factor=reuse_factor,
                    n_tests=n, model=model.name, layer_names=names,
                    layer_types={names[layer.name]: str(layer.out_type) for layer in model.layers})
        (tmp / "vecq_project.json").write_text(json.dumps(meta, indent=1))
        # hls4ml also leaves its float testbench data hooks; ours replaces the testbench file.
        if out_dir.exists():
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


def build_hls_model(model: ir.Model, out_dir=None, *, backend="Vivado", io_type="io_parallel", reuse_factor=1,
                    strategy="Latency", part="xcu250-figd2104-2L-e", clock_period=5, project_name="myproject",
                    trace=False):
    """The compiled hls4ml ModelGraph (hls4ml's own g++ build) for in-process ``predict``/``trace``.

    Feed it float64 arrays of exactly representable input values (``T.to_float(mantissas)``).
    """
    if out_dir is None:
        out_dir = tempfile.mkdtemp(prefix="vecq_hls_")
    graph, _ = build_graph(model, backend=backend, io_type=io_type, reuse_factor=reuse_factor, strategy=strategy,
                           part=part, clock_period=clock_period, project_name=project_name,
                           output_dir=str(out_dir), trace=trace)
    graph.compile()
    return graph
