"""vecq_hw.train.recipe + vecq_hw.train: validation, determinism, resume, atomic checkpoints."""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import torch
import yaml

from vecq_hw import train as train_mod
from vecq_hw.train import epoch as epoch_mod
from vecq_hw.errors import DatasetError, RecipeError
from vecq_hw.train.recipe import load_recipe
from vecq_hw.train import CHECKPOINT, load_run, train

CONFIGS = Path(__file__).resolve().parent.parent / "configs"

TINY = yaml.safe_load((CONFIGS / "tiny_test.yaml").read_text())


@pytest.fixture(scope="module")
def full_run(mnist, tmp_path_factory):
    """One uninterrupted run of TINY (with its plot), shared by the tests below."""
    run = tmp_path_factory.mktemp("full")
    metrics = train(TINY, run, progress=False, threads=1)
    return run, metrics


def _train(rec, out, **kw):
    return train(rec, out, progress=False, plot=False, threads=1, **kw)


def _state(run: Path) -> dict:
    return torch.load(run / "model.pt", map_location="cpu", weights_only=False)["state_dict"]


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ----------------------------------------------------------------------------- recipes

def test_shipped_configs_validate():
    files = sorted(CONFIGS.glob("*.yaml"))
    assert len(files) >= 4
    for f in files:
        rec, folder = load_recipe(f)
        assert rec["format_version"] == 1 and folder == CONFIGS


def _set(d: dict, dotted: str, value) -> dict:
    d = copy.deepcopy(d)
    *path, last = dotted.split(".")
    cur = d
    for p in path:
        cur = cur[p]
    if value is _DEL:
        del cur[last]
    else:
        cur[last] = value
    return d


_DEL = object()

BAD = [
    ("format_version", 2, "format_version"),
    ("format_version", _DEL, "format_version"),
    ("model.name", "resnet", "model.name"),
    ("model.options.depth", 3, "model.options.depth"),
    ("model.options.bits", 4, "model.options.bits"),
    ("model.options.hidden", "big", "model.options.hidden"),
    ("model.options.hidden", 0, "model.options.hidden"),  # #11 item 11: was a traceback in training
    ("model.options.image_size", 30, "model.options.image_size"),  # MNIST is 28 x 28
    ("model.options.conv_channels", [4], "model.options"),  # the builder itself refuses it
    ("data.dataset", "cifar10", "data.dataset"),
    ("quant.act_type", "ap_ufixed<8,3>", "quant.act_type"),  # TRN/WRAP after ReLU: not exportable
    ("quant.act_type", "ap_fixed<8,3,AP_RND,AP_WRAP>", "quant.act_type"),
    ("train.device", "tpu", "train.device"),
    ("train.threads", 0, "train.threads"),
    ("train.workers", -1, "train.workers"),
    ("data.train_limit", 0, "data.train_limit"),
    ("data.extra", 1, "data.extra"),
    ("quant.method", "ternary", "quant.method"),
    ("quant.bits", 0, "quant.bits"),
    ("quant.bits", 9, "quant.bits"),
    ("quant.bits", "2", "quant.bits"),
    ("quant.per_channel", "yes", "quant.per_channel"),
    ("quant.act_type", "ap_fixed<8>", "quant.act_type"),
    ("quant.out_type", "float32", "quant.out_type"),
    ("train.optimizer", "rmsprop", "train.optimizer"),
    ("train.lr", -0.1, "train.lr"),
    ("train.lr", _DEL, "train.lr"),
    ("train.batch_size", 12.5, "train.batch_size"),
    ("train.epochs", 0, "train.epochs"),
    ("train.float_epochs", -1, "train.float_epochs"),
    ("train.lr_schedule", "exp", "train.lr_schedule"),
    ("train.seed", True, "train.seed"),
    ("quant", _DEL, "quant"),
    ("extra", {}, "extra"),
]


@pytest.mark.parametrize("field,value,where", BAD, ids=[f"{b[0]}=" + ("<deleted>" if b[1] is _DEL else repr(b[1])) for b in BAD])
def test_bad_recipes(tmp_path, field, value, where):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(_set(TINY, field, value)))
    with pytest.raises(RecipeError) as ei:
        load_recipe(f)
    msg = str(ei.value)
    assert str(f) in msg and f"field '{where}'" in msg and "\n" not in msg, msg
    assert "expected" in msg or "set this in the quant section" in msg, msg
    assert ei.value.field == where


