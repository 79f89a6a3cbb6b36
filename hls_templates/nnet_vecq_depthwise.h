// DepthwiseConv2D: one kh x kw filter per channel; weights (kh, kw, c); same contract as conv
//     acc_c = sum_{kh,kw} x[ih, iw, c] * levels[code[kh, kw, c]];  out = (res_T)(acc_c * s_c + b_c)
// The conv kernels of nnet_vecq_conv.h with DW = true (filter = channel).
#ifndef NNET_VECQ_DEPTHWISE_H_
#define NNET_VECQ_DEPTHWISE_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_conv.h"

namespace nnet {

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
    vecq_conv_pixels<data_T, res_T, CONFIG_T, true, CONFIG_T::n_chan>(data, res, weights, scale, bias);
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

} // namespace nnet

#endif
