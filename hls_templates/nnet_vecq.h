// vecq_hw low-bit kernels for hls4ml (registered through hls4ml's extension API).
//
// Arithmetic contract (see vecq_hw docs): per output channel j
//     acc_j = sum_i x_i * d_ij      in CONFIG_T::accum_t (exact: width from the worst-case bound)
//     y_j   = acc_j * s_j + b_j     exact (ap_fixed products and sums are full precision)
//     out_j = (res_T) y_j           the ONE rounding/overflow step, in the output type's modes
// The weight is stored as its k-bit code c (ap_int<k>); d = levels[c] is the layer's level table.
// The product x * d is one class per product kind, chosen in Python from the table's shape and
// bound in the config struct (`template <class x_T, class C> using product = ...`), like
// hls4ml's nnet_mult.h:
//   vecq_product_named     the named tables d = 2c + 1 ('odd', encoding 0) / d = c ('int', 1):
//       k = 1      : no multiplier: add or subtract x
//       k = 2..4   : shift-and-add over the code bits (with constant weights: shifts + adds)
//       k = 5..8   : one multiply, bound to fabric (LUTs) / DSP / tool choice by CONFIG_T::multiplier
//   vecq_product_addsub    any table of -1/0/+1: add, subtract or skip x
//   vecq_product_shift_add every level a sum of <= 2 signed powers of two: two shifted copies of x
//   vecq_product_rom       any other table: a multiplier by the level read from a constant ROM
//                          (CONFIG_T::level), bound by CONFIG_T::multiplier like the named k >= 5
// The kernels accumulate through each class's mac(acc, x, c), acc += x * d: the multiplier-free
// classes add their shifted copies of x straight into acc (see vecq_mac below for why that is
// exact); product(x, c) is the same value as one term_t, kept for the kernel tests and the ROM path.
#ifndef NNET_VECQ_H_
#define NNET_VECQ_H_

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

enum vecq_multiplier { vecq_mul_auto = 0, vecq_mul_dsp = 1, vecq_mul_fabric = 2 };

template <class data_T, class CONFIG_T> struct vecq_product_named;

// compile-time type choice (kept free of <type_traits> for the HLS front ends)
template <bool C, class A, class B> struct vecq_pick { typedef A type; };
template <class A, class B> struct vecq_pick<false, A, B> { typedef B type; };

struct vecq_dense_config {
    static const unsigned n_in = 1;
    static const unsigned n_out = 1;
    static const unsigned bits = 2;
    static const unsigned encoding = 0; // 0: d = 2c+1, 1: d = c
    static const unsigned multiplier = vecq_mul_auto;
    static const unsigned reuse_factor = 1;
    static const bool latency = true;
    typedef ap_int<2> weight_t;
    typedef ap_fixed<16, 6> term_t;
    typedef ap_fixed<16, 6> accum_t;
    typedef ap_fixed<16, 6> scale_t;
    typedef ap_fixed<16, 6> bias_t;
    // the product class (one per product kind, chosen in Python from the level table)
    template <class x_T, class C> using product = vecq_product_named<x_T, C>;
};

struct vecq_conv2d_config : vecq_dense_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1, n_filt = 1;
    static const unsigned filt_height = 1, filt_width = 1;
    static const unsigned stride_height = 1, stride_width = 1;
    static const unsigned pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

// ---------------------------------------------------------------------------------------------
// x * d for one weight code; the result type term_t holds |x| * (2^k - 1) exactly.
// ---------------------------------------------------------------------------------------------
template <class term_T, class data_T, class code_T, unsigned BITS, unsigned ENC> struct vecq_shift_add {
    static term_T product(data_T x, code_T c) {
        #pragma HLS INLINE
        term_T xs = x;
        term_T s = 0; // s = x * c, two's complement code bits: c = -c[k-1] 2^(k-1) + sum c[b] 2^b
        for (unsigned b = 0; b + 1 < BITS; b++) {
            #pragma HLS UNROLL
            if (c[b])
                s += (term_T)(xs << b);
        }
        if (c[BITS - 1])
            s -= (term_T)(xs << (BITS - 1));
        if (ENC == 0) {
            term_T t = (term_T)(s << 1) + xs; // d = 2c + 1
            return t;
        }
        return s;
    }
};

template <class term_T, class data_T, class code_T, unsigned ENC> struct vecq_shift_add<term_T, data_T, code_T, 1, ENC> {
    // k = 1: no multiplier at all
    static term_T product(data_T x, code_T c) {
        #pragma HLS INLINE
        term_T xs = x;
        if (ENC == 0)
            return c[0] ? (term_T)(-xs) : xs; // d = -1 or +1
        return c[0] ? (term_T)(-xs) : (term_T)0; // d = -1 or 0
    }
};

