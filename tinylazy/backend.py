"""The one place that decides which array module holds a tensor's data, on each device.

- ``cpu``    -> NumPy arrays
- ``cuda:N`` -> CuPy arrays on GPU N (CuPy is imported the first time a GPU is asked for, never before)
- ``meta``   -> `MetaArray`: shape and dtype only, no storage (shape-only tracing)

The Device objects are in devices.py, the random generators in random.py; nothing here imports the rest
of tinylazy beyond them and meta.py.
"""
import numpy as np

from .devices import CPU, META, Device, device  # noqa: F401  (backend.device, ... as before)
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


# --- moved: the random generators live in random.py, the allocator tuning in _malloc.py --------------
def __getattr__(name):
    """Old imports keep working: backend.RNG and backend.manual_seed (now tinylazy.random), and
    backend.tune_host_allocator (now tinylazy._malloc). Looked up lazily: those modules import this one."""
    if name in ("RNG", "manual_seed"):
        from . import random
        return getattr(random, name)
    if name == "tune_host_allocator":
        from . import _malloc
        return _malloc.tune_host_allocator
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
