"""A layer kind's HLS side added from outside the package (issue 20): an hls4ml layer class, its
templates and its own C++ header (written here, outside hls_templates/) registered through
:func:`vecq_hw.hls.registration.register_hls_layer`, built into a project with our writer and
C-simulated with g++ against a numpy reference; then unregistered without a trace.

The kind is an exact ``negate`` (y = -x in a type one bit wider). Its integer-model side is the
least the HLS back end reads (a layer class and a mapping, defined here too); the simulator and
the other back ends are not involved: the expected outputs come from numpy.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
from hls4ml.backends import get_backend
from hls4ml.model import layers as hls_layers
from hls4ml.model.attributes import Attribute
from hls4ml.model.layers import Layer as HlsLayer
from hls4ml.model.optimizer import optimizer as hls_optimizer

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.hls import csim, write_project
from vecq_hw.hls import mappings
from vecq_hw.hls.layers import TEMPLATE_DIR, register
from vecq_hw.hls.options import BACKENDS
from vecq_hw.hls.registration import register_hls_layer, registered_headers, registered_kinds, unregister_hls_layer
from vecq_hw.hls.types import precision_of

N_TESTS = 300
HEADER = r"""// a test's own kernel: res[i] = -data[i] (ap_fixed negation is exact: one bit wider)
#ifndef VECQ_TEST_NEGATE_H_
#define VECQ_TEST_NEGATE_H_
#include "nnet_common.h"
namespace nnet {
struct vecq_test_negate_config {
    static const unsigned n_in = 1;
};
template <class data_T, class res_T, typename CONFIG_T>
void vecq_test_negate(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in]) {
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = -data[i];
    }
}
} // namespace nnet
#endif
"""


@dataclass(eq=False)
class Negate(ir.Layer):
    """y = -x, exact: the output type must hold the negation of every input value."""

    kind: ClassVar[str] = "test_negate"

    def check(self, in_shapes, in_types, fail):
        t = in_types[0]
        if self.out_type.frac < t.frac or self.out_type.max_value < -t.min_value or \
                self.out_type.min_value > -t.max_value:
            fail("out_type", f"{self.out_type} cannot hold -x for every {t} value exactly")


class NegateMapping(mappings.Mapping):
    kind = Negate.kind

    def class_name(self, node, opts):
        return "VecQTestNegate"

    def attrs(self, node, opts):
        return {"n_in": int(np.prod(node.in_shapes[0])), "vecq_out_type": node.layer.out_type}


class VecQTestNegate(HlsLayer):
    _expected_attributes = [Attribute("n_in")]

    def initialize(self):
        self.add_output_variable([self.get_attr("n_in")], precision=precision_of(self.get_attr("vecq_out_type")))


CONFIG = "struct config{index} : nnet::vecq_test_negate_config {{\n    static const unsigned n_in = {n_in};\n}};\n"
CALL = "nnet::vecq_test_negate<{input_t}, {output_t}, {config}>({input}, {output});"


@pytest.fixture
def negate_header(tmp_path):
    """The kind registered with hls4ml and our mappings, its header in tmp_path; undone afterwards."""
    header = tmp_path / "kernels" / "vecq_test_negate.h"
    header.parent.mkdir()
    header.write_text(HEADER)
    register()  # our own kinds first: the test's header must coexist with them
    mappings.register(NegateMapping())
    try:
        register_hls_layer(VecQTestNegate, CONFIG, CALL, [header])
        yield header
    finally:
        unregister_hls_layer(VecQTestNegate)
        mappings.MAPPINGS.pop(Negate.kind, None)


def negate_model() -> ir.Model:
    t_in, t_neg = FixedType(8, 3, True), FixedType(9, 4, True)  # -(-4) = 4 needs the extra bit
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(12,)),
              Negate(name="neg", out_type=t_neg),
              ir.ReLU(name="relu", out_type=t_neg)]
    return ir.Model(name="negate_relu", layers=layers).check()


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_registered_kind_is_written_and_csim_matches_numpy(negate_header, tmp_path):
    model = negate_model()
    rng = np.random.default_rng(7)
    t = model.input.out_type
    x = rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(N_TESTS, 12), dtype=np.int64)
    x[0] = t.min_mantissa  # -(-4): the value that needs the wider output type
    y = np.maximum(-x, 0)  # same fractional bits in and out: the mantissas negate
    prj = write_project(model, tmp_path / "prj", expected=(x, y))

    nnet = prj / "firmware" / "nnet_utils"
    assert (nnet / "vecq_test_negate.h").read_bytes() == negate_header.read_bytes()
    meta = json.loads((prj / "vecq_project.json").read_text())
    assert "vecq_test_negate.h" in meta["kernel_headers"] and "nnet_vecq_products.h" in meta["kernel_headers"]
    for name in meta["kernel_headers"]:  # ours beside the test's: every registered header landed
        assert (nnet / name).is_file(), name
    params = (prj / "firmware" / "parameters.h").read_text()
    assert '#include "nnet_utils/vecq_test_negate.h"' in params and "nnet_vecq_dense.h" not in params
    top = (prj / "firmware" / "myproject.cpp").read_text()
    assert "nnet::vecq_test_negate<" in top

    res = csim(prj, jobs=2)
    assert res.n == N_TESTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-3000:]
    np.testing.assert_array_equal(res.outputs, y)
    assert (y > 0).mean() > 0.4 and y.max() == 2**7  # not degenerate; the widened value came through


def test_unregister_leaves_no_trace(tmp_path):
    header = tmp_path / "vecq_test_negate.h"
    header.write_text(HEADER)
    register()
    before_headers = registered_headers()
    register_hls_layer(VecQTestNegate, CONFIG, CALL, header)
    register_hls_layer(VecQTestNegate, CONFIG, CALL, [header])  # the same again: nothing happens
    assert registered_headers() == before_headers + [header.resolve()]
    assert hls_layers.layer_map["VecQTestNegate"] is VecQTestNegate
    unregister_hls_layer(VecQTestNegate)
    assert registered_headers() == before_headers and "VecQTestNegate" not in registered_kinds()
    assert "VecQTestNegate" not in hls_layers.layer_map
    for backend in BACKENDS:
        assert not [k for k in hls_optimizer.optimizer_map if "vecqtestnegate" in k]
        assert not [k for k in get_backend(backend).get_custom_source() if k.endswith("vecq_test_negate.h")]
    # our own kinds are untouched, and their headers are all ours
    assert {"VecQDense", "VecQConv2D", "VecQPool2D"} <= set(registered_kinds())
    assert all(p.parent == TEMPLATE_DIR.resolve() for p in registered_headers())


def test_bad_registrations_are_refused_in_one_line(tmp_path):
    register()
    clash = tmp_path / "nnet_dense.h"  # hls4ml's own header name
    clash.write_text("// x\n")
    ours = tmp_path / "nnet_vecq_products.h"  # the name of one of our registered headers
    ours.write_text("// x\n")
    sub = tmp_path / "inc" / "helper.h"
    sub.parent.mkdir()
    sub.write_text("// x\n")
    nested = tmp_path / "vecq_test_nested.h"
    nested.write_text('#include "inc/helper.h"\n')
    cases = [([tmp_path / "missing.h"], "header file not found"), ([clash], "one of hls4ml's own nnet_utils"),
             ([ours], "also the name of"), ([nested], "from a subfolder"), ([], "at least one header")]
    try:
        for headers, why in cases:
            with pytest.raises(VecQError, match=why) as exc:
                register_hls_layer(VecQTestNegate, CONFIG, CALL, headers)
            assert "\n" not in str(exc.value)
            assert "VecQTestNegate" not in registered_kinds() and "VecQTestNegate" not in hls_layers.layer_map
        ok = tmp_path / "vecq_test_negate.h"
        ok.write_text(HEADER)
        register_hls_layer(VecQTestNegate, CONFIG, CALL, ok)
        with pytest.raises(VecQError, match="already registered differently"):
            register_hls_layer(VecQTestNegate, CONFIG + "// other\n", CALL, ok)
    finally:
        unregister_hls_layer(VecQTestNegate)
