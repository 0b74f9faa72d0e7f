"""Movement ops: reshape/view, flatten, permute/transpose, (un)squeeze, expand, repeat, flip, tril/triu.
Joining and slicing (cat, stack, split, chunk, ...) are in concat.py; indexing (getitem, setitem, gather,
masked_fill, ...) in indexing.py. All of them are public from here.

None of these ops does arithmetic: forward moves elements (a view wherever NumPy/CuPy can make one) and
backward moves the gradient back to where each element came from. They save shapes and indices, never
the data.
"""
import math

import numpy as np

from ..autograd import Function, unbroadcast
from ..backend import xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand


# --- dims and sizes (shared with reduce.py and indexing.py) ----------------------------------------
def dim_index(d, ndim, op):
    """`d` as an axis in [0, ndim); negative dims count from the end. A 0-d tensor accepts 0 and -1
    (as in PyTorch). IndexError naming the valid range otherwise."""
    if type(d) is not int:
        d = _int(d, op)
    n = ndim if ndim else 1
    if -n <= d < n:
        return d + n if d < 0 else d
    raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dimensions "
                     f"(expected in [{-n}, {n - 1}])")


def dim_tuple(dim, ndim, op):
    """`dim` (None, an int, or a sequence of ints) as a tuple of distinct axes, or None for 'every axis'
    (also for an empty sequence and for 0-d tensors, as PyTorch's reductions do)."""
    if dim is None:
        return None
    if type(dim) is int:
        d = dim_index(dim, ndim, op)
        return (d,) if ndim else None
    if not isinstance(dim, (tuple, list)):
        return dim_tuple(_int(dim, op), ndim, op)
    axes = tuple(dim_index(d, ndim, op) for d in dim)
    if len(set(axes)) != len(axes):
        raise RuntimeError(f"{op}: dim {dim} names a dimension more than once")
    return axes if axes and ndim else None


def _int(d, op):
    try:
        return int(d.__index__())
    except (AttributeError, TypeError):
        raise TypeError(f"{op}: dimensions must be integers, got {d!r}") from None


def size_args(sizes, op):
    """Sizes given as `*sizes` or as one tuple/list (`x.view(2, 3)` or `x.view((2, 3))`), as ints."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = tuple(sizes[0])
    return tuple(s if type(s) is int else _int(s, op) for s in sizes)


def _sizes_fast(sizes):
    """Like size_args without converting each size (NumPy accepts anything with __index__)."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        return tuple(sizes[0])
    return sizes


def zeros_for(ref, shape):
    """Zeros of `shape` with the dtype and device of the array `ref` (meta stays meta)."""
    if type(ref) is np.ndarray:
        return np.zeros(shape, ref.dtype)
    return xp_of(ref).zeros_like(ref, shape=shape)


def _tensor(x, op):
    return x if isinstance(x, Tensor) else as_tensor_operand(x, None, op)


# --- reshape, view, flatten, (un)squeeze ------------------------------------------------------------
class Reshape(Function):
    """y = x with a new shape (a view when the memory layout allows);  the gradient is reshaped back."""
    _saves = ()
    _view = True                        # a view shares x's version counter

    def forward(self, x, shape):
        self.shape = x.shape
        try:
            return x.reshape(shape)
        except ValueError:
            raise ShapeError(f"reshape: cannot view a tensor of shape {tuple(x.shape)} ({x.size} elements) "
                             f"as shape {tuple(shape)}") from None

    def backward(self, g):
        return g.reshape(self.shape)


def reshape(x, *shape):
    """`x.reshape(2, 3)`, `x.reshape((2, -1))`: one size may be -1 (inferred); other negative sizes raise."""
    x, shape = _tensor(x, "reshape"), _sizes_fast(shape)
    if shape and min(shape) < -1:             # NumPy would take any negative size for -1
        _negative_size(x, shape)
    return Reshape.apply(x, shape)


def _negative_size(x, shape):
    bad = next(i for i, s in enumerate(shape) if s < -1)
    raise ShapeError(f"reshape: invalid size {shape[bad]} at position {bad} of shape {tuple(shape)} for a tensor "
                     f"of shape {x.shape}: sizes must be non-negative, or -1 for the one size to infer")


view = reshape


def view_as(x, other):
    return Reshape.apply(x, other.shape)


reshape_as = view_as


def flatten(x, start_dim=0, end_dim=-1):
    """Merge dims start_dim..end_dim (inclusive) into one; a 0-d tensor becomes shape (1,)."""
    shape = x.shape
    if not shape:
        return Reshape.apply(x, (1,))
    s, e = dim_index(start_dim, len(shape), "flatten"), dim_index(end_dim, len(shape), "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim ({start_dim}) cannot come after end_dim ({end_dim}) "
                         f"for a tensor of shape {tuple(shape)}")
    if s == e:
        return Reshape.apply(x, shape)
    return Reshape.apply(x, shape[:s] + (math.prod(shape[s:e + 1]),) + shape[e + 1:])


