"""ESB, ALQ and SQ end to end (issue 14): one tiny MLP per method (784-32-10, BatchNorm,
8-bit fixed-point activations) trained briefly on MNIST with the method's own procedure,
exported by tracing, simulated, and the g++ C simulation of the generated HLS project equals
the simulator on 500 MNIST test images: 0 mismatches.

* ESB b = 6, k = 3: a levels table whose product is 'shift_add_n' (3 shifted copies, no
  multiplier) -- the new kernel class goes through the whole flow;
* ALQ: float pre-training, greedy init, loss-aware steps with pruning to 1.0 basis per weight
  on average, STE post-training; deployed in its native form, bit-planes and alpha constants
  (``alq_dense``, the kernel ``nnet_vecq_alq.h``; docs/FORMAT.md, "ALQ layers");
* SQ over TWN: the ratio steps 50 -> 75 -> 87.5 -> 100 % over the run; exported fully
  quantised, levels {-1, 0, +1} ('addsub').
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vecq_hw import ir
from vecq_hw.data import load_dataset
from vecq_hw.export.torch_export import export
from vecq_hw.hls import HlsOptions, csim, write_project
from vecq_hw.hls.products import CPP_CLASSES
from vecq_hw.models.mlp import mlp
from vecq_hw.sim import simulate
from vecq_hw.train.alq_steps import ALQTrainer, alq_layers
from vecq_hw.train.sq_schedule import set_sq_ratio, stage_ratio

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

N_TEST, STEPS, BATCH = 500, 150, 64


@pytest.fixture(scope="module")
def mnist():
    (x, y), (tx, ty) = load_dataset("mnist", "train", limit=4000), load_dataset("mnist", "test", limit=N_TEST)
    to = lambda a: torch.from_numpy(a.astype(np.float32) / 256.0).reshape(len(a), -1)  # noqa: E731
    return to(x), torch.from_numpy(y.astype(np.int64)), to(tx), ty


def _batches(x, y, seed=0):
    gen = torch.Generator().manual_seed(seed)
    while True:
        idx = torch.randint(0, len(x), (BATCH,), generator=gen)
        yield x[idx], y[idx]


def _fit(model, params, batches, steps, before_step=None, after_backward=None):
    opt = torch.optim.Adam(params, lr=5e-3)
    model.train()
    for step in range(steps):
        if before_step:
            before_step(step)
        xb, yb = next(batches)
        loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if after_backward:
            after_backward(step)


def train_esb(x, y):
    model = mlp(weight_quant={"method": "esb", "bits": 6, "significant_bits": 3, "per_channel": True},
                hidden=(32,))
    _fit(model, model.parameters(), _batches(x, y), STEPS)
    return model


def train_alq(x, y):
    model = mlp(weight_quant={"method": "alq", "bits": 8, "max_bases": 2, "target_bits": 1.0,
                              "prune_rate": 0.3, "top_k": 0.5, "per_channel": True}, hidden=(32,))
    batches = _batches(x, y)
    layers = alq_layers(model)
    for m in layers:
        m.quantize = False
    _fit(model, model.parameters(), batches, STEPS // 2)  # float pre-training
    tr = ALQTrainer(model, lr=5e-3)
    tr.init()

    def after(step):
        tr.step()
        if step % 10 == 9:
            tr.prune(rounds=1)

    _fit(model, tr.other_parameters(), batches, STEPS // 3, after_backward=after)
    avg = tr.prune()
    assert avg <= 1.0
    tr.finish()
    _fit(model, model.parameters(), batches, STEPS // 3)  # STE post-training
    return model


def train_sq(x, y):
    model = mlp(weight_quant={"method": "sq", "base": "twn", "bits": 2, "per_channel": True}, hidden=(32,))
    _fit(model, model.parameters(), _batches(x, y), STEPS,
         before_step=lambda s: set_sq_ratio(model, stage_ratio(s, STEPS)))
    assert all(m.weight_quant.ratio == 1.0 for m in model.modules() if getattr(m, "weight_quant", None) is not None)
    return model


def _product(kind: str) -> str:
    return f"using product = nnet::{CPP_CLASSES[kind]}<"


#: method -> (training, what the generated headers must hold: the product class the layers bind,
#: or the config of ALQ's own kernel)
METHODS = {"esb": (train_esb, _product("shift_add_n")), "alq": (train_alq, ": nnet::vecq_alq_dense_config"),
           "sq_twn": (train_sq, _product("addsub"))}


@pytest.mark.parametrize("method", list(METHODS))
def test_trained_method_csim_equals_simulator(tmp_path, mnist, method):
    x, y, tx, ty = mnist
    torch.manual_seed(0)
    train, marker = METHODS[method]
    model = train(x, y).eval()
    res = export(model, model.input_shape, samples=tx[:256])
    weighted = [layer for layer in res.model.layers if isinstance(layer, (ir.Weighted, ir.AlqWeighted))]
    assert len(weighted) == 2 and all(isinstance(w, ir.AlqWeighted) == (method == "alq") for w in weighted)
    xm = res.model.input.out_type.from_float(tx.double().numpy()).astype(np.int64)
    sim = simulate(res.model, x_mantissa=xm)
    acc = float(np.mean(sim.output.reshape(N_TEST, -1).argmax(1) == ty))
    print(f"\n{method}: integer-model accuracy {100 * acc:.1f} % on {N_TEST} MNIST test images; {res.text()}")
    assert acc > 0.6
    prj = write_project(res.model, tmp_path / "prj", HlsOptions(io_type="io_parallel"), expected=(xm, sim.output))
    text = "".join(f.read_text(errors="replace") for f in prj.rglob("*.h"))
    assert marker in text
    out = csim(prj)
    assert out.n == N_TEST
    assert out.mismatches == 0 and out.value_mismatches == 0, out.log[-3000:]
    np.testing.assert_array_equal(out.outputs, sim.output.reshape(N_TEST, -1))
