// x * d for one k-bit weight code c, d = levels[c]: one class per product kind, chosen in Python
// from the table's shape and bound in the config struct (`template <class x_T, class C> using
// product = ...`), like hls4ml's nnet_mult.h:
//   vecq_product_named     the named tables d = 2c + 1 ('odd', encoding 0) / d = c ('int', 1):
//       no multiplier (issue 21, nnet_vecq_select.h): x and 3x once per input, then per two code
//       bits one select and one add/sub (radix-4 digits); k >= 5 bound to a DSP (CONFIG_T::multiplier
//       = dsp, as the estimate's mapping counts it): one multiply on the DSP instead
//   vecq_product_addsub    any table of -1/0/+1: add, subtract or skip x
//   vecq_product_shift_add every level a sum of <= 2 signed powers of two: two shifted copies of x
//   vecq_product_shift_add_n  the same with CONFIG_T::n_terms copies (ESB, issue 14)
//   vecq_product_select    a table with a select plan (issue 21, vecq_hw/hls/select.py: ESB at
//                          k = b - 2, linear tables): its multiples of x once per input, then one
//                          select and one add/sub per group of <= 2 code bits
//   vecq_product_rom       any other table: a multiplier by the level read from a constant ROM
//                          (CONFIG_T::level), bound by CONFIG_T::multiplier (auto / dsp / fabric)
// The kernels accumulate through each class's mac(acc, x, c), acc += x * d: the multiplier-free
// classes add their shifted copies of x straight into acc (see vecq_mac below for why that is
// exact); product(x, c) is the same value as one term_t, kept for the kernel tests and the ROM path.
// Each class names operand_t, what x becomes once for all its products (vecq_operand): x in accum_t,
// or x with its multiples (x, 3x, ...) for the select classes, shared by every output it feeds.
#ifndef NNET_VECQ_PRODUCTS_H_
#define NNET_VECQ_PRODUCTS_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_select.h"

namespace nnet {

template <class CONFIG_T> struct vecq_decode {
    typedef ap_int<CONFIG_T::bits + 2> d_t;
    static d_t decode(typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        d_t d = c;
        if (CONFIG_T::encoding == 0)
            d = (d_t)(d << 1) + (d_t)1;
        return d;
    }
};

// x * d in term_T by one multiplier, bound by MUL (vecq_multiplier): the tool's choice, fabric
// (LUTs) or DSP. Shared by the named tables' DSP binding (k >= 5) and the ROM tables.
template <class term_T, unsigned MUL> struct vecq_bound_mul {
    template <class x_T, class d_T> static term_T mul(x_T x, d_T d) {
        #pragma HLS INLINE
        term_T p = x * d;
        return p;
    }
};
template <class term_T> struct vecq_bound_mul<term_T, vecq_mul_fabric> {
    template <class x_T, class d_T> static term_T mul(x_T x, d_T d) {
        #pragma HLS INLINE
        term_T p = x * d;
        #pragma HLS BIND_OP variable=p op=mul impl=fabric
        return p;
    }
};
template <class term_T> struct vecq_bound_mul<term_T, vecq_mul_dsp> {
    template <class x_T, class d_T> static term_T mul(x_T x, d_T d) {
        #pragma HLS INLINE
        term_T p = x * d;
        #pragma HLS BIND_OP variable=p op=mul impl=dsp
        return p;
    }
};

// issue 21: the radix-4 select form (nnet_vecq_select.h): x and 3x once per input (operand_t), then
// one select and one add/sub per two code bits (at k = 5..8 2.5-3x fewer yosys LUTs than a fabric
// multiplier, benchmarks/results/products.md); k >= 5 bound to a DSP: one multiply, x the operand.
template <class data_T, class CONFIG_T, bool SELECT> struct vecq_named_impl {
    typedef typename CONFIG_T::accum_t acc_t;
    typedef vecq_x13<acc_t> operand_t;
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::term_t p = 0;
        vecq_radix4<CONFIG_T::bits, CONFIG_T::encoding>::add(p, vecq_x13<typename CONFIG_T::term_t>(x), c);
        return p;
    }
    static void mac(acc_t &acc, const operand_t &xo, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        vecq_radix4<CONFIG_T::bits, CONFIG_T::encoding>::add(acc, xo, c);
    }
};
template <class data_T, class CONFIG_T> struct vecq_named_impl<data_T, CONFIG_T, false> {
    typedef data_T operand_t;
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        return vecq_bound_mul<typename CONFIG_T::term_t, CONFIG_T::multiplier>::mul(x, vecq_decode<CONFIG_T>::decode(c));
    }
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        acc += product(x, c);
    }
};
template <class data_T, class CONFIG_T> struct vecq_product_named {
    typedef vecq_named_impl<data_T, CONFIG_T, (CONFIG_T::bits <= 4 || CONFIG_T::multiplier != vecq_mul_dsp)> impl;
    typedef typename impl::operand_t operand_t; // x and 3x, or x (the DSP multiplier's operand)
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        return impl::product(x, c);
    }
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &xo, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        impl::mac(acc, xo, c);
    }
};

