"""vecq_hw.testing, the user's bit-exact checks (issue 26 item 3): assert_bit_exact's message,
the input generators, check() over the simulator, g++ C simulation and Verilator, a weight bit
flipped in a generated project's C++ table caught and charged to its layer, the skip rules,
and the pytest plugin's fixtures run by pytester on the README's five-line test.

One tiny MLP (12 -> 8 -> 4, two weighted layers) and one project cache for the module: its HLS
project is compiled once and its RTL Verilated once; every test below reuses them.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from vecq_hw.ir.examples import random_mlp
from vecq_hw.ir.io import load_model, save_model
from vecq_hw.sim import simulate
from vecq_hw.testing import (ProjectCache, assert_bit_exact, check, edge_inputs, random_inputs,
                             saturating_inputs)

pytest_plugins = ["pytester"]
README = Path(__file__).resolve().parents[1] / "README.md"


# -- assert_bit_exact --------------------------------------------------------------------------

def test_assert_bit_exact_names_layer_index_values_and_count():
    e = np.arange(24, dtype=np.int64).reshape(2, 3, 4)
    assert_bit_exact(e, e.copy(), layer="fc")
    a = e.copy()
    a[1, 2, 0], a[1, 2, 3] = 99, -5
    with pytest.raises(AssertionError) as exc:
        assert_bit_exact(e, a, layer="conv2", stage="csim", expected_name="simulator", actual_name="C simulation")
    assert str(exc.value) == ("csim: layer 'conv2': 2 of 24 values differ in 1 of 2 samples; first at sample 1, "
                              "index (2, 0): simulator 20, C simulation 99")
    with pytest.raises(AssertionError, match=r"shapes differ: expected \(2, 3, 4\), actual \(2, 12\)"):
        assert_bit_exact(e, e.reshape(2, 12))
    with pytest.raises(AssertionError, match="1 of 3 values differ; first at index 1: expected 0.5, actual 0.5000000001"):
        assert_bit_exact(np.array([0.0, 0.5, 1.0]), np.array([0.0, 0.5000000001, 1.0]))  # no tolerance
    with pytest.raises(AssertionError, match="1 of 1 values differ"):
        assert_bit_exact(np.array([np.nan]), np.array([np.nan]))  # NaN is never equal


# -- input generators ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mlp():
    return random_mlp(2, seed=11, sizes=(12, 8, 4))


def test_edge_inputs_sit_at_the_range_ends(mlp):
    t = mlp.input.out_type
    x = edge_inputs(mlp, n_random=6)
    assert x.shape == (10, 12) and x.dtype == np.int64
    assert np.all((x == t.min_mantissa) | (x == t.max_mantissa))
    rows = {tuple(r) for r in x.tolist()}
    assert (t.min_mantissa,) * 12 in rows and (t.max_mantissa,) * 12 in rows
    assert (t.max_mantissa, t.min_mantissa) * 6 in rows and (t.min_mantissa, t.max_mantissa) * 6 in rows


def test_random_inputs_cover_the_whole_type(mlp):
    t = mlp.input.out_type
    x = random_inputs(mlp, 500, seed=3)
    assert x.min() == t.min_mantissa and x.max() == t.max_mantissa and len(np.unique(x)) == 2 ** t.width


def _saturated(model, x) -> int:
    counts = simulate(model, x_mantissa=x, count_overflow=True).overflow
    return sum(c["saturated"] + c["wrapped"] for c in counts.values())


def test_saturating_inputs_saturate_more_than_random_ones(mlp):
    x = saturating_inputs(mlp, 16)
    per_sample = [_saturated(mlp, s[None]) for s in x]
    assert per_sample == sorted(per_sample, reverse=True) and per_sample[-1] > 0
    assert _saturated(mlp, x) > 2 * _saturated(mlp, random_inputs(mlp, 16))


# -- check(): every stage, once built -------------------------------------------------------------

@pytest.fixture(scope="module")
def built(tmp_path_factory, mlp):
    """The model folder, the shared project cache (HLS project compiled, RTL Verilated) and inputs.
    Under pytest-xdist the cache folder is the session's, shared by the workers (its lock makes one
    build and the others wait): with pytest 9.2, xdist 3.8's xdist_group no longer keeps a group on
    one worker (it renames item._nodeid, which pytest 9 no longer reads)."""
    root = tmp_path_factory.mktemp("vecq_testing")
    save_model(mlp, root / "mynet")
    shared = tmp_path_factory.getbasetemp().parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    cache = ProjectCache(shared / "vecq_testing_cache")
    x = np.concatenate([edge_inputs(mlp), saturating_inputs(mlp, 8), random_inputs(mlp, 100)])
    return root / "mynet", cache, x


@pytest.mark.xdist_group("vecq_testing")
def test_check_runs_every_stage_and_agrees(built):
    model_dir, cache, x = built
    result = check(model_dir, x, cache=cache)
    assert [(s.stage, s.status) for s in result.stages.values()] == [
        ("sim", "reference"), ("csim", "bit-exact"), ("rtlsim", "bit-exact")], result.text()
    assert result.ok and result.n_inputs == len(x)
    np.testing.assert_array_equal(result.outputs, simulate(load_model(model_dir), x_mantissa=x).output)
    # golden outputs a user keeps: the simulator must reproduce them exactly
    golden = result.outputs.copy()
    golden[5, 2] += 1
    with pytest.raises(AssertionError, match=r"^sim: layer 'fc2': 1 of \d+ values differ in 1 of \d+ samples; "
                                             r"first at sample 5, index 2: expected"):
        check(model_dir, x, ["sim"], expected=golden)


@pytest.mark.xdist_group("vecq_testing")
def test_the_c_simulation_hands_over_every_layer_as_the_simulator_computes_it(built):
    """hls.predict on the cached project (HlsOptions(trace=True)): every traced layer's
    C-simulated values, read back as mantissas, equal the simulator's trace."""
    from vecq_hw.hls import predict
    model_dir, cache, x = built
    got = predict(cache.hls(model_dir), x[:20], trace=True)
    ref = simulate(load_model(model_dir), x_mantissa=x[:20], trace=True)
    assert sorted(got.trace) == ["fc1", "fc2", "relu1"]
    for name, values in got.trace.items():
        np.testing.assert_array_equal(values, ref.trace[name].reshape(20, -1), err_msg=name)
    np.testing.assert_array_equal(got.outputs, ref.output.reshape(20, -1))


