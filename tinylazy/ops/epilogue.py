"""The activation epilogue of Linear and Conv2d: y = act(x + b) in one pass over the fresh product x.

The formulas are those of the activation Functions (`formula(x, out)` and `derivative(g, saved, out)` of
Relu, Tanh, Sigmoid in unary.py and Gelu, GeluTanh in activation.py), so a fused Linear + ReLU computes
exactly what Linear followed by ReLU does. `tinylazy.fast` runs one kernel instead on cuda
(kernels/elementwise.cu). Backward takes the forward OUTPUT y of relu, sigmoid, tanh and identity
(`act_saves_output(act)` is True) and the INPUT of gelu and gelu_tanh.
"""
from .. import fast
from ..backend import xp_of
from .activation import Gelu, GeluTanh
from .unary import Relu, Sigmoid, Tanh


class Identity:
    """y = x;  dy/dx = 1: the epilogue of a bias alone."""
    saves_output = True

    @staticmethod
    def formula(x, out=None):
        return x if out is x else x.copy()

    @staticmethod
    def derivative(g, y, out=None):
        return g if out is g else g.copy()


FUNCTIONS = {"identity": Identity, "relu": Relu, "gelu": Gelu, "gelu_tanh": GeluTanh, "sigmoid": Sigmoid,
             "tanh": Tanh}
ACTIVATIONS = tuple(FUNCTIONS)


def _function(act):
    try:
        return FUNCTIONS[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}") from None


def act_saves_output(act):
    """True when `act`'s backward takes the forward OUTPUT, False when it takes the INPUT (the gelus)."""
    return _function(act).saves_output


def act_fwd(x, act, overwrite_x=False):
    """y = act(x) elementwise, for act in ACTIVATIONS (identity: a copy of x). Save y when
    act_saves_output(act), else x. `overwrite_x=True` lets y be written over x (the caller then never reads
    x again): the formula does so where it can, which spares a fresh array and its cache misses."""
    f = _function(act)
    return fast.act_fwd(act, f.formula, x, out=x if overwrite_x and f.saves_output else None)


def act_bwd(grad, saved, act, overwrite_grad=False):
    """dL/dx = grad * act'(x), from `saved`: the forward output y, or for the gelus the input x.
    `overwrite_grad=True` lets the result be written over grad (see act_fwd's overwrite_x)."""
    f = _function(act)
    return fast.act_bwd(act, f.derivative, grad, saved, out=grad if overwrite_grad else None)


def activation_epilogue(ctx, product, bias, activation, axis):
    """act(product + bias) for a fresh `product` it may write over (Linear's and Conv2d's epilogue), the
    bias along `axis`; keeps on ctx what backward needs: ctx.saved (the output, or for the gelus the
    product), ctx.has_bias, ctx.bias (the bias where backward needs its values, i.e. for the gelus; else
    None, so that changing the bias in place after forward is no error), and ctx.output (the output when it
    is what backward reads, else None: for the version check)."""
    if bias is None:
        out = act_fwd(product, activation, overwrite_x=True)
    else:
        out = bias_act_fwd(product, bias, activation, axis=axis, overwrite_x=True)
    saves_output = act_saves_output(activation)
    ctx.saved, ctx.has_bias = (out if saves_output else product), bias is not None
    ctx.bias, ctx.output = (None, out) if saves_output else (bias, None)
    return out


# ---- with a bias ---------------------------------------------------------------------------------------------
def _bias_axis(x, b, axis):
    """`axis` of x as a non-negative int, after checking that b has one element per entry along it."""
    axis = axis % x.ndim if x.ndim else 0
    if b is not None and b.shape != (x.shape[axis],):
        raise ValueError(f"bias_act: the bias has shape {tuple(b.shape)}, expected ({x.shape[axis]},) "
                         f"(x.shape[{axis}] of x {x.shape})")
    return axis


def _bias_view(b, ndim, axis):
    """b shaped to broadcast along `axis` of an ndim-array (b itself for the last axis)."""
    return b if axis == ndim - 1 else b.reshape((b.shape[0],) + (1,) * (ndim - axis - 1))


def bias_act_fwd(x, b, act="identity", axis=-1, overwrite_x=False):
    """y = act(x + b), the bias b (C,) broadcast along `axis` of x (x.shape[axis] == C): axis=-1 for a Linear
    output (rows, C), axis=1 for a Conv2d output (N, C, H, W). Save y when act_saves_output(act), else x
    (backward recomputes z = x + b). `overwrite_x` as in act_fwd (x is kept when backward needs it)."""
    f = _function(act)
    axis = _bias_axis(x, b, axis)

    def plain(x, b):
        xp = xp_of(x)
        z = xp.add(x, _bias_view(b, x.ndim, axis), out=x if overwrite_x and f.saves_output else None)
        return f.formula(z, out=z)              # z is a fresh array (or x, given up): write over it
    return fast.bias_act_fwd(act, plain, x, b, axis)


def bias_act_bwd(grad, saved, act="identity", b=None, axis=-1, overwrite_grad=False):
    """Backward of y = act(x + b): returns (grad_x, grad_b) with
        grad_x = grad * act'(x + b)          (from saved = y, or saved = x and b for the gelus)
        grad_b[c] = sum of grad_x over every axis but `axis`.
    `overwrite_grad=True` lets grad_x be written over grad (see act_fwd's overwrite_x)."""
    f = _function(act)
    if not f.saves_output and b is None:
        raise ValueError(f"bias_act_bwd: {act} saves the input x, so the bias b is needed to recompute x + b")
    axis = _bias_axis(saved, b, axis)

    def plain(grad, saved, b):
        z = saved if f.saves_output else saved + _bias_view(b, saved.ndim, axis)
        grad_x = f.derivative(grad, z, out=grad if overwrite_grad else None)
        return grad_x, grad_x.sum(axis=tuple(i for i in range(grad_x.ndim) if i != axis))
    return fast.bias_act_bwd(act, plain, grad, saved, None if f.saves_output else b, axis)


# ---- by name (tinylazy.cuda's relu_fwd, ...: the same functions) -----------------------------------------------
def _gelu_name(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


def relu_fwd(x):
    return act_fwd(x, "relu")


def relu_bwd(grad, y, overwrite_grad=False):
    """(y may be the input x as well: the same sign test.)"""
    return act_bwd(grad, y, "relu", overwrite_grad)


def gelu_fwd(x, approximate="none"):
    return act_fwd(x, _gelu_name(approximate))


def gelu_bwd(grad, x, approximate="none"):
    return act_bwd(grad, x, _gelu_name(approximate))


def sigmoid_fwd(x):
    return act_fwd(x, "sigmoid")


def sigmoid_bwd(grad, y):
    return act_bwd(grad, y, "sigmoid")


def tanh_fwd(x):
    return act_fwd(x, "tanh")


def tanh_bwd(grad, y):
    return act_bwd(grad, y, "tanh")

