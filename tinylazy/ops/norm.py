"""Normalization: batch_norm and layer_norm, each one Function with a fused backward.

Both normalize xhat = (x - mean) / sqrt(var + eps) over some axes (biased var) and return
y = xhat * weight + bias. When mean and var are statistics of x itself (batch_norm in training, layer_norm
always), the gradient through them gives the classic fused formula, with M the number of elements reduced:

    dx = weight * invstd * (g - mean(g) - xhat * mean(g * xhat))          (means over the reduced axes)
       = weight * invstd * (g - db / M - xhat * dw / M)                     (per channel, for batch_norm)

where db = sum(g) and dw = sum(g * xhat) are the bias and weight gradients. In batch_norm's eval mode the
statistics are constants (the running ones) and dx = g * weight * invstd.
"""
import math

import numpy as np

from ..autograd import Function
from ..backend import is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand

METHODS = ()
__all__ = ("batch_norm", "layer_norm")


def _param(p, op, name):
    if p is None or type(p) is Tensor:
        return p
    return as_tensor_operand(p, None, op)


def _affine(xhat, weight, bias, xhat_is_saved, shape=None):
    """The epilogue both norms share: y = xhat * weight + bias, with `weight`/`bias` None for a part left
    out and reshaped to `shape` when given (to broadcast over xhat). y is a new array, except that xhat
    itself is returned when there is nothing to apply and backward does not keep it."""
    if weight is None and bias is None:
        return xhat.copy(order="K") if xhat_is_saved else xhat
    if shape is not None:
        weight = None if weight is None else weight.reshape(shape)
        bias = None if bias is None else bias.reshape(shape)
    y = xhat * weight if weight is not None else xhat.copy(order="K")
    if bias is not None:
        y += bias
    return y


def _meta_grads(g, w_shape, need_x, need_w, need_b):
    """Backward on the meta device: the gradients' shapes and dtypes only (x's, then weight's and bias')."""
    return (MetaArray(g.shape, g.dtype) if need_x else None,
            MetaArray(w_shape, g.dtype) if need_w and w_shape else None,
            MetaArray(w_shape, g.dtype) if need_b and w_shape else None)


# --- batch norm ------------------------------------------------------------------------------------
class BatchNorm(Function):
    """Per-channel normalization of x (N, C, *) over the batch and spatial axes (see the module docstring).

    training: batch statistics, and running_mean/running_var (when given) updated in place:
        running = (1 - momentum) * running + momentum * batch_stat  (the unbiased variance, as PyTorch).
    eval: the running statistics. Saves xhat and weight * invstd (per channel)."""
    _saves = ()
    fresh_grads = True

    def forward(self, x, weight, bias, running_mean, running_var, training, momentum, eps):
        self.x_shape, self.training = x.shape, training
        c = x.shape[1]
        self.axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, c) + (1,) * (x.ndim - 2)                       # broadcasts a (C,) vector over x
        self.bshape, self.m = bshape, x.size // c if c else 0
        if is_meta(x):
            self.w_shape = None if weight is None else weight.shape
            return MetaArray(x.shape, x.dtype)
        xp = xp_of(x)
        if training:
            mean = x.mean(axis=self.axes)
            xc = x - mean.reshape(bshape)
            var = (xc * xc).mean(axis=self.axes)
            if running_mean is not None:
                running_mean *= 1 - momentum
                running_mean += momentum * mean
            if running_var is not None:
                running_var *= 1 - momentum
                running_var += (momentum * self.m / (self.m - 1)) * var
        else:
            mean, var = running_mean, running_var
            xc = x - mean.reshape(bshape).astype(x.dtype, copy=False)
        invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = xc
        xhat *= invstd.reshape(bshape)                              # xc is a new array: normalize in place
        self.scale = invstd if weight is None else invstd * weight  # d y / d xhat * d xhat / d x, per channel
        need_x, need_w = self.needs_input_grad[:2]
        if (need_x and training) or need_w:
            self.xhat = xhat
        return _affine(xhat, weight, bias, hasattr(self, "xhat"), bshape)

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad[:3]
        if is_meta(g):
            return _meta_grads(g, self.w_shape, need_x, need_w, need_b) + (None, None)
        db = g.sum(axis=self.axes) if (need_b or (need_x and self.training)) else None
        dw = (g * self.xhat).sum(axis=self.axes) if (need_w or (need_x and self.training)) else None
        gx = None
        if need_x:
            scale = self.scale.reshape(self.bshape)
            if self.training:
                m = self.m
                gx = g - (db / m).reshape(self.bshape)
                gx -= self.xhat * (dw / m).reshape(self.bshape)
                gx *= scale
            else:
                gx = g * scale
        return gx, (dw if need_w else None), (db if need_b else None), None, None


