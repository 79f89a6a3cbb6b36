// Graph layers (vecq_hw.ir.gnn): a GCN on one fixed graph, node features (n_nodes, f) as n_nodes rows.
//
// vecq_node_dense: Z = H W, the dense kernel (nnet_vecq_dense.h) on every node's row.
// vecq_gcn_aggregate: y_i = (res_T)(q_i * sum_{j in row i of the CSR} u_j + b), u_j = (u_b_t)(z_j * p_j):
//   phase 1 (a node row per cycle): every node's row times its pre-scale p_j, converted ONCE into the
//     type u<b>_t of its degree bucket b = bucket[j], and stored at row slot[j] of that bucket's memory:
//     one memory per bucket, a word per node of n_feat values at the bucket's width (degree-aware
//     storage); reading a value back widens it exactly into store_t (the common compute type);
//   phase 2 (an edge per cycle): for each node i the CSR row indptr[i]..indptr[i+1] is walked, the
//     neighbours' rows summed exactly in sum_t (multiplier-free: the edge weights are factored into
//     p and q), then (res_T)(sum * q_i + b_f): ap_fixed products and sums are full precision, so the
//     conversion is the ONE rounding of the contract.
// Tables (ROMs): indptr (ptr_t), indices (index_t), bucket/slot per node, pre/post per node, bias per feature.
#ifndef NNET_VECQ_GNN_H_
#define NNET_VECQ_GNN_H_

#include "nnet_vecq_common.h"
#include "nnet_vecq_dense.h"

