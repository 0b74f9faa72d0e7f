// kernel_emulator.h -- compiles a kernels/*.cu file as plain host C++ so that its kernels run on the CPU.
//
// Used by tests/kernel_emulator.py (g++ -include kernel_emulator.h). The CUDA keywords become nothing and
// `__shared__` becomes `static`: the blocks of a grid run one after another, so a static is exactly the
// block's shared memory. The threads of a block are fibers (ucontext) on one host thread, run in turn
// until each finishes or reaches a barrier: __syncthreads waits for every live thread of the block, a
// warp shuffle for every live thread of its warp. It checks indexing, vector paths, tails and
// reductions; it says nothing about speed or about memory ordering beyond these barriers.
#pragma once
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ucontext.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct dim3 { unsigned int x, y, z; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) double2 { double x, y; };

dim3 threadIdx, blockIdx, blockDim, gridDim;           // threadIdx is switched with the running fiber

inline float __int_as_float(int i) { float f; std::memcpy(&f, &i, 4); return f; }
inline double __longlong_as_double(long long i) { double d; std::memcpy(&d, &i, 8); return d; }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((unsigned long long)a * b) >> 32); }
template <typename T> inline T min(T a, T b) { return a < b ? a : b; }
template <typename T> inline T max(T a, T b) { return a < b ? b : a; }

// ---- the fibers of one block ----------------------------------------------------------------------------
enum EmuState { EMU_RUNNABLE, EMU_AT_SYNCTHREADS, EMU_AT_WARP, EMU_DONE };
constexpr int EMU_MAX_THREADS = 1024, EMU_STACK = 64 * 1024;

static ucontext_t emu_scheduler;
static ucontext_t emu_ctx[EMU_MAX_THREADS];
static EmuState emu_state[EMU_MAX_THREADS];
static char* emu_stacks;
static int emu_current, emu_threads;
static void (*emu_thunk)(void**);
static void** emu_args;
static unsigned emu_exchanges[EMU_MAX_THREADS];
static unsigned char emu_slots[EMU_MAX_THREADS / 32][2][32][8];   // shuffle slots: two sets per warp

static void emu_wait(EmuState why) {
    emu_state[emu_current] = why;
    swapcontext(&emu_ctx[emu_current], &emu_scheduler);
}

inline void __syncthreads() { emu_wait(EMU_AT_SYNCTHREADS); }

// Every lane publishes v, waits for its warp, and reads lane `src` (its own value when src is out of range).
// Consecutive exchanges use the two slot sets in turn, so one barrier per exchange suffices.
template <typename T>
T emu_exchange(T v, int src) {
    const int warp = emu_current / 32, lane = emu_current % 32, set = emu_exchanges[emu_current]++ & 1;
    std::memcpy(emu_slots[warp][set][lane], &v, sizeof(T));
    emu_wait(EMU_AT_WARP);
    T out = v;
    if (src >= 0 && src < 32) std::memcpy(&out, emu_slots[warp][set][src], sizeof(T));
    return out;
}
template <typename T> T __shfl_xor_sync(unsigned, T v, int mask, int = 32) { return emu_exchange(v, (emu_current % 32) ^ mask); }
template <typename T> T __shfl_down_sync(unsigned, T v, int delta, int = 32) { return emu_exchange(v, emu_current % 32 + delta); }

static void emu_fiber_main() {
    emu_thunk(emu_args);
    emu_state[emu_current] = EMU_DONE;                  // returning resumes the scheduler (uc_link)
}

static void emu_set_thread_index(int t) {
    emu_current = t;
    threadIdx = dim3{t % blockDim.x, (t / blockDim.x) % blockDim.y, t / (blockDim.x * blockDim.y)};
}

// Run one block: sweep the runnable fibers until all are done; between sweeps, open the barriers whose
// threads have all arrived. A barrier that can never open (divergent __syncthreads) aborts the run.
static int emu_run_block() {
    for (int t = 0; t < emu_threads; ++t) {
        getcontext(&emu_ctx[t]);
        emu_ctx[t].uc_stack.ss_sp = emu_stacks + (size_t)t * EMU_STACK;
        emu_ctx[t].uc_stack.ss_size = EMU_STACK;
        emu_ctx[t].uc_link = &emu_scheduler;
        makecontext(&emu_ctx[t], emu_fiber_main, 0);
        emu_state[t] = EMU_RUNNABLE;
        emu_exchanges[t] = 0;
    }
    for (;;) {
        for (int t = 0; t < emu_threads; ++t) {
            if (emu_state[t] != EMU_RUNNABLE) continue;
            emu_set_thread_index(t);
            swapcontext(&emu_scheduler, &emu_ctx[t]);
        }
        int live = 0, at_sync = 0;
        for (int t = 0; t < emu_threads; ++t) {
            live += emu_state[t] != EMU_DONE;
            at_sync += emu_state[t] == EMU_AT_SYNCTHREADS;
        }
        if (live == 0) return 0;
        bool opened = false;
        if (at_sync == live) {
            for (int t = 0; t < emu_threads; ++t) if (emu_state[t] == EMU_AT_SYNCTHREADS) emu_state[t] = EMU_RUNNABLE;
            opened = true;
        }
        for (int w = 0; w * 32 < emu_threads; ++w) {
            int warp_live = 0, warp_at = 0;
            for (int t = 32 * w; t < 32 * w + 32; ++t) {
                warp_live += emu_state[t] != EMU_DONE;
                warp_at += emu_state[t] == EMU_AT_WARP;
            }
            if (warp_at > 0 && warp_at == warp_live) {
                for (int t = 32 * w; t < 32 * w + 32; ++t) emu_state[t] = emu_state[t] == EMU_AT_WARP ? EMU_RUNNABLE : emu_state[t];
                opened = true;
            }
        }
        if (!opened) {
            std::fprintf(stderr, "kernel emulator: deadlock (a __syncthreads or shuffle that not every thread reaches)\n");
            return 1;
        }
    }
}

// ---- called by kernel_emulator.py: launch thunk(args) on a grid; returns 0 on success ---------------------
extern "C" int emu_launch(void (*thunk)(void**), void** args, unsigned gx, unsigned gy, unsigned gz,
                          unsigned bx, unsigned by, unsigned bz) {
    if (emu_stacks == nullptr) emu_stacks = static_cast<char*>(std::malloc((size_t)EMU_MAX_THREADS * EMU_STACK));
    emu_threads = (int)(bx * by * bz);
    if (emu_threads % 32 != 0 || emu_threads > EMU_MAX_THREADS) return 2;
    blockDim = dim3{bx, by, bz};
    gridDim = dim3{gx, gy, gz};
    emu_thunk = thunk;
    emu_args = args;
    for (unsigned z = 0; z < gz; ++z)
        for (unsigned y = 0; y < gy; ++y)
            for (unsigned x = 0; x < gx; ++x) {
                blockIdx = dim3{x, y, z};
                if (emu_run_block() != 0) return 1;
            }
    return 0;
}
