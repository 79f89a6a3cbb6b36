"""`vecq-hw qonnx` and `vecq-hw import-qonnx` (issue 26): the round trip through the CLI computes
what the model computes; a refusal is one line, exit 2, and writes nothing (tests/test_bad_inputs.py
style); an existing output is replaced only with --overwrite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from vecq_hw.ir.examples import random_cnn, random_inputs, random_mlp
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.sim import simulate

from qonnx_bad_graphs import BAD_GRAPHS, mutated
from test_bad_inputs import _assert_one_line_exit_2, _cli


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in root.rglob("*")}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("qcli") / "cnn"
    save_model(random_cnn(2, seed=2), d)
    return d


def test_round_trip_through_the_cli(model_dir, tmp_path):
    r = _cli("qonnx", model_dir, "--out", tmp_path / "m.onnx")
    assert r.exit_code == 0 and "computes every layer exactly" in r.output, r.output
    onnx.checker.check_model(onnx.load(str(tmp_path / "m.onnx")))
    r = _cli("import-qonnx", tmp_path / "m.onnx", "--out", tmp_path / "back")
    assert r.exit_code == 0 and "next: vecq-hw check" in r.output, r.output
    model, back = load_model(model_dir), load_model(tmp_path / "back")
    x = random_inputs(model, 200, seed=3)
    np.testing.assert_array_equal(simulate(back, x_mantissa=x).output, simulate(model, x_mantissa=x).output)
    assert set(_tree(tmp_path)) - {p for p in _tree(tmp_path) if p.startswith("back/")} == {"m.onnx", "back"}


def test_existing_outputs_need_overwrite(model_dir, tmp_path):
    onnx_file, folder = tmp_path / "m.onnx", tmp_path / "back"
    onnx_file.write_bytes(b"mine")
    _assert_one_line_exit_2(_cli("qonnx", model_dir, "--out", onnx_file), "m.onnx", "--overwrite")
    assert onnx_file.read_bytes() == b"mine"
    assert _cli("qonnx", model_dir, "--out", onnx_file, "--overwrite").exit_code == 0
    onnx.checker.check_model(onnx.load(str(onnx_file)))
    save_model(random_mlp(2, seed=6), folder)
    before = _tree(folder)
    _assert_one_line_exit_2(_cli("import-qonnx", onnx_file, "--out", folder), "back", "--overwrite")
    assert _tree(folder) == before
    assert _cli("import-qonnx", onnx_file, "--out", folder, "--overwrite").exit_code == 0
    assert load_model(folder).layers[1].kind == "conv2d"  # replaced: the random CNN, not the MLP
    _assert_one_line_exit_2(_cli("qonnx", model_dir, "--out", folder), "is a directory")


@pytest.mark.parametrize("case", list(BAD_GRAPHS))
def test_bad_graph_is_one_line_exit_2_and_nothing_written(case, tmp_path):
    change, where, why = BAD_GRAPHS[case]
    path = tmp_path / "bad.onnx"
    onnx.save(mutated(random_cnn(2, seed=2), change), str(path))
    _assert_one_line_exit_2(_cli("import-qonnx", path, "--out", tmp_path / "out" / "m"), str(path), where, why)
    assert set(_tree(tmp_path)) == {"bad.onnx"}


def test_malformed_and_missing_files_are_one_line(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x08\x07 this is not a protobuf \xff\xfe")
    _assert_one_line_exit_2(_cli("import-qonnx", junk, "--out", tmp_path / "m"), "junk.onnx", "not an ONNX model")
    _assert_one_line_exit_2(_cli("import-qonnx", tmp_path / "missing.onnx", "--out", tmp_path / "m"),
                            "missing.onnx")
    _assert_one_line_exit_2(_cli("qonnx", tmp_path / "no_model", "--out", tmp_path / "m.onnx"), "no_model")
    assert set(_tree(tmp_path)) == {"junk.onnx"}


def test_a_model_qonnx_cannot_write_is_refused_naming_the_layer(tmp_path):
    save_model(random_mlp(2, seed=6), tmp_path / "wraps")  # fc2 wraps (AP_WRAP): a Quant saturates
    before = _tree(tmp_path)
    _assert_one_line_exit_2(_cli("qonnx", tmp_path / "wraps", "--out", tmp_path / "out" / "w.onnx"),
                            "(fc2).out_type", "AP_WRAP")
    assert _tree(tmp_path) == before