// acc += x * d for the named tables, k <= 4: the same shifted copies of x as vecq_shift_add,
// added into acc directly. d = 2c + 1 = 1 + sum_{b<k-1} c[b] 2^(b+1) - c[k-1] 2^k (encoding 0),
// d = c = sum_{b<k-1} c[b] 2^b - c[k-1] 2^(k-1) (encoding 1).
template <class acc_T, class code_T, unsigned BITS, unsigned ENC> struct vecq_shift_add_mac {
    static void mac(acc_T &acc, const acc_T &xa, code_T c) {
        #pragma HLS INLINE
        if (BITS == 1) { // no multiplier at all: add or subtract x (encoding 0), subtract or skip (1)
            if (c[0])
                acc -= xa;
            else if (ENC == 0)
                acc += xa;
            return;
        }
        const unsigned e = ENC == 0 ? 1 : 0;
        if (ENC == 0)
            acc += xa;
        for (unsigned b = 0; b + 1 < BITS; b++) {
            #pragma HLS UNROLL
            if (c[b])
                acc += (acc_T)(xa << (b + e));
        }
        if (c[BITS - 1])
            acc -= (acc_T)(xa << (BITS - 1 + e));
    }
};

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

template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_mul_fabric_(data_T x, typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    typename vecq_decode<CONFIG_T>::d_t d = vecq_decode<CONFIG_T>::decode(c);
    typename CONFIG_T::term_t p = x * d;
    #pragma HLS BIND_OP variable=p op=mul impl=fabric
    return p;
}

template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_mul_dsp_(data_T x, typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    typename vecq_decode<CONFIG_T>::d_t d = vecq_decode<CONFIG_T>::decode(c);
    typename CONFIG_T::term_t p = x * d;
    #pragma HLS BIND_OP variable=p op=mul impl=dsp
    return p;
}

template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_mul_auto_(data_T x, typename CONFIG_T::weight_t c) {
    #pragma HLS INLINE
    typename vecq_decode<CONFIG_T>::d_t d = vecq_decode<CONFIG_T>::decode(c);
    typename CONFIG_T::term_t p = x * d;
    return p;
}

template <class data_T, class CONFIG_T> struct vecq_product_named {
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        if (CONFIG_T::bits <= 4) {
            return vecq_shift_add<typename CONFIG_T::term_t, data_T, typename CONFIG_T::weight_t, CONFIG_T::bits,
                                  CONFIG_T::encoding>::product(x, c);
        } else if (CONFIG_T::multiplier == vecq_mul_fabric) {
            return vecq_mul_fabric_<data_T, CONFIG_T>(x, c);
        } else if (CONFIG_T::multiplier == vecq_mul_dsp) {
            return vecq_mul_dsp_<data_T, CONFIG_T>(x, c);
        }
        return vecq_mul_auto_<data_T, CONFIG_T>(x, c);
    }
    // k <= 4: x once in accum_t, shared by every product of x; k >= 5: x itself (the multiplier's operand)
    typedef typename vecq_pick<(CONFIG_T::bits <= 4), typename CONFIG_T::accum_t, data_T>::type operand_t;
    static operand_t operand(data_T x) {
        #pragma HLS INLINE
        return x;
    }
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &xo, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        if (CONFIG_T::bits <= 4)
            vecq_shift_add_mac<typename CONFIG_T::accum_t, typename CONFIG_T::weight_t, CONFIG_T::bits,
                               CONFIG_T::encoding>::mac(acc, xo, c);
        else
            acc += product(xo, c);
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
    static operand_t operand(data_T x) {
        #pragma HLS INLINE
        return x;
    }
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
template <class data_T, class CONFIG_T, unsigned N> struct vecq_product_digits {
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::term_t xs = x;
        typename CONFIG_T::term_t p = 0;
        const unsigned i = vecq_level_index<CONFIG_T>(c);
        for (unsigned k = 0; k < N; k++) {
            #pragma HLS UNROLL
            const int s = CONFIG_T::digit_sign(i, k);
            typename CONFIG_T::term_t t = xs << CONFIG_T::digit_shift(i, k);
            if (s > 0)
                p += t;
            else if (s < 0)
                p -= t;
        }
        return p;
    }
    typedef typename CONFIG_T::accum_t operand_t; // x once in accum_t, shared by every product of x
    static operand_t operand(data_T x) {
        #pragma HLS INLINE
        return x;
    }
    static void mac(typename CONFIG_T::accum_t &acc, const operand_t &xa, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        const unsigned i = vecq_level_index<CONFIG_T>(c);
        for (unsigned k = 0; k < N; k++) {
            #pragma HLS UNROLL
            const int s = CONFIG_T::digit_sign(i, k);
            if (s > 0)
                acc += (typename CONFIG_T::accum_t)(xa << CONFIG_T::digit_shift(i, k));
            else if (s < 0)
                acc -= (typename CONFIG_T::accum_t)(xa << CONFIG_T::digit_shift(i, k));
        }
    }
};

