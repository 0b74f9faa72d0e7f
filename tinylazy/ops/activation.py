"""Activations that need more than one ufunc: gelu, softmax, log_softmax, and dropout.

(relu, sigmoid and tanh are one-liners and live in elementwise.py.) softmax and log_softmax are each one
Function with a fused backward, so the graph holds one node and one saved array, not five.
"""
import math
import warnings

import numpy as np

from .. import cuda
from ..autograd import Function
from ..backend import RNG, device_of, is_meta, xp_of
from ..meta import MetaArray
from .elementwise import float_input


# --- erf: NumPy has no erf ufunc, so here is a vectorized one (the cpu path of gelu) -----------------
# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23 (1969) 631-637,
# the coefficients of his CALERF routine: relative error below 1e-15 in float64 over the whole line.
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02, 3.20937758913846947e03,
      1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03, 2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01, 2.98635138197400131e02,
      8.81952221241769090e02, 1.71204761263407058e03, 2.05107837782607147e03, 1.23033935479799725e03,
      2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02, 1.62138957456669019e03,
      3.29079923573345963e03, 4.36261909014324716e03, 3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1, 1.60837851487422766e-2,
      6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1, 6.05183413124413191e-2,
      2.33520497626869185e-3)
_1_SQRT_PI = 0.56418958354775628695


def _ratio(num_c, den_c, v, last):
    """Cody's rational function: Horner in `v` for the numerator and the (monic-started) denominator."""
    num, den = num_c[last] * v, v
    for i in range(last - 1):
        num = (num + num_c[i]) * v
        den = (den + den_c[i]) * v
    return (num + num_c[last - 1]) / (den + den_c[last - 1])


def _erf_small(z):
    """erf(z) for |z| <= 0.5 (z is clipped there): z * P(z^2) / Q(z^2)."""
    s = np.clip(z, -0.5, 0.5)
    return s * _ratio(_A, _B, s * s, 4)


def erfc(z):
    """erfc(z) = 1 - erf(z) for a NumPy array, accurate in relative terms even where erfc is tiny.

    Three rational approximations (|z| <= 0.5, 0.5 < |z| <= 4, |z| > 4) are evaluated on clipped copies
    and the right one is picked per element; erfc(-z) = 2 - erfc(z). Keeps z's float dtype. NumPy arrays
    (on cuda, gelu runs the kernels of tinylazy.cuda instead)."""
    y = np.abs(z)
    r_mid = _ratio(_C, _D, np.clip(y, 0.5, 4.0), 8)     # erfc(y) * exp(y^2), 0.5 < y <= 4
    big = np.clip(y, 4.0, 27.0)
    inv2 = 1 / (big * big)
    r_big = (_1_SQRT_PI - inv2 * _ratio(_P, _Q, inv2, 5)) / big     # the same, y > 4
    r = np.where(y <= 4.0, r_mid, r_big)
    yc = np.minimum(y, 27.0)
    t = np.trunc(yc * 16) / 16                          # exp(-y^2) in two factors, to keep its precision
    r *= np.exp(-t * t) * np.exp(-(yc - t) * (yc + t))
    r = np.where(y >= 26.55, 0, r)                      # beyond, erfc underflows (Cody's XBIG)
    r = np.where(z < 0, 2 - r, r)
    return np.where(y <= 0.5, 1 - _erf_small(z), r)


def erf(z):
    """erf(z): the series-like rational form for |z| <= 0.5 (exact relative precision near 0), else 1 - erfc."""
    return np.where(np.abs(z) <= 0.5, _erf_small(z), 1 - erfc(z))


# --- gelu ---------------------------------------------------------------------------------------------
_SQRT_2_OVER_PI = math.sqrt(2 / math.pi)
_INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)


def _compute_dtype(x):
    """float16 is computed in float32 (the polynomials need the range); other floats in their own dtype."""
    return np.float32 if x.dtype == np.float16 else x.dtype


