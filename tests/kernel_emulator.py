"""Run tinylazy's cuda device on the CPU, for machines with no GPU: CuPy's objects imitated on NumPy, and
the real CUDA kernels of kernels/*.cu compiled for the host.

`FakeCupy` stands in for the `cupy` module. Its arrays (`EmuArray`) hold a NumPy array but are NOT NumPy
arrays, and they behave like CuPy 14's where tinylazy could get it wrong on a real GPU:
- `numpy.asarray(a)` raises TypeError (CuPy forbids implicit conversion); a NumPy array handed to a cupy
  function, a ufunc or a kernel raises TypeError; reductions return 0-d arrays, never Python numbers;
  `take` wraps out-of-range indices around; no floating-point warnings (a GPU raises none);
- arrays and `cupy.cuda.Device` are unhashable, and neither has `__index__` (a Device has `__int__`);
- `cupy.random.Generator` has only the methods CuPy's has (no `permutation`, `normal`, `choice`);
- every call that makes the host wait for the GPU (`.get()`, `.item()`, `.tolist()`, `bool()`, `int()`,
  `float()`, boolean-mask indexing, `cupy.nonzero`/`unique`/`bincount`/..., `Device.synchronize`) is
  counted in `SYNCS`, and every host-to-device upload in `UPLOADS`, so a test can assert that a training
  step makes none;
- every cupy function, ufunc and array method that tinylazy calls is recorded in `CALLS` with its keyword
  names, for tests/test_cupy_api.py to check against the installed CuPy's real signatures.

Its `RawModule` compiles the NVRTC-ready source of a kernels/*.cu file with g++ and kernel_emulator.h into a
shared library (plus one generated "thunk" per kernel that unpacks an argument array into the kernel's
parameters), and a launch `kernel(grid, block, args)` converts the arguments as CuPy does (int -> long long,
float -> double, bool -> bool, arrays -> pointers) and runs every thread of every block as a fiber (see the
header). The tests install it with `monkeypatch.setattr(backend, "_cupy", FakeCupy())`.
"""
import collections
import ctypes
import hashlib
import operator
import os
import re
import shutil
import subprocess
import tempfile
import types
from pathlib import Path

import numpy as np

HEADER = Path(__file__).with_name("kernel_emulator.h")
CACHE = Path(tempfile.gettempdir()) / "tinylazy-kernel-emulator"


SYNCS = collections.Counter()     # what made the host wait for the device -> how often
UPLOADS = collections.Counter()   # host -> device copies, by the call that made them
CALLS = set()                     # ("cupy" | "ndarray" | "ufunc" | "random", name, keyword names) seen


def available():
    return shutil.which("g++") is not None


def reset_counters():
    SYNCS.clear()
    UPLOADS.clear()


def _sync(what):
    SYNCS[what] += 1