// every level is s1 2^e1 + s2 2^e2 with s in {-1, 0, +1}: two shifted copies of x and one adder
template <class data_T, class CONFIG_T> struct vecq_product_shift_add : vecq_product_digits<data_T, CONFIG_T, 2> {};

// any other table: d read from the constant level ROM, one multiply bound like the named k >= 5
template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_rom_fabric_(data_T x, typename CONFIG_T::level_t d) {
    #pragma HLS INLINE
    typename CONFIG_T::term_t p = x * d;
    #pragma HLS BIND_OP variable=p op=mul impl=fabric
    return p;
}

template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_rom_dsp_(data_T x, typename CONFIG_T::level_t d) {
    #pragma HLS INLINE
    typename CONFIG_T::term_t p = x * d;
    #pragma HLS BIND_OP variable=p op=mul impl=dsp
    return p;
}

template <class data_T, class CONFIG_T> struct vecq_product_rom {
    static typename CONFIG_T::term_t product(data_T x, typename CONFIG_T::weight_t c) {
        #pragma HLS INLINE
        typename CONFIG_T::level_t d = CONFIG_T::level(vecq_level_index<CONFIG_T>(c));
        if (CONFIG_T::multiplier == vecq_mul_fabric)
            return vecq_rom_fabric_<data_T, CONFIG_T>(x, d);
        if (CONFIG_T::multiplier == vecq_mul_dsp)
            return vecq_rom_dsp_<data_T, CONFIG_T>(x, d);
        typename CONFIG_T::term_t p = x * d;
        return p;
    }
    typedef data_T operand_t; // the multiplier's own operand
    static operand_t operand(data_T x) {
        #pragma HLS INLINE
        return x;
    }
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
    return CONFIG_T::template product<data_T, CONFIG_T>::operand(x);
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

// The one rounding of the contract: acc * s + b is exact in ap_types, then converted once.
template <class res_T, class CONFIG_T>
res_T vecq_requant(typename CONFIG_T::accum_t acc, typename CONFIG_T::scale_t s, typename CONFIG_T::bias_t b) {
    #pragma HLS INLINE
    return (res_T)(acc * s + b);
}

// ---------------------------------------------------------------------------------------------
// Dense
// ---------------------------------------------------------------------------------------------
// Latency: the whole layer in one pipeline stage group, every multiply unrolled.
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_latency(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                        const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                        const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                        const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    // every loop is unrolled: inputs outer, outputs inner only converts each input's operand once
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQDenseInit:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS UNROLL
        acc[j] = 0;
    }
VecQDenseIn:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        const typename vecq_operand_of<data_T, CONFIG_T>::type xo = vecq_operand<data_T, CONFIG_T>(data[i]);
    VecQDenseOut:
        for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
            #pragma HLS UNROLL
            vecq_mac_op<data_T, CONFIG_T>(acc[j], xo, weights[i * CONFIG_T::n_out + j]);
        }
    }
VecQDenseResult:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS UNROLL
        res[j] = vecq_requant<res_T, CONFIG_T>(acc[j], scale[j], bias[j]);
    }
}

// Resource: one output neuron every reuse_factor cycles (n_in products in parallel).
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_resource(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                         const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                         const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                         const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS ARRAY_PARTITION variable=weights block factor=CONFIG_T::n_in
    #pragma HLS ARRAY_PARTITION variable=data complete
VecQDenseOut:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        typename CONFIG_T::accum_t acc = 0;
    VecQDenseIn:
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS UNROLL
            vecq_mac<data_T, CONFIG_T>(acc, data[i], weights[i * CONFIG_T::n_out + j]);
        }
        res[j] = vecq_requant<res_T, CONFIG_T>(acc, scale[j], bias[j]);
    }
}

// ---------------------------------------------------------------------------------------------
// Folding (issue 13). R = CONFIG_T::reuse_factor > 1: the P products of one input (dense:
// n_in * n_out; conv: filt_height * filt_width * n_chan * n_filt per output pixel; depthwise:
// filt_height * filt_width * n_chan per pixel) are computed block = P / R at a time: R products
// share one multiplier slot, the reuse loop runs R iterations at II = 1, so the layer takes a
// new input (a new pixel) every R cycles. R divides P (checked in Python, hls/folding.py).
// Product p (in weight-table order) reads weights[p]; the table is reshaped cyclically by
// block (ARRAY_RESHAPE: word r holds products r * block .. r * block + block - 1), so the
// block slots read one wide ROM word per cycle (BIND_STORAGE lets the tool pick BRAM/LUTRAM).
// Exactness: the sum of the same products in another order. accum_t is sized from the bound
// sum_i max(|x_i d_ij|) per channel, and every partial sum of a subset lies within it (each
// term's range contains 0), so no order overflows: the result equals the unfolded kernel's.
// ---------------------------------------------------------------------------------------------
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_folded(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                       const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                       const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                       const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    static const unsigned n_prod = CONFIG_T::n_in * CONFIG_T::n_out;
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQDenseInit:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS UNROLL
        acc[j] = 0;
    }
VecQDenseReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
    VecQDenseBlock:
        for (unsigned b = 0; b < block; b++) {
            #pragma HLS UNROLL
            const unsigned p = r * block + b; // weights[i * n_out + j]
            vecq_mac<data_T, CONFIG_T>(acc[p % CONFIG_T::n_out], data[p / CONFIG_T::n_out], weights[p]);
        }
    }
    // the requantisation folds too: ceil(n_out / R) units, one per output every cycle
    static const unsigned n_requant = (CONFIG_T::n_out + CONFIG_T::reuse_factor - 1) / CONFIG_T::reuse_factor;
VecQDenseResult:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS UNROLL factor=n_requant
        res[j] = vecq_requant<res_T, CONFIG_T>(acc[j], scale[j], bias[j]);
    }
}

// Product p of output pixel (oh, ow) of a folded conv / depthwise (weight-table order, below):
// its filter f, input channel c and input pixel (ih, iw); false when the tap is in the zero
// padding (it contributes nothing). Shared by the array and the line-buffer kernels.
template <typename CONFIG_T, bool DW, unsigned N_FILT>
bool vecq_conv_tap(unsigned p, unsigned oh, unsigned ow, unsigned &f, unsigned &c, int &ih, int &iw) {
    #pragma HLS INLINE
    f = DW ? p % CONFIG_T::n_chan : p % N_FILT;
    const unsigned t = DW ? p : p / N_FILT; // (kh * filt_width + kw) * n_chan + c
    c = t % CONFIG_T::n_chan;
    const unsigned tap = t / CONFIG_T::n_chan;
    const unsigned kh = tap / CONFIG_T::filt_width, kw = tap % CONFIG_T::filt_width;
    ih = int(oh * CONFIG_T::stride_height + kh) - int(CONFIG_T::pad_top);
    iw = int(ow * CONFIG_T::stride_width + kw) - int(CONFIG_T::pad_left);
    return ih >= 0 && iw >= 0 && ih < int(CONFIG_T::in_height) && iw < int(CONFIG_T::in_width);
}

// Conv2D / depthwise, folded: one output pixel every R cycles (plus the pipeline depth).
// DW = false: product p = ((kh * filt_width + kw) * n_chan + c) * n_filt + f (conv weight order);
// DW = true:  product p = (kh * filt_width + kw) * n_chan + c, filter = channel c.
template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_folded(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                      res_T res[CONFIG_T::out_height * CONFIG_T::out_width * N_FILT],
                      const typename CONFIG_T::weight_t
                          weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                      const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    // the requantisation folds too: ceil(N_FILT / R) units
    static const unsigned n_requant = (N_FILT + CONFIG_T::reuse_factor - 1) / CONFIG_T::reuse_factor;
    typename CONFIG_T::accum_t acc[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQFoldRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQFoldCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
        VecQFoldInit:
            for (unsigned f = 0; f < N_FILT; f++) {
                #pragma HLS UNROLL
                acc[f] = 0;
            }
        VecQFoldReuse:
            for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
                #pragma HLS PIPELINE II=1
            VecQFoldBlock:
                for (unsigned b = 0; b < block; b++) {
                    #pragma HLS UNROLL
                    const unsigned p = r * block + b;
                    unsigned f, c;
                    int ih, iw;
                    if (!vecq_conv_tap<CONFIG_T, DW, N_FILT>(p, oh, ow, f, c, ih, iw))
                        continue; // zero padding contributes nothing
                    vecq_mac<data_T, CONFIG_T>(acc[f], data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c],
                                                             weights[p]);
                }
            }
        VecQFoldResult:
            for (unsigned f = 0; f < N_FILT; f++) {
                #pragma HLS PIPELINE II=1
                #pragma HLS UNROLL factor=n_requant
                res[(oh * CONFIG_T::out_width + ow) * N_FILT + f] = vecq_requant<res_T, CONFIG_T>(acc[f], scale[f], bias[f]);
            }
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    if (CONFIG_T::reuse_factor > 1)
        vecq_dense_folded<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
    else if (CONFIG_T::latency)
        vecq_dense_latency<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
    else
        vecq_dense_resource<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
VecQDenseRead:
    for (unsigned p = 0; p < CONFIG_T::n_in / data_T::size; p++) {
        #pragma HLS PIPELINE
        data_T pack = data_stream.read();
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            data[p * data_T::size + k] = pack[k];
        }
    }
    vecq_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, weights, scale, bias);
VecQDenseWrite:
    for (unsigned p = 0; p < CONFIG_T::n_out / res_T::size; p++) {
        #pragma HLS PIPELINE
        res_T pack;
        PRAGMA_DATA_PACK(pack)
        for (unsigned k = 0; k < res_T::size; k++) {
            #pragma HLS UNROLL
            pack[k] = res[p * res_T::size + k];
        }
        res_stream.write(pack);
    }
}

