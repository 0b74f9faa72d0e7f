// softmax_xent.cu -- fused, numerically stable log-softmax + cross-entropy over the rows of a contiguous
// (rows, C) logits matrix, with integer class targets and label smoothing eps.
//
//   m_r    = max_j z_rj,   l_r = log sum_j exp(z_rj - m_r)    (lse_r = m_r + l_r; (m_r, l_r) saved for backward)
//   loss_r = (1 - eps) (lse_r - z_r,t) + eps (lse_r - mean_j z_rj)
//          = -(1 - eps) log p_r,t - eps/C sum_j log p_rj      with p = softmax(z_r), t = target_r
//   dz_rj  = g_r (p_rj - eps/C - (1 - eps) [j == t])   where g_r is the upstream gradient of loss_r
//            and p_rj = exp((z_rj - m_r) - l_r)
// Keeping m and l apart (never forming lse - z) keeps full precision when the logits are large.
//
// One warp per row; each lane walks the row with a stride of 32 (128-bit loads when the rows are aligned),
// keeping a running maximum m and the sum s of exp(z - m) (the "online softmax"), merged across lanes with
// shuffles. A row whose target equals ignore_index gets loss 0 and gradient 0; any other target outside
// [0, C) gives a NaN loss (nothing is read out of bounds; kernels/checks.cu flags it).
#include "common.cuh"

// Fold z into (m, s), where s = sum exp(z_i - m) over the values seen so far and m their maximum.
template <typename T>
__device__ __forceinline__ void online_add(T& m, T& s, T z) {
    if (z > m) {
        s = s * exp_t(m - z) + T(1);                 // rescale the old sum to the new maximum
        m = z;
    } else if (z != neg_inf<T>()) {                  // -inf contributes exp(-inf) = 0; NaN falls through to here
        s += exp_t(z - m);
    }
}

// Merge (m2, s2) into (m, s).
template <typename T>
__device__ __forceinline__ void online_merge(T& m, T& s, T m2, T s2) {
    const T mx = m > m2 ? m : m2;
    if (mx == neg_inf<T>()) return;                  // both empty (or all -inf)
    s = s * exp_t(m - mx) + s2 * exp_t(m2 - mx);
    m = mx;
}

template <typename T>
__device__ void xent_forward(const T* __restrict__ z, const long long* __restrict__ target,
                             T* __restrict__ loss, T* __restrict__ stats,
                             long long rows, long long C, double smoothing, long long ignore_index) {
    constexpr int W = Vec<T>::width;
    const int lane = threadIdx.x & 31;
    const bool vec = aligned16(z) && C % W == 0;                 // then every row starts 16-byte aligned
    const T eps = T(smoothing);
    for (long long r = global_thread() / 32; r < rows; r += grid_threads() / 32) {   // warp-uniform loop
        const T* row = z + r * C;
        T m = neg_inf<T>(), s = T(0), zsum = T(0);
        if (vec) {
            for (long long v = lane; v < C / W; v += 32) {
                T a[W];
                load_vec(row, v, a);
#pragma unroll
                for (int k = 0; k < W; ++k) { online_add(m, s, a[k]); zsum += a[k]; }
            }
        } else {
            for (long long j = lane; j < C; j += 32) { online_add(m, s, row[j]); zsum += row[j]; }
        }
        for (int o = 16; o > 0; o >>= 1) {
            const T m2 = __shfl_xor_sync(0xffffffffu, m, o);
            const T s2 = __shfl_xor_sync(0xffffffffu, s, o);
            online_merge(m, s, m2, s2);
            zsum += __shfl_xor_sync(0xffffffffu, zsum, o);
        }
        if (lane == 0) {
            const T log_s = log_t(s);
            const long long t = target[r];
            const T nll = (t >= 0 && t < C) ? (m - row[t]) + log_s : quiet_nan<T>();
            loss[r] = t == ignore_index ? T(0)
                    : smoothing == 0.0 ? nll : (T(1) - eps) * nll + eps * ((m - zsum / T(C)) + log_s);
            stats[2 * r] = m;
            stats[2 * r + 1] = log_s;
        }
    }
}

template <typename T>
__device__ void xent_backward(const T* __restrict__ grad_rows, const T* __restrict__ z,
                              const long long* __restrict__ target, const T* __restrict__ stats,
                              T* __restrict__ dz, long long rows, long long C, double smoothing,
                              long long ignore_index) {
    constexpr int W = Vec<T>::width;
    const int lane = threadIdx.x & 31;
    const bool vec = aligned16(z) && aligned16(dz) && C % W == 0;
    const T off = T(smoothing / (double)C);          // eps / C, subtracted everywhere
    const T on = T(1.0 - smoothing);                 // 1 - eps, subtracted at the target
    for (long long r = global_thread() / 32; r < rows; r += grid_threads() / 32) {
        const long long t = target[r];
        const T g = t == ignore_index ? T(0) : grad_rows[r], m = stats[2 * r], l = stats[2 * r + 1];
        const T* row = z + r * C;
        T* out = dz + r * C;
        if (vec) {
            for (long long v = lane; v < C / W; v += 32) {
                T a[W];
                load_vec(row, v, a);
#pragma unroll
                for (int k = 0; k < W; ++k) a[k] = g * (exp_t((a[k] - m) - l) - off - (v * W + k == t ? on : T(0)));
                store_vec(out, v, a);
            }
        } else {
            for (long long j = lane; j < C; j += 32) out[j] = g * (exp_t((row[j] - m) - l) - off - (j == t ? on : T(0)));
        }
    }
}

// ---- extern "C" entry points ----------------------------------------------------------------------------
extern "C" __global__ void __launch_bounds__(256)
softmax_xent_fwd_f32(const float* z, const long long* target, float* loss, float* stats,
                     long long rows, long long C, double smoothing, long long ignore_index) {
    xent_forward<float>(z, target, loss, stats, rows, C, smoothing, ignore_index);
}
extern "C" __global__ void __launch_bounds__(256)
softmax_xent_fwd_f64(const double* z, const long long* target, double* loss, double* stats,
                     long long rows, long long C, double smoothing, long long ignore_index) {
    xent_forward<double>(z, target, loss, stats, rows, C, smoothing, ignore_index);
}
extern "C" __global__ void __launch_bounds__(256)
softmax_xent_bwd_f32(const float* grad_rows, const float* z, const long long* target, const float* stats, float* dz,
                     long long rows, long long C, double smoothing, long long ignore_index) {
    xent_backward<float>(grad_rows, z, target, stats, dz, rows, C, smoothing, ignore_index);
}
extern "C" __global__ void __launch_bounds__(256)
softmax_xent_bwd_f64(const double* grad_rows, const double* z, const long long* target, const double* stats, double* dz,
                     long long rows, long long C, double smoothing, long long ignore_index) {
    xent_backward<double>(grad_rows, z, target, stats, dz, rows, C, smoothing, ignore_index);
}
