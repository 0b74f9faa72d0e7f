"""Indexing: `x[index]`, `x[index] = value`, gather, index_select, masked_fill, nonzero.

An index is translated once into what NumPy/CuPy understand (tensors become their raw arrays, lists
become arrays, host index arrays move to the GPU of a cuda tensor), then:
- a basic index (ints, slices, None, Ellipsis) gives a view, and backward writes the gradient into zeros;
- an advanced index (integer arrays, boolean masks) gives a copy, and backward *accumulates* into zeros,
  so an element picked twice gets both gradients (`np.add.at`; `cupyx.scatter_add` on cuda).
"""
import numpy as np

from .. import dtypes as _dt
from ..autograd import Function, is_grad_enabled, unbroadcast
from ..backend import cupy_module, device_of, is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand
from .shape import dim_index, zeros_for


def scatter_add_into(out, index, values):
    """out[index] += values, accumulating repeated indices (in place; nothing to do on meta)."""
    if type(out) is np.ndarray or is_meta(out):
        np.add.at(out, index, values)
    else:
        import cupyx
        cupyx.scatter_add(out, index, values)


# --- translating an index -------------------------------------------------------------------------
_BASIC = (int, slice, type(None), type(Ellipsis))
BASIC, MASK, INTEGER = 0, 1, 2            # kinds of index: view / boolean masks only / integer arrays


def _raw_index(index, data):
    """(index for the raw array `data`, kind): BASIC, MASK (advanced, boolean only: no repeats) or INTEGER."""
    if type(index) in _BASIC:
        return index, BASIC
    if type(index) is not tuple:
        return _part(index, data)
    parts, kind = [], BASIC
    for i in index:
        if type(i) in _BASIC:
            parts.append(i)
        else:
            i, k = _part(i, data)
            parts.append(i)
            kind = k if k > kind else kind
    return tuple(parts), kind


def _split_ints(index):
    """PyTorch applies integer indices first (each removes its dim) and then the advanced ones; NumPy
    treats integers next to index arrays as index arrays too, which can move the result's dims.
    (basic part, advanced part) such that x[basic][advanced] is PyTorch's x[index]; None when no
    integer sits next to an index array."""
    if type(index) is not tuple or not any(type(i) is int for i in index):
        return None
    first = tuple(i if type(i) in _BASIC else slice(None) for i in index)
    second = tuple(i if i is Ellipsis or type(i) not in _BASIC else slice(None) for i in index if type(i) is not int)
    return first, second


def _part(i, data):
    if isinstance(i, Tensor):
        i = i.array
    elif isinstance(i, (np.integer, np.bool_)):
        return i.item(), (BASIC if isinstance(i, np.integer) else MASK)
    elif isinstance(i, (list, tuple)):
        i = np.asarray([int(v) if isinstance(v, Tensor) else v for v in i]) if i else np.zeros(0, np.intp)
    elif type(i) is bool:
        return i, MASK
    elif not hasattr(i, "dtype"):
        return i, BASIC                      # floats, strings...: NumPy raises its own IndexError
    kind = i.dtype.kind
    if kind == "b":
        return _on_device_of(i, data), MASK
    if kind not in "iu":
        raise IndexError(f"getitem: tensors used as indices must be integer or bool, got {i.dtype}")
    if i.ndim == 0 and not is_meta(i):
        return int(i), BASIC                 # a 0-d integer acts as a plain int (as in PyTorch)
    return _on_device_of(i, data), INTEGER


def _on_device_of(i, data):
    """An index array on the device of `data` (a host index may index a cuda tensor, as in PyTorch)."""
    ti = type(i)
    if type(data) is np.ndarray or is_meta(data):
        if ti is np.ndarray or (is_meta(i) and is_meta(data)):
            return i
    elif ti is np.ndarray:
        return cupy_module().asarray(i)
    elif not is_meta(i):
        return i
    raise RuntimeError(f"getitem: indices on {device_of(i)} cannot index a tensor on {device_of(data)}")


# --- getitem --------------------------------------------------------------------------------------
class BasicIndex(Function):
    """y = x[index] for a basic index (ints, slices, None, Ellipsis): a view. Backward writes the
    gradient into zeros of x's shape at the same place (basic indices never repeat an element)."""
    _saves = ()
    fresh_grads = True
    _view = True                        # a view shares x's version counter

    def forward(self, x, index):
        self.shape, self.index = x.shape, index
        return x[index]

    def backward(self, g):
        out = zeros_for(g, self.shape)
        out[self.index] = g
        return out


class AdvancedIndex(Function):
    """y = x[index] for an advanced index (integer arrays, boolean masks): a copy. Backward accumulates
    the gradient into zeros of x's shape (repeated integer indices sum their gradients)."""
    fresh_grads = True

    def forward(self, x, index, kind):
        self.shape, self.index, self.kind = x.shape, index, kind
        return x[index]

    def backward(self, g):
        out = zeros_for(g, self.shape)
        if self.kind == MASK:
            out[self.index] = g
        else:
            scatter_add_into(out, self.index, g)
        return out


