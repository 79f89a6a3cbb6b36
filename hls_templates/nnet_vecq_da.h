// Distributed arithmetic (strategy distributed_arithmetic, issue 21): a weighted layer at
// reuse_factor 1 computes its integer product acc = x . d with da4ml's adder graph for its
// constant matrix d, which vecq_hw (hls/da.py) emits into the layer's config struct:
//     CONFIG_T::da_product(x, acc)   one line per adder, every value in the ap_fixed type of its
//                                    da4ml interval (exact), acc converted into accum_t (exact:
//                                    accum_t holds the worst-case sum)
// followed by OUR per-channel scale, bias and ONE requantisation (vecq_requant_all,
// nnet_vecq_common.h): the contract of nnet_vecq_common.h, with the same types as the other kernels.
//   dense:     x = the input vector, d = levels[codes] (n_in x n_out)
//   conv2d:    x = the window of one output pixel in weight-table order (kh, kw, c_in), zeros in
//              the padding; d = (kh * kw * c_in) x n_filt; one pixel per cycle (II = 1)
//   depthwise: the same kernel: d is block-diagonal ((kh * kw * c) x c, channel c's window feeds
//              output c only)
// io_stream: the input packs are read into an array, the array kernel runs, the outputs leave as
// packs (a conv holds a whole input frame: no line buffer in this form).
#ifndef NNET_VECQ_DA_H_
#define NNET_VECQ_DA_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_stream.h"

namespace nnet {

template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                   const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS PIPELINE II=1
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    CONFIG_T::template da_product<data_T>(data, acc);
    vecq_requant_all<res_T, CONFIG_T, CONFIG_T::n_out, CONFIG_T::n_out>(acc, res, 0, scale, bias);
}

// window[(kh * filt_width + kw) * n_chan + c] = data[ih, iw, c] of output pixel (oh, ow); 0 in the padding
template <class data_T, typename CONFIG_T>
void vecq_da_window(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan], unsigned oh,
                    unsigned ow, data_T window[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan]) {
    #pragma HLS INLINE
VecQDaKh:
    for (unsigned kh = 0; kh < CONFIG_T::filt_height; kh++) {
        #pragma HLS UNROLL
    VecQDaKw:
        for (unsigned kw = 0; kw < CONFIG_T::filt_width; kw++) {
            #pragma HLS UNROLL
            const int ih = int(oh * CONFIG_T::stride_height + kh) - int(CONFIG_T::pad_top);
            const int iw = int(ow * CONFIG_T::stride_width + kw) - int(CONFIG_T::pad_left);
            const bool inside = ih >= 0 && iw >= 0 && ih < int(CONFIG_T::in_height) && iw < int(CONFIG_T::in_width);
        VecQDaChan:
            for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
                #pragma HLS UNROLL
                window[(kh * CONFIG_T::filt_width + kw) * CONFIG_T::n_chan + c] =
                    inside ? data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c] : data_T(0);
            }
        }
    }
}

// Conv2D / depthwise: one output pixel per cycle through the one adder graph
template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                    res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt],
                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
VecQDaRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQDaCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=1
            data_T window[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan];
            #pragma HLS ARRAY_PARTITION variable=window complete
            typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
            #pragma HLS ARRAY_PARTITION variable=acc complete
            vecq_da_window<data_T, CONFIG_T>(data, oh, ow, window);
            CONFIG_T::template da_product<data_T>(window, acc);
            vecq_requant_all<res_T, CONFIG_T, CONFIG_T::n_filt, CONFIG_T::out_height * CONFIG_T::out_width *
                                                                     CONFIG_T::n_filt>(
                acc, res, (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt, scale, bias);
        }
    }
}

// the array kernels as io_stream layers (KERNEL: vecq_da_dense_array / vecq_da_conv2d_array)
template <class data_T, class res_T, typename CONFIG_T, class KERNEL>
void vecq_da_stream(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                    const typename CONFIG_T::scale_t *scale, const typename CONFIG_T::bias_t *bias) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
VecQDaRead:
    for (unsigned p = 0; p < CONFIG_T::n_in / data_T::size; p++) {
        #pragma HLS PIPELINE
        data_T pack = data_stream.read();
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            data[p * data_T::size + k] = pack[k];
        }
    }
    KERNEL::template run<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, scale, bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

struct vecq_da_dense_array {
    template <class x_T, class y_T, typename CONFIG_T>
    static void run(x_T *data, y_T *res, const typename CONFIG_T::scale_t *scale,
                    const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
        vecq_da_dense<x_T, y_T, CONFIG_T>(data, res, scale, bias);
    }
};

struct vecq_da_conv2d_array {
    template <class x_T, class y_T, typename CONFIG_T>
    static void run(x_T *data, y_T *res, const typename CONFIG_T::scale_t *scale,
                    const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
        vecq_da_conv2d<x_T, y_T, CONFIG_T>(data, res, scale, bias);
    }
};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                   const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    vecq_da_stream<data_T, res_T, CONFIG_T, vecq_da_dense_array>(data_stream, res_stream, scale, bias);
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    vecq_da_stream<data_T, res_T, CONFIG_T, vecq_da_conv2d_array>(data_stream, res_stream, scale, bias);
}

} // namespace nnet

#endif
