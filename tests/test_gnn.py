"""Graph layers of the integer model (issue #27): the factored normalisation against a per-edge
reference derived here, the bucket roundings against a float reference, the folder format and its
refusals (CSR, node-width tables, feature files), and the memory accounting.

The references are built from the edge list with numpy and Python's decimal module: Â = D̃^-½ (A+I) D̃^-½
as a dense matrix whose every entry is the product of the two quantised factors 1/√d̃_i and 1/√d̃_j,
never from the CSR helpers or the kernel under test.
"""

from __future__ import annotations

import hashlib
import io
from decimal import ROUND_HALF_UP, Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest
import yaml
from gnn_models import random_edges, random_features, random_gcn

from vecq_hw import ir
from vecq_hw.errors import FormatError
from vecq_hw.fixed import FixedType
from vecq_hw.ir.gnn import GCNAggregate, csr_with_self_loops, inv_sqrt_mantissas
from vecq_hw.ir.gnn_memory import gcn_memory
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.sim import simulate

F = FixedType.parse
PRE = F("ap_ufixed<10,1>")
Z = F("ap_fixed<8,3>")


def dense_adjacency(edges: np.ndarray, n: int) -> np.ndarray:
    """A + I from the edge list (0/1, duplicates and self-loops once)."""
    a = np.zeros((n, n), dtype=np.int64)
    a[edges[0], edges[1]] = 1
    a[np.arange(n), np.arange(n)] = 1
    return a


def inv_sqrt_reference(d: int, frac: int) -> int:
    """round-half-up(2^frac / sqrt(d)) in 60-digit decimal arithmetic."""
    getcontext().prec = 60
    return int((Decimal(2) ** frac / Decimal(d).sqrt()).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def aggregation_model(seed: int, buckets, n=30, f=4, out="ap_fixed<16,6,AP_RND_CONV,AP_SAT>"):
    rng = np.random.default_rng(seed)
    edges = random_edges(rng, n, 40)
    indptr, indices = csr_with_self_loops(edges, n)
    deg = np.diff(indptr)
    node_bucket = (deg >= np.median(deg)).astype(np.int8) if len(buckets) > 1 else np.zeros(n, np.int8)
    m = inv_sqrt_mantissas(deg, PRE)
    bias_type = F("ap_fixed<12,4>")
    agg = GCNAggregate(name="agg", inputs=("z",), out_type=F(out), pre_scale_type=PRE,
                       bucket_types=tuple(F(t) for t in buckets), post_scale_type=PRE, bias_type=bias_type,
                       indptr=indptr, indices=indices, node_bucket=node_bucket, pre_scale=m, post_scale=m.copy(),
                       bias=rng.integers(-300, 300, size=f).astype(np.int64))
    model = ir.Model("agg", [ir.Input(name="z", out_type=Z, shape=(n, f)), agg]).check()
    z = rng.integers(Z.min_mantissa, Z.max_mantissa + 1, size=(6, n, f))
    return model, edges, z


def test_factored_normalisation_equals_the_per_edge_reference():
    # bucket types wide enough to hold z * p exactly: the only rounding left is the output's, so
    # the factored form must equal y = requant(Σ_j (q_i p_j) z_j + b) with Â built per edge
    model, edges, z = aggregation_model(1, ("ap_fixed<18,4,AP_TRN,AP_SAT>", "ap_fixed<20,6,AP_RND,AP_SAT>"))
    agg = model.layers[1]
    n = agg.node_bucket.size
    a = dense_adjacency(edges, n)
    deg = a.sum(axis=1)
    factor = np.array([inv_sqrt_reference(int(d), PRE.frac) for d in deg], dtype=np.int64)
    np.testing.assert_array_equal(agg.pre_scale, factor)  # the helper's integer rounding, independently
    assert len(set(deg.tolist())) > 3 and agg.indices.size == a.sum()
    a_hat = factor[:, None] * a * factor[None, :]  # every edge's quantised 1/sqrt(d_i d_j): 2 * PRE.frac bits
    frac = Z.frac + 2 * PRE.frac
    y = np.einsum("ij,bjf->bif", a_hat, z) + (agg.bias << (frac - agg.bias_type.frac))
    want = agg.out_type.quantize_mantissa(y, frac)
    got = simulate(model, x_mantissa=z).output
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(got)) > 20  # the outputs vary: not all saturated or zero


