"""Activations that need more than one ufunc: gelu, softmax, log_softmax, and dropout.

(relu, sigmoid and tanh are one-liners and live in unary.py.) softmax and log_softmax are each one
Function with a fused backward, so the graph holds one node and one saved array, not five.
"""
import math
import warnings

import numpy as np

from .. import fast
from .._xpmath import dropout_randoms, normal_cdf
from ..autograd import Function
from .. import _capture_hooks as _capture
from ..backend import CPU, RNG, device_of, is_meta, xp_of
from ..meta import MetaArray
from .elementwise import float_input


# --- gelu ---------------------------------------------------------------------------------------------
_INV_SQRT_2PI, _SQRT_2_PI, _KAPPA = 0.3989422804014327, 0.7978845608028654, 0.044715


def _compute_dtype(x):
    """float16 is computed in float32 (exp and the erfc polynomials need the range); other floats as they are."""
    return np.float32 if x.dtype == np.float16 else x.dtype


class Gelu(Function):
    """y = x * Phi(x), Phi the standard normal cdf = erfc(-x/sqrt 2) / 2;  dy/dx = Phi(x) + x phi(x).

    `formula` and `derivative` are also the epilogue of linear(..., activation="gelu") (ops/epilogue.py), so
    the fused and the unfused results are equal bit for bit; on cuda the kernels gelu_fwd / gelu_bwd run
    them. Saves x; backward recomputes Phi(x)."""
    _saves = (("x", 0),)
    fresh_grads = True
    act = "gelu"
    saves_output = False                        # the derivative takes the input x

    @staticmethod
    def formula(x, out=None):                   # Phi through erfc: exact in the far negative tail
        return x * normal_cdf(x, xp_of(x))

    @staticmethod
    def derivative(g, x, out=None):             # g * dy/dx, from the input x
        xp = xp_of(x)
        return g * (normal_cdf(x, xp) + x * (_INV_SQRT_2PI * xp.exp(-0.5 * x * x)))

    def forward(self, x):
        if is_meta(x):
            return MetaArray(x.shape, x.dtype)
        self.x = x.astype(_compute_dtype(x), copy=False)
        return fast.act_fwd(self.act, self.formula, self.x).astype(x.dtype, copy=False)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(g.shape, g.dtype)
        gc = g.astype(self.x.dtype, copy=False)
        return fast.act_bwd(self.act, self.derivative, gc, self.x).astype(g.dtype, copy=False)


class GeluTanh(Gelu):
    """y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u).
    Like Gelu (kernels gelu_tanh_fwd / gelu_tanh_bwd on cuda); saves x."""
    act = "gelu_tanh"

    @staticmethod
    def formula(x, out=None):
        u = _SQRT_2_PI * (x + _KAPPA * x * x * x)
        return 0.5 * x * (1 + xp_of(x).tanh(u))

    @staticmethod
    def derivative(g, x, out=None):
        t = xp_of(x).tanh(_SQRT_2_PI * (x + _KAPPA * x * x * x))
        du = _SQRT_2_PI * (1 + 3 * _KAPPA * x * x)
        return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)


def gelu(input, approximate="none"):
    """GELU(x) = x * Phi(x) (exact, through erfc), or its tanh approximation with ``approximate="tanh"``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x = float_input(input, "gelu")
    return (Gelu if approximate == "none" else GeluTanh).apply(x)


# --- softmax and log_softmax -----------------------------------------------------------------------
class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)) along `dim`;  dx = y * (g - sum(g * y)). Saves y."""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x, dim, dtype=None):
        self.dim = dim
        xp = xp_of(x)
        if dtype is not None:                           # the engine casts the gradient back to x's dtype
            x = x.astype(dtype, copy=False)
        if x.ndim == 0 or x.size == 0:                  # softmax of one element is 1; nothing to do for none
            self.y = xp.ones_like(x)
            return self.y
        e = x - xp.max(x, axis=dim, keepdims=True)
        xp.exp(e, out=e)
        e /= xp.sum(e, axis=dim, keepdims=True)
        self.y = e
        return e

    def backward(self, g):
        xp, y = xp_of(g), self.y
        if g.ndim == 0 or g.size == 0:
            return xp.zeros_like(g), None, None
        gx = g - xp.sum(g * y, axis=self.dim, keepdims=True)
        gx *= y
        return gx, None, None


class LogSoftmax(Function):
    """y = x - max - log(sum(exp(x - max))) along `dim`;  dx = g - exp(y) * sum(g). Saves y."""
    _saves = (("y", -1),)
    fresh_grads = True

    def forward(self, x, dim, dtype=None):
        self.dim = dim
        xp = xp_of(x)
        if dtype is not None:
            x = x.astype(dtype, copy=False)
        if x.ndim == 0 or x.size == 0:
            self.y = xp.zeros_like(x)
            return self.y
        z = x - xp.max(x, axis=dim, keepdims=True)
        lse = xp.log(xp.sum(xp.exp(z), axis=dim, keepdims=True))
        z -= lse
        self.y = z
        return z

    def backward(self, g):
        xp = xp_of(g)
        if g.ndim == 0 or g.size == 0:
            return xp.zeros_like(g), None, None
        gx = xp.exp(self.y)
        gx *= -xp.sum(g, axis=self.dim, keepdims=True)
        gx += g
        return gx, None, None