// ---------------------------------------------------------------------------------------------
// Conv2D, channels-last, zero padding handled here (no padding layer needed)
// ---------------------------------------------------------------------------------------------
template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d_pixel(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                       res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt], unsigned oh, unsigned ow,
                       const typename CONFIG_T::weight_t
                           weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_filt],
                       const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                       const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    #pragma HLS INLINE
    // every loop is unrolled: the order (input taps outer, filters inner) only lets one input's
    // operand be converted once for all filters (vecq_operand), the same products and sums
    typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQConvInit:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        acc[f] = 0;
    }
VecQConvKh:
    for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
        #pragma HLS UNROLL
    VecQConvKw:
        for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
            #pragma HLS UNROLL
            const int ih = int(oh * CONFIG_T::stride_height + kh) - int(CONFIG_T::pad_top);
            const int iw = int(ow * CONFIG_T::stride_width + kw) - int(CONFIG_T::pad_left);
            if (ih < 0 || iw < 0 || ih >= int(CONFIG_T::in_height) || iw >= int(CONFIG_T::in_width))
                continue; // zero padding contributes nothing
        VecQConvChan:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                const typename vecq_operand_of<data_T, CONFIG_T>::type xo =
                    vecq_operand<data_T, CONFIG_T>(data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c]);
                const unsigned w0 = ((kh * CONFIG_T::filt_width + kw) * CONFIG_T::n_chan + c) * CONFIG_T::n_filt;
            VecQConvFilt:
                for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
                    #pragma HLS UNROLL
                    vecq_mac_op<data_T, CONFIG_T>(acc[f], xo, weights[w0 + f]);
                }
            }
        }
    }
VecQConvResult:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        res[(oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt + f] = vecq_requant<res_T, CONFIG_T>(acc[f], scale[f], bias[f]);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d_unfolded(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                 res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt],
                 const typename CONFIG_T::weight_t
                     weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_filt],
                 const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                 const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
VecQConvRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQConvCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
            vecq_conv2d_pixel<data_T, res_T, CONFIG_T>(data, res, oh, ow, weights, scale, bias);
        }
    }
}

// the array conv: folded when reuse_factor > 1, else one pixel per II=1 cycle (all products unrolled)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                 res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt],
                 const typename CONFIG_T::weight_t
                     weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_filt],
                 const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                 const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    #pragma HLS INLINE
    if (CONFIG_T::reuse_factor > 1)
        vecq_conv_folded<data_T, res_T, CONFIG_T, false, CONFIG_T::n_filt>(data, res, weights, scale, bias);
    else
        vecq_conv2d_unfolded<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
}

// pack p of an input stream into a line buffer of ROWS rows of ROW_LEN values (input row r in
// buffer row r % ROWS); shared by the conv and pool line-buffer kernels
template <class data_T, unsigned ROWS, unsigned ROW_LEN>
void vecq_lines_store(typename data_T::value_type lines[ROWS * ROW_LEN], const data_T &in, unsigned p) {
    #pragma HLS INLINE
VecQLinesStore:
    for (unsigned k = 0; k < data_T::size; k++) {
        #pragma HLS UNROLL
        const unsigned e = p * data_T::size + k;
        lines[((e / ROW_LEN) % ROWS) * ROW_LEN + e % ROW_LEN] = in[k];
    }
}

// ---------------------------------------------------------------------------------------------
// io_stream convolutions with a line buffer (issue 13): the kernel keeps the last
// filt_height + 1 input rows ((filt_height + 1) x in_width x n_chan values, never the frame),
// computes each output row as soon as the last input row it needs has arrived, and streams its
// pixels out. Padding is never stored: taps outside the input contribute nothing (exactly the
// array kernel's skip). The extra row lets a pack that straddles two rows land without
// overwriting a row still needed (a pack is at most one row: static_assert). Products are
// folded as in vecq_conv_folded (R = reuse_factor; R = 1: all P products of a pixel at once).
// ---------------------------------------------------------------------------------------------
template <class x_T, class y_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_pixel_lines(const x_T lines[(CONFIG_T::filt_height + 1) * CONFIG_T::in_width * CONFIG_T::n_chan],
                           unsigned oh, unsigned ow, y_T px[N_FILT],
                           const typename CONFIG_T::weight_t
                               weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                           const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    #pragma HLS INLINE
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    typename CONFIG_T::accum_t acc[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQLineInit:
    for (unsigned f = 0; f < N_FILT; f++) {
        #pragma HLS UNROLL
        acc[f] = 0;
    }
VecQLineReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
    VecQLineBlock:
        for (unsigned b = 0; b < block; b++) {
            #pragma HLS UNROLL
            const unsigned p = r * block + b;
            unsigned f, c;
            int ih, iw;
            if (!vecq_conv_tap<CONFIG_T, DW, N_FILT>(p, oh, ow, f, c, ih, iw))
                continue; // zero padding contributes nothing
            vecq_mac<x_T, CONFIG_T>(acc[f],
                lines[((unsigned(ih) % rows) * CONFIG_T::in_width + unsigned(iw)) * CONFIG_T::n_chan + c], weights[p]);
        }
    }
VecQLineResult:
    for (unsigned f = 0; f < N_FILT; f++) {
        #pragma HLS UNROLL
        px[f] = vecq_requant<y_T, CONFIG_T>(acc[f], scale[f], bias[f]);
    }
}

