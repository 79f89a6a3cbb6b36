"""The simulator against a naive Python-int reference, bit for bit.

Random small models of every layer kind (dense, conv2d with stride/padding variants, relu,
max/avg pooling, flatten), k = 1..8, both weight encodings, random fixed-point types with
every rounding mode and the AP_WRAP/AP_SAT/AP_SAT_ZERO/AP_SAT_SYM overflow modes, inputs
including the types' extremes. Also: chunking, trace, overflow counts, and the exactness
boundaries of the float32 / float64 / int64 accumulation paths.
"""

from __future__ import annotations

import numpy as np
import pytest

from vecq_hw import ir
from vecq_hw.errors import VecQError
from vecq_hw.fixed import ROUNDING_MODES, FixedType
from vecq_hw.sim import Simulator, simulate
from vecq_hw.sim.kernels import F32_MAX_ACC_WIDTH, F64_MAX_ACC_WIDTH

from naive_reference import naive_requant, naive_simulate

OVERFLOWS = ("AP_WRAP", "AP_SAT", "AP_SAT_ZERO", "AP_SAT_SYM")


# -- random valid models ---------------------------------------------------------------------

def rand_type(rng, *, wmin=2, wmax=10, signed=None, modes=True) -> FixedType:
    signed = bool(rng.random() < 0.6) if signed is None else signed
    w = int(rng.integers(wmin, wmax + 1))
    i = int(rng.integers(-2, w + 3))
    q = str(rng.choice(ROUNDING_MODES)) if modes else "AP_TRN"
    o = str(rng.choice(OVERFLOWS)) if modes else "AP_WRAP"
    return FixedType(w, i, signed, q, o)


def rand_mantissas(rng, t: FixedType, size) -> np.ndarray:
    """Uniform over the type, with a good share of extremes and their neighbours."""
    lo, hi = t.min_mantissa, t.max_mantissa
    x = rng.integers(lo, hi + 1, size=size, dtype=np.int64)
    special = np.array(sorted({lo, min(lo + 1, hi), 0, max(hi - 1, lo), hi}), dtype=np.int64)
    mask = rng.random(size) < 0.3
    x[mask] = rng.choice(special, size=int(mask.sum()))
    return x


def rand_weighted(rng, cls, name, in_type, codes_shape, *, bits=None, encoding=None, **kw):
    bits = int(rng.integers(1, 9)) if bits is None else bits
    encoding = str(rng.choice(ir.ENCODINGS)) if encoding is None else encoding
    lo, hi = ir.code_range(bits)
    codes = rng.integers(lo, hi + 1, size=codes_shape).astype(np.int8)
    n_out = codes_shape[-1]
    st, bt = rand_type(rng, wmax=9, modes=False), rand_type(rng, wmax=9, modes=False)
    scale = rng.integers(st.min_mantissa, st.max_mantissa + 1, size=n_out, dtype=np.int64)
    bias = rng.integers(bt.min_mantissa, bt.max_mantissa + 1, size=n_out, dtype=np.int64)
    acc = ir.accumulator_type(in_type, ir.multipliers(codes, encoding))
    if rng.random() < 0.3:  # a wider-than-needed accumulator is legal
        acc = FixedType(acc.width + 2, acc.integer + 2, True)
    # output type near y's magnitude so that rounding happens and overflow is occasional
    y_frac = max(in_type.frac + st.frac, bt.frac)
    modes = rand_type(rng)
    y_int = max(acc.integer + st.integer, bt.integer)  # integer bits of the worst-case |y|
    i = y_int + int(rng.integers(-4, 2))
    f = y_frac + int(rng.integers(-6, 3))
    w = int(np.clip(i + f, 2, 16))
    out = FixedType(w, w - f if rng.random() < 0.8 else i, bool(rng.random() < 0.8),
                    modes.rounding, modes.overflow)
    return cls(name=name, out_type=out, bits=bits, encoding=encoding, codes=codes,
               scale=scale, scale_type=st, bias=bias, bias_type=bt, accum_type=acc, **kw)


