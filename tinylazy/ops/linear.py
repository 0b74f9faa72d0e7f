"""linear(x, weight, bias) = x @ weight.T + bias, as one Function, optionally with an activation fused in.

Fusing the matmul, the transpose and the bias add into one node matters on small models: the graph holds
one node instead of three, forward adds the bias in place into the fresh matmul result, and backward
computes exactly the gradients that are needed, each with one BLAS call (or one sum for the bias).

`activation` ("relu", "tanh", "sigmoid", "gelu", "gelu_tanh") goes one step further: act(x @ W.T + b) is
the same node, and its epilogue (ops/epilogue.py: one fused kernel on a GPU) may overwrite the
fresh product, so a Linear followed by a ReLU allocates no array for the ReLU. nn.Sequential uses it for
a Linear (or Conv2d) directly followed by an activation module; the numbers are those of the two ops.
"""
import math

from ..autograd import Function
from ..backend import is_meta
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand


from .epilogue import ACTIVATIONS, act_bwd, activation_epilogue, bias_act_bwd


class Linear(Function):
    """y = act(x @ W.T + b), for x of shape (..., in), W (out, in), b (out,); act is None (no activation)
    or one of ops.epilogue.ACTIVATIONS.

    With x2 = x reshaped to (M, in) and g2 the output gradient as (M, out), first taken back through act:
    dx = g2 @ W,  dW = g2.T @ x2,  db = g2 summed over M. Saves x2 (only when W needs a gradient), W
    (only when x needs one), and for act the array its backward needs (the output, or for the gelus the
    product before the bias)."""
    _saves = (("x2", 0), ("weight", 1), ("bias", 2), ("output", -1))
    fresh_grads = True                      # every gradient below is a new array (or a view of one)
    overwrites_grad = True                  # the activation's backward may mask g in place

    def forward(self, x, weight, bias, activation=None):
        need_x, need_w, need_b = self.needs_input_grad
        if is_meta(x):                      # shapes only: (..., in) -> (..., out)
            self.shapes = (x.shape, weight.shape, None if bias is None else bias.shape)
            return MetaArray(x.shape[:-1] + weight.shape[:1], x.dtype)
        flat = x.ndim != 2                  # any rank: one (M, in) @ (in, out) product, one BLAS call
        if flat:
            lead = tuple(x.shape[:-1])
            self.m = math.prod(lead)
            x2 = x.reshape(self.m, x.shape[-1])
        else:
            x2 = x
        out = x2 @ weight.T
        self.act = activation
        if activation is not None:
            out = activation_epilogue(self, out, bias, activation, axis=-1)
        elif bias is not None:
            out += bias
        if need_x:
            self.weight, self.x_shape = weight, x.shape
        if need_w:
            self.x2 = x2
        return out.reshape(lead + (weight.shape[0],)) if flat else out

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad
        if is_meta(g):
            return tuple(None if s is None or not n else MetaArray(s, g.dtype)
                         for s, n in zip(self.shapes, self.needs_input_grad))
        g2 = g.reshape(self.m, g.shape[-1]) if g.ndim != 2 else g
        gb = None
        if self.act is not None:            # back through the activation (and the bias, in the same pass)
            if not self.has_bias:
                g2 = act_bwd(g2, self.saved, self.act, overwrite_grad=self.grad_owned)
            else:
                g2, gb = bias_act_bwd(g2, self.saved, self.act, b=self.bias, overwrite_grad=self.grad_owned)
        gx = (g2 @ self.weight).reshape(self.x_shape) if need_x else None
        gw = g2.T @ self.x2 if need_w else None
        if need_b and gb is None:
            gb = g2.sum(axis=0)
        return gx, gw, gb if need_b else None


def linear(input, weight, bias=None, *, activation=None):
    """y = input @ weight.T + bias (PyTorch's F.linear): input (..., in_features), weight (out_features,
    in_features), bias (out_features,) or None. tinylazy's `activation` (None, "relu", "tanh", "sigmoid",
    "gelu" or "gelu_tanh") returns act(y) from the same node, equal to applying the activation after."""
    x = input if isinstance(input, Tensor) else as_tensor_operand(input, None, "linear")
    w = weight if isinstance(weight, Tensor) else as_tensor_operand(weight, None, "linear")
    if bias is not None and not isinstance(bias, Tensor):
        bias = as_tensor_operand(bias, None, "linear")
    xd, wd = x.array, w.array
    bd = None if bias is None else bias.array
    dtype, wshape = xd.dtype, wd.shape          # all checks in one expression; _linear_error says which failed
    if (dtype.kind != "f" or wd.dtype != dtype or len(wshape) != 2 or xd.ndim == 0 or xd.shape[-1] != wshape[1]
            or (bd is not None and (bd.shape != wshape[:1] or bd.dtype != dtype))
            or (activation is not None and activation not in ACTIVATIONS)):
        _linear_error(xd, wd, bd, activation)
    return Linear.apply(x, w, bias, activation=activation)


def _linear_error(xd, wd, bd, activation):
    """Raise the error that explains why linear's operands do not fit (the fast test in `linear` only says
    that something may not; when nothing is wrong after all, this returns)."""
    if xd.dtype.kind != "f" or wd.dtype.kind != "f":
        which, t = ("input", xd) if xd.dtype.kind != "f" else ("weight", wd)
        raise TypeError(f"linear: the {which} is {t.dtype}, but linear needs floating-point tensors; "
                        "convert it with .float()")
    if xd.dtype != wd.dtype:
        raise TypeError(f"linear: the input is {xd.dtype} but the weight is {wd.dtype}; convert one of them "
                        f"(e.g. input.to({str(wd.dtype)!r}) or module.to({str(xd.dtype)!r}))")
    if wd.ndim != 2:
        raise ShapeError(f"linear: weight must have shape (out_features, in_features), got {tuple(wd.shape)}")
    in_features = wd.shape[1]
    if xd.ndim == 0 or xd.shape[-1] != in_features:
        raise ShapeError(f"linear: expected input with last dimension in_features={in_features} "
                         f"(weight shape {tuple(wd.shape)}), got input of shape {tuple(xd.shape)}")
    if bd is not None:
        if tuple(bd.shape) != (wd.shape[0],):
            raise ShapeError(f"linear: expected bias of shape ({wd.shape[0]},) (out_features), "
                             f"got {tuple(bd.shape)}")
        if bd.dtype != xd.dtype:
            raise TypeError(f"linear: the input is {xd.dtype} but the bias is {bd.dtype}; convert one of them")
    if activation is not None and activation not in ACTIVATIONS:
        raise ValueError(f"linear: unknown activation {activation!r}; expected None or one of {ACTIVATIONS}")


METHODS = ()
__all__ = ("linear",)
