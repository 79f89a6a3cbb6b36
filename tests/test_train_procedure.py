"""A quantiser with its own training procedure, added without editing the package (issue 20).

The toy quantiser ``toy_sched`` (codes in the int table [-2, -1, 0, 1], alpha = gain * mean|w|)
and its procedure ``ToySchedule`` are defined and registered here only. The procedure turns
the QAT epochs into a one-epoch ``toy`` phase (in which the optimizer leaves the first conv's
bias alone) and the rest, lowers every layer's gain to ``train.toy.decay ** epochs_seen`` at the
start of each epoch, counts epochs and steps in its checkpoint state, logs the gain per epoch,
adds its step count to the metrics and saves the final gains with model.pt.

Checked through the recipe path (``vecq_hw.train.train`` on 64 MNIST images):

* every hook runs, in the documented order and number, with the layers already switched to
  the phase's mode, and ``after_step`` gets the learning rate each step used (the cosine
  schedule computed here);
* an excluded parameter is left alone by its phase's optimizer and trained again after it;
* a run interrupted at the phase switch or inside a phase and resumed ends identical to the
  uninterrupted run (weights, procedure state, log, metrics), the state coming back through
  ``load_state``; load_run restores the gains (not in the state_dict) through the extras;
* the recipe checks the procedure's own section and refuses it (and ALQ's) for other methods;
* the trainer, loop and epoch modules name no quantiser method.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import json
import math
from dataclasses import replace
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
import yaml

from vecq_hw.errors import RecipeError, VecQError
from vecq_hw.nn import VecQConv2d, VecQLinear
from vecq_hw.quant import PROCEDURES, QUANTIZERS, WeightQuantizer, register_procedure, register_quantizer
from vecq_hw.train import CHECKPOINT, QuantProcedure, load_run, train
from vecq_hw.train.procedure import procedure_for
from vecq_hw.train.recipe import Spec, load_recipe, walk

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())
DECAY = 0.5
RECIPE = copy.deepcopy(TINY)
RECIPE["quant"] = {"method": "toy_sched", "bits": 2, "per_channel": True,
                   "act_type": TINY["quant"]["act_type"], "out_type": TINY["quant"]["out_type"]}
RECIPE["train"].update(float_epochs=1, epochs=3, toy={"decay": DECAY})
STEPS = 64 // 32  # train_limit / batch_size
PHASES = [("float", 1, False), ("toy", 1, True), ("qat", 2, True)]  # name, epochs, quantised


# ----------------------------------------------------------------------------- the toy, whole

class ToyQuantizer(WeightQuantizer):
    """codes c in [-2, 1], weight = c * alpha, alpha = gain * mean|w| (``gain``: set by the
    procedure, not an option)."""

    name = "toy_sched"
    unit = 1.0

    def __init__(self, bits: int = 2, per_channel: bool = False):
        super().__init__(bits, per_channel)
        self.gain = 1.0

    def levels(self) -> np.ndarray:
        return np.arange(self.cmin, self.cmax + 1, dtype=np.int64)

    def _quantize_rows(self, w, ops):
        alpha = ops.sum(abs(w)) / w.shape[1] * self.gain + 1e-12
        return ops.round_clip(w / alpha, self.cmin, self.cmax), alpha, None


def _toy_layers(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(getattr(m, "weight_quant", None), ToyQuantizer)]


class ToySchedule(QuantProcedure):
    key = "toy"
    title = "Toy"
    calls: ClassVar[list] = []  # the hooks called, in order (reset by the fixture)

    @classmethod
    def check_options(cls, options, recipe, fail):
        return walk({"decay": Spec("float", 0.5, lo=0.0, lo_open=True, hi=1.0)},
                    {} if options is None else options, "train.toy.", fail)

    def __init__(self, model, recipe):
        super().__init__(model, recipe)
        self.epochs_seen = self.steps = 0
        self._held = None  # the excluded bias at the start of this call's phase
        self._log("init", self.options["decay"])

    def _log(self, *entry):
        ToySchedule.calls.append(entry)

    def _first_bias(self):
        return next(m for m in self.model.modules() if isinstance(m, VecQConv2d)).bias

    def phases(self, phases):
        self._log("phases", tuple(p.name for p in phases))
        out = []
        for p in phases:
            out += [replace(p, name="toy", epochs=1), replace(p, epochs=p.epochs - 1)] if p.name == "qat" else [p]
        return out

    def start_phase(self, phase):
        self._log("start_phase", phase.name, phase.start, {m.quantize for _n, m in _toy_layers(self.model)})
        self._held = self._first_bias().detach().clone()

    def excluded_parameters(self, phase):
        self._log("excluded_parameters", phase.name)
        return [self._first_bias()] if phase.name == "toy" else []

    def start_epoch(self, phase, epoch):
        self._log("start_epoch", phase.name, epoch)
        for _n, m in _toy_layers(self.model):
            m.weight_quant.gain = self.options["decay"] ** self.epochs_seen

    def before_step(self):
        self._log("before_step")

    def after_step(self, lr):
        self.steps += 1
        self._log("after_step", lr)

    def end_epoch(self, phase, last):
        self.epochs_seen += 1
        held = None if self._held is None else torch.equal(self._first_bias().detach(), self._held)
        self._log("end_epoch", phase.name, last, held)

    def progress(self, phase):
        self._log("progress", phase.name)
        return {"toy_gain": _toy_layers(self.model)[0][1].weight_quant.gain}

    def progress_text(self, fields):
        self._log("progress_text")
        return f" | gain {fields['toy_gain']:g}"

    def state(self):
        self._log("state")
        return {"epochs_seen": self.epochs_seen, "steps": self.steps}

    def load_state(self, state, phase):
        self._log("load_state", dict(state), phase.name)
        self.epochs_seen, self.steps = state["epochs_seen"], state["steps"]

    def metrics(self):
        self._log("metrics")
        return {"toy_steps": self.steps}

    def model_extras(self):
        self._log("model_extras")
        return {"toy_gains": {n: m.weight_quant.gain for n, m in _toy_layers(self.model)}}

    def load_model_extras(self, blob):
        self._log("load_model_extras")
        layers = dict(_toy_layers(self.model))
        for n, g in blob["toy_gains"].items():
            layers[n].weight_quant.gain = g


@contextlib.contextmanager
def _toy_in_the_registries():
    """The toy quantiser and its procedure registered; the registries restored afterwards."""
    saved_q, saved_p = dict(QUANTIZERS), dict(PROCEDURES)
    try:
        register_quantizer(ToyQuantizer)
        register_procedure(ToyQuantizer)(ToySchedule)
        yield
    finally:
        for reg, saved in ((QUANTIZERS, saved_q), (PROCEDURES, saved_p)):
            reg.clear()
            reg.update(saved)


@pytest.fixture(autouse=True)
def toy_registered():
    with _toy_in_the_registries():
        ToySchedule.calls = []
        yield


def _train(out, **kw):
    return train(RECIPE, out, progress=False, plot=False, threads=1, **kw)


@pytest.fixture(scope="module")
def full_run(mnist, tmp_path_factory):
    """One uninterrupted run: its folder, metrics and final model (from the rank hook)."""
    run = tmp_path_factory.mktemp("toy") / "run"
    final = {}
    with _toy_in_the_registries():
        metrics = _train(run, _rank_hook=lambda model, d, epoch: final.update(model=model))
    return run, metrics, final["model"]


def _names(calls):
    return [c[0] for c in calls]


def _expected_names(phases, *, printed: bool) -> list[str]:
    """The documented hook order for ``phases`` (name, epochs, quantised) from the start."""
    out = ["init", "phases"]
    for name, epochs, _q in phases:
        out += ["start_phase", "excluded_parameters"]
        for _ in range(epochs):
            out += ["start_epoch"] + ["before_step", "after_step"] * STEPS
            out += ["end_epoch", "progress", "state"] + (["progress_text"] if printed else [])
    return out + ["metrics", "model_extras"]


def _cosine(lr0: float, epochs: int) -> list[float]:
    total = STEPS * epochs
    return [lr0 * 0.5 * (1 + math.cos(math.pi * i / total)) for i in range(total)]


# ----------------------------------------------------------------------------- hooks

def test_hooks_run_in_order_with_the_phase_switched_and_the_step_lr(mnist, tmp_path, capsys):
    metrics = train(RECIPE, tmp_path / "run", progress=True, plot=False, threads=1)
    calls = ToySchedule.calls
    assert _names(calls) == _expected_names(PHASES, printed=True)
    assert calls[0] == ("init", DECAY) and calls[1] == ("phases", ("float", "qat"))
    starts = [c for c in calls if c[0] == "start_phase"]
    assert starts == [("start_phase", "float", 0, {False}), ("start_phase", "toy", 1, {True}),
                      ("start_phase", "qat", 2, {True})]
    ends = [c[1:] for c in calls if c[0] == "end_epoch"]
    # the first conv's bias: trained in float, left alone in the toy phase (excluded), trained after
    assert ends == [("float", True, False), ("toy", True, True), ("qat", False, False), ("qat", True, False)]
    lrs = [c[1] for c in calls if c[0] == "after_step"]
    lr = RECIPE["train"]["lr"]  # qat_lr defaults to lr; the schedule restarts with each phase
    assert lrs == pytest.approx(_cosine(lr, 1) + _cosine(lr, 1) + _cosine(lr, 2), rel=1e-12, abs=0)
    log = [json.loads(s) for s in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in log] == ["float", "toy", "qat", "qat"]
    assert [h["toy_gain"] for h in log] == [DECAY**e for e in range(4)]
    assert metrics["toy_steps"] == 4 * STEPS and list(metrics)[-1] == "toy_steps"
    ck = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert ck["toy"] == {"epochs_seen": 4, "steps": 4 * STEPS}
    lines = [s for s in capsys.readouterr().out.splitlines() if " epoch " in s]
    assert len(lines) == 4 and lines[-1].endswith(f" | gain {DECAY**3:g}") and "(toy)" in lines[1]


def test_gain_reaches_the_weights(mnist, full_run):
    """The schedule changes what the layers compute: the final gain is decay**3, and with the
    default gain 1.0 the same weights quantise differently."""
    _run, _metrics, model = full_run
    layers = _toy_layers(model)
    assert len(layers) == 4 and all(m.weight_quant.gain == DECAY**3 for _n, m in layers)
    m = layers[0][1]
    iw = m.integer_weights()
    w = m.weight.detach().double().reshape(m.weight.shape[0], -1)
    alpha = w.abs().mean(1) * DECAY**3 + 1e-12  # the toy's rule, per channel
    np.testing.assert_allclose(iw.alpha, alpha.numpy(), rtol=1e-6)
    m.weight_quant.gain = 1.0
    assert not np.array_equal(m.integer_weights().codes, iw.codes)
    m.weight_quant.gain = DECAY**3


# ----------------------------------------------------------------------------- resume, load_run

def _model_file(run):
    return torch.load(run / "model.pt", weights_only=True)


def _log(run):
    return [{k: v for k, v in json.loads(s).items() if k != "time_s"}
            for s in (run / "log.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("stop", [2, 3], ids=["at-the-phase-switch", "inside-a-phase"])
def test_resumed_run_ends_identical(full_run, tmp_path, stop):
    run, metrics, _model = full_run
    out = tmp_path / "run"
    assert _train(out, stop_after_epochs=stop)["interrupted"]
    assert torch.load(out / CHECKPOINT, weights_only=True)["toy"] == {"epochs_seen": stop, "steps": stop * STEPS}
    ToySchedule.calls = []
    resumed = _train(out, resume=True)
    calls = ToySchedule.calls
    last = "toy" if stop == 2 else "qat"
    assert ("load_state", {"epochs_seen": stop, "steps": stop * STEPS}, last) in calls
    # a phase that continues keeps its optimizer (no start_phase); a new one starts afresh
    assert [c[1] for c in calls if c[0] == "start_phase"] == (["qat"] if stop == 2 else [])
    assert _names(calls).count("after_step") == (4 - stop) * STEPS
    a, b = _model_file(run), _model_file(out)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert a["toy_gains"] == b["toy_gains"] and set(a["toy_gains"].values()) == {DECAY**3}
    assert torch.load(out / CHECKPOINT, weights_only=True)["toy"] == {"epochs_seen": 4, "steps": 4 * STEPS}
    assert _log(run) == _log(out)
    assert {**metrics, "train_time_s": 0} == {**resumed, "train_time_s": 0}


def test_load_run_restores_the_extras(full_run):
    run, _metrics, trained = full_run
    model, rec = load_run(run)
    assert rec["train"]["toy"] == {"decay": DECAY} and "load_model_extras" in _names(ToySchedule.calls)
    assert all(m.weight_quant.gain == DECAY**3 for _n, m in _toy_layers(model))
    x = torch.rand(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), trained.eval()(x))


# ----------------------------------------------------------------------------- recipes, the seam

def test_recipe_checks_the_procedure_section():
    rec, _ = load_recipe(RECIPE)
    assert rec["train"]["toy"] == {"decay": DECAY}
    no_section = copy.deepcopy(RECIPE)
    del no_section["train"]["toy"]
    assert load_recipe(no_section)[0]["train"]["toy"] == {"decay": 0.5}  # defaults filled
    cases = [({"decay": 0}, "train.toy.decay", "expected a value > 0"),
             ({"decay": 0.5, "speed": 2}, "train.toy.speed", "unknown field")]
    for section, field, words in cases:
        bad = copy.deepcopy(RECIPE)
        bad["train"]["toy"] = section
        with pytest.raises(RecipeError) as ei:
            load_recipe(bad)
        assert ei.value.field == field and words in str(ei.value) and "\n" not in str(ei.value)
    vecq = copy.deepcopy(TINY)
    vecq["train"]["toy"] = {"decay": 0.5}
    with pytest.raises(RecipeError, match=r"field 'train\.toy'.*no Toy schedule.*'vecq', not 'toy_sched'"):
        load_recipe(vecq)
    alq_section = copy.deepcopy(RECIPE)
    alq_section["train"]["alq"] = {"loss_aware_epochs": 1}
    with pytest.raises(RecipeError, match=r"field 'train\.alq'.*no ALQ schedule.*'toy_sched', not 'alq'"):
        load_recipe(alq_section)


@pytest.mark.parametrize("key", ["model", "lr", "not a name"])
def test_a_procedure_key_may_replace_no_checkpoint_entry_or_train_field(key):
    clash = type("Clash", (ToySchedule,), {"key": key})
    register_procedure(ToyQuantizer, replace=True)(clash)
    with pytest.raises(RecipeError, match="procedure key") as ei:
        load_recipe({**RECIPE, "train": {k: v for k, v in RECIPE["train"].items() if k != "toy"}})
    assert ei.value.field == "quant.method" and "\n" not in str(ei.value)
    if key != "lr":  # a train field: the recipe refuses it (above); the others, training too
        with pytest.raises(VecQError, match="procedure key"):
            procedure_for(load_recipe(TINY)[0] | {"quant": {"method": "toy_sched"}},
                          torch.nn.Sequential(VecQLinear(4, 2, weight_quant=ToyQuantizer())))
    with pytest.raises(VecQError, match="already has the training procedure"):
        register_procedure(ToyQuantizer)(ToySchedule)


def test_the_training_loop_names_no_quantiser_method():
    """Static: no string constant in the Trainer's modules is a registered method name (the
    procedures are found through the registry)."""
    names = set(QUANTIZERS)
    assert {"vecq", "alq", "sq", "toy_sched"} <= names
    for mod in ("trainer", "loop", "epoch", "procedure"):
        tree = ast.parse((ROOT / "vecq_hw" / "train" / f"{mod}.py").read_text())
        consts = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)}
        assert not consts & names, (mod, consts & names)
