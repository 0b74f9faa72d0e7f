"""More reductions: var, std, prod, logsumexp, norm (vector norms), and cumsum. See reduce.py for the
shared rules (dim=, keepdim=, dtypes) and the `_Reduction` helpers."""
import math

import numpy as np

from ..autograd import Function
from ..backend import xp_of
from .elementwise import float_input
from .reduce import _Reduction, _count, _float_dtype, _int_to_int64, _nonempty, _tensor, call, numpy_names
from .shape import dim_index, dim_tuple, reshape


# --- var, std -------------------------------------------------------------------------------------
class Var(_Reduction):
    """v = sum((x - mean)^2) / (N - correction);  dv/dx = 2 (x - mean) / (N - correction).
    Saves x - mean."""

    def forward(self, x, axes, keepdim, correction):
        self._save(x, axes, keepdim)
        n = _count(x.shape, axes)
        self.denom = denom = n - correction if n > correction else 0
        self.d = d = x - call(x, "sum", axis=axes, keepdims=True) / (n or math.nan)
        s = call(d * d, "sum", axis=axes, keepdims=True)
        if denom:
            self.v = s / denom
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                self.v = s / 0.0                 # inf or nan, as PyTorch (which also warns)
        return self._drop(self.v)

    def backward(self, g):
        return self._keep(g) * self.d * (2.0 / self.denom if self.denom else math.inf)


class Std(Var):
    """s = sqrt(var);  ds/dx = (x - mean) / ((N - correction) s), 0 where s == 0 (as PyTorch).
    Saves x - mean and s."""

    def forward(self, x, axes, keepdim, correction):
        Var.forward(self, x, axes, keepdim, correction)
        self.s = xp_of(x).sqrt(self.v)
        return self._drop(self.s)

    def backward(self, g):
        xp = xp_of(g)
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = self._keep(g) / (self.s * self.denom)
        return self.d * xp.where(self.s == 0, 0, scale)


def _var_args(dim, unbiased, correction, op):
    if isinstance(dim, bool):                      # legacy x.var(False): the flag is `unbiased`
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    return dim, correction


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
    """Variance over `dim` with Bessel's correction by default (correction=1, i.e. unbiased=True)."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    dim, correction = _var_args(dim, unbiased, correction, "var")
    x = _tensor(x, "var")
    _float_dtype(x, "var")
    return Var.apply(x, dim_tuple(dim, x.ndim, "var"), keepdim, correction)


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None, keepdims=None):
    """Standard deviation over `dim` (correction=1 by default, as PyTorch)."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    dim, correction = _var_args(dim, unbiased, correction, "std")
    x = _tensor(x, "std")
    _float_dtype(x, "std")
    return Std.apply(x, dim_tuple(dim, x.ndim, "std"), keepdim, correction)


# --- prod -----------------------------------------------------------------------------------------
class Prod(_Reduction):
    """y = product of x over `axes`;  dy/dx_i = the product of the other elements, computed from
    exclusive cumulative products from the left and from the right (exact when some x are zero).
    Saves x."""
    fresh_grads = True

    def forward(self, x, axes, keepdim, dtype):
        self._save(x, axes, keepdim)
        self.x = x
        return call(x, "prod", axis=axes, dtype=dtype, keepdims=keepdim)

    def backward(self, g):
        x, xp = self.x, xp_of(g)
        axes = tuple(range(x.ndim)) if self.axes is None else self.axes
        rest = [i for i in range(x.ndim) if i not in axes]
        order = rest + list(axes)
        rest_shape = tuple(x.shape[i] for i in rest)
        rows = xp.transpose(x, order).reshape(rest_shape + (_count(x.shape, axes),)).astype(g.dtype)
        one = xp.ones_like(rows[..., :1])
        left = xp.concatenate([one, xp.cumprod(rows[..., :-1], axis=-1)], axis=-1)
        right = xp.concatenate([xp.cumprod(rows[..., :0:-1], axis=-1)[..., ::-1], one], axis=-1)
        others = left * right * g.reshape(rest_shape + (1,))
        inverse = [0] * len(order)
        for i, d in enumerate(order):
            inverse[d] = i
        return xp.transpose(others.reshape(tuple(x.shape[i] for i in order)), inverse)


