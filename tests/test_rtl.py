"""The RTL back end: da4ml tracing, Verilator bit-exactness, yosys counts.

Three independent executions of one model must agree exactly on every output of >= 2,000
inputs: the numpy simulator (the reference), da4ml's interpreter on the traced graph, and the
Verilated RTL. Verilator builds are slow, so each design is written and built once per module
(``xdist_group`` keeps these tests on one worker) and reused.
"""

from __future__ import annotations

import json
import math
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from vecq_hw import ir, rtl
from vecq_hw.cli import cli
from vecq_hw.errors import VecQError
from vecq_hw.fixed import FixedType
from vecq_hw.flow import simulate_rtl
from vecq_hw.ir.examples import random_cnn, random_inputs, random_mlp, random_mobilenet_block, random_resnet
from vecq_hw.ir.io import save_model
from vecq_hw.rtl.requant import RtlUnsupported, requantize
from vecq_hw.sim import simulate

pytestmark = pytest.mark.xdist_group("rtl")

N_INPUTS = 2000


# -- model builders ---------------------------------------------------------------------------

def _weighted(cls, name, rng, in_type, codes, bits, out_type, *, encoding="odd", spread=2.0, **kw):
    """A layer whose y = acc*s + b spans ``spread`` x the output range (so rounding AND
    overflow both happen) with scale/bias fractional bits below the output's (so there is
    something to round)."""
    d = ir.multipliers(codes, encoding)
    acc = ir.accumulator_type(in_type, d)
    fan = int(np.prod(codes.shape[:-1]))
    x_rms = max(abs(in_type.max_value), abs(in_type.min_value)) / 2
    acc_rms = math.sqrt(fan) * float(np.sqrt(np.mean(d.astype(np.float64) ** 2)) or 1.0) * x_rms
    target = spread * max(abs(out_type.max_value), abs(out_type.min_value)) / acc_rms
    scale_type = FixedType(width=12, integer=math.ceil(math.log2(target)) + 1, signed=False)
    n_out = codes.shape[-1]
    scale = np.clip(np.round(rng.uniform(0.5, 1.0, n_out) * target * 2.0 ** scale_type.frac), 1,
                    scale_type.max_mantissa).astype(np.int64)
    bias_type = FixedType(width=12, integer=max(out_type.integer, 1), signed=True)
    bias = rng.integers(bias_type.min_mantissa // 4, bias_type.max_mantissa // 4 + 1, n_out).astype(np.int64)
    return cls(name=name, out_type=out_type, bits=bits, encoding=encoding, codes=codes.astype(np.int8),
               scale=scale, scale_type=scale_type, bias=bias, bias_type=bias_type, accum_type=acc, **kw)


def _codes(rng, shape, bits):
    lo, hi = ir.code_range(bits)
    return rng.integers(lo, hi + 1, size=shape).astype(np.int8)


def modes_model(seed=7) -> ir.Model:
    """A small CNN (6x6 input) holding every rounding mode and every supported overflow mode,
    and every layer kind: conv, ReLU, max pooling, depthwise conv, add (a residual whose inputs
    sit on different grids), average pooling, global average pooling, dense; 1-, 2-, 3-bit
    codes, odd and int encodings."""
    rng = np.random.default_rng(seed)
    t_in = FixedType(8, 2, True)
    layers = [ir.Input(name="input_1", out_type=t_in, shape=(6, 6, 1))]
    t1 = FixedType(7, 3, True, "AP_RND_CONV", "AP_SAT_ZERO")
    layers.append(_weighted(ir.Conv2D, "conv1", rng, t_in, _codes(rng, (3, 3, 1, 3), 2), 2, t1,
                            padding=(1, 1, 1, 1)))
    r1 = FixedType(6, 2, False)
    layers += [ir.ReLU(name="relu1", out_type=r1), ir.MaxPool2D(name="pool1", out_type=r1)]
    t_dw = FixedType(7, 3, True, "AP_TRN_ZERO", "AP_SAT_SYM")
    layers.append(_weighted(ir.DepthwiseConv2D, "dw", rng, r1, _codes(rng, (3, 3, 3), 3), 3, t_dw,
                            padding=(1, 1, 1, 1)))
    r_dw = FixedType(7, 2, False)
    layers.append(ir.ReLU(name="dw_relu", out_type=r_dw))
    # pool1 (frac 4) + dw_relu (frac 5): the add aligns the grids, then requantises once
    layers.append(ir.Add(name="add", out_type=FixedType(6, 2, True, "AP_RND_INF", "AP_SAT"),
                         inputs=("dw_relu", "pool1")))
    t2 = FixedType(8, 3, True, "AP_TRN", "AP_SAT")
    layers.append(_weighted(ir.Conv2D, "conv2", rng, layers[-1].out_type, _codes(rng, (3, 3, 3, 4), 2), 2,
                            t2, padding=(1, 1, 1, 1)))
    r2 = FixedType(7, 2, False)
    p2 = FixedType(9, 2, False)
    layers += [ir.ReLU(name="relu2", out_type=r2), ir.AvgPool2D(name="pool2", out_type=p2, stride=(1, 1))]
    mult, mult_type = ir.GlobalAvgPool2D.constant(4, 6)
    layers.append(ir.GlobalAvgPool2D(name="gap", out_type=FixedType(5, 1, False, "AP_RND_MIN_INF", "AP_WRAP"),
                                     mult=mult, mult_type=mult_type))
    chain = [(FixedType(6, 2, False, "AP_RND_ZERO", "AP_WRAP"), 2, "int"),
             (FixedType(6, 2, True, "AP_RND_INF", "AP_SAT_SYM"), 1, "odd"),
             (FixedType(6, 3, False, "AP_TRN_ZERO", "AP_SAT"), 3, "odd"),
             (FixedType(8, 4, True, "AP_RND_MIN_INF", "AP_WRAP"), 2, "odd"),
             (FixedType(7, 3, True, "AP_RND", "AP_SAT"), 2, "int"),
             (FixedType(9, 4, True, "AP_RND_CONV", "AP_SAT_ZERO"), 2, "odd")]
    t, n = layers[-1].out_type, 4
    for i, (out, bits, enc) in enumerate(chain):
        n_out = 4 if i == len(chain) - 1 else 6
        layers.append(_weighted(ir.Dense, f"fc{i + 1}", rng, t, _codes(rng, (n, n_out), bits), bits, out,
                                encoding=enc))
        t, n = out, n_out
    return ir.Model(name="modes", layers=layers).check()


def _random_inputs(model, n, seed):
    t = model.input.out_type
    rng = np.random.default_rng(seed)
    return rng.integers(t.min_mantissa, t.max_mantissa + 1, size=(n,) + tuple(model.input.shape))


# -- the exact requantisation, without Verilator --------------------------------------------------

SOURCES = [FixedType(7, 3, True), FixedType(6, 2, False), FixedType(5, 5, True), FixedType(8, 1, True)]
TARGETS = [(4, 2, True), (3, 1, False), (10, 9, False), (3, 3, True), (12, 4, True), (4, -1, True),
           (2, 5, False)]


@pytest.mark.parametrize("source", SOURCES, ids=str)
def test_requantize_matches_ap_types_on_every_mantissa(source):
    """Every rounding x supported overflow mode, into wider/narrower, signed/unsigned targets
    (negative and beyond-width integer bits too): da4ml's interpreter on the composed graph
    equals FixedType.quantize_mantissa (the ap_types-tested reference) on every input."""
    from da4ml.trace import FixedVariableArrayInput, HWConfig, comb_trace

    from vecq_hw.fixed import ROUNDING_MODES
    from vecq_hw.rtl.requant import SUPPORTED_OVERFLOW

    ms = np.arange(source.min_mantissa, source.max_mantissa + 1)
    xs = np.ldexp(ms.astype(np.float64), -source.frac).reshape(-1, 1)
    inp = FixedVariableArrayInput((1,), hwconf=HWConfig(1, -1, -1))
    x = inp.quantize(int(source.signed), source.integer - int(source.signed), source.frac)._vars[0]
    outs, expected = [], []
    for w, i, s in TARGETS:
        for rnd in ROUNDING_MODES:
            for ov in SUPPORTED_OVERFLOW:
                t = FixedType(w, i, s, rnd, ov)
                outs.append(requantize(x, source.frac, t, "test"))
                expected.append(np.ldexp(t.quantize_mantissa(ms, source.frac).astype(np.float64), -t.frac))
    got = comb_trace(inp, outs).predict(xs, n_threads=1)
    exp = np.stack(expected, axis=1)
    bad = np.argwhere(got != exp)
    assert bad.size == 0, f"{len(bad)} mismatches, first at (input, case) {bad[0]}"


def test_deep_model_interpreter_matches_simulator():
    """Seven requantising layers: da4ml's signal scale factors drift far past 2**32 (its
    constant grid limit) and its Decimals past 28 digits; the composition must stay exact."""
    model = modes_model()
    tr = rtl.trace_model(model)
    assert max(abs(s) for s in tr.comb.out_shifts) > 32  # the drift this test is about
    x = _random_inputs(model, N_INPUTS, seed=4)
    vals = np.ldexp(x.reshape(N_INPUTS, -1).astype(np.float64), -model.input.out_type.frac)
    got = np.ldexp(tr.comb.predict(vals, n_threads=1), model.output_type.frac)
    np.testing.assert_array_equal(got, simulate(model, x_mantissa=x).output)


@pytest.mark.parametrize("make", [lambda: random_resnet(2, seed=1, size=4, channels=(3, 4), n_out=4),
                                  lambda: random_mobilenet_block(3, seed=2, size=4, channels=4, n_out=4)],
                         ids=["resnet_add_gap", "depthwise_add_gap"])
def test_graph_kinds_interpreter_matches_simulator(make):
    """Add (inputs on different grids), DepthwiseConv2D, GlobalAvgPool2D and strided 1x1
    projections, through model.nodes(): da4ml's interpreter equals the simulator."""
    model = make()
    tr = rtl.trace_model(model)
    x = random_inputs(model, N_INPUTS, seed=6)
    vals = np.ldexp(x.reshape(N_INPUTS, -1).astype(np.float64), -model.input.out_type.frac)
    got = np.ldexp(tr.comb.predict(vals, n_threads=1), model.output_type.frac)
    np.testing.assert_array_equal(got, simulate(model, x_mantissa=x).output)


def test_unsupported_modes_are_refused_with_the_layer_name():
    """AP_WRAP with saturation bits (which Model.check accepts) is refused by the RTL path,
    in one line naming the layer and the mode; AP_WRAP_SM too, at the requantisation."""
    from da4ml.trace import FixedVariable

    m = random_mlp(2, sizes=(8, 4, 3), seed=0)
    m.layers[-1].out_type = FixedType.parse("ap_fixed<8,3,AP_TRN,AP_WRAP,2>")
    with pytest.raises(RtlUnsupported, match=r"layer 'fc2': AP_WRAP with 2 saturation bits") as exc:
        rtl.trace_model(m)
    assert "\n" not in str(exc.value)
    v = FixedVariable(-4, 4, 0.25)
    with pytest.raises(RtlUnsupported, match=r"layer 'x'.*AP_WRAP_SM"):
        requantize(v, 2, FixedType.parse("ap_fixed<6,3,AP_RND,AP_WRAP_SM>"), "layer 'x'")


def test_size_budget_refuses_with_the_estimate():
    m = random_cnn(2, seed=0, size=8)
    est = rtl.estimate_adder_bits(m)
    with pytest.raises(RtlUnsupported, match=rf"estimated {est:,} adder bits, above the budget of 1,000"):
        rtl.trace_model(m, rtl.RtlOptions(max_adder_bits=1000))


def test_write_layout_vhdl_and_refusals(tmp_path):
    model = random_mlp(2, sizes=(6, 4, 3), seed=3)
    prj = rtl.write(model, tmp_path / "v", rtl.RtlOptions(flavor="vhdl", latency_cutoff=2))
    for f in ("rtl.json", "comb.json", "model/model.yaml", "hdl/build_vivado_prj.tcl", "hdl/build_quartus_prj.tcl",
              "hdl/src/vecq_rtl.vhd", "hdl/src/vecq_rtl.xdc"):
        assert (prj.path / f).is_file(), f
    assert prj.model() == model and prj.manifest["stages"] >= 1
    assert "clock cycles" in prj.summary() and "not a timing result" in prj.summary()
    with pytest.raises(VecQError, match="needs the Verilog flavor"):
        rtl.build(prj)
    with pytest.raises(VecQError, match="use --overwrite"):
        rtl.write(model, prj.path)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "keep.txt").write_text("x")
    with pytest.raises(VecQError, match="not an RTL project folder"):
        rtl.write(model, tmp_path / "other", overwrite=True)
    assert (tmp_path / "other" / "keep.txt").read_text() == "x"
    again = rtl.write(model, prj.path, overwrite=True)
    assert again.options.flavor == "verilog" and (again.hdl / "src" / "vecq_rtl.v").is_file()
    assert not list(tmp_path.glob(".v.*"))  # no temporary or old folders left behind


