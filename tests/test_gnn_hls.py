"""The GCN's back ends (issue #27) on small instances: C simulation and the RTL interpreter of a
small random two-layer GCN against the simulator, and the HLS estimate's graph memories.

Full size (all 2,708 Cora nodes in C simulation, Verilator) is benchmarks/gnn.py's.
"""

from __future__ import annotations

import numpy as np
import pytest
from gnn_models import random_features, random_gcn

from vecq_hw import rtl
from vecq_hw.hls import csim, write_project
from vecq_hw.hls.estimate import estimate
from vecq_hw.sim import simulate

pytestmark = pytest.mark.xdist_group("gnn_hls")


def test_c_simulation_of_a_two_layer_gcn_is_bit_exact(tmp_path):
    model = random_gcn(seed=7, n=24, f_in=6, hidden=4, classes=3, m=30)
    x = np.concatenate([random_features(model, s, 0.5) for s in range(3)])
    y = simulate(model, x_mantissa=x).output
    prj = write_project(model, tmp_path / "prj", expected=(x, y), io_type="io_stream")
    code = (prj / "firmware" / "myproject.cpp").read_text()
    assert "nnet::vecq_node_dense<" in code and "nnet::vecq_gcn_aggregate<" in code
    res = csim(prj, jobs=2)
    assert res.n == 3 and res.mismatches == 0 and res.value_mismatches == 0, res.log[-2000:]
    np.testing.assert_array_equal(res.outputs.reshape(y.shape), y)
    assert len(np.unique(y)) > 10


def test_rtl_interpreter_of_a_small_gcn_equals_the_simulator(tmp_path):
    model = random_gcn(seed=3, n=10, f_in=5, hidden=3, classes=2, m=12)
    x = np.concatenate([random_features(model, s, 0.5) for s in range(4)])
    prj = rtl.write(model, tmp_path / "rtl", rtl.RtlOptions())
    got = rtl.predict_interp(prj, x)
    np.testing.assert_array_equal(got, simulate(model, x_mantissa=x).output.reshape(len(x), -1))


def test_estimate_holds_the_stored_features_in_bram_and_walks_every_edge():
    model = random_gcn(seed=1, n=2708, f_in=8, hidden=16, classes=7, m=5000)
    est = estimate(model, part="xc7z020", io_type="io_stream")
    agg = next(e for e in est.layers if e.name == "agg1")
    layer = model.layer("agg1")
    # 2,708 rows of 16 values at 3, 5 or 8 bits: at least their bits / 18 kbit of BRAM18 (and the ROMs)
    stored = 16 * sum((8, 5, 3)[int(b)] for b in layer.node_bucket)
    assert stored / 18432 <= agg.bram18 <= stored / 18432 + 40  # plus the ROMs and the BRAMs' aspect ratios
    assert est.total("bram18") < 280  # xc7z020's BRAM18 count
    assert agg.cycles == 2 * 2708 + layer.indices.size  # a row per node in, an edge per cycle, a row per node out
