"""model.yaml + tables: round trip, determinism, the packed weight image, the memory report."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from gnn_models import random_gcn
from graph_models import make_graph
from vecq_hw import ir
from vecq_hw.errors import FormatError
from vecq_hw.ir import io as model_io, packing
from vecq_hw.ir.io import load_model, save_model, weight_memory_report
from vecq_hw.ir.packing import pack_codes, packed_size, unpack_codes
from vecq_hw.fixed import FixedType

F = FixedType.parse


def _weighted(cls, rng, name, in_type, shape, bits, encoding, **kw):
    lo, hi = ir.code_range(bits)
    codes = rng.integers(lo, hi + 1, size=shape).astype(np.int8)
    st = F(rng.choice(["ap_fixed<8,1>", "ap_ufixed<10,2>", "ap_fixed<12,-2,AP_RND,AP_SAT>"]))
    bt = F("ap_fixed<16,6>")
    n = shape[-1]
    return cls(name=name, out_type=F(kw.pop("out_type", "ap_ufixed<8,3,AP_RND,AP_SAT>")), bits=bits,
               encoding=encoding, codes=codes,
               scale=rng.integers(st.min_mantissa, st.max_mantissa + 1, n).astype(np.int64), scale_type=st,
               bias=rng.integers(bt.min_mantissa, bt.max_mantissa + 1, n).astype(np.int64), bias_type=bt,
               accum_type=ir.accumulator_type(in_type, ir.multipliers(codes, encoding)),
               multiplier=str(rng.choice(["auto", "dsp", "fabric"])), **kw)


def make_cnn(seed: int) -> ir.Model:
    """input -> conv -> relu -> maxpool -> avgpool -> flatten -> dense -> relu -> dense."""
    rng = np.random.default_rng(seed)
    bits = [int(b) for b in rng.integers(1, 9, 3)]
    enc = [str(e) for e in rng.choice(ir.ENCODINGS, 3)]
    t_in, act, avg = F("ap_ufixed<8,0,AP_RND,AP_SAT>"), F("ap_ufixed<8,3,AP_RND,AP_SAT>"), F("ap_ufixed<10,3>")
    c_in, c1 = int(rng.integers(1, 4)), int(rng.integers(1, 6))
    kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    pad = tuple(int(p) for p in rng.integers(0, 2, 4))
    stride = tuple(int(s) for s in rng.integers(1, 3, 2))
    conv = _weighted(ir.Conv2D, rng, "conv1", t_in, (kh, kw, c_in, c1), bits[0], enc[0],
                     stride=stride, padding=pad)
    layers = [ir.Input("in", t_in, shape=(12, 12, c_in)), conv, ir.ReLU("relu1", act),
              ir.MaxPool2D("pool1", act, pool=(2, 2), stride=(1, 1)),
              ir.AvgPool2D("avg1", avg, pool=(2, 2), stride=(2, 2)), ir.Flatten("flat", avg)]
    m = ir.Model(f"cnn{seed}", layers)
    n_flat = m.output_shape[0]
    h = int(rng.integers(1, 9))
    m.layers += [_weighted(ir.Dense, rng, "fc1", avg, (n_flat, h), bits[1], enc[1]),
                 ir.ReLU("relu2", act),
                 _weighted(ir.Dense, rng, "fc2", act, (h, 3), bits[2], enc[2],
                           out_type="ap_fixed<16,6,AP_RND_CONV,AP_SAT>")]
    return m.check()


def make_mlp(seed: int, bits: int = 2, encoding: str = "odd") -> ir.Model:
    rng = np.random.default_rng(seed)
    t_in, act = F("ap_fixed<8,3>"), F("ap_ufixed<8,3,AP_RND,AP_SAT>")
    return ir.Model("mlp", [
        ir.Input("x", t_in, shape=(10,)),
        _weighted(ir.Dense, rng, "fc1", t_in, (10, 7), bits, encoding),
        ir.ReLU("r1", act),
        _weighted(ir.Dense, rng, "fc2", act, (7, 4), bits, encoding, out_type="ap_fixed<12,4>"),
    ]).check()


def _files(d):
    return {p: open(os.path.join(d, p), "rb").read() for p in sorted(os.listdir(d))}


# --------------------------------------------------------------------------- round trip

@pytest.mark.parametrize("seed", range(6))
def test_round_trip_every_layer_kind(tmp_path, seed):
    m = make_cnn(seed)
    rep = save_model(m, tmp_path / "m")
    graph_kinds = {type(layer) for layer in make_graph(seed).layers}
    alq = {ir.AlqDense, ir.AlqConv2D}  # their round trip: tests/test_alq_native.py
    pq = {ir.PqDense, ir.PqConv2D}  # theirs: tests/test_pq.py
    gnn_kinds = {type(layer) for layer in random_gcn(seed).layers}  # tests/test_gnn.py round-trips those
    assert {type(layer) for layer in m.layers} | graph_kinds | gnn_kinds == set(ir.LAYER_KINDS.values()) - alq - pq
    back = load_model(tmp_path / "m")
    assert back == m
    assert load_model(tmp_path / "m" / "model.yaml") == m
    # the loaded tables are real, writable, native arrays of the contract dtypes
    fc1 = back.layers[6]
    assert fc1.codes.dtype == np.int8 and fc1.scale.dtype == np.int64 and fc1.codes.flags.writeable
    assert sorted(rep.files) == sorted(os.listdir(tmp_path / "m"))
    assert [x for x in os.listdir(tmp_path) if x != "m"] == []  # no temp folders left


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("encoding", ir.ENCODINGS)
def test_round_trip_bits_and_encodings(tmp_path, bits, encoding):
    m = make_mlp(bits, bits, encoding)
    save_model(m, tmp_path / "m")
    assert load_model(tmp_path / "m") == m


def test_round_trip_odd_names_and_file_stems(tmp_path):
    m = make_mlp(0)
    m.name = "mlp: yes"  # YAML would read an unquoted `yes` as a boolean
    # layer names are C identifiers (issue 22); two that differ in case only still get two files
    m.layers[1].name, m.layers[3].name = "Features_0_FC", "features_0_fc"
    m.check()
    rep = save_model(m, tmp_path / "m")
    assert "Features_0_FC.codes.npy" in rep.files and "features_0_fc_2.codes.npy" in rep.files
    assert load_model(tmp_path / "m") == m


def test_yaml_content(tmp_path):
    m = make_cnn(1)
    save_model(m, tmp_path / "m")
    doc = yaml.safe_load((tmp_path / "m" / "model.yaml").read_text())
    assert list(doc) == ["format_version", "name", "layers"] and doc["format_version"] == 2
    assert [r["kind"] for r in doc["layers"]] == [layer.kind for layer in m.layers]
    prev = None
    for rec, (layer, in_shape, _, out_shape) in zip(doc["layers"], m.walk()):
        assert tuple(rec) == model_io.layer_keys(ir.LAYER_KINDS[rec["kind"]])
        assert rec["out_shape"] == list(out_shape) and rec["out_type"] == str(layer.out_type)
        if prev is not None:
            assert rec["inputs"] == [prev]  # a chain: each layer reads the one before
        prev = rec["name"]
    conv = m.layers[1]
    k = conv.bits
    want = [2 * c + 1 if conv.encoding == "odd" else c for c in range(-2 ** (k - 1), 2 ** (k - 1))]
    assert doc["layers"][1]["levels"] == want
    conv = doc["layers"][1]
    assert conv["codes"]["dtype"] == "int8" and conv["scale"]["dtype"] == "int64"
    assert conv["weights_image"]["layout"] == packing.LAYOUT
    assert FixedType.parse(conv["accum_type"]) == m.layers[1].accum_type


def test_deterministic_bytes(tmp_path):
    m = make_cnn(3)
    save_model(m, tmp_path / "a")
    save_model(make_cnn(3), tmp_path / "b")
    save_model(load_model(tmp_path / "a"), tmp_path / "c")
    a = _files(tmp_path / "a")
    assert a == _files(tmp_path / "b") == _files(tmp_path / "c")
    assert b"!!" not in a["model.yaml"]

    def scalars(x):
        if isinstance(x, dict):
            return [v for y in x.values() for v in scalars(y)]
        return [v for y in x for v in scalars(y)] if isinstance(x, list) else [x]
    assert all(isinstance(v, (int, str)) for v in scalars(yaml.safe_load(a["model.yaml"])))


# --------------------------------------------------------------------------- save semantics

def test_save_refuses_existing_then_overwrites(tmp_path):
    out = tmp_path / "m"
    save_model(make_mlp(0), out)
    before = _files(out)
    with pytest.raises(FormatError, match="already exists"):
        save_model(make_mlp(1), out)
    assert _files(out) == before
    save_model(make_mlp(1), out, overwrite=True)
    assert load_model(out) == make_mlp(1)
    assert sorted(os.listdir(tmp_path)) == ["m"]


def test_overwrite_refuses_a_folder_that_is_not_a_model(tmp_path):
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FormatError, match="without a model.yaml"):
        save_model(make_mlp(0), out, overwrite=True)
    assert os.listdir(out) == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(FormatError, match="not a folder"):
        save_model(make_mlp(0), tmp_path / "afile", overwrite=True)
    # an empty folder may be replaced; missing parents are created
    (tmp_path / "empty").mkdir()
    save_model(make_mlp(0), tmp_path / "empty", overwrite=True)
    save_model(make_mlp(0), tmp_path / "new" / "deeper" / "m")
    assert load_model(tmp_path / "new" / "deeper" / "m") == make_mlp(0)


# --------------------------------------------------------------------------- packing

def _reference_pack(codes, bits):
    """Bit by bit, straight from the documented layout."""
    stream = []
    for c in np.asarray(codes).reshape(-1):
        u = int(c) & ((1 << bits) - 1)
        stream += [(u >> b) & 1 for b in range(bits)]
    stream += [0] * (-len(stream) % 8)
    return bytes(sum(stream[i + j] << j for j in range(8)) for i in range(0, len(stream), 8))


def test_pack_hand_checked():
    # k=2: -2,-1,0,1 -> fields 10,11,00,01 -> stream 0,1,1,1,0,0,1,0 (LSB first) -> 0b01001110
    assert pack_codes(np.array([-2, -1, 0, 1], np.int8), 2) == bytes([0b01001110]) == b"\x4e"
    # k=3: 3 (011), -4 (100), -1 (111) -> stream 1,1,0, 0,0,1, 1,1,1 -> byte 0b11100011, then 0b1
    assert pack_codes(np.array([3, -4, -1]), 3) == bytes([0b11100011, 0b00000001])
    # k=1: codes -1 (1) and 0 (0)
    assert pack_codes(np.array([-1, 0, 0, -1, -1, 0, 0, 0, -1]), 1) == bytes([0b00011001, 0b1])
    assert pack_codes(np.array([-128, 127, -1]), 8) == bytes([0x80, 0x7F, 0xFF])
    assert unpack_codes(b"\x4e", 2, 4).tolist() == [-2, -1, 0, 1]


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_round_trip_and_reference(bits):
    rng = np.random.default_rng(bits)
    lo, hi = ir.code_range(bits)
    for n in (1, 7, 8, 9, 63, 200):
        codes = rng.integers(lo, hi + 1, (n,)).astype(np.int8)
        data = pack_codes(codes, bits)
        assert len(data) == packed_size(n, bits) == (n * bits + 7) // 8
        assert data == _reference_pack(codes, bits)
        back = unpack_codes(data, bits, n)
        assert back.dtype == np.int8 and np.array_equal(back, codes)


def test_pack_in_chunks(monkeypatch):
    monkeypatch.setattr(packing, "_CHUNK", 16)
    rng = np.random.default_rng(0)
    for bits in (1, 3, 5):
        lo, hi = ir.code_range(bits)
        codes = rng.integers(lo, hi + 1, (4, 5, 3)).astype(np.int8)  # 60: not a chunk multiple
        data = pack_codes(codes, bits)
        assert data == _reference_pack(codes, bits)
        assert np.array_equal(unpack_codes(data, bits, codes.size), codes.reshape(-1))


def test_pack_refuses_bad_input():
    with pytest.raises(ValueError):
        pack_codes(np.array([2]), 2)
    with pytest.raises(ValueError):
        unpack_codes(b"\x4e\x00", 2, 4)  # too long
    with pytest.raises(ValueError, match="padding"):
        unpack_codes(b"\xff", 3, 2)  # 6 bits used, 2 padding bits set


def test_image_file_is_table_order(tmp_path):
    m = make_cnn(4)
    save_model(m, tmp_path / "m")
    for layer in m.layers:
        if isinstance(layer, ir.Weighted):
            data = (tmp_path / "m" / f"{layer.name}.weights.bin").read_bytes()
            assert data == _reference_pack(layer.codes.reshape(-1, order="C"), layer.bits)
            np.testing.assert_array_equal(unpack_codes(data, layer.bits, layer.codes.size).reshape(layer.codes.shape),
                                          layer.codes)


# --------------------------------------------------------------------------- memory report

def test_weight_memory_report(tmp_path):
    m = make_mlp(0, bits=3)
    rep = weight_memory_report(m)
    fc1, fc2 = rep["layers"]
    assert fc1["n_weights"] == 70 and fc1["code_bits"] == 210 and fc1["image_bytes"] == 27
    assert fc1["scale_bits"] == 7 * m.layers[1].scale_type.width and fc1["bias_bits"] == 7 * 16
    t = rep["total"]
    assert t["n_weights"] == 98 and t["code_bits"] == 3 * 98 and t["float32_bits"] == 32 * 98
    assert t["compression_vs_float32"] == pytest.approx(32 / 3)
    sb = fc1["scale_bias_bits"] + fc2["scale_bias_bits"]
    assert t["scale_bias_bits"] == sb and t["total_bits"] == 3 * 98 + sb
    assert t["compression_vs_float32_with_scale_bias"] == pytest.approx(32 * 98 / (3 * 98 + sb))
    saved = save_model(m, tmp_path / "m")
    assert saved.weight_memory == rep and saved.code_bits == 294
    assert saved.compression_ratio == pytest.approx(32 / 3)
    assert sum(os.path.getsize(tmp_path / "m" / f) for f in saved.files if f.endswith(".bin")) == t["image_bytes"]
    empty = ir.Model("none", [ir.Input("x", F("ap_fixed<8,3>"), shape=(4,))])
    assert weight_memory_report(empty)["total"]["compression_vs_float32"] == 0.0
