// Weights from off-chip memory (issue 28; vecq_hw/hls/offchip.py). A streamed layer is two dataflow
// processes joined by a stream of AXI words:
//   vecq_weight_reader   reads the layer's code table from its m_axi port (a top-level argument),
//                        whole, once per pass (per output pixel of a conv, per frame of a dense
//                        layer), one word a cycle in one sequential burst-friendly loop; or, when
//                        CONFIG_T::cached, copies it into an UltraRAM buffer on its first call and
//                        reads it from there afterwards (UltraRAM has no initial contents, so the
//                        table cannot be a ROM in it);
//   vecq_*_streamed      the layer: the folded product loop of nnet_vecq_fold.h (block = P / R
//                        products a cycle, product p = r * block + b reads code p) with the codes
//                        unpacked from the words instead of read from a ROM.
// Table layout (offchip.py, = the integer model's packed weight image): code p is the k-bit
// two's-complement field at stream bits [p * k, p * k + k), word w holds stream bits
// [w * word_bits, (w + 1) * word_bits), the last word zero-padded. block * k <= word_bits (checked
// in Python), so the unpacker needs at most one word a cycle.
// Exactness: the same products as the ROM kernel in the same order (the code bits are the same
// two's-complement fields), so the same sums (nnet_vecq_fold.h's argument) and the same outputs.
#ifndef NNET_VECQ_STREAMED_H_
#define NNET_VECQ_STREAMED_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_conv.h"
#include "nnet_vecq_dense.h"
#include "nnet_vecq_fold.h"
#include "nnet_vecq_products.h"
#include "nnet_vecq_stream.h"

namespace nnet {

// the table, whole, once per pass, one word a cycle (one sequential, burst-friendly loop)
template <class CONFIG_T>
void vecq_weight_passes(const typename CONFIG_T::word_t table[CONFIG_T::words],
                        hls::stream<typename CONFIG_T::word_t> &words) {
    #pragma HLS INLINE
VecQWeightPasses:
    for (unsigned pass = 0; pass < CONFIG_T::passes; pass++) {
    VecQWeightWords:
        for (unsigned w = 0; w < CONFIG_T::words; w++) {
            #pragma HLS PIPELINE II=1
            words.write(table[w]);
        }
    }
}

// ... from DDR every time, or (CACHED) from an UltraRAM copy made on the first call
template <class CONFIG_T, bool CACHED = CONFIG_T::cached> struct vecq_weight_source {
    static void read(const typename CONFIG_T::word_t mem[CONFIG_T::words],
                     hls::stream<typename CONFIG_T::word_t> &words) {
        #pragma HLS INLINE
        vecq_weight_passes<CONFIG_T>(mem, words);
    }
};

template <class CONFIG_T> struct vecq_weight_source<CONFIG_T, true> {
    static void read(const typename CONFIG_T::word_t mem[CONFIG_T::words],
                     hls::stream<typename CONFIG_T::word_t> &words) {
        #pragma HLS INLINE
        static typename CONFIG_T::word_t cache[CONFIG_T::words];
        #pragma HLS BIND_STORAGE variable=cache type=ram_1p impl=uram
        static bool loaded = false;
        if (!loaded) {
        VecQWeightLoad:
            for (unsigned w = 0; w < CONFIG_T::words; w++) {
                #pragma HLS PIPELINE II=1
                cache[w] = mem[w];
            }
            loaded = true;
        }
        vecq_weight_passes<CONFIG_T>(cache, words);
    }
};

template <class CONFIG_T>
void vecq_weight_reader(const typename CONFIG_T::word_t mem[CONFIG_T::words],
                        hls::stream<typename CONFIG_T::word_t> &words) {
    vecq_weight_source<CONFIG_T>::read(mem, words);
}

// STEP_BITS code bits a call from the words of one pass: a word is read only when fewer than
// STEP_BITS bits are left (STEP_BITS <= word_bits: at most one word a call), so a pass reads
// exactly its CONFIG_T::words words; start() before each pass drops the last word's padding.
template <class CONFIG_T, unsigned STEP_BITS> struct vecq_code_unpacker {
    static const unsigned W = CONFIG_T::word_bits;
    ap_uint<STEP_BITS + W> buf;
    unsigned have;
    void start() {
        #pragma HLS INLINE
        buf = 0;
        have = 0;
    }
    ap_uint<STEP_BITS> next(hls::stream<typename CONFIG_T::word_t> &words) {
        #pragma HLS INLINE
        if (have < STEP_BITS) {
            ap_uint<STEP_BITS + W> word = words.read();
            buf |= word << have;
            have += W;
        }
        ap_uint<STEP_BITS> step = buf.range(STEP_BITS - 1, 0);
        buf >>= STEP_BITS;
        have -= STEP_BITS;
        return step;
    }
};

// vecq_fold_products (nnet_vecq_fold.h) with the codes of one pass from the word stream
template <class x_T, class CONFIG_T, class TAPS, unsigned N_ACC, unsigned N_PROD, unsigned N_SRC>
void vecq_fold_streamed(const x_T src[N_SRC], unsigned oh, unsigned ow, typename CONFIG_T::accum_t acc[N_ACC],
                        hls::stream<typename CONFIG_T::word_t> &words) {
    #pragma HLS INLINE
    static const unsigned block = N_PROD / CONFIG_T::reuse_factor;
    static const unsigned k = CONFIG_T::bits;
    vecq_code_unpacker<CONFIG_T, block * k> codes;
    codes.start();
    vecq_clear<typename CONFIG_T::accum_t, N_ACC>(acc);
VecQStreamedReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
        const ap_uint<block * k> step = codes.next(words);
    VecQStreamedBlock:
        for (unsigned b = 0; b < block; b++) {
            #pragma HLS UNROLL
            const ap_uint<k> field = step >> (b * k); // code p's k-bit two's-complement field
            typename CONFIG_T::weight_t c;
            c.range(k - 1, 0) = field;
            unsigned f, i;
            if (TAPS::tap(r * block + b, oh, ow, f, i))
                vecq_mac<x_T, CONFIG_T>(acc[f], src[i], c);
        }
    }
}

