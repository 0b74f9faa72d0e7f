// elementwise.cu -- activations forward and backward, and the fused bias-add + activation epilogue of
// Linear and Conv2d (forward, and backward with the bias gradient reduced in the same pass).
//
// Every kernel reads and writes contiguous arrays, walks them with a grid-stride loop, and moves 128 bits
// at a time (float4 / double2) when the pointers are 16-byte aligned, finishing with a scalar tail.
// The ABI of each entry point is in kernels/README.md.
#include "common.cuh"

// ---- activations ------------------------------------------------------------------------------------
// fwd(z) is the activation. grad(g, s) is dL/dz given the upstream gradient g = dL/dy and the saved
// array s: the OUTPUT y when saves_output is true, the INPUT z otherwise (both gelus).

struct Identity {                                    // y = z
    static constexpr bool saves_output = true;
    template <typename T> __device__ static T fwd(T z) { return z; }
    template <typename T> __device__ static T grad(T g, T) { return g; }
};

struct Relu {                                        // y = max(z, 0), NaN passes; dz = 0 where y <= 0, else g
    static constexpr bool saves_output = true;       // (PyTorch's threshold_backward: a NaN y passes g)
    template <typename T> __device__ static T fwd(T z) { return z < T(0) ? T(0) : z; }
    template <typename T> __device__ static T grad(T g, T y) { return y <= T(0) ? T(0) : g; }
};

struct Sigmoid {                                     // y = 1 / (1 + exp(-z)); dz = g (1 - y) y
    static constexpr bool saves_output = true;
    template <typename T> __device__ static T fwd(T z) {
        const T e = exp_t(z >= T(0) ? -z : z);       // exp(-|z|) never overflows
        return z >= T(0) ? T(1) / (T(1) + e) : e / (T(1) + e);
    }
    template <typename T> __device__ static T grad(T g, T y) { return g * (T(1) - y) * y; }
};

struct Tanh {                                        // y = tanh(z); dz = g (1 - y^2)
    static constexpr bool saves_output = true;
    template <typename T> __device__ static T fwd(T z) { return tanh_t(z); }
    template <typename T> __device__ static T grad(T g, T y) { return g * (T(1) - y * y); }
};

struct GeluErf {                                     // y = z Phi(z), Phi(z) = erfc(-z/sqrt2) / 2
    static constexpr bool saves_output = false;      // dz = g (Phi(z) + z phi(z)), phi the normal pdf
    // Phi through erfc, not (1 + erf(z/sqrt2)) / 2: that sum loses every digit in the far negative tail
    // (it is 0 from about z = -8.4 in float64, -5.6 in float32), where Phi itself is tiny but not 0.
    template <typename T> __device__ static T cdf(T z) { return T(0.5) * erfc_t(z * T(-0.70710678118654752440)); }
    template <typename T> __device__ static T fwd(T z) { return z * cdf(z); }
    template <typename T> __device__ static T grad(T g, T z) {
        const T pdf = T(0.39894228040143267794) * exp_t(T(-0.5) * z * z);
        return g * (cdf(z) + z * pdf);
    }
};

struct GeluTanh {                                    // y = z/2 (1 + tanh(u)), u = sqrt(2/pi) (z + 0.044715 z^3)
    static constexpr bool saves_output = false;
    template <typename T> __device__ static T fwd(T z) {
        const T u = T(0.79788456080286535588) * (z + T(0.044715) * z * z * z);
        return T(0.5) * z * (T(1) + tanh_t(u));
    }
    template <typename T> __device__ static T grad(T g, T z) {   // dy/dz = (1 + t)/2 + z/2 (1 - t^2) du/dz
        const T u = T(0.79788456080286535588) * (z + T(0.044715) * z * z * z);
        const T t = tanh_t(u);
        const T du = T(0.79788456080286535588) * (T(1) + T(3) * T(0.044715) * z * z);
        return g * (T(0.5) * (T(1) + t) + T(0.5) * z * (T(1) - t * t) * du);
    }
};

