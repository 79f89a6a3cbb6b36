"""ALQ's procedure in ``vecq-hw train`` (issue 14): recipe keys, phases, checkpoints, DDP, export.

A narrow LeNet-5 on 256 MNIST training images, 1 float epoch + 4 epochs split 2 loss-aware
(greedy init, loss-aware alpha/basis steps, a pruning round every 4 optimizer steps, the last
epoch pruning to the target) + 2 STE post-training; seconds on one core.

* the run ends with the recipe's target average bits/weight within one basis, computed here
  from the saved per-group basis counts and the weight shapes, and the export stores exactly
  those bases (ALQ's native form: I_g bit-planes per channel, none where I_g = 0);
* pruning happens during the loss-aware phase (not only at its end) and the per-epoch progress
  line shows the average bits/weight;
* a run interrupted mid-way through the loss-aware phase (pruning started) or after it, then
  resumed, ends bit-identical to the uninterrupted run: weights, BatchNorm/bias, basis counts;
* two DDP ranks end with the same weights and the same ALQ state (the loop checks the ALQ state
  hash every epoch and would raise otherwise);
* bad ALQ recipe values: one line naming the file and the field; the CLI exits 2;
* the trained run exports (the flow's export, with its per-layer check against PyTorch on
  MNIST test images) and the simulator agrees with the PyTorch model.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from vecq_hw import ir
from vecq_hw.cli import cli
from vecq_hw.errors import RecipeError
from vecq_hw.train.recipe import load_recipe
from vecq_hw.train import CHECKPOINT, train

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_test.yaml").read_text())
TARGET, MAX_BASES = 0.7, 3
ALQ = copy.deepcopy(TINY)
ALQ["name"] = "tiny_alq"
ALQ["data"].update(train_limit=256, test_limit=64)
ALQ["quant"] = {"method": "alq", "bits": 8, "per_channel": True, "max_bases": MAX_BASES,
                "target_bits": TARGET, "prune_rate": 0.3, "top_k": 0.5,
                "act_type": TINY["quant"]["act_type"], "out_type": TINY["quant"]["out_type"]}
ALQ["train"].update(float_epochs=1, epochs=4, batch_size=32, alq={"loss_aware_epochs": 2, "prune_every": 4})
STEPS_PER_EPOCH = 256 // 32


def _train(out, **kw):
    return train(ALQ, out, progress=False, plot=False, threads=1, **kw)


@pytest.fixture(scope="module")
def full_run(mnist, tmp_path_factory):
    run = tmp_path_factory.mktemp("alq_full") / "run"
    metrics = _train(run)
    return run, metrics


def _model_file(run: Path) -> dict:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=True)


def _weight_shapes(state: dict, counts: dict) -> dict:
    return {name: tuple(state[f"{name}.weight"].shape) for name in counts}


# ----------------------------------------------------------------------------- the schedule

def test_run_ends_at_target_bits_within_one_basis(full_run):
    run, metrics = full_run
    blob = _model_file(run)
    counts = blob["alq_counts"]
    shapes = _weight_shapes(blob["state_dict"], counts)
    assert len(counts) == 4  # conv1, conv2, fc1, fc2: every weighted layer
    # independent of the code under test: sum over groups of I_g * weights per group / weights
    used = total = 0
    group_sizes = []
    for name, c in counts.items():
        shape = shapes[name]
        per_group = int(np.prod(shape[1:]))
        assert len(c) == shape[0] and all(0 <= i <= MAX_BASES for i in c)
        used += sum(c) * per_group
        total += int(np.prod(shape))
        group_sizes.append(per_group)
    avg = used / total
    one_basis = max(group_sizes) / total  # the most one pruned basis can move the average
    assert avg <= TARGET and TARGET - avg < one_basis, (avg, TARGET, one_basis)
    assert metrics["alq_average_bits"] == pytest.approx(avg, rel=0, abs=1e-12)
    log = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    assert [h["phase"] for h in log] == ["float", "alq", "alq", "qat", "qat"]
    assert "avg_bits" not in log[0]
    # pruning ran inside the loss-aware phase (rounds every 4 steps), not only at its end
    assert TARGET < log[1]["avg_bits"] < MAX_BASES
    assert [h["avg_bits"] for h in log[2:]] == pytest.approx([avg] * 3, rel=0, abs=1e-12)
    ck = torch.load(run / CHECKPOINT, weights_only=True)
    assert ck["alq"]["stage"] == "post" and ck["alq"]["steps"] == 2 * STEPS_PER_EPOCH
    assert ck["alq"]["prune_rounds"] >= 2 and ck["alq"]["counts"] == counts


def test_progress_line_shows_bits_per_weight(mnist, tmp_path, capsys):
    rec = copy.deepcopy(ALQ)
    rec["train"].update(float_epochs=0, epochs=1, alq={"loss_aware_epochs": 1, "prune_every": None})
    train(rec, tmp_path / "run", progress=True, plot=False, threads=1)
    lines = [s for s in capsys.readouterr().out.splitlines() if " epoch 1/1 " in s]
    assert len(lines) == 1 and "(alq)" in lines[0] and lines[0].endswith(" bits/weight"), lines
    shown = float(lines[0].split("|")[-1].split()[0])
    blob = _model_file(tmp_path / "run")  # loss-aware epochs == epochs: no STE phase, still pruned
    shapes = _weight_shapes(blob["state_dict"], blob["alq_counts"])
    avg = sum(sum(c) * int(np.prod(shapes[n][1:])) for n, c in blob["alq_counts"].items()) / \
        sum(int(np.prod(s)) for s in shapes.values())
    assert shown == pytest.approx(avg, abs=5e-4) and avg <= TARGET


@pytest.mark.parametrize("stop", [2, 3], ids=["mid-loss-aware", "after-pruning"])
def test_resume_matches_uninterrupted(full_run, tmp_path, stop):
    run, _ = full_run
    out = tmp_path / "run"
    r = _train(out, stop_after_epochs=stop)
    assert r["interrupted"] and r["epochs_done"] == stop
    ck = torch.load(out / CHECKPOINT, weights_only=True)
    st = ck["alq"]
    assert st["prune_rounds"] >= 1  # the pruning has started
    if stop == 2:  # in the loss-aware phase: the trainer's exact state is in the checkpoint
        assert st["stage"] == "loss_aware" and st["steps"] == STEPS_PER_EPOCH and not st["counts"]
        layers = st["trainer"]["layers"]
        kept = torch.cat([s["on"].sum(1) for s in layers])
        assert int(kept.min()) < MAX_BASES  # some group already lost a basis
        assert all(s["t"] == STEPS_PER_EPOCH and s["m"].abs().sum() > 0 for s in layers)  # Adam moments
    else:
        assert st["stage"] == "post" and "trainer" not in st
    _train(out, resume=True)
    a, b = _model_file(run), _model_file(out)
    assert a["alq_counts"] == b["alq_counts"]
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    log_a = [json.loads(s) for s in (run / "log.jsonl").read_text().splitlines()]
    log_b = [json.loads(s) for s in (out / "log.jsonl").read_text().splitlines()]
    drop = lambda h: {k: v for k, v in h.items() if k != "time_s"}  # noqa: E731
    assert [drop(h) for h in log_a] == [drop(h) for h in log_b]


# ----------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_ranks_hold_the_same_alq_state(mnist, tmp_path):
    """The ALQ state is computed on every rank (not broadcast); the loop compares its hash
    across ranks after every epoch, so a finished run proves it equal; the dumped weights and
    the counts rank 0 saved are compared here too."""
    rec = copy.deepcopy(ALQ)
    rec["train"].update(batch_size=64, epochs=3)
    recipe = tmp_path / "alq.json"
    recipe.write_text(json.dumps(rec))
    out, dump = tmp_path / "run", tmp_path / "dump"
    port, procs = str(_free_port()), []
    for rank in range(2):
        env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE")}
        env.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=port, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
        procs.append(subprocess.Popen([sys.executable, str(ROOT / "tests" / "_dist_worker.py"), "train",
                                       str(recipe), str(out), str(dump)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for p in procs:
        o = p.communicate(timeout=300)[0]
        assert p.returncode == 0, o[-3000:]
    last = max(int(p.stem.split("epoch")[1]) for p in dump.glob("rank0-epoch*.pt"))  # the run's end
    r0, r1 = (torch.load(dump / f"rank{r}-epoch{last}.pt", weights_only=False) for r in range(2))
    assert r0["world"] == 2 and r0["state"].keys() == r1["state"].keys()
    assert all(torch.equal(r0["state"][k], r1["state"][k]) for k in r0["state"])
    blob = _model_file(out)
    shapes = _weight_shapes(blob["state_dict"], blob["alq_counts"])
    avg = sum(sum(c) * int(np.prod(shapes[n][1:])) for n, c in blob["alq_counts"].items()) / \
        sum(int(np.prod(s)) for s in shapes.values())
    assert avg <= TARGET and all(torch.equal(blob["state_dict"][k], r0["state"][k]) for k in r0["state"])


# ----------------------------------------------------------------------------- bad recipes

BAD = [
    ("quant", "target_bits", 3.5, "quant.target_bits"),      # above max_bases
    ("quant", "prune_rate", 0, "quant.prune_rate"),          # (0, 1]
    ("quant", "top_k", 1.5, "quant.top_k"),
    ("quant", "max_bases", 5, "quant.max_bases"),
    ("alq", "loss_aware_epochs", 0, "train.alq.loss_aware_epochs"),
    ("alq", "loss_aware_epochs", 5, "train.alq.loss_aware_epochs"),  # more than train.epochs
    ("alq", "prune_every", 0, "train.alq.prune_every"),
    ("alq", "prune_every", 2.5, "train.alq.prune_every"),
    ("alq", "prune_rounds", 3, "train.alq.prune_rounds"),    # unknown key
]


def _with(section, key, value) -> dict:
    rec = copy.deepcopy(ALQ)
    (rec["quant"] if section == "quant" else rec["train"]["alq"])[key] = value
    return rec


@pytest.mark.parametrize("section,key,value,field", BAD, ids=[f"{b[3]}={b[2]!r}" for b in BAD])
def test_bad_alq_values_name_the_field(tmp_path, section, key, value, field):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(_with(section, key, value)))
    with pytest.raises(RecipeError) as ei:
        load_recipe(f)
    msg = str(ei.value)
    assert ei.value.field == field and str(f) in msg and f"field '{field}'" in msg and "\n" not in msg, msg
    assert "expected" in msg, msg


def test_alq_schedule_only_with_alq_and_defaults(tmp_path):
    rec = copy.deepcopy(TINY)
    rec["train"]["alq"] = {"loss_aware_epochs": 1}
    with pytest.raises(RecipeError, match="train.alq") as ei:
        load_recipe(rec)
    assert ei.value.field == "train.alq"
    assert "alq" not in load_recipe(TINY)[0]["train"]  # other methods' recipes are unchanged
    rec = copy.deepcopy(ALQ)
    del rec["train"]["alq"]
    assert load_recipe(rec)[0]["train"]["alq"] == {"loss_aware_epochs": 2, "prune_every": None}
    shipped, _ = load_recipe(ROOT / "configs" / "lenet5_mnist_alq.yaml")
    assert shipped["quant"]["method"] == "alq" and shipped["train"]["alq"]["loss_aware_epochs"] >= 1


@pytest.mark.parametrize("section,key,value,field", [BAD[0], BAD[4]], ids=["quant", "schedule"])
def test_cli_bad_alq_recipe_exits_2_with_one_line(tmp_path, section, key, value, field):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(_with(section, key, value)))
    res = CliRunner().invoke(cli, ["train", str(f), "--out", str(tmp_path / "run"), "--threads", "1"])
    assert res.exit_code == 2, res.output
    assert res.output.count("\n") == 1 and f"field '{field}'" in res.output and str(f) in res.output
    assert not (tmp_path / "run" / CHECKPOINT).exists()


# ----------------------------------------------------------------------------- export

def test_trained_alq_run_exports_with_its_pruned_bases(full_run, tmp_path):
    from vecq_hw.flow import export_run
    from vecq_hw.ir.io import load_model
    from vecq_hw.train import load_run

    run, _ = full_run
    counts = _model_file(run)["alq_counts"]
    model, _rec = load_run(run)  # model.pt carries the counts (they are not in the state_dict)
    for name, m in model.named_modules():
        if name in counts:
            assert m.weight_quant.counts.tolist() == counts[name]
    rep = export_run(run, tmp_path / "exp", eval_limit=200)  # per-layer check against PyTorch
    assert rep.n_eval == 200
    # the simulator against the PyTorch model (a float reference: the exporter bounds each
    # layer by its rounding, so a near-tie logit may still flip an argmax now and then)
    assert rep.agreement >= 0.97, rep.agreement
    imodel = load_model(tmp_path / "exp")
    weighted = [layer for layer in imodel.layers if isinstance(layer, ir.AlqWeighted)]  # the native form
    assert len(weighted) == len(counts)
    for layer, (name, c) in zip(weighted, counts.items()):
        # each channel stores the bases its group kept (none where I_g = 0): n_j bit-planes
        np.testing.assert_array_equal(layer.counts(), c, err_msg=name)
        d = layer.multipliers().reshape(-1, layer.n_out)  # output channel last
        for j, i_g in enumerate(c):  # I_g bases: at most 2**I_g distinct sums of +-a_i
            assert len(np.unique(d[:, j])) <= 2**i_g, (name, j, i_g)
