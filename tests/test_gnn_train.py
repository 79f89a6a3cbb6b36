"""The GCN's PyTorch side (issue #27) on small instances: the Planetoid loader, training with the bit
selection, the exact export, and a recipe through ``vecq-hw train`` and ``vecq-hw export``.

Full size (Cora and CiteSeer, the accuracy and memory tables) is benchmarks/gnn.py's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vecq_hw.errors import DatasetError, RecipeError
from vecq_hw.planetoid import Graph, load_planetoid
from vecq_hw.sim import simulate

pytestmark = pytest.mark.xdist_group("gnn_train")
ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------ data

def test_planetoid_loader_checks_the_md5_and_the_split(tmp_path):
    cora = load_planetoid("cora")
    assert cora.features.shape == (2708, 1433) and cora.n_classes == 7 and set(np.unique(cora.features)) == {0, 1}
    assert (len(cora.train_idx), len(cora.val_idx), len(cora.test_idx)) == (140, 500, 1000)
    bad = tmp_path / "planetoid"
    bad.mkdir()
    src = ROOT.parent / "shared" / "datasets" / "planetoid" / "cora.npz"
    data = bytearray(src.read_bytes())
    data[-100] ^= 1
    (bad / "cora.npz").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="md5 mismatch"):
        load_planetoid("cora", tmp_path)
    with pytest.raises(DatasetError, match="missing dataset file citeseer.npz"):
        load_planetoid("citeseer", tmp_path)
    sub = cora.subgraph(np.arange(300))
    assert sub.features.shape == (300, 1433) and sub.edges.max() < 300 and set(sub.train_idx) <= set(range(300))


# ------------------------------------------------------------------------------ training and export

@pytest.fixture(scope="module")
def small_run():
    from vecq_hw.train.gcn import GCNConfig, train_gcn

    cora = load_planetoid("cora")
    sub = cora.subgraph(np.concatenate([np.arange(240), cora.test_idx[:120]]))  # train, some val and test nodes
    graph = Graph(sub.name, sub.features[:, :160], sub.labels, sub.edges, sub.train_idx, sub.val_idx, sub.test_idx)
    torch.manual_seed(0)
    cfg = GCNConfig(float_epochs=12, epochs=3, budget_bits=3.5, feature_bits=4, degree_bounds=(3,))
    return graph, train_gcn(graph, cfg)


def test_bit_selection_meets_the_budget_one_bit_at_a_time(small_run):
    from vecq_hw.train.gcn_abs import stored_bits

    graph, run = small_run
    steps = run.metrics["abs_steps"]
    assert run.metrics["stored_bits_avg"] <= 3.5 < stored_bits(run.model.convs(), [[4, 4], [4, 4]])
    assert steps and all(s["avg_bits"] < p["avg_bits"] for p, s in zip([{"avg_bits": 4.0}] + steps, steps))
    widths = [[4, 4], [4, 4]]
    for s in steps:  # each step takes one bit from one (layer, bucket)
        widths[s["layer"]][s["bucket"]] -= 1
        assert s["widths"] == widths
    assert run.widths == widths and min(min(w) for w in widths) >= 2


def test_export_of_the_trained_gcn_is_exact_and_predicts_like_pytorch(small_run):
    from vecq_hw.export.gnn import export_gcn
    from vecq_hw.ir.gnn import GCNAggregate

    graph, run = small_run
    res = export_gcn(run.model, graph.features)
    eq = res.equivalence
    assert eq.exact == 1.0 and eq.max_lsb == 0 and all(la.max_lsb == 0 and la.allowed_lsb == 0 for la in eq.layers)
    kinds = [layer.kind for layer in res.model.layers]
    assert kinds == ["input", "node_dense", "gcn_aggregate", "relu", "node_dense", "gcn_aggregate"]
    aggs = [layer for layer in res.model.layers if isinstance(layer, GCNAggregate)]
    assert [[t.width for t in a.bucket_types] for a in aggs] == run.widths
    out = simulate(res.model, x_mantissa=graph.features[None].astype(np.int64)).output[0]
    with torch.no_grad():
        ref = run.model.double()(torch.from_numpy(graph.features[None].astype(np.float64)))[0].numpy()
    np.testing.assert_array_equal(res.model.output_type.to_float(out), ref)


def _cli(*args):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_a_gcn_recipe_trains_and_exports_through_the_cli(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("format_version: 1\nmodel: {name: gcn}\ndata: {dataset: cora}\n"
                      "quant: {method: vecq, bits: 4, feature_bits: 6}\ntrain: {float_epochs: 2, epochs: 1}\n")
    r = _cli("train", recipe, "--out", tmp_path / "run")
    assert r.exit_code == 0, r.output
    # the thread count (a function of the usable cores, never of the load) is recorded with the recipe
    from vecq_hw.train import default_threads
    assert yaml.safe_load((tmp_path / "run" / "recipe.yaml").read_text())["train"]["threads"] == default_threads()
    r = _cli("export", tmp_path / "run", "--out", tmp_path / "model")
    assert r.exit_code == 0, r.output
    assert "outputs equal to PyTorch's 100.00 % (max 0 LSB)" in r.output and "agreement 100.00 %" in r.output
    assert (tmp_path / "model" / "model.yaml").is_file()


@pytest.mark.parametrize("edit,field", [
    ({"degree_bounds": [5, 3]}, "quant.degree_bounds"),
    ({"method": "alq"}, "quant.method"),
    ({"budget_bits": 1.5}, "quant.budget_bits"),
    ({"feature_bits": 1}, "quant.feature_bits"),
])
def test_a_bad_gcn_recipe_is_one_line(edit, field):
    from vecq_hw.train.recipe import load_recipe

    quant = {"method": "vecq", "bits": 4, **edit}
    with pytest.raises(RecipeError) as e:
        load_recipe({"format_version": 1, "model": {"name": "gcn"}, "data": {"dataset": "cora"}, "quant": quant,
                     "train": {}})
    assert f"field '{field}'" in str(e.value) and "\n" not in str(e.value)


def test_the_shipped_gcn_recipes_validate():
    from vecq_hw.train.recipe import load_recipe

    for name in ("gcn_cora_sgquant.yaml", "gcn_citeseer_sgquant.yaml"):
        rec, _ = load_recipe(ROOT / "configs" / name)
        assert rec["model"]["name"] == "gcn" and rec["quant"]["budget_bits"] == 3.0