template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_stream_lines(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                            const typename CONFIG_T::weight_t
                                weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                            const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    typedef typename data_T::value_type x_T;
    typedef typename res_T::value_type y_T;
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_data = CONFIG_T::in_height * row_len;
    static const unsigned block =
        CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT) / CONFIG_T::reuse_factor;
    static_assert(data_T::size <= row_len, "vecq line buffer: a stream pack must not exceed one input row");
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    y_T px[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=px complete
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQLineRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const int rows_done = int(((p + 1) * data_T::size) / row_len); // input rows complete so far
        // every output row whose last needed input row has arrived (clipped to the input: bottom padding)
    VecQLineEmit:
        while (oh < CONFIG_T::out_height) {
            int last = int(oh * CONFIG_T::stride_height + CONFIG_T::filt_height - 1) - int(CONFIG_T::pad_top);
            if (last > int(CONFIG_T::in_height) - 1)
                last = int(CONFIG_T::in_height) - 1;
            if (last >= rows_done)
                break;
        VecQLineCols:
            for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
                vecq_conv_pixel_lines<x_T, y_T, CONFIG_T, DW, N_FILT>(lines, oh, ow, px, weights, scale, bias);
                for (unsigned f = 0; f < N_FILT; f++) {
                    pack[fill++] = px[f];
                    if (fill == res_T::size) {
                        res_stream.write(pack);
                        fill = 0;
                    }
                }
            }
            oh++;
        }
    }
}

// io_stream conv2d: line buffer (above)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                 const typename CONFIG_T::weight_t
                     weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_filt],
                 const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                 const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    vecq_conv_stream_lines<data_T, res_T, CONFIG_T, false, CONFIG_T::n_filt>(data_stream, res_stream, weights, scale,
                                                                             bias);
}

// ---------------------------------------------------------------------------------------------
// DepthwiseConv2D: one kh x kw filter per channel; weights (kh, kw, c); same contract as conv
//     acc_c = sum_{kh,kw} x[ih, iw, c] * levels[code[kh, kw, c]];  out = (res_T)(acc_c * s_c + b_c)
// ---------------------------------------------------------------------------------------------
struct vecq_depthwise_config : vecq_conv2d_config {};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_depthwise_conv2d_unfolded(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                           res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan],
                           const typename CONFIG_T::weight_t
                               weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan],
                           const typename CONFIG_T::scale_t scale[CONFIG_T::n_chan],
                           const typename CONFIG_T::bias_t bias[CONFIG_T::n_chan]) {
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
VecQDwRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQDwCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        VecQDwChan:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                typename CONFIG_T::accum_t acc = 0;
                for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
                    #pragma HLS UNROLL
                    for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
                        #pragma HLS UNROLL
                        const int ih = int(oh * CONFIG_T::stride_height + kh) - int(CONFIG_T::pad_top);
                        const int iw = int(ow * CONFIG_T::stride_width + kw) - int(CONFIG_T::pad_left);
                        if (ih < 0 || iw < 0 || ih >= int(CONFIG_T::in_height) || iw >= int(CONFIG_T::in_width))
                            continue; // zero padding contributes nothing
                        vecq_mac<data_T, CONFIG_T>(acc, data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c],
                                                              weights[(kh * CONFIG_T::filt_width + kw) * CONFIG_T::n_chan + c]);
                    }
                }
                res[(oh * CONFIG_T::out_width + ow) * CONFIG_T::n_chan + c] =
                    vecq_requant<res_T, CONFIG_T>(acc, scale[c], bias[c]);
            }
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_depthwise_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                           res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan],
                           const typename CONFIG_T::weight_t
                               weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan],
                           const typename CONFIG_T::scale_t scale[CONFIG_T::n_chan],
                           const typename CONFIG_T::bias_t bias[CONFIG_T::n_chan]) {
    #pragma HLS INLINE
    if (CONFIG_T::reuse_factor > 1)
        vecq_conv_folded<data_T, res_T, CONFIG_T, true, CONFIG_T::n_chan>(data, res, weights, scale, bias);
    else
        vecq_depthwise_conv2d_unfolded<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
}

