"""Run tinylazy's CUDA kernels on the CPU, through the real GPU branch of tinylazy.cuda, for machines with
no GPU.

`FakeCupy` is a stand-in for the few CuPy names that tinylazy/_kernels.py uses. Its arrays (`EmuArray`)
are NumPy arrays that answer to `.data.ptr` and `.device` like CuPy arrays; its `RawModule` compiles the
NVRTC-ready source of a kernels/*.cu file with g++ and kernel_emulator.h into a shared library (plus one
generated "thunk" per kernel that unpacks an argument array into the kernel's parameters), and a launch
`kernel(grid, block, args)` converts the arguments as CuPy does (int -> long long, float -> double,
bool -> bool, arrays -> pointers) and runs every thread of every block as a fiber (see the header).
The tests install it with `monkeypatch.setattr(backend, "_cupy", FakeCupy())`.
"""
import ctypes
import hashlib
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


def available():
    return shutil.which("g++") is not None


class _Pointer:
    def __init__(self, ptr):
        self.ptr = ptr


class _Device:
    """The one emulated device: id 0, a context manager, 2 SMs (so grids stay small)."""
    id = 0
    attributes = {"MultiProcessorCount": 2}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def synchronize(self):
        pass

    def __eq__(self, other):
        return isinstance(other, _Device)

    def __hash__(self):
        return 0


DEVICE = _Device()


class EmuArray(np.ndarray):
    """A NumPy array that looks like a CuPy array to tinylazy._kernels."""

    @property
    def data(self):
        return _Pointer(self.ctypes.data)

    @property
    def device(self):
        return DEVICE

    def get(self):
        return np.asarray(self)


def _emu(a):
    return np.asarray(a).view(EmuArray)


class _Kernel:
    def __init__(self, lib, name):
        self.lib, self.name = lib, name
        self.thunk = ctypes.cast(getattr(lib, "emu_thunk_" + name), ctypes.c_void_p)

    @staticmethod
    def _convert(a):
        """The C value CuPy would pass for `a`."""
        if isinstance(a, np.ndarray):
            return ctypes.c_void_p(a.ctypes.data)
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

    def __call__(self, grid, block, args):
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

    def __init__(self, code, options=()):
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


class FakeCupy(types.ModuleType):
    """The CuPy names used by tinylazy._kernels and tinylazy.cuda, backed by NumPy and the emulator."""

    def __init__(self):
        super().__init__("cupy")
        self.ndarray = EmuArray
        self.RawModule = RawModule
        self.cuda = types.SimpleNamespace(
            Device=lambda index=0: DEVICE,
            runtime=types.SimpleNamespace(getDeviceCount=lambda: 1, getDevice=lambda: 0))
        for name in ("bool_", "int64", "float32", "float64", "uint32", "uint64"):
            setattr(self, name, getattr(np, name))

    @staticmethod
    def asarray(a, dtype=None):
        if isinstance(a, EmuArray) and (dtype is None or a.dtype == dtype):
            return a
        return _emu(np.array(a, dtype=dtype))           # host -> "device" is a copy, as in CuPy

    @staticmethod
    def ascontiguousarray(a, dtype=None):
        return _emu(np.ascontiguousarray(a, dtype=dtype))

    @staticmethod
    def empty(shape, dtype=np.float64):
        return _emu(np.empty(shape, dtype))

    @staticmethod
    def empty_like(a):
        return _emu(np.empty_like(np.asarray(a)))

    @staticmethod
    def zeros(shape, dtype=np.float64):
        return _emu(np.zeros(shape, dtype))

    @staticmethod
    def broadcast_to(a, shape):
        return _emu(np.broadcast_to(np.asarray(a), shape))

    @staticmethod
    def asnumpy(a):
        return np.array(a)