def relu_type(rng, t: FixedType) -> FixedType:
    a, b = int(rng.integers(0, 3)), int(rng.integers(0, 3))
    f, i = t.frac + a, t.integer + b
    if rng.random() < 0.5:
        return FixedType(i + f, i, False)
    return FixedType(i + 1 + f, i + 1, True)


def avg_type(rng, t: FixedType, pool) -> FixedType:
    extra = (pool[0] * pool[1]).bit_length() - 1
    f, i = t.frac + extra + int(rng.integers(0, 2)), t.integer + int(rng.integers(0, 2))
    return FixedType(i + f, i, t.signed)


def mlp_model(rng, n_in=None, hidden=None, n_out=None, **kw) -> ir.Model:
    n_in = n_in or int(rng.integers(1, 12))
    hidden = hidden or int(rng.integers(1, 9))
    n_out = n_out or int(rng.integers(1, 6))
    t0 = rand_type(rng)
    inp = ir.Input(name="in", out_type=t0, shape=(n_in,))
    d1 = rand_weighted(rng, ir.Dense, "fc1", t0, (n_in, hidden), **kw)
    r1 = ir.ReLU(name="relu1", out_type=relu_type(rng, d1.out_type))
    d2 = rand_weighted(rng, ir.Dense, "fc2", r1.out_type, (hidden, n_out), **kw)
    return ir.Model("mlp", [inp, d1, r1, d2]).check()


def cnn_model(rng, *, h=7, w=6, cin=2, kernel=(3, 3), stride=(1, 1), padding=(0, 0, 0, 0),
              pool_kind="max", pool=(2, 2), pool_stride=(2, 2), **kw) -> ir.Model:
    t0 = rand_type(rng)
    layers = [ir.Input(name="in", out_type=t0, shape=(h, w, cin))]
    cout = int(rng.integers(1, 5))
    c1 = rand_weighted(rng, ir.Conv2D, "conv1", t0, kernel + (cin, cout), stride=stride,
                       padding=padding, **kw)
    layers += [c1, ir.ReLU(name="relu1", out_type=relu_type(rng, c1.out_type))]
    t = layers[-1].out_type
    if pool_kind == "max":
        layers.append(ir.MaxPool2D(name="pool1", out_type=t, pool=pool, stride=pool_stride))
    else:
        layers.append(ir.AvgPool2D(name="pool1", out_type=avg_type(rng, t, pool), pool=pool,
                                   stride=pool_stride))
    shape = ir.Model("tmp", list(layers)).check().output_shape
    layers.append(ir.Flatten(name="flat", out_type=layers[-1].out_type))
    n = int(np.prod(shape))
    layers.append(rand_weighted(rng, ir.Dense, "fc", layers[-1].out_type, (n, 3), **kw))
    return ir.Model("cnn", layers).check()


def assert_matches_naive(model, x, **sim_kw):
    """Both requantisation paths: counting overflow runs the int64 one, not counting runs the
    float one wherever ``FloatRequant.plan`` proves it exact (and the int64 one elsewhere)."""
    out, trace, counts = naive_simulate(model, x)
    for count in (False, True):
        res = simulate(model, x_mantissa=x, trace=True, count_overflow=count, **sim_kw)
        np.testing.assert_array_equal(res.output, out)
        assert res.output.dtype == np.int64
        assert res.output.shape == (x.shape[0],) + model.output_shape
        for name, arr in trace.items():
            np.testing.assert_array_equal(res.trace[name], arr, err_msg=name)
            assert res.trace[name].dtype == np.int64
        assert res.overflow == (counts if count else None)
    return res


# -- simulator vs naive reference --------------------------------------------------------------

