"""Devices, and the one place that decides which array module holds a tensor's data.

- ``cpu``    -> NumPy arrays
- ``cuda:N`` -> CuPy arrays on GPU N (CuPy is imported the first time a GPU is asked for, never before)
- ``meta``   -> `MetaArray`: shape and dtype only, no storage (shape-only tracing)

It also owns the random number generators: one per device, all reseeded by `manual_seed`.
Nothing in here imports the rest of tinylazy.
"""
import os
import sys
import threading

import numpy as np

from .meta import MetaArray

_cupy = None            # the cupy module once imported; False when it is not importable


def cupy_module():
    """The CuPy module, or None when CuPy is not installed or no GPU is usable."""
    global _cupy
    if _cupy is None:
        try:
            import cupy
            cupy.cuda.runtime.getDeviceCount()
            _cupy = cupy
        except Exception:                     # no CuPy, no driver, or no device: the cpu still works
            _cupy = False
    return _cupy or None


class Device:
    """A device: ``Device("cpu")``, ``Device("cuda", 0)``, ``Device("meta")``. Compares equal to its string."""
    __slots__ = ("type", "index")

    def __init__(self, type, index=None):
        self.type, self.index = type, index

    def __str__(self):
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __repr__(self):
        return f"device(type='{self.type}'" + ("" if self.index is None else f", index={self.index}") + ")"

    def __eq__(self, other):
        if isinstance(other, str):
            try:
                other = device(other)
            except (ValueError, TypeError):
                return False
        return isinstance(other, Device) and other.type == self.type and other.index == self.index

    def __hash__(self):
        return hash((self.type, self.index))

    def __reduce__(self):
        return (device, (str(self),))


_DEVICES = {}


def device(spec="cpu", index=None):
    """Parse ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"meta"`` or a Device; devices are interned (one object each)."""
    if isinstance(spec, Device):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"device: expected a string like 'cpu', 'cuda:0' or 'meta', got {type(spec).__name__}")
    key = (spec, index)
    dev = _DEVICES.get(key)
    if dev is not None:
        return dev
    kind, _, num = spec.partition(":")
    if kind not in ("cpu", "cuda", "meta"):
        raise ValueError(f"device: unknown device {spec!r}; expected 'cpu', 'cuda', 'cuda:N' or 'meta'")
    if num:
        if not num.isdigit() or index is not None:
            raise ValueError(f"device: bad device string {spec!r}")
        index = int(num)
    if kind == "cuda" and index is None:
        index = 0
    if kind != "cuda" and index not in (None, 0):
        raise ValueError(f"device: {kind} has no index (got {spec!r}, index={index})")
    dev = _DEVICES[key] = _intern(Device(kind, index if kind == "cuda" else None))
    return dev


_INTERNED = {}


def _intern(dev):
    return _INTERNED.setdefault((dev.type, dev.index), dev)


CPU = device("cpu")
META = device("meta")


def device_of(array):
    """The device that holds a raw array."""
    t = type(array)
    if t is np.ndarray or isinstance(array, (np.ndarray, np.generic)):
        return CPU
    if t is MetaArray:
        return META
    cp = cupy_module()
    if cp is not None and isinstance(array, cp.ndarray):
        return device("cuda", array.device.id)
    raise TypeError(f"expected a NumPy, CuPy or meta array, got {t.__name__}")


def xp_of(array):
    """The array module for a raw array: numpy for cpu and meta (NumPy dispatches to MetaArray), cupy for cuda."""
    if isinstance(array, (np.ndarray, MetaArray, np.generic)):
        return np
    return cupy_module()


def xp_for(dev):
    dev = device(dev)
    if dev.type == "cuda":
        cp = _require_cuda(dev)
        return cp
    return np


def _require_cuda(dev):
    cp = cupy_module()
    if cp is None:
        raise RuntimeError(f"device {dev}: CUDA is not available (CuPy is not installed or no GPU was found); "
                           "install the 'cuda' extra on a machine with an NVIDIA GPU, or use device='cpu'")
    if dev.index >= cp.cuda.runtime.getDeviceCount():
        raise RuntimeError(f"device {dev}: only {cp.cuda.runtime.getDeviceCount()} GPU(s) are present")
    return cp


def is_meta(array):
    return type(array) is MetaArray