namespace nnet {

struct vecq_node_dense_config : vecq_dense_config {
    static const unsigned n_nodes = 1;
};

template <class data_T, class res_T, typename CONFIG_T>
void vecq_node_dense(data_T data[CONFIG_T::n_nodes * CONFIG_T::n_in], res_T res[CONFIG_T::n_nodes * CONFIG_T::n_out],
                     const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                     const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                     const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
VecQNodeDenseNodes:
    for (unsigned v = 0; v < CONFIG_T::n_nodes; v++) {
        vecq_dense<data_T, res_T, CONFIG_T>(data + v * CONFIG_T::n_in, res + v * CONFIG_T::n_out, weights, scale, bias);
    }
}

// io_stream: one pack per node (n_in values in, n_out out), the dense stream kernel once per node
template <class data_T, class res_T, typename CONFIG_T>
void vecq_node_dense(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream,
                     const typename CONFIG_T::weight_t weights[CONFIG_T::n_in * CONFIG_T::n_out],
                     const typename CONFIG_T::scale_t scale[CONFIG_T::n_out],
                     const typename CONFIG_T::bias_t bias[CONFIG_T::n_out]) {
VecQNodeDenseNodes:
    for (unsigned v = 0; v < CONFIG_T::n_nodes; v++) {
        vecq_dense<data_T, res_T, CONFIG_T>(data_stream, res_stream, weights, scale, bias);
    }
}

struct vecq_gcn_aggregate_config {
    static const unsigned n_nodes = 1, n_feat = 1, n_edges = 1;
    static const unsigned rows0 = 1, rows1 = 1, rows2 = 1, rows3 = 1; // nodes per bucket memory
    typedef ap_fixed<8, 3> u0_t, u1_t, u2_t, u3_t;                   // the buckets' storage types
    typedef ap_fixed<8, 3> store_t;                                   // holds every bucket type exactly
    typedef ap_fixed<16, 6> sum_t;                                    // the exact neighbour sum
    typedef ap_ufixed<10, 1> pre_t, post_t;
    typedef ap_fixed<12, 4> bias_t;
    typedef ap_uint<16> ptr_t, index_t, slot_t;
    typedef ap_uint<2> bucket_t;
};

// the stored buckets: one memory per degree bucket, a node row per word
template <typename CONFIG_T> struct vecq_gcn_store {
    typename CONFIG_T::u0_t m0[CONFIG_T::rows0][CONFIG_T::n_feat];
    typename CONFIG_T::u1_t m1[CONFIG_T::rows1][CONFIG_T::n_feat];
    typename CONFIG_T::u2_t m2[CONFIG_T::rows2][CONFIG_T::n_feat];
    typename CONFIG_T::u3_t m3[CONFIG_T::rows3][CONFIG_T::n_feat];

    // u_j = (u_b_t)(z_j * p_j): the pre-scale's one conversion, into node j's bucket type
    template <class z_T> void put(unsigned b, unsigned s, const z_T z[CONFIG_T::n_feat],
                                  const typename CONFIG_T::pre_t p) {
        #pragma HLS INLINE
        for (unsigned f = 0; f < CONFIG_T::n_feat; f++) {
            #pragma HLS UNROLL
            switch (b) {
            case 0: m0[s][f] = (typename CONFIG_T::u0_t)(z[f] * p); break;
            case 1: m1[s][f] = (typename CONFIG_T::u1_t)(z[f] * p); break;
            case 2: m2[s][f] = (typename CONFIG_T::u2_t)(z[f] * p); break;
            default: m3[s][f] = (typename CONFIG_T::u3_t)(z[f] * p); break;
            }
        }
    }

    // acc += u_j, every stored value widened exactly into store_t
    void add(unsigned b, unsigned s, typename CONFIG_T::sum_t acc[CONFIG_T::n_feat]) const {
        #pragma HLS INLINE
        for (unsigned f = 0; f < CONFIG_T::n_feat; f++) {
            #pragma HLS UNROLL
            typename CONFIG_T::store_t u;
            switch (b) {
            case 0: u = m0[s][f]; break;
            case 1: u = m1[s][f]; break;
            case 2: u = m2[s][f]; break;
            default: u = m3[s][f]; break;
            }
            acc[f] += u;
        }
    }
};

// phase 2 for node i: the exact neighbour sum, then the post-scale's one conversion per feature
template <class res_T, typename CONFIG_T>
void vecq_gcn_node(unsigned i, const vecq_gcn_store<CONFIG_T> &store, res_T out[CONFIG_T::n_feat],
                   const typename CONFIG_T::ptr_t indptr[CONFIG_T::n_nodes + 1],
                   const typename CONFIG_T::index_t indices[CONFIG_T::n_edges],
                   const typename CONFIG_T::bucket_t bucket[CONFIG_T::n_nodes],
                   const typename CONFIG_T::slot_t slot[CONFIG_T::n_nodes],
                   const typename CONFIG_T::post_t post[CONFIG_T::n_nodes],
                   const typename CONFIG_T::bias_t bias[CONFIG_T::n_feat]) {
    #pragma HLS INLINE
    typename CONFIG_T::sum_t acc[CONFIG_T::n_feat];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    vecq_clear<typename CONFIG_T::sum_t, CONFIG_T::n_feat>(acc);
VecQGcnEdges:
    for (unsigned k = indptr[i]; k < indptr[i + 1]; k++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS LOOP_TRIPCOUNT min=1 max=CONFIG_T::n_edges
        const unsigned j = indices[k];
        store.add(bucket[j], slot[j], acc);
    }
VecQGcnPost:
    for (unsigned f = 0; f < CONFIG_T::n_feat; f++) {
        #pragma HLS UNROLL
        out[f] = (res_T)(acc[f] * post[i] + bias[f]);
    }
}

#define VECQ_GCN_TABLES                                                                                                \
    const typename CONFIG_T::ptr_t indptr[CONFIG_T::n_nodes + 1],                                                      \
        const typename CONFIG_T::index_t indices[CONFIG_T::n_edges],                                                   \
        const typename CONFIG_T::bucket_t bucket[CONFIG_T::n_nodes],                                                   \
        const typename CONFIG_T::slot_t slot[CONFIG_T::n_nodes],                                                       \
        const typename CONFIG_T::pre_t pre[CONFIG_T::n_nodes],                                                         \
        const typename CONFIG_T::post_t post[CONFIG_T::n_nodes], const typename CONFIG_T::bias_t bias[CONFIG_T::n_feat]

template <class data_T, class res_T, typename CONFIG_T>
void vecq_gcn_aggregate(data_T data[CONFIG_T::n_nodes * CONFIG_T::n_feat],
                        res_T res[CONFIG_T::n_nodes * CONFIG_T::n_feat], VECQ_GCN_TABLES) {
    static vecq_gcn_store<CONFIG_T> store; // static: a graph's rows outgrow any stack in C simulation
VecQGcnPre:
    for (unsigned j = 0; j < CONFIG_T::n_nodes; j++) {
        #pragma HLS PIPELINE II=1
        store.put(bucket[j], slot[j], data + j * CONFIG_T::n_feat, pre[j]);
    }
VecQGcnNodes:
    for (unsigned i = 0; i < CONFIG_T::n_nodes; i++) {
        vecq_gcn_node<res_T, CONFIG_T>(i, store, res + i * CONFIG_T::n_feat, indptr, indices, bucket, slot, post,
                                       bias);
    }
}

// io_stream: a pack per node in (phase 1 as they arrive), a pack per node out (phase 2)
template <class data_T, class res_T, typename CONFIG_T>
void vecq_gcn_aggregate(hls::stream<data_T> &data_stream, hls::stream<res_T> &res_stream, VECQ_GCN_TABLES) {
    static_assert(data_T::size == CONFIG_T::n_feat && res_T::size == CONFIG_T::n_feat,
                  "vecq gcn_aggregate: one pack per node row");
    static vecq_gcn_store<CONFIG_T> store;
VecQGcnPreStream:
    for (unsigned j = 0; j < CONFIG_T::n_nodes; j++) {
        #pragma HLS PIPELINE II=1
        data_T pack = data_stream.read();
        typename data_T::value_type z[CONFIG_T::n_feat];
        #pragma HLS ARRAY_PARTITION variable=z complete
        for (unsigned f = 0; f < CONFIG_T::n_feat; f++) {
            #pragma HLS UNROLL
            z[f] = pack[f];
        }
        store.put(bucket[j], slot[j], z, pre[j]);
    }
VecQGcnNodesStream:
    for (unsigned i = 0; i < CONFIG_T::n_nodes; i++) {
        typename res_T::value_type out[CONFIG_T::n_feat];
        #pragma HLS ARRAY_PARTITION variable=out complete
        vecq_gcn_node<typename res_T::value_type, CONFIG_T>(i, store, out, indptr, indices, bucket, slot, post, bias);
        vecq_write_packs<res_T, CONFIG_T::n_feat, vecq_as_is>(out, res_stream);
    }
}

#undef VECQ_GCN_TABLES

} // namespace nnet

#endif
