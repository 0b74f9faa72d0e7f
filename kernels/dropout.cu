// dropout.cu -- inverted dropout whose mask comes from a counter-based random number generator, so the
// backward pass regenerates the mask from (seed, offset) instead of storing it.
//
// Element i of a call draws the 32-bit number  r_i = Philox4x32-10(key = seed, counter = q)[lane]
// where g = offset + i (mod 2^64), q = g / 4 (as a 128-bit counter (lo32(q), hi32(q), 0, 0)) and
// lane = g % 4: every Philox call yields 4 numbers, so 4 consecutive counters share one call. The mask is
// keep_i = (r_i >= threshold) with threshold = round(p 2^32), so P(keep) = 1 - p, and
//     y_i = keep_i ? x_i * scale : 0,    scale = 1 / (1 - p)  (0 when p == 1).
// The backward pass is the same map applied to the upstream gradient with the same (seed, offset).
// tinylazy/_xpmath.py computes exactly the same numbers with NumPy/CuPy integer arithmetic.
#include "common.cuh"

struct U32x4 { unsigned int v[4]; };

// Philox4x32 with 10 rounds (Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011).
__device__ __forceinline__ U32x4 philox4x32_10(unsigned int c0, unsigned int c1, unsigned int c2, unsigned int c3,
                                               unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }           // bump the key between rounds
        const unsigned int hi0 = __umulhi(0xD2511F53u, c0), lo0 = 0xD2511F53u * c0;
        const unsigned int hi1 = __umulhi(0xCD9E8D57u, c2), lo1 = 0xCD9E8D57u * c2;
        const unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
        c0 = n0; c1 = lo1; c2 = n2; c3 = lo0;
    }
    U32x4 r;
    r.v[0] = c0; r.v[1] = c1; r.v[2] = c2; r.v[3] = c3;
    return r;
}

__device__ __forceinline__ U32x4 philox_block(unsigned long long q, unsigned long long seed) {
    return philox4x32_10((unsigned int)q, (unsigned int)(q >> 32), 0u, 0u, (unsigned int)seed, (unsigned int)(seed >> 32));
}

// The random numbers of the 4 elements 4k .. 4k+3 of this call, for a call whose offset % 4 == PHASE.
// PHASE is a template parameter, so after unrolling every index into a Philox output is a constant and the
// numbers stay in registers. (Picking the outputs with a runtime index, as an earlier version did, puts
// them in local memory and costs ~150 instructions per 16 bytes: the kernel was compute-bound.)
// PHASE 0 -- the aligned fast path, and the usual case (tinylazy reserves counters in multiples of 4) --
// is one Philox call per 4 elements; any other phase straddles two calls.
template <int PHASE>
__device__ __forceinline__ void randoms4(long long k, unsigned long long seed, unsigned long long offset, unsigned int (&r)[4]) {
    const unsigned long long q = (offset + 4ull * (unsigned long long)k) >> 2;   // counter of element 4k's call
    const U32x4 first = philox_block(q, seed);
    if (PHASE == 0) {
#pragma unroll
        for (int j = 0; j < 4; ++j) r[j] = first.v[j];
        return;
    }
    const U32x4 second = philox_block(q + 1ull, seed);
#pragma unroll
    for (int j = 0; j < 4; ++j) r[j] = PHASE + j < 4 ? first.v[(PHASE + j) & 3] : second.v[(PHASE + j) & 3];
}