@pytest.mark.parametrize("seed", range(24))
def test_mlp_matches_naive(seed):
    rng = np.random.default_rng(seed)
    model = mlp_model(rng, bits=seed % 8 + 1, encoding=ir.ENCODINGS[seed % 2])
    x = rand_mantissas(rng, model.input.out_type, (40,) + model.input.shape)
    assert_matches_naive(model, x)


CONV_CASES = [
    dict(kernel=(3, 3), stride=(1, 1), padding=(0, 0, 0, 0)),
    dict(kernel=(3, 3), stride=(1, 1), padding=(1, 1, 1, 1)),
    dict(kernel=(3, 2), stride=(2, 1), padding=(2, 0, 1, 0)),
    dict(kernel=(2, 3), stride=(2, 2), padding=(0, 1, 0, 2)),
    dict(kernel=(1, 1), stride=(1, 1), padding=(0, 0, 0, 0)),
    dict(kernel=(1, 1), stride=(2, 3), padding=(1, 0, 0, 1)),
    dict(kernel=(5, 5), stride=(1, 1), padding=(2, 2, 2, 2)),
    dict(kernel=(4, 3), stride=(3, 2), padding=(1, 2, 0, 1)),
]
POOL_CASES = [("max", (2, 2), (2, 2)), ("avg", (2, 2), (2, 2)), ("max", (3, 2), (1, 2)),
              ("avg", (1, 2), (1, 1)), ("avg", (2, 1), (2, 3)), ("max", (1, 1), (1, 1))]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
@pytest.mark.parametrize("pool", range(len(POOL_CASES)))
def test_cnn_matches_naive(case, pool):
    seed = 100 + case * 10 + pool
    rng = np.random.default_rng(seed)
    kind, size, stride = POOL_CASES[pool]
    model = cnn_model(rng, **CONV_CASES[case], pool_kind=kind, pool=size, pool_stride=stride,
                      bits=seed % 8 + 1, encoding=ir.ENCODINGS[seed % 2])
    x = rand_mantissas(rng, model.input.out_type, (6,) + model.input.shape)
    assert_matches_naive(model, x)


def test_every_rounding_and_overflow_mode_on_dense():
    rng = np.random.default_rng(7)
    for q in ROUNDING_MODES:
        for o in OVERFLOWS:
            for signed in (True, False):
                model = mlp_model(rng, n_in=6, hidden=4, n_out=5)
                last = model.layers[-1]
                last.out_type = FixedType(5, last.out_type.integer, signed, q, o)
                model.check()
                x = rand_mantissas(rng, model.input.out_type, (30, 6))
                assert_matches_naive(model, x)


def test_naive_requant_spot_checks():
    """The reference's own rounding, on hand-worked ties (frac 2 -> frac 0)."""
    t = lambda q, o="AP_WRAP", w=8, s=True: FixedType(w, w, s, q, o)  # noqa: E731
    assert [naive_requant(v, 2, t("AP_RND"))[0] for v in (2, -2, 6, -6)] == [1, 0, 2, -1]
    assert [naive_requant(v, 2, t("AP_RND_CONV"))[0] for v in (2, -2, 6, -6)] == [0, 0, 2, -2]
    assert [naive_requant(v, 2, t("AP_RND_ZERO"))[0] for v in (2, -2, 3, -3)] == [0, 0, 1, -1]
    assert [naive_requant(v, 2, t("AP_RND_INF"))[0] for v in (2, -2)] == [1, -1]
    assert [naive_requant(v, 2, t("AP_TRN_ZERO"))[0] for v in (3, -3)] == [0, 0]
    assert naive_requant(4 * 200, 2, t("AP_TRN"))[0] == 200 - 256
    assert naive_requant(4 * 200, 2, t("AP_TRN", "AP_SAT"))[0] == 127
    assert naive_requant(-4 * 128, 2, t("AP_TRN", "AP_SAT_SYM"))[0] == -127
    assert naive_requant(-4 * 128, 2, t("AP_TRN", "AP_SAT"))[0] == -128
    assert naive_requant(-4, 2, t("AP_TRN", "AP_SAT_ZERO", s=False))[0] == 0


