"""Our low-bit HLS kernel arithmetic (hls_templates/nnet_vecq_products.h) against plain products, with g++.

For every k in 1..8, both encodings, every k-bit code and a sweep of inputs (every value of a
signed and of an unsigned fixed-point type), the multiplier-free (k = 1), shift-and-add
(k = 2..4) and multiplier (k = 5..8, auto/dsp/fabric) paths must equal x * d exactly, and the
requantisation must equal one conversion of the exact y = acc * s + b. The kernels accumulate
through vecq_mac (acc += x * d, shifted copies of x added straight into acc): checked from a
non-zero start, and in a narrow accumulator starting at the edge of its range opposite to the
product's sign, where the partial sums leave the range (they wrap) and only the modular
argument in nnet_vecq_products.h keeps the sum exact (a saturating accumulator fails this check).
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from kernel_build import compile_and_run

from vecq_hw.hls.layers import TEMPLATE_DIR

PRODUCTS_HEADER = TEMPLATE_DIR / "nnet_vecq_products.h"

hls4ml = pytest.importorskip("hls4ml")

PROGRAM = r"""
#include <cmath>
#include <cstdio>
#include "ap_fixed.h"
#include "ap_int.h"
#include "nnet_vecq_products.h"

template <unsigned K, unsigned ENC, unsigned MUL, class data_T> struct cfg : nnet::vecq_dense_config {
    static const unsigned bits = K;
    static const unsigned encoding = ENC;
    static const unsigned multiplier = MUL;
    typedef ap_int<K> weight_t;
    typedef ap_fixed<data_T::width + K + 2, data_T::iwidth + K + 2> term_t;
    typedef ap_fixed<data_T::width + K + 8, data_T::iwidth + K + 8> accum_t;
    typedef ap_ufixed<9, -2> scale_t;
    typedef ap_fixed<7, 2> bias_t;
};

// a narrow accum_t that holds one product x * d (|x| <= 2^iwidth, |d| < 2^K)
template <unsigned K, unsigned ENC, unsigned MUL, class data_T> struct cfg_tight : cfg<K, ENC, MUL, data_T> {
    typedef ap_fixed<data_T::width - data_T::iwidth + data_T::iwidth + K + 1, data_T::iwidth + K + 1> accum_t;
};

long long checked = 0;

template <unsigned K, unsigned ENC, unsigned MUL, class data_T> int sweep() {
    typedef cfg<K, ENC, MUL, data_T> C;
    typedef cfg_tight<K, ENC, MUL, data_T> T;
    int bad = 0;
    const int lo = -(1 << (K - 1)), hi = (1 << (K - 1)) - 1;
    for (int c = lo; c <= hi; c++) {
        typename C::weight_t code = c;
        const int d = ENC == 0 ? 2 * c + 1 : c;
        for (long long m = 0; m < (1LL << data_T::width); m++) {
            data_T x;
            x.range(data_T::width - 1, 0) = m;
            typename C::term_t got = nnet::vecq_product<data_T, C>(x, code);
            if (got != x * ap_int<12>(d)) {
                if (bad < 5)
                    printf("k=%u enc=%u mul=%u c=%d x=%s: got %s\n", K, ENC, MUL, c, x.to_string(10).c_str(),
                           got.to_string(10).c_str());
                bad++;
            }
            const typename C::accum_t start = (c * 3 - 1) * 0.25; // exact: accum_t has >= 5 fraction bits
            typename C::accum_t acc = start;
            nnet::vecq_mac<data_T, C>(acc, x, code);
            // start at max (product < 0) or min (product >= 0): the sum is in range, partial sums not
            typedef typename T::accum_t tight_t;
            const double edge = x * ap_int<12>(d) < 0
                ? ldexp(1.0, tight_t::iwidth - 1) - ldexp(1.0, tight_t::iwidth - tight_t::width)
                : -ldexp(1.0, tight_t::iwidth - 1);
            const tight_t tight_start = edge;
            tight_t tight = tight_start;
            nnet::vecq_mac<data_T, T>(tight, x, code);
            if (acc != start + x * ap_int<12>(d) || tight != tight_start + x * ap_int<12>(d)) {
                if (bad < 5)
                    printf("mac k=%u enc=%u c=%d x=%s: got %s / %s\n", K, ENC, c, x.to_string(10).c_str(),
                           acc.to_string(10).c_str(), tight.to_string(10).c_str());
                bad++;
            }
            checked++;
        }
    }
    return bad;
}

template <unsigned K, unsigned ENC, unsigned MUL> int one() { return sweep<K, ENC, MUL, ap_fixed<7, 3> >(); }

// dsp/fabric differ from auto only by their BIND_OP pragma; each still gets its own sweep
template <unsigned K> int all_paths() {
    int bad = one<K, 0, 0>() + one<K, 1, 0>() + sweep<K, 0, 0, ap_ufixed<6, 1> >();
    if (K > 4)
        bad += one<K, 0, 1>() + one<K, 1, 2>();
    return bad;
}

