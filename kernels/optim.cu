// optim.cu -- fused optimizer steps: SGD (momentum, dampening, weight decay, Nesterov), Adam and AdamW,
// ONE launch per step for all the parameters of a model.
//
// The parameters are cut into chunks of at most a few thousand elements, and a small device table holds
// one row of 6 int64 per chunk:  [param*, state1*, state2*, count, slot, start]  (pointers to the chunk's
// first element; state1/state2 are the momentum buffer and unused for SGD, exp_avg and exp_avg_sq for Adam;
// `slot` is the parameter's position and `start` the chunk's first element in it). The gradients come
// apart, as a device array `grads` of one pointer per parameter: the chunk's gradient is grads[slot] + start.
// The table only changes when the parameters or their state do, so the host builds it once and reuses it;
// fresh gradients (zero_grad(set_to_none=True)) only touch the small pointer array, and only when a
// pointer differs from the last step's. Block b updates chunk b; a step is one launch with the step's
// scalars as arguments. The math is PyTorch's
// (torch.optim, single-tensor path), written per element:
//
// SGD:   d = g + wd p;  if momentum: buf = d (first step) or momentum buf + (1 - dampening) d;
//        d = d + momentum buf (Nesterov) or buf;   p = p - lr d
// Adam:  g = g + wd p (Adam) or p = p (1 - lr wd) (AdamW, "decoupled");
//        m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2;
//        p = p - step_size m / (sqrt(v) / sqrt(bias_correction2) + eps)
//        with step_size = lr / (1 - beta1^step) and bias_correction2 = 1 - beta2^step, computed on the host.
#include "common.cuh"

// torch.lerp: a + w (b - a), evaluated from the nearer end for accuracy.
template <typename T>
__device__ __forceinline__ T lerp(T a, T b, T w) {
    return w < T(0.5) ? a + w * (b - a) : b - (b - a) * (T(1) - w);
}

template <typename T>
struct AdamArgs { T lr_wd_decay, wd, beta1_w, beta2, one_minus_beta2, step_size, bc2_sqrt, eps; bool decoupled; };

template <typename T>
__device__ __forceinline__ void adam_one(T& p, T g, T& m, T& v, const AdamArgs<T>& a) {
    if (a.decoupled) p = p * a.lr_wd_decay;
    else if (a.wd != T(0)) g = g + a.wd * p;
    m = lerp(m, g, a.beta1_w);
    v = v * a.beta2 + a.one_minus_beta2 * g * g;
    p = p + (-a.step_size) * (m / (sqrt_t(v) / a.bc2_sqrt + a.eps));
}

template <typename T>
struct SgdArgs { T lr, momentum, one_minus_dampening, wd; bool nesterov, first; };

template <typename T>
__device__ __forceinline__ void sgd_one(T& p, T g, T& buf, const SgdArgs<T>& a) {
    T d = a.wd != T(0) ? g + a.wd * p : g;
    if (a.momentum != T(0)) {
        buf = a.first ? d : buf * a.momentum + a.one_minus_dampening * d;
        d = a.nesterov ? d + a.momentum * buf : buf;
    }
    p = p + (-a.lr) * d;
}

// Row b of the table, as typed pointers; the gradient pointer is grads[slot] + start.
template <typename T>
struct Chunk {
    T* p; const T* g; T* s1; T* s2; long long n;
    __device__ Chunk(const long long* table, const long long* grads) {
        const long long* row = table + (long long)blockIdx.x * 6;
        p = reinterpret_cast<T*>(row[0]);
        s1 = reinterpret_cast<T*>(row[1]);
        s2 = reinterpret_cast<T*>(row[2]);
        n = row[3];
        g = reinterpret_cast<const T*>(grads[row[4]]) + row[5];
    }
};