// index of a code in the level table (code -2^(k-1) first)
template <class CONFIG_T> unsigned vecq_level_index(typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    ap_int<CONFIG_T::bits + 1> i = c;
    i += (1 << (CONFIG_T::bits - 1));
    return (unsigned)i.to_int();
}

// every level is -1, 0 or +1 (CONFIG_T::level): add, subtract or skip x, no multiplier
template <class data_T, class CONFIG_T> struct vecq_product_addsub {
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::term_t xs = x;
        const int d = CONFIG_T::level(vecq_level_index<CONFIG_T>(c));
        if (d > 0)
            return xs;
        if (d < 0)
            return (typename CONFIG_T::term_t)(-xs);
        return (typename CONFIG_T::term_t)0;
    }
    typedef typename CONFIG_T::accum_t operand_t; // x once in accum_t, shared by every product of x
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &xa, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        const int d = CONFIG_T::level(vecq_level_index<CONFIG_T>(c));
        if (d > 0)
            acc += xa;
        else if (d < 0)
            acc -= xa;
    }
};

// every level a sum of at most N signed powers of two (CONFIG_T::digit_sign / digit_shift, N
// columns, the canonical signed digits): N shifted copies of x and N - 1 adders, no multiplier;
// term_t holds every x 2^e exactly. shift_add (N = 2) and ESB's shift_add_n are this class.
// add(): acc +/-= xs << e for each digit of code c, in T (term_t for product, accum_t for mac).
template <class data_T, class CONFIG_T, unsigned N> struct vecq_product_digits {
    template <class T> static void add(T &acc, const T &xs, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        const unsigned i = vecq_level_index<CONFIG_T>(c);
        for (unsigned k = 0; k < N; k++) {
            #pragma HLS UNROLL
            const int s = CONFIG_T::digit_sign(i, k);
            T t = xs << CONFIG_T::digit_shift(i, k);
            if (s > 0)
                acc += t;
            else if (s < 0)
                acc -= t;
        }
    }
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::term_t xs = x;
        typename CONFIG_T::term_t p = 0;
        add(p, xs, c);
        return p;
    }
    typedef typename CONFIG_T::accum_t operand_t; // x once in accum_t, shared by every product of x
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &xa, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        add(acc, xa, c);
    }
};

// every level is s1 2^e1 + s2 2^e2 with s in {-1, 0, +1}: two shifted copies of x and one adder
template <class data_T, class CONFIG_T> struct vecq_product_shift_add : vecq_product_digits<data_T, CONFIG_T, 2> {};