// io_stream conv2d / depthwise with streamed codes: the line buffer of vecq_conv_stream_lines
// (nnet_vecq_conv.h: filt_height + 1 rows, an output row as soon as its last input row is in)
template <class data_T, class res_T, typename CONFIG_T, bool DW, unsigned N_FILT>
void vecq_conv_streamed_lines(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                              hls::stream<typename CONFIG_T::word_t> &words,
                              const typename CONFIG_T::scale_t scale[N_FILT],
                              const typename CONFIG_T::bias_t bias[N_FILT]) {
    typedef typename data_T::value_type x_T;
    typedef typename res_T::value_type y_T;
    static const unsigned rows = CONFIG_T::filt_height + 1;
    static const unsigned row_len = CONFIG_T::in_width * CONFIG_T::n_chan;
    static const unsigned n_data = CONFIG_T::in_height * row_len;
    static const unsigned n_prod = CONFIG_T::filt_height * CONFIG_T::filt_width * CONFIG_T::n_chan * (DW ? 1 : N_FILT);
    static_assert(data_T::size <= row_len, "vecq line buffer: a stream pack must not exceed one input row");
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    x_T lines[rows * row_len];
    #pragma HLS ARRAY_PARTITION variable=lines cyclic factor=CONFIG_T::n_chan
    typename CONFIG_T::accum_t acc[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    y_T px[N_FILT];
    #pragma HLS ARRAY_PARTITION variable=px complete
    res_T pack;
    PRAGMA_DATA_PACK(pack)
    unsigned fill = 0, oh = 0;
VecQStreamedLineRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        vecq_lines_store<data_T, rows, row_len>(lines, data_stream.read(), p);
        const int rows_done = int(((p + 1) * data_T::size) / row_len);
    VecQStreamedLineEmit:
        while (oh < CONFIG_T::out_height && vecq_last_input_row<CONFIG_T>(oh) < rows_done) {
        VecQStreamedLineCols:
            for (unsigned ow = 0; ow < CONFIG_T::out_width; ow++) {
                vecq_fold_streamed<x_T, CONFIG_T, vecq_conv_taps<CONFIG_T, DW, N_FILT, rows>, N_FILT, n_prod,
                                   rows * row_len>(lines, oh, ow, acc, words);
                vecq_requant_all<y_T, CONFIG_T, N_FILT, N_FILT>(acc, px, 0, scale, bias);
                vecq_stream_out<res_T, N_FILT>(px, pack, fill, res_stream);
            }
            oh++;
        }
    }
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_conv2d_streamed(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                          hls::stream<typename CONFIG_T::word_t> &words,
                          const typename CONFIG_T::scale_t scale[CONFIG_T::n_filt],
                          const typename CONFIG_T::bias_t bias[CONFIG_T::n_filt]) {
    vecq_conv_streamed_lines<data_T, res_T, CONFIG_T, false, CONFIG_T::n_filt>(data_stream, res_stream, words, scale,
                                                                               bias);
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_depthwise_conv2d_streamed(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                                    hls::stream<typename CONFIG_T::word_t> &words,
                                    const typename CONFIG_T::scale_t scale[CONFIG_T::n_chan],
                                    const typename CONFIG_T::bias_t bias[CONFIG_T::n_chan]) {
    vecq_conv_streamed_lines<data_T, res_T, CONFIG_T, true, CONFIG_T::n_chan>(data_stream, res_stream, words, scale,
                                                                              bias);
}

// io_stream dense with streamed codes: the input vector, one pass of the folded loop, the outputs
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_streamed(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                         hls::stream<typename CONFIG_T::word_t> &words,
                         const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                         const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_read_packs<data_T, CONFIG_T::n_in>(data_stream, data);
    vecq_fold_streamed<typename data_T::value_type, CONFIG_T, vecq_dense_taps<CONFIG_T>, CONFIG_T::n_out,
                       CONFIG_T::n_in * CONFIG_T::n_out, CONFIG_T::n_in>(data, 0, 0, acc, words);
    vecq_requant_folded<typename res_T::value_type, CONFIG_T, CONFIG_T::n_out, CONFIG_T::n_out>(acc, res, 0, scale,
                                                                                               bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

} // namespace nnet

#endif