// requantisation: (out_t)(acc * s + b) with exact intermediate == one conversion from double
int requant() {
    typedef cfg<4, 0, 0, ap_fixed<7, 3> > C;
    typedef ap_fixed<6, 2, AP_RND_CONV, AP_SAT> out_t;
    int bad = 0;
    for (int a = -300; a <= 300; a += 7)
        for (int s = 0; s < 512; s += 13)
            for (int b = -64; b < 64; b += 5) {
                typename C::accum_t acc; acc.range(C::accum_t::width - 1, 0) = a;
                typename C::scale_t sc; sc.range(8, 0) = s;
                typename C::bias_t bi; bi.range(6, 0) = b;
                out_t got = nnet::vecq_requant<out_t, C>(acc, sc, bi);
                double y = acc.to_double() * sc.to_double() + bi.to_double(); // exact: < 53 bits
                out_t want = y;
                bad += got != want;
                checked++;
            }
    return bad;
}

int main() {
    int bad = all_paths<1>() + all_paths<2>() + all_paths<3>() + all_paths<4>() + all_paths<5>() + all_paths<6>() +
              all_paths<7>() + all_paths<8>() + requant();
    printf("CHECKED: %lld\nMISMATCHES: %d\n", checked, bad);
    return bad != 0;
}
"""


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_kernel_products_equal_plain_products(tmp_path):
    src = tmp_path / "kernels.cpp"
    src.write_text(PROGRAM)
    exe = tmp_path / "kernels"
    run = compile_and_run(src, exe)
    checked = int(run.stdout.split("CHECKED:")[1].split()[0])
    assert checked > 100_000


def test_low_bit_paths_have_no_multiply():
    """The named tables (the radix-4 select form, issue 21) and the select groups of custom tables
    are written without '*' (selects, shifts and adds/subtracts only); only a DSP binding multiplies."""
    select = (TEMPLATE_DIR / "nnet_vecq_select.h").read_text()
    body = select[select.index("template <class T> void vecq_add_or_sub"):select.index("} // namespace nnet")]
    code = "\n".join(line.split("//")[0] for line in body.splitlines())
    assert "*" not in code and "<<" in code
    text = PRODUCTS_HEADER.read_text()
    named = text[text.index("struct vecq_named_impl {"):text.index("struct vecq_named_impl<data_T, CONFIG_T, false>")]
    assert "*" not in "\n".join(line.split("//")[0] for line in named.splitlines())
    assert "vecq_radix4<CONFIG_T::bits, CONFIG_T::encoding>::add(acc, xo, c);" in named
    assert "typedef vecq_named_impl<data_T, CONFIG_T, (CONFIG_T::bits <= 4 || CONFIG_T::multiplier != vecq_mul_dsp)> impl;" in text
    assert "impl=fabric" in text and "impl=dsp" in text


# -- custom level tables: the product class chosen in Python, compiled and swept ------------------

CUSTOM_TABLES = [  # (bits, levels, multiplier binding): every product kind, overshooting CSD digits, wide ROMs
    (1, [0, 1], "auto"),  # addsub
    (2, [0, -1, 1, 1], "auto"),  # addsub
    (2, [-4, -1, 1, 4], "auto"),  # shift_add, one digit each
    (3, [-7, -6, -3, -1, 1, 2, 6, 12], "auto"),  # shift_add: 7 = 8 - 1 (the 8x copy must fit term_t)
    (4, [-32767, -24576, -5, -3, 0, 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24], "auto"),  # shift_add, 16-bit levels
    (3, [-23, -9, -3, 0, 5, 11, 19, 27], "auto"),  # multiply
    (3, [-23, -9, -3, 0, 5, 11, 19, 27], "dsp"),
    (2, [-32767, 12345, 3, 5], "fabric"),  # multiply, 16-bit ROM
    (8, None, "fabric"),  # multiply: 256 random levels
]
DATA_TYPES = ("ap_fixed<7, 3>", "ap_ufixed<6, 1>")


def _custom_program() -> tuple[str, list]:
    import numpy as np

    from vecq_hw import ir
    from vecq_hw.fixed import FixedType
    from vecq_hw.hls.products import choose_product
    from vecq_hw.hls.types import precision_string

    rng = np.random.default_rng(0)
    in_types = {"ap_fixed<7, 3>": FixedType(7, 3, True), "ap_ufixed<6, 1>": FixedType(6, 1, False)}
    structs, calls, kinds = [], [], []
    for t, (bits, levels, mult) in enumerate(CUSTOM_TABLES):
        if levels is None:
            levels = rng.integers(-2000, 2001, size=1 << bits).tolist()
        layer = ir.Dense(name="d", out_type=FixedType(8, 3, True), bits=bits, levels=np.array(levels),
                         codes=np.zeros((1, 1), dtype=np.int8))
        assert layer.encoding == "custom"
        for dt in DATA_TYPES:
            p = choose_product(layer, in_types[dt])
            kinds.append(p.kind)
            name = f"cfg{t}_{len(calls)}"
            structs.append(
                f"struct {name} : nnet::vecq_dense_config {{\n"
                f"    static const unsigned bits = {bits};\n"
                f"    static const unsigned encoding = 2;\n"
                f"    static const unsigned multiplier = {dict(auto=0, dsp=1, fabric=2)[mult]};\n"
                f"    typedef ap_int<{bits}> weight_t;\n"
                f"    typedef {precision_string(p.term)} term_t;\n"
                f"    typedef ap_fixed<48, {48 - in_types[dt].frac}> accum_t;\n{p.config}}};\n"
                f"static const long long levels_{name}[{1 << bits}] = {{{', '.join(str(v) for v in levels)}}};\n")
            calls.append(f"bad += sweep_custom<{name}, {dt} >(levels_{name});")
    program = (r"""