def test_estimate_grows_with_bits_and_frame():
    small, big = random_mlp(1, sizes=(16, 8, 5), seed=1), random_mlp(4, sizes=(16, 8, 5), seed=1)
    assert rtl.estimate_adder_bits(small) < rtl.estimate_adder_bits(big)
    assert rtl.estimate_adder_bits(random_cnn(2, seed=0, size=8)) < rtl.estimate_adder_bits(
        random_cnn(2, seed=0, size=12))


# -- three executions agree, through Verilator ----------------------------------------------------

@pytest.fixture(scope="module")
def modes_project(tmp_path_factory):
    model = modes_model()
    # the modes are exercised: every weighted layer rounds and overflows on these inputs
    x = _random_inputs(model, N_INPUTS, seed=3)
    counts = simulate(model, x_mantissa=x, count_overflow=True).overflow
    for name, c in counts.items():
        assert 0 < c["saturated"] + c["wrapped"] < c["total"], (name, c)
    return rtl.write(model, tmp_path_factory.mktemp("rtl") / "modes", rtl.RtlOptions(latency_cutoff=3)), x


@pytest.mark.slow
def test_cnn_with_every_mode_bit_exact_in_rtl(modes_project):
    prj, x = modes_project
    result = simulate_rtl(prj, x)
    assert result.n == N_INPUTS and result.n_values == N_INPUTS * 4
    assert result.ok, result.summary()
    assert prj.manifest["stages"] > 1  # a pipelined design, clocked by the harness