# ---- devices ------------------------------------------------------------------------------------------------
class Device:
    """cupy.cuda.Device: an id, a context manager, `attributes`, `synchronize()`. As in CuPy 14 it is not
    hashable (key caches on `.id`) and has `__int__` but no `__index__`. The emulator has one GPU, id 0."""
    __hash__ = None
    attributes = {"MultiProcessorCount": 2}          # 2 SMs, so grids stay small

    def __init__(self, device=None):
        self.id = 0 if device is None else int(device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def __eq__(self, other):
        return isinstance(other, Device) and other.id == self.id

    def __int__(self):
        return self.id

    def use(self):
        pass

    def synchronize(self):
        _sync("Device.synchronize")

    def __repr__(self):
        return f"<CUDA Device {self.id}>"


class _Pointer:
    """cupy.cuda.MemoryPointer, as far as tinylazy uses it: `.ptr`."""

    def __init__(self, ptr):
        self.ptr = ptr


class _Flags:
    def __init__(self, a):
        self.c_contiguous, self.f_contiguous, self.owndata = a.flags.c_contiguous, a.flags.f_contiguous, a.flags.owndata


# ---- arrays -------------------------------------------------------------------------------------------------
def _unwrap(obj):
    """The NumPy data of EmuArrays, recursing into tuples, lists and dicts."""
    t = type(obj)
    if t is EmuArray:
        return obj._a
    if t is tuple or t is list:
        return t(_unwrap(o) for o in obj)
    if t is dict:
        return {k: _unwrap(v) for k, v in obj.items()}
    return obj


def _wrap(obj):
    """NumPy results as device arrays: arrays and NumPy scalars alike (CuPy's reductions return 0-d arrays)."""
    if isinstance(obj, np.ndarray):
        return EmuArray(obj)
    if isinstance(obj, np.generic):
        return EmuArray(np.asarray(obj))
    if type(obj) is tuple or type(obj) is list:
        return type(obj)(_wrap(o) for o in obj)
    return obj


def _has_host_array(objs):
    return any(type(o) is np.ndarray or (type(o) in (tuple, list) and _has_host_array(o)) for o in objs)


def _reject_host(where, objs):
    if _has_host_array(objs):
        raise TypeError(f"{where}: Unsupported type <class 'numpy.ndarray'> (kernel emulator, as strict as CuPy: "
                        "move host arrays to the device with cupy.asarray first)")


def _is_bool_mask(key):
    keys = key if type(key) is tuple else (key,)
    return any(isinstance(k, (EmuArray, np.ndarray)) and k.dtype == np.bool_ for k in keys)


class EmuArray:
    """A cupy.ndarray look-alike holding a NumPy array `_a` (see the module docstring)."""
    __slots__ = ("_a",)
    __hash__ = None
    __array_priority__ = 100

    def __init__(self, a):
        self._a = a

    # -- what CuPy keeps on the device but tinylazy reads: metadata, pointer, device
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _Pointer(self._a.ctypes.data))
    device = property(lambda self: Device(0))
    T = property(lambda self: EmuArray(self._a.T))

    # -- synchronizing: the host needs the values
    def get(self, stream=None, order="C", out=None, blocking=True):
        _sync("ndarray.get")
        return np.array(self._a, order=order)

    def item(self):
        _sync("ndarray.item")
        return self._a.item()

    def tolist(self):
        _sync("ndarray.tolist")
        return self._a.tolist()

    def __bool__(self):
        _sync("ndarray.__bool__")
        return bool(self._a)

    def __int__(self):
        _sync("ndarray.__int__")
        return int(self._a)

    def __float__(self):
        _sync("ndarray.__float__")
        return float(self._a)

    def __complex__(self):
        _sync("ndarray.__complex__")
        return complex(self._a)

    def __repr__(self):
        return f"emulated cupy array({self._a!r})"

    def __array__(self, dtype=None, copy=None):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
                        "NumPy array explicitly. (kernel emulator, as CuPy)")

    # -- shape and indexing
    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (EmuArray(row) if isinstance(row, np.ndarray) else _wrap(row) for row in self._a)

    def __getitem__(self, key):
        if _is_bool_mask(key):
            _sync("ndarray.__getitem__ with a boolean mask")     # the result's size is on the device
        if _has_host_array(key if type(key) is tuple else (key,)):
            UPLOADS["ndarray.__getitem__ with a host index"] += 1
        return _wrap(self._a[_unwrap(key)])

    def __setitem__(self, key, value):
        if _has_host_array((key if type(key) is tuple else (key,)) + (value,)):
            UPLOADS["ndarray.__setitem__ with host data"] += 1
        self._a[_unwrap(key)] = _unwrap(value)

    # -- NumPy's protocols, as CuPy answers them: to the device's own functions
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        CALLS.add(("ufunc", ufunc.__name__ if method == "__call__" else f"{ufunc.__name__}.{method}",
                   tuple(sorted(kwargs))))
        _reject_host(f"numpy.{ufunc.__name__} on a cupy array", inputs + tuple(kwargs.get("out", ())))
        out = kwargs.get("out")
        with np.errstate(all="ignore"):
            result = getattr(ufunc, method)(*_unwrap(inputs), **_unwrap(kwargs))
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        CALLS.add(("cupy", func.__name__, tuple(sorted(kwargs))))
        _reject_host(f"numpy.{func.__name__} on a cupy array", args)
        return _wrap(func(*_unwrap(args), **_unwrap(kwargs)))

    # -- every other method: NumPy's, on the data, results on the device
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        value = getattr(self._a, name)
        if not callable(value):
            return _wrap(value)

        def method(*args, **kwargs):
            CALLS.add(("ndarray", name, tuple(sorted(kwargs))))
            with np.errstate(all="ignore"):
                result = value(*_unwrap(args), **_unwrap(kwargs))
            return self if result is self._a else _wrap(result)
        return method


def _binary(op, reflected=False):
    def f(self, other):
        _reject_host(f"cupy.ndarray.{op.__name__}", (other,))
        a, b = self._a, _unwrap(other)
        with np.errstate(all="ignore"):
            return _wrap(op(b, a) if reflected else op(a, b))
    return f


