// ALQ in its native form (Qu et al., CVPR 2020; vecq_hw/ir/alq.py, docs/FORMAT.md "ALQ layers"):
// output channel j holds n_j binary bases, stored as bit-planes (n_j bits per weight, nothing for a
// channel with 0 bases), and n_j integer alpha constants. Plane column k = first(j) + b is basis b
// of channel j; K = n_basis columns in all. Per input (dense) or output pixel (conv):
//   acc_k = sum_i x_i * beta_ik                  add or subtract x: no product       (basis_t)
//   acc_j = sum_{b < count(j)} alpha[k] * acc_k   once per output and basis           (accum_t)
//   res_j = (res_T)(acc_j * s_j + b_j)            the contract's ONE requantisation (vecq_requant)
// The add/subtract is written in its XOR form: +x is x, -x is ~x + 1 ulp (two's complement); the
// ulps are not added per product but preloaded once per column as its count of -1 signs,
// CONFIG_T::neg(k). This is the form whose LUTs per basis-MAC vecq_hw/hls/estimate/alq_form.py
// measures on yosys and proves equal to sum_i x_i * beta_i by SAT.
//
// Exactness. Every value is on the input's grid and every operation is an integer sum or a
// product by an integer constant. acc_j = sum_i x_i d_ij with d_ij = sum_b alpha_jb beta_ijb, and
// accum_t holds every such sum (the IR checks accum_type against that bound). ap_fixed AP_WRAP
// assignment is arithmetic modulo 2^W, so an intermediate may wrap (the preloaded counts, a partial
// sum of alpha products) and the final acc_j, which fits accum_t, is still exact; basis_t is the
// exact width of acc_k, or accum_t's width where that is narrower (then acc_k is right modulo
// 2^W, which is all acc_j needs). Padding taps of a convolution read x = 0: ~0 = -1 ulp, cancelled
// by the preloaded count, which counts every tap.
//
// Folding: the P = fan-in * K sign products of one input run block = P / R per cycle (R =
// reuse_factor; R = 1: all at once), product p = i * K + k reads planes[p] (the planes' C order:
// one ROM word of block bits per cycle); the outputs run ceil(n_out / R) per cycle.
// Uses vecq_requant (nnet_vecq_common.h), vecq_conv_taps (nnet_vecq_conv.h) and the stream helpers
// of nnet_vecq_stream.h; nothing from the product classes.
#ifndef NNET_VECQ_ALQ_H_
#define NNET_VECQ_ALQ_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_conv.h"
#include "nnet_vecq_stream.h"

