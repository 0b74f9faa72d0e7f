"""Reductions: sum, mean, prod, max/min (and amax/amin, argmax/argmin), var/std, logsumexp, norm, cumsum.

Every reduction takes `dim=` (None for all dims, an int, or a tuple; negative dims count from the end)
and `keepdim=` (also spelled `axis=` and `keepdims=`: NumPy's names, which PyTorch accepts and d2l
uses). dtypes follow PyTorch where NumPy differs: sum/prod/cumsum of bool or integers give
int64; mean/var/std/norm of integers raise (convert with .float() first).

Backward first puts the reduced dims back as size-1 dims (when keepdim was False) and then broadcasts:
`_keep(g)` below. Ties in max/min: amax/amin (and max/min without dim) share the gradient evenly among
the tied elements; max/min with dim give it all to the element whose index they return (as PyTorch).
"""
from collections import namedtuple

import numpy as np

from .. import dtypes as _dt
from ..autograd import Function
from ..backend import xp_of
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand, maximum, minimum
from .shape import dim_index, dim_tuple


def call(a, name, **kwargs):
    """`a.name(**kwargs)`: the array's own method, which costs less than NumPy's function form; a
    MetaArray has only the function form, so it gets `np.name(a, **kwargs)`."""
    if type(a) is MetaArray:
        return getattr(np, name)(a, **kwargs)
    return getattr(a, name)(**kwargs)


def broadcast_grad(g, shape):
    """`g` broadcast to `shape` as a new array (so a reduction's backward returns fresh gradients)."""
    if type(g) is MetaArray:
        return MetaArray(shape, g.dtype)
    out = xp_of(g).empty(shape, g.dtype)
    out[...] = g
    return out


def _kept_shape(shape, axes):
    """The result shape with keepdim=True: reduced axes become 1 (axes None: every axis)."""
    if axes is None:
        return (1,) * len(shape)
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def _count(shape, axes):
    n = 1
    for i in (range(len(shape)) if axes is None else axes):
        n *= shape[i]
    return n


class _Reduction(Function):
    """Shared bookkeeping: saves x's shape, the axes and keepdim; `_keep(g)` gives g with keepdim=True."""
    fresh_grads = True

    def _save(self, x, axes, keepdim):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim

    def _keep(self, g):
        if self.keepdim or not self.shape:
            return g
        return g.reshape(_kept_shape(self.shape, self.axes))

    def _drop(self, y):
        """A keepdim=True result reshaped to what the caller asked for."""
        if self.keepdim:
            return y
        axes = self.axes
        return y.reshape(() if axes is None else tuple(s for i, s in enumerate(y.shape) if i not in axes))


def numpy_names(dim, keepdim, axis, keepdims):
    """(dim, keepdim), taking NumPy's spelling `axis=`/`keepdims=` when the caller used it."""
    return (dim if axis is None else axis), (keepdim if keepdims is None else keepdims)


def _tensor(x, op):
    return x if isinstance(x, Tensor) else as_tensor_operand(x, None, op)


def _int_to_int64(x, dtype):
    """PyTorch's accumulation dtype: bool and integer inputs reduce to int64 unless dtype= says otherwise."""
    if dtype is not None:
        return _dt.to_dtype(dtype)
    return _dt.int64 if x.array.dtype.kind in "biu" else None


def _float_dtype(x, op, dtype=None):
    """The dtype= to compute in (None: x's own); integer tensors without dtype= raise, as in PyTorch."""
    if dtype is not None:
        return _dt.to_dtype(dtype)
    if x.array.dtype.kind not in "fc":
        raise RuntimeError(f"{op}: expects a floating-point tensor, got {x.dtype} (convert it with .float() first)")
    return None


# --- sum, mean ------------------------------------------------------------------------------------
class Sum(_Reduction):
    """y = sum of x over `axes`;  dy/dx = 1: backward broadcasts g back to x's shape. Saves shapes only."""

    def forward(self, x, axes, keepdim, dtype):
        self._save(x, axes, keepdim)
        return call(x, "sum", axis=axes, dtype=dtype, keepdims=keepdim)

    def backward(self, g):
        return broadcast_grad(self._keep(g), self.shape)


class Mean(_Reduction):
    """y = sum of x over `axes` / N;  dy/dx = 1/N. Saves shapes only."""

    def forward(self, x, axes, keepdim, dtype):
        self._save(x, axes, keepdim)
        self.n = n = _count(x.shape, axes)
        s = call(x, "sum", axis=axes, dtype=dtype, keepdims=keepdim)
        if n == 0:
            with np.errstate(invalid="ignore"):
                return s / 0.0
        return s / n

    def backward(self, g):
        return broadcast_grad(self._keep(g) / self.n if self.n else g, self.shape)


