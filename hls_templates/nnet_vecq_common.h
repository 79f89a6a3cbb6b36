// vecq_hw low-bit kernels for hls4ml (registered through hls4ml's extension API, one header per
// operator like hls4ml's nnet_utils): this header holds what every kernel shares.
//
// Arithmetic contract (see vecq_hw docs): per output channel j
//     acc_j = sum_i x_i * d_ij      in CONFIG_T::accum_t (exact: width from the worst-case bound)
//     y_j   = acc_j * s_j + b_j     exact (ap_fixed products and sums are full precision)
//     out_j = (res_T) y_j           the ONE rounding/overflow step, in the output type's modes
// The weight is stored as its k-bit code c (ap_int<k>); d = levels[c] is the layer's level table,
// and x * d is computed by the layer's product class (nnet_vecq_products.h).
//
//   nnet_vecq_common.h        configs of the weighted layers, vecq_requant, small shared loops
//   nnet_vecq_products.h      the product classes and vecq_mac (acc += x * d)
//   nnet_vecq_fold.h          the folded product loop (reuse_factor > 1) of dense and conv
//   nnet_vecq_stream.h        io_stream helpers: line buffer rows, packing values into streams
//   nnet_vecq_dense.h, nnet_vecq_conv.h, nnet_vecq_depthwise.h, nnet_vecq_pool.h,
//   nnet_vecq_global_pool.h   one operator each
#ifndef NNET_VECQ_COMMON_H_
#define NNET_VECQ_COMMON_H_

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
    static const bool psum = false; // issue 21: a folded cycle's per-output partial sums in psum_t
    static const bool overlap = false; // issue 21: a folded conv requantises during the next pixel (vecq_fold_row)
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

// DepthwiseConv2D: one kh x kw filter per channel (nnet_vecq_depthwise.h)
struct vecq_depthwise_config : vecq_conv2d_config {};

// The one rounding of the contract: acc * s + b is exact in ap_types, then converted once.
template <class res_T, class CONFIG_T>
res_T vecq_requant(typename CONFIG_T::accum_t acc, typename CONFIG_T::scale_t s, typename CONFIG_T::bias_t b) {
    #pragma HLS INLINE
    return (res_T)(acc * s + b);
}

// acc[j] = 0 for every j < N, all at once
template <class acc_T, unsigned N> void vecq_clear(acc_T acc[N]) {
    #pragma HLS INLINE
VecQClear:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        acc[j] = 0;
    }
}

// res[o0 + j] = vecq_requant(acc[j], scale[j], bias[j]) for every j < N, all at once
template <class res_T, class CONFIG_T, unsigned N, unsigned N_RES>
void vecq_requant_all(const typename CONFIG_T::accum_t acc[N], res_T res[N_RES], unsigned o0,
                      const typename CONFIG_T::scale_t scale[N], const typename CONFIG_T::bias_t bias[N]) {
    #pragma HLS INLINE
VecQRequantAll:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS UNROLL
        res[o0 + j] = vecq_requant<res_T, CONFIG_T>(acc[j], scale[j], bias[j]);
    }
}

} // namespace nnet

#endif
