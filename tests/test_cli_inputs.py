"""Inputs of `vecq-hw sim`: read block by block (issue 11 item 15), their conversion to the input
type counted and warned about (item 16), and the exit-status contract of the CLI (issue 10 item 5).

The model is the small CNN of the bad-input corpus (input type ap_ufixed<8,0,AP_RND,AP_SAT>):
no training, no compiler.
"""

from __future__ import annotations

import importlib
import tracemalloc

import numpy as np
import pytest
from click.testing import CliRunner

from test_bad_inputs import good_model
from vecq_hw import batch, flow
from vecq_hw.cli import cli
from vecq_hw.errors import ToolError, VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.sim import simulate


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("m") / "model"
    save_model(good_model(), d)
    return d


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _input_row(stdout: str) -> list[int]:
    row = next(line for line in stdout.splitlines() if "(input)" in line)
    return [int(v.replace(",", "")) for v in row.split()[-3:]]


# --------------------------------------------------------------------------- item 16: input saturation

def test_raw_pixels_are_counted_and_warned_about(model_dir, tmp_path):
    rng = np.random.default_rng(3)
    raw = rng.integers(0, 256, (50, 6, 6, 2)).astype(np.float64)  # 0..255, the model expects x/256
    np.save(tmp_path / "raw.npy", raw)
    r = _cli("sim", model_dir, "--input", tmp_path / "raw.npy")
    assert r.exit_code == 0, r.output
    # ap_ufixed<8,0>: every pixel value >= 1 lies above the largest value 255/256
    expected = int(np.count_nonzero(raw >= 1))
    assert _input_row(r.stdout) == [raw.size, expected, 0]
    warning = r.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: ") and "ap_ufixed<8,0" in warning[0]
    assert f"{expected:,} of {raw.size:,}" in warning[0]


def test_scaled_inputs_give_no_warning(model_dir, tmp_path):
    x = np.random.default_rng(4).integers(0, 256, (50, 6, 6, 2)) / 256.0
    np.save(tmp_path / "x.npy", x)
    r = _cli("sim", model_dir, "--input", tmp_path / "x.npy")
    assert r.exit_code == 0 and r.stderr == ""
    assert _input_row(r.stdout) == [x.size, 0, 0]


def test_input_overflow_count_at_the_rounding_boundaries():
    """AP_RND rounds half up: 255.5/256 becomes 256/256 (saturates), -0.5/256 becomes 0 (fits)."""
    model = good_model()
    lsb = 1 / 256
    fits = [0.0, 255 * lsb, 255.49 * lsb, -0.5 * lsb, 0.3]
    clips = [255.5 * lsb, 1.0, 300.0, -0.51 * lsb, -1.0, -1e300, 1e300]
    x = np.zeros((len(fits) + len(clips), 6, 6, 2))
    x[:, 0, 0, 0] = fits + clips
    c = flow.count_input_overflow(model, x)
    assert c == {"saturated": len(clips), "wrapped": 0, "total": x.size}
    # the simulator agrees on what those values become: the type's extremes exactly
    t = model.input.out_type
    m = t.from_float(x[:, 0, 0, 0])
    assert list(m[len(fits):]) == [255, 255, 255, 0, 0, 0, 255]


def test_wrapping_input_types_count_as_wrapped():
    model = good_model()
    model.input.out_type = FixedType.parse("ap_fixed<8,1,AP_TRN,AP_WRAP>")
    x = np.zeros((2, 6, 6, 2))
    x[0, 0, 0, 0], x[1, 0, 0, 0] = 1.0, -1.0  # 1.0 wraps; -1.0 is the minimum
    assert flow.count_input_overflow(model, x) == {"saturated": 0, "wrapped": 1, "total": x.size}


# --------------------------------------------------------------------------- item 15: bounded memory

