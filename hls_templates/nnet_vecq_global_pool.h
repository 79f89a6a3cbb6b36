// GlobalAvgPool2D: (h, w, c) -> (c,):  out_c = (res_T)(sum_{h,w} x[h, w, c] * mult)
// The sum is exact in accum_t (pinned: the exact sum type); mult is the pinned constant
// mantissa CONFIG_T::mult of mult_t (unsigned); sum * mult is a full-precision ap_fixed product,
// so the conversion to res_T is the ONE rounding.
#ifndef NNET_VECQ_GLOBAL_POOL_H_
#define NNET_VECQ_GLOBAL_POOL_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_stream.h"

namespace nnet {

struct vecq_global_pool_config {
    static const unsigned n_pixels = 1, n_chan = 1;
    static const unsigned long long mult = 1;
    static const unsigned reuse_factor = 1;
    typedef ap_fixed<16, 6> accum_t;
    typedef ap_ufixed<8, 0> mult_t;
};

// the one conversion of a channel's sum: (y_T)(sum * mult), mult_t from its pinned mantissa
template <typename CONFIG_T> struct vecq_gap_out {
    template <class y_T> static y_T out(const typename CONFIG_T::accum_t &sum) {
        #pragma HLS INLINE
        typename CONFIG_T::mult_t m;
        ap_uint<64> mm = CONFIG_T::mult;
        m.range(CONFIG_T::mult_t::width - 1, 0) = mm.range(CONFIG_T::mult_t::width - 1, 0);
        return (y_T)(sum * m);
    }
};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_global_avg_pool(data_T data[CONFIG_T::n_pixels * CONFIG_T::n_chan], res_T res[CONFIG_T::n_chan]) {
VecQGapChan:
    for (unsigned c = 0; c < CONFIG_T::n_chan; c++) {
        #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        typename CONFIG_T::accum_t acc = 0;
    VecQGapPix:
        for (unsigned p = 0; p < CONFIG_T::n_pixels; p++) {
            acc += data[p * CONFIG_T::n_chan + c];
        }
        res[c] = vecq_gap_out<CONFIG_T>::template out<res_T>(acc);
    }
}

// io_stream GAP (issue 13): n_chan running sums, never the frame. Each value is added to its
// channel's sum as it streams in (PIPELINE II=1: one pack per cycle; the sums are completely
// partitioned so a pack's channels all add in the same cycle, a single-adder loop-carried
// dependency per channel); after the last pixel, the same single conversion (res_T)(sum * mult)
// as the array kernel. Same accum_t, same exact sums: bit-identical to the array kernel.
template <class data_T, class res_T, typename CONFIG_T>
void vecq_global_avg_pool(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream) {
    static const unsigned n_data = CONFIG_T::n_pixels * CONFIG_T::n_chan;
    static_assert(n_data % data_T::size == 0, "vecq GAP: the input packs must tile the frame");
    static_assert(CONFIG_T::n_chan % res_T::size == 0, "vecq GAP: the output packs must tile the channels");
    typename CONFIG_T::accum_t acc[CONFIG_T::n_chan];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_clear<typename CONFIG_T::accum_t, CONFIG_T::n_chan>(acc);
    unsigned c0 = 0; // channel of the pack's first value
VecQGapStreamRead:
    for (unsigned p = 0; p < n_data / data_T::size; p++) {
        #pragma HLS PIPELINE II=1
        data_T in = data_stream.read();
    VecQGapStreamPack:
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            // packs of whole pixels (hls4ml's io_stream): channel k % n_chan, a constant once unrolled
            const unsigned c = data_T::size % CONFIG_T::n_chan == 0 ? k % CONFIG_T::n_chan
                                                                     : (c0 + k) % CONFIG_T::n_chan;
            acc[c] += in[k];
        }
        c0 = (c0 + data_T::size) % CONFIG_T::n_chan;
    }
    vecq_write_packs<res_T, CONFIG_T::n_chan, vecq_gap_out<CONFIG_T> >(acc, res_stream);
}

} // namespace nnet

#endif
