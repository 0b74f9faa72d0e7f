"""Making tensors: from data (`tensor`, `as_tensor`, `from_numpy`), filled (`zeros`, `full`, ...), ranges
(`arange`, `linspace`, `eye`) and random (`rand`, `randn`, `randint`, `normal`). Every maker takes
`dtype=`, `device=` and `requires_grad=`; sizes come as ``*size``, one tuple, or ``size=``."""
import numbers

import numpy as np

from . import backend
from . import dtypes as _dt
from .random import RNG
from .tensor import Tensor


def _sizes(size, kw_size, fn):
    if kw_size is not None:
        if size:
            raise TypeError(f"{fn}: give the size either positionally or as size=, not both")
        size = (kw_size,)
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = int(s)
        if not isinstance(s, numbers.Integral) or isinstance(s, bool):
            raise TypeError(f"{fn}: sizes must be integers, got {s!r} in {tuple(size)}")
        if s < 0:
            raise ValueError(f"{fn}: sizes must be non-negative, got {tuple(size)}")
        out.append(int(s))
    return tuple(out)


def _finish(data, requires_grad):
    t = Tensor(data)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _float_dtype(dtype, fn):
    return _dt.to_dtype(dtype) or _dt.get_default_dtype()


# --- from data ------------------------------------------------------------------------------------
def _infer_host(data, dtype):
    """A host (or device) array for `data`, with PyTorch's dtype rules for Python values."""
    if isinstance(data, Tensor):
        return data.array if dtype is None else data.array.astype(dtype)
    if isinstance(data, (np.ndarray, np.generic)) or backend.is_meta(data) or _is_device_array(data):
        data = np.asarray(data) if isinstance(data, np.generic) else data
        return data if dtype is None else data.astype(dtype, copy=False)
    if isinstance(data, (list, tuple)):
        data = [d.item() if isinstance(d, Tensor) and d.numel() == 1 else
                (d.tolist() if isinstance(d, Tensor) else d) for d in data]
    arr = np.asarray(data)
    if dtype is not None:
        return arr.astype(dtype, copy=False)
    if arr.dtype.kind == "f":
        return arr.astype(_dt.get_default_dtype(), copy=False)
    if arr.dtype.kind in "iu":
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind not in "bc":
        raise TypeError(f"tensor: cannot make a tensor from {type(data).__name__} (NumPy read it as {arr.dtype})")
    return arr


def _is_device_array(data):
    cp = backend.cupy_module() if type(data).__module__.startswith("cupy") else None
    return cp is not None and isinstance(data, cp.ndarray)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of `data` (lists, scalars, NumPy or CuPy arrays, tensors)."""
    dtype = _dt.to_dtype(dtype)
    arr = _infer_host(data, dtype)
    dev = backend.device(device) if device is not None else backend.device_of(arr)
    return _finish(backend.to_device(arr, dev, copy=True), requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like `tensor`, but shares memory with `data` when device and dtype already match."""
    if isinstance(data, Tensor) and dtype is None and device is None:
        return data
    dtype = _dt.to_dtype(dtype)
    arr = _infer_host(data, dtype)
    dev = backend.device(device) if device is not None else backend.device_of(arr)
    return Tensor(backend.to_device(arr, dev))