#include <cstdio>
#include "ap_fixed.h"
#include "ap_int.h"
#include "nnet_vecq_products.h"

long long checked = 0;

template <class C, class data_T> int sweep_custom(const long long *levels) {
    int bad = 0;
    const int lo = -(1 << (C::bits - 1)), hi = (1 << (C::bits - 1)) - 1;
    for (int c = lo; c <= hi; c++) {
        typename C::weight_t code = c;
        const long long d = levels[c - lo];
        for (long long m = 0; m < (1LL << data_T::width); m++) {
            data_T x;
            x.range(data_T::width - 1, 0) = m;
            typename C::term_t got = nnet::vecq_product<data_T, C>(x, code);
            // exact reference: the mantissa product as a 64-bit integer, compared bit for bit
            long long xm = x.range(data_T::width - 1, 0).to_int64();
            if (x < 0)
                xm -= 1LL << data_T::width;
            ap_fixed<64, 64 - (data_T::width - data_T::iwidth)> want;
            want.range(63, 0) = ap_int<64>(xm * d).range(63, 0);
            // the kernels' path: acc += x * d from a non-zero start (vecq_mac)
            const typename C::accum_t start = (c * 3 - 1) * 0.25;
            typename C::accum_t acc = start;
            nnet::vecq_mac<data_T, C>(acc, x, code);
            if (got != want || acc != start + want) {
                if (bad < 5)
                    printf("bits=%u c=%d d=%lld x=%s: got %s, acc %s\n", C::bits, c, d, x.to_string(10).c_str(),
                           got.to_string(10).c_str(), acc.to_string(10).c_str());
                bad++;
            }
            checked++;
        }
    }
    return bad;
}
""" + "".join(structs) + "\nint main() {\n    int bad = 0;\n    " + "\n    ".join(calls)
               + '\n    printf("CHECKED: %lld\\nMISMATCHES: %d\\n", checked, bad);\n    return bad != 0;\n}\n')
    return program, kinds


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_custom_table_products_equal_plain_products(tmp_path):
    """Every custom table's product class (addsub / shift_add / ROM multiply), every code, every
    input of a signed and an unsigned type: x * levels[c] exactly, with the Python-chosen term_t."""
    program, kinds = _custom_program()
    assert set(kinds) == {"addsub", "shift_add", "multiply"}
    src = tmp_path / "custom.cpp"
    src.write_text(program)
    exe = tmp_path / "custom"
    run = compile_and_run(src, exe)
    assert int(run.stdout.split("CHECKED:")[1].split()[0]) > 50_000


def test_product_classes_have_no_multiply_where_none_is_promised():
    """addsub and shift_add (vecq_product_digits, N = 2) are written without '*'; the ROM
    multiply carries the bindings."""
    text = PRODUCTS_HEADER.read_text()
    assert "struct vecq_product_shift_add : vecq_product_digits<data_T, CONFIG_T, 2> {};" in text
    for start, end in (("struct vecq_product_addsub {", "// every level a sum of at most N"),
                       ("struct vecq_product_digits {", "// any other table")):
        body = text[text.index(start):text.index(end)]
        assert "*" not in "\n".join(line.split("//")[0] for line in body.splitlines())
    rom = text[text.index("struct vecq_product_rom {"):text.index("// x * levels[c] by the layer's product class")]
    assert "vecq_bound_mul<typename CONFIG_T::term_t, CONFIG_T::multiplier>::mul(x, d)" in rom
    bound = text[text.index("struct vecq_bound_mul {"):text.index("struct vecq_product_named {")]
    assert "impl=fabric" in bound and "impl=dsp" in bound


@pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")
def test_every_kernel_header_compiles_on_its_own(tmp_path):
    """One header per operator (issue 20): each includes what it uses, and none grew past ~300 lines."""
    from kernel_build import AP_TYPES, NNET_UTILS

    headers = sorted(TEMPLATE_DIR.glob("nnet_vecq_*.h"))
    assert len(headers) >= 7
    for h in headers:
        assert len(h.read_text().splitlines()) <= 300, h.name
        src = tmp_path / f"{h.stem}.cpp"
        src.write_text(f'#include "{h.name}"\nint main() {{ return 0; }}\n')
        build = subprocess.run(["g++", "-std=c++11", "-fsyntax-only", f"-I{AP_TYPES}", f"-I{NNET_UTILS}",
                                f"-I{TEMPLATE_DIR}", str(src)], capture_output=True, text=True)
        assert build.returncode == 0, (h.name, build.stderr[-2000:])