namespace nnet {

struct vecq_alq_dense_config {
    static const unsigned n_in = 1, n_out = 1;
    static const unsigned n_basis = 1, max_bases = 1; // K columns; the most bases of one channel
    static const unsigned reuse_factor = 1;
    typedef ap_uint<1> weight_t; // one sign: 1 = +1, 0 = -1
    typedef ap_fixed<16, 6> basis_t;
    typedef ap_fixed<16, 6> accum_t;
    typedef ap_int<8> alpha_t;
    typedef ap_fixed<16, 6> scale_t;
    typedef ap_fixed<16, 6> bias_t;
    static unsigned first(unsigned j) { return j; } // channel j's first column
    static unsigned count(unsigned j) { return 1; } // n_j
    static unsigned neg(unsigned k) { return 0; }   // column k's -1 signs
};

struct vecq_alq_conv2d_config : vecq_alq_dense_config {
    static const unsigned in_height = 1, in_width = 1, n_chan = 1;
    static const unsigned out_height = 1, out_width = 1, n_filt = 1;
    static const unsigned filt_height = 1, filt_width = 1;
    static const unsigned stride_height = 1, stride_width = 1;
    static const unsigned pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;
};

// product p of a dense layer: column k = p % K of input i = p / K
template <typename CONFIG_T> struct vecq_alq_dense_taps {
    static bool tap(unsigned p, unsigned, unsigned, unsigned &k, unsigned &i) {
        #pragma HLS INLINE
        k = p % CONFIG_T::n_basis;
        i = p / CONFIG_T::n_basis;
        return true;
    }
};

// acc[k] = sum of x * sign over the N_PROD products of one input (TAPS names each one's column k
// and input src[i], false for a padding tap: x = 0), block = N_PROD / R of them a cycle
template <class x_T, class CONFIG_T, class TAPS, unsigned N_PROD, unsigned N_SRC>
void vecq_alq_bases(const x_T src[N_SRC], unsigned oh, unsigned ow, typename CONFIG_T::basis_t acc[CONFIG_T::n_basis],
                    const typename CONFIG_T::weight_t planes[N_PROD]) {
    #pragma HLS INLINE
    typedef typename CONFIG_T::basis_t basis_t;
    static const unsigned block = N_PROD / CONFIG_T::reuse_factor;
VecQAlqPreload:
    for (unsigned k = 0; k < CONFIG_T::n_basis; k++) {
        #pragma HLS UNROLL
        acc[k].range(basis_t::width - 1, 0) = CONFIG_T::neg(k); // the -1 signs' ulps, modulo 2^W
    }
VecQAlqReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
    VecQAlqBlock:
        for (unsigned b = 0; b < block; b++) {
            #pragma HLS UNROLL
            const unsigned p = r * block + b;
            unsigned k, i;
            const bool inside = TAPS::tap(p, oh, ow, k, i);
            const basis_t x = inside ? basis_t(src[i]) : basis_t(0);
            acc[k] += planes[p] ? x : basis_t(~x); // +x, or -x - 1 ulp
        }
    }
}

// res[o0 + j] for every output j: acc_j from its columns' alphas, then the one requantisation;
// ceil(n_out / R) outputs a cycle
template <class res_T, class CONFIG_T, unsigned N_RES>
void vecq_alq_outputs(const typename CONFIG_T::basis_t acc[CONFIG_T::n_basis], res_T res[N_RES], unsigned o0,
                      const typename CONFIG_T::alpha_t alpha[CONFIG_T::n_basis],
                      const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                      const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    static const unsigned units = (CONFIG_T::n_out + CONFIG_T::reuse_factor - 1) / CONFIG_T::reuse_factor;
VecQAlqOut:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS UNROLL factor=units
        typename CONFIG_T::accum_t a = 0;
    VecQAlqAlpha:
        for (unsigned b = 0; b < CONFIG_T::max_bases; b++) {
            #pragma HLS UNROLL
            if (b < CONFIG_T::count(j))
                a += alpha[CONFIG_T::first(j) + b] * acc[CONFIG_T::first(j) + b];
        }
        res[o0 + j] = vecq_requant<res_T, CONFIG_T>(a, scale[j], bias[j]);
    }
}

#define VECQ_ALQ_TABLES                                                                                              \
    const typename CONFIG_T::alpha_t alpha[CONFIG_T::n_basis], const typename CONFIG_T::scale_t scale[CONFIG_T::n_out], \
        const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]

template <class data_T, class res_T, typename CONFIG_T>
void vecq_alq_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                    const typename CONFIG_T::weight_t planes[CONFIG_T::n_in * CONFIG_T::n_basis], VECQ_ALQ_TABLES) {
    static const unsigned n_prod = CONFIG_T::n_in * CONFIG_T::n_basis;
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=planes cyclic factor=block
    #pragma HLS BIND_STORAGE variable=planes type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=alpha complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    typename CONFIG_T::basis_t acc[CONFIG_T::n_basis];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_alq_bases<data_T, CONFIG_T, vecq_alq_dense_taps<CONFIG_T>, n_prod, CONFIG_T::n_in>(data, 0, 0, acc, planes);
    vecq_alq_outputs<res_T, CONFIG_T, CONFIG_T::n_out>(acc, res, 0, alpha, scale, bias);
}