def _flip_bit(path: Path, k: int | None = None) -> int:
    """Flip the lowest bit of the k-th value (default: the first non-zero one) of a weight table,
    in place; the index flipped."""
    text = path.read_text()
    head, sep, body = text.partition("= {") if path.suffix == ".h" else ("", "", text)
    values = re.findall(r"-?\d+", body.split("}")[0])
    k = k if k is not None else next(i for i, v in enumerate(values) if int(v) != 0)
    values[k] = str(int(values[k]) ^ 1)  # two's complement: stays inside a k-bit code's range
    rest = "}" + body.split("}", 1)[1] if sep else ("\n" if body.endswith("\n") else "")
    path.write_text(head + sep + ", ".join(values) + rest)
    return k


def _copy_of_project(cache, model_dir, tmp_path) -> Path:
    prj = tmp_path / "prj"
    shutil.copytree(cache.hls(model_dir), prj, symlinks=True)  # the build comes along
    return prj


def _table_of(prj: Path, model, layer: str) -> Path:
    """The weight table of ``layer``: the .txt file holding its codes (found by content)."""
    codes = model.layer(layer).codes
    for txt in (prj / "firmware" / "weights").glob("*.txt"):
        v = np.array(re.findall(r"-?\d+", txt.read_text()), dtype=np.int64)
        if v.size == codes.size and np.array_equal(np.sort(v), np.sort(codes.ravel())):
            return txt
    raise AssertionError(f"no weight table holds the codes of {layer}")


@pytest.mark.xdist_group("vecq_testing")
def test_a_flipped_weight_bit_fails_naming_its_layer(built, tmp_path):
    """One bit of one code of the first layer, flipped in both copies hls4ml writes (the .txt the
    C simulation loads and the .h initialiser synthesis compiles; the project is compiled again):
    check fails in csim naming that layer as the first that differs, not the output layer where
    the difference also shows."""
    model_dir, cache, x = built
    layer = "fc1"
    prj = _copy_of_project(cache, model_dir, tmp_path)
    txt = _table_of(prj, load_model(model_dir), layer)
    k = _flip_bit(txt)
    assert _flip_bit(txt.with_suffix(".h"), k) == k
    with pytest.raises(AssertionError) as exc:
        check(model_dir, x, ["csim"], hls_project=prj, cache=cache)
    msg = str(exc.value)
    assert msg.startswith(f"csim: layer '{layer}' (the first layer that differs, "), msg
    assert "; output layer 'fc2': " in msg and "\n" not in msg
    assert re.search(r"first at sample \d+, index \d+: simulator -?\d+, C simulation -?\d+", msg), msg