def unflatten(x, dim, sizes):
    """Split dim `dim` into `sizes` (one may be -1)."""
    shape = x.shape
    d = dim_index(dim, len(shape), "unflatten")
    return Reshape.apply(x, shape[:d] + tuple(sizes) + shape[d + 1:])


def unsqueeze(x, dim=None, *, axis=None):
    """Insert a size-1 dim at `dim` (in [-ndim-1, ndim])."""
    if axis is not None:
        dim = axis
    shape = x.shape
    d = dim_index(dim, len(shape) + 1, "unsqueeze")
    return Reshape.apply(x, shape[:d] + (1,) + shape[d:])


def squeeze(x, dim=None, *, axis=None):
    """Remove size-1 dims: all of them, or those among `dim` (an int or a tuple) that have size 1."""
    if axis is not None:
        dim = axis
    shape = x.shape
    if dim is None:
        return Reshape.apply(x, tuple(s for s in shape if s != 1))
    axes = dim_tuple(dim, len(shape), "squeeze") or ()
    return Reshape.apply(x, tuple(s for i, s in enumerate(shape) if s != 1 or i not in axes))


# --- permute, transpose ---------------------------------------------------------------------------
class Permute(Function):
    """y = x with its dims reordered (a view);  the gradient is permuted back by the inverse order."""
    _saves = ()
    _view = True                        # a view shares x's version counter

    def forward(self, x, dims):
        self.dims = dims
        return x.transpose(dims)

    def backward(self, g):
        inverse = [0] * len(self.dims)
        for i, d in enumerate(self.dims):
            inverse[d] = i
        return g.transpose(inverse)


def permute(x, *dims):
    """`x.permute(1, 0)` or `x.permute((1, 0))`: dim i of the result is dim dims[i] of x."""
    nd = x.array.ndim
    dims = _sizes_fast(dims)
    if sorted(dims) != _IDENTITY[nd]:              # negative dims, or a mistake to name
        dims = tuple(dim_index(d, nd, "permute") for d in size_args(dims, "permute"))
        if sorted(dims) != _IDENTITY[nd]:
            raise ValueError(f"permute: dims {dims} are not a permutation of the {nd} dims of a tensor "
                             f"of shape {tuple(x.shape)}")
    return Permute.apply(x, dims)


_IDENTITY = [list(range(n)) for n in range(65)]


def transpose(x, dim0, dim1):
    """Swap dims dim0 and dim1 (a view)."""
    nd = x.ndim
    a, b = dim_index(dim0, nd, "transpose"), dim_index(dim1, nd, "transpose")
    dims = list(range(nd))
    dims[a], dims[b] = b, a
    return Permute.apply(x, tuple(dims))


swapdims = transpose


def swapaxes(x, axis0, axis1):
    return transpose(x, axis0, axis1)


def t(x):
    """Transpose of a tensor with at most 2 dims (0-d and 1-d tensors come back as they are)."""
    if x.ndim > 2:
        raise ValueError(f"t: expects a tensor with at most 2 dims, got shape {tuple(x.shape)}; use transpose or mT")
    return Permute.apply(x, tuple(range(x.ndim - 1, -1, -1)))