@pytest.mark.slow
def test_mlp_16_64_32_32_5_bit_exact_combinational(tmp_path):
    """The issue's MLP at k = 2 (k = 1 and 4 run in benchmarks/hardware.py: each Verilator
    build costs ~25 s of CPU), as one combinational block (no clock)."""
    model = random_mlp(2, sizes=(16, 64, 32, 32, 5), seed=2)
    prj = rtl.write(model, tmp_path / "mlp", rtl.RtlOptions(latency_cutoff=0))
    assert prj.manifest["stages"] == 0
    result = simulate_rtl(prj, n=N_INPUTS)
    assert result.n_values == N_INPUTS * 5
    assert result.ok, result.summary()


_CONST = re.compile(r"(shift_adder #\([^)]*\) op_\d+ \(v\d+\[\d+:0\], )(\d+)'b([01]+)")


@pytest.mark.slow
def test_corrupted_verilog_constant_is_caught(modes_project, tmp_path):
    """Flip one bit of one constant in the Verilog: rtlsim must see mismatches (and the
    interpreter, which never reads the Verilog, must not)."""
    prj, x = modes_project
    bad_dir = tmp_path / "bad"
    shutil.copytree(prj.path, bad_dir, ignore=shutil.ignore_patterns("vecq_harness_*", "synth"))
    bad = rtl.load_project(bad_dir)
    # the last stage feeds the outputs directly: a constant there (a bias or rounding
    # offset) reaches them
    stages = sorted((bad.hdl / "src").glob("*_stage*.v"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    for path in reversed(stages):
        text = path.read_text()
        m = _CONST.search(text)
        if m:
            bits = m.group(3)
            flipped = ("0" if bits[0] == "1" else "1") + bits[1:]
            path.write_text(text[:m.start(3)] + flipped + text[m.end(3):])
            break
    else:
        pytest.fail("no constant adder in the generated Verilog")
    result = simulate_rtl(bad, x)
    assert not result.build.cached  # the edit forced a rebuild
    assert result.interp_mismatches == 0
    assert result.rtl_mismatches > 0
    assert not result.ok and "FAILED" in result.summary()
    # the command exits 3 (a tool disagreed), printing the mismatches first
    np.save(tmp_path / "x.npy", x)
    r = CliRunner().invoke(cli, ["rtlsim", str(bad_dir), "--inputs", str(tmp_path / "x.npy")])
    assert r.exit_code == 3, r.output
    assert "cached build" in r.output and "RTL: input" in r.output and "FAILED" in r.output


# -- CLI and yosys ------------------------------------------------------------------------------

@pytest.mark.slow
def test_cli_rtl_and_rtlsim(tmp_path, modes_project):
    prj, _ = modes_project
    model_dir = tmp_path / "model"
    save_model(prj.model(), model_dir)
    runner = CliRunner()
    out = tmp_path / "prj"
    r = runner.invoke(cli, ["rtl", str(model_dir), "--out", str(out), "--latency-cutoff", "3"])
    assert r.exit_code == 0, r.output
    assert "da4ml estimate" in r.output and (out / "hdl" / "build_vivado_prj.tcl").is_file()
    # the same model and options give byte-identical Verilog, so the fixture's harness is this
    # design's harness too: copied in, the source-hash cache finds it (no second build)
    new = rtl.load_project(out)
    assert [p.read_bytes() for p in new.sources()] == [p.read_bytes() for p in prj.sources()]
    rtl.build(prj)  # the fixture's harness (cached when another test of this module built it)
    for exe in (prj.hdl / "sim").glob("vecq_harness_*"):
        shutil.copy2(exe, new.hdl / "sim" / exe.name)
    r = runner.invoke(cli, ["rtlsim", str(out), "-n", "300"])
    assert r.exit_code == 0, r.output
    assert "cached build" in r.output and "300 inputs" in r.output and "OK: bit-exact" in r.output
    # refusals are one line, exit 2
    r = runner.invoke(cli, ["rtl", str(model_dir), "--out", str(tmp_path / "x"), "--max-adder-bits", "10"])
    assert r.exit_code == 2 and r.output.count("\n") == 1 and "adder bits" in r.output
    assert not (tmp_path / "x").exists()
    r = runner.invoke(cli, ["rtlsim", str(tmp_path)])
    assert r.exit_code == 2 and "rtl.json" in r.output


@pytest.mark.slow
def test_synth_report_and_one_bit_costs_fewer_luts(tmp_path):
    """yosys on the same network at k = 1 (API) and k = 4 (CLI, JSON report)."""
    p1 = rtl.write(random_mlp(1, sizes=(12, 8, 4), seed=5), tmp_path / "k1")
    p4 = rtl.write(random_mlp(4, sizes=(12, 8, 4), seed=5), tmp_path / "k4")
    rep1 = rtl.synth(p1).to_dict()
    r = CliRunner().invoke(cli, ["synth", str(p4.path), "--json", str(tmp_path / "k4.json")])
    assert r.exit_code == 0, r.output
    assert "not Vivado post-route" in r.output and "LUTs" in r.output
    rep4 = json.loads((tmp_path / "k4.json").read_text())
    assert rep4 == json.loads((p4.path / "synth" / "report.json").read_text())
    for rep in (rep1, rep4):
        for key in ("luts", "luts_by_size", "carry", "ffs", "srls", "dsps", "brams", "logic_depth", "da4ml_cost",
                    "note"):
            assert key in rep
        assert rep["luts"] == sum(rep["luts_by_size"].values()) > 0
        assert all(re.fullmatch(r"LUT[1-6]", k) for k in rep["luts_by_size"])
        assert rep["ffs"] > 0 and rep["dsps"] == 0  # pipelined; LUT-only products
        assert rep["carry"] > 0 and rep["logic_depth"] > 0
        assert "not Vivado post-route" in rep["note"]
    assert rep1["luts"] < rep4["luts"]
