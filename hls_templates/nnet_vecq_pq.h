// Product quantisation (Stock et al., ICLR 2020; vecq_hw/ir/pq.py, docs/FORMAT.md "PQ layers"):
// each output channel's filter is cut into n_blocks blocks of d = block weights in PyTorch's order,
// each stored as an index into a per-layer codebook of K = codewords codewords of d integers.
//   index ROM:    indices[b * n_out + j]   block b of output j             (index_t)
//   codebook ROM: codebook[k * d + e]      entry e of codeword k          (codeword_t)
// Filter position t = b * d + e is PyTorch's (chan, rows, cols) order; the inputs are channels-last
// (rows, cols, chan): vecq_pq_view maps one to the other (a conv: (C_in, kh, kw) against the
// window's (kh, kw, C_in); a dense layer after a flatten: (c, pixels) against (pixels, c)).
// Per input (dense) or output pixel (conv), one of two forms (the Python mapping chooses):
//   lookup:          acc_j = sum_b dot(x_b, C[indices[b, j]])                  n_in * n_out products
//   codebook first:  p[b][k] = dot(x_b, C[k]) for every k, then
//                    acc_j = sum_b p[b][indices[b, j]]                          n_in * K products
//   res_j = (res_T)(acc_j * s_j + b_j)         the contract's ONE requantisation (vecq_requant)
//
// Exactness. Every value is on the input's grid and every operation is an integer product or sum:
// both forms give acc_j = sum_i x_i d_ij (integer sums reorder), and accum_t holds every such sum
// (the IR checks accum_type against that bound). ap_fixed AP_WRAP assignment is arithmetic modulo
// 2^W, so a partial sum may wrap and the final acc_j, which fits accum_t, is still exact; part_t is
// the exact width of p[b][k], or accum_t's width where that is narrower (then p is right modulo
// 2^W, which is all acc_j needs). Padding taps of a convolution read x = 0 and are skipped.
//
// Folding: the products of one input run slots = N_PROD / R a cycle (R = reuse_factor; R = 1: all
// at once) in block order, product p = (b * N_SEL + s) * d + e: a cycle reads whole codewords
// (one index and one codeword per d products, lookup) and the outputs run ceil(n_out / R) a cycle.
// io_stream: dense reads its packs into an array first; conv keeps a line buffer of filt_height + 1
// input rows and computes each output row as soon as its last input row has arrived.
// Uses vecq_requant and vecq_pick (nnet_vecq_common.h), the stream helpers of nnet_vecq_stream.h;
// nothing from the product classes.
#ifndef NNET_VECQ_PQ_H_
#define NNET_VECQ_PQ_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_stream.h"

