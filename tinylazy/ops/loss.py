"""Losses: cross_entropy and nll_loss (in class_loss.py), mse_loss, binary_cross_entropy_with_logits, and
one_hot. Every loss takes PyTorch's `reduction` ("none", "mean", "sum") and its deprecated
size_average/reduce spelling."""
import math
import warnings

import numpy as np

from .. import _devcheck
from ..autograd import Function, unbroadcast
from ..backend import is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .class_loss import _float_tensor, _reduction, cross_entropy, nll_loss   # noqa: F401
from .elementwise import as_tensor_operand


# --- mse_loss -----------------------------------------------------------------------------------------
def _two_operands(op, input, target):
    """(input, target) as float tensors; warn (as PyTorch does) when broadcasting will pair them."""
    x = _float_tensor(input, op)
    y = _float_tensor(target, op, "target")
    xs, ys = tuple(x.array.shape), tuple(y.array.shape)
    if xs != ys:
        try:
            np.broadcast_shapes(xs, ys)
        except ValueError:
            raise ShapeError(f"{op}: input of shape {xs} and target of shape {ys} do not broadcast") from None
        warnings.warn(f"{op}: using a target size ({ys}) that is different to the input size ({xs}). This will "
                      "likely lead to incorrect results due to broadcasting. Please ensure they have the same "
                      "size.", UserWarning, stacklevel=3)
    return x, y


class MSELoss(Function):
    """loss = (x - y)^2 (times weight w), reduced; mean divides by the element count (by sum w when
    weighted). d/dx = 2 (x - y) w k = -d/dy;  d/dw = (x - y)^2 k, minus loss / sum w for a weighted mean.
    Saves x - y."""
    fresh_grads = True

    def forward(self, x, y, w, reduction):
        self.reduction, self.shapes = reduction, (x.shape, y.shape, None if w is None else w.shape)
        xp = xp_of(x)
        d = x - y
        self.d, self.w = d, w
        if is_meta(d):
            return d if reduction == "none" else MetaArray((), d.dtype)
        if w is None:
            if reduction == "none":
                return d * d
            flat = d.reshape(-1)
            total = xp.dot(flat, flat)                    # one BLAS call, no (x - y)^2 array
            if reduction == "sum":
                return total
            self.count = d.size
            with np.errstate(invalid="ignore"):
                return total / d.size if d.size else total * math.nan
        se = d * d
        se *= w
        if reduction == "none":
            return se
        total = se.sum()
        if reduction == "sum":
            return total
        self.wsum = w.sum()
        self.loss = total / self.wsum
        return self.loss

    def backward(self, g):
        nx, ny, nw = self.needs_input_grad[:3]
        d, w, reduction = self.d, self.w, self.reduction
        if is_meta(d):
            return tuple(MetaArray(s, g.dtype) if n else None for s, n in zip(self.shapes, (nx, ny, nw))) + (None,)
        k = g if reduction != "mean" else (g / max(self.count, 1) if w is None else g / self.wsum)
        gd = d * (2 * k)
        if w is not None:
            gd *= w
        gx = unbroadcast(gd, self.shapes[0]) if nx else None
        gy = unbroadcast(-gd, self.shapes[1]) if ny else None
        gw = None
        if nw:
            gw = d * d
            if reduction == "mean":
                gw -= self.loss
            gw = unbroadcast(gw * k, self.shapes[2])
        return gx, gy, gw, None


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    """Mean squared error: mean((input - target)^2); `weight` (input's shape) weighs each element."""
    reduction = _reduction("mse_loss", reduction, size_average, reduce)
    x, y = _two_operands("mse_loss", input, target)
    if weight is not None:
        weight = _float_tensor(weight, "mse_loss", "weight")
        if tuple(weight.array.shape) != tuple(x.array.shape):
            raise ShapeError(f"mse_loss: weights and input must have the same size: weight "
                             f"{tuple(weight.array.shape)}, input {tuple(x.array.shape)}")
    return MSELoss.apply(x, y, weight, reduction)


