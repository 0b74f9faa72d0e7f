"""The Tensor: a raw array (`array`) plus what autograd needs (`requires_grad`, `grad`, `grad_fn`).

Every operator method is a thin call into `tinylazy.ops`, bound at the bottom of this file, so the
arithmetic lives in one place (one Function per op) and this class stays about data and bookkeeping.
"""
import numpy as np

from . import _devcheck, _printing, autograd, backend
from . import dtypes as _dt
from .size import _from_shape


class Tensor:
    __slots__ = ("array", "grad", "requires_grad", "grad_fn", "_out_index", "_retains_grad", "_vc", "__weakref__")
    __array_priority__ = 1000          # NumPy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.array
        elif not (isinstance(data, np.ndarray) or backend.is_meta(data) or _is_cupy(data)):
            data = np.asarray(data)
        self.array, self.grad, self.grad_fn, self._out_index, self._retains_grad = data, None, None, 0, False
        self._vc = [0]                 # the version counter (see autograd): views share it, in-place ops bump it
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # --- the values as a Tensor, as in PyTorch ----------------------------------------------------
    @property
    def data(self):
        """A detached Tensor sharing this tensor's storage: in-place changes through it change `self` and are
        not recorded by autograd (PyTorch's escape hatch). The raw NumPy/CuPy array is `self.array`."""
        return Tensor(self.array)

    @data.setter
    def data(self, value):
        """`t.data = other` (a Tensor or a raw NumPy/CuPy array) replaces t's values, shape and dtype; nothing is
        recorded by autograd."""
        array = value.array if isinstance(value, Tensor) else value
        if not (isinstance(array, np.ndarray) or backend.is_meta(array) or _is_cupy(array)):
            raise TypeError(f"Tensor.data: expected a Tensor or a NumPy/CuPy array, got {type(value).__name__}")
        if self.requires_grad and not _dt.is_floating(array.dtype):
            raise RuntimeError(f"Tensor.data: this tensor requires grad, so its data must be floating point, "
                               f"got {array.dtype}")
        self.array = array

    # --- what the data looks like ---------------------------------------------------------------
    @property
    def shape(self):
        """The sizes, as a `tl.Size` (a tuple). Engine code reads `self.array.shape` instead."""
        return _from_shape(self.array.shape)

    @property
    def ndim(self):
        return self.array.ndim

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_meta(self):
        return backend.is_meta(self.array)

    def size(self, dim=None):
        shape = self.shape
        return shape if dim is None else shape[_dim(dim, len(shape), "size")]

    def numel(self):
        return int(self.array.size)

    def dim(self):
        return self.array.ndim

    def element_size(self):
        return self.array.dtype.itemsize

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __hash__(self):
        return id(self)

    # --- getting values out -----------------------------------------------------------------------
    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python scalar, "
                             f"got shape {tuple(self.array.shape)}")
        _devcheck.check_before_read(self.array)          # cuda: raise index errors found on the device
        return self.array.item()

    def tolist(self):
        _devcheck.check_before_read(self.array)
        return self.array.tolist()

    def numpy(self):
        """The data as a NumPy array: the same memory on cpu, a host copy for cuda."""
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; use tensor.detach().numpy()")
        _devcheck.check_before_read(self.array)
        return backend.to_device(self.array, "cpu")

    def __array__(self, dtype=None, copy=None):
        out = backend.to_device(self.array, "cpu")
        return out if dtype is None else out.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    def __repr__(self):
        """PyTorch's format (see tinylazy/_printing.py); `tl.set_printoptions` changes it."""
        return _printing.tensor_repr(self)

    def __format__(self, spec):
        """`f"{loss:.3f}"` on a one-element tensor formats its number; `f"{t}"` is `str(t)` (for a 0-d
        tensor its number, as in PyTorch)."""
        return _printing.format_tensor(self, spec)

    # --- autograd ---------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not _dt.is_floating(self.dtype):
            raise RuntimeError(f"requires_grad_: only floating-point tensors can require gradients, "
                               f"got {self.dtype} (convert with .float() or .double() first)")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep `.grad` of this non-leaf tensor after backward (leaves always keep theirs)."""
        if self.grad_fn is None:
            return
        if not self._retains_grad:
            self._retains_grad = True
            fn = self.grad_fn
            if fn._retained is None:
                fn._retained = []
            fn._retained.append((self._out_index, self))

    @property
    def retains_grad(self):
        return self._retains_grad

    @property
    def _version(self):
        """How many in-place changes this tensor's values (or a view's sharing them) have seen (PyTorch's
        name). Backward refuses a saved tensor whose version moved since forward (see autograd)."""
        return self._vc[0]

    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        if create_graph:
            raise NotImplementedError("backward(create_graph=True): tinylazy computes first-order gradients only")
        autograd.backward(self, gradient, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """`hook(tensor)` runs after backward has accumulated this leaf's whole gradient (see autograd)."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def detach(self):
        """The same data, cut from the graph (a view: it shares the version counter, unlike `.data`)."""
        t = Tensor(self.array)
        t._vc = self._vc
        return t

    def detach_(self):
        if self.grad_fn is not None:
            self.grad_fn = None
        self.requires_grad = False
        return self

    # --- conversions -----------------------------------------------------------------------------
    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """`to(device)`, `to(dtype)`, `to(device, dtype)`, `to(other_tensor)`; differentiable; returns
        `self` when nothing changes (unless copy=True)."""
        device, dtype = Tensor._to_args(args, device, dtype)
        out = self
        if dtype is not None:
            out = _ops.unary.cast(out, dtype)
        if device is not None:
            out = _ops.unary.to_device(out, device)
        if copy and out is self:
            out = _ops.clone(self)
        return out

    @staticmethod
    def _to_args(args, device=None, dtype=None):
        """(device, dtype) from `to()`'s arguments (also Module.to's): a device, a dtype, or a tensor's both."""
        for a in args:
            if isinstance(a, Tensor):
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        return device, dtype

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(f"cuda:{device}" if isinstance(device, int) else (device or "cuda"))

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)

    def long(self):
        return self.to(_dt.int64)

    def int(self):
        return self.to(_dt.int32)

    def bool(self):
        return self.to(_dt.bool_)

    def type(self, dtype=None):
        return str(self.dtype) if dtype is None else self.to(dtype)

    # --- in place ---------------------------------------------------------------------------------
    def _check_inplace(self, op):
        if self.requires_grad and autograd._state.grad_enabled:
            what = "a leaf tensor that requires grad" if self.grad_fn is None else "a tensor that is part of a graph"
            raise RuntimeError(f"{op}: {what} cannot be changed in place while grad mode is on; "
                               "wrap the update in `with tl.no_grad():` (or use .detach())")

    def zero_(self):
        self._check_inplace("zero_")
        self.array.fill(0)
        self._vc[0] += 1
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.array.fill(value.item() if isinstance(value, Tensor) else value)
        self._vc[0] += 1
        return self

    def copy_(self, src):
        self._check_inplace("copy_")
        src = src.array if isinstance(src, Tensor) else src
        if backend.is_meta(self.array):
            np.broadcast_shapes(tuple(src.shape), self.shape)
            return self
        src = backend.to_device(src, self.device) if not np.isscalar(src) else src
        self.array[...] = src
        self._vc[0] += 1
        return self

    def uniform_(self, a=0.0, b=1.0):
        self._check_inplace("uniform_")
        from .creation import _random
        self.array[...] = _random("uniform", self.shape, self.dtype, self.device, a, b)
        self._vc[0] += 1
        return self

    def normal_(self, mean=0.0, std=1.0):
        self._check_inplace("normal_")
        from .creation import _random
        self.array[...] = _random("normal", self.shape, self.dtype, self.device, mean, std)
        self._vc[0] += 1
        return self

    def _inplace(op_name, op):
        def method(self, other):
            if self.requires_grad and autograd._state.grad_enabled:
                if self.grad_fn is None:
                    self._check_inplace(op_name)
                return op(self, other)             # a graph tensor: rebind the name to the new result
            if backend.is_meta(self.array):
                np.broadcast_shapes(np.shape(other.array if isinstance(other, Tensor) else other), self.shape)
                return self
            value = op(self.detach(), other).array
            if value.dtype != self.array.dtype and not _dt.can_cast(value.dtype, self.array.dtype):
                raise RuntimeError(f"{op_name}: the result type {value.dtype} can't be cast to the tensor's "
                                   f"dtype {self.dtype} in place (as in PyTorch); use the out-of-place op")
            self.array[...] = value
            self._vc[0] += 1
            return self
        method.__name__ = op_name
        return method