def _softmax_dim(name, x, dim):
    ndim = x.ndim
    if dim is None:                                     # PyTorch's legacy choice, with its warning
        warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                      "Change the call to include dim=X as an argument.", stacklevel=3)
        dim = 0 if ndim in (0, 1, 3) else 1
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"{name}: dimension {dim} is out of range for a tensor with {ndim} dimensions "
                         f"(expected in [{-n}, {n - 1}])")
    return dim % n if ndim else None


def _float_dtype(name, dtype):
    if dtype is None:
        return None
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"{name}: dtype must be a floating dtype, got {dtype}")
    return dtype


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    """softmax(x, dim): exp(x) / sum(exp(x)) along `dim`, computed as exp(x - max) (never overflows)."""
    x = float_input(input, "softmax")
    return Softmax.apply(x, _softmax_dim("softmax", x, dim), _float_dtype("softmax", dtype))


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    """log_softmax(x, dim) = x - logsumexp(x, dim), computed stably (x - max first)."""
    x = float_input(input, "log_softmax")
    return LogSoftmax.apply(x, _softmax_dim("log_softmax", x, dim), _float_dtype("log_softmax", dtype))


# --- dropout ----------------------------------------------------------------------------------------
def _dropout_constants(p):
    """(threshold, scale): keep element i when its 32-bit random r_i >= threshold = round(p 2^32), so
    P(keep) = 1 - p; kept elements are scaled by 1 / (1 - p) (0 when p == 1: everything is dropped)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return min(int(round(p * 2.0 ** 32)), 2 ** 32), (0.0 if p == 1.0 else 1.0 / (1.0 - p))


def _keep_mask(shape, seed, offset, threshold, xp):
    return (dropout_randoms(math.prod(shape), seed, offset, xp) >= threshold).reshape(shape)


def dropout_mask(shape, p, seed, offset, xp=np):
    """The keep mask (bool array of `shape`, on xp's device): keep_i = r_i >= round(p 2^32), r_i the
    Philox4x32-10 number of counter offset + i under key seed (tinylazy._xpmath.dropout_randoms, and the
    kernel dropout_mask of kernels/dropout.cu on cuda: identical on cpu and cuda).
    `tinylazy.backend.RNG.next_offset(device, n)` hands out fresh (seed, offset) pairs; reserving n rounded
    up to a multiple of 4 keeps the kernel at one Philox call per 4 elements."""
    threshold, _ = _dropout_constants(p)
    return fast.dropout_mask(_keep_mask, shape, seed, offset, threshold, xp)


def dropout_fwd(x, p, seed, offset):
    """y = x * keep * scale with keep = dropout_mask(x.shape, p, seed, offset) and scale = 1 / (1 - p).
    Save only (p, seed, offset): backward regenerates the mask. (Kernel dropout_f32 / _f64 on cuda.)"""
    threshold, scale = _dropout_constants(p)

    def plain(x):
        xp = xp_of(x)
        keep = dropout_mask(x.shape, p, seed, offset, xp)
        return xp.where(keep, x * x.dtype.type(scale), x.dtype.type(0))
    return fast.dropout(plain, x, seed, offset, threshold, scale)


def dropout_bwd(grad, p, seed, offset):
    """grad_x = grad * keep * scale: the forward map applied to the upstream gradient, same (seed, offset)."""
    return dropout_fwd(grad, p, seed, offset)


class Dropout(Function):
    """Inverted dropout: y = x * keep / (1 - p), keep ~ Bernoulli(1 - p);  dx = g * keep / (1 - p).

    The mask is the counter-based Philox stream of `dropout_mask`: a (seed, offset) pair from
    `RNG.next_offset` fixes it, so cpu and cuda drop the same elements under the same `tl.manual_seed`.
    On cuda `dropout_fwd` regenerates the mask in backward from (seed, offset); on cpu, where generating it
    costs more than storing it, forward keeps the bool mask (one byte per element)."""
    _saves = ()
    fresh_grads = True

    def forward(self, x, p):
        if is_meta(x):
            return MetaArray(x.shape, x.dtype)
        self.p = p
        if xp_of(x) is not np:
            self.seed, self.offset = RNG.next_offset(device_of(x), -(-x.size // 4) * 4)
            self.keep = None
            return dropout_fwd(x, p, self.seed, self.offset)
        self.keep = _capture.fresh(_next_cpu_mask, x.shape, p)      # (a captured step draws anew each replay)
        return self._apply_mask(x)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(g.shape, g.dtype), None
        if self.keep is None:
            return dropout_bwd(g, self.p, self.seed, self.offset), None
        return self._apply_mask(g), None

    def _apply_mask(self, a):
        scale = 0.0 if self.p == 1 else 1 / (1 - self.p)
        return np.where(self.keep, a * a.dtype.type(scale), a.dtype.type(0))


def _next_cpu_mask(shape, p):
    """A cpu dropout mask from the next (seed, offset) of the cpu's counter-based stream."""
    seed, offset = RNG.next_offset(CPU, -(-math.prod(shape) // 4) * 4)
    return dropout_mask(shape, p, seed, offset)


def dropout(input, p=0.5, training=True, inplace=False):
    """During training, zero each element with probability p and scale the rest by 1/(1-p); in eval
    (``training=False``) or with p=0, return `input` itself. ``inplace`` is accepted and ignored (the result
    is always a new tensor, which autograd needs anyway)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    x = float_input(input, "dropout")
    if not training or p == 0:
        return x
    return Dropout.apply(x, float(p))


METHODS = ("softmax", "log_softmax")
__all__ = ("gelu", "softmax", "log_softmax", "dropout")
