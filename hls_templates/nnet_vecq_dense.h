// Dense: res[j] = (res_T)(sum_i data[i] * levels[weights[i * n_out + j]] * scale[j] + bias[j])
// (the contract in nnet_vecq_common.h). Latency: the whole layer unrolled; Resource: one output
// per reuse_factor cycles; folded (reuse_factor > 1, nnet_vecq_fold.h): block products a cycle.
#ifndef NNET_VECQ_DENSE_H_
#define NNET_VECQ_DENSE_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_fold.h"
#include "nnet_vecq_products.h"
#include "nnet_vecq_stream.h"

namespace nnet {

// Latency: the whole layer in one pipeline stage group, every multiply unrolled.
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_latency(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                        const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                        const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                        const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
    #pragma HLS ARRAY_PARTITION variable=weights complete
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    // every loop is unrolled: inputs outer, outputs inner only converts each input's operand once
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_clear<typename CONFIG_T::accum_t, CONFIG_T::n_out>(acc);
VecQDenseIn:
    for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
        #pragma HLS UNROLL
        vecq_mac_row<data_T, CONFIG_T, CONFIG_T::n_out, CONFIG_T::n_in * CONFIG_T::n_out>(acc, data[i], weights,
                                                                                          i * CONFIG_T::n_out);
    }
    vecq_requant_all<res_T, CONFIG_T, CONFIG_T::n_out, CONFIG_T::n_out>(acc, res, 0, scale, bias);
}

// Resource: one output neuron every reuse_factor cycles (n_in products in parallel).
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_resource(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                         const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                         const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                         const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS ARRAY_PARTITION variable=weights block factor=CONFIG_T::n_in
    #pragma HLS ARRAY_PARTITION variable=data complete
VecQDenseOut:
    for (unsigned j = 0; j < CONFIG_T::n_out; j++) {
        #pragma HLS PIPELINE II=CONFIG_T::reuse_factor
        typename CONFIG_T::accum_t acc = 0;
    VecQDenseIn:
        for (unsigned i = 0; i < CONFIG_T::n_in; i++) {
            #pragma HLS UNROLL
            vecq_mac<data_T, CONFIG_T>(acc, data[i], weights[i * CONFIG_T::n_out + j]);
        }
        res[j] = vecq_requant<res_T, CONFIG_T>(acc, scale[j], bias[j]);
    }
}

// product p of the folded dense is weights[p] = weights[i * n_out + j]: output j, input i
template <typename CONFIG_T> struct vecq_dense_taps {
    static bool tap(unsigned p, unsigned, unsigned, unsigned &j, unsigned &i) {
        #pragma HLS INLINE
        j = p % CONFIG_T::n_out;
        i = p / CONFIG_T::n_out;
        return true;
    }
};

// Folded (reuse_factor > 1): block = n_in * n_out / R products a cycle (nnet_vecq_fold.h).
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense_folded(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                       const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                       const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                       const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    static const unsigned n_prod = CONFIG_T::n_in * CONFIG_T::n_out;
    static const unsigned block = n_prod / CONFIG_T::reuse_factor;
    #pragma HLS ARRAY_RESHAPE variable=weights cyclic factor=block
    #pragma HLS BIND_STORAGE variable=weights type=rom_np impl=auto
    #pragma HLS ARRAY_PARTITION variable=scale complete
    #pragma HLS ARRAY_PARTITION variable=bias complete
    #pragma HLS ARRAY_PARTITION variable=data complete
    #pragma HLS ARRAY_PARTITION variable=res complete
    typename CONFIG_T::accum_t acc[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_fold_products<data_T, CONFIG_T, vecq_dense_taps<CONFIG_T>, CONFIG_T::n_out, n_prod, CONFIG_T::n_in>(
        data, 0, 0, acc, weights);
    vecq_requant_folded<res_T, CONFIG_T, CONFIG_T::n_out, CONFIG_T::n_out>(acc, res, 0, scale, bias);
}

template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense(data_T data[CONFIG_T::n_in], res_T res[CONFIG_T::n_out],
                const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    #pragma HLS INLINE
    if (CONFIG_T::reuse_factor > 1)
        vecq_dense_folded<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
    else if (CONFIG_T::latency)
        vecq_dense_latency<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
    else
        vecq_dense_resource<data_T, res_T, CONFIG_T>(data, res, weights, scale, bias);
}

// io_stream: the input packs into an array, the array kernel, the outputs into packs
template <class data_T, class res_T, typename CONFIG_T>
void vecq_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
    typename data_T::value_type data[CONFIG_T::n_in];
    #pragma HLS ARRAY_PARTITION variable=data complete
    typename res_T::value_type res[CONFIG_T::n_out];
    #pragma HLS ARRAY_PARTITION variable=res complete
    vecq_read_packs<data_T, CONFIG_T::n_in>(data_stream, data);
    vecq_dense<typename data_T::value_type, typename res_T::value_type, CONFIG_T>(data, res, weights, scale, bias);
    vecq_write_packs<res_T, CONFIG_T::n_out, vecq_as_is>(res, res_stream);
}

} // namespace nnet

#endif