def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1,
               eps=1e-5):
    """Batch normalization (PyTorch's F.batch_norm) of input (N, C), (N, C, L) or (N, C, H, W) per channel C:
    y = (x - mean) / sqrt(var + eps) * weight + bias. training: statistics of this batch (biased var), and
    the running statistics (C,) updated in place; eval: the running statistics."""
    op = "batch_norm"
    x = input if type(input) is Tensor else as_tensor_operand(input, None, op)
    xd = x.array
    if xd.ndim < 2:
        raise ShapeError(f"{op}: expected an input of shape (N, C), (N, C, L) or (N, C, H, W), got shape "
                         f"{tuple(xd.shape)}")
    if xd.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got {xd.dtype} (convert it with .float())")
    c = xd.shape[1]
    args = []
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        t = _param(t, op, name)
        if t is not None and tuple(t.array.shape) != (c,):
            raise ShapeError(f"{op}: expected {name} of shape ({c},) for input of shape {tuple(xd.shape)} "
                             f"({c} channels), got {tuple(t.array.shape)}")
        args.append(t)
    weight, bias, running_mean, running_var = args
    if not training and (running_mean is None or running_var is None):
        raise ValueError(f"{op}: running_mean and running_var are required in eval mode (training=False)")
    if training:
        check_training_batch(xd)
    for name, t in (("running_mean", running_mean), ("running_var", running_var)):
        if training and t is not None and t.requires_grad:
            raise RuntimeError(f"{op}: {name} requires grad, but training updates it in place; pass a buffer")
    # (the running statistics are updated in place without a new version, as in PyTorch: no node saves them)
    return BatchNorm.apply(x, weight, bias,
                           None if running_mean is None else running_mean.array,
                           None if running_var is None else running_var.array,
                           training=bool(training), momentum=float(momentum), eps=float(eps))


def check_training_batch(x, op="batch_norm"):
    """Raise unless the input x (N, C, ...) has more than one value per channel: training normalizes with
    the batch's own statistics, which a single value cannot give. Modules call it before they change any
    state (num_batches_tracked, the running statistics)."""
    xd = x.array if isinstance(x, Tensor) else x
    if xd.ndim >= 2 and not is_meta(xd) and xd.size // max(xd.shape[1], 1) <= 1:
        raise ValueError(f"{op}: expected more than 1 value per channel when training, got input of shape "
                         f"{tuple(xd.shape)}")


# --- layer norm ------------------------------------------------------------------------------------
class LayerNorm(Function):
    """Normalization of each sample over its last k axes (the normalized_shape); weight and bias have that
    shape (see the module docstring). Saves xhat, invstd (one per normalized group) and weight."""
    _saves = (("weight", 1),)
    fresh_grads = True

    def forward(self, x, weight, bias, k, eps):
        self.x_shape, self.k = x.shape, k
        self.axes = tuple(range(x.ndim - k, x.ndim))
        if is_meta(x):
            self.w_shape = None if weight is None else weight.shape
            return MetaArray(x.shape, x.dtype)
        xp = xp_of(x)
        mean = x.mean(axis=self.axes, keepdims=True)
        xc = x - mean
        var = (xc * xc).mean(axis=self.axes, keepdims=True)
        self.invstd = (1.0 / xp.sqrt(var + eps)).astype(x.dtype, copy=False)
        xhat = xc
        xhat *= self.invstd
        self.xhat, self.weight = xhat, weight
        return _affine(xhat, weight, bias, any(self.needs_input_grad))

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad[:3]
        if is_meta(g):
            return _meta_grads(g, self.w_shape, need_x, need_w, need_b)
        lead = tuple(range(g.ndim - self.k))
        xhat = self.xhat
        db = g.sum(axis=lead) if need_b else None
        dw = (g * xhat).sum(axis=lead) if need_w else None
        gx = None
        if need_x:
            gh = g * self.weight if self.weight is not None else g          # d loss / d xhat
            gx = gh - gh.mean(axis=self.axes, keepdims=True)
            gx -= xhat * (gh * xhat).mean(axis=self.axes, keepdims=True)
            gx *= self.invstd
        return gx, dw, db


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    """Layer normalization (PyTorch's F.layer_norm) over the last len(normalized_shape) axes, which must equal
    normalized_shape: y = (x - mean) / sqrt(var + eps) * weight + bias (weight, bias: normalized_shape)."""
    op = "layer_norm"
    x = input if type(input) is Tensor else as_tensor_operand(input, None, op)
    xd = x.array
    shape = (normalized_shape,) if isinstance(normalized_shape, (int, np.integer)) else tuple(normalized_shape)
    if not all(isinstance(s, (int, np.integer)) for s in shape):
        raise TypeError(f"{op}: normalized_shape must be an int or a sequence of ints, got {normalized_shape!r}")
    shape = tuple(int(s) for s in shape)
    k = len(shape)
    if k == 0 or xd.ndim < k or tuple(xd.shape[xd.ndim - k:]) != shape:
        raise ShapeError(f"{op}: expected an input whose last {k} dimension(s) are normalized_shape={shape} "
                         f"(shape (*, {', '.join(map(str, shape))})), got input of shape {tuple(xd.shape)}")
    if xd.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got {xd.dtype} (convert it with .float())")
    weight, bias = _param(weight, op, "weight"), _param(bias, op, "bias")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.array.shape) != shape:
            raise ShapeError(f"{op}: expected {name} of shape normalized_shape={shape}, got {tuple(t.array.shape)}")
    if math.prod(shape) == 0:
        raise ShapeError(f"{op}: normalized_shape={shape} has no elements")
    return LayerNorm.apply(x, weight, bias, k=k, eps=float(eps))