namespace nnet {

struct vecq_pq_dense_config {
    static const unsigned n_in = 1, n_out = 1;
    static const unsigned block = 1, codewords = 1, n_blocks = 1;        // d, K, fan-in / d
    static const unsigned view_rows = 1, view_cols = 1, view_chan = 1;   // the fan-in as (rows, cols, chan)
    static const bool codebook_first = false;
    static const unsigned reuse_factor = 1;
    typedef ap_uint<1> index_t;
    typedef ap_int<8> codeword_t;
    typedef ap_fixed<16, 6> part_t;
    typedef ap_fixed<16, 6> accum_t;
    typedef ap_fixed<16, 6> scale_t;
    typedef ap_fixed<16, 6> bias_t;
};

struct vecq_pq_conv2d_config : vecq_pq_dense_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1, n_filt = 1;
    static const unsigned filt_height = 1, filt_width = 1;
    static const unsigned stride_height = 1, stride_width = 1;
    static const unsigned pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

// PyTorch's filter position t = (c * rows + u) * cols + v -> the channels-last view's (u, v, c)
template <class CONFIG_T> void vecq_pq_view(unsigned t, unsigned &u, unsigned &v, unsigned &c) {
    #pragma HLS INLINE
    c = t / (CONFIG_T::view_rows * CONFIG_T::view_cols);
    u = (t / CONFIG_T::view_cols) % CONFIG_T::view_rows;
    v = t % CONFIG_T::view_cols;
}

// dense: the input of filter position t
template <class CONFIG_T> struct vecq_pq_dense_taps {
    static bool tap(unsigned t, unsigned, unsigned, unsigned &i) {
        #pragma HLS INLINE
        unsigned u, v, c;
        vecq_pq_view<CONFIG_T>(t, u, v, c);
        i = (u * CONFIG_T::view_cols + v) * CONFIG_T::view_chan + c;
        return true;
    }
};

// conv: the input (in a buffer of ROWS rows, 0: the whole frame) of filter position t at output
// pixel (oh, ow); false for a padding tap
template <class CONFIG_T, unsigned ROWS> struct vecq_pq_conv_taps {
    static bool tap(unsigned t, unsigned oh, unsigned ow, unsigned &i) {
        #pragma HLS INLINE
        unsigned u, v, c;
        vecq_pq_view<CONFIG_T>(t, u, v, c);
        const int ih = int(oh * CONFIG_T::stride_height + u) - int(CONFIG_T::pad_top);
        const int iw = int(ow * CONFIG_T::stride_width + v) - int(CONFIG_T::pad_left);
        if (ih < 0 || iw < 0 || ih >= int(CONFIG_T::in_height) || iw >= int(CONFIG_T::in_width))
            return false;
        i = ((ROWS ? unsigned(ih) % ROWS : unsigned(ih)) * CONFIG_T::in_width + unsigned(iw)) * CONFIG_T::n_chan + c;
        return true;
    }
};

// the form's selector count, accumulator count and accumulator type
template <class CONFIG_T> struct vecq_pq_form {
    static const bool first = CONFIG_T::codebook_first;
    static const unsigned n_sel = first ? CONFIG_T::codewords : CONFIG_T::n_out;
    static const unsigned n_acc = first ? CONFIG_T::n_blocks * CONFIG_T::codewords : CONFIG_T::n_out;
    static const unsigned n_prod = CONFIG_T::n_blocks * n_sel * CONFIG_T::block;
    typedef typename vecq_pick<first, typename CONFIG_T::part_t, typename CONFIG_T::accum_t>::type acc_t;
};

#define VECQ_PQ_TABLES                                                                                              \
    const typename CONFIG_T::index_t indices[CONFIG_T::n_blocks * CONFIG_T::n_out],                                  \
        const typename CONFIG_T::codeword_t codebook[CONFIG_T::codewords * CONFIG_T::block]
#define VECQ_PQ_CONSTANTS                                                                                           \
    VECQ_PQ_TABLES, const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],                                         \
        const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]

// acc[...] of one input / pixel: product p = (b * n_sel + s) * d + e, slots of them a cycle
//   lookup:         acc[s]             += x(b * d + e) * codebook[indices[b * n_out + s]][e]
//   codebook first: acc[b * K + s]     += x(b * d + e) * codebook[s][e]
template <class x_T, class CONFIG_T, class TAPS, unsigned N_SRC>
void vecq_pq_products(const x_T src[N_SRC], unsigned oh, unsigned ow,
                      typename vecq_pq_form<CONFIG_T>::acc_t acc[vecq_pq_form<CONFIG_T>::n_acc], VECQ_PQ_TABLES) {
    #pragma HLS INLINE
    typedef vecq_pq_form<CONFIG_T> F;
    static const unsigned d = CONFIG_T::block;
    static const unsigned slots = F::n_prod / CONFIG_T::reuse_factor;
VecQPqClear:
    for (unsigned a = 0; a < F::n_acc; a++) {
        #pragma HLS UNROLL
        acc[a] = 0;
    }
VecQPqReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
    VecQPqSlot:
        for (unsigned q = 0; q < slots; q++) {
            #pragma HLS UNROLL
            const unsigned p = r * slots + q;
            const unsigned e = p % d, pair = p / d;
            const unsigned s = pair % F::n_sel, b = pair / F::n_sel;
            unsigned i;
            if (!TAPS::tap(b * d + e, oh, ow, i))
                continue; // zero padding contributes nothing
            const unsigned k = F::first ? s : unsigned(indices[b * CONFIG_T::n_out + s]);
            acc[F::first ? b * CONFIG_T::codewords + s : s] += src[i] * codebook[k * d + e];
        }
    }
}

// res[o0 + j] for every output j: acc_j (codebook first: picked from p by the indices), then the
// one requantisation; ceil(n_out / R) outputs a cycle
template <class res_T, class CONFIG_T, unsigned N_RES>
void vecq_pq_outputs(const typename vecq_pq_form<CONFIG_T>::acc_t acc[vecq_pq_form<CONFIG_T>::n_acc], res_T res[N_RES],
                     unsigned o0, VECQ_PQ_CONSTANTS) {
    #pragma HLS INLINE
    typedef vecq_pq_form<CONFIG_T> F;
    static const unsigned units = (CONFIG_T::n_out + CONFIG_T::reuse_factor - 1) / CONFIG_T::reuse_factor;
VecQPqOut:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS UNROLL factor=units
        typename CONFIG_T::accum_t a = 0;
        if (F::first) {
        VecQPqPick:
            for (unsigned b = 0; b < CONFIG_T::n_blocks; b++) {
                #pragma HLS UNROLL
                a += acc[b * CONFIG_T::codewords + unsigned(indices[b * CONFIG_T::n_out + j])];
            }
        } else {
            a = acc[j];
        }
        res[o0 + j] = vecq_requant<res_T, CONFIG_T>(a, scale[j], bias[j]);
    }
}

