// Conv2D, channels-last, zero padding handled here (no padding layer needed); the pixel, folded
// and line-buffer kernels here serve DepthwiseConv2D too (DW = true, nnet_vecq_depthwise.h).
// Weight-table order, product p of one output pixel:
//   DW = false: p = ((kh * filt_width + kw) * n_chan + c) * n_filt + f (conv weights (kh, kw, c, f));
//   DW = true:  p = (kh * filt_width + kw) * n_chan + c, filter = channel c (weights (kh, kw, c)).
#ifndef NNET_VECQ_CONV_H_
#define NNET_VECQ_CONV_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_fold.h"
#include "nnet_vecq_products.h"
#include "nnet_vecq_stream.h"

namespace nnet {

// Product p of output pixel (oh, ow) of a folded conv / depthwise: its filter f and its input
// value src[i]; false when the tap is in the zero padding (it contributes nothing). ROWS = 0: src
// is the whole input (array kernel); else a line buffer of ROWS rows (input row r in row r % ROWS).
template <typename CONFIG_T, bool DW, unsigned N_FILT, unsigned ROWS> struct vecq_conv_taps {
    static const unsigned group = DW ? 1 : N_FILT; // consecutive products reading one input value
    static bool tap(unsigned p, unsigned oh, unsigned ow, unsigned &f, unsigned &i) {
        #pragma HLS INLINE
        f = DW ? p % CONFIG_T::n_chan : p % N_FILT;
        const unsigned t = DW ? p : p / N_FILT; // (kh * filt_width + kw) * n_chan + c
        const unsigned c = t % CONFIG_T::n_chan;
        const unsigned tap = t / CONFIG_T::n_chan;
        const unsigned kh = tap / CONFIG_T::filt_width, kw = tap % CONFIG_T::filt_width;
        const int ih = int(oh * CONFIG_T::stride_height + kh) - int(CONFIG_T::pad_top);
        const int iw = int(ow * CONFIG_T::stride_width + kw) - int(CONFIG_T::pad_left);
        if (ih < 0 || iw < 0 || ih >= int(CONFIG_T::in_height) || iw >= int(CONFIG_T::in_width))
            return false;
        i = ((ROWS ? unsigned(ih) % ROWS : unsigned(ih)) * CONFIG_T::in_width + unsigned(iw)) * CONFIG_T::n_chan + c;
        return true;
    }
};

// One output pixel, every product unrolled. The order (input taps outer, channels, filters
// inner) only lets one input's operand be converted once for all filters (vecq_mac_row): the
// same products and sums. Depthwise: channel c's one product per tap goes into acc[c].
template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_pixel(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                     res_T res[CONFIG_T::out_height * CONFIG_T::out_width * N_FILT], unsigned oh, unsigned ow,
                     const typename CONFIG_T::weight_t
                         weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                     const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    #pragma HLS INLINE
    static const unsigned n_w = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
    typename CONFIG_T::accum_t acc[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_clear<typename CONFIG_T::accum_t, N_FILT>(acc);
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
                const data_T x = data[(ih * CONFIG_T::in_width + iw) * CONFIG_T::n_chan + c];
                const unsigned w0 = (kh * CONFIG_T::filt_width + kw) * CONFIG_T::n_chan + c;
                if (DW)
                    vecq_mac<data_T, CONFIG_T>(acc[c], x, weights[w0]);
                else
                    vecq_mac_row<data_T, CONFIG_T, N_FILT, n_w>(acc, x, weights, w0 * N_FILT);
            }
        }
    }
    vecq_requant_all<res_T, CONFIG_T, N_FILT, CONFIG_T::out_height * CONFIG_T::out_width * N_FILT>(
        acc, res, (oh * CONFIG_T::out_width + ow) * N_FILT, scale, bias);
}

// every output pixel, one per II = reuse_factor (= 1) cycles
template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_pixels(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                      res_T res[CONFIG_T::out_height * CONFIG_T::out_width * N_FILT],
                      const typename CONFIG_T::weight_t
                          weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                      const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    #pragma HLS INLINE
VecQConvRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQConvCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
            vecq_conv_pixel<data_T, res_T, CONFIG_T, DW, N_FILT>(data, res, oh, ow, weights, scale, bias);
        }
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
    vecq_conv_pixels<data_T, res_T, CONFIG_T, false, CONFIG_T::n_filt>(data, res, weights, scale, bias);
}