# --- binary_cross_entropy_with_logits -----------------------------------------------------------------
class BCEWithLogits(Function):
    """loss = -w [pw y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], written stably with
    sp = softplus(-x) = log1p(exp(-|x|)) + max(-x, 0) as  w [(1 - y) x + (1 + (pw - 1) y) sp].
    d/dx = w [(1 + (pw - 1) y) sigmoid(x) - pw y] (w (sigmoid(x) - y) without pw);
    d/dy = w [(pw - 1) sp - x]. Saves x, y, exp(-|x|) and sp."""
    fresh_grads = True

    def forward(self, x, y, w, pw, reduction):
        self.reduction, self.x, self.y, self.w, self.pw = reduction, x, y, w, pw
        if is_meta(x):
            return MetaArray(x.shape if reduction == "none" else (), x.dtype)
        xp = xp_of(x)
        e = xp.abs(x)
        xp.negative(e, out=e)
        xp.exp(e, out=e)                                  # exp(-|x|) in (0, 1]: never overflows
        sp = xp.log1p(e)
        sp += xp.maximum(-x, 0)
        self.e, self.sp = e, sp
        loss = (1 - y) * x
        loss += sp if pw is None else (1 + (pw - 1) * y) * sp
        if w is not None:
            loss *= w
        loss = loss.astype(x.dtype, copy=False)
        if reduction == "none":
            return loss
        total = loss.sum()
        self.count = loss.size
        if reduction == "sum":
            return total
        with np.errstate(invalid="ignore"):
            return total / loss.size if loss.size else total * math.nan

    def backward(self, g):
        nx, ny = self.needs_input_grad[:2]
        x, y, w, pw = self.x, self.y, self.w, self.pw
        if is_meta(g):
            return (MetaArray(x.shape, x.dtype) if nx else None, MetaArray(y.shape, y.dtype) if ny else None,
                    None, None, None)
        xp = xp_of(g)
        k = g / max(self.count, 1) if self.reduction == "mean" else g
        if w is not None:
            k = k * w
        gx = gy = None
        if nx:
            e = self.e
            sig = xp.where(x >= 0, 1, e) / (1 + e)       # sigmoid(x) from exp(-|x|)
            if pw is None:
                sig -= y
            else:
                sig *= 1 + (pw - 1) * y
                sig -= pw * y
            gx = sig * k
        if ny:
            d = -x if pw is None else (pw - 1) * self.sp - x
            gy = d * k
        return gx, gy, None, None, None


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None, reduce=None,
                                     reduction="mean", pos_weight=None):
    """Binary cross-entropy of sigmoid(input) against target probabilities (same shape), computed from the
    logits without ever forming log(0). `weight` broadcasts to the input's shape; `pos_weight` weighs the
    positive term, per class (broadcast along the last dimension)."""
    op = "binary_cross_entropy_with_logits"
    reduction = _reduction(op, reduction, size_average, reduce)
    x = _float_tensor(input, op)
    y = _float_tensor(target, op, "target")
    xs = tuple(x.array.shape)
    if tuple(y.array.shape) != xs:
        raise ShapeError(f"{op}: target size {tuple(y.array.shape)} must be the same as input size {xs}")
    extras = []
    for name, t in (("weight", weight), ("pos_weight", pos_weight)):
        if t is not None:
            t = _float_tensor(t, op, name)
            try:
                ok = np.broadcast_shapes(tuple(t.array.shape), xs) == xs
            except ValueError:
                ok = False
            if not ok:
                raise ShapeError(f"{op}: {name} of shape {tuple(t.array.shape)} does not broadcast to the input "
                                 f"shape {xs}")
        extras.append(t)
    return BCEWithLogits.apply(x, y, *extras, reduction)


# --- one_hot ---------------------------------------------------------------------------------------------
class OneHot(Function):
    """out[..., c] = 1 where tensor[...] == c, else 0 (int64). No gradient."""
    differentiable = False

    def forward(self, t, num_classes):
        xp = xp_of(t)
        if is_meta(t):
            return MetaArray(t.shape + (num_classes,), np.int64)
        return (t[..., None] == xp.arange(num_classes)).astype(np.int64)


def one_hot(tensor, num_classes=-1):
    """(..., ) integer class indices -> (..., num_classes) int64 one-hot; num_classes=-1 means max + 1 (which
    reads the max: a sync on cuda). With num_classes given, a value outside [0, num_classes) raises ValueError
    on cpu, and on cuda (checked on the device, no sync) IndexError at the next read (tinylazy._devcheck)."""
    t = tensor if type(tensor) is Tensor else as_tensor_operand(tensor, None, "one_hot")
    data = t.array
    if data.dtype.kind not in "iu":
        raise TypeError(f"one_hot: expected an integer tensor of class indices (int64), got {data.dtype}; "
                        "convert it with .long()")
    num_classes = int(num_classes)
    if is_meta(data):
        if num_classes < 0:
            raise ValueError("one_hot: a meta tensor has no values to infer num_classes from; pass num_classes")
        return OneHot.apply(t, num_classes)
    if data.size and num_classes >= 0 and _devcheck.deferred(data):
        _devcheck.index_range(data, 0, num_classes, f"one_hot: class values must be in [0, {num_classes})")
    elif data.size:                                     # num_classes=-1 reads the max: a sync on cuda (as in PyTorch)
        lo, hi = int(data.min()), int(data.max())
        if lo < 0:
            raise ValueError(f"one_hot: class values must be non-negative, got {lo}")
        if num_classes < 0:
            num_classes = hi + 1
        elif hi >= num_classes:
            raise ValueError(f"one_hot: class values must be smaller than num_classes={num_classes}, got {hi}")
    elif num_classes < 0:
        raise ValueError("one_hot: can not infer the number of classes from an empty tensor; pass num_classes")
    return OneHot.apply(t, num_classes)


METHODS = ()
__all__ = ("cross_entropy", "nll_loss", "mse_loss", "binary_cross_entropy_with_logits", "one_hot")