// ---- y = act(x) and dx = act'(...) * g ----------------------------------------------------------------
template <typename T, typename Act>
__device__ void act_forward(const T* __restrict__ x, T* __restrict__ y, long long n) {
    constexpr int W = Vec<T>::width;
    const long long nvec = (aligned16(x) && aligned16(y)) ? n / W : 0;
    for (long long i = global_thread(); i < nvec; i += grid_threads()) {
        T a[W];
        load_vec(x, i, a);
#pragma unroll
        for (int k = 0; k < W; ++k) a[k] = Act::fwd(a[k]);
        store_vec(y, i, a);
    }
    for (long long i = nvec * W + global_thread(); i < n; i += grid_threads()) y[i] = Act::fwd(x[i]);
}

template <typename T, typename Act>
__device__ void act_backward(const T* __restrict__ g, const T* __restrict__ s, T* __restrict__ dx, long long n) {
    constexpr int W = Vec<T>::width;
    const long long nvec = (aligned16(g) && aligned16(s) && aligned16(dx)) ? n / W : 0;
    for (long long i = global_thread(); i < nvec; i += grid_threads()) {
        T a[W], b[W];
        load_vec(g, i, a);
        load_vec(s, i, b);
#pragma unroll
        for (int k = 0; k < W; ++k) a[k] = Act::grad(a[k], b[k]);
        store_vec(dx, i, a);
    }
    for (long long i = nvec * W + global_thread(); i < n; i += grid_threads()) dx[i] = Act::grad(g[i], s[i]);
}

// ---- fused bias + activation: x is a contiguous (outer, C, inner) array, b has C elements ------------
// Linear: (rows, C, 1). Conv2d in NCHW: (N, C, H*W). Element e belongs to channel (e / inner) % C.
// When every index fits in 32 bits the cheaper 32-bit division is used (`small` is the same for all threads).
__device__ __forceinline__ long long channel_of(long long e, long long inner, long long C, bool small) {
    if (small) return (long long)(((unsigned)e / (unsigned)inner) % (unsigned)C);
    return (e / inner) % C;
}

// y = act(x + b[channel])
template <typename T, typename Act>
__device__ void bias_act_forward(const T* __restrict__ x, const T* __restrict__ b, T* __restrict__ y,
                                 long long n, long long C, long long inner) {
    constexpr int W = Vec<T>::width;
    const bool small = n <= 0xffffffffll;
    // A vector of W elements either shares one channel (inner % W == 0) or spans W consecutive channels
    // (inner == 1 and C % W == 0, so it never crosses a row): both read the bias without a per-element division.
    const bool vec = aligned16(x) && aligned16(y) && (inner == 1 ? (C % W == 0 && aligned16(b)) : inner % W == 0);
    const long long nvec = vec ? n / W : 0;
    for (long long i = global_thread(); i < nvec; i += grid_threads()) {
        T a[W], bias[W];
        load_vec(x, i, a);
        const long long c = channel_of(i * W, inner, C, small);
        if (inner == 1) {
            load_vec(b, c / W, bias);
        } else {
#pragma unroll
            for (int k = 0; k < W; ++k) bias[k] = b[c];
        }
#pragma unroll
        for (int k = 0; k < W; ++k) a[k] = Act::fwd(a[k] + bias[k]);
        store_vec(y, i, a);
    }
    for (long long e = nvec * W + global_thread(); e < n; e += grid_threads())
        y[e] = Act::fwd(x[e] + b[channel_of(e, inner, C, small)]);
}

// The gradient of one element: s is y for activations that save their output, else x (then z = x + b).
template <typename Act, typename T>
__device__ __forceinline__ T bias_act_grad(T g, T s, T bias) {
    return Act::grad(g, Act::saves_output ? s : s + bias);
}

