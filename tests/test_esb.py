"""ESB (issue 14): the value set, the projection, the scale, the gradient, and the HLS product.

* the value set equals the issue's enumeration M(b, k) for every b <= 8, k <= b - 2 (written
  here independently, in exact fractions), and so does the quantiser's levels*unit wherever
  the integer model can hold the table;
* the projection lands only on ±M and reaches every value; it is the nearest value of ±M
  (ties aside) -- so codes are never worse than the set allows;
* the l2 scale is never worse than the dda scale; the gradient reaches the weights;
* the HLS product classes compiled with g++, every code of every exportable ESB table with
  3..8 bits whose product is 'shift_add_n' or (issue 21) 'select' -- every table with k = b - 2
  significant bits, sign and magnitude -- every input of a signed and an unsigned type: x *
  level exactly, written without '*'.
"""

from __future__ import annotations

import shutil
from fractions import Fraction

import numpy as np
import pytest
import torch
from kernel_build import compile_and_run

from vecq_hw import ir
from vecq_hw.ir.levels import MAX_LEVEL
from vecq_hw.errors import VecQError
from vecq_hw.quant import ESB, quantizer_from_config
from vecq_hw.quant.esb import esb_magnitudes, esb_project


def enumeration(b: int, k: int) -> set[Fraction]:
    """The issue's M(b, k), verbatim."""
    e = b - 1 - k
    big_n = 2**e - 2
    out = {Fraction(0)}
    out |= {Fraction(m, 2**k) for m in range(1, 2**k)}
    out |= {Fraction(2) ** n * (1 + Fraction(j, 2**k)) for n in range(0, big_n + 1) for j in range(2**k)}
    c = Fraction(2) ** (big_n + 1) - Fraction(2) ** (big_n - k)
    assert max(out) == c
    return out


ALL_BK = [(b, k) for b in range(2, 9) for k in range(0, b - 1)]


def test_issue_example():
    assert [float(v) for v in sorted(enumeration(5, 2))] == [0, .25, .5, .75, 1, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5,
                                                           6, 7]


@pytest.mark.parametrize("b,k", ALL_BK)
def test_value_set_equals_enumeration(b, k):
    ref = enumeration(b, k)
    mags = esb_magnitudes(b, k)
    assert len(mags) == 2 ** (b - 1) == len(ref)
    assert {Fraction(float(v)) for v in mags} == ref
    try:
        q = ESB(b, False, k)
    except VecQError as exc:  # the table does not fit the integer model: refused in one line
        assert "significant_bits" in str(exc) and float(max(ref)) * 2**k > MAX_LEVEL
        return
    table = q.levels()
    assert len(table) == 2**b and np.all(np.abs(table) <= MAX_LEVEL)
    vals = {Fraction(int(v)) * Fraction(q.unit) for v in table}
    assert vals == ref | {-v for v in ref}
    # the projection reaches exactly ±M on a sweep through the whole range
    c = float(max(ref))
    u = np.concatenate([np.linspace(-1.2 * c, 1.2 * c, 20001), [float(v) for v in ref], [-float(v) for v in ref]])
    got = esb_project(u, b, k)
    assert {Fraction(float(v)) for v in np.unique(got)} == ref | {-v for v in ref}
    # nearest value of the set (the projection's rounding ties are the only freedom)
    allv = np.array(sorted(float(v) for v in ref | {-v for v in ref}))
    near = np.min(np.abs(u[:, None] - allv[None, :]), axis=1) if len(allv) < 300 else None
    if near is not None:
        assert np.all(np.abs(u - got) <= near + 1e-12 * c)


@pytest.mark.parametrize("b,k", [(3, 1), (5, 2), (6, 3), (8, 5)])
def test_quantize_numpy_and_torch_agree_and_decode(b, k):
    w = np.random.default_rng(b * 10 + k).normal(0, 0.05, size=(8, 40))
    for scale in ("dda", "l2"):
        q = ESB(b, True, k, scale)
        r = q.quantize(w)
        rt = q.quantize_torch(torch.tensor(w))
        np.testing.assert_array_equal(r.codes, rt.codes.numpy())
        # value = levels[c - cmin] * unit * alpha and lies on alpha * ±M
        norm = r.value() / r.alpha[:, None]
        mags = set(esb_magnitudes(b, k).tolist())
        assert set(np.round(np.abs(norm), 12).ravel().tolist()) <= mags
        assert ir.product_kind(r.levels) in ("addsub", "shift_add", "shift_add_n")


