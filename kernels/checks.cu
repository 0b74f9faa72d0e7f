// checks.cu -- value checks of index arrays, done on the device so that the host never waits for them.
//
// Reading an index array's minimum and maximum on the host is a device-to-host copy that waits until the
// GPU has finished everything queued before it: one per training step serializes host and GPU (and a CUDA
// graph capture cannot contain it). These kernels look at the values on the device instead and record a
// bad one by setting err[slot] = 1 (a plain store of one value by any number of threads: no atomics needed);
// tinylazy/_devcheck.py reads the small err array only when the host reads from the device anyway, and
// raises then. Nothing here reads out of bounds.
#include "common.cuh"

// err[slot] = 1 when some idx[i] lies outside [lo, hi). Grid-stride, 1-D.
extern "C" __global__ void __launch_bounds__(256)
index_range(const long long* idx, long long n, long long lo, long long hi, int* err, long long slot) {
    bool bad = false;
    for (long long i = global_thread(); i < n; i += grid_threads()) bad |= idx[i] < lo || idx[i] >= hi;
    if (bad) err[slot] = 1;
}

// Class targets of a loss: err[slot] = 1 when a target other than ignore_index lies outside [0, C), and
// kept[0] = the number of targets that are not ignore_index, kept[1] = 1 / kept[0] (0 when none is kept):
// the denominator of the mean reduction and the gradient's scale. ONE block of 256 threads (it must be
// launched so): each thread counts its share, then a warp sum and a sum over the 8 warps in shared memory.
template <typename T>
__device__ void class_targets(const long long* t, long long n, long long C, long long ignore_index, T* kept,
                              int* err, long long slot) {
    __shared__ long long warp_counts[8];
    long long count = 0;
    bool bad = false;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) {
        const long long v = t[i];
        if (v == ignore_index) continue;
        ++count;
        bad |= v < 0 || v >= C;
    }
    if (bad) err[slot] = 1;
    count = warp_sum(count);
    if ((threadIdx.x & 31) == 0) warp_counts[threadIdx.x / 32] = count;
    __syncthreads();
    if (threadIdx.x == 0) {
        long long total = 0;
        for (int w = 0; w < 8; ++w) total += warp_counts[w];
        kept[0] = T(total);
        kept[1] = total ? T(1) / T(total) : T(0);
    }
}

extern "C" __global__ void __launch_bounds__(256)
class_targets_f32(const long long* t, long long n, long long C, long long ignore_index, float* kept, int* err,
                  long long slot) {
    class_targets<float>(t, n, C, ignore_index, kept, err, slot);
}
extern "C" __global__ void __launch_bounds__(256)
class_targets_f64(const long long* t, long long n, long long C, long long ignore_index, double* kept, int* err,
                  long long slot) {
    class_targets<double>(t, n, C, ignore_index, kept, err, slot);
}
