"""Host memory: let glibc keep freed NumPy buffers for reuse, once training starts.

Importing tinylazy changes nothing. The first optimizer built (optim.Optimizer.__init__) calls
`tune_once()`: training is when the same large temporaries come back every step, and where the tuning pays
(a LeNet step on the CPU: ~1.8x faster). `TINYLAZY_MALLOC_TUNING=0` in the environment turns it off;
`tune_host_allocator()` applies it by hand (e.g. for inference loops, which build no optimizer).
"""
import os
import sys


def tune_host_allocator(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Let glibc keep freed NumPy buffers for reuse instead of handing them back to the OS.

    A training step allocates the same large temporaries (im2col copies, activations, gradients) every
    step. By default glibc serves blocks over ~128 KiB with mmap and returns them on free, so each step
    pays page faults for all of them again (a LeNet step on the CPU: ~1.7x slower). Raising the mmap
    threshold (to glibc's maximum, 32 MiB) and the trim threshold (256 MiB) keeps those pages mapped,
    which is what a caching allocator does in other frameworks. The cost: up to `trim_threshold` bytes
    of freed memory stay with the process. Linux with glibc only (elsewhere a no-op).
    Returns True when both settings took.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes
        libc = ctypes.CDLL("libc.so.6")
        M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(mmap_threshold))) and \
            bool(libc.mallopt(M_TRIM_THRESHOLD, int(trim_threshold)))
    except (OSError, AttributeError):          # not glibc (e.g. musl): nothing to tune
        return False


def tune_from_env():
    """`tune_host_allocator()` unless the environment sets TINYLAZY_MALLOC_TUNING=0 (what the demo and the
    benchmarks call, so that an A/B run can switch the tuning off). Returns whether it tuned."""
    return os.environ.get("TINYLAZY_MALLOC_TUNING", "1") != "0" and tune_host_allocator()


_tuned = None


def tune_once():
    """`tune_from_env()` the first time (what the first optimizer calls); later calls return that answer."""
    global _tuned
    if _tuned is None:
        _tuned = tune_from_env()
    return _tuned