def getitem(x, index):
    """`x[index]`: ints, slices, None, Ellipsis, integer arrays/lists/tensors, boolean masks, and mixes."""
    idx, kind = _raw_index(index, x.array)
    try:
        if kind == BASIC:
            return BasicIndex.apply(x, idx)
        split = _split_ints(idx)
        if split is not None:
            return AdvancedIndex.apply(BasicIndex.apply(x, split[0]), split[1], kind)
        return AdvancedIndex.apply(x, idx, kind)
    except IndexError as e:
        raise IndexError(f"getitem: {e} (indexing a tensor of shape {tuple(x.shape)})") from None


# --- setitem --------------------------------------------------------------------------------------
def setitem(x, index, value):
    """`x[index] = value` in place (value: a number, a tensor, a list or a NumPy array, broadcast to the
    indexed shape). While grad mode is on, neither x nor a tensor value may require grad: the engine
    finds a tensor's producer through the tensor object, so rewriting a graph tensor in place would
    silently misroute gradients. Build such results out of place (tl.stack, tl.cat, tl.where,
    masked_fill) or write under `tl.no_grad()`."""
    x._check_inplace("setitem")
    idx, kind = _raw_index(index, x.array)
    split = _split_ints(idx) if kind != BASIC else None
    if isinstance(value, Tensor):
        if value.requires_grad and is_grad_enabled():
            raise RuntimeError("setitem: the value requires grad, and a write into a tensor is not recorded for "
                               "backward; build the result out of place (tl.stack, tl.cat, tl.where, masked_fill), "
                               "or write value.detach() (or under tl.no_grad()) if no gradient should flow")
        v = value.array
        if type(v) is not type(x.array) or (type(v) is not np.ndarray and device_of(v) != device_of(x.array)):
            if v.ndim == 0 and type(v) is np.ndarray:
                v = v.item()                 # a host scalar tensor may fill a tensor anywhere
            else:
                raise RuntimeError(f"setitem: the value is on {value.device} but the tensor is on {x.device}")
    elif isinstance(value, (list, tuple)):
        v = _on_device_of_value(np.asarray(value), x.array)
    elif type(value) is np.ndarray:
        v = _on_device_of_value(value, x.array)
    else:
        v = value
    _write(x.array, idx, split, v)
    x._vc[0] += 1                            # an in-place change: backward checks saved tensors' versions


def _write(data, idx, split, v):
    """data[idx] = v, with PyTorch's placement of integer indices next to index arrays (`_split_ints`)."""
    shape = data.shape
    if split is not None:
        data, idx = data[split[0]], split[1]      # a view: writing into it writes into data
    try:
        if is_meta(data):
            np.broadcast_shapes(np.shape(v) if not is_meta(v) else v.shape, data[idx].shape)
        data[idx] = v
    except ValueError:
        if not getattr(getattr(data, "flags", None), "writeable", True):
            raise RuntimeError("setitem: the tensor's memory is read-only (a broadcast view, e.g. from "
                               "expand); write into a copy made with .contiguous() instead") from None
        raise ShapeError(f"setitem: a value of shape {tuple(np.shape(v) if not is_meta(v) else v.shape)} "
                         f"cannot be assigned to an indexed region of shape {tuple(data[idx].shape)} "
                         f"(tensor shape {tuple(shape)})") from None
    except IndexError as e:
        raise IndexError(f"setitem: {e} (indexing a tensor of shape {tuple(shape)})") from None


def _on_device_of_value(v, data):
    if is_meta(data):
        return v
    if type(data) is not np.ndarray:
        return cupy_module().asarray(v)
    return v


# --- gather, index_select, masked_fill, nonzero ---------------------------------------------------
def check_index_range(index, size, op, dim, shape):
    """Raise IndexError unless every entry of the integer array `index` lies in [0, size): gather and
    index_select take no negative indices, as in PyTorch (NumPy would wrap them around). Reads the smallest
    and the largest entry (on cuda, that waits for the device)."""
    if is_meta(index) or index.size == 0:
        return
    lo, hi = int(index.min()), int(index.max())
    if lo < 0 or hi >= size:
        raise IndexError(f"{op}: index {lo if lo < 0 else hi} is out of range for dim {dim} of size {size} "
                         f"(input of shape {tuple(shape)}); valid indices are 0..{size - 1}")