def _is_cupy(data):
    cp = backend.cupy_module() if backend._cupy is not None or type(data).__module__.startswith("cupy") else None
    return cp is not None and isinstance(data, cp.ndarray)


def _dim(d, ndim, op):
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dimensions "
                         f"(expected in [{-max(ndim, 1)}, {max(ndim, 1) - 1}])")
    return d % max(ndim, 1)


autograd.Tensor = Tensor

# --- operator methods: each is the public op of the same name in tinylazy.ops ----------------------
from . import ops as _ops  # noqa: E402  (ops import Tensor, so they come after it)


def _bind_methods():
    T = Tensor
    for name in _ops.METHODS:
        setattr(T, name, getattr(_ops, name))
    binary = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "floordiv": "floor_divide",
              "mod": "remainder", "pow": "pow", "matmul": "matmul"}
    for dunder, fn in binary.items():
        op = getattr(_ops, fn)
        setattr(T, f"__{dunder}__", op)
        setattr(T, f"__r{dunder}__", (lambda op: lambda self, other: op(other, self))(op))
        setattr(T, f"__i{dunder}__", T._inplace(f"__i{dunder}__", op))
    T.__neg__ = _ops.neg
    T.__pos__ = lambda self: self
    T.__abs__ = _ops.abs
    T.__invert__ = _ops.logical_not
    T.__and__, T.__or__, T.__xor__ = _ops.logical_and, _ops.logical_or, _ops.logical_xor
    # comparing with None (e.g. `t in [None, t]`) answers as Python does, not with an error
    T.__eq__ = lambda self, other: False if other is None else _ops.eq(self, other)
    T.__ne__ = lambda self, other: True if other is None else _ops.ne(self, other)
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = _ops.lt, _ops.le, _ops.gt, _ops.ge
    T.__getitem__, T.__setitem__ = _ops.getitem, _ops.setitem
    T.T = property(lambda self: _ops.permute(self, tuple(range(self.ndim - 1, -1, -1))))
    T.mT = property(lambda self: _ops.transpose(self, -2, -1))
    del T._inplace


_bind_methods()
