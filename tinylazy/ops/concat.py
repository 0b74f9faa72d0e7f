"""Joining and slicing along a dim: cat/stack (one tensor from many) and split/chunk/narrow/unbind
(views of pieces). Backward of a join hands each input its slice of the gradient; backward of a piece
writes the gradient into zeros of the input's shape (several pieces' gradients add up)."""
from functools import reduce

from .. import dtypes as _dt
from ..autograd import Function
from ..backend import xp_of
from ..errors import ShapeError
from ..tensor import Tensor
from .operands import as_tensor_operand, in_dtype
from .indexing import BasicIndex
from .shape import Reshape, dim_index


# --- cat, stack -----------------------------------------------------------------------------------
class Cat(Function):
    """y = the inputs joined along `axis`;  input i's gradient is its slice of the output gradient."""
    _saves = ()

    def forward(self, *arrays, axis):
        self.axis, self.sizes = axis, [a.shape[axis] for a in arrays]
        return xp_of(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, g):
        pre, start, grads = (slice(None),) * self.axis, 0, []
        for n in self.sizes:
            grads.append(g[pre + (slice(start, start + n),)])
            start += n
        return tuple(grads)


def cat(tensors, dim=0, *, axis=None):
    """Join tensors along an existing dim; all other sizes must match. The result has the promoted dtype
    of all the inputs (torch.promote_types over them: int8 with uint8 gives int16)."""
    if axis is not None:
        dim = axis
    ts = [t if isinstance(t, Tensor) else as_tensor_operand(t, None, "cat") for t in tensors]
    if not ts:
        raise ValueError("cat: expected a non-empty sequence of tensors")
    axis = dim_index(dim, ts[0].ndim, "cat")
    if not ts[0].ndim:
        raise _join_error("cat", ts, axis)
    ts = _in_common_dtype(ts)
    try:
        return Cat.apply(*ts, axis=axis)
    except ValueError:
        ref = next((t.shape for t in ts if t.shape != (0,)), None)
        if ref and len(ref) > 1 and any(t.shape == (0,) for t in ts):   # PyTorch's legacy empty 1-d tensors
            d = dim_index(dim, len(ref), "cat")
            empty = ref[:d] + (0,) + ref[d + 1:]
            return cat([Reshape.apply(t, empty) if t.shape == (0,) else t for t in ts], d)
        raise _join_error("cat", ts, axis) from None


concat = concatenate = cat


class Stack(Function):
    """y = the inputs stacked along a new dim `axis`;  input i's gradient is g[..., i, ...]."""
    _saves = ()

    def forward(self, *arrays, axis):
        self.axis, self.n = axis, len(arrays)
        shape = arrays[0].shape
        if any(a.shape != shape for a in arrays):
            raise ValueError("stack: shapes differ")
        new = shape[:axis] + (1,) + shape[axis:]
        return xp_of(arrays[0]).concatenate([a.reshape(new) for a in arrays], axis=axis)

    def backward(self, g):
        pre = (slice(None),) * self.axis
        return tuple(g[pre + (i,)] for i in range(self.n))


def stack(tensors, dim=0, *, axis=None):
    """Stack same-shaped tensors along a new dim (in the promoted dtype of all of them, as cat)."""
    if axis is not None:
        dim = axis
    ts = [t if isinstance(t, Tensor) else as_tensor_operand(t, None, "stack") for t in tensors]
    if not ts:
        raise ValueError("stack: expected a non-empty sequence of tensors")
    axis = dim_index(dim, ts[0].ndim + 1, "stack")
    ts = _in_common_dtype(ts)
    try:
        return Stack.apply(*ts, axis=axis)
    except ValueError:
        raise _join_error("stack", ts, axis) from None


def _in_common_dtype(ts):
    """The tensors in the dtype they promote to (each one counts, 0-d or not: they are all joined)."""
    dtype = reduce(_dt.promote_types, (t.dtype for t in ts))
    return [in_dtype(t, dtype) for t in ts]


def _join_error(op, ts, axis):
    first = tuple(ts[0].shape)
    for i, t in enumerate(ts):
        s = tuple(t.shape)
        if not s and op == "cat":
            return ShapeError(f"cat: a 0-d tensor (at position {i}) cannot be concatenated; use stack")
        if op == "stack" and s != first:
            return ShapeError(f"stack: expects tensors of the same shape, got {first} at position 0 and {s} "
                              f"at position {i}")
        if op == "cat" and (len(s) != len(first) or any(a != b for k, (a, b) in enumerate(zip(s, first))
                                                         if k != axis)):
            return ShapeError(f"cat: sizes must match except in dim {axis}: got {first} at position 0 and {s} "
                              f"at position {i}")
    return ShapeError(f"{op}: cannot join tensors of shapes {[tuple(t.shape) for t in ts]} along dim {axis}")


# --- slices: split, chunk, narrow, unbind ---------------------------------------------------------
def narrow(x, dim, start, length):
    """x's elements start..start+length-1 along `dim` (a view)."""
    d = dim_index(dim, x.ndim, "narrow")
    n = x.shape[d]
    start = start + n if start < 0 else start
    if not 0 <= start <= start + length <= n or length < 0:
        raise IndexError(f"narrow: start {start} and length {length} fall outside dim {d} of size {n} "
                         f"(tensor shape {tuple(x.shape)})")
    return BasicIndex.apply(x, (slice(None),) * d + (slice(start, start + length),))


def split(x, split_size_or_sections, dim=0):
    """A tuple of views: pieces of size `split_size` (the last may be smaller), or of the given sizes."""
    d = dim_index(dim, x.ndim, "split")
    n, pre = x.shape[d], (slice(None),) * d
    if isinstance(split_size_or_sections, (list, tuple)):
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ShapeError(f"split: sections {sizes} must sum to {n}, the size of dim {d} of a tensor of "
                             f"shape {tuple(x.shape)}")
    else:
        size = int(split_size_or_sections)
        if size <= 0 and not (size == 0 and n == 0):
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - a) for a in range(0, n, size)] if n else [0]
    out, start = [], 0
    for s in sizes:
        out.append(BasicIndex.apply(x, pre + (slice(start, start + s),)))
        start += s
    return tuple(out)


def chunk(x, chunks, dim=0, *, axis=None):
    """Split into `chunks` pieces of size ceil(n / chunks) (fewer pieces when n does not allow more)."""
    if axis is not None:
        dim = axis
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    d = dim_index(dim, x.ndim, "chunk")
    n = x.shape[d]
    if n == 0:
        return split(x, [0] * chunks, d)
    return split(x, -(-n // chunks), d)


def unbind(x, dim=0):
    """A tuple of the slices x[..., i, ...] along `dim` (each without that dim)."""
    d = dim_index(dim, x.ndim, "unbind")
    pre = (slice(None),) * d
    return tuple(BasicIndex.apply(x, pre + (i,)) for i in range(x.shape[d]))


__all__ = ("cat", "concat", "concatenate", "stack", "split", "chunk", "narrow", "unbind")