// Backward for inner == 1 (Linear): a (rows, C) matrix. Block (32, 8): threadIdx.x picks W adjacent columns,
// threadIdx.y strides over the rows of this block's chunk [blockIdx.y * rows_per_chunk, +rows_per_chunk).
// Writes dx, and partial[blockIdx.y, c] = sum over the chunk's rows of dx[:, c]; col_sum finishes db.
template <typename T, typename Act>
__device__ void bias_act_backward_cols(const T* __restrict__ g, const T* __restrict__ s, const T* __restrict__ b,
                                       T* __restrict__ dx, T* __restrict__ partial,
                                       long long rows, long long C, long long rows_per_chunk) {
    constexpr int W = Vec<T>::width;
    __shared__ T tile[8][32 * W];
    const long long c0 = ((long long)blockIdx.x * 32 + threadIdx.x) * W;     // first of this thread's W columns
    const long long r_end = min(rows, ((long long)blockIdx.y + 1) * rows_per_chunk);
    const bool vec = aligned16(g) && aligned16(s) && aligned16(dx) && C % W == 0;
    T acc[W], bias[W];
#pragma unroll
    for (int k = 0; k < W; ++k) {
        acc[k] = T(0);
        bias[k] = (!Act::saves_output && c0 + k < C) ? b[c0 + k] : T(0);
    }
    for (long long r = (long long)blockIdx.y * rows_per_chunk + threadIdx.y; r < r_end; r += blockDim.y) {
        const long long base = r * C + c0;
        if (vec && c0 < C) {                                   // C % W == 0: all W columns exist
            T a[W], v[W];
            load_vec(g, base / W, a);
            load_vec(s, base / W, v);
#pragma unroll
            for (int k = 0; k < W; ++k) { a[k] = bias_act_grad<Act>(a[k], v[k], bias[k]); acc[k] += a[k]; }
            store_vec(dx, base / W, a);
        } else {
#pragma unroll
            for (int k = 0; k < W; ++k) {
                if (c0 + k < C) {
                    const T d = bias_act_grad<Act>(g[base + k], s[base + k], bias[k]);
                    dx[base + k] = d;
                    acc[k] += d;
                }
            }
        }
    }
#pragma unroll
    for (int k = 0; k < W; ++k) tile[threadIdx.y][threadIdx.x * W + k] = acc[k];
    __syncthreads();
    if (threadIdx.y == 0) {
#pragma unroll
        for (int k = 0; k < W; ++k) {
            T sum = T(0);
            for (int y = 0; y < 8; ++y) sum += tile[y][threadIdx.x * W + k];
            if (c0 + k < C) partial[(long long)blockIdx.y * C + c0 + k] = sum;
        }
    }
}

// Backward for inner > 1 (Conv2d): `planes` = outer * C contiguous planes of `inner` elements; plane p has
// channel p % C. One warp per plane writes dx and plane_sum[p] (a (outer, C) matrix that col_sum reduces).
template <typename T, typename Act>
__device__ void bias_act_backward_planes(const T* __restrict__ g, const T* __restrict__ s, const T* __restrict__ b,
                                         T* __restrict__ dx, T* __restrict__ plane_sum,
                                         long long planes, long long C, long long inner) {
    constexpr int W = Vec<T>::width;
    const int lane = threadIdx.x & 31;
    const bool vec = aligned16(g) && aligned16(s) && aligned16(dx) && inner % W == 0;
    for (long long p = global_thread() / 32; p < planes; p += grid_threads() / 32) {   // warp-uniform loop
        const T bias = Act::saves_output ? T(0) : b[p % C];
        const long long base = p * inner;
        T acc = T(0);
        if (vec) {
            for (long long v = lane; v < inner / W; v += 32) {
                T a[W], u[W];
                load_vec(g, base / W + v, a);
                load_vec(s, base / W + v, u);
#pragma unroll
                for (int k = 0; k < W; ++k) { a[k] = bias_act_grad<Act>(a[k], u[k], bias); acc += a[k]; }
                store_vec(dx, base / W + v, a);
            }
        } else {
            for (long long i = base + lane; i < base + inner; i += 32) {
                const T d = bias_act_grad<Act>(g[i], s[i], bias);
                dx[i] = d;
                acc += d;
            }
        }
        acc = warp_sum(acc);
        if (lane == 0) plane_sum[p] = acc;
    }
}