def test_bad_yaml_and_not_a_mapping(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text("model: [1, 2\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: unparseable YAML at line"):
        load_recipe(f)
    # the model files' strict reader: a second key or an anchor would silently change meaning
    f.write_text("model: {name: mlp}\nmodel: {name: lenet5}\n")
    with pytest.raises(RecipeError, match=r"r\.yaml: duplicate key 'model' \(line 2\)"):
        load_recipe(f)
    f.write_text("model: &m {name: mlp}\nother: *m\n")
    with pytest.raises(RecipeError, match="anchors and aliases are not allowed"):
        load_recipe(f)
    f.write_text("- 1\n- 2\n")
    with pytest.raises(RecipeError, match=r"r\.yaml.*expected a mapping"):
        load_recipe(f)
    with pytest.raises(RecipeError, match="cannot read"):
        load_recipe(tmp_path / "missing.yaml")


def test_defaults_filled():
    rec, _ = load_recipe({k: v for k, v in TINY.items()})
    assert rec["train"]["qat_lr"] == rec["train"]["lr"]
    assert rec["quant"]["in_type"].startswith("ap_ufixed<8,0")
    assert rec["data"]["root"] is None


# ----------------------------------------------------------------------------- training

def test_determinism_and_outputs(tmp_path, full_run):
    run, m1 = full_run
    m2 = _train(TINY, tmp_path / "b")
    _assert_same_state(_state(run), _state(tmp_path / "b"))
    assert m1["qat_test_acc"] == m2["qat_test_acc"] and m1["float_test_acc"] is not None
    for f in ("model.pt", "metrics.json", "log.jsonl", "training_curve.png", "checkpoint.pt",
              "recipe.yaml"):
        assert (run / f).is_file(), f
    assert (run / "training_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in log] == ["float", "qat", "qat"]
    assert json.loads((run / "metrics.json").read_text())["qat_test_acc"] == log[-1]["test_acc"]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp files left
    model, rec = load_run(run)
    assert rec["quant"]["bits"] == 2 and not model.training
    _assert_same_state(model.state_dict(), _state(run))
    # the reloaded model reproduces the QAT test accuracy
    from vecq_hw.data import load_dataset, make_loader, to_tensors
    ds = torch.utils.data.TensorDataset(*to_tensors(*load_dataset("mnist", "test", limit=32)))
    _, acc = train_mod.evaluate(model, make_loader(ds, 1000))
    assert acc == m1["qat_test_acc"]
    # a different seed gives different weights
    _train(_set(TINY, "train.seed", 6), tmp_path / "c", stop_after_epochs=1)
    other = torch.load(tmp_path / "c" / CHECKPOINT, weights_only=False)["model"]
    first = torch.load(run / CHECKPOINT, weights_only=False)["model"]
    assert not torch.equal(first["1.weight"], other["1.weight"])


@pytest.mark.parametrize("stop", [1, 2])  # interrupted at the phase switch / inside QAT
def test_resume_matches_uninterrupted(tmp_path, full_run, stop):
    full, _ = full_run
    run = tmp_path / "run"
    r = _train(TINY, run, stop_after_epochs=stop)
    assert r["interrupted"] and r["epochs_done"] == stop and not (run / "model.pt").exists()
    metrics = _train(TINY, run, resume=True)
    _assert_same_state(_state(full), _state(run))
    assert metrics == {**json.loads((full / "metrics.json").read_text()),
                       "train_time_s": metrics["train_time_s"]}
    assert (run / "log.jsonl").read_text().count("\n") == 3
    # resuming a finished run returns its metrics without training
    assert _train(TINY, run, resume=True) == metrics


def test_resume_after_crash_mid_epoch(tmp_path, full_run, monkeypatch):
    full, _ = full_run
    calls = {"n": 0}
    real = epoch_mod._train_one_epoch

    def crashing(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(epoch_mod, "_train_one_epoch", crashing)
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _train(TINY, run)
    monkeypatch.setattr(epoch_mod, "_train_one_epoch", real)
    assert torch.load(run / CHECKPOINT, weights_only=False)["epochs_done"] == 2
    _train(TINY, run, resume=True)
    _assert_same_state(_state(full), _state(run))


def test_resume_rejects_other_recipe(tmp_path, mnist):
    _train(TINY, tmp_path, stop_after_epochs=1)
    with pytest.raises(RecipeError, match="checkpoint"):
        _train(_set(TINY, "train.lr", 0.02), tmp_path, resume=True)


def test_checkpoint_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    train_mod._atomic_torch_save({"epoch": 1}, path)
    real_save = torch.save

    def failing_save(obj, f, *a, **k):
        real_save(obj, f, *a, **k)
        with open(f, "r+b") as fh:  # leave a half-written temp file behind, then fail
            fh.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="disk full"):
        train_mod._atomic_torch_save({"epoch": 2}, path)
    monkeypatch.setattr(torch, "save", real_save)
    assert torch.load(path, weights_only=False) == {"epoch": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_data_root_is_relative_to_recipe(tmp_path):
    f = tmp_path / "r.yaml"
    f.write_text(yaml.safe_dump(_set(TINY, "data.root", "data")))
    with pytest.raises(DatasetError) as ei:
        _train(f, tmp_path / "out")
    assert str(tmp_path / "data") in str(ei.value) and "train-images-idx3-ubyte.gz" in str(ei.value)


# ----------------------------------------------------------------------------- run folders (#11 items 13, 14)

def test_existing_run_needs_resume_or_overwrite(tmp_path, mnist):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    from vecq_hw.errors import VecQError

    run = tmp_path / "run"
    _train(TINY, run, stop_after_epochs=1)
    before = (run / CHECKPOINT).read_bytes()
    with pytest.raises(VecQError) as ei:
        _train(TINY, run)
    msg = str(ei.value)
    assert "--resume" in msg and "--overwrite" in msg and str(run) in msg and "\n" not in msg
    assert (run / CHECKPOINT).read_bytes() == before  # the interrupted run is kept
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    res = CliRunner().invoke(cli, ["train", str(recipe), "--out", str(run), "--threads", "1"])
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "--overwrite" in res.output
    assert (run / CHECKPOINT).read_bytes() == before
    r = _train(TINY, run, overwrite=True, stop_after_epochs=1)  # starts over
    assert r["epochs_done"] == 1
    with pytest.raises(VecQError, match="exclude each other"):
        _train(TINY, run, resume=True, overwrite=True)


class _Payload:
    """A pickled object that runs code when unpickled (what a hostile run folder holds)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


@pytest.mark.parametrize("which", ["model.pt", "checkpoint.pt"])
def test_run_folder_with_pickled_code_is_refused(tmp_path, which, mnist):
    from vecq_hw.errors import VecQError

    run = tmp_path / "run"
    run.mkdir()
    marker = tmp_path / "executed"
    rec, _ = load_recipe(TINY)
    if which == "model.pt":
        torch.save({"version": 2, "recipe": rec, "state_dict": _Payload(marker)}, run / "model.pt")
        call = lambda: load_run(run)  # noqa: E731
    else:
        torch.save({"version": 2, "recipe": rec, "epochs_done": 1, "x": _Payload(marker)},
                   run / CHECKPOINT)
        call = lambda: _train(TINY, run, resume=True)  # noqa: E731
    with pytest.raises(VecQError) as ei:
        call()
    msg = str(ei.value)
    assert "not plain data" in msg and which in msg and "\n" not in msg, msg
    assert not marker.exists()  # the payload never ran


def test_checkpoints_are_plain_data(full_run):
    run, _ = full_run
    for f in (CHECKPOINT, "model.pt"):
        torch.load(run / f, weights_only=True)  # no pickled objects beyond plain data


def test_resume_keeps_adaptive_step_cache(tmp_path, mnist):
    """refresh_every > 1: the cached step and call counter are in the checkpoint, so a resumed
    run reuses the step exactly where the uninterrupted run does."""
    rec = _set(_set(TINY, "quant.adaptive", True), "quant.refresh_every", 2)
    rec = _set(_set(rec, "train.float_epochs", 0), "train.epochs", 2)
    _train(rec, tmp_path / "full")
    _train(rec, tmp_path / "run", stop_after_epochs=1)
    ck = torch.load(tmp_path / "run" / CHECKPOINT, weights_only=True)
    assert ck["quant_state"] and all(s["calls"] > 0 for s in ck["quant_state"].values())
    _train(rec, tmp_path / "run", resume=True)
    _assert_same_state(_state(tmp_path / "full"), _state(tmp_path / "run"))