def test_l2_scale_not_worse_than_dda():
    rng = np.random.default_rng(3)
    for dist in (rng.normal(0, 1, (16, 300)), rng.laplace(0, 1, (16, 300))):
        for b, k in ((4, 1), (5, 2), (6, 2)):
            e_dda = ((ESB(b, True, k, "dda").quantize(dist).value() - dist) ** 2).sum(1)
            e_l2 = ((ESB(b, True, k, "l2").quantize(dist).value() - dist) ** 2).sum(1)
            assert np.all(e_l2 <= e_dda * (1 + 1e-12))
            assert e_l2.sum() < e_dda.sum()  # and strictly better overall on these samples


def test_gradient_reaches_the_weights():
    from vecq_hw.nn import VecQLinear

    torch.manual_seed(0)
    layer = VecQLinear(12, 5, weight_quant={"method": "esb", "bits": 5, "significant_bits": 2,
                                            "per_channel": True})
    x = torch.randn(7, 12)
    layer(x).pow(2).sum().backward()
    assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0
    # straight-through: d loss / d w == d loss / d w_hat
    w_hat = layer.weight_quant.quantize_torch(layer.weight).value().detach().requires_grad_(True)
    torch.nn.functional.linear(x, w_hat, layer.bias).pow(2).sum().backward()
    torch.testing.assert_close(layer.weight.grad, w_hat.grad)


def test_config_and_bad_options():
    q = quantizer_from_config({"method": "esb", "bits": 5, "significant_bits": 2})
    assert q.get_config() == {"method": "esb", "bits": 5, "per_channel": False, "significant_bits": 2,
                              "scale": "dda"}
    with pytest.raises(VecQError, match="significant_bits"):
        quantizer_from_config({"method": "esb", "bits": 5, "significant_bits": 4})
    with pytest.raises(VecQError, match="scale"):
        quantizer_from_config({"method": "esb", "bits": 5, "scale": "best"})
    with pytest.raises(VecQError, match="32767"):
        ESB(8, False, 0)


# -- the HLS product: compiled and swept ------------------------------------------------------

hls4ml = pytest.importorskip("hls4ml")


def _hls_kind(b, k):
    from vecq_hw.fixed import FixedType
    from vecq_hw.hls.products import choose_product

    layer = ir.Dense(name="d", out_type=FixedType(8, 3, True), bits=b, levels=ESB(b, False, k).levels(),
                     codes=np.zeros((1, 1), dtype=np.int8))
    return choose_product(layer, FixedType(7, 3, True)).kind


ESB_TABLES = [(b, k) for b in range(3, 9) for k in range(0, b - 1)
              if esb_magnitudes(b, k)[-1] * 2**k <= MAX_LEVEL and _hls_kind(b, k) in ("shift_add_n", "select")]


