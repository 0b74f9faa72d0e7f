"""The meta device's array: a shape and a dtype, no storage.

`MetaArray` takes part in NumPy's dispatch protocols (`__array_ufunc__`, `__array_function__`), so the op
bodies written against NumPy run unchanged on it and return the MetaArray they *would* have returned:
shape-only tracing costs no memory for activations and no floating-point work.

Two tricks keep this short and exact:
- dtypes come from running the same NumPy function on tiny probe arrays (one element per input);
- shapes of movement and indexing functions come from running NumPy itself on "shadow" arrays whose
  dtype has itemsize 0 (`np.dtype([])`): NumPy computes the exact result shape and copies 0 bytes.
"""
import math

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

_VOID = np.dtype([])             # itemsize 0: a shadow array of any shape occupies no memory


def _shadow(a):
    """A zero-byte array with the shape of `a` (MetaArray or real)."""
    return np.broadcast_to(np.empty((), _VOID), np.shape(a) if not isinstance(a, MetaArray) else a.shape)


def _probe(a):
    """A one-element stand-in carrying `a`'s dtype (for asking NumPy what dtype a result has)."""
    if isinstance(a, MetaArray):
        return np.ones((), a.dtype)
    return a


def _index_shadow(i):
    """Index objects for shape computation: meta index arrays become zero-stride intp/bool arrays."""
    if isinstance(i, MetaArray):
        if i.dtype == np.bool_:
            raise TypeError("boolean-mask indexing on the meta device: the result's shape depends on the "
                            "mask's values, which a meta tensor does not have")
        return np.broadcast_to(np.intp(0), i.shape)
    if isinstance(i, tuple):
        return tuple(_index_shadow(j) for j in i)
    return i


def _norm_axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (tuple, list)) else (axis,)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise np.exceptions.AxisError(a, ndim)
        out.append(a % ndim if ndim else 0)
    return tuple(out)