def sum(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Sum over `dim` (all dims by default). Bool and integer tensors sum to int64."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "sum")
    return Sum.apply(x, dim_tuple(dim, x.array.ndim, "sum"), keepdim, _int_to_int64(x, dtype))


def mean(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Mean over `dim` (all dims by default). Integer tensors raise, as in PyTorch (use .float() or dtype=)."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "mean")
    return Mean.apply(x, dim_tuple(dim, x.array.ndim, "mean"), keepdim, _float_dtype(x, "mean", dtype))


# --- max, min, amax, amin, argmax, argmin ---------------------------------------------------------
class Amax(_Reduction):
    """y = max of x over `axes`; the gradient is shared evenly among the elements equal to y (ties).
    Saves x and y."""
    func = "max"

    def forward(self, x, axes, keepdim):
        self._save(x, axes, keepdim)
        self.x = x
        self.y = call(x, self.func, axis=axes, keepdims=keepdim)
        return self.y

    def backward(self, g):
        mask = self.x == self._keep(self.y)
        count = call(mask, "sum", axis=self.axes, dtype=g.dtype, keepdims=True)
        return mask * (self._keep(g) / count)


class Amin(Amax):
    """y = min of x over `axes`; the gradient is shared evenly among the elements equal to y (ties)."""
    func = "min"


class MaxDim(_Reduction):
    """y = max of x along one axis, for max(x, dim) whose indices were computed by the caller (argmax);
    the gradient goes only to the element at that index (as PyTorch). Saves the (keepdim) indices."""
    func = "max"

    def forward(self, x, axis, keepdim, index):
        self._save(x, (axis,), keepdim)
        self.index = index
        return call(x, self.func, axis=axis, keepdims=keepdim)

    def backward(self, g):
        axis, n, nd = self.axes[0], self.shape[self.axes[0]], len(self.shape)
        positions = xp_of(g).arange(n).reshape((n,) + (1,) * (nd - 1 - axis))
        return (self.index == positions) * self._keep(g)


class MinDim(MaxDim):
    """y = min of x along one axis; the gradient goes only to the element at the returned index."""
    func = "min"


MaxResult = namedtuple("max", ["values", "indices"])
MinResult = namedtuple("min", ["values", "indices"])


def _nonempty(x, axes, op, error=RuntimeError):
    if axes is None:
        if x.array.size == 0:
            raise error(f"{op}: cannot reduce an empty tensor (shape {tuple(x.shape)}) over all dims; "
                        "specify the reduction dim with dim=")
    else:
        for a in axes:
            if x.shape[a] == 0:
                raise IndexError(f"{op}: expected reduction dim {a} to have non-zero size (tensor shape {tuple(x.shape)})")


def _extreme(x, dim, keepdim, op, full_cls, dim_cls, result):
    if isinstance(dim, Tensor) or hasattr(dim, "shape"):        # tl.max(a, b): elementwise
        return (maximum if op == "max" else minimum)(x, dim)
    x = _tensor(x, op)
    if dim is None:
        _nonempty(x, None, op)
        return full_cls.apply(x, None, False)
    if x.ndim == 0:
        dim_index(dim, 0, op)
        values, indices = _extreme(x.reshape(1), 0, False, op, full_cls, dim_cls, result)
        return result(values.reshape(()), indices.reshape(()))
    axis = dim_index(dim, x.ndim, op)
    _nonempty(x, (axis,), op)
    index = call(x.array, "arg" + op, axis=axis, keepdims=True)
    if index.dtype != _dt.int64:
        index = index.astype(_dt.int64)
    values = dim_cls.apply(x, axis, keepdim, index)
    return result(values, Tensor(index if keepdim else index.reshape(values.shape)))


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """max(x): the largest element; max(x, dim): (values, indices) along dim; max(x, other): elementwise."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    return _extreme(x, dim, keepdim, "max", Amax, MaxDim, MaxResult)


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """min(x): the smallest element; min(x, dim): (values, indices) along dim; min(x, other): elementwise."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    return _extreme(x, dim, keepdim, "min", Amin, MinDim, MinResult)


def amax(x, dim=(), keepdim=False, *, axis=None, keepdims=None):
    """The largest values over `dim` (all dims by default); ties share the gradient evenly."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "amax")
    axes = dim_tuple(dim, x.ndim, "amax")
    _nonempty(x, axes, "amax")
    return Amax.apply(x, axes, keepdim)


def amin(x, dim=(), keepdim=False, *, axis=None, keepdims=None):
    """The smallest values over `dim` (all dims by default); ties share the gradient evenly."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "amin")
    axes = dim_tuple(dim, x.ndim, "amin")
    _nonempty(x, axes, "amin")
    return Amin.apply(x, axes, keepdim)


def _arg(x, dim, keepdim, op):
    x = _tensor(x, op)
    data = x.array
    if dim is None:
        _nonempty(x, None, op, IndexError)
        out = call(data, op).reshape((1,) * data.ndim if keepdim else ())
    else:
        axis = dim_index(dim, data.ndim, op)
        if data.ndim == 0:
            return Tensor(xp_of(data).zeros_like(data, dtype=_dt.int64))
        _nonempty(x, (axis,), op)
        out = call(data, op, axis=axis, keepdims=keepdim)
    return Tensor(out if out.dtype == _dt.int64 else out.astype(_dt.int64))


def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the largest element (of the flattened tensor when dim is None). No gradient."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    return _arg(x, dim, keepdim, "argmax")


def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Index of the smallest element (of the flattened tensor when dim is None). No gradient."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    return _arg(x, dim, keepdim, "argmin")


def any(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "any")
    return Tensor(call(x.array, "any", axis=dim_tuple(dim, x.ndim, "any"), keepdims=keepdim))


def all(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "all")
    return Tensor(call(x.array, "all", axis=dim_tuple(dim, x.ndim, "all"), keepdims=keepdim))


from .reduce_extra import var, std, prod, logsumexp, norm, cumsum  # noqa: E402,F401

METHODS = ("sum", "mean", "max", "min", "amax", "amin", "argmax", "argmin", "any", "all", "var", "std", "prod",
           "logsumexp", "norm", "cumsum")
__all__ = METHODS