def test_esb_tables_need_at_most_k_plus_1_terms():
    from vecq_hw.ir.levels import shift_add_terms

    assert len(ESB_TABLES) >= 6
    for b in range(2, 9):
        for k in range(0, b - 1):
            if esb_magnitudes(b, k)[-1] * 2**k > MAX_LEVEL:
                continue
            levels = ESB(b, False, k).levels()
            assert shift_add_terms(levels) <= k + 1
            assert ir.product_kind(levels) != "multiply"


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_esb_kernels_every_code_every_input(tmp_path):
    from vecq_hw.fixed import FixedType
    from vecq_hw.hls.products import choose_product
    from vecq_hw.hls.types import precision_string

    in_types = {"ap_fixed<7, 3>": FixedType(7, 3, True), "ap_ufixed<6, 1>": FixedType(6, 1, False)}
    structs, calls = [], []
    # sign and magnitude (k = b - 2) is a select plan at every b; the others keep shift_add_n
    assert {(b, k) for b, k in ESB_TABLES if _hls_kind(b, k) == "select"} == {(b, b - 2) for b in range(3, 9)}
    for b, k in ESB_TABLES:
        levels = ESB(b, False, k).levels()
        layer = ir.Dense(name="d", out_type=FixedType(8, 3, True), bits=b, levels=levels,
                         codes=np.zeros((1, 1), dtype=np.int8))
        for dt, t in in_types.items():
            p = choose_product(layer, t)
            assert f"nnet::vecq_product_{p.kind}<" in p.config
            name = f"cfg{b}_{k}_{len(calls)}"
            structs.append(
                f"struct {name} : nnet::vecq_dense_config {{\n    static const unsigned bits = {b};\n"
                f"    typedef ap_int<{b}> weight_t;\n    typedef {precision_string(p.term)} term_t;\n"
                f"    typedef ap_fixed<48, {48 - t.frac}> accum_t;\n{p.config}}};\n"
                f"static const long long levels_{name}[{1 << b}] = {{{', '.join(str(int(v)) for v in levels)}}};\n")
            calls.append(f"bad += sweep<{name}, {dt} >(levels_{name});")
    program = r"""
#include <cstdio>
#include "ap_fixed.h"
#include "ap_int.h"
#include "nnet_vecq_products.h"
long long checked = 0;
template <class C, class data_T> int sweep(const long long *levels) {
    int bad = 0;
    const int lo = -(1 << (C::bits - 1)), hi = (1 << (C::bits - 1)) - 1;
    for (int c = lo; c <= hi; c++) {
        typename C::weight_t code = c;
        const long long d = levels[c - lo];
        for (long long m = 0; m < (1LL << data_T::width); m++) {
            data_T x;
            x.range(data_T::width - 1, 0) = m;
            typename C::term_t got = nnet::vecq_product<data_T, C>(x, code);
            long long xm = x.range(data_T::width - 1, 0).to_int64();
            if (x < 0) xm -= 1LL << data_T::width;
            ap_fixed<64, 64 - (data_T::width - data_T::iwidth)> want;
            want.range(63, 0) = ap_int<64>(xm * d).range(63, 0);
            const typename C::accum_t start = (c * 3 - 1) * 0.25; // the kernels' path: acc += x * d
            typename C::accum_t acc = start;
            nnet::vecq_mac<data_T, C>(acc, x, code);
            if (got != want || acc != start + want) {
                if (bad < 5)
                    printf("c=%d d=%lld x=%s got %s\n", c, d, x.to_string(10).c_str(), got.to_string(10).c_str());
                bad++;
            }
            checked++;
        }
    }
    return bad;
}
""" + "".join(structs) + "int main() {\n    int bad = 0;\n    " + "\n    ".join(calls) + \
        '\n    printf("CHECKED: %lld\\nMISMATCHES: %d\\n", checked, bad);\n    return bad != 0;\n}\n'
    src = tmp_path / "esb.cpp"
    src.write_text(program)
    exe = tmp_path / "esb"
    run = compile_and_run(src, exe, timeout=300)
    n = sum(2**b for b, _ in ESB_TABLES) * (2**7 + 2**6)
    assert int(run.stdout.split("CHECKED:")[1].split()[0]) == n


def test_shift_add_n_is_written_without_multiply():
    from vecq_hw.hls.layers import TEMPLATE_DIR

    text = (TEMPLATE_DIR / "nnet_vecq_products.h").read_text()
    # shift_add_n is the signed-digit class with n_terms digits ...
    body = text[text.index("struct vecq_product_shift_add_n"):text.index("// end of vecq_product_shift_add_n")]
    assert "vecq_product_digits<data_T, CONFIG_T, CONFIG_T::n_terms>" in body
    # ... which has no multiply: one loop over its N digits (add(), which product() and mac(), the
    # kernels' path, both call), shifts and adds only
    digits = text[text.index("struct vecq_product_digits {"):text.index("// every level is s1 2^e1")]
    code = "\n".join(line.split("//")[0] for line in digits.splitlines())
    assert "*" not in code and "<<" in code
    assert code.count("k < N;") == 1 and code.count("add(") == 3
