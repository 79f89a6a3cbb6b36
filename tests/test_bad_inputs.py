"""A corpus of broken model folders, made by mutating one valid saved model.

Every case must be refused by ``load_model`` with one FormatError line that names
model.yaml and the offending field; failed saves must leave nothing half-written.
"""

from __future__ import annotations

import os
import re
import time
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from vecq_hw import ir
from vecq_hw.errors import FormatError
from vecq_hw.ir import io as model_io
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.fixed import FixedType

F = FixedType.parse
_L = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_D = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def _load(text: str):
    return yaml.load(text, Loader=_L)


def _dump(doc) -> str:
    return yaml.dump(doc, Dumper=_D, sort_keys=False)


C, FC = "layers[1] (c1)", "layers[5] (fc)"  # the weighted layers of the good model


def good_model() -> ir.Model:
    rng = np.random.default_rng(7)
    t_in, act = F("ap_ufixed<8,0,AP_RND,AP_SAT>"), F("ap_ufixed<8,3,AP_RND,AP_SAT>")
    st, bt = F("ap_fixed<8,1>"), F("ap_fixed<12,4>")

    def weighted(cls, name, in_type, shape, bits, **kw):
        lo, hi = ir.code_range(bits)
        codes = rng.integers(lo, hi + 1, shape).astype(np.int8)
        n = shape[-1]
        return cls(name=name, out_type=act, bits=bits, encoding="odd", codes=codes,
                   scale=rng.integers(st.min_mantissa, st.max_mantissa + 1, n), scale_type=st,
                   bias=rng.integers(bt.min_mantissa, bt.max_mantissa + 1, n), bias_type=bt,
                   accum_type=ir.accumulator_type(in_type, ir.multipliers(codes, "odd")), **kw)

    return ir.Model("good", [
        ir.Input("x", t_in, shape=(6, 6, 2)),
        weighted(ir.Conv2D, "c1", t_in, (3, 3, 2, 4), 2),
        ir.ReLU("r1", act),
        ir.MaxPool2D("p1", act),
        ir.Flatten("f", act),
        weighted(ir.Dense, "fc", act, (16, 3), 3),
    ]).check()


@pytest.fixture(scope="module")
def good_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("good") / "model"
    save_model(good_model(), d)
    return d


@pytest.fixture
def case_dir(good_dir, tmp_path) -> Path:
    d = tmp_path / "m"
    shutil.copytree(good_dir, d)
    return d


# --------------------------------------------------------------------------- mutation helpers

def edit(fn):
    """Mutate the parsed YAML document and write it back."""
    def mutate(d: Path):
        p = d / "model.yaml"
        doc = _load(p.read_text())
        fn(doc)
        p.write_text(_dump(doc))
    return mutate


def text(old: str, new: str):
    def mutate(d: Path):
        p = d / "model.yaml"
        t = p.read_text()
        assert old in t, old
        p.write_text(t.replace(old, new, 1))
    return mutate


def raw(data: bytes):
    def mutate(d: Path):
        (d / "model.yaml").write_bytes(data)
    return mutate


def _rec(doc, i):
    return doc["layers"][i]


def set_key(i, key, value):
    def fn(doc):
        _rec(doc, i)[key] = value
    return edit(fn)


def set_table(i, table, key, value):
    def fn(doc):
        _rec(doc, i)[table][key] = value
    return edit(fn)


def _fix_sha(d: Path, i: int, table: str, data: bytes, **extra):
    import hashlib
    doc = _load((d / "model.yaml").read_text())
    spec = _rec(doc, i)[table]
    (d / spec["file"]).write_bytes(data)
    spec["sha256"] = hashlib.sha256(data).hexdigest()
    spec.update(extra)
    (d / "model.yaml").write_text(_dump(doc))


def table_bytes(i, table, make):
    """Replace a table file by ``make(original_bytes)`` and update its checksum (so the
    deeper check, not the checksum, must catch it)."""
    def mutate(d: Path):
        doc = _load((d / "model.yaml").read_text())
        data = (d / _rec(doc, i)[table]["file"]).read_bytes()
        _fix_sha(d, i, table, make(data))
    return mutate


def table_array(i, table, make, **kw):
    def mutate(d: Path):
        import io
        doc = _load((d / "model.yaml").read_text())
        arr = np.load(d / _rec(doc, i)[table]["file"])
        buf = io.BytesIO()
        np.save(buf, make(arr), allow_pickle=kw.get("allow_pickle", False))
        _fix_sha(d, i, table, buf.getvalue())
    return mutate


def symlink_outside(d: Path):
    outside = d.parent / "outside.npy"
    doc = _load((d / "model.yaml").read_text())
    shutil.copy(d / _rec(doc, 5)["codes"]["file"], outside)
    os.symlink(outside, d / "link.npy")
    _rec(doc, 5)["codes"]["file"] = "link.npy"
    (d / "model.yaml").write_text(_dump(doc))


def flip_image_bit(d: Path):
    def make(data):
        b = bytearray(data)
        b[0] ^= 1
        return bytes(b)
    table_bytes(5, "weights_image", make)(d)


def dup_layer_name(doc):
    _rec(doc, 2)["name"] = "c1"


def swap_first_layers(doc):
    doc["layers"][0], doc["layers"][1] = doc["layers"][1], doc["layers"][0]


def make_cycle(doc):
    # r1 reads p1 and p1 reads r1: with topological order required, that's an unknown/later name
    _rec(doc, 2)["inputs"] = ["p1"]


def _relu(name, inputs, shape, typ):
    return {"kind": "relu", "name": name, "inputs": inputs, "out_shape": shape, "out_type": typ}


def add_shape_mismatch(doc):
    r1 = _rec(doc, 2)
    doc["layers"].insert(3, {"kind": "add", "name": "bad_add", "inputs": ["r1", "x"],
                             "out_shape": list(r1["out_shape"]), "out_type": r1["out_type"]})
    _rec(doc, 4)["inputs"] = ["bad_add"]


def add_one_input(doc):
    r1 = _rec(doc, 2)
    doc["layers"].insert(3, {"kind": "add", "name": "bad_add", "inputs": ["r1"],
                             "out_shape": list(r1["out_shape"]), "out_type": r1["out_type"]})
    _rec(doc, 4)["inputs"] = ["bad_add"]


def two_outputs(doc):
    # the pool reads the conv directly: r1 is read by nobody, a second output
    _rec(doc, 3)["inputs"] = ["c1"]


def unreachable_layer(doc):
    r1 = _rec(doc, 2)
    doc["layers"].insert(3, _relu("dead", ["r1"], list(r1["out_shape"]), r1["out_type"]))


