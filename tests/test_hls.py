"""HLS generation end to end: integer model -> hls4ml project -> g++ C simulation == simulator.

Real g++, exact equality. Tiny models (8x8 CNN, 32-16-10 MLP) keep the compile count cheap;
every generated project also passes the synthesis-path type check (``-D__SYNTHESIS__``).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.hls import build_graph, csim, write_project
from vecq_hw.ir.examples import random_cnn, random_inputs, random_mlp
from vecq_hw.sim import simulate

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

N_TESTS = 500
BITS = (1, 2, 4, 8)
IO_TYPES = ("io_parallel", "io_stream")
BACKENDS = ("Vivado", "Vitis")


def _cnn(bits, backend):
    # Vitis CNNs use average pooling (hls4ml's pooling with our pinned exact accumulator),
    # Vivado CNNs max pooling; k = 8 pins the multiplier to DSP / fabric.
    mult = {"Vivado": "fabric", "Vitis": "dsp"}[backend] if bits == 8 else "auto"
    return random_cnn(bits, seed=bits, avg_pool=backend == "Vitis", multiplier=mult)


def _expected(model, x):
    """The testbench's expectation: the simulator's outputs (hls/ runs no simulator itself)."""
    return x, simulate(model, x_mantissa=x).output


def _check(prj, model, x):
    res = csim(prj)
    assert res.synthesis_checked
    assert res.n == N_TESTS
    assert res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    # and independently of the testbench's own comparison: the C++ outputs it wrote back
    np.testing.assert_array_equal(res.outputs, simulate(model, x_mantissa=x).output.reshape(N_TESTS, -1))
    # the expected outputs are not degenerate (neither constant nor all saturated)
    exp = np.loadtxt(prj / "tb_data" / "vecq_expected.dat", skiprows=1, dtype=np.int64)
    assert len(np.unique(exp)) > 10
    t = model.output_type
    assert np.mean((exp == t.max_mantissa) | (exp == t.min_mantissa)) < 0.5
    return res


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("io_type", IO_TYPES)
@pytest.mark.parametrize("bits", BITS)
def test_cnn_csim_equals_simulator(tmp_path, bits, io_type, backend):
    model = _cnn(bits, backend)
    x = random_inputs(model, N_TESTS, seed=bits)
    prj = write_project(model, tmp_path / "prj", backend=backend, io_type=io_type, expected=_expected(model, x))
    meta = json.loads((prj / "vecq_project.json").read_text())
    assert meta["io_type"] == io_type and meta["backend"] == backend
    _check(prj, model, x)


MLP_CASES = [  # every k, both io types, both backends, both encodings, every multiplier binding
    (1, "io_parallel", "Vivado", "odd", "auto", "Latency"),
    (2, "io_stream", "Vitis", "odd", "auto", "Latency"),
    (4, "io_parallel", "Vitis", "int", "auto", "Resource"),
    (8, "io_stream", "Vivado", "odd", "fabric", "Latency"),
]


@pytest.mark.parametrize("bits,io_type,backend,encoding,multiplier,strategy", MLP_CASES)
def test_mlp_csim_equals_simulator(tmp_path, bits, io_type, backend, encoding, multiplier, strategy):
    model = random_mlp(bits, seed=10 + bits, encoding=encoding, multiplier=multiplier)
    x = random_inputs(model, N_TESTS, seed=bits)
    prj = write_project(model, tmp_path / "prj", backend=backend, io_type=io_type, strategy=strategy,
                        reuse_factor=2 if strategy == "Resource" else 1, expected=_expected(model, x))
    _check(prj, model, x)
    # a second csim of the unchanged project rebuilds nothing
    again = csim(prj)
    assert again.cached and again.mismatches == 0


def test_float_test_inputs_and_scripts(tmp_path):
    model = random_mlp(2, seed=3)
    t = model.input.out_type
    xm = random_inputs(model, 20, seed=4)
    prj = write_project(model, tmp_path / "prj", backend="Vitis", part="xc7z020clg400-1",
                        expected=(t.to_float(xm), simulate(model, x_mantissa=xm).output),
                        clock_period=7)
    first = (prj / "tb_data" / "vecq_input.dat").read_text().splitlines()
    assert first[0] == "20 32"
    assert [int(v) for v in first[1].split()] == xm[0].tolist()
    tcl = (prj / "build_prj.tcl").read_text()
    cfg = (prj / "hls_config.cfg").read_text()
    for text in (tcl, cfg):
        assert "xc7z020clg400-1" in text and "myproject" in text
    assert "create_clock -period 7" in tcl and "csim_design" in tcl and "csynth_design" in tcl
    assert re.search(r"^clock=7ns$", cfg, re.M) and "syn.top=myproject" in cfg and "[hls]" in cfg
    assert "tb.file=tb_data" in cfg


def test_every_hls4ml_type_is_pinned():
    model = random_cnn(4, seed=1, avg_pool=True)
    graph, names = build_graph(model, io_type="io_stream", backend="Vitis")
    # check_pinned ran inside build_graph; a model type the graph does not carry must be caught
    from vecq_hw.hls.convert import check_pinned

    other = random_cnn(4, seed=2, avg_pool=True)
    other.layers[1] = dataclasses.replace(other.layers[1], out_type=FixedType(10, 4, True, "AP_RND", "AP_SAT"))
    with pytest.raises(VecQError, match="conv1"):
        check_pinned(graph, other, names)


def test_trace_equals_simulator_trace(tmp_path):
    """Per-layer outputs of hls4ml's compiled model (trace) == the simulator's trace, bit for bit."""
    from vecq_hw.hls import build_hls_model
    from vecq_hw.sim import simulate

    model = random_cnn(2, seed=5, avg_pool=True)
    xm = random_inputs(model, 40, seed=6)
    sim = simulate(model, x_mantissa=xm, trace=True)
    graph = build_hls_model(model, tmp_path / "trace_prj", trace=True)
    x = model.input.out_type.to_float(xm).reshape(len(xm), -1)
    y, trace = graph.trace(np.ascontiguousarray(x, dtype=np.float64))
    compared = 0
    for layer in model.layers[1:]:
        if layer.name not in trace:
            continue
        got = np.asarray(trace[layer.name], dtype=np.float64).reshape(len(xm), -1)
        want = layer.out_type.to_float(np.asarray(sim.trace[layer.name])).reshape(len(xm), -1)
        assert np.array_equal(got, want), layer.name
        compared += 1
    assert compared >= 7
    assert np.array_equal(np.asarray(y, dtype=np.float64).reshape(len(xm), -1),
                          model.output_type.to_float(sim.output).reshape(len(xm), -1))


def test_narrowed_accumulator_makes_csim_fail(tmp_path):
    """A hand-narrowed accumulator (bypassing Model.check) overflows in C++: csim must see it."""
    good = random_mlp(4, seed=7)
    fc1 = good.layers[1]
    need = ir.accumulator_type(good.input.out_type, fc1.multipliers())
    narrow = FixedType(width=need.width - 4, integer=need.integer - 4, signed=True)
    broken = ir.Model(name="broken", layers=[good.layers[0], dataclasses.replace(fc1, accum_type=narrow)]
                      + good.layers[2:])
    with pytest.raises(VecQError, match="accum_type"):
        broken.check()
    x = random_inputs(good, N_TESTS, seed=8)
    prj = write_project(broken, tmp_path / "prj", expected=_expected(good, x), check=False)
    res = csim(prj)
    assert not res.ok and res.mismatches > 0
    assert "MISMATCHES: " in res.log


POOL_CASES = [  # issue #11 item 7: stride != pool size, which hls4ml's streaming pool asserts against
    ("io_stream", [("max", (3, 3), (2, 2)), ("avg", (2, 2), (1, 1))]),
    ("io_parallel", [("max", (2, 2), (1, 1)), ("avg", (2, 2), (1, 1))]),
]


@pytest.mark.parametrize("io_type,pools", POOL_CASES)
def test_pool_stride_other_than_size_csim_equals_simulator(tmp_path, io_type, pools):
    from vecq_hw.hls import HlsOptions

    model = random_cnn(2, seed=11, size=12, pools=pools)
    graph, _ = build_graph(model, HlsOptions(io_type=io_type))
    assert [n.class_name for n in graph.get_layers() if n.name.startswith("pool")] == ["VecQPool2D"] * 2
    x = random_inputs(model, N_TESTS, seed=12)
    prj = write_project(model, tmp_path / "prj", HlsOptions(io_type=io_type),
                        expected=(x, simulate(model, x_mantissa=x).output))
    _check(prj, model, x)


def test_expected_outputs_come_from_the_caller(tmp_path):
    """write_project writes the caller's expected outputs verbatim (it runs no simulator), and
    checks their shape and range with one line."""
    from vecq_hw.hls import HlsOptions

    model = random_mlp(2, seed=3, sizes=(8, 4))
    x = random_inputs(model, 6, seed=1)
    y = np.arange(24, dtype=np.int64).reshape(6, 4)  # deliberately not the simulator's
    prj = write_project(model, tmp_path / "prj", HlsOptions(project_name="top"), expected=(x, y))
    rows = (prj / "tb_data" / "vecq_expected.dat").read_text().splitlines()
    assert rows[0] == "6 4" and rows[1] == "0 1 2 3"
    assert (prj / "top_test.cpp").is_file()
    for bad in ((x, y[:5]), (x, y.astype(np.float64)), (x, y + model.output_type.max_mantissa), (x,)):
        with pytest.raises(VecQError, match="expected") as exc:
            write_project(model, tmp_path / "bad", expected=bad)
        assert "\n" not in str(exc.value)
    with pytest.raises(VecQError, match="no longer takes test_inputs"):
        write_project(model, tmp_path / "bad", test_inputs=x)
    # without expected outputs: a project for synthesis, no test data
    bare = write_project(model, tmp_path / "bare")
    assert (bare / "firmware").is_dir() and not (bare / "tb_data" / "vecq_expected.dat").exists()


def _tree(prj):
    return {str(p.relative_to(prj)): p.read_bytes() for p in sorted((prj / "firmware").rglob("*"))
            if p.is_file()}


def test_project_content_does_not_depend_on_what_the_process_built_before(tmp_path):
    """A fresh process writes the same firmware for the same model as one that built other kinds
    first (kinds whose hls4ml layers register lazily): otherwise a regenerated project misses the
    csim build cache and its header set depends on history. Found by `vecq-hw report` rebuilding."""
    import subprocess
    import sys
    code = ("import sys; from vecq_hw.hls import write_project; from vecq_hw.ir.examples import random_mlp; "
            "write_project(random_mlp(2, seed=3, sizes=(8, 4)), sys.argv[1])")
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "fresh")], check=True)
    from vecq_hw.hls import HlsOptions, layers_alq
    layers_alq.register()  # as after building an ALQ model in this process
    # and after building a distributed-arithmetic project (its header: in every project, or none)
    write_project(random_mlp(1, seed=4, sizes=(4, 3)), tmp_path / "da", HlsOptions(strategy="distributed_arithmetic"))
    write_project(random_mlp(2, seed=3, sizes=(8, 4)), tmp_path / "here")
    fresh, here = _tree(tmp_path / "fresh"), _tree(tmp_path / "here")
    assert sorted(fresh) == sorted(here) and "firmware/nnet_utils/nnet_vecq_da.h" in fresh
    assert fresh == here