// Conv2D / depthwise, folded (nnet_vecq_fold.h): CONFIG_T::overlap (set in Python where the hold
// registers pay for themselves, _ConvMapping.overlap_pays): one output row per vecq_fold_row, a
// pixel every R cycles, its requantisation during the next pixel's products; else per pixel the
// R product cycles, then its requantisation (ceil(N_FILT / R) units).
template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_folded(const data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                      res_T res[CONFIG_T::out_height * CONFIG_T::out_width * N_FILT],
                      const typename CONFIG_T::weight_t
                          weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                      const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    static const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    typename CONFIG_T::accum_t acc[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQFoldRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
        if (CONFIG_T::overlap) {
            vecq_array_sink<res_T, N_FILT> sink = {res, oh * CONFIG_T::out_width * N_FILT};
            vecq_fold_row<data_T, res_T, CONFIG_T, vecq_conv_taps<CONFIG_T, DW, N_FILT, 0>, N_FILT, n_prod, n_in>(
                data, oh, CONFIG_T::out_width, weights, scale, bias, sink);
            continue;
        }
    VecQFoldCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            vecq_fold_products<data_T, CONFIG_T, vecq_conv_taps<CONFIG_T, DW, N_FILT, 0>, N_FILT, n_prod, n_in>(
                data, oh, ow, acc, weights);
            vecq_requant_folded<res_T, CONFIG_T, N_FILT, CONFIG_T::out_height * CONFIG_T::out_width * N_FILT>(
                acc, res, (oh * CONFIG_T::out_width + ow) * N_FILT, scale, bias);
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

// ---------------------------------------------------------------------------------------------
// io_stream convolutions with a line buffer (issue 13): the kernel keeps the last
// filt_height + 1 input rows ((filt_height + 1) x in_width x n_chan values, never the frame),
// computes each output row as soon as the last input row it needs has arrived, and streams its
// pixels out. Padding is never stored: taps outside the input contribute nothing (exactly the
// array kernel's skip). The extra row lets a pack that straddles two rows land without
// overwriting a row still needed (a pack is at most one row: static_assert). Products are
// folded as in vecq_conv_folded (R = reuse_factor; R = 1: all P products of a pixel at once).
// ---------------------------------------------------------------------------------------------
// the pixels of an output row into the output stream, packed (vecq_stream_out)
template <class res_T, unsigned N> struct vecq_stream_sink {
    typedef typename res_T::value_type value_type;
    hls::stream<res_T> &out;
    res_T &pack;
    unsigned &fill;
    void pixel(const value_type px[]) {
        #pragma HLS INLINE
        vecq_stream_out<res_T, N>(px, pack, fill, out);
    }
};

// an output row as the line-buffer loop calls it, pixel by pixel: PIXEL::emit(lines, oh, ow, pack,
// fill, res_stream, weights, scale, bias) computes the N_FILT outputs of pixel (oh, ow) from the
// rows in `lines` and appends them to the output packs (CRTP base of the pixel kinds)
template <class PIXEL> struct vecq_row_by_pixels {
    template <class x_T, class res_T, typename CONFIG_T, unsigned N_FILT, class W_T>
    static void row(const x_T *lines, unsigned oh, res_T &pack, unsigned &fill, hls::stream<res_T> &res_stream,
                    W_T weights, const typename CONFIG_T::scale_t *scale, const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
    VecQLineCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            PIXEL::template emit<x_T, res_T, CONFIG_T>(lines, oh, ow, pack, fill, res_stream, weights, scale, bias);
        }
    }
};

// one output pixel from the line buffer, written out pack by pack (vecq_requant_out); a row of
// them folded with CONFIG_T::overlap and whole-pixel packs: vecq_fold_row (requantisation during
// the next pixel's products; sliced packs keep the pixel-by-pixel loop, as their estimate does)
template <bool DW, unsigned N_FILT> struct vecq_conv_lines_pixel : vecq_row_by_pixels<vecq_conv_lines_pixel<DW, N_FILT>> {
    template <class x_T, class res_T, typename CONFIG_T, class W_T>
    static void emit(const x_T *lines, unsigned oh, unsigned ow, res_T &pack, unsigned &fill,
                     hls::stream<res_T> &res_stream, W_T weights, const typename CONFIG_T::scale_t *scale,
                     const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
        static const unsigned rows = CONFIG_T::filt_height + 1;
        static const unsigned n_prod =
            CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
        typename CONFIG_T::accum_t acc[N_FILT];
        #pragma HLS ARRAY_PARTITION variable=acc complete
        vecq_fold_products<x_T, CONFIG_T, vecq_conv_taps<CONFIG_T, DW, N_FILT, rows>, N_FILT, n_prod,
                           rows * CONFIG_T::in_width * CONFIG_T::n_chan>(lines, oh, ow, acc, weights);
        vecq_requant_out<res_T, CONFIG_T, N_FILT>(acc, pack, fill, res_stream, scale, bias);
    }
    template <class x_T, class res_T, typename CONFIG_T, unsigned N, class W_T>
    static void row(const x_T *lines, unsigned oh, res_T &pack, unsigned &fill, hls::stream<res_T> &res_stream,
                    W_T weights, const typename CONFIG_T::scale_t *scale, const typename CONFIG_T::bias_t *bias) {
        #pragma HLS INLINE
        static const unsigned rows = CONFIG_T::filt_height + 1;
        static const unsigned n_src = rows * CONFIG_T::in_width * CONFIG_T::n_chan;
        static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
        if (CONFIG_T::reuse_factor > 1 && CONFIG_T::overlap && res_T::size == N_FILT) {
            vecq_stream_sink<res_T, N_FILT> sink = {res_stream, pack, fill};
            vecq_fold_row<x_T, typename res_T::value_type, CONFIG_T, vecq_conv_taps<CONFIG_T, DW, N_FILT, rows>,
                          N_FILT, n_prod, n_src>(lines, oh, CONFIG_T::out_width, weights, scale, bias, sink);
        } else {
            vecq_row_by_pixels<vecq_conv_lines_pixel<DW, N_FILT>>::template row<x_T, res_T, CONFIG_T, N_FILT>(
                lines, oh, pack, fill, res_stream, weights, scale, bias);
        }
    }
};

// the line-buffer loop: PIXEL::row<x_T, res_T, CONFIG_T, N_FILT>(lines, oh, pack, fill, res_stream,
// weights, scale, bias) computes output row oh from the rows in `lines` and appends its pixels to
// the output packs (the level-table kernels above; the adder graphs of nnet_vecq_da.h, which pass
// no weights)
template <class data_T, class res_T, typename CONFIG_T, unsigned N_FILT, class PIXEL, class W_T>
void vecq_conv_lines_loop(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream, W_T weights,
                          const typename CONFIG_T::scale_t *scale, const typename CONFIG_T::bias_t *bias) {
    #pragma HLS INLINE
    typedef typename data_T::value_type x_T;
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_data = CONFIG_T::in_height * row_len;
    static_assert(data_T::size <= row_len, "vecq line buffer: a stream pack must not exceed one input row");
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQLineRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const int rows_done = int(((p + 1) * data_T::size) / row_len); // input rows complete so far
        // every output row whose last needed input row has arrived (clipped to the input: bottom padding)
    VecQLineEmit:
        while (oh < CONFIG_T::out_height && vecq_last_input_row<CONFIG_T>(oh) < rows_done) {
            PIXEL::template row<x_T, res_T, CONFIG_T, N_FILT>(lines, oh, pack, fill, res_stream, weights, scale, bias);
            oh++;
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_stream_lines(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                            const typename CONFIG_T::weight_t
                                weights[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT)],
                            const typename CONFIG_T::scale_t scale[N_FILT], const typename CONFIG_T::bias_t bias[N_FILT]) {
    static const unsigned block =
        CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT) / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    vecq_conv_lines_loop<data_T, res_T, CONFIG_T, N_FILT, vecq_conv_lines_pixel<DW, N_FILT>>(
        data_stream, res_stream, weights, scale, bias);
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

} // namespace nnet

#endif
