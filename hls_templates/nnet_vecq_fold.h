// Folding (issue 13). R = CONFIG_T::reuse_factor > 1: the P products of one input (dense:
// n_in * n_out; conv: filt_height * filt_width * n_chan * n_filt per output pixel; depthwise:
// filt_height * filt_width * n_chan per pixel) are computed block = P / R at a time: R products
// share one multiplier slot, the reuse loop runs R iterations at II = 1, so the layer takes a
// new input (a new pixel) every R cycles. R divides P (checked in Python, hls/folding.py).
// Product p (in weight-table order) reads weights[p]; the kernels reshape the table cyclically by
// block (ARRAY_RESHAPE: word r holds products r * block .. r * block + block - 1), so the
// block slots read one wide ROM word per cycle (BIND_STORAGE lets the tool pick BRAM/LUTRAM).
// Exactness: the sum of the same products in another order. accum_t is sized from the bound
// sum_i max(|x_i d_ij|) per channel, and every partial sum of a subset lies within it (each
// term's range contains 0), so no order overflows: the result equals the unfolded kernel's.
#ifndef NNET_VECQ_FOLD_H_
#define NNET_VECQ_FOLD_H_

#include "nnet_vecq_products.h"

namespace nnet {

// How many inputs one cycle's block of products [r * block, r * block + block) reads, products p
// and p' reading the same input when p / G == p' / G (TAPS::group = G consecutive products per
// input): block / G when G divides block, 1 when block divides G, else at most (block - 1) / G + 2.
template <unsigned BLOCK, unsigned G> struct vecq_block_inputs {
    static const unsigned n = BLOCK % G == 0 ? BLOCK / G : (G % BLOCK == 0 ? 1 : (BLOCK - 1) / G + 2);
    // the input (0 .. n - 1) slot b of the block starting at p0 reads; constant when aligned
    static unsigned of(unsigned p0, unsigned b) {
        #pragma HLS INLINE
        return BLOCK % G == 0 ? b / G : (G % BLOCK == 0 ? 0 : (p0 + b) / G - p0 / G);
    }
};

// The config whose accum_t is CONFIG_T::psum_t (issue 21): the product classes then compute a
// cycle's partial sums, and the operands they share, at that narrow width.
template <class CONFIG_T, bool PSUM> struct vecq_psum_config { typedef CONFIG_T type; };
template <class CONFIG_T> struct vecq_psum_config<CONFIG_T, true> {
    struct type : CONFIG_T {
        typedef typename CONFIG_T::psum_t accum_t;
    };
};

// sums[f] += the products of the block starting at product p0 (one cycle): each input the block
// reads becomes its operand ONCE (vecq_operand: x in C's accum_t, or x with its multiples x, 3x,
// ... for the select products), and every slot reading it selects and adds from that operand
template <class x_T, class C, class TAPS, unsigned BLOCK, unsigned N_ACC, unsigned N_PROD, unsigned N_SRC>
void vecq_fold_block(const x_T src[N_SRC], unsigned oh, unsigned ow, unsigned p0, typename C::accum_t sums[N_ACC],
                     const typename C::weight_t weights[N_PROD]) {
    #pragma HLS INLINE
    typedef vecq_block_inputs<BLOCK, TAPS::group> inputs;
    typename vecq_operand_of<x_T, C>::type ops[inputs::n];
    #pragma HLS ARRAY_PARTITION variable=ops complete
VecQFoldInputs:
    for (unsigned t = 0; t < inputs::n; t++) {
        #pragma HLS UNROLL
        const unsigned p = (p0 / TAPS::group + t) * TAPS::group; // the input's first product
        unsigned f, i;
        if (p < N_PROD && TAPS::tap(p, oh, ow, f, i))
            ops[t] = vecq_operand<x_T, C>(src[i]);
    }
VecQFoldBlock:
    for (unsigned b = 0; b < BLOCK; b++) {
        #pragma HLS UNROLL
        const unsigned p = p0 + b;
        unsigned f, i;
        if (TAPS::tap(p, oh, ow, f, i))
            vecq_mac_op<x_T, C>(sums[f], ops[inputs::of(p0, b)], weights[p]);
    }
}

// acc[f] += the products of cycle r (products r * block .. r * block + block - 1). CONFIG_T::psum
// (set in Python, hls/partial_sums.py, when every cycle gives each of the N_ACC outputs
// block / N_ACC >= 2 products): the cycle sums each output's products in the narrow psum_t
// (exact: it holds block / N_ACC x max|x d|, and wraps like accum_t), then adds that sum into
// accum_t once.
template <class x_T, class CONFIG_T, class TAPS, unsigned N_ACC, unsigned N_PROD, unsigned N_SRC>
void vecq_fold_step(const x_T src[N_SRC], unsigned oh, unsigned ow, unsigned r, typename CONFIG_T::accum_t acc[N_ACC],
                    const typename CONFIG_T::weight_t weights[N_PROD]) {
    #pragma HLS INLINE
    static const unsigned block = N_PROD / CONFIG_T::reuse_factor;
    static const bool psum = CONFIG_T::psum && TAPS::group == N_ACC && block % N_ACC == 0;
    typedef typename vecq_psum_config<CONFIG_T, psum>::type P;
    if (psum) {
        typename P::accum_t sums[N_ACC];
        #pragma HLS ARRAY_PARTITION variable=sums complete
        vecq_clear<typename P::accum_t, N_ACC>(sums);
        vecq_fold_block<x_T, P, TAPS, block, N_ACC, N_PROD, N_SRC>(src, oh, ow, r * block, sums, weights);
    VecQFoldPartialSums:
        for (unsigned f = 0; f < N_ACC; f++) {
            #pragma HLS UNROLL
            acc[f] += sums[f];
        }
    } else {
        vecq_fold_block<x_T, CONFIG_T, TAPS, block, N_ACC, N_PROD, N_SRC>(src, oh, ow, r * block, acc, weights);
    }
}

// acc[f] = the sum of the N_PROD products of one input (one output pixel (oh, ow) of a conv),
// block = N_PROD / R of them per cycle (vecq_fold_step). TAPS::tap(p, oh, ow, f, i) names product
// p's output f and its input src[i], or is false for a tap in the zero padding (it contributes
// nothing). The slot array shares its inputs (issue 21, vecq_fold_block).
template <class x_T, class CONFIG_T, class TAPS, unsigned N_ACC, unsigned N_PROD, unsigned N_SRC>
void vecq_fold_products(const x_T src[N_SRC], unsigned oh, unsigned ow, typename CONFIG_T::accum_t acc[N_ACC],
                        const typename CONFIG_T::weight_t weights[N_PROD]) {
    #pragma HLS INLINE
    vecq_clear<typename CONFIG_T::accum_t, N_ACC>(acc);
VecQFoldReuse:
    for (unsigned r = 0; r < CONFIG_T::reuse_factor; r++) {
        #pragma HLS PIPELINE II=1
        vecq_fold_step<x_T, CONFIG_T, TAPS, N_ACC, N_PROD, N_SRC>(src, oh, ow, r, acc, weights);
    }
}

// The requantisation of a folded conv pixel (issue 21): units = ceil(N / R) units, one output
// per unit a cycle, cycles = ceil(N / units) <= R cycles a pixel
template <unsigned N, unsigned R> struct vecq_requant_schedule {
    static const unsigned units = (N + R - 1) / R;
    static const unsigned cycles = (N + units - 1) / units;
};

// One output row of a folded conv (R = reuse_factor > 1), pixels overlapped (issue 21): ONE loop,
// PIPELINE II=1, trip count n_cols * R + cycles (vecq_requant_schedule). Iteration t computes
// product cycle r = t % R of pixel ow = t / R; at its last cycle the pixel's accumulators are
// copied into the hold registers (N_ACC x accum_t, loaded by their clock enables, while the
// accumulators reset to 0: no clear multiplexer before the adders), and during the
// next pixel's R product cycles the units requantise them, outputs q * units .. q * units +
// units - 1 in requant cycle q (a cycles:1 read multiplexer per unit and accumulator bit); the
// last `cycles` iterations only drain the row's last pixel. So the products never wait for the
// requantisation: a row takes n_cols * R + cycles cycles (+ the pipeline depth), not n_cols * (R +
// cycles + depth) as a product loop followed by a requant loop per pixel would. That is the
// estimator's model (_ConvMapping.folded_cycles): a loop-trip count, not co-simulation. Exactness: the same products and sums per pixel as
// vecq_fold_products, each output requantised once by vecq_requant. SINK::pixel(px) receives
// every finished pixel, in order.
template <class x_T, class y_T, class CONFIG_T, class TAPS, unsigned N_ACC, unsigned N_PROD, unsigned N_SRC,
          class SINK>
void vecq_fold_row(const x_T src[N_SRC], unsigned oh, unsigned n_cols, const typename CONFIG_T::weight_t weights[N_PROD],
                   const typename CONFIG_T::scale_t scale[N_ACC], const typename CONFIG_T::bias_t bias[N_ACC],
                   SINK &sink) {
    #pragma HLS INLINE
    static const unsigned R = CONFIG_T::reuse_factor;
    typedef vecq_requant_schedule<N_ACC, R> S;
    typename CONFIG_T::accum_t acc[N_ACC], hold[N_ACC];
    #pragma HLS ARRAY_PARTITION variable=acc complete
    #pragma HLS ARRAY_PARTITION variable=hold complete
    y_T px[N_ACC];
    #pragma HLS ARRAY_PARTITION variable=px complete
    vecq_clear<typename CONFIG_T::accum_t, N_ACC>(acc);
    unsigned ow = 0, r = 0, q = S::cycles; // q: the requant cycle of the held pixel (cycles: none)
VecQFoldRow:
    for (unsigned t = 0; t < n_cols * R + S::cycles; t++) {
        #pragma HLS PIPELINE II=1
        if (q < S::cycles) { // before this cycle's copy below: it reads the previous pixel
        VecQRequantUnits:
            for (unsigned u = 0; u < S::units; u++) {
                #pragma HLS UNROLL
                const unsigned o = q * S::units + u; // a cycles:1 read multiplexer per unit
                if (o < N_ACC)
                    px[o] = vecq_requant<y_T, CONFIG_T>(hold[o], scale[o], bias[o]);
            }
            if (++q == S::cycles)
                sink.pixel(px);
        }
        if (ow < n_cols) {
            vecq_fold_step<x_T, CONFIG_T, TAPS, N_ACC, N_PROD, N_SRC>(src, oh, ow, r, acc, weights);
            if (r == R - 1) { // the adder's sum into hold (clock enable), acc to 0 (synchronous reset)
            VecQHoldCopy:
                for (unsigned j = 0; j < N_ACC; j++) {
                    #pragma HLS UNROLL
                    hold[j] = acc[j];
                }
                vecq_clear<typename CONFIG_T::accum_t, N_ACC>(acc);
                q = 0;
            }
        }
        if (++r == R) {
            r = 0;
            ow++;
        }
    }
}

// the pixels of vecq_fold_row into res[o ..], N values each (io_parallel)
template <class res_T, unsigned N> struct vecq_array_sink {
    typedef res_T value_type;
    res_T *res;
    unsigned o;
    void pixel(const res_T px[]) {
        #pragma HLS INLINE
    VecQArraySink:
        for (unsigned j = 0; j < N; j++) {
            #pragma HLS UNROLL
            res[o + j] = px[j];
        }
        o += N;
    }
};

// res[o0 + j] = vecq_requant(acc[j], ...) for every j < N: the requantisation folds too,
// ceil(N / R) units, one output per unit every cycle
template <class res_T, class CONFIG_T, unsigned N, unsigned N_RES>
void vecq_requant_folded(const typename CONFIG_T::accum_t acc[N], res_T res[N_RES], unsigned o0,
                         const typename CONFIG_T::scale_t scale[N], const typename CONFIG_T::bias_t bias[N]) {
    #pragma HLS INLINE
    static const unsigned n_requant = (N + CONFIG_T::reuse_factor - 1) / CONFIG_T::reuse_factor;
VecQRequantFolded:
    for (unsigned j = 0; j < N; j++) {
        #pragma HLS PIPELINE II=1
        #pragma HLS UNROLL factor=n_requant
        res[o0 + j] = vecq_requant<res_T, CONFIG_T>(acc[j], scale[j], bias[j]);
    }
}

} // namespace nnet

#endif