def test_bucket_roundings_stay_within_their_half_lsb_of_the_float_reference():
    # narrow bucket types (two widths): u_j = round(z_j p_j) to its bucket's grid, so each output is
    # within q_i * Σ_j LSB_b(j) / 2 (round to nearest) + half an output LSB of the float reference
    model, edges, z = aggregation_model(2, ("ap_fixed<6,3,AP_RND_CONV,AP_SAT>", "ap_fixed<4,3,AP_RND_CONV,AP_SAT>"))
    agg = model.layers[1]
    n = agg.node_bucket.size
    a = dense_adjacency(edges, n)
    p = PRE.to_float(agg.pre_scale)
    ref = np.einsum("ij,bjf->bif", p[:, None] * a * p[None, :], Z.to_float(z)) + agg.bias_type.to_float(agg.bias)
    lsb = np.array([agg.bucket_types[b].resolution for b in agg.node_bucket])
    bound = p * (a @ lsb) / 2 + agg.out_type.resolution / 2
    got = agg.out_type.to_float(simulate(model, x_mantissa=z).output)
    err = np.abs(got - ref)
    assert np.all(err <= bound[None, :, None] * (1 + 1e-12))
    assert err.max() > agg.out_type.resolution  # the narrow buckets do round


def test_a_gcn_folder_round_trips_and_simulates_identically(tmp_path):
    model = random_gcn(seed=4)
    save_model(model, tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back == model
    x = random_features(model, 5)
    np.testing.assert_array_equal(simulate(back, x_mantissa=x).output, simulate(model, x_mantissa=x).output)


# ------------------------------------------------------------------------------ bad input

@pytest.fixture(scope="module")
def gcn_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("gcn") / "model"
    save_model(random_gcn(seed=6), d)
    return d


def _edit(folder: Path, layer: str, table: str | None, arr=None, **yaml_fields) -> None:
    """Replace a table of a saved layer (its file, shape, dtype and checksum kept consistent) and/or
    YAML fields of the layer."""
    doc = yaml.safe_load((folder / "model.yaml").read_text())
    rec = next(r for r in doc["layers"] if r["name"] == layer)
    if table is not None:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        (folder / rec[table]["file"]).write_bytes(buf.getvalue())
        rec[table].update(shape=list(arr.shape), sha256=hashlib.sha256(buf.getvalue()).hexdigest(),
                          dtype=str(arr.dtype))
    rec.update(yaml_fields)
    (folder / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def _swap_in_a_row(m):
    a = m.layer("agg1")
    k = int(next(a.indptr[i] for i in range(len(a.indptr) - 1) if a.indptr[i + 1] - a.indptr[i] >= 2))
    ix = a.indices.copy()
    ix[k], ix[k + 1] = ix[k + 1], ix[k]
    return ix


def _cases():
    def table(name, make):
        return lambda m: ("agg1", name, make(m.layer("agg1")), {})
    return [
        ("unsorted row", lambda m: ("agg1", "indices", _swap_in_a_row(m), {}), "indices", "not strictly increasing"),
        ("duplicate edge", table("indices", lambda a: np.where(np.arange(a.indices.size) == a.indptr[1] - 1,
                                                                a.indices[max(0, a.indptr[1] - 2)], a.indices)
                                 .astype(np.int32)), "indices", "not strictly increasing"),
        ("index out of range", table("indices", lambda a: np.where(np.arange(a.indices.size) == 3, 40, a.indices)
                                     .astype(np.int32)), "indices", "outside the 40 nodes"),
        ("indptr not monotone", table("indptr", lambda a: np.where(np.arange(a.indptr.size) == 5, a.indptr[6] + 1,
                                                                   a.indptr)), "indptr", "not monotone"),
        ("indptr end", table("indptr", lambda a: np.minimum(a.indptr, a.indptr[-1] - 1)), "indptr",
         "number of indices"),
        ("bucket out of range", table("node_bucket", lambda a: np.where(np.arange(40) == 7, 3, a.node_bucket)
                                      .astype(np.int8)), "node_bucket", "names bucket 3"),
        ("node widths too short", table("node_bucket", lambda a: a.node_bucket[:-1]), "node_bucket.shape", "[40]"),
        ("node widths dtype", table("node_bucket", lambda a: a.node_bucket.astype(np.int16)), "node_bucket.dtype",
         "int8"),
        ("five bucket types", lambda m: ("agg1", None, None, {"bucket_types": ["ap_fixed<4,1>"] * 5}), "bucket_types",
         "1 to 4"),
        ("mixed signedness", lambda m: ("agg1", None, None, {"bucket_types": ["ap_fixed<4,1>", "ap_ufixed<4,1>",
                                                                             "ap_fixed<3,1>"]}),
         "bucket_types", "one signedness"),
    ]


@pytest.mark.parametrize("case", _cases(), ids=[c[0] for c in _cases()])
def test_a_malformed_graph_table_is_one_line_naming_the_field(gcn_dir, tmp_path, case):
    import shutil

    _, make, field, words = case
    d = tmp_path / "m"
    shutil.copytree(gcn_dir, d)
    layer, table, arr, fields = make(load_model(gcn_dir))
    _edit(d, layer, table, arr, **fields)
    with pytest.raises(FormatError) as e:
        load_model(d)
    msg = str(e.value)
    assert "\n" not in msg and str(d / "model.yaml") in msg and f"(agg1).{field}'" in msg and words in msg, msg


def _cli(*args):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


def _one_line_exit_2(r, *needles):
    lines = r.stderr.strip().splitlines()
    assert r.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), (r.exit_code, r.stderr)
    assert all(n in lines[0] for n in needles), lines[0]


def test_cli_refuses_a_bad_csr_and_a_feature_file_of_the_wrong_shape(gcn_dir, tmp_path):
    import shutil

    d = tmp_path / "bad"
    shutil.copytree(gcn_dir, d)
    _edit(d, "agg2", "indices", _swap_in_a_row(load_model(gcn_dir)))
    _one_line_exit_2(_cli("check", d), "(agg2).indices", "not strictly increasing")
    model = load_model(gcn_dir)
    good = random_features(model, 1).astype(np.float64)
    for bad in (good[:, :-1], good[:, :, :-1], good[0]):  # a node short, a feature short, no sample axis
        np.save(tmp_path / "x.npy", bad)
        _one_line_exit_2(_cli("sim", gcn_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy"),
                         "x.npy", "(N, 40, 12)")
        assert not (tmp_path / "y.npy").exists()
    np.save(tmp_path / "x.npy", good)
    r = _cli("sim", gcn_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "y.npy", "--mantissas")
    assert r.exit_code == 0, r.output
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), simulate(model, x=good).output)