@pytest.mark.xdist_group("vecq_testing")
def test_a_synthesised_table_that_differs_from_the_simulated_one_fails(built, tmp_path):
    """Only the .h initialiser changed: the C simulation (which loads the .txt) still agrees, but
    synthesis would build other weights; check says which layer, file and index."""
    model_dir, cache, x = built
    prj = _copy_of_project(cache, model_dir, tmp_path)
    txt = _table_of(prj, load_model(model_dir), "fc2")
    k = _flip_bit(txt.with_suffix(".h"))
    with pytest.raises(AssertionError, match=rf"^csim: layer 'fc2': firmware/weights/{txt.stem}\.h \(synthesis\) "
                                             rf"differs from {txt.name} \(C simulation\) at index {k} of "):
        check(model_dir, x, ["csim"], hls_project=prj, cache=cache)


@pytest.mark.xdist_group("vecq_testing")
def test_only_a_stage_whose_tool_is_missing_is_skipped(built, tmp_path, monkeypatch):
    model_dir, cache, x = built
    gxx = tmp_path / "bin"
    gxx.mkdir()
    os.symlink(shutil.which("g++"), gxx / "g++")
    monkeypatch.setenv("PATH", str(gxx))  # g++ but no verilator
    with pytest.raises(pytest.skip.Exception, match=r"rtlsim skipped: verilator not found on PATH .*\(sim, csim passed\)"):
        check(model_dir, x, cache=cache)  # inside a pytest test: a skip, after the other stages passed
    result = check(model_dir, x, cache=cache, on_missing="report")
    assert [(s.stage, s.status) for s in result.stages.values()] == [
        ("sim", "reference"), ("csim", "bit-exact"), ("rtlsim", "skipped")] and not result.ok
    with pytest.raises(AssertionError, match="rtlsim skipped: verilator not found"):
        check(model_dir, x, cache=cache, on_missing="fail")
    prj = _copy_of_project(cache, model_dir, tmp_path)
    _flip_bit(_table_of(prj, load_model(model_dir), "fc2"))
    with pytest.raises(AssertionError, match="^csim: layer 'fc2'"):  # a mismatch is never hidden by a skip
        check(model_dir, x, hls_project=prj, cache=cache)


# -- the pytest plugin, as a user runs it -------------------------------------------------------

def readme_user_test() -> str:
    """The five-line user test of the README's "Bit-exact checks in your own CI"."""
    block = re.search(r"```python\n(from vecq_hw\.testing import[^`]*?def test_[^`]*?)```", README.read_text())
    assert block, "README: no five-line user test"
    return block.group(1)


@pytest.mark.xdist_group("vecq_testing")
def test_plugin_fixtures_run_the_readme_test_on_cached_projects(built, pytester):
    model_dir, cache, _ = built
    user_test = readme_user_test()
    assert len(user_test.strip().splitlines()) == 5
    hls, rtl = cache.hls(model_dir), cache.rtl(model_dir)  # built once, by this module
    stamps = {p: p.with_name(p.name + ".ready").stat().st_mtime_ns for p in (hls, rtl)}
    shutil.copytree(model_dir, pytester.path / "mynet")
    pytester.makeconftest('pytest_plugins = ["vecq_hw.testing.plugin"]\n')
    pytester.makepyfile(test_user=user_test, test_fixtures=f'''
        from pathlib import Path

        def test_one_project_per_model(vecq_hls_project, vecq_rtl_project):
            assert vecq_hls_project("mynet") == vecq_hls_project("mynet") == Path({str(hls)!r})
            assert vecq_rtl_project("mynet") == Path({str(rtl)!r})

        def test_a_flipped_bit_fails_the_user_test(vecq_hls_project, vecq_check):
            import re, shutil
            from vecq_hw.testing import edge_inputs
            prj = shutil.copytree(vecq_hls_project("mynet"), "prj")
            table = next(Path(prj, "firmware", "weights").glob("w2.txt"))
            table.write_text(re.sub(r"-?\\d+", lambda m: str(int(m.group()) ^ 1), table.read_text(), count=1))
            vecq_check("mynet", edge_inputs("mynet"), hls_project=prj)
    ''')
    result = pytester.runpytest("-p", "no:cacheprovider", f"--vecq-cache={cache.root}", "-q")
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*AssertionError: csim: layer 'fc1': firmware/weights/w2.h (synthesis) differs*"])
    # the projects this module built were reused, not written or compiled again
    assert {p: p.with_name(p.name + ".ready").stat().st_mtime_ns for p in (hls, rtl)} == stamps
    assert sorted(p.name for p in cache.root.iterdir() if not p.name.endswith(".ready")) == sorted([hls.name, rtl.name])
