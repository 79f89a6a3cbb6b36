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
// io_stream: a conv keeps filt_height + 1 input rows (the line-buffer loop of nnet_vecq_conv.h);
// a dense layer reads its input whole, then the outputs leave as packs.
#ifndef NNET_VECQ_DA_H_
#define NNET_VECQ_DA_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_conv.h"
#include "nnet_vecq_stream.h"

namespace nnet {

// One output pixel through the adder graph: its window (ROWS = 0: src is the whole input; else a
// line buffer of ROWS rows, input row r in row r % ROWS), acc, and its n_filt outputs res[o0 + j].
// Window tap p is the depthwise tap p of vecq_conv_taps: input channel p % n_chan at (kh, kw).
template <class x_T, class y_T, typename CONFIG_T, unsigned ROWS, unsigned N_RES>
void vecq_da_pixel(const x_T *src, unsigned oh, unsigned ow, y_T res[N_RES], unsigned o0,
                   const typename CONFIG_T::scale_t *scale, const typename CONFIG_T::bias_t *bias) {
    #pragma HLS INLINE
    static const unsigned n_window = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan;
    typedef vecq_conv_taps<CONFIG_T, true, CONFIG_T::n_chan, ROWS> taps;
    x_T window[n_window];
    #pragma HLS ARRAY_PARTITION variable=window complete
VecQDaWindow:
    for (unsigned p = 0; p < n_window; p++) {
        #pragma HLS UNROLL
        unsigned c, i;
        window[p] = taps::tap(p, oh, ow, c, i) ? src[i] : x_T(0);
    }
    typename CONFIG_T::accum_t acc[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    CONFIG_T::template da_product<x_T>(window, acc);
    vecq_requant_all<y_T, CONFIG_T, CONFIG_T::n_filt, N_RES>(acc, res, o0, scale, bias);
}

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
            vecq_da_pixel<data_T, res_T, CONFIG_T, 0, CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt>(
                data, oh, ow, res, (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt, scale, bias);
        }
    }
}

// the adder-graph pixel for the line-buffer loop of nnet_vecq_conv.h (no weights): the whole
// output pixel, then its packs
struct vecq_da_lines_pixel : vecq_row_by_pixels<vecq_da_lines_pixel> {
    template <class x_T, class res_T, typename CONFIG_T, class W_T>
    static void emit(const x_T *lines, unsigned oh, unsigned ow, res_T &pack, unsigned &fill,
                     hls::stream<res_T> &res_stream, W_T, const typename CONFIG_T::scale_t *scale,
                     const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
        typename res_T::value_type px[CONFIG_T::n_filt];
        #pragma HLS ARRAY_PARTITION variable=px complete
        vecq_da_pixel<x_T, typename res_T::value_type, CONFIG_T, CONFIG_T::filt_height + 1, CONFIG_T::n_filt>(
            lines, oh, ow, px, 0, scale, bias);
        vecq_stream_out<res_T, CONFIG_T::n_filt>(px, pack, fill, res_stream);
    }
};

// io_stream: a conv keeps filt_height + 1 input rows (vecq_conv_lines_loop, as the level-table
// convs); a dense layer (one 1 x 1 pixel) reads its input whole, as vecq_dense does
template <class data_T, class res_T, typename CONFIG_T>
void vecq_da_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    if (CONFIG_T::in_height * CONFIG_T::in_width > 1) {
        vecq_conv_lines_loop<data_T, res_T, CONFIG_T, CONFIG_T::n_filt, vecq_da_lines_pixel>(data_stream, res_stream,
                                                                                             0, scale, bias);
        return;
    }
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