# --- moving and making arrays ----------------------------------------------------------------------
def to_device(array, dev, dtype=None, copy=False):
    """`array` on device `dev` (and `dtype`), copying only when it must (or when `copy`)."""
    dev = device(dev)
    src = device_of(array)
    dtype = None if dtype is None else np.dtype(dtype)
    if dev.type == "meta":
        return MetaArray(array.shape, dtype or array.dtype)
    if src.type == "meta":
        raise RuntimeError(f"cannot copy a meta tensor to {dev}: it has no data (make a new tensor there instead)")
    if dev.type == "cpu":
        if src.type == "cuda":
            array = array.get()
        out = np.array(array, dtype=dtype, copy=True) if copy else np.asarray(array, dtype=dtype)
        return out
    cp = _require_cuda(dev)
    with cp.cuda.Device(dev.index):
        if copy or src != dev:
            return cp.array(array, dtype=dtype, copy=True)
        return array if dtype is None or array.dtype == dtype else array.astype(dtype)


def empty(shape, dtype, dev):
    dev = device(dev)
    if dev.type == "meta":
        return MetaArray(shape, dtype)
    if dev.type == "cuda":
        cp = _require_cuda(dev)
        with cp.cuda.Device(dev.index):
            return cp.empty(shape, dtype)
    return np.empty(shape, dtype)


def full(shape, value, dtype, dev):
    out = empty(shape, dtype, dev)
    out.fill(value)
    return out


def from_numpy_like(array, dev):
    """Host array -> device array, used for data made on the host (lists, arange, linspace, eye)."""
    return to_device(array, dev)


def on_device(dev):
    """A context manager that makes `dev` the current CUDA device (a no-op elsewhere)."""
    dev = device(dev)
    if dev.type == "cuda":
        return _require_cuda(dev).cuda.Device(dev.index)
    return _NULL


class _Null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


_NULL = _Null()


# --- random numbers --------------------------------------------------------------------------------
class _RNG:
    """Per-device generators. `manual_seed(n)` reseeds them all, so a program's numbers repeat.

    As in PyTorch, they are shared by every thread of the process; a lock makes handing out a generator or
    a dropout counter range atomic, so two threads never get the same numbers (NumPy's generators lock each
    draw themselves)."""

    def __init__(self):
        self.seed = 0
        self._generators = {}
        self._counters = {}
        self._lock = threading.Lock()

    def manual_seed(self, seed):
        with self._lock:
            self.seed = int(seed)
            self._generators.clear()
            self._counters.clear()

    def generator(self, dev):
        """The generator of `dev`: a `numpy.random.Generator` on cpu, a `cupy.random.Generator` on cuda."""
        dev = device(dev)
        gen = self._generators.get(dev)
        if gen is None:
            with self._lock:
                return self._new_generator(dev)
        return gen

    def _new_generator(self, dev):
        gen = self._generators.get(dev)      # another thread may have made it meanwhile
        if gen is None:
            if dev.type == "cuda":
                cp = _require_cuda(dev)
                with cp.cuda.Device(dev.index):
                    gen = cp.random.Generator(cp.random.XORWOW(self.seed))
            else:
                gen = np.random.Generator(np.random.PCG64(self.seed))
            self._generators[dev] = gen
        return gen

    def next_offset(self, dev, n):
        """A fresh range of `n` counters for counter-based kernels (dropout): returns (seed, offset)."""
        dev = device(dev)
        with self._lock:
            start = self._counters.get(dev, 0)
            self._counters[dev] = start + int(n)
            return self.seed, start


RNG = _RNG()


def manual_seed(seed):
    """Seed every device's generator; the same seed and program give the same numbers on the same device."""
    RNG.manual_seed(seed)


# --- host memory -----------------------------------------------------------------------------------
def tune_host_allocator(mmap_threshold=32 << 20, trim_threshold=256 << 20):
    """Let glibc keep freed NumPy buffers for reuse instead of handing them back to the OS.

    A training step allocates the same large temporaries (im2col copies, activations, gradients) every
    step. By default glibc serves blocks over ~128 KiB with mmap and returns them on free, so each step
    pays page faults for all of them again (a LeNet step on the CPU: ~1.7x slower). Raising the mmap
    threshold (to glibc's maximum, 32 MiB) and the trim threshold (256 MiB) keeps those pages mapped,
    which is what a caching allocator does in other frameworks. The cost: up to `trim_threshold` bytes
    of freed memory stay with the process. Called once at import on Linux with glibc; set
    TINYLAZY_MALLOC_TUNING=0 to leave the allocator alone. Returns True when both settings took.
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


if os.environ.get("TINYLAZY_MALLOC_TUNING", "1") != "0":
    tune_host_allocator()