# (id, mutation, expected field; None where the whole file is at fault)
CASES = [
    # --- whole file
    ("empty_yaml", raw(b""), None),
    ("blank_yaml", raw(b"\n# nothing\n"), None),
    ("not_a_mapping", raw(b"- 1\n- 2\n"), None),
    ("scalar_document", raw(b"just a string\n"), None),
    ("unparseable", raw(b"format_version: 1\nlayers: [\n  {kind: input\n"), None),
    ("not_utf8", raw(b"name: \xff\xfe\n"), None),
    ("python_tag", text("name: good", 'name: !!python/object/apply:os.system ["touch pwned"]'), None),
    ("explicit_str_tag", text("format_version: 2", "format_version: !!int '2'"), None),
    ("anchor_alias", text("name: good", "name: &n good\nalias: *n"), None),
    ("duplicate_key", text("name: good", "name: good\nname: other"), None),
    ("two_documents", text("format_version: 2", "format_version: 2\n---\nx: 1\n"), None),
    # --- top level keys
    ("wrong_format_version", edit(lambda d: d.update(format_version=3)), "format_version"),
    ("format_version_string", edit(lambda d: d.update(format_version="2")), "format_version"),
    ("format_version_float", edit(lambda d: d.update(format_version=1.0)), "format_version"),
    ("format_version_bool", edit(lambda d: d.update(format_version=True)), "format_version"),
    ("missing_format_version", edit(lambda d: d.pop("format_version")), "format_version"),
    ("unknown_top_key", edit(lambda d: d.update(extra=1)), "extra"),
    ("missing_name", edit(lambda d: d.pop("name")), "name"),
    ("name_not_string", edit(lambda d: d.update(name=12)), "name"),
    ("layers_not_list", edit(lambda d: d.update(layers={"a": 1})), "layers"),
    ("layers_empty", edit(lambda d: d.update(layers=[])), "layers"),
    # --- layer keys and scalar types
    ("layer_not_mapping", edit(lambda d: d["layers"].__setitem__(2, "relu")), "layers[2]"),
    ("unknown_layer_kind", set_key(2, "kind", "lstm"), "layers[2].kind"),
    ("missing_layer_key", edit(lambda d: _rec(d, 1).pop("bits")), f"{C}.bits"),
    ("unknown_layer_key", set_key(1, "dilation", [1, 1]), f"{C}.dilation"),
    ("bool_as_int", set_key(1, "bits", True), f"{C}.bits"),
    ("float_as_int", set_key(1, "bits", 2.0), f"{C}.bits"),
    ("string_as_int", set_key(1, "bits", "2"), f"{C}.bits"),
    ("bits_out_of_range", set_key(1, "bits", 9), f"{C}.bits"),
    ("nan_in_stride", set_key(1, "stride", [float("nan"), 1]), f"{C}.stride[0]"),
    ("inf_in_shape", set_key(2, "out_shape", [float("inf"), 4, 4]), "layers[2] (r1).out_shape[0]"),
    ("float_in_shape", set_key(2, "out_shape", [4.0, 4, 4]), "layers[2] (r1).out_shape[0]"),
    ("negative_padding", set_key(1, "padding", [0, -1, 0, 0]), f"{C}.padding[1]"),
    ("padding_too_short", set_key(1, "padding", [0, 0]), f"{C}.padding"),
    ("levels_wrong_length", set_key(1, "levels", [-1, 1]), f"{C}.levels"),
    ("levels_not_integers", set_key(1, "levels", [-3, -1, 1.5, 3]), f"{C}.levels[2]"),
    ("levels_too_big", set_key(1, "levels", [-3, -1, 1, 1 << 20]), f"{C}.levels[3]"),
    ("v1_key_in_v2", set_key(1, "encoding", "odd"), f"{C}.encoding"),
    ("bad_multiplier", set_key(5, "multiplier", "gpu"), f"{FC}.multiplier"),
    ("empty_layer_name", set_key(2, "name", ""), "layers[2].name"),
    ("duplicate_layer_name", edit(dup_layer_name), "layers[2] (c1).name"),
    ("first_layer_not_input", edit(swap_first_layers), "layers[0] (c1).kind"),
    # --- ap_types spellings
    ("bad_spelling", set_key(1, "out_type", "ap_fixd<8,3>"), f"{C}.out_type"),
    ("bad_spelling_mode", set_key(1, "scale_type", "ap_fixed<8,1,AP_ROUND>"), f"{C}.scale_type"),
    ("type_not_string", set_key(5, "bias_type", 12), f"{FC}.bias_type"),
    # --- shapes
    # graph structure
    ("unknown_input_name", set_key(2, "inputs", ["nope"]), "layers[2] (r1).inputs[0]"),
    ("input_listed_later", set_key(2, "inputs", ["p1"]), "layers[2] (r1).inputs[0]"),
    ("cycle", edit(make_cycle), "layers[2] (r1).inputs[0]"),
    ("self_loop", set_key(2, "inputs", ["r1"]), "layers[2] (r1).inputs[0]"),
    ("two_inputs_to_relu", set_key(2, "inputs", ["c1", "x"]), "layers[2] (r1).inputs"),
    ("no_inputs", set_key(2, "inputs", []), "layers[2] (r1).inputs"),
    ("inputs_not_list", set_key(2, "inputs", "c1"), "layers[2] (r1).inputs"),
    ("add_shape_mismatch", edit(add_shape_mismatch), "layers[3] (bad_add).inputs"),
    ("add_one_input", edit(add_one_input), "layers[3] (bad_add).inputs"),
    ("two_outputs", edit(two_outputs), "layers[2] (r1)"),
    ("unreachable_layer", edit(unreachable_layer), "layers[3] (dead)"),
    ("in_shape_key_in_v2", set_key(2, "in_shape", [4, 4, 4]), "layers[2] (r1).in_shape"),
    ("out_shape_wrong", set_key(1, "out_shape", [4, 4, 5]), f"{C}.out_shape"),
    ("huge_input_shape", set_key(0, "out_shape", [65536, 65536, 1]), "layers[0] (x).out_shape"),
    ("huge_table_shape", set_table(5, "codes", "shape", [16, 1 << 25]), f"{FC}.codes.shape"),
    ("table_shape_vs_chain", set_table(5, "codes", "shape", [15, 3]), f"{FC}.codes.shape"),
    ("zero_dim", set_key(0, "out_shape", [6, 0, 2]), "layers[0] (x).out_shape[1]"),
    # --- tables
    ("sha_mismatch", set_table(1, "codes", "sha256", "0" * 64), f"{C}.codes.sha256"),
    ("sha_malformed", set_table(1, "bias", "sha256", "xyz"), f"{C}.bias.sha256"),
    ("table_byte_flipped", lambda d: (d / "c1.scale.npy").write_bytes(
        (d / "c1.scale.npy").read_bytes()[:-1] + b"\x01"), f"{C}.scale.sha256"),
    ("wrong_dtype_stated", set_table(1, "codes", "dtype", "int16"), f"{C}.codes.dtype"),
    ("missing_table_key", edit(lambda d: _rec(d, 1)["codes"].pop("sha256")), f"{C}.codes.sha256"),
    ("table_not_mapping", set_key(1, "scale", "c1.scale.npy"), f"{C}.scale"),
    ("header_shape_differs", table_array(5, "codes", lambda a: a[:, :2].copy()), f"{FC}.codes.shape"),
    ("header_dtype_differs", table_array(5, "codes", lambda a: a.astype(np.int16)), f"{FC}.codes.dtype"),
    ("big_endian_table", table_array(5, "scale", lambda a: a.astype(">i8")), f"{FC}.scale.dtype"),
    ("fortran_order", table_array(1, "codes", lambda a: np.asfortranarray(a)), f"{C}.codes.file"),
    ("pickled_object_array", table_array(5, "codes", lambda a: a.astype(object), allow_pickle=True),
     f"{FC}.codes.dtype"),
    ("codes_outside_k_bits", table_array(1, "codes", lambda a: np.where(a == 0, 5, a).astype(np.int8)),
     f"{C}.codes"),
    ("mantissa_outside_type", table_array(5, "scale", lambda a: a + 10**6), f"{FC}.scale"),
    ("truncated_npy", table_bytes(5, "codes", lambda b: b[:-5]), f"{FC}.codes.file"),
    ("trailing_bytes_npy", table_bytes(5, "codes", lambda b: b + b"\0"), f"{FC}.codes.file"),
    ("empty_npy", lambda d: (d / "fc.codes.npy").write_bytes(b""), f"{FC}.codes.file"),
    ("not_npy", table_bytes(5, "bias", lambda b: b"hello world" * 20), f"{FC}.bias.file"),
    # --- file references
    ("absolute_path", set_table(1, "codes", "file", "/etc/passwd"), f"{C}.codes.file"),
    ("dotdot_path", set_table(1, "codes", "file", "../m/c1.codes.npy"), f"{C}.codes.file"),
    ("hidden_dotdot", set_table(1, "codes", "file", "sub/../../x.npy"), f"{C}.codes.file"),
    ("symlink_outside", symlink_outside, f"{FC}.codes.file"),
    ("missing_file", set_table(1, "bias", "file", "nope.npy"), f"{C}.bias.file"),
    ("path_is_folder", set_table(1, "bias", "file", "."), f"{C}.bias.file"),
    ("backslash_path", set_table(1, "bias", "file", "..\\c1.bias.npy"), f"{C}.bias.file"),
    # --- weight memory image
    ("image_bit_flipped", flip_image_bit, f"{FC}.weights_image.file"),
    ("image_truncated", table_bytes(5, "weights_image", lambda b: b[:-1]), f"{FC}.weights_image.file"),
    ("image_wrong_bytes", set_table(5, "weights_image", "bytes", 7), f"{FC}.weights_image.bytes"),
    ("image_wrong_bits", set_table(5, "weights_image", "bits", 2), f"{FC}.weights_image.bits"),
    ("image_wrong_layout", set_table(5, "weights_image", "layout", "msb-first"), f"{FC}.weights_image.layout"),
    ("image_missing", edit(lambda d: _rec(d, 5).pop("weights_image")), f"{FC}.weights_image"),
    # --- arithmetic checks from ir.Model.check
    ("accumulator_too_narrow", set_key(1, "accum_type", "ap_fixed<9,1>"), f"{C}.accum_type"),
    ("accumulator_wrong_frac", set_key(1, "accum_type", "ap_fixed<20,13>"), f"{C}.accum_type"),
    ("maxpool_changes_type", set_key(3, "out_type", "ap_ufixed<9,3>"), "layers[3] (p1).out_type"),
]