// io_stream depthwise: line buffer (vecq_conv_stream_lines)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_depthwise_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                           const typename CONFIG_T::weight_t
                               weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan],
                           const typename CONFIG_T::scale_t scale[CONFIG_T::n_chan],
                           const typename CONFIG_T::bias_t bias[CONFIG_T::n_chan]) {
    vecq_conv_stream_lines<data_T, res_T, CONFIG_T, true, CONFIG_T::n_chan>(data_stream, res_stream, weights, scale,
                                                                            bias);
}

// ---------------------------------------------------------------------------------------------
// GlobalAvgPool2D: (h, w, c) -> (c,):  out_c = (res_T)(sum_{h,w} x[h, w, c] * mult)
// The sum is exact in accum_t (pinned: the exact sum type); mult is the pinned constant
// mantissa CONFIG_T::mult of mult_t (unsigned); sum * mult is a full-precision ap_fixed product,
// so the conversion to res_T is the ONE rounding.
// ---------------------------------------------------------------------------------------------
struct vecq_global_pool_config {
    static const unsigned n_pixels = 1, n_chan = 1;
    static const unsigned long long mult = 1;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> accum_t;
    typedef ap_ufixed<8, 0> mult_t;
};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_global_avg_pool(data_T data[CONFIG_T::n_pixels * CONFIG_T::n_chan], res_T res[CONFIG_T::n_chan]) {
    typename CONFIG_T::mult_t m;
    ap_uint<64> mm = CONFIG_T::mult;
    m.range(CONFIG_T::mult_t::width - 1, 0) = mm.range(CONFIG_T::mult_t::width - 1, 0);
VecQGapChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        typename CONFIG_T::accum_t acc = 0;
    VecQGapPix:
        for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
            acc += data[p * CONFIG_T::n_chan + c];
        }
        res[c] = (res_T)(acc * m);
    }
}

// io_stream GAP (issue 13): n_chan running sums, never the frame. Each value is added to its
// channel's sum as it streams in (PIPELINE II=1: one pack per cycle; the sums are completely
// partitioned so a pack's channels all add in the same cycle, a single-adder loop-carried
// dependency per channel); after the last pixel, the same single conversion (res_T)(sum * mult)
// as the array kernel. Same accum_t, same exact sums: bit-identical to the array kernel.
template <class data_T, class res_T, typename CONFIG_T>
void vecq_global_avg_pool(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream) {
    typedef typename res_T::value_type y_T;
    static const unsigned n_data = CONFIG_T::n_pixels * CONFIG_T::n_chan;
    static_assert(n_data % data_T::size == 0, "vecq GAP: the input packs must tile the frame");
    static_assert(CONFIG_T::n_chan % res_T::size == 0, "vecq GAP: the output packs must tile the channels");
    typename CONFIG_T::mult_t m;
    ap_uint<64> mm = CONFIG_T::mult;
    m.range(CONFIG_T::mult_t::width - 1, 0) = mm.range(CONFIG_T::mult_t::width - 1, 0);
    typename CONFIG_T::accum_t acc[CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQGapStreamInit:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        acc[c] = 0;
    }
    unsigned c0 = 0; // channel of the pack's first value
VecQGapStreamRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        #pragma HLS PIPELINE II=1
        data_T in = data_stream.read();
    VecQGapStreamPack:
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            // packs of whole pixels (hls4ml's io_stream): channel k % n_chan, a constant once unrolled
            const unsigned c = data_T::size % CONFIG_T::n_chan == 0 ? k % CONFIG_T::n_chan
                                                                     : (c0 + k) % CONFIG_T::n_chan;
            acc[c] += in[k];
        }
        c0 = (c0 + data_T::size) % CONFIG_T::n_chan;
    }
VecQGapStreamWrite:
    for (unsigned p = 0; p < CONFIG_T::n_chan / res_T::size; p++) {
        #pragma HLS PIPELINE
        res_T pack;
        PRAGMA_DATA_PACK(pack)
        for (unsigned k = 0; k < res_T::size; k++) {
            #pragma HLS UNROLL
            pack[k] = (y_T)(acc[p * res_T::size + k] * m);
        }
        res_stream.write(pack);
    }
}