def _inplace(op):
    def f(self, other):
        _reject_host(f"cupy.ndarray.{op.__name__}", (other,))
        with np.errstate(all="ignore"):
            op(self._a, _unwrap(other))
        return self
    return f


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
              "lshift", "rshift"):
    _op = getattr(operator, _name + "_" if _name in ("and", "or") else _name)
    setattr(EmuArray, f"__{_name}__", _binary(_op))
    setattr(EmuArray, f"__r{_name}__", _binary(_op, reflected=True))
    setattr(EmuArray, f"__i{_name}__", _inplace(getattr(operator, f"i{_name}")))
for _name in ("lt", "le", "eq", "ne", "gt", "ge"):
    setattr(EmuArray, f"__{_name}__", _binary(getattr(operator, _name)))
for _name in ("neg", "pos", "abs", "invert"):
    setattr(EmuArray, f"__{_name}__", (lambda op: lambda self: _wrap(op(self._a)))(getattr(operator, _name)))


def _emu(a):
    return EmuArray(np.asarray(a))


# ---- the cupy module ----------------------------------------------------------------------------------------
_UPLOADING = {"asarray", "array", "asanyarray", "ascontiguousarray"}      # accept host data (a copy to the device)
_SYNCING = {"nonzero", "flatnonzero", "argwhere", "unique", "bincount", "extract", "compress", "asnumpy",
            "count_nonzero_host"}                                         # their output size lives on the device


class _Function:
    """A cupy function or ufunc: NumPy's, on the device arrays' data, strict about host arrays."""

    def __init__(self, name, fn, kind="cupy"):
        self.name, self.fn, self.kind = name, fn, kind

    def __call__(self, *args, **kwargs):
        CALLS.add((self.kind, self.name, tuple(sorted(kwargs))))
        if self.name in _SYNCING:
            _sync(f"cupy.{self.name}")
        if self.name in _UPLOADING:
            if args and type(args[0]) is not EmuArray:           # host data: a copy on the device, as in CuPy
                UPLOADS[f"cupy.{self.name}"] += 1
                args = (np.array(args[0], dtype=kwargs.pop("dtype", None), copy=True),) + args[1:]
        else:
            _reject_host(f"cupy.{self.name}", args)
        if self.name == "take":                        # CuPy's take wraps out-of-range indices around
            kwargs = dict(kwargs, mode="wrap")
        out = kwargs.get("out")
        with np.errstate(all="ignore"):
            result = self.fn(*_unwrap(args), **_unwrap(kwargs))
        if out is not None and type(out) is EmuArray:
            return out
        return _wrap(result)

    def __getattr__(self, method):                  # ufunc.at, ufunc.reduce, ...
        return _Function(f"{self.name}.{method}", getattr(self.fn, method), "ufunc")


class _Namespace(types.SimpleNamespace):
    """cupy.linalg and the like: NumPy's functions of the same names, wrapped."""

    def __init__(self, module, prefix, **extra):
        super().__init__(**extra)
        self._module, self._prefix = module, prefix

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return _Function(f"{self._prefix}.{name}", getattr(self._module, name))


class XORWOW:
    """cupy.random.XORWOW(seed=None, *, size=-1): here only the seed matters."""

    def __init__(self, seed=None, *, size=-1):
        self.seed = seed


class Generator:
    """cupy.random.Generator: only the methods tinylazy may use that CuPy 14's Generator has. It has no
    `permutation`, `normal` or `choice` (NumPy's has): calling them raises AttributeError, as on a GPU."""

    def __init__(self, bit_generator):
        self._g = np.random.Generator(np.random.PCG64(bit_generator.seed))

    def random(self, size=None, dtype=np.float64, out=None):
        CALLS.add(("random", "random", ()))
        return _emu(self._g.random(size, dtype=dtype))

    def standard_normal(self, size=None, dtype=np.float64, out=None):
        CALLS.add(("random", "standard_normal", ()))
        return _emu(self._g.standard_normal(size, dtype=dtype))

    def integers(self, low, high=None, size=None, dtype=np.int64, endpoint=False):
        CALLS.add(("random", "integers", ()))
        return _emu(self._g.integers(low, high, size, dtype=dtype, endpoint=endpoint))

    def uniform(self, low=0.0, high=1.0, size=None, dtype=np.float64):
        CALLS.add(("random", "uniform", ()))
        return _emu(self._g.uniform(low, high, size).astype(dtype))