class Gather(Function):
    """y[i][j][k] = x[index[i][j][k]][j][k] (for dim 0; likewise for others). index may be smaller
    than x in the other dims. Backward scatter-adds the gradient into zeros of x's shape. Saves index."""
    fresh_grads = True

    def forward(self, x, axis, index):
        self.shape, self.axis, self.index = x.shape, axis, index
        if any(n < m for d, (n, m) in enumerate(zip(index.shape, x.shape)) if d != axis):
            x = x[tuple(slice(0, n) if d != axis else slice(None) for d, n in enumerate(index.shape))]
        if is_meta(x) or is_meta(index):
            return MetaArray(index.shape, x.dtype)
        return xp_of(x).take_along_axis(x, index, axis)

    def backward(self, g):
        xp, index = xp_of(g), self.index
        if is_meta(g):
            return zeros_for(g, self.shape)
        nd = index.ndim
        full = tuple(index if d == self.axis else
                     xp.arange(n).reshape((n,) + (1,) * (nd - 1 - d)) for d, n in enumerate(index.shape))
        out = zeros_for(g, self.shape)
        scatter_add_into(out, full, g)
        return out


def gather(x, dim=None, index=None, *, axis=None):
    """Pick values along `dim` by `index` (an integer tensor with x's number of dims)."""
    if axis is not None:
        dim = axis
    index = as_tensor_operand(index, x, "gather")
    d = dim_index(dim, x.ndim, "gather")
    if index.dtype.kind not in "iu":
        raise TypeError(f"gather: index must be an integer tensor, got {index.dtype}")
    if index.ndim != x.ndim or any(m > n for k, (m, n) in enumerate(zip(index.shape, x.shape)) if k != d):
        raise ShapeError(f"gather: index of shape {tuple(index.shape)} does not fit input of shape {tuple(x.shape)} along "
                         f"dim {d} (same number of dims, and no larger than the input except in dim {d})")
    check_index_range(index.array, x.shape[d] if x.ndim else 1, "gather", d, x.shape)
    return Gather.apply(x, d, _on_device_of(index.array, x.array))


def index_select(x, dim=None, index=None, *, axis=None):
    """The entries of `x` at positions `index` (a 1-d integer tensor) along `dim`."""
    if axis is not None:
        dim = axis
    index = as_tensor_operand(index, x, "index_select")
    if index.ndim > 1 or index.dtype.kind not in "iu":
        raise TypeError(f"index_select: index must be a 1-d integer tensor, got shape {tuple(index.shape)} "
                        f"and dtype {index.dtype}")
    d = dim_index(dim, x.ndim, "index_select")
    check_index_range(index.array, x.shape[d] if x.ndim else 1, "index_select", d, x.shape)
    raw = _on_device_of(index.array.reshape(-1), x.array)
    if not x.ndim:
        return getitem(x.reshape(1), raw).reshape(())
    try:
        return AdvancedIndex.apply(x, (slice(None),) * d + (raw,), INTEGER)
    except IndexError as e:
        raise IndexError(f"index_select: {e} (dim {d} of a tensor of shape {tuple(x.shape)})") from None


class MaskedFill(Function):
    """y = value where mask else x (x's dtype);  dy/dx = 0 where mask, 1 elsewhere; a tensor value gets
    the sum of the gradient where mask holds. Saves the mask."""
    _saves = (("mask", 1),)
    fresh_grads = True

    def forward(self, x, mask, value):
        self.mask, self.xshape = mask, x.shape
        self.vshape = getattr(value, "shape", None)
        out = xp_of(x).where(mask, value, x)
        return out if out.dtype == x.dtype else out.astype(x.dtype)

    def backward(self, g):
        nx, _, nv = self.needs_input_grad
        xp = xp_of(g)
        gx = unbroadcast(xp.where(self.mask, 0, g), self.xshape) if nx else None
        gv = xp.sum(xp.where(self.mask, g, 0), keepdims=True).reshape(self.vshape) if nv else None
        return gx, None, gv


def masked_fill(x, mask, value):
    """x with `value` (a number or a 0-d tensor) wherever the bool `mask` (broadcastable) is True."""
    mask = as_tensor_operand(mask, x, "masked_fill")
    if mask.dtype != _dt.bool_:
        raise TypeError(f"masked_fill: the mask must be a bool tensor, got {mask.dtype}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ShapeError(f"masked_fill: value must be a number or a 0-d tensor, got shape {tuple(value.shape)}")
        if not value.requires_grad and value.device != x.device:
            value = value.item()
    return MaskedFill.apply(x, mask, value)


def nonzero(x, *, as_tuple=False):
    """Indices of the nonzero elements: an (n, ndim) int64 tensor, or a tuple of ndim 1-d tensors."""
    d = x.array
    if is_meta(d):
        raise TypeError("nonzero on the meta device: the result's shape depends on the values, which a meta "
                        "tensor does not have")
    xp = xp_of(d)
    if as_tuple:
        return tuple(Tensor(i.astype(_dt.int64, copy=False)) for i in xp.nonzero(xp.atleast_1d(d)))
    return Tensor(xp.argwhere(d).astype(_dt.int64, copy=False))


def argwhere(x):
    return nonzero(x)


METHODS = ("nonzero", "argwhere", "gather", "index_select", "masked_fill")
__all__ = METHODS + ("getitem", "setitem")
