"""A layer kind added end to end without editing the package (issue #20's done-when).

Everything about the kind lives in this file: an exact ``negate`` (y = -x in a type one integer
bit wider, so -min fits) registered with

* the integer model (``ir.register_kind``): fields, check, the folder format;
* the simulator (``sim.kernels.kernel_for``);
* the HLS back end: a mapping with its estimate (``hls.mappings.register``) and an hls4ml layer
  with its templates and its own C++ header written into tmp_path
  (``hls.registration.register_hls_layer``);
* the exporter (its handler table, for ``torch.neg`` in a model's ``forward``);
* the RTL back end (``rtl.rtl_op``).

A PyTorch model using ``torch.neg`` between two VecQ layers is exported (the export's own
equivalence check against PyTorch passes), saved and loaded, simulated, C-simulated from its
HLS project and RTL-simulated with Verilator: 0 mismatches. The expected values of the negation
itself are checked against numpy, independently of the kernel registered here. Every
registration is undone afterwards.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from hls4ml.model.attributes import Attribute
from hls4ml.model.layers import Layer as HlsLayer
from torch import nn

from vecq_hw import ir, rtl
from vecq_hw.export.build import Builder
from vecq_hw.export.handlers import HANDLERS
from vecq_hw.export.torch_export import ExportOptions, export
from vecq_hw.export.values import Tensor
from vecq_hw.fixed import FixedType
from vecq_hw.flow import simulate_rtl
from vecq_hw.hls import csim, mappings, write_project
from vecq_hw.hls.layers import register as register_ours
from vecq_hw.hls.registration import register_hls_layer, unregister_hls_layer
from vecq_hw.hls.types import precision_of
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.nn import FixedQuant, VecQLinear
from vecq_hw.quant import VecQ
from vecq_hw.rtl.requant import requantize
from vecq_hw.sim import simulate
from vecq_hw.sim.kernels import KERNELS, Kernel, kernel_for

pytestmark = [pytest.mark.xdist_group("new_kind_e2e"),
              pytest.mark.skipif(shutil.which("g++") is None or shutil.which("verilator") is None,
                                 reason="needs g++ and verilator (make install)")]

KIND = "e2e_negate"
N_INPUTS = 400


# ------------------------------------------------------------------------------ the integer model

@dataclass(eq=False)
class Negate(ir.Layer):
    """y = -x exactly: ``out_type`` holds the negation of every input value, on a grid at least
    as fine as the input's."""

    kind: ClassVar[str] = KIND

    def check(self, in_shapes, in_types, fail):
        t, o = in_types[0], self.out_type
        if o.frac < t.frac or o.max_value < -t.min_value or o.min_value > -t.max_value:
            fail("out_type", f"{o} cannot hold -x for every {t} value x")


def negated_type(t: FixedType) -> FixedType:
    """The exact type of -x: one more integer bit (the negation of the most negative value)."""
    return FixedType(width=t.width + 1, integer=t.integer + 1, signed=True)


# ------------------------------------------------------------------------------ the simulator

class NegateKernel(Kernel):
    def run(self, x, counts=None):
        shift = self.out_type.frac - self.in_type.frac
        out = -x.astype(np.int64)  # int64: exact for every mantissa the check admits
        return out << np.int64(shift) if shift else out


# ------------------------------------------------------------------------------ HLS

HEADER = r"""// e2e test kernel: res[i] = -data[i]; exact (res_T is one integer bit wider than data_T)
#ifndef VECQ_E2E_NEGATE_H_
#define VECQ_E2E_NEGATE_H_
#include "nnet_common.h"
namespace nnet {
struct vecq_e2e_negate_config { static const unsigned n_in = 1; };
template <class data_T, class res_T, typename CONFIG_T>
void vecq_e2e_negate(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_in]) {
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        res[i] = -res_T(data[i]);
    }
}
} // namespace nnet
#endif
"""
CONFIG = "struct config{index} : nnet::vecq_e2e_negate_config {{\n    static const unsigned n_in = {n_in};\n}};\n"
CALL = "nnet::vecq_e2e_negate<{input_t}, {output_t}, {config}>({input}, {output});"


class E2eNegate(HlsLayer):
    _expected_attributes = [Attribute("n_in")]

    def initialize(self):
        self.add_output_variable([self.get_attr("n_in")], precision=precision_of(self.get_attr("vecq_out_type")))


class NegateMapping(mappings.Mapping):
    kind = KIND

    def class_name(self, node, opts):
        return "E2eNegate"

    def attrs(self, node, opts):
        return {"n_in": int(np.prod(node.in_shapes[0])), "vecq_out_type": node.layer.out_type}

    def estimate(self, node, reuse, io_type):
        bits = int(np.prod(node.out_shape)) * node.layer.out_type.width
        return self.logic_estimate(node, io_type, float(bits), 1)  # an inverter and +1 per bit


# ------------------------------------------------------------------------------ the exporter