template <typename T>
__device__ void adam_kernel(const long long* table, const long long* grads, const AdamArgs<T>& a) {
    constexpr int W = Vec<T>::width;
    const Chunk<T> c(table, grads);
    const bool vec = aligned16(c.p) && aligned16(c.g) && aligned16(c.s1) && aligned16(c.s2);
    const long long nvec = vec ? c.n / W : 0;
    for (long long i = threadIdx.x; i < nvec; i += blockDim.x) {
        T p[W], g[W], m[W], v[W];
        load_vec(c.p, i, p); load_vec(c.g, i, g); load_vec(c.s1, i, m); load_vec(c.s2, i, v);
#pragma unroll
        for (int k = 0; k < W; ++k) adam_one(p[k], g[k], m[k], v[k], a);
        store_vec(c.p, i, p); store_vec(c.s1, i, m); store_vec(c.s2, i, v);
    }
    for (long long i = nvec * W + threadIdx.x; i < c.n; i += blockDim.x) adam_one(c.p[i], c.g[i], c.s1[i], c.s2[i], a);
}

template <typename T>
__device__ void sgd_kernel(const long long* table, const long long* grads, const SgdArgs<T>& a) {
    constexpr int W = Vec<T>::width;
    const Chunk<T> c(table, grads);
    const bool has_buf = a.momentum != T(0);                  // without momentum s1 is null and never touched
    const bool vec = aligned16(c.p) && aligned16(c.g) && (!has_buf || aligned16(c.s1));
    const long long nvec = vec ? c.n / W : 0;
    for (long long i = threadIdx.x; i < nvec; i += blockDim.x) {
        T p[W], g[W], b[W];
        load_vec(c.p, i, p); load_vec(c.g, i, g);
        if (has_buf) load_vec(c.s1, i, b);
#pragma unroll
        for (int k = 0; k < W; ++k) sgd_one(p[k], g[k], b[k], a);
        store_vec(c.p, i, p);
        if (has_buf) store_vec(c.s1, i, b);
    }
    for (long long i = nvec * W + threadIdx.x; i < c.n; i += blockDim.x) {
        T b = has_buf ? c.s1[i] : T(0);
        sgd_one(c.p[i], c.g[i], b, a);
        if (has_buf) c.s1[i] = b;
    }
}

// ---- extern "C" entry points: grid = number of table rows, block = 256 ----------------------------------
// All scalars arrive as double (CuPy passes a Python float as double) and are rounded to T once here.
#define TL_OPTIM_KERNELS(T, SUF)                                                                              \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    adam_##SUF(const long long* table, const long long* grads, double lr, double beta1, double beta2,         \
               double eps, double weight_decay, double step_size, double bias_correction2_sqrt,               \
               long long decoupled) {                                                                         \
        AdamArgs<T> a;                                                                                        \
        a.lr_wd_decay = T(1.0 - lr * weight_decay);                                                           \
        a.wd = T(weight_decay);                                                                               \
        a.beta1_w = T(1.0 - beta1);                                                                           \
        a.beta2 = T(beta2);                                                                                   \
        a.one_minus_beta2 = T(1.0 - beta2);                                                                   \
        a.step_size = T(step_size);                                                                           \
        a.bc2_sqrt = T(bias_correction2_sqrt);                                                                \
        a.eps = T(eps);                                                                                       \
        a.decoupled = decoupled != 0;                                                                         \
        adam_kernel<T>(table, grads, a);                                                                      \
    }                                                                                                         \
    extern "C" __global__ void __launch_bounds__(256)                                                         \
    sgd_##SUF(const long long* table, const long long* grads, double lr, double momentum, double dampening,  \
              double weight_decay, long long nesterov, long long first_step) {                                \
        SgdArgs<T> a;                                                                                         \
        a.lr = T(lr);                                                                                         \
        a.momentum = T(momentum);                                                                             \
        a.one_minus_dampening = T(1.0 - dampening);                                                           \
        a.wd = T(weight_decay);                                                                               \
        a.nesterov = nesterov != 0;                                                                           \
        a.first = first_step != 0;                                                                            \
        sgd_kernel<T>(table, grads, a);                                                                       \
    }

TL_OPTIM_KERNELS(float, f32)
TL_OPTIM_KERNELS(double, f64)