class MetaArray(NDArrayOperatorsMixin):
    """An array of the meta device: `shape` and `dtype` only."""
    __slots__ = ("shape", "dtype")

    def __init__(self, shape, dtype):
        self.shape = tuple(int(s) for s in shape)
        self.dtype = np.dtype(dtype)

    # --- the attributes of an ndarray that need no data -----------------------------------------
    ndim = property(lambda self: len(self.shape))
    size = property(lambda self: math.prod(self.shape))
    itemsize = property(lambda self: self.dtype.itemsize)
    nbytes = property(lambda self: self.size * self.dtype.itemsize)
    T = property(lambda self: MetaArray(self.shape[::-1], self.dtype))
    strides = property(lambda self: (0,) * len(self.shape))

    def __repr__(self):
        return f"MetaArray(shape={self.shape}, dtype={self.dtype})"

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d meta array")
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        raise TypeError("a meta tensor has no data: it holds only a shape and a dtype")

    def _no_data(self, *args, **kwargs):
        raise TypeError("a meta tensor has no data: it holds only a shape and a dtype")

    item = tolist = get = __float__ = __int__ = __bool__ = __index__ = _no_data

    # --- methods, routed through the same NumPy functions -------------------------------------------
    def astype(self, dtype, copy=True, **kwargs):
        return MetaArray(self.shape, dtype)

    def copy(self, order="C"):
        return MetaArray(self.shape, self.dtype)

    def view(self, dtype=None):
        return MetaArray(self.shape, self.dtype if dtype is None else dtype)

    def reshape(self, *shape, order="C"):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return np.reshape(self, shape)

    def transpose(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else (axes or None)
        return np.transpose(self, axes)

    def ravel(self, order="C"):
        return MetaArray((self.size,), self.dtype)

    flatten = ravel

    def fill(self, value):
        return None

    # reductions as methods (NumPy's functions dispatch back to the handlers below)
    def sum(self, *args, **kwargs):
        return np.sum(self, *args, **kwargs)

    def mean(self, *args, **kwargs):
        return np.mean(self, *args, **kwargs)

    def max(self, *args, **kwargs):
        return np.max(self, *args, **kwargs)

    def min(self, *args, **kwargs):
        return np.min(self, *args, **kwargs)

    def prod(self, *args, **kwargs):
        return np.prod(self, *args, **kwargs)

    def var(self, *args, **kwargs):
        return np.var(self, *args, **kwargs)

    def std(self, *args, **kwargs):
        return np.std(self, *args, **kwargs)

    def any(self, *args, **kwargs):
        return np.any(self, *args, **kwargs)

    def all(self, *args, **kwargs):
        return np.all(self, *args, **kwargs)

    def argmax(self, *args, **kwargs):
        return np.argmax(self, *args, **kwargs)

    def argmin(self, *args, **kwargs):
        return np.argmin(self, *args, **kwargs)

    def swapaxes(self, a, b):
        return np.swapaxes(self, a, b)

    def squeeze(self, axis=None):
        return np.squeeze(self, axis)

    def clip(self, lo=None, hi=None, **kwargs):
        return MetaArray(self.shape, self.dtype)

    def __getitem__(self, index):
        return MetaArray(_shadow(self)[_index_shadow(index)].shape, self.dtype)

    def __setitem__(self, index, value):
        _shadow(self)[_index_shadow(index)]           # validates the index; there is nothing to write

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    # --- NumPy dispatch -----------------------------------------------------------------------------
    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        if method == "__call__":
            if ufunc is np.matmul:
                shape = _matmul_shape(*(np.shape(i) if not isinstance(i, MetaArray) else i.shape for i in inputs))
            else:
                shape = np.broadcast_shapes(*(i.shape if isinstance(i, MetaArray) else np.shape(i) for i in inputs))
            with np.errstate(all="ignore"):
                if ufunc is np.matmul:     # a gufunc: probe with 1x1 matrices
                    probe = ufunc(*(np.ones((1, 1), i.dtype if isinstance(i, MetaArray) else np.asarray(i).dtype)
                                    for i in inputs))
                else:
                    probe = ufunc(*(_probe(i) for i in inputs), **kwargs)
            probes = probe if ufunc.nout > 1 else (probe,)
            results = tuple(MetaArray(shape, np.asarray(p).dtype) for p in probes)
        elif method == "reduce":
            (a,) = inputs
            axis = kwargs.get("axis", 0)
            shape = _reduced_shape(a.shape, axis, kwargs.get("keepdims", False))
            with np.errstate(all="ignore"):
                dtype = np.asarray(ufunc.reduce(np.ones((1,) * a.ndim, a.dtype), axis=axis,
                                                dtype=kwargs.get("dtype"))).dtype
            results = (MetaArray(shape, dtype),)
        elif method == "at":
            return None
        else:
            return NotImplemented
        if out is not None:
            for o, r in zip(out, results):
                if o.shape != r.shape:
                    raise ValueError(f"output of shape {o.shape} cannot hold a result of shape {r.shape}")
            results = out
        return results if len(results) > 1 else results[0]

    def __array_function__(self, func, types, args, kwargs):
        handler = _FUNCTIONS.get(func)
        if handler is None:
            raise TypeError(f"numpy.{func.__name__} is not supported on the meta device")
        return handler(*args, **kwargs)


def _matmul_shape(a, b):
    if len(a) == 0 or len(b) == 0:
        raise ValueError("matmul: both operands need at least one dimension (got a 0-d operand)")
    a2 = (1,) + tuple(a) if len(a) == 1 else tuple(a)
    b2 = tuple(b) + (1,) if len(b) == 1 else tuple(b)
    if a2[-1] != b2[-2]:
        raise ValueError(f"matmul: shapes {tuple(a)} and {tuple(b)} do not match (inner sizes {a2[-1]} != {b2[-2]})")
    shape = np.broadcast_shapes(a2[:-2], b2[:-2]) + (a2[-2], b2[-1])
    if len(a) == 1:
        shape = shape[:-2] + shape[-1:]
    if len(b) == 1:
        shape = shape[:-1]
    return shape


def _reduced_shape(shape, axis, keepdims):
    axes = _norm_axes(axis, len(shape))
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


# --- __array_function__ handlers -------------------------------------------------------------------
_FUNCTIONS = {}


def _handles(*funcs):
    def register(handler):
        for f in funcs:
            _FUNCTIONS[f] = handler
        return handler
    return register


def _dtype_of(*arrays):
    return np.result_type(*(a.dtype if isinstance(a, MetaArray) else np.asarray(a).dtype for a in arrays))


def _make_reduction(func):
    def reduce(a, axis=None, dtype=None, out=None, keepdims=False, **kwargs):
        kwargs.pop("where", None)
        a = a if isinstance(a, MetaArray) else MetaArray(np.shape(a), np.asarray(a).dtype)
        shape = _reduced_shape(a.shape, axis, keepdims)
        extra = {"dtype": dtype} if dtype is not None else {}
        with np.errstate(all="ignore"):
            probe = func(np.ones((1,) * a.ndim, a.dtype), axis=axis, keepdims=keepdims, **extra, **kwargs)
        return MetaArray(shape, np.asarray(probe).dtype)
    return reduce


for _f in (np.sum, np.mean, np.prod, np.max, np.min, np.amax, np.amin, np.var, np.std, np.any, np.all,
           np.nansum, np.nanmax, np.nanmin):
    _FUNCTIONS[_f] = _make_reduction(_f)


@_handles(np.argmax, np.argmin)
def _arg_reduce(a, axis=None, out=None, keepdims=False):
    return MetaArray(_reduced_shape(a.shape, axis, keepdims), np.intp)


@_handles(np.cumsum, np.cumprod)
def _cumulative(a, axis=None, dtype=None, out=None):
    shape = a.shape if axis is not None else (a.size,)
    return MetaArray(shape, dtype or np.cumsum(np.ones(1, a.dtype)).dtype)


def _shape_function(func):
    """Functions that only move elements: NumPy computes the shape on zero-byte shadows."""
    def handler(*args, **kwargs):
        metas = []

        def shadow(x):
            if isinstance(x, MetaArray):
                metas.append(x)
                return _shadow(x)
            if isinstance(x, (list, tuple)) and any(isinstance(y, MetaArray) for y in x):
                return type(x)(shadow(y) for y in x)
            return x
        result = func(*(shadow(a) for a in args), **{k: shadow(v) for k, v in kwargs.items()})
        dtype = np.result_type(*(m.dtype for m in metas))
        if isinstance(result, (list, tuple)):
            return type(result)(MetaArray(r.shape, dtype) for r in result)
        return MetaArray(result.shape, dtype)
    return handler


@_handles(np.take_along_axis)
def _take_along_axis(arr, indices, axis=-1):
    shape = list(np.broadcast_shapes(tuple(1 if i == axis % arr.ndim else n for i, n in enumerate(arr.shape)),
                                     tuple(1 if i == axis % arr.ndim else n for i, n in enumerate(indices.shape))))
    shape[axis % arr.ndim] = indices.shape[axis % arr.ndim]
    return MetaArray(shape, arr.dtype)


for _f in (np.reshape, np.transpose, np.moveaxis, np.swapaxes, np.expand_dims, np.squeeze, np.broadcast_to,
           np.broadcast_arrays, np.concatenate, np.stack, np.split, np.array_split, np.flip, np.repeat,
           np.tile, np.diagonal, np.tril, np.triu, np.atleast_1d, np.ravel, np.copy,
           np.ascontiguousarray, np.pad, np.roll, np.lib.stride_tricks.sliding_window_view):
    _FUNCTIONS[_f] = _shape_function(_f)


@_handles(np.zeros_like, np.ones_like, np.empty_like, np.full_like)
def _like(a, *args, dtype=None, shape=None, **kwargs):
    return MetaArray(a.shape if shape is None else shape, a.dtype if dtype is None else dtype)


@_handles(np.where)
def _where(cond, x, y):
    return MetaArray(np.broadcast_shapes(np.shape(cond) if not isinstance(cond, MetaArray) else cond.shape,
                                         x.shape if isinstance(x, MetaArray) else np.shape(x),
                                         y.shape if isinstance(y, MetaArray) else np.shape(y)),
                     np.where(True, _probe(x), _probe(y)).dtype)


@_handles(np.clip)
def _clip(a, a_min=None, a_max=None, out=None, **kwargs):
    return MetaArray(a.shape, a.dtype)


@_handles(np.dot)
def _dot(a, b, out=None):
    if a.ndim <= 2 and b.ndim <= 2:
        return MetaArray(_matmul_shape(a.shape, b.shape), _dtype_of(a, b))
    return MetaArray(a.shape[:-1] + b.shape[:-2] + b.shape[-1:], _dtype_of(a, b))


@_handles(np.einsum)
def _einsum(subscripts, *operands, **kwargs):
    shadows = [np.zeros((1,) * (o.ndim if isinstance(o, MetaArray) else np.ndim(o))) for o in operands]
    lhs, _, rhs = subscripts.replace(" ", "").partition("->")
    sizes = {}
    for term, o in zip(lhs.split(","), operands):
        for letter, n in zip(term, o.shape):
            sizes[letter] = max(sizes.get(letter, 1), n)
    if not _:
        rhs = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
    del shadows
    return MetaArray(tuple(sizes[c] for c in rhs), _dtype_of(*operands))


@_handles(np.shape)
def _shape(a):
    return a.shape


@_handles(np.ndim)
def _ndim(a):
    return a.ndim


@_handles(np.size)
def _size(a, axis=None):
    return a.size if axis is None else a.shape[axis]


@_handles(np.result_type)
def _result_type(*arrays_and_dtypes):
    return np.result_type(*(a.dtype if isinstance(a, MetaArray) else a for a in arrays_and_dtypes))


@_handles(np.may_share_memory, np.shares_memory)
def _shares(a, b, *args, **kwargs):
    return False