def from_numpy(array):
    """A tensor that shares memory with a NumPy array (writes show through both ways)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return Tensor(array)


# --- filled ---------------------------------------------------------------------------------------
def empty(*size, dtype=None, device=None, requires_grad=False, **kw):
    shape = _sizes(size, kw.pop("size", None), "empty")
    return _finish(backend.empty(shape, _float_dtype(dtype, "empty"), device or "cpu"), requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad=False):
    shape = _sizes((size,) if not isinstance(size, (tuple, list)) else (tuple(size),), None, "full")
    if dtype is None:
        dtype = _dt.scalar_dtype(fill_value.item() if isinstance(fill_value, Tensor) else fill_value)
    return _finish(backend.full(shape, fill_value, _dt.to_dtype(dtype), device or "cpu"), requires_grad)


def zeros(*size, dtype=None, device=None, requires_grad=False, **kw):
    shape = _sizes(size, kw.pop("size", None), "zeros")
    return _finish(backend.full(shape, 0, _float_dtype(dtype, "zeros"), device or "cpu"), requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, **kw):
    shape = _sizes(size, kw.pop("size", None), "ones")
    return _finish(backend.full(shape, 1, _float_dtype(dtype, "ones"), device or "cpu"), requires_grad)


def _like(t, dtype, device):
    return t.shape, _dt.to_dtype(dtype) or t.dtype, device or t.device


def empty_like(t, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(backend.empty(shape, dtype, device), requires_grad)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(backend.full(shape, 0, dtype, device), requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(backend.full(shape, 1, dtype, device), requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(backend.full(shape, fill_value, dtype, device), requires_grad)


# --- ranges ---------------------------------------------------------------------------------------
def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False):
    """Values from `start` (default 0) up to, not including, `end`. Integers give int64, floats the default."""
    if end is None:
        start, end = 0, start
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    if dtype is None:
        dtype = _dt.int64 if all(isinstance(v, numbers.Integral) for v in values) else _dt.get_default_dtype()
    host = np.arange(*values, dtype=np.float64 if _dt.to_dtype(dtype).kind == "f" else None)
    return _finish(backend.to_device(host.astype(_dt.to_dtype(dtype)), device or "cpu"), requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    host = np.linspace(start, end, int(steps), dtype=np.float64)
    dtype = _dt.to_dtype(dtype) or _dt.get_default_dtype()
    return _finish(backend.to_device(host.astype(dtype), device or "cpu"), requires_grad)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    host = np.eye(n, m, dtype=_dt.to_dtype(dtype) or _dt.get_default_dtype())
    return _finish(backend.to_device(host, device or "cpu"), requires_grad)


# --- random ---------------------------------------------------------------------------------------
def _random(kind, shape, dtype, device, a=0.0, b=1.0):
    """Random numbers drawn on `device` itself by its seeded generator (no host round trip)."""
    dev = backend.device(device)
    if dev.type == "meta":
        return backend.empty(shape, dtype, dev)
    gen = RNG.generator(dev)
    with backend.on_device(dev):
        work = dtype if dtype in (_dt.float32, _dt.float64) else _dt.float64
        if kind == "uniform":
            out = gen.random(shape, dtype=work)
            if (a, b) != (0.0, 1.0):
                out *= (b - a)
                out += a
        else:
            out = gen.standard_normal(shape, dtype=work)
            if (a, b) != (0.0, 1.0):
                out *= b
                out += a
        return out if out.dtype == dtype else out.astype(dtype)


def rand(*size, dtype=None, device=None, requires_grad=False, **kw):
    """Uniform on [0, 1)."""
    shape = _sizes(size, kw.pop("size", None), "rand")
    return _finish(_random("uniform", shape, _float_dtype(dtype, "rand"), device or "cpu"), requires_grad)


def randn(*size, dtype=None, device=None, requires_grad=False, **kw):
    """Standard normal."""
    shape = _sizes(size, kw.pop("size", None), "randn")
    return _finish(_random("normal", shape, _float_dtype(dtype, "randn"), device or "cpu"), requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(_random("uniform", shape, dtype, device), requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    shape, dtype, device = _like(t, dtype, device)
    return _finish(_random("normal", shape, dtype, device), requires_grad)


def normal(mean=0.0, std=1.0, size=None, dtype=None, device=None, requires_grad=False):
    """Normal with the given mean and std (numbers, with `size`; or tensors, elementwise)."""
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        shape = np.broadcast_shapes(np.shape(mean.array if isinstance(mean, Tensor) else mean),
                                    np.shape(std.array if isinstance(std, Tensor) else std))
        ref = mean if isinstance(mean, Tensor) else std
        z = _random("normal", shape, ref.dtype, device or ref.device)
        m = mean.array if isinstance(mean, Tensor) else mean
        s = std.array if isinstance(std, Tensor) else std
        return _finish(z * s + m, requires_grad)
    if size is None:
        raise TypeError("normal: with number mean and std, give size=")
    shape = _sizes((size,) if not isinstance(size, (tuple, list)) else (tuple(size),), None, "normal")
    return _finish(_random("normal", shape, _float_dtype(dtype, "normal"), device or "cpu", mean, std), requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad=False):
    """Integers uniform on [low, high) (int64 unless dtype says otherwise)."""
    if high is None:
        low, high = 0, low
    if size is None:
        raise TypeError("randint: size= is required, e.g. randint(0, 10, (3,))")
    shape = _sizes((size,) if not isinstance(size, (tuple, list)) else (tuple(size),), None, "randint")
    dtype = _dt.to_dtype(dtype) or _dt.int64
    dev = backend.device(device or "cpu")
    if dev.type == "meta":
        return Tensor(backend.empty(shape, dtype, dev))
    gen = RNG.generator(dev)
    with backend.on_device(dev):
        out = gen.integers(low, high, size=shape) if hasattr(gen, "integers") else gen.randint(low, high, shape)
    return _finish(out.astype(dtype, copy=False), requires_grad)


def permutation(gen, n):
    """A uniformly random permutation of 0 .. n-1 drawn from `gen`, on gen's device.

    NumPy's Generator has `permutation`; CuPy's (CuPy 14) has not. There the permutation is the stable
    argsort of n random 63-bit keys drawn on the device: uniform except when two keys tie (probability
    below n^2 / 2^64), and a permutation in every case. No host round trip."""
    if hasattr(gen, "permutation"):
        return gen.permutation(int(n))
    keys = gen.integers(0, 2 ** 63 - 1, size=int(n), dtype=np.int64)
    return keys.argsort()


def randperm(n, dtype=None, device=None):
    """A random permutation of 0 .. n-1 (int64 unless dtype says otherwise), drawn on `device` by its
    seeded generator (so cpu and cuda give different permutations for one seed)."""
    if int(n) < 0:
        raise ValueError(f"randperm: n must be non-negative, got {n}")
    dev = backend.device(device or "cpu")
    if dev.type == "meta":
        return Tensor(backend.empty((int(n),), _dt.to_dtype(dtype) or _dt.int64, dev))
    gen = RNG.generator(dev)
    with backend.on_device(dev):
        out = permutation(gen, n)
    return Tensor(out.astype(_dt.to_dtype(dtype) or _dt.int64, copy=False))
