// common.cuh -- small helpers shared by every kernel file.
//
// tinylazy/_kernels.py pastes this file's text in place of `#include "common.cuh"` before handing a .cu
// file to CuPy, so NVRTC needs no include path and CuPy's disk cache (keyed on the source text) sees any
// change made here. Nothing here includes a system header: NVRTC has none.
#pragma once

// ---- 128-bit vectors: float4 holds 4 floats, double2 holds 2 doubles -------------------------------
template <typename T> struct Vec;
template <> struct Vec<float>  { typedef float4  type; static constexpr int width = 4; };
template <> struct Vec<double> { typedef double2 type; static constexpr int width = 2; };

__device__ __forceinline__ void unpack(const float4& v, float (&a)[4]) { a[0] = v.x; a[1] = v.y; a[2] = v.z; a[3] = v.w; }
__device__ __forceinline__ void unpack(const double2& v, double (&a)[2]) { a[0] = v.x; a[1] = v.y; }
__device__ __forceinline__ float4 pack(const float (&a)[4]) { float4 v; v.x = a[0]; v.y = a[1]; v.z = a[2]; v.w = a[3]; return v; }
__device__ __forceinline__ double2 pack(const double (&a)[2]) { double2 v; v.x = a[0]; v.y = a[1]; return v; }

// a[0..W) = p[W*i .. W*i+W) in one 128-bit load; p must be 16-byte aligned.
template <typename T>
__device__ __forceinline__ void load_vec(const T* p, long long i, T (&a)[Vec<T>::width]) {
    unpack(reinterpret_cast<const typename Vec<T>::type*>(p)[i], a);
}

// p[W*i .. W*i+W) = a[0..W) in one 128-bit store; p must be 16-byte aligned.
template <typename T>
__device__ __forceinline__ void store_vec(T* p, long long i, const T (&a)[Vec<T>::width]) {
    reinterpret_cast<typename Vec<T>::type*>(p)[i] = pack(a);
}

__device__ __forceinline__ bool aligned16(const void* p) {
    return (reinterpret_cast<unsigned long long>(p) & 15ull) == 0;
}

// ---- grid-stride loops ---------------------------------------------------------------------------
__device__ __forceinline__ long long global_thread() { return (long long)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ long long grid_threads() { return (long long)gridDim.x * blockDim.x; }

// ---- one name per math function for float and double --------------------------------------------
__device__ __forceinline__ float  exp_t(float x)   { return expf(x); }
__device__ __forceinline__ double exp_t(double x)  { return exp(x); }
__device__ __forceinline__ float  log_t(float x)   { return logf(x); }
__device__ __forceinline__ double log_t(double x)  { return log(x); }
__device__ __forceinline__ float  tanh_t(float x)  { return tanhf(x); }
__device__ __forceinline__ double tanh_t(double x) { return tanh(x); }
__device__ __forceinline__ float  erf_t(float x)   { return erff(x); }
__device__ __forceinline__ double erf_t(double x)  { return erf(x); }
__device__ __forceinline__ float  erfc_t(float x)  { return erfcf(x); }
__device__ __forceinline__ double erfc_t(double x) { return erfc(x); }
__device__ __forceinline__ float  sqrt_t(float x)  { return sqrtf(x); }
__device__ __forceinline__ double sqrt_t(double x) { return sqrt(x); }

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float  neg_inf<float>()  { return __int_as_float(0xff800000); }
template <> __device__ __forceinline__ double neg_inf<double>() { return __longlong_as_double(0xfff0000000000000ll); }
template <typename T> __device__ __forceinline__ T quiet_nan();
template <> __device__ __forceinline__ float  quiet_nan<float>()  { return __int_as_float(0x7fc00000); }
template <> __device__ __forceinline__ double quiet_nan<double>() { return __longlong_as_double(0x7ff8000000000000ll); }

// ---- warp reductions (every lane of the warp must call them; every lane gets the result) ---------
template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}