// issue 14 (ESB): every level a sum of at most CONFIG_T::n_terms signed powers of two
// (vecq_product_digits above): n_terms shifted copies of x and n_terms - 1 adders, no multiplier
template <class data_T, class CONFIG_T>
struct vecq_product_shift_add_n : vecq_product_digits<data_T, CONFIG_T, CONFIG_T::n_terms> {};
// end of vecq_product_shift_add_n

// issue 21: a table with a select plan (vecq_hw/hls/select.py; ESB at k = b - 2, linear tables):
// the plan's multiples of x once per input (operand_t), one select and one add/sub per code-bit group
template <class data_T, class CONFIG_T> struct vecq_product_select {
    typedef vecq_multiples<typename CONFIG_T::accum_t, CONFIG_T> operand_t;
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::term_t p = 0;
        vecq_select_groups<CONFIG_T>::add(p, vecq_multiples<typename CONFIG_T::term_t, CONFIG_T>(x), c);
        return p;
    }
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &ms, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        vecq_select_groups<CONFIG_T>::add(acc, ms, c);
    }
};

// any other table: d read from the constant level ROM, one multiply bound by CONFIG_T::multiplier
template <class data_T, class CONFIG_T> struct vecq_product_rom {
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::level_t d = CONFIG_T::level(vecq_level_index<CONFIG_T>(c));
        return vecq_bound_mul<typename CONFIG_T::term_t, CONFIG_T::multiplier>::mul(x, d);
    }
    typedef data_T operand_t; // the multiplier's own operand
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        acc += product(x, c);
    }
};

// x * levels[c] by the layer's product class
template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_product(data_T x, typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    return CONFIG_T::template product<data_T, CONFIG_T>::product(x, c);
}

// acc += x * levels[c] by the layer's product class (issue 16: the C simulation spends most of
// its time here). The multiplier-free classes add shifted copies of x into acc with no term_t
// temporary: the same adders, a third of the ap_types operations per product. Exact: accum_t
// has x's fraction bits (xa = x is exact) and wraps (AP_WRAP), so after every + or - (and every
// << of xa) acc equals the true partial sum modulo 2^W; the final sum lies in accum_t's range
// (its width comes from the worst-case bound), so it is the true sum.
// vecq_operand(x) is x in the class's operand type (accum_t for the shift-and-add classes): a
// kernel that multiplies one x by many weights converts it once and calls vecq_mac_op.
template <class data_T, class CONFIG_T> struct vecq_operand_of {
    typedef typename CONFIG_T::template product<data_T, CONFIG_T>::operand_t type;
};
template <class data_T, class CONFIG_T> typename vecq_operand_of<data_T, CONFIG_T>::type vecq_operand(data_T x) {
    #pragma HLS INLINE
    return x;
}
template <class data_T, class CONFIG_T>
void vecq_mac_op(typename CONFIG_T::accum_t &acc, const typename vecq_operand_of<data_T, CONFIG_T>::type &xo,
                 typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    CONFIG_T::template product<data_T, CONFIG_T>::mac(acc, xo, c);
}
template <class data_T, class CONFIG_T>
void vecq_mac(typename CONFIG_T::accum_t &acc, data_T x, typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    vecq_mac_op<data_T, CONFIG_T>(acc, vecq_operand<data_T, CONFIG_T>(x), c);
}

// acc[j] += x * levels[weights[w0 + j]] for every j < N, all at once: x converted once for all N
template <class data_T, class CONFIG_T, unsigned N, unsigned N_W>
void vecq_mac_row(typename CONFIG_T::accum_t acc[N], data_T x, const typename CONFIG_T::weight_t weights[N_W],
                  unsigned w0) {
    #pragma HLS INLINE
    const typename vecq_operand_of<data_T, CONFIG_T>::type xo = vecq_operand<data_T, CONFIG_T>(x);
VecQMacRow:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        vecq_mac_op<data_T, CONFIG_T>(acc[j], xo, weights[w0 + j]);
    }
}

} // namespace nnet

#endif
