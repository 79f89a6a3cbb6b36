// Select groups (issue 21): x * d as one selected multiple of x per group of <= 2 code bits,
// the multiples computed ONCE per input and shared by every product of that input (every
// output channel a folded slot array or an unrolled row multiplies it by). Python's plan:
// vecq_hw/hls/select.py (the same groups, entries and proof of the decomposition).
//   vecq_x13 / vecq_radix4    the named tables, from CONFIG_T::bits and ::encoding alone:
//       odd (d = 2c + 1): radix-4 digits in {-3, -1, 1, 3}: x and 3x once per input, then per
//           digit a select (x or 3x) and an add or subtract, shifted by 2t;
//       int (d = c): digits {0, 1, 2, 3} (x, 2x = x << 1, 3x) below a signed top digit
//           {-2, -1, 0, 1}.
//   vecq_multiples / vecq_select_groups   any other table with a plan (ESB at k = b - 2, ...):
//       CONFIG_T's tables name the odd multiples (their signed digits) and, per group, its code
//       bits, shift and, per value of its bits, which multiple, its shift and whether to subtract it.
// Hardware: each group is ONE adder per product whose every accumulator bit is one 6-input LUT
// (accumulator bit, the group's code bits, the bits of its <= 3 candidate multiples; the sign a
// function of the code bits in that LUT) on the carry chain; the subtraction is the one's
// complement of the selected multiple with the carry-in set.
// Exactness: every + / - / << happens in the accumulating type T, which wraps (AP_WRAP) and has
// x's fraction bits, so each partial sum equals the true one modulo 2^W; the groups' terms add up
// to x * d exactly (sum_t entries[t][v_t] = levels[c] for every code, checked in Python and by
// the g++ sweeps), and the final sum lies in T's range: it is the true sum (nnet_vecq_products.h).
#ifndef NNET_VECQ_SELECT_H_
#define NNET_VECQ_SELECT_H_

#include "ap_fixed.h"
#include "ap_int.h"

namespace nnet {

// acc + m or acc - m: one adder (the select and the complement sit in its LUTs)
template <class T> void vecq_add_or_sub(T &acc, const T &m, bool neg) {
    #pragma HLS INLINE
    if (neg)
        acc -= m;
    else
        acc += m;
}

// x and 3x in T, once per input
template <class T> struct vecq_x13 {
    T x1, x3;
    vecq_x13() : x1(0), x3(0) {}
    template <class X> vecq_x13(const X &x) : x1(x), x3(0) {
        #pragma HLS INLINE
        x3 = x1 + (T)(x1 << 1);
    }
};

// acc += x * d for the named tables: digit t reads code bits lo = 2t, lo + 1 (one bit at an odd
// k's top) and adds +/- x, 3x (odd) or 0, x, 2x, 3x (int) shifted by lo. odd: d = sum_b s_b 2^b,
// s_b = 2u_b - 1, u = the code's bits with the top one inverted; a pair's digit 2 s1 + s0 is 3x
// when u1 == u0, x otherwise, negative when u1 = 0. int: d = c, pairs below the top are unsigned,
// the top pair is -2 c1 + c0, a lone top bit -c.
template <unsigned BITS, unsigned ENC> struct vecq_radix4 {
    template <class T, class code_T> static void add(T &acc, const vecq_x13<T> &m, code_T c) {
        #pragma HLS INLINE
    VecQRadix4:
        for (unsigned lo = 0; lo < BITS; lo += 2) {
            #pragma HLS UNROLL
            const bool pair = lo + 1 < BITS, top = lo + (pair ? 1 : 0) == BITS - 1;
            const bool b0 = c[lo], b1 = pair ? (bool)c[lo + 1] : false;
            bool neg, zero = false;
            T mag;
            if (ENC == 0) {
                const bool u0 = pair ? b0 : !b0, u1 = top ? !b1 : b1; // a lone (top) bit: u = !c
                neg = pair ? !u1 : !u0;
                mag = (pair && u1 == u0) ? m.x3 : m.x1;
            } else if (!top) {
                zero = !b0 && !b1;
                neg = false;
                mag = b1 ? (b0 ? m.x3 : (T)(m.x1 << 1)) : m.x1;
            } else {
                zero = !b0 && !b1;
                neg = pair ? b1 : b0;
                mag = (pair && b1 && !b0) ? (T)(m.x1 << 1) : m.x1;
            }
            if (!zero)
                vecq_add_or_sub<T>(acc, (T)(mag << lo), neg);
        }
    }
};

// the multiples of one input for a Python plan: m[q] = x * mult_q, each from its signed digits
// (CONFIG_T::mult_sign / mult_shift, n_mult_digits columns): shifts and adds, once per input
template <class T, class CONFIG_T> struct vecq_multiples {
    T m[CONFIG_T::n_mults];
    vecq_multiples() {
        for (unsigned q = 0; q < CONFIG_T::n_mults; q++)
            m[q] = 0;
    }
    template <class X> vecq_multiples(const X &x) {
        #pragma HLS INLINE
        const T xt = x;
    VecQMultiples:
        for (unsigned q = 0; q < CONFIG_T::n_mults; q++) {
            #pragma HLS UNROLL
            T s = 0;
            for (unsigned d = 0; d < CONFIG_T::n_mult_digits; d++) {
                #pragma HLS UNROLL
                const int sg = CONFIG_T::mult_sign(q, d);
                if (sg != 0)
                    vecq_add_or_sub<T>(s, (T)(xt << CONFIG_T::mult_shift(q, d)), sg < 0);
            }
            m[q] = s;
        }
    }
};

// acc += x * d for a Python plan: group t reads code bits group_bit(t, 0..group_size(t) - 1) as
// v, picks multiple pick(t, v) (n_mults: nothing to add), shifts it by group_shift(t) +
// pick_shift(t, v) and adds or subtracts it (negate(t, v))
template <class CONFIG_T> struct vecq_select_groups {
    template <class T, class code_T> static void add(T &acc, const vecq_multiples<T, CONFIG_T> &ms, code_T c) {
        #pragma HLS INLINE
    VecQSelectGroups:
        for (unsigned t = 0; t < CONFIG_T::n_groups; t++) {
            #pragma HLS UNROLL
            unsigned v = c[CONFIG_T::group_bit(t, 0)];
            if (CONFIG_T::group_size(t) > 1)
                v |= (unsigned)c[CONFIG_T::group_bit(t, 1)] << 1;
            const unsigned q = CONFIG_T::pick(t, v);
            if (q < CONFIG_T::n_mults)
                vecq_add_or_sub<T>(acc, (T)(ms.m[q] << (CONFIG_T::group_shift(t) + CONFIG_T::pick_shift(t, v))),
                                   CONFIG_T::negate(t, v) != 0);
        }
    }
};

} // namespace nnet

#endif