// io_stream: the input packs into an array, the array kernel, the outputs into packs
template <class data_T, class res_T, typename CONFIG_T>
void vecq_alq_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                    const typename CONFIG_T::weight_t planes[CONFIG_T::n_in * CONFIG_T::n_basis], VECQ_ALQ_TABLES) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    vecq_read_packs<data_T, CONFIG_T::n_in>(data_stream, data);
    vecq_alq_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, planes, alpha, scale,
                                                                                      bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

#define VECQ_ALQ_CONV_PLANES                                                                                         \
    const typename CONFIG_T::weight_t                                                                                \
        planes[CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_basis]

// the array conv: one output pixel every R cycles (plus the pipeline depth)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_alq_conv2d(data_T data[CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan],
                     res_T res[CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt], VECQ_ALQ_CONV_PLANES,
                     VECQ_ALQ_TABLES) {
    static const unsigned n_in = CONFIG_T::in_height * CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_basis;
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=planes cyclic factor=block
    #pragma HLS BIND_STORAGE variable=planes type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=alpha complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    typename CONFIG_T::basis_t acc[CONFIG_T::n_basis];
    #pragma HLS ARRAY_PARTITION variable=acc complete
VecQAlqRows:
    for (unsigned oh = 0; oh < CONFIG_T::out_height; oh++) {
    VecQAlqCols:
        for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
            vecq_alq_bases<data_T, CONFIG_T, vecq_conv_taps<CONFIG_T, false, CONFIG_T::n_basis, 0>, n_prod, n_in>(
                data, oh, ow, acc, planes);
            vecq_alq_outputs<res_T, CONFIG_T, CONFIG_T::out_height * CONFIG_T::out_width * CONFIG_T::n_filt>(
                acc, res, (oh * CONFIG_T::out_width + ow) * CONFIG_T::n_filt, alpha, scale, bias);
        }
    }
}

// io_stream conv: a line buffer of filt_height + 1 input rows (as vecq_conv_stream_lines): each
// output row is computed as soon as the last input row it needs has arrived
template <class data_T, class res_T, typename CONFIG_T>
void vecq_alq_conv2d(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream, VECQ_ALQ_CONV_PLANES,
                     VECQ_ALQ_TABLES) {
    typedef typename data_T::value_type x_T;
    typedef typename res_T::value_type y_T;
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * CONFIG_T::n_basis;
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    static_assert(data_T::size <= row_len, "vecq alq line buffer: a stream pack must not exceed one input row");
    #pragma HLS ARRAY_RESHAPE variable=planes cyclic factor=block
    #pragma HLS BIND_STORAGE variable=planes type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=alpha complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    typename CONFIG_T::basis_t acc[CONFIG_T::n_basis];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    y_T px[CONFIG_T::n_filt];
    #pragma HLS ARRAY_PARTITION variable=px complete
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQAlqLineRead:
    for (unsigned p = 0; p < CONFIG_T::in_height * row_len / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const int rows_done = int(((p + 1) * data_T::size) / row_len); // input rows complete so far
    VecQAlqLineEmit:
        while (oh < CONFIG_T::out_height && vecq_last_input_row<CONFIG_T>(oh) < rows_done) {
        VecQAlqLineCols:
            for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
                vecq_alq_bases<x_T, CONFIG_T, vecq_conv_taps<CONFIG_T, false, CONFIG_T::n_basis, rows>, n_prod,
                               rows * row_len>(lines, oh, ow, acc, planes);
                vecq_alq_outputs<y_T, CONFIG_T, CONFIG_T::n_filt>(acc, px, 0, alpha, scale, bias);
                vecq_stream_out<res_T, CONFIG_T::n_filt>(px, pack, fill, res_stream);
            }
            oh++;
        }
    }
}

#undef VECQ_ALQ_TABLES
#undef VECQ_ALQ_CONV_PLANES

} // namespace nnet

#endif
