"""io_stream pooling without a frame buffer (issue 13 item 2): simulator == g++ C simulation.

``vecq_pool2d`` (any stride, max and average) streams through a line buffer of pool_height rows
(+1 when a pack can straddle two rows) and ``vecq_global_avg_pool`` keeps one running sum per
channel. Two projects, each written and C-simulated once (module fixture), 500 random inputs:
a pool model (a max pool 3x3 stride 2 then an average pool 2x2 stride (2, 1), both on
non-square inputs with 3 channels, hls4ml's one-pixel packs, trailing rows and columns that no
window reads) whose output IS the average pool's output, so every max value reaches the compare
exactly; and a GAP model on a 9 x 7 x 5 input. The expected outputs handed to the project are
the simulator's; the C++ outputs are also compared with an independent simulator run.

The kernels' own test (``tests/fixtures/stream_pool_harness.cpp``, one g++ build) runs each
stream kernel against its array kernel bit for bit on packs hls4ml never emits (packs that
straddle rows, split pixels, several pixels per output pack, stride > pool), and checks their
static memory with ``g++ -fstack-usage``: the stack frame of the stream kernel must not grow
when the frame is 64 (pool) / 4096 (GAP) times larger. The old kernels, which read the whole
frame into a local array, fail it (13 kB / 688 kB frames instead of < 200 bytes).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.fixed import FixedType
from vecq_hw.hls import HlsOptions, build_graph, csim, write_project
from vecq_hw.hls.layers import TEMPLATE_DIR
from vecq_hw.ir.examples import random_inputs
from vecq_hw.sim import simulate

N_TESTS = 500
HARNESS = Path(__file__).parent / "fixtures" / "stream_pool_harness.cpp"


def pool_model() -> ir.Model:
    """16 x 13 x 3 -> max 3x3 stride 2 (row 15 unread) -> 7 x 6 x 3 -> avg 2x2 stride (2, 1)
    (row 6 unread) -> 3 x 5 x 3: the output is the average pool's (no flatten: hls4ml would add a
    Repack layer after a final io_stream flatten, which the pinned-type check refuses)."""
    t_in = FixedType(8, 2, True)
    t_avg = FixedType(10, 2, True)  # frac + log2(4): the exact mean
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(16, 13, 3)),
              ir.MaxPool2D(name="pool_max", out_type=t_in, pool=(3, 3), stride=(2, 2)),
              ir.AvgPool2D(name="pool_avg", out_type=t_avg, pool=(2, 2), stride=(2, 1))]
    return ir.Model(name="stream_pools", layers=layers).check()


def gap_model() -> ir.Model:
    """9 x 7 x 5 -> global average pool (63 pixels: mult is 1/63 rounded, the output rounds)."""
    t_in = FixedType(8, 2, True)
    mult, mult_type = ir.GlobalAvgPool2D.constant(63, 12)
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(9, 7, 5)),
              ir.GlobalAvgPool2D(name="gap", out_type=FixedType(10, 2, True, "AP_RND", "AP_SAT"), mult=mult,
                                 mult_type=mult_type)]
    return ir.Model(name="stream_gap", layers=layers).check()


CASES = {"pools": (pool_model, ["VecQPool2D", "VecQPool2D"]), "gap": (gap_model, ["VecQGlobalAvgPool2D"])}


@pytest.fixture(scope="module", params=sorted(CASES))
def built(request, tmp_path_factory):
    if shutil.which("g++") is None:
        pytest.fail("g++ is required for the C simulation tests")
    build, classes = CASES[request.param]
    model = build()
    opts = HlsOptions(io_type="io_stream")
    graph, _ = build_graph(model, opts)
    assert [n.class_name for n in graph.get_layers() if n.class_name.startswith("VecQ")] == classes
    x = random_inputs(model, N_TESTS, seed=21)
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path_factory.mktemp(request.param) / "prj", opts, expected=(x, y))
    return model, x, prj, csim(prj)


def test_stream_pool_csim_equals_simulator(built):
    model, x, prj, res = built
    assert res.synthesis_checked
    assert res.n == N_TESTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    np.testing.assert_array_equal(res.outputs, simulate(model, x_mantissa=x).output.reshape(N_TESTS, -1))
    t = model.output_type
    assert len(np.unique(res.outputs)) > 50  # not degenerate
    assert np.mean((res.outputs == t.max_mantissa) | (res.outputs == t.min_mantissa)) < 0.2


def _stack_usage(su_files) -> dict[tuple[str, str], tuple[int, str]]:
    """(kernel, config) -> (bytes, qualifier) of the stream kernels instantiated on px_t packs."""
    pat = re.compile(r"nnet::(vecq_pool2d|vecq_global_avg_pool)\(hls::stream<[^\]]*\[with data_T = "
                     r"(?:nnet::)?array<ap_fixed<8, 3>, 3>; res_T = (?:nnet::)?array<ap_fixed<(?:8|10), 3>, 3>; "
                     r"CONFIG_T = (\w+)\]\t(\d+)\t(\w+)")
    found = {}
    for f in su_files:
        for line in f.read_text().splitlines():
            m = pat.search(line)
            if m:
                found[(m.group(1), m.group(2))] = (int(m.group(3)), m.group(4))
    return found


def test_stream_kernels_equal_array_kernels_without_a_frame(tmp_path):
    if shutil.which("g++") is None:
        pytest.fail("g++ is required for the kernel tests")
    import hls4ml

    tpl = Path(hls4ml.__file__).parent / "templates" / "vivado"
    exe = tmp_path / "harness"
    cmd = ["g++", "-std=c++11", "-O0", "-fstack-usage", f"-I{tpl / 'ap_types'}", f"-I{tpl / 'nnet_utils'}",
           f"-I{TEMPLATE_DIR}", str(HARNESS), "-o", str(exe)]
    build = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    run = subprocess.run([str(exe)], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "TOTAL MISMATCHES 0" in run.stdout, run.stdout + run.stderr
    assert run.stdout.count(" 0 mismatches") == 8 and "300 frames" in run.stdout

    su = _stack_usage(tmp_path.glob("*.su"))
    for kernel, small, big in (("vecq_pool2d", "PoolMax", "PoolTall"), ("vecq_global_avg_pool", "Gap", "GapBig")):
        (s_small, q_small), (s_big, q_big) = su[(kernel, small)], su[(kernel, big)]
        assert q_small == q_big == "static", (kernel, q_small, q_big)
        # the big frame is 10,752 (pool) / 688,128 (GAP) values: a frame buffer would show here;
        # the line buffer / sums do not depend on the height or the pixel count (GAP: the wider
        # accum_t of the bigger sum adds a few bytes)
        assert s_big <= s_small + 64 and s_big < 2048, (kernel, s_small, s_big)
