"""The LUTs-vs-fps plot of ``fit``'s candidates, and the hls4ml Resource-strategy reference.

The plot: written inside the output folder only, a real PNG of the expected size; the candidates
it shows hold the chosen plan, and every one drawn as fitting is within the budget. The hls4ml
reference (benchmarks/hls4ml_reference.py): the multipliers and reuse factors it reports are the
ones hls4ml's own backend computes, checked against independent arithmetic and hls4ml's rule.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from vecq_hw.errors import VecQError
from vecq_hw.hls.estimate import estimate, fit, get_part
from vecq_hw.hls.estimate.plot import write_fit_plot
from vecq_hw.ir.examples import random_cnn, random_mlp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROOT = Path(__file__).resolve().parent.parent


def _key(est):
    return est.io_type, tuple(sorted(est.reuse().items()))


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("part,headroom", [("xc7z020", 0.8), ("xczu3eg", 0.05)])
def test_candidates_hold_the_choice_and_fitting_ones_are_in_budget(part, headroom):
    model = random_cnn(2, seed=3, size=16, channels=(8, 16))
    r = fit(model, part, headroom=headroom)
    assert r.tried and len(r.tried) >= r.candidates
    keys = [_key(e) for e in r.tried]
    assert _key(r.closest) in keys  # the chosen (or closest) plan is among the candidates
    assert {e.io_type for e in r.tried} == {"io_parallel", "io_stream"}  # fit tried both io types
    p = get_part(part)
    for e in r.tried:
        if e.fits(r.headroom):  # drawn as fitting: every resource within part x headroom
            assert all(used <= getattr(p, res) * headroom for res, used in e.totals().items())
        # each candidate is what estimate() says for its plan (nothing kept stale)
        assert estimate(model, e.reuse(), part=part, io_type=e.io_type).totals() == e.totals()
    if r.ok:  # 'throughput': nothing faster than the choice fits
        assert all(e.fps <= r.plan.fps for e in r.tried if e.fits(r.headroom))


def test_candidates_do_not_change_the_choice():
    """fit with io_type=None returns the better of the two single-io searches, unchanged."""
    model = random_mlp(2, seed=4, sizes=(24, 16, 10))
    both = fit(model, "xc7z020")
    single = fit(model, "xc7z020", io_type=both.plan.io_type)
    assert both.plan.reuse() == single.plan.reuse() and both.plan.totals() == single.plan.totals()
    assert {_key(e) for e in single.tried} <= {_key(e) for e in both.tried}


def test_plot_is_a_png_inside_the_output_folder(tmp_path):
    import matplotlib.image as mpimg

    model = random_cnn(2, seed=3, size=16, channels=(8, 16))
    r = fit(model, "xc7z020")
    out = tmp_path / "out"
    path = write_fit_plot(r, out)
    assert path == out / "fit_candidates.png"
    assert _files(tmp_path) == {path}  # nothing else written, nothing outside out/
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    img = mpimg.imread(path)
    assert img.shape[:2] == (480, 750)  # figsize 7.5 x 4.8 in at 100 dpi
    for bad in ("../escape.png", "sub/x.png", "plot.svg"):
        with pytest.raises(VecQError):
            write_fit_plot(r, out, bad)
    assert _files(tmp_path) == {path}


def test_plot_when_nothing_fits(tmp_path):
    model = random_mlp(2, seed=4, sizes=(24, 16, 10))
    r = fit(model, "xc7z020", headroom=0.00001)
    assert not r.ok and _key(r.closest) in [_key(e) for e in r.tried]
    assert not any(e.fits(r.headroom) for e in r.tried)
    assert write_fit_plot(r, tmp_path).read_bytes()[:8] == PNG_SIGNATURE


def test_cli_fit_writes_the_plot_into_the_project(tmp_path):
    from click.testing import CliRunner

    from vecq_hw.cli import cli
    from vecq_hw.ir.io import save_model

    save_model(random_mlp(2, seed=4, sizes=(24, 16, 10)), tmp_path / "m")
    before = _files(tmp_path)
    r = CliRunner().invoke(cli, ["fit", str(tmp_path / "m"), "--part", "xc7z020", "--out", str(tmp_path / "prj")])
    assert r.exit_code == 0, r.output
    png = tmp_path / "prj" / "fit_candidates.png"
    assert f": {png}" in r.output and png.read_bytes()[:8] == PNG_SIGNATURE
    assert all(tmp_path / "prj" in p.parents for p in _files(tmp_path) - before)


def _hls4ml_reference():
    spec = importlib.util.spec_from_file_location("hls4ml_reference", ROOT / "benchmarks" / "hls4ml_reference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.hls4ml_reference


def test_hls4ml_reference_multipliers_and_adjusted_reuse():
    from hls4ml.backends import get_backend

    model = random_mlp(2, seed=4, sizes=(24, 16, 10))
    # fc1: 7 does not divide 24 * 16 = 384, so hls4ml must move it; fc2: 16 is valid (RF = n_in)
    ref = _hls4ml_reference()(model, {"fc1": 7, "fc2": 16})
    got = {lyr["name"]: lyr for lyr in ref["layers"]}
    be = get_backend("Vitis")
    expect_rf = be.get_closest_reuse_factor(be.get_valid_reuse_factors(24, 16), 7)
    assert expect_rf != 7 and got["fc1"]["rf"] == expect_rf and got["fc1"]["adjusted"]
    assert any("ReuseFactor=7" in m and "fc1" in m for m in ref["messages"])
    assert got["fc2"]["rf"] == 16 and not got["fc2"]["adjusted"]
    for name, (n_in, n_out) in {"fc1": (24, 16), "fc2": (16, 10)}.items():
        h = got[name]
        assert (h["n_in"], h["n_out"]) == (n_in, n_out)
        assert h["multipliers"] == n_in * n_out // h["rf"]
        # the odd levels 2c+1 of 2-bit codes are -3..3: 3-bit signed weights
        assert h["weight_bits"] == 3 and h["weight_storage_bits"] == n_in * n_out * 3
    assert got["fc1"]["input_bits"] == model.input.out_type.width