# ------------------------------------------------------------------------------ memory

def test_memory_accounting_counts_every_stored_bit():
    model = random_gcn(seed=4)
    mem = gcn_memory(model)
    agg1, agg2 = model.layer("agg1"), model.layer("agg2")
    # node rows by bucket: agg1's three types are 8, 5 and 3 bits wide (6 features), agg2's 8 and 5 (3 features)
    u1 = 6 * sum({0: 8, 1: 5, 2: 3}[int(b)] for b in agg1.node_bucket)
    u2 = 3 * sum({0: 8, 1: 5}[int(b)] for b in agg2.node_bucket)
    x_bits = 40 * 12 * 1
    assert mem["feature_bits"] == x_bits + u1 + u2
    assert mem["sgquant_reduction"] == pytest.approx(32 * (40 * 12 + 40 * 6 + 40 * 3) / (x_bits + u1 + u2))
    assert mem["stored_avg_bits"] == pytest.approx((u1 + u2) / (40 * 6 + 40 * 3))
    e = agg1.indices.size
    tables = (41 * (e + 1).bit_length() + e * 6 + 40 * 2 + 40 * 20 + 6 * 12) + (41 * (e + 1).bit_length() + e * 6
                                                                                 + 40 * 1 + 40 * 20 + 3 * 12)
    assert mem["table_bits"] == tables
    weights = 12 * 6 * 2 + 6 * 3 * 3 + (6 + 3) * 12 + (6 + 3) * 2  # codes, scales (12 bits), zero biases (2 bits)
    assert mem["weight_bits"] == weights and mem["total_bits"] == x_bits + u1 + u2 + tables + weights
