// Pool2D with any stride (hls4ml's streaming pool asserts stride == pool size): max keeps the
// input type; average sums the window exactly in accum_t and multiplies by 2^-log2_area
// (exact, the window is a power of two), then converts to res_T (exact by Model.check).
#ifndef NNET_VECQ_POOL_H_
#define NNET_VECQ_POOL_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_stream.h"

namespace nnet {

struct vecq_pool2d_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1;
    static const unsigned pool_height = 1, pool_width = 1;
    static const unsigned stride_height = 1, stride_width = 1;
    static const unsigned average = 0, log2_area = 0;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> accum_t;
};

// One output pixel (oh, ow), every channel at once, into out[o0 + c]. ROWS = 0: src is the whole
// input (array kernel); else a line buffer of ROWS rows (input row r in buffer row r % ROWS).
template <class x_T, class y_T, typename CONFIG_T, unsigned ROWS, unsigned N_SRC, unsigned N_OUT>
void vecq_pool_pixel(const x_T src[N_SRC], unsigned oh, unsigned ow, y_T out[N_OUT], unsigned o0) {
    #pragma HLS INLINE
    ap_ufixed<1, 1 - int(CONFIG_T::log2_area)> q; // 2^-log2_area, exactly
    q[0] = 1;
VecQPoolChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS UNROLL
        typename CONFIG_T::accum_t acc = 0;
        const unsigned h0 = oh * CONFIG_T::stride_height;
        x_T best = src[((ROWS ? h0 % ROWS : h0) * CONFIG_T::in_width + ow * CONFIG_T::stride_width) *
                           CONFIG_T::n_chan + c];
        for (unsigned kh = 0; kh < CONFIG_T::pool_height; kh++) {
            #pragma HLS UNROLL
            for (unsigned kw = 0; kw < CONFIG_T::pool_width; kw++) {
                #pragma HLS UNROLL
                const unsigned ih = oh * CONFIG_T::stride_height + kh, iw = ow * CONFIG_T::stride_width + kw;
                x_T x = src[((ROWS ? ih % ROWS : ih) * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c];
                if (CONFIG_T::average)
                    acc += x;
                else if (x > best)
                    best = x;
            }
        }
        if (CONFIG_T::average)
            out[o0 + c] = (y_T)(acc * q);
        else
            out[o0 + c] = (y_T)best;
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_pool2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                 res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan]) {
    static const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_out = CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_chan;
VecQPoolRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQPoolCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
            const unsigned o0 = (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_chan;
            vecq_pool_pixel<data_T, res_T, CONFIG_T, 0, n_in, n_out>(data, oh, ow, res, o0);
        }
    }
}

// io_stream Pool2D with a line buffer (issue 13), the structure of vecq_conv_stream_lines: the
// kernel keeps the last pool_height input rows (pool_height x in_width x n_chan values, never the
// frame; one row more when a stream pack can straddle two rows, so that the pack lands without
// overwriting a row still needed), emits each output row as soon as its last input row has
// arrived, and packs the pixels into res_T packs. No padding (valid pooling, as the array
// kernel). The window is exactly the array kernel's (vecq_pool_pixel: same first value for max,
// same accum_t sum and the one conversion acc * 2^-log2_area for average): bit-identical. The
// buffer is partitioned cyclically by n_chan so one pixel's channels are read in parallel; the
// output columns are pipelined at II = reuse_factor (one output pixel, all channels, per II), as
// the array kernel's.
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
                vecq_pool_pixel<x_T, y_T, CONFIG_T, rows, rows * row_len, CONFIG_T::n_chan>(lines, oh, ow, px, 0);
                vecq_stream_out<res_T, CONFIG_T::n_chan>(px, pack, fill, res_stream);
            }
            oh++;
        }
    }
}

} // namespace nnet

#endif