def movedim(x, source, destination):
    nd = x.ndim
    src = [dim_index(d, nd, "movedim") for d in (source if isinstance(source, (tuple, list)) else (source,))]
    dst = [dim_index(d, nd, "movedim") for d in (destination if isinstance(destination, (tuple, list))
                                                  else (destination,))]
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {source} and destination {destination} differ in length")
    order = [d for d in range(nd) if d not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return Permute.apply(x, tuple(order))


moveaxis = movedim


# --- expand, repeat -------------------------------------------------------------------------------
class Expand(Function):
    """y = x broadcast to a larger shape (a read-only view, no copy);  the gradient is summed back."""
    _saves = ()
    _view = True                        # a view shares x's version counter

    def forward(self, x, shape):
        self.shape = x.shape
        return xp_of(x).broadcast_to(x, shape)

    def backward(self, g):
        return unbroadcast(g, self.shape)


def expand(x, *sizes):
    """Broadcast size-1 dims to `sizes` (-1 keeps a size; new leading dims may be added)."""
    sizes = size_args(sizes, "expand")
    shape = x.shape
    k = len(sizes) - len(shape)
    if k < 0:
        raise ShapeError(f"expand: cannot expand a tensor of shape {tuple(shape)} to {sizes}: the target needs at "
                         f"least {len(shape)} dims")
    out = list(sizes)
    for i, s in enumerate(sizes):
        own = shape[i - k] if i >= k else None
        if s == -1 and own is not None:
            out[i] = own
        elif s < 0 or (own is not None and own != s and own != 1):
            raise ShapeError(f"expand: cannot expand a tensor of shape {tuple(shape)} to {sizes} "
                             f"(size {own if own is not None else s} at dim {i} cannot become {s}; only "
                             "size-1 dims can be expanded)")
    return Expand.apply(x, tuple(out))


broadcast_to = expand


def expand_as(x, other):
    return expand(x, other.shape)


class Repeat(Function):
    """y = x tiled reps[i] times along dim i (x first gets leading size-1 dims if reps is longer);
    the gradient sums the tiles: g reshaped to (r0, s0, r1, s1, ...) and summed over the r's."""
    _saves = ()
    fresh_grads = True

    def forward(self, x, reps):
        self.shape = x.shape
        self.padded = (1,) * (len(reps) - x.ndim) + tuple(x.shape)
        self.reps = reps
        return xp_of(x).tile(x.reshape(self.padded), reps)

    def backward(self, g):
        split = []
        for r, s in zip(self.reps, self.padded):
            split += (r, s)
        summed = xp_of(g).sum(g.reshape(split), axis=tuple(range(0, len(split), 2)))
        return summed.reshape(self.shape)


def repeat(x, *sizes):
    """`x.repeat(2, 1)`: tile x; len(sizes) must be at least x.ndim."""
    sizes = size_args(sizes, "repeat")
    if len(sizes) < x.ndim or any(s < 0 for s in sizes):
        raise ShapeError(f"repeat: cannot repeat a tensor of shape {tuple(x.shape)} by {sizes} (give one "
                         f"non-negative count per dim, at least {x.ndim})")
    return Repeat.apply(x, sizes)


# --- contiguous, flip, tril/triu ------------------------------------------------------------------
class Contiguous(Function):
    """y = a C-contiguous copy of x;  dy/dx = 1."""
    _saves = ()

    def forward(self, x):
        return xp_of(x).ascontiguousarray(x)

    def backward(self, g):
        return g


def contiguous(x, memory_format=None):
    """x itself when its data is already C-contiguous (or meta), else a contiguous copy."""
    d = x.array
    if type(d) is MetaArray or d.flags.c_contiguous:
        return x
    return Contiguous.apply(x)


class Flip(Function):
    """y = x reversed along `axes` (a view);  the gradient is flipped back."""
    _saves = ()
    _view = True                        # a view shares x's version counter

    def forward(self, x, axes):
        self.axes = axes
        return xp_of(x).flip(x, axis=axes)

    def backward(self, g):
        return xp_of(g).flip(g, axis=self.axes)


def flip(x, *dims):
    """`tl.flip(x, (0, 1))`, `x.flip(0)`, `x.flip(0, 1)`."""
    dims = size_args(dims, "flip")
    axes = dim_tuple(dims, x.ndim, "flip")
    if axes is None:
        axes = tuple(range(x.ndim)) if dims else ()
    return Flip.apply(x, axes)


class _Triangle(Function):
    """y = x with the elements above (tril) or below (triu) diagonal k zeroed, over the last two dims;
    the gradient is masked the same way."""
    _saves = ()
    fresh_grads = True
    func = None

    def forward(self, x, k):
        self.k = k
        return getattr(xp_of(x), self.func)(x, k)

    def backward(self, g):
        return getattr(xp_of(g), self.func)(g, self.k)


class Tril(_Triangle):
    func = "tril"


class Triu(_Triangle):
    func = "triu"


def tril(x, diagonal=0):
    if x.ndim < 2:
        raise ShapeError(f"tril: expects a tensor with at least 2 dims, got shape {tuple(x.shape)}")
    return Tril.apply(x, diagonal)


def triu(x, diagonal=0):
    if x.ndim < 2:
        raise ShapeError(f"triu: expects a tensor with at least 2 dims, got shape {tuple(x.shape)}")
    return Triu.apply(x, diagonal)


from .indexing import getitem, setitem, nonzero, argwhere, gather, index_select, masked_fill  # noqa: E402,F401
from .concat import cat, concat, concatenate, stack, split, chunk, narrow, unbind  # noqa: E402,F401
from . import indexing as _indexing  # noqa: E402

METHODS = ("reshape", "view", "view_as", "reshape_as", "flatten", "unflatten", "unsqueeze", "squeeze",
           "permute", "transpose", "swapaxes", "swapdims", "t", "movedim", "moveaxis", "expand", "expand_as",
           "broadcast_to", "repeat", "split", "chunk", "narrow", "unbind", "contiguous", "flip", "tril",
           "triu") + _indexing.METHODS
__all__ = METHODS + ("cat", "concat", "concatenate", "stack", "getitem", "setitem")
