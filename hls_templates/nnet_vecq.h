// vecq_hw low-bit kernels for hls4ml (registered through hls4ml's extension API).
//
// Arithmetic contract (see vecq_hw docs): per output channel j
//     acc_j = sum_i x_i * d_ij      in CONFIG_T::accum_t (exact: width from the worst-case bound)
//     y_j   = acc_j * s_j + b_j     exact (ap_fixed products and sums are full precision)
//     out_j = (res_T) y_j           the ONE rounding/overflow step, in the output type's modes
// The weight is stored as its k-bit code c (ap_int<k>); the multiplier is d = 2c + 1
// (encoding 0, 'odd') or d = c (encoding 1, 'int').
//   k = 1      : no multiplier: add or subtract x
//   k = 2..4   : shift-and-add over the code bits (with constant weights this folds to shifts+adds)
//   k = 5..8   : one multiply, bound to fabric (LUTs) / DSP / tool choice by CONFIG_T::multiplier
#ifndef NNET_VECQ_H_
#define NNET_VECQ_H_

#include "ap_fixed.h"
#include "ap_int.h"
#include "hls_stream.h"
#include "nnet_common.h"

namespace nnet {

enum vecq_multiplier { vecq_mul_auto = 0, vecq_mul_dsp = 1, vecq_mul_fabric = 2 };

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

template <class data_T, class CONFIG_T> typename CONFIG_T::term_t vecq_product(data_T x, typename CONFIG_T::weight_t c) {
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
VecQDenseOut:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t acc = 0;
    VecQDenseIn:
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS UNROLL
            acc += vecq_product<data_T, CONFIG_T>(data[i], weights[i * CONFIG_T::n_out + j]);
        }
        res[j] = vecq_requant<res_T, CONFIG_T>(acc, scale[j], bias[j]);
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
            acc += vecq_product<data_T, CONFIG_T>(data[i], weights[i * CONFIG_T::n_out + j]);
        }
        res[j] = vecq_requant<res_T, CONFIG_T>(acc, scale[j], bias[j]);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    if (CONFIG_T::latency)
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
VecQConvFilt:
    for (unsigned f = 0; f < CONFIG_T::n_filt; f++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t acc = 0;
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
                    acc += vecq_product<data_T, CONFIG_T>(
                        data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c],
                        weights[((kh * CONFIG_T::filt_width + kw) * CONFIG_T::n_chan + c) * CONFIG_T::n_filt + f]);
                }
            }
        }
        res[(oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt + f] = vecq_requant<res_T, CONFIG_T>(acc, scale[f], bias[f]);
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
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

// io_stream: buffer one whole frame (channels-last), compute, stream the result pixels out.
template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                 const typename CONFIG_T::weight_t
                     weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_filt],
                 const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                 const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    static const unsigned n_data = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_res = CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt;
    typename data_T::value_type frame[n_data];
    #pragma HLS ARRAY_PARTITION variable=frame cyclic factor=CONFIG_T::n_chan
    typename res_T::value_type out[n_res];
    #pragma HLS ARRAY_PARTITION variable=out cyclic factor=CONFIG_T::n_filt
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
VecQConvRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        #pragma HLS PIPELINE
        data_T pack = data_stream.read();
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            frame[p * data_T::size + k] = pack[k];
        }
    }
VecQConvRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQConvCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
            vecq_conv2d_pixel<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(frame, out, oh, ow,
                                                                                                  weights, scale, bias);
        }
    }
VecQConvWrite:
    for (unsigned p = 0; p < n_res / res_T::size; p++) {
        #pragma HLS PIPELINE
        res_T pack;
        PRAGMA_DATA_PACK(pack)
        for (unsigned k = 0; k < res_T::size; k++) {
            #pragma HLS UNROLL
            pack[k] = out[p * res_T::size + k];
        }
        res_stream.write(pack);
    }
}

} // namespace nnet

#endif