def test_requant_agrees_with_fixed_quantize_mantissa():
    """The naive requantiser and FixedType.quantize_mantissa agree (both read ap_types)."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        t = rand_type(rng, wmax=12)
        frac = t.frac + int(rng.integers(-4, 6))
        y = rng.integers(-(1 << 16), 1 << 16, size=64, dtype=np.int64)
        got = t.quantize_mantissa(y, frac)
        want = [naive_requant(int(v), frac, t)[0] for v in y]
        np.testing.assert_array_equal(got, want, err_msg=f"{t} from frac {frac}")


# -- chunking, trace, overflow, API --------------------------------------------------------------

def test_chunking_gives_identical_results():
    rng = np.random.default_rng(11)
    model = cnn_model(rng, padding=(1, 1, 1, 1), pool_kind="avg")
    x = rand_mantissas(rng, model.input.out_type, (37,) + model.input.shape)
    ref = simulate(model, x_mantissa=x, trace=True, count_overflow=True)
    for chunk in (1, 3, 16, 36, 37, 1000):
        res = simulate(model, x_mantissa=x, trace=True, count_overflow=True, chunk_size=chunk)
        np.testing.assert_array_equal(res.output, ref.output)
        assert res.overflow == ref.overflow
        for name in ref.trace:
            np.testing.assert_array_equal(res.trace[name], ref.trace[name])


def test_blas_on_one_thread_while_simulating_and_restored_after(monkeypatch):
    """OpenBLAS's threads spin against each other on the simulator's small GEMMs (3x the CPU,
    benchmarks/results/sim_blas.md): the simulator limits BLAS to one thread for its run and
    gives the caller's setting back."""
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    seen = []
    run = Simulator._run_chunks

    def spy(self, *args):
        seen.append(blas_threads())
        return run(self, *args)

    monkeypatch.setattr(Simulator, "_run_chunks", spy)
    rng = np.random.default_rng(5)
    model = cnn_model(rng)
    x = rand_mantissas(rng, model.input.out_type, (9,) + model.input.shape)
    with threadpool_limits(limits=2, user_api="blas"):
        assert blas_threads() == {2}
        simulate(model, x_mantissa=x)
        after = blas_threads()
    assert seen == [{1}] and after == {2}


def test_automatic_chunk_keeps_the_widest_intermediate_within_budget():
    from vecq_hw.sim.simulator import CHUNK_BUDGET, auto_chunk_size
    rng = np.random.default_rng(13)
    model = cnn_model(rng, padding=(1, 1, 1, 1), pool_kind="max")
    conv = next(lay for lay in model.layers if isinstance(lay, ir.Conv2D))
    shapes = model.shapes()
    im2col = int(np.prod(shapes[conv.name][:2])) * int(np.prod(conv.codes.shape[:3]))
    chunk = auto_chunk_size(model)
    assert chunk * im2col <= CHUNK_BUDGET < (chunk + 1) * im2col or chunk == 1 << 12


def test_trace_and_overflow_only_when_asked():
    rng = np.random.default_rng(12)
    model = mlp_model(rng)
    x = rand_mantissas(rng, model.input.out_type, (5,) + model.input.shape)
    res = simulate(model, x_mantissa=x)
    assert res.trace is None and res.overflow is None
    res = simulate(model, x_mantissa=x, trace=True, count_overflow=True)
    assert list(res.trace) == [layer.name for layer in model.layers]
    np.testing.assert_array_equal(res.trace["fc2"], res.output)
    assert set(res.overflow) == {"fc1", "fc2"}
    assert all(c["total"] == 5 * layer.n_out for layer in model.layers[1::2]
               for c in [res.overflow[layer.name]])