// out[c] = sum over r of a[r, c] for a contiguous (rows, cols) matrix. Block (32, 8), grid ceil(cols / 32):
// threadIdx.x picks a column, threadIdx.y strides over the rows, the block adds its 8 partial sums.
template <typename T>
__device__ void col_sum(const T* __restrict__ a, T* __restrict__ out, long long rows, long long cols) {
    __shared__ T tile[8][32];
    const long long c = (long long)blockIdx.x * 32 + threadIdx.x;
    T acc = T(0);
    if (c < cols)
        for (long long r = threadIdx.y; r < rows; r += blockDim.y) acc += a[r * cols + c];
    tile[threadIdx.y][threadIdx.x] = acc;
    __syncthreads();
    if (threadIdx.y == 0 && c < cols) {
        T sum = T(0);
        for (int y = 0; y < 8; ++y) sum += tile[y][threadIdx.x];
        out[c] = sum;
    }
}

// ---- extern "C" entry points: <act>_fwd_<t>, <act>_bwd_<t>, bias_<act>_fwd_<t>, bias_<act>_bwd_cols_<t>,
// bias_<act>_bwd_planes_<t> for every activation, t in {f32, f64}; and col_sum_<t>.
#define TL_ACT_KERNELS(NAME, ACT, T, SUF)                                                                     \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    NAME##_fwd_##SUF(const T* x, T* y, long long n) { act_forward<T, ACT>(x, y, n); }                         \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    NAME##_bwd_##SUF(const T* g, const T* s, T* dx, long long n) { act_backward<T, ACT>(g, s, dx, n); }       \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    bias_##NAME##_fwd_##SUF(const T* x, const T* b, T* y, long long n, long long C, long long inner) {        \
        bias_act_forward<T, ACT>(x, b, y, n, C, inner);                                                       \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    bias_##NAME##_bwd_cols_##SUF(const T* g, const T* s, const T* b, T* dx, T* partial,                       \
                                 long long rows, long long C, long long rows_per_chunk) {                     \
        bias_act_backward_cols<T, ACT>(g, s, b, dx, partial, rows, C, rows_per_chunk);                        \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    bias_##NAME##_bwd_planes_##SUF(const T* g, const T* s, const T* b, T* dx, T* plane_sum,                   \
                                   long long planes, long long C, long long inner) {                          \
        bias_act_backward_planes<T, ACT>(g, s, b, dx, plane_sum, planes, C, inner);                           \
    }

#define TL_ACT_KERNELS_F32_F64(NAME, ACT) TL_ACT_KERNELS(NAME, ACT, float, f32) TL_ACT_KERNELS(NAME, ACT, double, f64)

TL_ACT_KERNELS_F32_F64(identity, Identity)
TL_ACT_KERNELS_F32_F64(relu, Relu)
TL_ACT_KERNELS_F32_F64(gelu, GeluErf)
TL_ACT_KERNELS_F32_F64(gelu_tanh, GeluTanh)
TL_ACT_KERNELS_F32_F64(sigmoid, Sigmoid)
TL_ACT_KERNELS_F32_F64(tanh, Tanh)

extern "C" __global__ void __launch_bounds__(256)
col_sum_f32(const float* a, float* out, long long rows, long long cols) { col_sum<float>(a, out, rows, cols); }
extern "C" __global__ void __launch_bounds__(256)
col_sum_f64(const double* a, double* out, long long rows, long long cols) { col_sum<double>(a, out, rows, cols); }