// ---------------------------------------------------------------------------------------------
// Pool2D with any stride (hls4ml's streaming pool asserts stride == pool size): max keeps the
// input type; average sums the window exactly in accum_t and multiplies by 2^-log2_area
// (exact, the window is a power of two), then converts to res_T (exact by Model.check).
// ---------------------------------------------------------------------------------------------
struct vecq_pool2d_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1;
    static const unsigned pool_height = 1, pool_width = 1;
    static const unsigned stride_height = 1, stride_width = 1;
    static const unsigned average = 0, log2_area = 0;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> accum_t;
};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_pool2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                 res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan]) {
    ap_ufixed<1, 1 - int(CONFIG_T::log2_area)> q; // 2^-log2_area, exactly
    q[0] = 1;
VecQPoolRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQPoolCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        VecQPoolChan:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                typename CONFIG_T::accum_t acc = 0;
                data_T best = data[((oh * CONFIG_T::stride_height) * CONFIG_T::in_width + ow * CONFIG_T::stride_width) *
                                       CONFIG_T::n_chan + c];
                for (unsigned kh = 0; kh < CONFIG_T::pool_height; kh++) {
                    #pragma HLS UNROLL
                    for (unsigned kw = 0; kw < CONFIG_T::pool_width; kw++) {
                        #pragma HLS UNROLL
                        const unsigned ih = oh * CONFIG_T::stride_height + kh, iw = ow * CONFIG_T::stride_width + kw;
                        data_T x = data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c];
                        if (CONFIG_T::average)
                            acc += x;
                        else if (x > best)
                            best = x;
                    }
                }
                const unsigned o = (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_chan + c;
                if (CONFIG_T::average)
                    res[o] = (res_T)(acc * q);
                else
                    res[o] = (res_T)best;
            }
        }
    }
}

// io_stream Pool2D with a line buffer (issue 13), the structure of vecq_conv_stream_lines: the
// kernel keeps the last pool_height input rows (pool_height x in_width x n_chan values, never the
// frame; one row more when a stream pack can straddle two rows, so that the pack lands without
// overwriting a row still needed), emits each output row as soon as its last input row has
// arrived, and packs the pixels into res_T packs. No padding (valid pooling, as the array
// kernel). The window is exactly the array kernel's (same first value for max, same accum_t sum
// and the one conversion acc * 2^-log2_area for average): bit-identical. The buffer is
// partitioned cyclically by n_chan so one pixel's channels are read in parallel; the output
// columns are pipelined at II = reuse_factor (one output pixel, all channels, per II), as the
// array kernel's.
template <class x_T, class y_T, typename CONFIG_T, unsigned ROWS>
void vecq_pool_pixel_lines(const x_T lines[ROWS * CONFIG_T::in_width * CONFIG_T::n_chan], unsigned oh, unsigned ow,
                           y_T px[CONFIG_T::n_chan]) {
    #pragma HLS INLINE
    ap_ufixed<1, 1 - int(CONFIG_T::log2_area)> q; // 2^-log2_area, exactly
    q[0] = 1;
VecQPoolLineChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t acc = 0;
        x_T best = lines[(((oh * CONFIG_T::stride_height) % ROWS) * CONFIG_T::in_width + ow * CONFIG_T::stride_width) *
                             CONFIG_T::n_chan + c];
        for (unsigned kh = 0; kh < CONFIG_T::pool_height; kh++) {
            #pragma HLS UNROLL
            for (unsigned kw = 0; kw < CONFIG_T::pool_width; kw++) {
                #pragma HLS UNROLL
                const unsigned ih = oh * CONFIG_T::stride_height + kh, iw = ow * CONFIG_T::stride_width + kw;
                x_T x = lines[((ih % ROWS) * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c];
                if (CONFIG_T::average)
                    acc += x;
                else if (x > best)
                    best = x;
            }
        }
        if (CONFIG_T::average)
            px[c] = (y_T)(acc * q);
        else
            px[c] = (y_T)best;
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_pool2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream) {
    typedef typename data_T::value_type x_T;
    typedef typename res_T::value_type y_T;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_data = CONFIG_T::in_height * row_len;
    static const unsigned rows = CONFIG_T::pool_height + (row_len % data_T::size == 0 ? 0 : 1);
    static_assert(data_T::size <= row_len, "vecq pool line buffer: a stream pack must not exceed one input row");
    static_assert(n_data % data_T::size == 0, "vecq pool line buffer: the input packs must tile the frame");
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    y_T px[CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=px complete
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQPoolLineRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const unsigned rows_done = ((p + 1) * data_T::size) / row_len; // input rows complete so far
        // the output row whose last input row has just arrived (windows lie inside the input)
    VecQPoolLineEmit:
        while (oh < CONFIG_T::out_height && oh * CONFIG_T::stride_height + CONFIG_T::pool_height <= rows_done) {
        VecQPoolLineCols:
            for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
                #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
                vecq_pool_pixel_lines<x_T, y_T, CONFIG_T, rows>(lines, oh, ow, px);
                for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                    pack[fill++] = px[c];
                    if (fill == res_T::size) {
                        res_stream.write(pack);
                        fill = 0;
                    }
                }
            }
            oh++;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// issue 14 (ESB): every level a sum of at most CONFIG_T::n_terms signed powers of two
// (vecq_product_digits above): n_terms shifted copies of x and n_terms - 1 adders, no multiplier
// ---------------------------------------------------------------------------------------------
template <class data_T, class CONFIG_T>
struct vecq_product_shift_add_n : vecq_product_digits<data_T, CONFIG_T, CONFIG_T::n_terms> {};
// end of vecq_product_shift_add_n

} // namespace nnet

#endif