// Load / store the 4 elements 4k .. 4k+3, with 128-bit accesses when `vec` (all 4 exist and x is aligned).
__device__ __forceinline__ void load4(const float* x, long long k, bool vec, long long n, float (&a)[4]) {
    if (vec) { load_vec(x, k, a); return; }
    for (int j = 0; j < 4; ++j) a[j] = 4 * k + j < n ? x[4 * k + j] : 0.0f;
}
__device__ __forceinline__ void load4(const double* x, long long k, bool vec, long long n, double (&a)[4]) {
    if (vec) {
        double lo[2], hi[2];
        load_vec(x, 2 * k, lo); load_vec(x, 2 * k + 1, hi);
        a[0] = lo[0]; a[1] = lo[1]; a[2] = hi[0]; a[3] = hi[1];
        return;
    }
    for (int j = 0; j < 4; ++j) a[j] = 4 * k + j < n ? x[4 * k + j] : 0.0;
}
__device__ __forceinline__ void store4(float* y, long long k, bool vec, long long n, const float (&a)[4]) {
    if (vec) { store_vec(y, k, a); return; }
    for (int j = 0; j < 4; ++j) if (4 * k + j < n) y[4 * k + j] = a[j];
}
__device__ __forceinline__ void store4(double* y, long long k, bool vec, long long n, const double (&a)[4]) {
    if (vec) {
        const double lo[2] = {a[0], a[1]}, hi[2] = {a[2], a[3]};
        store_vec(y, 2 * k, lo); store_vec(y, 2 * k + 1, hi);
        return;
    }
    for (int j = 0; j < 4; ++j) if (4 * k + j < n) y[4 * k + j] = a[j];
}

// y = x * keep * scale; each thread handles groups of 4 elements.
template <typename T, int PHASE>
__device__ void dropout_apply(const T* __restrict__ x, T* __restrict__ y, long long n, long long seed,
                              long long offset, long long threshold, double scale) {
    const T s = T(scale);
    const bool aligned = aligned16(x) && aligned16(y);
    const unsigned long long t = (unsigned long long)threshold;           // in [0, 2^32]
    for (long long k = global_thread(); 4 * k < n; k += grid_threads()) {
        const bool vec = aligned && 4 * k + 3 < n;
        unsigned int r[4];
        randoms4<PHASE>(k, (unsigned long long)seed, (unsigned long long)offset, r);
        T a[4];
        load4(x, k, vec, n, a);
#pragma unroll
        for (int j = 0; j < 4; ++j) a[j] = (unsigned long long)r[j] >= t ? a[j] * s : T(0);
        store4(y, k, vec, n, a);
    }
}

// mask[i] = keep_i (one byte per element, as a NumPy/CuPy bool array).
template <int PHASE>
__device__ void dropout_keep_mask(bool* __restrict__ mask, long long n, long long seed, long long offset, long long threshold) {
    const unsigned long long t = (unsigned long long)threshold;
    for (long long k = global_thread(); 4 * k < n; k += grid_threads()) {
        unsigned int r[4];
        randoms4<PHASE>(k, (unsigned long long)seed, (unsigned long long)offset, r);
#pragma unroll
        for (int j = 0; j < 4; ++j)
            if (4 * k + j < n) mask[4 * k + j] = (unsigned long long)r[j] >= t;
    }
}

// The phase (offset % 4) is the same for the whole launch: pick the instantiation once.
template <typename T>
__device__ void dropout_any(const T* x, T* y, long long n, long long seed, long long offset, long long threshold, double scale) {
    switch ((unsigned long long)offset & 3ull) {
        case 0: dropout_apply<T, 0>(x, y, n, seed, offset, threshold, scale); break;
        case 1: dropout_apply<T, 1>(x, y, n, seed, offset, threshold, scale); break;
        case 2: dropout_apply<T, 2>(x, y, n, seed, offset, threshold, scale); break;
        default: dropout_apply<T, 3>(x, y, n, seed, offset, threshold, scale); break;
    }
}

// ---- extern "C" entry points ----------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(256)
dropout_f32(const float* x, float* y, long long n, long long seed, long long offset, long long threshold, double scale) {
    dropout_any<float>(x, y, n, seed, offset, threshold, scale);
}
extern "C" __global__ void __launch_bounds__(256)
dropout_f64(const double* x, double* y, long long n, long long seed, long long offset, long long threshold, double scale) {
    dropout_any<double>(x, y, n, seed, offset, threshold, scale);
}
extern "C" __global__ void __launch_bounds__(256)
dropout_mask(bool* mask, long long n, long long seed, long long offset, long long threshold) {
    switch ((unsigned long long)offset & 3ull) {
        case 0: dropout_keep_mask<0>(mask, n, seed, offset, threshold); break;
        case 1: dropout_keep_mask<1>(mask, n, seed, offset, threshold); break;
        case 2: dropout_keep_mask<2>(mask, n, seed, offset, threshold); break;
        default: dropout_keep_mask<3>(mask, n, seed, offset, threshold); break;
    }
}