// one input vector / output pixel: products, then outputs
template <class x_T, class res_T, class CONFIG_T, class TAPS, unsigned N_SRC, unsigned N_RES>
void vecq_pq_pixel(const x_T src[N_SRC], res_T res[N_RES], unsigned oh, unsigned ow, unsigned o0, VECQ_PQ_CONSTANTS) {
    #pragma HLS INLINE
    typename vecq_pq_form<CONFIG_T>::acc_t acc[vecq_pq_form<CONFIG_T>::n_acc];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_pq_products<x_T, CONFIG_T, TAPS, N_SRC>(src, oh, ow, acc, indices, codebook);
    vecq_pq_outputs<res_T, CONFIG_T, N_RES>(acc, res, o0, indices, codebook, scale, bias);
}

#define VECQ_PQ_ROMS                                                                                                \
    _Pragma("HLS BIND_STORAGE variable=indices type=rom_np impl=auto")                                              \
        _Pragma("HLS BIND_STORAGE variable=codebook type=rom_np impl=auto")                                         \
            _Pragma("HLS ARRAY_PARTITION variable=scale complete")                                                  \
                _Pragma("HLS ARRAY_PARTITION variable=bias complete")

template <class data_T, class res_T, typename CONFIG_T>
void vecq_pq_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out], VECQ_PQ_CONSTANTS) {
    VECQ_PQ_ROMS
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    vecq_pq_pixel<data_T, res_T, CONFIG_T, vecq_pq_dense_taps<CONFIG_T>, CONFIG_T::n_in, CONFIG_T::n_out>(
        data, res, 0, 0, 0, indices, codebook, scale, bias);
}

// the array conv: one output pixel every R cycles (plus the pipeline depth)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_pq_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                    res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt], VECQ_PQ_CONSTANTS) {
    static const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_res = CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt;
    VECQ_PQ_ROMS
VecQPqRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQPqCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            vecq_pq_pixel<data_T, res_T, CONFIG_T, vecq_pq_conv_taps<CONFIG_T, 0>, n_in, n_res>(
                data, res, oh, ow, (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt, indices, codebook, scale, bias);
        }
    }
}

// io_stream dense: the input packs into an array, the array kernel, the outputs into packs
template <class data_T, class res_T, typename CONFIG_T>
void vecq_pq_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream, VECQ_PQ_CONSTANTS) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    vecq_read_packs<data_T, CONFIG_T::n_in>(data_stream, data);
    vecq_pq_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, indices, codebook,
                                                                                     scale, bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

// io_stream conv: a line buffer of filt_height + 1 input rows (as vecq_conv_stream_lines)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_pq_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream, VECQ_PQ_CONSTANTS) {
    typedef typename data_T::value_type x_T;
    typedef typename res_T::value_type y_T;
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static_assert(data_T::size <= row_len, "vecq pq line buffer: a stream pack must not exceed one input row");
    VECQ_PQ_ROMS
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    y_T px[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=px complete
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQPqLineRead:
    for (unsigned p = 0; p < CONFIG_T::in_height * row_len / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const int rows_done = int(((p + 1) * data_T::size) / row_len); // input rows complete so far
    VecQPqLineEmit:
        while (oh < CONFIG_T::out_height && vecq_last_input_row<CONFIG_T>(oh) < rows_done) {
        VecQPqLineCols:
            for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
                vecq_pq_pixel<x_T, y_T, CONFIG_T, vecq_pq_conv_taps<CONFIG_T, rows>, rows * row_len, CONFIG_T::n_filt>(
                    lines, px, oh, ow, 0, indices, codebook, scale, bias);
                vecq_stream_out<res_T, CONFIG_T::n_filt>(px, pack, fill, res_stream);
            }
            oh++;
        }
    }
}

#undef VECQ_PQ_ROMS
#undef VECQ_PQ_CONSTANTS
#undef VECQ_PQ_TABLES

} // namespace nnet

#endif
