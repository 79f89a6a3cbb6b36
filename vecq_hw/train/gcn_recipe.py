"""Recipes for the GCN on Cora / CiteSeer (``data.dataset: cora|citeseer``), and their runs.

```yaml
format_version: 1
name: gcn_cora_sgquant
model:
  name: gcn
  options: {hidden: 16, dropout: 0.5}
data:
  dataset: cora                    # cora | citeseer (planetoid/<name>.npz, md5-checked)
  root: null
quant:
  method: vecq                     # the weight quantiser (any registered method without a training
  bits: 4                          #   procedure of its own) and its options
  feature_bits: 8                  # starting width of the stored features (uniform without a budget)
  budget_bits: 3.0                 # ABS: average bits per stored feature value (null: no search)
  min_bits: 2                      # ABS: no stored width below this
  degree_bounds: [4, 7]            # degree buckets: d < 4 | 4 <= d < 7 | d >= 7 (d with self-loop)
  combine_bits: 16                 # z = x W (not stored)
  hidden_bits: 8                   # the first layer's output
  logit_bits: 16                   # the logits
  scale_bits: 12                   # significant bits of the normalisation's smallest factor
  per_bucket_range: true           # integer bits per degree bucket (false: one range per layer)
train:
  optimizer: adam
  lr: 0.01
  weight_decay: 0.0005             # the first layer's (Kipf & Welling)
  float_epochs: 200                # float GCN
  epochs: 200                      # QAT (and again after ABS)
  seed: 0
  device: cpu                      # optional: the CPU (one small graph, full batch)
  threads: null
```

Registered with :func:`.recipe.register_dataset_recipe`, so :func:`.recipe.load_recipe` validates
both kinds and ``vecq-hw train`` runs this one through :func:`train_gcn_recipe` (:mod:`.gcn`): the
run folder holds recipe.yaml, model.pt (weights, the chosen types and widths), metrics.json and
log.jsonl. No resume: a run is one full-batch training of a few minutes at most.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

from ..errors import RecipeError, VecQError
from ..planetoid import DATASETS, load_planetoid
from .gcn import GCNConfig, build, train_gcn
from .recipe import FORMAT_VERSION, Spec, _weight_quant, register_dataset_recipe, walk
from .runfiles import (LOG_FILE, METRICS_FILE, MODEL_FILE, RECIPE_FILE, atomic_text, atomic_torch_save, load_plain,
                       open_run_folder)

GCN_VERSION = 1
_QUANT = {"feature_bits": Spec("int", 8, lo=2, hi=16),
          "budget_bits": Spec("float", None, lo=1.0, hi=16.0, nullable=True), "min_bits": Spec("int", 2, lo=2, hi=16), "combine_bits": Spec("int", 16, lo=2, hi=24),
          "hidden_bits": Spec("int", 8, lo=2, hi=24), "logit_bits": Spec("int", 16, lo=2, hi=24),
          "scale_bits": Spec("int", 12, lo=2, hi=20), "per_bucket_range": Spec("bool", True)}
_SCHEMA = {
    "format_version": Spec("int", choices=(FORMAT_VERSION,)),
    "name": Spec("str", None, nullable=True),
    "description": Spec("str", None, nullable=True),
    "model": {"name": Spec("str", choices=("gcn",)),
              "options": {"hidden": Spec("int", 16, lo=1, hi=4096),
                          "dropout": Spec("float", 0.5, lo=0.0, hi=1.0, hi_open=True)}},
    "data": {"dataset": Spec("str", choices=DATASETS), "root": Spec("str", None, nullable=True)},
    "quant": _QUANT,
    "train": {"optimizer": Spec("str", "adam", choices=("adam",)),
              "lr": Spec("float", 0.01, lo=0.0, lo_open=True, hi=10.0),
              "weight_decay": Spec("float", 5e-4, lo=0.0, hi=1.0),
              "float_epochs": Spec("int", 200, lo=1, hi=100000), "epochs": Spec("int", 200, lo=1, hi=100000),
              "seed": Spec("int", 0, lo=0, hi=2**32 - 1), "device": Spec("str", "cpu", choices=("cpu",)),
              "threads": Spec("int", None, lo=1, hi=1024, nullable=True)},
}


def _degree_bounds(v, fail) -> list[int]:
    if v is None:
        return [4, 7]
    if (not isinstance(v, list) or len(v) > 3 or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in v)
            or any(b <= a for a, b in zip(v, v[1:]))):
        fail("quant.degree_bounds", f"expected up to 3 increasing positive degrees (4 buckets at most), got {v!r}")
    return list(v)


def validate_gcn_recipe(data: dict, file: str) -> dict:
    """A GCN recipe checked field by field (defaults filled in), or one RecipeError line."""
    def fail(field: str, msg: str):
        raise RecipeError(msg, file=file, field=field)

    data = copy.deepcopy(data)
    if isinstance(data.get("model"), dict):
        data["model"].setdefault("options", {})
    quant = data.get("quant")
    if not isinstance(quant, dict):
        fail("quant", "missing section; expected the weight quantiser (method, bits, ...) and the feature widths")
    bounds = _degree_bounds(quant.get("degree_bounds"), fail)
    weight = {k: v for k, v in quant.items() if k not in _QUANT and k != "degree_bounds"}
    data["quant"] = {k: v for k, v in quant.items() if k in _QUANT}
    rec = walk(_SCHEMA, data, "", fail)
    rec["quant"] = {**_weight_quant(weight, fail, file), **rec["quant"], "degree_bounds": bounds}
    from .procedure import QuantProcedure, procedure_type

    if procedure_type(rec["quant"]["method"]) is not QuantProcedure:
        fail("quant.method", f"{rec['quant']['method']} trains with a procedure of its own, which the GCN's "
                             "full-batch loop does not run; use a quantiser without one (vecq, ul2q, esb, bwn, twn)")
    q = rec["quant"]
    if q["budget_bits"] is not None and q["budget_bits"] < q["min_bits"]:
        fail("quant.budget_bits", f"expected at least min_bits ({q['min_bits']}), got {q['budget_bits']}")
    if q["feature_bits"] < q["min_bits"]:
        fail("quant.feature_bits", f"expected at least min_bits ({q['min_bits']}), got {q['feature_bits']}")
    return rec


def is_gcn_recipe(rec: dict) -> bool:
    return rec.get("model", {}).get("name") == "gcn"


def gcn_config(rec: dict) -> GCNConfig:
    q, t, o = rec["quant"], rec["train"], rec["model"]["options"]
    own = set(_QUANT) | {"degree_bounds"}
    return GCNConfig(hidden=o["hidden"], dropout=o["dropout"], lr=t["lr"], weight_decay=t["weight_decay"],
                     float_epochs=t["float_epochs"], epochs=t["epochs"], seed=t["seed"],
                     weight_quant={k: v for k, v in q.items() if k not in own}, feature_bits=q["feature_bits"],
                     budget_bits=q["budget_bits"], min_bits=q["min_bits"], degree_bounds=tuple(q["degree_bounds"]),
                     combine_bits=q["combine_bits"], hidden_bits=q["hidden_bits"], logit_bits=q["logit_bits"],
                     scale_bits=q["scale_bits"], per_bucket_range=q["per_bucket_range"])


def train_gcn_recipe(rec: dict, out_dir, *, data_root=None, resume=False, overwrite=False, progress=True) -> dict:
    """Train a validated GCN recipe into ``out_dir`` (see the module docstring); its metrics."""
    import yaml

    out = Path(out_dir)
    if resume:
        raise VecQError("a GCN run has no checkpoints to resume (one full-batch training of minutes); start it "
                        "again with --overwrite", file=str(out))
    out.mkdir(parents=True, exist_ok=True)
    open_run_folder(out, rec, resume=False, overwrite=overwrite)
    graph = load_planetoid(rec["data"]["dataset"], data_root or rec["data"]["root"])
    say = print if progress else None
    run = train_gcn(graph, gcn_config(rec), progress=(lambda h: say(json.dumps(h)) if h["epoch"] % 50 == 0
                                                      else None) if say else None)
    metrics = {"name": rec["name"] or f"gcn_{graph.name}", "dataset": graph.name, **run.metrics}
    atomic_text(out / RECIPE_FILE, yaml.safe_dump(rec, sort_keys=False))
    t = run.types
    atomic_torch_save({"version": GCN_VERSION, "recipe": rec, "state_dict": run.model.state_dict(),
                       "types": {"in_type": str(t.in_type), "combine": list(t.combine),
                                 "buckets": [list(b) for b in t.buckets], "out": list(t.out)},
                       "widths": run.widths}, out / MODEL_FILE)
    atomic_text(out / LOG_FILE, "".join(json.dumps(h) + "\n" for h in run.history))
    atomic_text(out / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    return metrics


def load_gcn_run(blob: dict, rec: dict, path, data_root=None):
    """The trained GCN (eval mode) of a run's model.pt, on its graph: (model, graph)."""
    from ..models.gcn import GCNTypes
    from ..nn import set_quantize

    graph = load_planetoid(rec["data"]["dataset"], data_root or rec["data"]["root"])
    try:
        t = blob["types"]
        types = GCNTypes(in_type=t["in_type"], combine=tuple(t["combine"]),
                         buckets=tuple(tuple(b) for b in t["buckets"]), out=tuple(t["out"]))
        model = build(graph, gcn_config(rec), quantized=True)
        model.set_types(types)
        set_quantize(model, True)
        model.load_state_dict(blob["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        why = " ".join(str(exc).split())[:200]
        raise VecQError(f"not a trained GCN of this recipe ({why})", file=str(path)) from None
    return model.eval(), graph


def load_gcn_model_file(path, data_root=None):
    """(model, recipe, graph) from a GCN run's model.pt."""
    from .recipe import load_recipe

    blob = load_plain(Path(path), "trained model")
    rec, _ = load_recipe(blob.get("recipe") if isinstance(blob, dict) else None)
    model, graph = load_gcn_run(blob, rec, path, data_root)
    return model, rec, graph


register_dataset_recipe(DATASETS, validate_gcn_recipe)

__all__ = ["gcn_config", "is_gcn_recipe", "load_gcn_model_file", "load_gcn_run", "train_gcn_recipe",
           "validate_gcn_recipe"]