def prod(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Product over `dim` (all dims by default). Bool and integer tensors give int64."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = _tensor(x, "prod")
    return Prod.apply(x, dim_tuple(dim, x.ndim, "prod"), keepdim, _int_to_int64(x, dtype))


# --- logsumexp ------------------------------------------------------------------------------------
class LogSumExp(_Reduction):
    """y = m + log(sum(exp(x - m))) with m = max(x) (finite), which never overflows;
    dy/dx = exp(x - y) (the softmax). Saves x and the keepdim result."""
    fresh_grads = True

    def forward(self, x, axes, keepdim):
        self._save(x, axes, keepdim)
        xp = xp_of(x)
        m = call(x, "max", axis=axes, keepdims=True) if x.size else 0
        if type(m) is not np.ndarray or not np.isfinite(m).all():   # (cheap check on cpu only)
            m = xp.where(xp.isfinite(m), m, 0)                       # all -inf (or an inf): shift by 0
            with np.errstate(divide="ignore"):
                self.y = xp.log(call(xp.exp(x - m), "sum", axis=axes, keepdims=True)) + m
        else:
            self.y = xp.log(call(xp.exp(x - m), "sum", axis=axes, keepdims=True)) + m
        self.x = x
        return self._drop(self.y)

    def backward(self, g):
        return xp_of(g).exp(self.x - self.y) * self._keep(g)


def logsumexp(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """log(sum(exp(x))) over `dim`, computed stably. Integer tensors compute in the default float dtype."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    x = float_input(x, "logsumexp")
    return LogSumExp.apply(x, dim_tuple(dim, x.ndim, "logsumexp"), keepdim)


# --- norm -----------------------------------------------------------------------------------------
class Norm(_Reduction):
    """The vector p-norm over `axes`: y = (sum |x|^p)^(1/p);  p = inf: max |x|, p = -inf: min |x|,
    p = 0: the number of nonzeros. Gradients (as PyTorch): p = 2: x / y (0 where y == 0); p = 1: sign(x);
    p = +-inf: sign(x) shared evenly among the elements that reach y; other p: x |x|^(p-2) / y^(p-1)
    (0 where y == 0); p = 0: zero. Saves x and the keepdim result."""
    fresh_grads = True

    def forward(self, x, p, axes, keepdim, dtype):
        self._save(x, axes, keepdim)
        xp = xp_of(x)
        if dtype is not None and x.dtype != dtype:
            x = x.astype(dtype)
        self.x, self.p = x, p
        if p == 2:
            y = xp.sqrt(call(x * x, "sum", axis=axes, keepdims=True))
        elif p == 1:
            y = call(xp.abs(x), "sum", axis=axes, keepdims=True)
        elif p == math.inf:
            y = xp.max(xp.abs(x), axis=axes, keepdims=True)
        elif p == -math.inf:
            y = xp.min(xp.abs(x), axis=axes, keepdims=True)
        elif p == 0:
            y = xp.sum(x != 0, axis=axes, keepdims=True, dtype=x.dtype)
        else:
            y = xp.sum(xp.abs(x) ** p, axis=axes, keepdims=True) ** (1.0 / p)
        self.y = y
        return self._drop(y)

    def backward(self, g):
        xp, x, y, p = xp_of(g), self.x, self.y, self.p
        g = self._keep(g)
        if p == 1:
            return xp.sign(x) * g
        if p == 0:
            return xp.zeros_like(x)
        if p in (math.inf, -math.inf):
            mask = xp.abs(x) == y
            return xp.sign(x) * mask * (g / xp.sum(mask, axis=self.axes, keepdims=True, dtype=g.dtype))
        with np.errstate(divide="ignore", invalid="ignore"):
            if p == 2:
                scale = g / y
            else:
                x = x * xp.abs(x) ** (p - 2)
                scale = g / y ** (p - 1)
        return x * xp.where(y == 0, 0, scale)


def norm(x, p="fro", dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None):
    """The vector p-norm of x over `dim` (all dims by default): p = 2 or 'fro' (the default), 1, inf,
    -inf, 0 or any other number, as `torch.norm` / `torch.linalg.vector_norm`."""
    dim, keepdim = numpy_names(dim, keepdim, axis, keepdims)
    if isinstance(p, str):
        if p != "fro":
            raise NotImplementedError(f"norm: p={p!r} is not supported (use 'fro' or a number)")
        p = 2
    p = 2 if p is None else float(p)
    x = _tensor(x, "norm")
    dtype = _float_dtype(x, "norm", dtype)
    axes = dim_tuple(dim, x.ndim, "norm")
    if p in (math.inf, -math.inf):
        _nonempty(x, axes, "norm")
    return Norm.apply(x, p, axes, keepdim, dtype)


# --- cumsum ---------------------------------------------------------------------------------------
class Cumsum(Function):
    """y_i = x_0 + ... + x_i along `axis`;  dL/dx_i = g_i + ... + g_{n-1}: the reversed cumsum of g."""
    fresh_grads = True

    def forward(self, x, axis, dtype):
        self.axis = axis
        return call(x, "cumsum", axis=axis, dtype=dtype)

    def backward(self, g):
        xp, axis = xp_of(g), self.axis
        return xp.flip(xp.cumsum(xp.flip(g, axis), axis=axis), axis)


def cumsum(x, dim=None, *, dtype=None, axis=None):
    """Cumulative sum along `dim`. Bool and integer tensors give int64."""
    if axis is not None:
        dim = axis
    x = _tensor(x, "cumsum")
    if x.ndim == 0:
        dim_index(dim, 0, "cumsum")
        return reshape(cumsum(reshape(x, 1), 0, dtype=dtype), ())
    return Cumsum.apply(x, dim_index(dim, x.ndim, "cumsum"), _int_to_int64(x, dtype))


__all__ = ("var", "std", "prod", "logsumexp", "norm", "cumsum")
