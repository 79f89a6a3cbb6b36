// Distributed arithmetic (strategy distributed_arithmetic, issue 21): a weighted layer at
// reuse_factor 1 computes its integer product acc = x . d with da4ml's adder graph for its
// constant matrix d, which vecq_hw (hls/da.py) emits into the layer's config struct:
//     CONFIG_T::da_product(x, acc)   one line per adder, every value in the ap_fixed type of its
//                                    da4ml interval (exact), acc converted into accum_t (exact:
//                                    accum_t holds the worst-case sum)
// followed by OUR per-channel scale, bias and ONE requantisation (vecq_requant_all,
// nnet_vecq_common.h): the contract of nnet_vecq_common.h, with the same types as the other kernels.
// One kernel for every kind, x = the window of one output pixel in weight-table order
// ((kh * filt_width + kw) * n_chan + c), zeros in the padding; one pixel per cycle (II = 1):
//   conv2d:    d = (kh * kw * c_in) x n_filt
//   depthwise: d = (kh * kw * c) x c, block-diagonal (channel c's window feeds output c only)
//   dense:     a 1 x 1 filter on a 1 x 1 image of n_in channels: x = the input, d = n_in x n_out
// io_stream: the input packs are read into an array, the array kernel runs, the outputs leave as
// packs (a conv holds a whole input frame: no line buffer in this form).
#ifndef NNET_VECQ_DA_H_
#define NNET_VECQ_DA_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_conv.h"
#include "nnet_vecq_stream.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                    res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt],
                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    static const unsigned n_window = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan;
    // window tap p is the depthwise tap p of vecq_conv_taps: input channel p % n_chan at (kh, kw)
    typedef vecq_conv_taps<CONFIG_T, true, CONFIG_T::n_chan, 0> taps;
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
VecQDaRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQDaCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=1
            data_T window[n_window];
            #pragma HLS ARRAY_PARTITION variable=window complete
        VecQDaWindow:
            for (unsigned p = 0; p < n_window; p++) {
                #pragma HLS UNROLL
                unsigned c, i;
                window[p] = taps::tap(p, oh, ow, c, i) ? data[i] : data_T(0);
            }
            typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
            #pragma HLS ARRAY_PARTITION variable=acc complete
            CONFIG_T::template da_product<data_T>(window, acc);
            vecq_requant_all<res_T, CONFIG_T, CONFIG_T::n_filt,
                             CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt>(
                acc, res, (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt, scale, bias);
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    vecq_read_packs<data_T, CONFIG_T::n_in>(data_stream, data);
    vecq_da_conv2d<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, scale, bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

} // namespace nnet

#endif