def negate_handler(b: Builder, node, module):
    t = b.settle(node, 0)
    layer = Negate(name=b.name(node.name), out_type=negated_type(t.typ), inputs=(t.layer,))
    return b.emit(node, [layer], Tensor(layer=layer.name, tshape=t.tshape, ishape=t.ishape, typ=layer.out_type,
                                        order=t.order), (t.layer,))


# ------------------------------------------------------------------------------ RTL

def negate_op(step: rtl.TraceStep) -> np.ndarray:
    flat = [requantize(-v, step.in_type.frac, step.layer.out_type, step.where) for v in step.x.ravel()]
    return np.array(flat, dtype=object).reshape(step.x.shape)


@pytest.fixture(scope="module")
def negate_kind(tmp_path_factory):
    header = tmp_path_factory.mktemp("kernels") / "vecq_e2e_negate.h"
    header.write_text(HEADER)
    register_ours()
    ir.register_kind(Negate)
    kernel_for(KIND)(NegateKernel)
    mappings.register(NegateMapping())
    register_hls_layer(E2eNegate, CONFIG, CALL, [header])
    HANDLERS.functions[torch.neg] = negate_handler
    rtl.rtl_op(KIND)(negate_op)
    try:
        yield
    finally:
        for registry in (ir.LAYER_KINDS, KERNELS, mappings.MAPPINGS, rtl.RTL_OPS):
            registry.pop(KIND, None)
        HANDLERS.functions.pop(torch.neg, None)
        unregister_hls_layer(E2eNegate)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.q_in = FixedQuant("ap_fixed<6,2,AP_RND,AP_SAT>")
        self.fc1 = VecQLinear(8, 6, weight_quant=VecQ(bits=2))
        self.q1 = FixedQuant("ap_fixed<8,3,AP_RND,AP_SAT>")
        self.fc2 = VecQLinear(6, 4, weight_quant=VecQ(bits=3))
        self.q_out = FixedQuant("ap_fixed<12,5,AP_RND,AP_SAT>")

    def forward(self, x):
        h = torch.neg(self.q1(self.fc1(self.q_in(x))))  # the new kind, between two VecQ layers
        return self.q_out(self.fc2(h))


@pytest.fixture(scope="module")
def exported(negate_kind, tmp_path_factory):
    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():  # scale fc1 up so its requantisation saturates at both ends sometimes
        net.fc1.weight.mul_(4.0)
    samples = torch.rand(256, 8) * 8 - 4
    result = export(net, (8,), ExportOptions(name="negate_e2e"), samples=samples)
    folder = tmp_path_factory.mktemp("model") / "negate_e2e"
    save_model(result.model, folder)
    return result, load_model(folder)


def test_export_maps_torch_neg_to_the_new_kind(exported):
    result, model = exported
    assert [layer.kind for layer in model.layers] == ["input", "dense", KIND, "dense"]
    neg = model.layers[2]
    assert neg.out_type == FixedType(9, 4, True) and model == result.model
    # the export's own check against PyTorch covered the new layer: exact, bit for bit
    assert "argmax agreement" in result.equivalence.text()


def test_simulated_negation_is_numpy_negation(exported):
    _, model = exported
    t = model.input.out_type
    rng = np.random.default_rng(1)
    x = rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(N_INPUTS, 8), dtype=np.int64)
    trace = simulate(model, x_mantissa=x, trace=True).trace
    fc1, neg = trace[model.layers[1].name], trace[model.layers[2].name]
    shift = model.layers[2].out_type.frac - model.layers[1].out_type.frac
    np.testing.assert_array_equal(neg, -(fc1 << shift))  # numpy's negation, not the kernel's
    assert fc1.min() == model.layers[1].out_type.min_mantissa  # -min reached: the widened bit is used


@pytest.fixture(scope="module")
def inputs(exported):
    _, model = exported
    t = model.input.out_type
    rng = np.random.default_rng(2)
    x = rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(N_INPUTS, 8), dtype=np.int64)
    x[0], x[1] = t.min_mantissa, t.max_mantissa
    return x


def test_c_simulation_of_the_new_kind_is_bit_exact(exported, inputs, tmp_path):
    _, model = exported
    y = simulate(model, x_mantissa=inputs).output
    prj = write_project(model, tmp_path / "prj", expected=(inputs, y))
    assert "nnet::vecq_e2e_negate<" in (prj / "firmware" / "myproject.cpp").read_text()
    res = csim(prj, jobs=2)
    assert res.n == N_INPUTS and res.mismatches == 0 and res.value_mismatches == 0, res.log[-2000:]
    np.testing.assert_array_equal(res.outputs, y)


def test_rtl_simulation_of_the_new_kind_is_bit_exact(exported, inputs, tmp_path):
    _, model = exported
    prj = rtl.write(model, tmp_path / "rtl", rtl.RtlOptions())
    res = simulate_rtl(prj, inputs)
    assert res.n == N_INPUTS and res.ok, res.summary()
    assert res.rtl_mismatches == 0 and res.interp_mismatches == 0