def test_overflow_counts_classified_by_mode():
    rng = np.random.default_rng(13)
    model = mlp_model(rng, n_in=8, hidden=4, n_out=3)
    x = rand_mantissas(rng, model.input.out_type, (50, 8))
    fc2 = model.layers[-1]
    seen = {}
    for o in OVERFLOWS:
        fc2.out_type = FixedType(3, 3 - fc2.out_type.frac, True, "AP_RND", o)
        res = assert_matches_naive(model, x)
        c = res.overflow["fc2"]
        seen[o] = c
        if o == "AP_WRAP":
            assert c["saturated"] == 0
        else:
            assert c["wrapped"] == 0
    assert seen["AP_WRAP"]["wrapped"] == seen["AP_SAT"]["saturated"] > 0
    assert seen["AP_SAT_SYM"]["saturated"] >= seen["AP_SAT"]["saturated"]


def test_float_input_goes_through_from_float():
    rng = np.random.default_rng(14)
    model = cnn_model(rng)
    t = model.input.out_type
    x = rng.normal(scale=2 * max(abs(t.max_value), t.resolution), size=(9,) + model.input.shape)
    a = simulate(model, x)
    b = simulate(model, x_mantissa=t.from_float(x))
    np.testing.assert_array_equal(a.output, b.output)
    np.testing.assert_array_equal(a.values(), model.output_type.to_float(a.output))
    assert a.out_type == model.output_type


def test_bad_inputs_are_refused():
    rng = np.random.default_rng(15)
    model = mlp_model(rng, n_in=4)
    t = model.input.out_type
    with pytest.raises(VecQError):
        simulate(model, x_mantissa=np.full((2, 4), t.max_mantissa + 1))
    with pytest.raises(VecQError):
        simulate(model, x_mantissa=np.zeros((2, 5), dtype=np.int64))
    with pytest.raises(VecQError):
        simulate(model, x_mantissa=np.zeros((2, 4)))  # float dtype
    with pytest.raises(VecQError):
        simulate(model)
    with pytest.raises(VecQError):
        simulate(model, np.zeros((2, 4)), chunk_size=0)


def test_empty_batch():
    model = mlp_model(np.random.default_rng(16))
    res = simulate(model, x_mantissa=np.zeros((0,) + model.input.shape, dtype=np.int64))
    assert res.output.shape == (0,) + model.output_shape


# -- float32 / float64 / int64 accumulation boundaries ---------------------------------------------

def _boundary_dense(in_type: FixedType, target_width: int, n_out=4, seed=0):
    """A dense layer whose worst-case accumulator is exactly ``target_width`` bits."""
    rng = np.random.default_rng(seed)
    n = 1
    while True:  # grow the fan-in with extreme codes until the bound needs target_width bits
        codes = np.full((n, n_out), -128, dtype=np.int8)
        codes[:, 1::2] = 127
        w = ir.accumulator_type(in_type, ir.multipliers(codes, "odd")).width
        if w >= target_width:
            break
        n += 1 if target_width - w < 3 else n
    if w != target_width:  # overshot by doubling: step back one at a time
        while ir.accumulator_type(in_type, ir.multipliers(codes[:-1], "odd")).width >= target_width:
            codes = codes[:-1]
    # random codes below the extremes in all but the first two columns
    codes[:, 2:] = rng.integers(-128, 128, size=codes[:, 2:].shape)
    codes[:, :2] = np.where(rng.random(codes[:, :2].shape) < 0.9, codes[:, :2], 0)
    codes[:, 0] = -128
    codes[:, 1] = 127
    d = ir.multipliers(codes, "odd")
    acc = ir.accumulator_type(in_type, d)
    assert acc.width == target_width
    one = FixedType(2, 2, False)
    zero = FixedType(2, 2, True)
    y = FixedType(64, 64 - in_type.frac, True)  # holds y = acc exactly: out == acc
    layer = ir.Dense(name="fc", out_type=y, bits=8, encoding="odd", codes=codes,
                     scale=np.ones(n_out, np.int64), scale_type=one,
                     bias=np.zeros(n_out, np.int64), bias_type=zero, accum_type=acc)
    model = ir.Model("boundary", [ir.Input(name="in", out_type=in_type, shape=(codes.shape[0],)),
                                  layer]).check()
    return model, d


