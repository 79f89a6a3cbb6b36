// io_stream helpers shared by the kernels: line buffers of input rows (conv, pool) and packing
// values into the output stream (dense, conv, pool, global pool). hls4ml's io_stream tensors are
// streams of packs (data_T::size values, whole pixels) in channels-last order.
#ifndef NNET_VECQ_STREAM_H_
#define NNET_VECQ_STREAM_H_

#include "nnet_vecq_common.h"

namespace nnet {

// pack p of an input stream into a line buffer of ROWS rows of ROW_LEN values (input row r in
// buffer row r % ROWS)
template <class data_T, unsigned ROWS, unsigned ROW_LEN>
void vecq_lines_store(typename data_T::value_type lines[ROWS * ROW_LEN], const data_T &in, unsigned p) {
    #pragma HLS INLINE
VecQLinesStore:
    for (unsigned k = 0; k < data_T::size; k++) {
        #pragma HLS UNROLL
        const unsigned e = p * data_T::size + k;
        lines[((e / ROW_LEN) % ROWS) * ROW_LEN + e % ROW_LEN] = in[k];
    }
}

// append the N values of one output pixel to the pack being filled (fill values so far),
// writing every pack that becomes full
template <class res_T, unsigned N>
void vecq_stream_out(const typename res_T::value_type px[N], res_T &pack, unsigned &fill,
                     hls::stream<res_T> &res_stream) {
    #pragma HLS INLINE
    for (unsigned j = 0; j < N; j++) {
        pack[fill++] = px[j];
        if (fill == res_T::size) {
            res_stream.write(pack);
            fill = 0;
        }
    }
}

// append the N requantised outputs of one pixel (vecq_requant of acc[j]) to the pack being filled,
// writing every pack that becomes full: each value is requantised as its pack leaves, so no whole
// output pixel is held when the packs are narrower than the pixel (the same values as
// vecq_requant_all then vecq_stream_out)
template <class res_T, class CONFIG_T, unsigned N>
void vecq_requant_out(const typename CONFIG_T::accum_t acc[N], res_T &pack, unsigned &fill,
                      hls::stream<res_T> &res_stream, const typename CONFIG_T::scale_t *scale,
                      const typename CONFIG_T::bias_t *bias) {
    #pragma HLS INLINE
    for (unsigned j = 0; j < N; j++) {
        pack[fill++] = vecq_requant<typename res_T::value_type, CONFIG_T>(acc[j], scale[j], bias[j]);
        if (fill == res_T::size) {
            res_stream.write(pack);
            fill = 0;
        }
    }
}

// the value itself (vecq_write_packs' conversion for values already of the output type)
struct vecq_as_is {
    template <class y_T, class v_T> static y_T out(const v_T &v) {
        #pragma HLS INLINE
        return v;
    }
};

// N values from data_T packs into an array, one pack per cycle (the inverse of vecq_write_packs)
template <class data_T, unsigned N>
void vecq_read_packs(hls::stream<data_T> &data_stream, typename data_T::value_type values[N]) {
    #pragma HLS INLINE
VecQReadPacks:
    for (unsigned p = 0; p < N / data_T::size; p++) {
        #pragma HLS PIPELINE
        data_T pack = data_stream.read();
        for (unsigned k = 0; k < data_T::size; k++) {
            #pragma HLS UNROLL
            values[p * data_T::size + k] = pack[k];
        }
    }
}

// the last input row a window kernel's output row oh needs, clipped to the input (bottom padding)
template <class CONFIG_T> int vecq_last_input_row(unsigned oh) {
    #pragma HLS INLINE
    const int last = int(oh * CONFIG_T::stride_height + CONFIG_T::filt_height - 1) - int(CONFIG_T::pad_top);
    return last > int(CONFIG_T::in_height) - 1 ? int(CONFIG_T::in_height) - 1 : last;
}

// write N values as res_T packs, one pack per cycle; value v goes out as OUT::out<y_T>(v)
template <class res_T, unsigned N, class OUT, class v_T>
void vecq_write_packs(const v_T values[N], hls::stream<res_T> &res_stream) {
    #pragma HLS INLINE
VecQWritePacks:
    for (unsigned p = 0; p < N / res_T::size; p++) {
        #pragma HLS PIPELINE
        res_T pack;
        PRAGMA_DATA_PACK(pack)
        for (unsigned k = 0; k < res_T::size; k++) {
            #pragma HLS UNROLL
            pack[k] = OUT::template out<typename res_T::value_type>(values[p * res_T::size + k]);
        }
        res_stream.write(pack);
    }
}

} // namespace nnet

#endif