def test_sim_reads_the_input_in_blocks_with_bounded_memory(model_dir, tmp_path, monkeypatch):
    """An input file of 2.4 MB, read 8 kB at a time: the peak of Python-tracked memory stays far
    below the input's size (it was 2x the input: np.load plus a float64 copy), and the outputs
    are exactly the one-call simulation's."""
    x = np.random.default_rng(5).integers(0, 256, (4000, 6, 6, 2)) / 256.0
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setattr(batch, "BLOCK_BYTES", 8192)
    assert batch.NpyBatch(tmp_path / "x.npy", what="inputs").block_size() == 14
    # one small run first: lazily imported modules (threadpoolctl's library scan, ...) allocate
    # on first use, which is not memory the reading holds (which test runs first varies with xdist)
    np.save(tmp_path / "warm.npy", x[:2])
    flow.simulate_files(model_dir, tmp_path / "warm.npy", tmp_path / "warm_y.npy", mantissas=True)
    tracemalloc.start()
    try:
        flow.simulate_files(model_dir, tmp_path / "x.npy", tmp_path / "y.npy", mantissas=True)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 4, (peak, x.nbytes)
    assert np.array_equal(np.load(tmp_path / "y.npy"), simulate(load_model(model_dir), x).output)


@pytest.mark.parametrize("dtype", ["float32", ">f8", "uint8", "int16"])
def test_block_reader_returns_the_array(tmp_path, dtype, monkeypatch):
    a = (np.arange(7 * 5 * 3) % 200).reshape(7, 5, 3).astype(dtype)
    np.save(tmp_path / "a.npy", a)
    monkeypatch.setattr(batch, "BLOCK_BYTES", 1)  # one sample a block
    b = batch.NpyBatch(tmp_path / "a.npy", what="a", expect_shape=(5, 3))
    got = list(b.blocks())
    assert len(got) == 7 and all(len(blk) == 1 for _, blk in got)
    assert np.array_equal(b.read(), a) and b.read().dtype == a.dtype


@pytest.mark.parametrize("mutate,needle", [
    (lambda p: p.write_bytes(p.read_bytes()[:-4]), "header promises"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\0"), "header promises"),
    (lambda p: np.save(p, np.array([[1.0, np.nan]])), "NaN"),
    (lambda p: np.save(p, np.array([["a", "b"]])), "numeric"),
    (lambda p: p.write_bytes(b"hello"), "not a readable .npy"),
])
def test_block_reader_refuses_bad_files(tmp_path, mutate, needle):
    p = tmp_path / "a.npy"
    np.save(p, np.ones((3, 2)))
    mutate(p)
    with pytest.raises(VecQError, match=needle) as info:
        batch.NpyBatch(p, what="inputs").read()
    assert str(p) in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------- exit statuses

def test_tool_failures_exit_3_bad_input_exits_2(model_dir, tmp_path, monkeypatch):
    """A ToolError (compiler, simulator mismatch) is exit 3 with one line; VecQError stays 2."""
    csim_mod = importlib.import_module("vecq_hw.hls.csim")

    def broken(*a, **k):
        raise ToolError("g++ exited 1:\nfirmware/x.cpp:3: error: expected ';'")

    monkeypatch.setattr(csim_mod, "csim", broken)
    r = _cli("csim", tmp_path)
    assert r.exit_code == 3 and r.stderr.strip().splitlines() == [
        "error: g++ exited 1: firmware/x.cpp:3: error: expected ';'"]

    def bad(*a, **k):
        raise VecQError("no", file="f.yaml", field="k")

    monkeypatch.setattr(csim_mod, "csim", bad)
    r = _cli("csim", tmp_path)
    assert r.exit_code == 2 and r.stderr.strip() == "error: f.yaml: field 'k': no"


def test_csim_errors_are_tool_errors():
    from vecq_hw.hls import CsimError

    e = CsimError("link failed", log="the log")
    assert isinstance(e, ToolError) and not isinstance(e, VecQError) and e.log == "the log"


def test_object_reprs_never_reach_the_user(model_dir, tmp_path, monkeypatch):
    import ast

    csim_mod = importlib.import_module("vecq_hw.hls.csim")

    def leaky(*a, **k):
        raise VecQError(f"unsupported checkpoint version {ast.BoolOp()!r}")

    monkeypatch.setattr(csim_mod, "csim", leaky)
    r = _cli("csim", tmp_path)
    assert r.exit_code == 2 and " at 0x" not in r.stderr and "ast.BoolOp" in r.stderr