class FakeCupy(types.ModuleType):
    """The `cupy` module, backed by NumPy and the kernel emulator (see the module docstring)."""

    def __init__(self):
        super().__init__("cupy")
        self.ndarray = EmuArray
        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(
            Device=Device,
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0))
        self.random = types.SimpleNamespace(Generator=Generator, XORWOW=XORWOW)
        self.linalg = _Namespace(np.linalg, "linalg")
        for name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                     "float16", "float32", "float64", "complex64", "complex128", "dtype", "newaxis", "inf", "nan",
                     "pi", "e"):
            setattr(self, name, getattr(np, name))

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Function(name, getattr(np, name))

    @staticmethod
    def asnumpy(a, stream=None, order="C", out=None, *, blocking=True):
        return a.get() if type(a) is EmuArray else np.asarray(a)


# ---- kernels ------------------------------------------------------------------------------------------------
class _Kernel:
    def __init__(self, lib, name):
        self.lib, self.name = lib, name
        self.thunk = ctypes.cast(getattr(lib, "emu_thunk_" + name), ctypes.c_void_p)

    def _convert(self, a):
        """The C value CuPy would pass for `a` (a NumPy array is refused, as CuPy refuses it)."""
        if type(a) is EmuArray:
            return ctypes.c_void_p(a._a.ctypes.data)
        if isinstance(a, np.ndarray):
            raise TypeError(f"kernel emulator: {self.name}: a NumPy array is not a kernel argument (CuPy refuses it)")
        if isinstance(a, (bool, np.bool_)):
            return ctypes.c_bool(bool(a))
        if isinstance(a, (int, np.int64)):
            return ctypes.c_longlong(int(a))
        if isinstance(a, np.int32):
            return ctypes.c_int(int(a))
        if isinstance(a, np.float32):
            return ctypes.c_float(float(a))
        if isinstance(a, (float, np.float64)):
            return ctypes.c_double(float(a))
        raise TypeError(f"kernel emulator: cannot pass a {type(a).__name__} to a kernel")

    def __call__(self, grid, block, args, *, shared_mem=0):
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        values = [self._convert(a) for a in args]
        pointers = (ctypes.c_void_p * max(1, len(values)))(*[ctypes.addressof(v) for v in values])
        status = self.lib.emu_launch(self.thunk, pointers, *grid, *block)
        if status:
            raise RuntimeError(f"kernel emulator: {self.name} failed ({'bad block shape' if status == 2 else 'deadlock'})")


_KERNEL = re.compile(r'extern\s+"C"\s+void\s+(\w+)\s*\(([^)]*)\)\s*\{')


def _thunks(code):
    """One `emu_thunk_<name>(void** a)` per extern "C" kernel, calling it with *(T*)a[i] for each parameter."""
    pre = subprocess.run(["g++", "-std=c++17", "-E", "-P", "-include", str(HEADER), "-x", "c++", "-"],
                         input=code, capture_output=True, text=True, check=True).stdout
    out = []
    for name, params in _KERNEL.findall(pre):
        if name.startswith("emu_"):
            continue
        types_ = [re.match(r"(.*?)\w+\s*$", p.strip()).group(1) for p in params.split(",") if p.strip()]
        call = ", ".join(f"*({t.strip()}*)a[{i}]" for i, t in enumerate(types_))
        out.append(f'extern "C" void emu_thunk_{name}(void** a) {{ {name}({call}); }}')
    return "\n".join(out)


class RawModule:
    """cupy.RawModule look-alike: compiles `code` for the host once (cached on disk by its hash)."""

    def __init__(self, code=None, path=None, options=(), backend="nvrtc", translate_cucomplex=False,
                 *, enable_cooperative_groups=False, name_expressions=None, jitify=False):
        header = HEADER.read_text()
        digest = hashlib.sha256((header + "\0" + code).encode()).hexdigest()[:20]
        lib_path = CACHE / f"{digest}.so"
        if not lib_path.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            src = CACHE / f"{digest}-{os.getpid()}.cpp"
            src.write_text(code + "\n" + _thunks(code) + "\n")
            tmp = CACHE / f"{digest}-{os.getpid()}.so"
            subprocess.run(["g++", "-std=c++17", "-O1", "-w", "-shared", "-fPIC", "-include", str(HEADER),
                            str(src), "-o", str(tmp)], check=True)
            os.replace(tmp, lib_path)
            src.unlink()
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.emu_launch.restype = ctypes.c_int
        self.lib.emu_launch.argtypes = [ctypes.c_void_p, ctypes.c_void_p] + [ctypes.c_uint] * 6

    def get_function(self, name):
        return _Kernel(self.lib, name)