def test_corpus_is_big_and_distinct():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("mutate,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_refused_with_one_line(case_dir, mutate, field):
    mutate(case_dir)
    yaml_path = case_dir / "model.yaml"
    for arg in (case_dir, yaml_path):
        with pytest.raises(FormatError) as info:
            load_model(arg)
        e = info.value
        msg = str(e)
        assert "\n" not in msg and len(msg) < 400, msg
        assert e.file == str(yaml_path) and msg.startswith(str(yaml_path) + ": "), msg
        assert e.field == field, msg
        if field is not None:
            assert f"field '{field}'" in msg
    assert not (case_dir / "pwned").exists() and not Path("pwned").exists()


def test_good_model_loads(good_dir):
    assert load_model(good_dir) == good_model()


def test_missing_folder_and_missing_yaml(tmp_path):
    with pytest.raises(FormatError, match="no such model file"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match=r"model\.yaml: no such model file"):
        load_model(tmp_path / "empty")


# --------------------------------------------------------------------------- the save path

def _listing(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def test_save_invalid_model_writes_nothing(tmp_path):
    m = good_model()
    m.layers[1].accum_type = F("ap_fixed<9,1>")  # can overflow
    with pytest.raises(FormatError) as info:
        save_model(m, tmp_path / "out" / "m")
    assert "accum_type" in str(info.value) and "\n" not in str(info.value)
    assert _listing(tmp_path) == []


def test_save_failing_midway_leaves_nothing(tmp_path, monkeypatch):
    calls = []
    real = model_io._write

    def flaky(path, data):
        calls.append(path)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(model_io, "_write", flaky)
    with pytest.raises(FormatError, match="No space left") as info:
        save_model(good_model(), tmp_path / "new" / "m")
    assert "\n" not in str(info.value)
    assert _listing(tmp_path) == []  # not even the parent folder it created


def test_failed_overwrite_keeps_the_old_folder(tmp_path, monkeypatch):
    out = tmp_path / "m"
    save_model(good_model(), out)
    before = {p: (out / p).read_bytes() for p in os.listdir(out)}

    def broken(path, data):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(model_io, "_write", broken)
    other = good_model()
    other.name = "other"
    with pytest.raises(FormatError):
        save_model(other, out, overwrite=True)
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before
    assert os.listdir(tmp_path) == ["m"]


# --------------------------------------------------------------------------- CLI contract

CLI_CASES = ["python_tag", "sha_mismatch", "dotdot_path", "accumulator_too_narrow"]


@pytest.mark.skipif(not (Path(__file__).parents[1] / "vecq_hw" / "cli.py").exists(), reason="no CLI yet")
@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_check_exits_2_with_one_line(case_dir, name):
    mutate, field = {c[0]: c[1:] for c in CASES}[name]
    mutate(case_dir)
    r = subprocess.run([sys.executable, "-m", "vecq_hw.cli", "check", str(case_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert str(case_dir / "model.yaml") in lines[0]
    if field:
        assert f"field '{field}'" in lines[0]


@pytest.mark.parametrize("mutate,field", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_every_bad_model_fails_sim_and_hls_with_exit_2_and_writes_nothing(case_dir, tmp_path, mutate, field):
    """The whole corpus through the real CLI commands (in-process, for speed)."""
    from click.testing import CliRunner

    from vecq_hw.cli import cli

    mutate(case_dir)
    np.save(tmp_path / "x.npy", np.zeros((2, 4)))
    runner = CliRunner()
    for args, written in (
        (["sim", str(case_dir), "--input", str(tmp_path / "x.npy"), "--output", str(tmp_path / "y.npy")],
         tmp_path / "y.npy"),
        (["hls", str(case_dir), "--out", str(tmp_path / "prj")], tmp_path / "prj"),
    ):
        r = runner.invoke(cli, args)
        assert r.exit_code == 2, (args[0], r.output)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.stderr
        assert str(case_dir / "model.yaml") in lines[0]
        if field:
            assert f"field '{field}'" in lines[0]
        assert not written.exists()


@pytest.mark.skipif(not (Path(__file__).parents[1] / "vecq_hw" / "cli.py").exists(), reason="no CLI yet")
def test_cli_check_accepts_the_good_model(good_dir):
    r = subprocess.run([sys.executable, "-m", "vecq_hw.cli", "check", str(good_dir)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# --------------------------------------------------------------------------- output paths (issue 11: 8, 10, 11)
# Every output-naming option of every command: what we write stays inside the output folder or
# file named; unwritable outputs and bad option values are one line, exit 2, nothing written.

def _cli(*args):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    return CliRunner().invoke(cli, [str(a) for a in args])


def _assert_one_line_exit_2(r, *needles):
    assert r.exit_code == 2, (r.exit_code, r.output)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output and "Usage:" not in r.stderr and "Try " not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.mark.parametrize("name", [
    "../x", "../../x", "a/b", "/tmp/vecq_abs_name", "my project", "1abc", "", "a-b", "ü",
    "abc\n",                                # '$' in a regex lets a trailing newline through
    "int", "class", "and", "main",          # C++ keywords and the testbench's main
    "x", "y",                               # the testbench's own variables (io_parallel)
    "input_t", "config2", "defines", "parameters",  # hls4ml's types, configs and file names
    "_Upper",                               # reserved in C++
])
def test_hls_project_name_must_be_a_free_c_identifier(good_dir, tmp_path, name):
    work = tmp_path / "work"
    work.mkdir()
    r = _cli("hls", good_dir, "--out", work / "prj", "--project-name", name)
    _assert_one_line_exit_2(r, "project_name")
    assert _tree(tmp_path) == {"work"}  # nothing written, inside the output folder or beside it
    assert not Path("/tmp/vecq_abs_name.cpp").exists()


def test_hls_writes_only_inside_its_folder(good_dir, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    r = _cli("hls", good_dir, "--out", work / "prj", "--project-name", "vecq_top")
    assert r.exit_code == 0, r.output
    assert {p.split("/")[0] for p in _tree(work)} == {"prj"}
    prj = work / "prj"
    assert (prj / "firmware" / "vecq_top.cpp").is_file() and (prj / "vecq_top_test.cpp").is_file()
    assert all(prj.resolve() in p.resolve().parents for p in prj.rglob("*"))


def _renamed_layers(good_dir, tmp_path, names=((2, "../../evil"), (3, ".hidden"), (4, "a/b"))) -> Path:
    """The good model with other layer names (default: names that are paths)."""
    d = tmp_path / "m"
    shutil.copytree(good_dir, d)
    doc = _load((d / "model.yaml").read_text())
    for i, name in names:
        _rec(doc, i)["name"] = name
        if i + 1 < len(doc["layers"]):
            _rec(doc, i + 1)["inputs"] = [name]
    (d / "model.yaml").write_text(_dump(doc))
    return d


def test_layer_names_that_are_paths_are_refused_before_anything_is_written(good_dir, tmp_path):
    """Layer names reach file names and the generated C++: since issue 22 a name that is not a
    C identifier ('../../evil') is refused when the model is read, so no command writes it."""
    model_dir = _renamed_layers(good_dir, tmp_path)
    np.save(tmp_path / "x.npy", np.zeros((3, 6, 6, 2)))
    before = _tree(tmp_path)
    for args in (["sim", model_dir, "--input", tmp_path / "x.npy", "--trace", tmp_path / "deep" / "trace"],
                 ["hls", model_dir, "--out", tmp_path / "prj"], ["check", model_dir]):
        _assert_one_line_exit_2(_cli(*args), "layers[2].name", "C identifier")
    assert _tree(tmp_path) == before


def test_sim_trace_file_names_stay_inside_the_trace_folder(good_dir, tmp_path):
    """Names that differ in case only still get one trace file each (case-insensitive file
    systems), and every file lands in the trace folder."""
    from vecq_hw.sim import simulate

    model_dir = _renamed_layers(good_dir, tmp_path, ((2, "R1"), (3, "r1")))
    x = np.random.default_rng(0).random((3, 6, 6, 2)) * 0.99
    np.save(tmp_path / "x.npy", x)
    trace = tmp_path / "deep" / "trace"
    before = _tree(tmp_path)
    r = _cli("sim", model_dir, "--input", tmp_path / "x.npy", "--trace", trace)
    assert r.exit_code == 0, r.output
    new = _tree(tmp_path) - before
    assert new == {"deep", "deep/trace"} | {f"deep/trace/{f}" for f in os.listdir(trace)}
    assert all(p.parent == trace and not p.name.startswith(".") for p in trace.iterdir())
    assert len(os.listdir(trace)) == 6  # one file per layer, none lost to a name clash
    res = simulate(load_model(model_dir), x, trace=True)
    assert np.array_equal(np.load(trace / "R1.npy"), res.trace["R1"])
    assert np.array_equal(np.load(trace / "r1_2.npy"), res.trace["r1"])


def test_safe_file_names_reduce_path_like_names_to_plain_distinct_names():
    from vecq_hw.outputs import safe_file_names
    names = safe_file_names(["../../evil", ".hidden", "a/b", "a_b", "A_B"], ".npy")
    assert names == ["_.._evil.npy", "hidden.npy", "a_b.npy", "a_b_2.npy", "A_B_3.npy"]


@pytest.mark.parametrize("option", ["--output", "--trace"])
def test_sim_unwritable_output_is_one_line(good_dir, tmp_path, option):
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 6, 2)))
    (tmp_path / "afile").write_text("keep")
    target = tmp_path / "afile" / ("y.npy" if option == "--output" else "t")
    r = _cli("sim", good_dir, "--input", tmp_path / "x.npy", option, target)
    _assert_one_line_exit_2(r, "afile", option)
    assert (tmp_path / "afile").read_text() == "keep"
    assert _tree(tmp_path) == {"x.npy", "afile"}


def test_sim_output_into_a_missing_folder_creates_it(good_dir, tmp_path):
    from vecq_hw.sim import simulate

    x = np.random.default_rng(1).random((4, 6, 6, 2))
    np.save(tmp_path / "x.npy", x)
    r = _cli("sim", good_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "new" / "y.npy", "--mantissas")
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(tmp_path / "new" / "y.npy"), simulate(load_model(good_dir), x).output)
    assert _tree(tmp_path) == {"x.npy", "new", "new/y.npy"}  # no temporary file left behind


def test_sim_output_that_is_a_folder_is_one_line(good_dir, tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((2, 6, 6, 2)))
    (tmp_path / "dir").mkdir()
    _assert_one_line_exit_2(_cli("sim", good_dir, "--input", tmp_path / "x.npy", "--output", tmp_path / "dir"),
                            "--output")


@pytest.mark.parametrize("command", ["sim", "hls"])
def test_an_empty_batch_is_one_line(good_dir, tmp_path, command):
    np.save(tmp_path / "x.npy", np.zeros((0, 6, 6, 2)))
    args = (["sim", good_dir, "--input", tmp_path / "x.npy"] if command == "sim" else
            ["hls", good_dir, "--out", tmp_path / "prj", "--test-inputs", tmp_path / "x.npy"])
    _assert_one_line_exit_2(_cli(*args), "no samples", "x.npy")
    assert _tree(tmp_path) == {"x.npy"}


def test_hls_into_an_existing_project_needs_overwrite(good_dir, tmp_path):
    prj = tmp_path / "prj"
    assert _cli("hls", good_dir, "--out", prj).exit_code == 0
    (prj / "my_notes.txt").write_text("mine")
    before = {p: (prj / p).read_bytes() for p in _tree(prj) if (prj / p).is_file()}
    _assert_one_line_exit_2(_cli("hls", good_dir, "--out", prj, "--project-name", "other"), "--overwrite")
    assert {p: (prj / p).read_bytes() for p in _tree(prj) if (prj / p).is_file()} == before
    r = _cli("hls", good_dir, "--out", prj, "--project-name", "other", "--overwrite")
    assert r.exit_code == 0, r.output
    assert (prj / "other_test.cpp").is_file() and not (prj / "my_notes.txt").exists()
    assert _tree(tmp_path) == {"prj"} | {f"prj/{p}" for p in _tree(prj)}  # no temporaries left


@pytest.mark.parametrize("content", [
    {"notes.txt": "a user's folder"},
    {"vecq_project.json": '{"generator": "someone else"}', "data.bin": "x"},
    {"vecq_project.json": "not json"},
])
def test_hls_never_replaces_a_folder_that_is_not_ours(good_dir, tmp_path, content):
    d = tmp_path / "folder"
    d.mkdir()
    for name, text in content.items():
        (d / name).write_text(text)
    _assert_one_line_exit_2(_cli("hls", good_dir, "--out", d, "--overwrite"), "not a vecq_hw HLS project")
    assert {p.name: p.read_text() for p in d.iterdir()} == content
    assert _tree(tmp_path) == {"folder"} | {f"folder/{n}" for n in content}


def test_csim_of_a_folder_that_is_not_a_project_is_bad_input(tmp_path):
    _assert_one_line_exit_2(_cli("csim", tmp_path), "not a vecq_hw HLS project")


@pytest.mark.parametrize("args", [
    ["report", "{tmp}", "--limit", "0"],
    ["report", "{tmp}", "--limit", "-1"],
    ["demo", "--out", "{tmp}/demo", "--csim-images", "0"],
    ["export", "{good}", "--out", "{tmp}/m", "--eval-limit", "-1"],
    ["export", "{good}", "--out", "{tmp}/m", "--scale-bits", "many"],
    ["hls", "{good}", "--out", "{tmp}/p", "--reuse-factor", "0"],
    ["hls", "{good}", "--out", "{tmp}/p", "--clock-period", "0"],
    ["hls", "{good}", "--out", "{tmp}/p", "--backend", "Quartus"],
    ["hls", "{good}", "--out", "{tmp}/p", "--clock-period", "nan"],  # click's FloatRange lets nan/inf through
    ["rtl", "{good}", "--out", "{tmp}/r", "--clock-period", "inf"],
    ["rtl", "{good}", "--out", "{tmp}/r", "--latency-cutoff", "nan"],
    ["rtl", "{good}", "--out", "{tmp}/r", "--latency-cutoff", "-1"],
    ["csim", "{tmp}", "--timeout", "nan"],
    ["csim", "{tmp}", "--opt", "-o/tmp/vecq_escape"],  # a compiler flag is not an optimisation level
    ["sim", "{good}"],                                  # missing --input
    ["sim", "{good}", "--input"],                       # option without its value
    ["sim", "{good}", "--input", "{tmp}/x.npy", "--frobnicate"],
    ["no-such-command"],
])
def test_bad_option_values_are_one_line_without_usage_text(good_dir, tmp_path, args):
    r = _cli(*[a.format(tmp=tmp_path, good=good_dir) for a in args])
    _assert_one_line_exit_2(r)
    assert "--help" in r.stderr  # where to look, in the same line
    assert _tree(tmp_path) == set()


def test_help_still_works():
    r = _cli("hls", "--help")
    assert r.exit_code == 0 and r.stdout.startswith("Usage:") and "--overwrite" in r.stdout
    assert _cli("--help").exit_code == 0


def test_saved_table_names_stay_inside_the_model_folder(good_dir, tmp_path):
    """export/save: table files are named after layers; names that differ in case only get a file each."""
    model = load_model(_renamed_layers(good_dir, tmp_path, ((1, "Conv"), (5, "conv"))))
    before = _tree(tmp_path)
    save_model(model, tmp_path / "out" / "m2")
    assert {p.split("/")[0] for p in _tree(tmp_path) - before} == {"out"}
    assert all(p.parent == tmp_path / "out" / "m2" for p in (tmp_path / "out" / "m2").iterdir())
    assert len({p.name.lower() for p in (tmp_path / "out" / "m2").iterdir()}) == 9  # yaml + 2 x 4 tables
    assert load_model(tmp_path / "out" / "m2") == model


# --------------------------------------------------------------------------- issue 22
# What a hostile new user still got through: each class below has the case the issue named and
# the other members found while fixing it. Everything runs on tiny models, in process.

import contextlib  # noqa: E402
import json  # noqa: E402
import warnings  # noqa: E402

import torch  # noqa: E402
from torch import nn  # noqa: E402

from vecq_hw import names  # noqa: E402
from vecq_hw.errors import ExportError, VecQError  # noqa: E402

ACT_T, OUT_T = "ap_ufixed<8,3,AP_RND,AP_SAT>", "ap_fixed<16,6,AP_RND_CONV,AP_SAT>"


class TinyNet(nn.Module):
    """8 features -> 6 -> 4 classes; a Sequential inside (attribute paths features.0, ...), a
    trailing no-op module (tail) the exporter maps to nothing."""

    def __init__(self, scale: float = 1.0):
        super().__init__()
        from vecq_hw.nn import FixedQuant, VecQLinear
        torch.manual_seed(0)
        self.inq = FixedQuant("ap_ufixed<8,0,AP_RND,AP_SAT>")
        self.features = nn.Sequential(VecQLinear(8, 6), nn.BatchNorm1d(6), nn.ReLU(), FixedQuant(ACT_T))
        self.fc, self.outq, self.tail = VecQLinear(6, 4), FixedQuant(OUT_T), nn.Identity()
        with torch.no_grad():
            for m in (self.features[0], self.fc):
                m.weight.mul_(scale)
        self.eval()

    def forward(self, x):
        return self.tail(self.outq(self.fc(self.features(self.inq(x)))))


@pytest.fixture(autouse=True, scope="module")
def _tiny_models_on_one_thread(one_torch_thread):
    yield


def _export(net, **kw):
    from vecq_hw.export.torch_export import ExportOptions, export
    return export(net, (8,), ExportOptions(**kw))


def test_tiny_net_exports_with_names_a_user_maps_back():
    """Item 10: layers are named after the module's attribute path, as refusals name modules."""
    model = _export(TinyNet()).model
    assert [layer.name for layer in model.layers] == ["input", "features_0", "features_0_relu", "fc"]


def test_layer_names_of_a_sequential_get_their_kind_and_stay_valid_and_unique():
    """Item 10: a Sequential's indices are not identifiers: the kind goes in front (model[1] ->
    conv2d_1); every name passes the validator of item 4 and names are unique."""
    from vecq_hw.models import build_model
    from vecq_hw.export.torch_export import export
    net = build_model("lenet5", conv_channels=[2, 2], hidden=4).eval()
    model = export(net, net.input_shape).model
    got = [layer.name for layer in model.layers]
    assert got[:3] == ["input", "conv2d_1", "conv2d_1_relu"] and "dense_12" in got
    assert all(names.identifier_problem(n) is None for n in got) and len({n.lower() for n in got}) == len(got)


# --- item 1: the end-to-end check compares with model(x); hooks the trace cannot see are refused

def _global_hook():
    return torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: o)


@pytest.mark.parametrize("add, field", [
    (lambda n: n.tail.register_forward_hook(lambda m, i, o: -o), "tail"),
    (lambda n: n.fc.register_forward_pre_hook(lambda m, i: (i[0] * 2,)), "fc"),
    (lambda n: setattr(n.tail, "forward", lambda x: x + 1), "tail"),
    (lambda n: n.register_forward_hook(lambda m, i, o: o), "TinyNet"),
    (lambda n: _global_hook(), "forward"),
])
def test_export_refuses_behaviour_the_trace_cannot_see(add, field):
    net = TinyNet()
    handle = add(net)
    try:
        with pytest.raises(ExportError) as err:
            _export(net)
    finally:
        if handle is not None:
            handle.remove()
    assert err.value.field == field and "\n" not in str(err.value)


def test_end_to_end_check_compares_with_model_x_itself(monkeypatch):
    """With the hook refusal switched off, a hook on the trailing no-op that negates the output is
    still caught: the outputs are compared with model(x), not with the last mapped node."""
    from vecq_hw.export import torch_export
    monkeypatch.setattr(torch_export, "refuse_hidden_calls", lambda model: None)
    net = TinyNet()
    net.tail.register_forward_hook(lambda m, i, o: -o)
    with pytest.raises(ExportError, match="argmax"):
        _export(net)
    net = TinyNet()
    net.tail.register_forward_hook(lambda m, i, o: o + 1e-4)  # off the output type's grid
    with pytest.raises(ExportError, match="not on the output type") as err:
        _export(net)
    assert err.value.field == "forward"


# --- item 2: tolerances bounded by the output range; constants that lose all precision refused

def test_extreme_weights_whose_biases_all_round_to_zero_are_refused_naming_the_layer():
    with pytest.raises(ExportError, match="every bias constant rounds to 0") as err:
        _export(TinyNet(scale=1e30))
    assert err.value.field == "features.0" and "features_0" in str(err.value)


def test_a_tolerance_wider_than_an_eighth_of_the_output_range_is_refused():
    with pytest.raises(ExportError, match="a check that loose proves nothing") as err:
        _export(TinyNet(scale=1e5))
    assert err.value.field in ("features.3", "outq")
    eq = _export(TinyNet()).equivalence  # the default: 1 LSB
    assert max(la.allowed_lsb for la in eq.layers) <= 1


# --- items 5 and 8: tracebacks and numpy warnings become one line naming the right module

def test_corrupt_batchnorm_statistics_are_blamed_on_the_batchnorm_without_a_numpy_warning():
    net = TinyNet()
    with torch.no_grad():
        net.features[1].running_var[2] = -1.0
    with warnings_as_errors():
        with pytest.raises(ExportError, match="running_var") as err:
            _export(net)
    assert err.value.field == "features.1"


@pytest.mark.parametrize("convert", [lambda n: n.double(), lambda n: n.half()])
def test_a_model_not_in_float32_is_one_export_error(convert):
    with pytest.raises(ExportError, match=r"model.float\(\)") as err:
        _export(convert(TinyNet()))
    assert err.value.field == "features.0"


@contextlib.contextmanager
def warnings_as_errors():
    """numpy's RuntimeWarnings (a line printed before 'error:') fail the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        yield


# --- items 3 and 4: one validator for every name, part and clock that reaches generated code

@pytest.mark.parametrize("name", ["int", "float", "input_t", "w2", "b3", "layer2_out", "config2", "relu_config3",
                                  "ap_fixed", "nnet", "__x", "_Upper", "a-b", "1abc", "", "x" * 101, 7])
def test_names_the_generated_code_cannot_take_are_refused(name):
    assert names.identifier_problem(name) is not None
    with pytest.raises(VecQError) as err:
        names.check_identifier(name, "f")
    assert err.value.field == "f" and "\n" not in str(err.value) and len(str(err.value)) < 400


@pytest.mark.parametrize("name", ["x", "input", "conv1", "features_0", "conv2d_1_relu", "_lower", "relu", "fc"])
def test_ordinary_layer_names_pass(name):
    assert names.identifier_problem(name) is None


@pytest.mark.parametrize("name", ["int", "float", "input_t", "w2", "layer2_out"])
def test_cli_check_refuses_an_input_layer_named_like_the_generated_cpp(good_dir, tmp_path, name):
    d = _renamed_layers(good_dir, tmp_path, ((0, name),))
    _assert_one_line_exit_2(_cli("check", d), "layers[0].name", name)


def _degenerate(good_dir, tmp_path, keep_flatten: bool) -> Path:
    d = tmp_path / "m"
    shutil.copytree(good_dir, d)
    doc = _load((d / "model.yaml").read_text())
    x = doc["layers"][0]
    doc["layers"] = [x] + ([{"kind": "flatten", "name": "f", "inputs": ["x"], "out_shape": [72],
                             "out_type": x["out_type"]}] if keep_flatten else [])
    (d / "model.yaml").write_text(_dump(doc))
    return d


@pytest.mark.parametrize("keep_flatten, field", [(False, "layers"), (True, "layers[1] (f)")])
def test_cli_check_refuses_a_model_that_computes_nothing(good_dir, tmp_path, keep_flatten, field):
    _assert_one_line_exit_2(_cli("check", _degenerate(good_dir, tmp_path, keep_flatten)), f"field '{field}'")


INJECTED_PART = "xc7z020[exec touch {tmp}/F]"


@pytest.mark.parametrize("args", [
    ["hls", "{good}", "--out", "{tmp}/p", "--part", INJECTED_PART],
    ["estimate", "{good}", "--part", INJECTED_PART],
    ["fit", "{good}", "--part", INJECTED_PART, "--out", "{tmp}/p"],
    ["rtl", "{good}", "--out", "{tmp}/r", "--part", INJECTED_PART],
    ["synth", "{rtl}", "--part", INJECTED_PART],
    ["hls", "{good}", "--out", "{tmp}/p", "--clock-period", "5e-324"],
    ["estimate", "{good}", "--clock-period", "5e-324"],
    ["fit", "{good}", "--part", "xc7z020", "--clock-period", "5e-324", "--out", "{tmp}/p"],
    ["rtl", "{good}", "--out", "{tmp}/r", "--clock-period", "5e-324"],
    ["estimate", "{good}", "--reuse", "c1=2", "--reuse", "c1=4"],
    ["hls", "{good}", "--out", "{tmp}/p", "--reuse", "fc=²"],
    ["hls", "{good}", "--out", "{tmp}/p", "--project-name", "a" * 300],
])
def test_every_command_refuses_a_bad_part_clock_reuse_or_name_before_any_work(good_dir, tmp_path, args):
    rtl = _fake_rtl_project(tmp_path / "rtlprj")
    before = _tree(tmp_path)
    r = _cli(*[a.format(tmp=tmp_path, good=good_dir, rtl=rtl) for a in args])
    _assert_one_line_exit_2(r)
    assert _tree(tmp_path) == before and not (tmp_path / "F").exists()


def _fake_rtl_project(d: Path, **changes) -> Path:
    """An RTL project folder with a manifest as `vecq-hw rtl` writes it (no HDL: every command
    below must refuse before reading any)."""
    from vecq_hw.rtl.options import DEFAULTS
    m = {"format_version": 1, "model": "good", "top": DEFAULTS.project_name, "options": DEFAULTS.to_dict(),
         "input_type": "ap_ufixed<8,0,AP_RND,AP_SAT>", "input_shape": [6, 6, 2], "output_type": ACT_T,
         "output_shape": [3], "n_inputs": 72, "n_outputs": 3, "stages": 5, "da4ml_cost": 100.0, "reg_bits": 10,
         "adder_bits_estimate": 1000, "trace_seconds": 0.1, "write_seconds": 0.1}
    for k, v in changes.items():
        if k.startswith("options_"):
            m["options"][k[8:]] = v
        else:
            m[k] = v
    d.mkdir(parents=True, exist_ok=True)
    (d / "rtl.json").write_text(json.dumps(m))
    return d


@pytest.mark.parametrize("changes, field", [
    ({"options_part": "xc7z020;touch F"}, "options.part"),
    ({"top": "module", "options_project_name": "module"}, "top"),
    ({"top": "../x"}, "top"),
    ({"input_shape": "6x6"}, "input_shape"),
    ({"options_latency_cutoff": "fast"}, "options.latency_cutoff"),
    ({"da4ml_cost": None}, "da4ml_cost"),
])
def test_rtlsim_and_synth_refuse_a_tampered_rtl_json(tmp_path, changes, field):
    prj = _fake_rtl_project(tmp_path / "prj", **changes)
    for cmd in ("rtlsim", "synth"):
        _assert_one_line_exit_2(_cli(cmd, prj), "rtl.json", f"field '{field}'")
    (prj / "rtl.json").write_text('{"format_version": 1, "top": ')  # truncated
    _assert_one_line_exit_2(_cli("rtlsim", prj), "rtl.json", "unreadable JSON")


@pytest.mark.parametrize("meta", ['{"generator": "vecq_hw.hls", "project": ', '[1, 2]',
                                  '{"generator": "vecq_hw.hls", "project": "../../x"}',
                                  '{"generator": "vecq_hw.hls", "project": "a; rm -rf b"}',
                                  '{"generator": "vecq_hw.hls", "project": "p", "kernel_headers": ["../x.h"]}'])
def test_csim_refuses_a_tampered_project_description_before_compiling(tmp_path, meta):
    (tmp_path / "vecq_project.json").write_text(meta)
    _assert_one_line_exit_2(_cli("csim", tmp_path), "vecq_project.json")
    assert _tree(tmp_path) == {"vecq_project.json"}  # no build folder


def test_hls_refuses_an_input_port_name_the_generated_cpp_declares(good_dir, tmp_path):
    """The input layer's name is the top function's input port: a macro of hls4ml's headers
    (NNET_COMMON_H_ expands to nothing) passed `check` and failed in g++; now exit 2 at hls."""
    d = _renamed_layers(good_dir, tmp_path, ((0, "NNET_COMMON_H_"),))
    assert _cli("check", d).exit_code == 0
    _assert_one_line_exit_2(_cli("hls", d, "--out", tmp_path / "prj"), "NNET_COMMON_H_", "input layer")
    assert not (tmp_path / "prj").exists()


def test_hls_io_stream_refuses_a_flatten_not_followed_by_a_dense(good_dir, tmp_path):
    """In io_stream hls4ml aliases the pixel stream of a flatten that only a dense reads right: a
    ReLU after it C-simulated wrong (exit 3); refused before anything is written."""
    d = tmp_path / "m"
    shutil.copytree(good_dir, d)
    doc = _load((d / "model.yaml").read_text())
    f = doc["layers"][4]
    doc["layers"][5:] = [_relu("r2", ["f"], list(f["out_shape"]), str(f["out_type"]))]
    (d / "model.yaml").write_text(_dump(doc))
    _assert_one_line_exit_2(_cli("hls", d, "--out", tmp_path / "prj", "--io-type", "io_stream"), "'f' (flatten)")
    assert not (tmp_path / "prj").exists()


# --- items 5 and 6: run folders and outputs checked before any work; nothing written on a refusal

TINY_RECIPE = Path(__file__).resolve().parents[1] / "configs" / "tiny_test.yaml"


@pytest.fixture(scope="module")
def untrained_run(tmp_path_factory) -> Path:
    """A run folder as `vecq-hw train` leaves it, with untrained weights (no training needed)."""
    from vecq_hw.train.recipe import build_recipe_model, load_recipe
    rec, _ = load_recipe(TINY_RECIPE)
    d = tmp_path_factory.mktemp("run") / "run"
    d.mkdir()
    torch.save({"recipe": rec, "state_dict": build_recipe_model(rec).state_dict()}, d / "model.pt")
    return d


def _tampered(run: Path, tmp_path: Path, change) -> Path:
    d = tmp_path / "run"
    shutil.copytree(run, d)
    blob = torch.load(d / "model.pt", weights_only=True)
    change(blob["state_dict"]) if callable(change) else blob.__setitem__("state_dict", change)
    torch.save(blob, d / "model.pt")
    return d


@pytest.mark.parametrize("change, needle", [
    (lambda sd: sd.pop("1.weight"), "Missing key"),
    (lambda sd: sd.__setitem__("bogus", torch.zeros(1)), "Unexpected key"),
    (lambda sd: sd.__setitem__("1.weight", torch.zeros(3, 3)), "size mismatch"),
    ([1, 2, 3], "not a state dict"),
])
def test_export_of_a_run_whose_weights_do_not_fit_is_one_line(untrained_run, tmp_path, change, needle):
    d = _tampered(untrained_run, tmp_path, change)
    _assert_one_line_exit_2(_cli("export", d, "--out", tmp_path / "m", "--eval-limit", "0"), "model.pt",
                            "field 'state_dict'", needle)
    assert not (tmp_path / "m").exists()


def test_export_refuses_an_output_folder_it_may_not_replace_before_exporting(untrained_run, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    _assert_one_line_exit_2(_cli("export", untrained_run, "--out", tmp_path / "mine", "--eval-limit", "0"),
                            "already exists")
    assert _tree(tmp_path) == {"mine", "mine/notes.txt"}


@pytest.mark.parametrize("extra", [[], ["--nproc", "2"]])
def test_train_with_a_missing_dataset_is_one_line_and_writes_nothing(tmp_path, extra):
    """Without --nproc the refusal came after recipe.yaml was written; with it, torchrun's report
    of two failed processes (42 lines, exit 1) followed. Now the launcher checks the data first."""
    r = _cli("train", TINY_RECIPE, "--out", tmp_path / "run", "--data", tmp_path / "nodata", *extra)
    _assert_one_line_exit_2(r, "missing dataset file")
    assert _tree(tmp_path) == set()


def test_train_resume_refuses_an_incomplete_checkpoint(untrained_run, tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    torch.save({"version": 2, "recipe": {}}, d / "checkpoint.pt")
    _assert_one_line_exit_2(_cli("train", TINY_RECIPE, "--out", d, "--resume"), "checkpoint.pt",
                            "not a complete checkpoint")


def test_torchrun_report_is_dropped_when_every_process_refused_its_input(tmp_path, capsys):
    """`train --nproc N` exits 2 with rank 0's one line when every failed process exited 2 (bad
    input), as one process would; any other failure keeps torchrun's report and status."""
    from vecq_hw.train import dist
    report = ["W1206 12:07:47.100000 13888 torch/distributed/elastic/multiprocessing/api.py:1028] Sending "
              "process 2 closing signal SIGTERM",
              "E1206 12:07:47.378000 13888 torch/distributed/elastic/multiprocessing/api.py:1002] failed "
              "(exitcode: {code}) local_rank: 0 (pid: 1)", "Traceback (most recent call last):", "Failures:",
              "  exitcode  : -15 (pid: 2)  (SIGTERM)", "Root Cause (first observed failure):",
              "  exitcode  : {code} (pid: 1)"]
    for code, want in ((2, 2), (1, 1)):
        script = tmp_path / "fake_torchrun.py"
        lines = ["error: bad recipe"] + [line.format(code=code) for line in report]
        script.write_text(f"import sys\nsys.stderr.write({chr(10).join(lines) + chr(10)!r})\nsys.exit(1)\n")
        rc = dist._torchrun([sys.executable, str(script)], dict(os.environ))
        err = capsys.readouterr().err
        assert rc == want and err.startswith("error: bad recipe\n")
        assert ("Traceback" in err) == ("SIGTERM" in err) == (code != 2)


def test_synth_refuses_an_unwritable_json_before_yosys(tmp_path):
    prj = _fake_rtl_project(tmp_path / "prj")
    (tmp_path / "afile").write_text("x")
    _assert_one_line_exit_2(_cli("synth", prj, "--json", tmp_path / "afile" / "x.json"), "--json", "afile")
    assert _tree(tmp_path) == {"prj", "prj/rtl.json", "afile"}  # no synth/ folder: yosys never ran


def test_fit_refuses_a_folder_it_may_not_replace_before_the_search(good_dir, tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    _assert_one_line_exit_2(_cli("fit", good_dir, "--part", "xc7z020", "--out", tmp_path / "mine"),
                            "not a vecq_hw HLS project")
    assert _tree(tmp_path) == {"mine", "mine/notes.txt"}


def test_rtlsim_inputs_are_checked_and_blamed_on_the_file(tmp_path):
    from vecq_hw.flow import load_rtl_inputs
    from vecq_hw.rtl import load_project
    prj = load_project(_fake_rtl_project(tmp_path / "prj"))
    np.save(tmp_path / "x.npy", np.full((2, 6, 6, 2), np.nan))
    with pytest.raises(VecQError, match="NaN") as err:
        load_rtl_inputs(prj, tmp_path / "x.npy")
    assert err.value.file == str(tmp_path / "x.npy")


# --- item 7: csim's compiled-header cache: documented, settable, bounded

def _pch(root: Path, name: str, mb: int, age_s: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "vecq_pch.h.gch").write_bytes(b"\0" * (mb << 20))
    t = time.time() - age_s
    os.utime(d, (t, t))
    return d


def test_csim_cache_is_pruned_least_recently_used_first_within_its_bound(tmp_path):
    from vecq_hw.hls import csim_cache
    old, mid, new, recent = (_pch(tmp_path, f"pch-csim-{n}", 1, age) for n, age in
                             (("old", 3000), ("mid", 2000), ("new", 1000), ("recent", 10)))
    (tmp_path / "apt").mkdir()  # not ours to prune
    removed = csim_cache.prune(tmp_path, keep=old, limit=2 << 20)
    assert removed == [mid, new]  # the oldest but kept one stays, as does one used seconds ago
    assert sorted(p.name for p in tmp_path.iterdir()) == ["apt", "pch-csim-old", "pch-csim-recent"]


def test_csim_cache_folder_and_bound_are_settable(tmp_path, monkeypatch):
    from vecq_hw.hls import csim_cache
    monkeypatch.setenv("VECQ_HW_CACHE", str(tmp_path / "env"))
    assert csim_cache.cache_dir() == tmp_path / "env" and csim_cache.cache_dir(tmp_path / "o") == tmp_path / "o"
    monkeypatch.setenv("VECQ_HW_CACHE_MB", "64")
    assert csim_cache.limit_bytes() == 64 << 20
    monkeypatch.setenv("VECQ_HW_CACHE_MB", "lots")
    _assert_one_line_exit_2(_cli("csim", tmp_path, "--cache-dir", tmp_path / "c"), "VECQ_HW_CACHE_MB")
    assert "--cache-dir" in _cli("csim", "--help").stdout


# --- item 8: figures that rounding would hide

@pytest.mark.parametrize("u, text", [(0.0, "0%"), (0.00004, "<0.01%"), (0.004, "0.4%"), (0.0056, "0.56%"),
                                     (0.71, "71%"), (0.9996, "99.96%"), (1.004, "100.40%"), (205.5, "20550%")])
def test_shares_are_never_rounded_to_0_or_100_percent(u, text):
    from vecq_hw.report import _share
    assert _share(u) == text


def test_fit_never_prints_a_needed_resource_as_0_percent(good_dir):
    r = _cli("fit", good_dir, "--part", "xc7z020", "--headroom", "0.00001")
    assert r.exit_code == 1 and "NOTHING FITS" in r.stdout
    needs = r.stdout.split("needs ", 1)[1].split(":", 1)[0]
    assert needs and not re.search(r"\b0%", needs), needs


# --- items 11 and 12: the design each output describes; fit --test-inputs

def test_estimate_and_synth_name_the_design_they_describe(good_dir):
    from vecq_hw.rtl.synth import SynthReport
    est = _cli("estimate", good_dir)
    assert est.exit_code == 0 and "HLS design" in est.stdout and "not the fully unrolled da4ml RTL" in est.stdout
    rep = SynthReport(part="xc7z020", family="xc7", top="t", luts=1, luts_by_size={}, carry=0, carry_cells={},
                      ffs=0, srls=0, dsps=0, brams=0, logic_depth=None, cells={}, seconds=0.0, da4ml_cost=1.0)
    assert "da4ml RTL design: fully unrolled" in rep.table() and "fully unrolled" in rep.to_dict()["design"]


def test_fit_writes_the_test_inputs_it_is_given(good_dir, tmp_path):
    x = np.random.default_rng(3).random((3, 6, 6, 2))
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "bad.npy", np.zeros((3, 5)))
    _assert_one_line_exit_2(_cli("fit", good_dir, "--part", "xc7z020", "--out", tmp_path / "bad_prj",
                                 "--test-inputs", tmp_path / "bad.npy"), "bad.npy")
    assert not (tmp_path / "bad_prj").exists()
    r = _cli("fit", good_dir, "--part", "xc7z020", "--out", tmp_path / "prj", "--test-inputs", tmp_path / "x.npy")
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "prj" / "tb_data" / "vecq_input.dat").read_text().splitlines()
    t = good_model().input.out_type
    assert rows[0] == "3 72" and [int(v) for v in rows[1].split()] == t.from_float(x[0]).reshape(-1).tolist()