class Gelu(Function):
    """y = x * Phi(x), Phi the standard normal cdf = erfc(-x/sqrt 2) / 2;  dy/dx = Phi(x) + x phi(x).

    On cpu, saves x and Phi(x), so backward costs one exp. On cuda, runs the fused kernels of
    tinylazy.cuda (`gelu_fwd` / `gelu_bwd`), which save only x and recompute erf in backward."""
    fresh_grads = True
    approximate = "none"

    def forward(self, x):
        if is_meta(x):
            return MetaArray(x.shape, x.dtype)
        if xp_of(x) is not np:
            self.x = x
            return cuda.gelu_fwd(x, self.approximate)
        return self.cpu_forward(x.astype(_compute_dtype(x), copy=False)).astype(x.dtype, copy=False)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(g.shape, g.dtype)
        if xp_of(g) is not np:
            return cuda.gelu_bwd(g, self.x, self.approximate)
        return (g * self.cpu_slope()).astype(g.dtype, copy=False)

    def cpu_forward(self, x):
        """y from x (in the compute dtype); saves what cpu_slope needs."""
        self.xc, self.cdf = x, erfc(x * -math.sqrt(0.5)) * 0.5
        return x * self.cdf

    def cpu_slope(self):
        """dy/dx from what cpu_forward saved."""
        x = self.xc
        d = np.exp(x * x * -0.5) * _INV_SQRT_2PI
        d *= x
        d += self.cdf
        return d


class GeluTanh(Gelu):
    """y = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
    dy/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2), t = tanh(u).
    On cpu, saves x and t; on cuda, the kernels of tinylazy.cuda (saving x)."""
    approximate = "tanh"

    def cpu_forward(self, x):
        self.xc, self.t = x, np.tanh((x + 0.044715 * x * x * x) * _SQRT_2_OVER_PI)
        return 0.5 * x * (1 + self.t)

    def cpu_slope(self):
        x, t = self.xc, self.t
        d = (1 + 3 * 0.044715 * x * x) * (_SQRT_2_OVER_PI * 0.5)
        d *= x
        d *= 1 - t * t
        d += 0.5 * (1 + t)
        return d


def gelu(input, approximate="none"):
    """GELU(x) = x * Phi(x) (exact, with erf), or its tanh approximation with ``approximate="tanh"``."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    x = float_input(input, "gelu")
    return (Gelu if approximate == "none" else GeluTanh).apply(x)


# --- softmax and log_softmax -----------------------------------------------------------------------
class Softmax(Function):
    """y = exp(x - max) / sum(exp(x - max)) along `dim`;  dx = y * (g - sum(g * y)). Saves y."""
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
class Dropout(Function):
    """Inverted dropout: y = x * keep / (1 - p), keep ~ Bernoulli(1 - p);  dx = g * keep / (1 - p).

    The mask is the counter-based Philox stream of tinylazy.cuda (`dropout_mask`, kernels/dropout.cu): a
    (seed, offset) pair from `RNG.next_offset` fixes it, so cpu and cuda drop the same elements under the
    same `tl.manual_seed`. On cuda the kernel regenerates the mask in backward from (seed, offset); on cpu,
    where generating it costs more than storing it, forward keeps the bool mask (one byte per element)."""
    fresh_grads = True

    def forward(self, x, p):
        if is_meta(x):
            return MetaArray(x.shape, x.dtype)
        self.p = p
        self.seed, self.offset = RNG.next_offset(device_of(x), -(-x.size // 4) * 4)
        if xp_of(x) is not np:
            self.keep = None
            return cuda.dropout_fwd(x, p, self.seed, self.offset)
        self.keep = cuda.dropout_mask(x.shape, p, self.seed, self.offset)
        return self._apply_mask(x)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(g.shape, g.dtype), None
        if self.keep is None:
            return cuda.dropout_bwd(g, self.p, self.seed, self.offset), None
        return self._apply_mask(g), None

    def _apply_mask(self, a):
        scale = 0.0 if self.p == 1 else 1 / (1 - self.p)
        return np.where(self.keep, a * a.dtype.type(scale), a.dtype.type(0))


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