def _exact_acc(x, d):
    return np.array([[sum(int(a) * int(b) for a, b in zip(row, col)) for col in d.T] for row in x],
                    dtype=np.int64)


def _extreme_inputs(in_type, d, n, seed):
    rng = np.random.default_rng(seed)
    x = rand_mantissas(rng, in_type, (n, d.shape[0]))
    # rows 0/1 hit the bound of column 0 (d = -255) from both sides; odd sums via row 2
    x[0] = in_type.min_mantissa
    x[1] = in_type.max_mantissa
    x[2] = np.where(d[:, 0] < 0, in_type.min_mantissa, in_type.max_mantissa)
    x[2, 0] = in_type.min_mantissa + 1
    x[3] = np.where(d[:, 1] > 0, in_type.max_mantissa, in_type.min_mantissa)
    x[3, 0] = in_type.max_mantissa - 1
    return x


@pytest.mark.parametrize("width,dtype", [(F32_MAX_ACC_WIDTH, np.float32),
                                         (F32_MAX_ACC_WIDTH + 1, np.float64),
                                         (F64_MAX_ACC_WIDTH, np.float64),
                                         (F64_MAX_ACC_WIDTH + 1, np.int64)])
def test_accumulation_path_boundary(width, dtype):
    in_type = FixedType(8, 3, True) if width < 40 else FixedType(40, 10, True)
    model, d = _boundary_dense(in_type, width, seed=width)
    sim = Simulator(model)
    assert sim.kernels[0].dtype is dtype
    x = _extreme_inputs(in_type, d, 64, seed=width)
    exact = _exact_acc(x, d)
    assert np.abs(exact).max() > 2 ** (width - 2)  # the test really reaches the top bit
    got = sim.run(x_mantissa=x).output
    np.testing.assert_array_equal(got, exact)
    ref = Simulator(model, force_dtype="int64").run(x_mantissa=x).output
    np.testing.assert_array_equal(got, ref)


@pytest.mark.parametrize("width,narrow", [(F32_MAX_ACC_WIDTH + 2, "float32"),
                                          (F64_MAX_ACC_WIDTH + 2, "float64")])
def test_narrower_float_path_would_be_wrong_above_threshold(width, narrow):
    """The thresholds are not decorative: forcing the narrower float past them loses bits."""
    in_type = FixedType(8, 3, True) if width < 40 else FixedType(40, 10, True)
    model, d = _boundary_dense(in_type, width, seed=width)
    x = _extreme_inputs(in_type, d, 64, seed=width)
    exact = _exact_acc(x, d)
    forced = Simulator(model, force_dtype=narrow).run(x_mantissa=x).output
    assert not np.array_equal(forced, exact)


def test_conv_paths_agree():
    rng = np.random.default_rng(21)
    for seed in range(4):
        model = cnn_model(rng, padding=(1, 0, 2, 1), stride=(2, 1), bits=8)
        x = rand_mantissas(rng, model.input.out_type, (11,) + model.input.shape)
        ref = Simulator(model, force_dtype="int64").run(x_mantissa=x, trace=True)
        for dt in ("float64",) + (("float32",) if all(
                k.layer.accum_type.width <= F32_MAX_ACC_WIDTH
                for k in Simulator(model).kernels if k.requantises) else ()):
            res = Simulator(model, force_dtype=dt).run(x_mantissa=x, trace=True)
            for name in ref.trace:
                np.testing.assert_array_equal(res.trace[name], ref.trace[name])
