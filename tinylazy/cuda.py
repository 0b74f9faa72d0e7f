"""tinylazy.cuda: the GPU side of tinylazy.

1. Device queries as in PyTorch: `is_available()`, `device_count()`, `current_device()`, `synchronize()`.
2. The hot-path functions that the ops and optimizers call on raw arrays. Each has two branches:
   - the custom CUDA kernel of kernels/*.cu, when every array is a C-contiguous CuPy float32/float64 array
     on one device and the environment variable TINYLAZY_KERNELS is not "0" (see `tinylazy._kernels`);
   - the reference, written with array operations on `xp` (numpy or cupy), which runs in every other case
     (cpu arrays, other dtypes, non-contiguous views) and is the kernels' test oracle.
   Both branches return new arrays (the optimizer steps update in place) of the input's dtype.

Importing this module never imports CuPy.
"""
import math
from functools import partial

import numpy as np

from . import _kernels, _update, _xpmath, backend
from .backend import xp_of
from .capturing import hooks as _capture

# =============================== devices ===============================================================


def is_available():
    """True when CuPy is installed and sees at least one GPU."""
    return device_count() > 0


def device_count():
    """The number of GPUs CuPy sees (0 without CuPy or a driver)."""
    cp = backend.cupy_module()
    if cp is None:
        return 0
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def _require_cupy():
    cp = backend.cupy_module()
    if cp is None or device_count() == 0:
        raise RuntimeError("tinylazy.cuda: CUDA is not available (CuPy is not installed or no GPU was found)")
    return cp


def current_device():
    """The index of the current CUDA device."""
    return _require_cupy().cuda.runtime.getDevice()


def synchronize(device=None):
    """Wait until every kernel queued on `device` (an index, "cuda:N" or a Device; default: current) has finished."""
    cp = _require_cupy()
    if device is None:
        index = cp.cuda.runtime.getDevice()
    elif isinstance(device, int):
        index = device
    else:
        index = backend.device(device).index
    cp.cuda.Device(index).synchronize()


# =============================== activations ===========================================================
# Activation names, for act_fwd / act_bwd / bias_act_*. Backward needs the OUTPUT y of relu, sigmoid, tanh and
# identity (`act_saves_output(act)` is True) and the INPUT z of gelu and gelu_tanh.
ACTIVATIONS = ("identity", "relu", "gelu", "gelu_tanh", "sigmoid", "tanh")
_SAVES_OUTPUT = {"identity": True, "relu": True, "sigmoid": True, "tanh": True, "gelu": False, "gelu_tanh": False}
_INV_SQRT_2PI, _SQRT_2_PI, _KAPPA = 0.3989422804014327, 0.7978845608028654, 0.044715


def act_saves_output(act):
    """True when `act`'s backward takes the forward OUTPUT, False when it takes the INPUT (the gelus)."""
    try:
        return _SAVES_OUTPUT[act]
    except KeyError:
        raise ValueError(f"unknown activation {act!r}; expected one of {ACTIVATIONS}") from None


def _act_ref(z, act, xp, in_place=False):
    """act(z); with `in_place`, relu, tanh and identity write over z (the others return a new array)."""
    out = z if in_place else None
    if act == "identity":
        return z if in_place else z.copy()
    if act == "relu":
        return xp.maximum(z, 0, out=out)
    if act == "tanh":
        return xp.tanh(z, out=out)
    if act == "sigmoid":
        e = xp.exp(-xp.abs(z))                      # exp(-|z|) never overflows
        return xp.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if act == "gelu":                               # z Phi(z), Phi through erfc: exact in the far negative tail
        return z * _xpmath.normal_cdf(z, xp)
    u = _SQRT_2_PI * (z + _KAPPA * z * z * z)       # gelu_tanh
    return 0.5 * z * (1 + xp.tanh(u))


_INT_OF_WIDTH = {2: np.int16, 4: np.int32, 8: np.int64}


def _relu_grad(g, y, xp, in_place=False):
    """+0 where y <= 0, else g: exactly PyTorch's threshold_backward(g, y, 0), so a NaN or inf gradient of an
    off unit gives 0 and a NaN output passes its gradient. Done on the bits: the sign test gives an int
    mask, 0 where y <= 0 and all ones (-1) elsewhere, and the gradient's bits are AND-ed with it. Measured
    against g * (y > 0) (which keeps a NaN gradient NaN where the unit is off): at 256x256 in place, float32
    6-8 us (about 25%) slower, float16 9x faster; in the batch-256 MLP train step, 1.0-1.8% slower
    (bench/ab_revision.py, three runs). Masked writes (where, putmask, copyto) took 260-450 us."""
    ints = _INT_OF_WIDTH.get(g.itemsize)
    if ints is None:                                  # no int as wide (longdouble): the masked write
        out = g if in_place else g.copy()
        xp.copyto(out, 0, where=xp.less_equal(y, 0))
        return out
    mask = xp.less_equal(y, 0).view(np.int8)          # 1 where off, 0 where on ...
    mask -= 1                                         # ... 0 where off, -1 (all bits set) where on
    bits = g.view(ints)                               # the gradient's bits, as ints of the same width
    out = xp.bitwise_and(bits, mask, out=bits if in_place else None)
    return g if in_place else out.view(g.dtype)


def _act_grad_ref(g, s, act, xp, in_place=False):
    """g * act'(...) from the saved array s; with `in_place`, relu and identity write over g."""
    if act == "identity":
        return g if in_place else g.copy()
    if act == "relu":
        return _relu_grad(g, s, xp, in_place)
    if act == "sigmoid":
        return g * (1 - s) * s
    if act == "tanh":
        return g * (1 - s * s)
    if act == "gelu":                               # Phi(s) + s phi(s), Phi as in _act_ref
        return g * (_xpmath.normal_cdf(s, xp) + s * (_INV_SQRT_2PI * xp.exp(-0.5 * s * s)))
    t = xp.tanh(_SQRT_2_PI * (s + _KAPPA * s * s * s))   # gelu_tanh
    du = _SQRT_2_PI * (1 + 3 * _KAPPA * s * s)
    return g * (0.5 * (1 + t) + 0.5 * s * (1 - t * t) * du)


def act_fwd(x, act, overwrite_x=False):
    """y = act(x) elementwise, for act in ACTIVATIONS:
    relu: max(x, 0) (NaN passes);  sigmoid: 1 / (1 + exp(-x));  tanh;  identity: a copy of x;
    gelu: x Phi(x), Phi(x) = erfc(-x / sqrt2) / 2 (accurate in the far tail);  gelu_tanh: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    Save y for backward when act_saves_output(act), else x. `overwrite_x=True` lets y be written over x (the
    caller then never reads x again): the CPU reference does so where it can, which spares a fresh array
    and its cache misses; the kernel writes a new array (on a GPU that costs no extra traffic)."""
    saves_output = act_saves_output(act)
    if _kernels.usable(x):
        return _kernels.act_fwd(x, act)
    return _act_ref(x, act, xp_of(x), in_place=overwrite_x and saves_output)


def act_bwd(grad, saved, act, overwrite_grad=False):
    """dL/dx = grad * act'(x), with `saved` the forward output y (relu: y > 0; sigmoid: y (1 - y);
    tanh: 1 - y^2; identity: 1) or, for the gelus, the input x (gelu: Phi(x) + x phi(x); gelu_tanh:
    (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3 0.044715 x^2), t = tanh(sqrt(2/pi) (x + 0.044715 x^3))).
    `overwrite_grad=True` lets the result be written over grad (see act_fwd's overwrite_x)."""
    act_saves_output(act)
    if _kernels.usable(grad, saved):
        return _kernels.act_bwd(grad, saved, act)
    return _act_grad_ref(grad, saved, act, xp_of(grad), in_place=overwrite_grad)


def relu_fwd(x):
    """y = max(x, 0). Save y."""
    return act_fwd(x, "relu")


def relu_bwd(grad, y, overwrite_grad=False):
    """dx = 0 where y <= 0, else grad (a NaN y passes grad, as in PyTorch; y may be the input x as well: the
    same sign test)."""
    return act_bwd(grad, y, "relu", overwrite_grad)


def _gelu_name(approximate):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return "gelu" if approximate == "none" else "gelu_tanh"


def gelu_fwd(x, approximate="none"):
    """y = x Phi(x) (Phi the normal cdf, through erfc), or with approximate="tanh"
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). Save x."""
    return act_fwd(x, _gelu_name(approximate))


def gelu_bwd(grad, x, approximate="none"):
    """dx = grad * gelu'(x), from the input x (see act_bwd for the formulas)."""
    return act_bwd(grad, x, _gelu_name(approximate))


def sigmoid_fwd(x):
    """y = 1 / (1 + exp(-x)), evaluated without overflow. Save y."""
    return act_fwd(x, "sigmoid")


def sigmoid_bwd(grad, y):
    """dx = grad (1 - y) y."""
    return act_bwd(grad, y, "sigmoid")


def tanh_fwd(x):
    """y = tanh(x). Save y."""
    return act_fwd(x, "tanh")


def tanh_bwd(grad, y):
    """dx = grad (1 - y^2)."""
    return act_bwd(grad, y, "tanh")


# =============================== fused bias + activation ===============================================
def _bias_axis(x, b, axis):
    """`axis` of x as a non-negative int, after checking that b has one element per entry along it."""
    axis = axis % x.ndim if x.ndim else 0
    if b is not None and b.shape != (x.shape[axis],):
        raise ValueError(f"bias_act: the bias has shape {tuple(b.shape)}, expected ({x.shape[axis]},) "
                         f"(x.shape[{axis}] of x {x.shape})")
    return axis


def _bias_layout(x, axis):
    """(outer, C, inner) of x seen as a contiguous (outer, C, inner) array with C = x.shape[axis]."""
    return math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])


def _bias_view(b, ndim, axis):
    """b shaped to broadcast along `axis` of an ndim-array (b itself for the last axis)."""
    return b if axis == ndim - 1 else b.reshape((b.shape[0],) + (1,) * (ndim - axis - 1))


def bias_act_fwd(x, b, act="identity", axis=-1, overwrite_x=False):
    """y = act(x + b), the bias b (C,) broadcast along `axis` of x (x.shape[axis] == C): axis=-1 for a Linear
    output (rows, C), axis=1 for a Conv2d output (N, C, H, W). One pass over x. Save y when
    act_saves_output(act), else x (backward recomputes z = x + b). `overwrite_x` as in act_fwd (x is kept
    when backward needs it)."""
    saves_output = act_saves_output(act)
    axis = _bias_axis(x, b, axis)
    if _kernels.usable(x, b):
        _, C, inner = _bias_layout(x, axis)
        return _kernels.bias_act_fwd(x, b, act, C, inner)
    xp = xp_of(x)
    z = xp.add(x, _bias_view(b, x.ndim, axis), out=x if overwrite_x and saves_output else None)
    return _act_ref(z, act, xp, in_place=True)


def bias_act_bwd(grad, saved, act="identity", b=None, axis=-1, overwrite_grad=False):
    """Backward of y = act(x + b): returns (grad_x, grad_b) with
        grad_x = grad * act'(x + b)          (from saved = y, or saved = x and b for the gelus)
        grad_b[c] = sum of grad_x over every axis but `axis`.
    The kernel writes grad_x and reduces grad_b in the same pass (plus a small second launch).
    `overwrite_grad=True` lets grad_x be written over grad (see act_fwd's overwrite_x)."""
    saves_output = act_saves_output(act)
    if not saves_output and b is None:
        raise ValueError(f"bias_act_bwd: {act} saves the input x, so the bias b is needed to recompute x + b")
    axis = _bias_axis(saved, b, axis)
    needed = (grad, saved) if saves_output else (grad, saved, b)
    if _kernels.usable(*needed):
        outer, C, inner = _bias_layout(saved, axis)
        return _kernels.bias_act_bwd(grad, saved, saved if saves_output else b, act, outer, C, inner)
    xp = xp_of(grad)
    z = saved if saves_output else saved + _bias_view(b, saved.ndim, axis)
    grad_x = _act_grad_ref(grad, z, act, xp, in_place=overwrite_grad)
    grad_b = grad_x.sum(axis=tuple(i for i in range(grad_x.ndim) if i != axis))
    return grad_x, grad_b


# =============================== softmax + cross-entropy ===============================================
def softmax_xent_fwd(logits, target, label_smoothing=0.0):
    """Per-row cross-entropy of softmax(logits) against integer class targets, with label smoothing eps:
        m_r = max_j z_rj,   l_r = log sum_j exp(z_rj - m_r)       (so logsumexp_r = m_r + l_r)
        loss_r = (1 - eps) ((m_r - z_r,target_r) + l_r) + eps ((m_r - mean_j z_rj) + l_r)
    logits (rows, C) float, target (rows,) integers in [0, C). Returns (loss (rows,), stats (rows, 2)) with
    stats[:, 0] = m and stats[:, 1] = l: save stats for backward. (m and l are kept apart so that no
    precision is lost when the logits are large.) The reference raises IndexError for a target outside
    [0, C); the kernel gives that row a NaN loss."""
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"softmax_xent: expected logits (rows, C) and target (rows,), got {logits.shape} and {target.shape}")
    if _kernels.usable(logits) and isinstance(target, type(logits)) and target.device == logits.device:
        return _kernels.softmax_xent_fwd(logits, target, label_smoothing)
    xp = xp_of(logits)
    rows, C = logits.shape
    if target.size and (int(target.min()) < 0 or int(target.max()) >= C):
        raise IndexError(f"softmax_xent: target values must be in [0, {C}), got [{int(target.min())}, {int(target.max())}]")
    m = logits.max(axis=1, keepdims=True)
    log_s = xp.log(xp.exp(logits - m).sum(axis=1))
    m = m[:, 0]
    loss = (m - xp.take_along_axis(logits, target.reshape(-1, 1).astype(xp.int64), axis=1)[:, 0]) + log_s
    if label_smoothing != 0:
        loss = (1 - label_smoothing) * loss + label_smoothing * ((m - logits.sum(axis=1) / C) + log_s)
    return loss, xp.stack([m, log_s], axis=1)


def softmax_xent_bwd(grad_rows, logits, target, stats, label_smoothing=0.0):
    """d loss_r / d z_rj times the upstream gradient g_r of loss_r (an array (rows,) or a scalar):
        grad_z_rj = g_r (p_rj - eps / C - (1 - eps) [j == target_r]),   p_rj = exp((z_rj - m_r) - l_r)
    with (m, l) = stats from softmax_xent_fwd."""
    if _kernels.usable(logits, stats) and isinstance(target, type(logits)) and target.device == logits.device:
        return _kernels.softmax_xent_bwd(grad_rows, logits, target, stats, label_smoothing)
    xp = xp_of(logits)
    rows, C = logits.shape
    grad = logits - stats[:, :1]
    grad -= stats[:, 1:]
    xp.exp(grad, out=grad)
    grad -= label_smoothing / C
    grad[xp.arange(rows), target.astype(xp.int64)] -= 1 - label_smoothing
    grad *= xp.asarray(grad_rows, dtype=logits.dtype).reshape(-1, 1)
    return grad


# =============================== dropout =================================================================
def _dropout_constants(p):
    """(threshold, scale): keep element i when its 32-bit random r_i >= threshold = round(p 2^32), so
    P(keep) = 1 - p; kept elements are scaled by 1 / (1 - p) (0 when p == 1: everything is dropped)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")
    return min(int(round(p * 2.0 ** 32)), 2 ** 32), (0.0 if p == 1.0 else 1.0 / (1.0 - p))


def dropout_mask(shape, p, seed, offset, xp=np):
    """The keep mask (bool array of `shape`, on xp's device): keep_i = r_i >= round(p 2^32), r_i the
    Philox4x32-10 number of counter offset + i under key seed (see kernels/dropout.cu; identical on cpu and
    cuda). `tinylazy.backend.RNG.next_offset(device, n)` hands out fresh (seed, offset) pairs; reserving n
    rounded up to a multiple of 4 keeps the kernel at one Philox call per 4 elements."""
    threshold, _ = _dropout_constants(p)
    if xp is not np and _kernels.enabled():
        return _kernels.dropout_mask(tuple(shape), seed, offset, threshold)
    n = math.prod(shape)
    return (_xpmath.dropout_randoms(n, seed, offset, xp) >= threshold).reshape(shape)


def dropout_fwd(x, p, seed, offset):
    """y = x * keep * scale with keep = dropout_mask(x.shape, p, seed, offset) and scale = 1 / (1 - p).
    Save only (p, seed, offset): backward regenerates the mask."""
    threshold, scale = _dropout_constants(p)
    if _kernels.usable(x):
        return _kernels.dropout(x, seed, offset, threshold, scale)
    xp = xp_of(x)
    keep = dropout_mask(x.shape, p, seed, offset, xp)
    return xp.where(keep, x * x.dtype.type(scale), x.dtype.type(0))


def dropout_bwd(grad, p, seed, offset):
    """grad_x = grad * keep * scale: the forward map applied to the upstream gradient, same (seed, offset)."""
    return dropout_fwd(grad, p, seed, offset)


# =============================== fused optimizer steps =================================================
def sgd_step(params, grads, bufs, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False,
             first_step=False):
    """One step of torch.optim.SGD (the rule of tinylazy._update.sgd_update), in place on every params[i]
    and bufs[i] (the momentum buffers; unused, and may be None, when momentum == 0).
    On cuda: ONE kernel launch for all the parameters."""
    if not params:
        return
    if momentum != 0 and (bufs is None or len(bufs) != len(params)):
        raise ValueError("sgd_step: momentum needs one buffer per parameter")
    if _kernels.usable_lists(params, grads, bufs if momentum != 0 else None):
        return _kernels.sgd(params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step)
    work = _update.Scratch()
    for i, (p, g) in enumerate(zip(params, grads)):
        _update.sgd_update(p, g, bufs[i] if momentum != 0 else None, partial(work.get, p), lr=lr,
                           momentum=momentum, dampening=dampening, weight_decay=weight_decay, nesterov=nesterov,
                           first=first_step)


def _adam_host_scalars(step, lr, beta1, beta2):
    """The host scalars of the fused Adam kernel: lr / (1 - beta1^step) and sqrt(1 - beta2^step)."""
    return lr / (1 - beta1 ** step), (1 - beta2 ** step) ** 0.5


def adam_step(params, grads, exp_avgs, exp_avg_sqs, step, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8,
              weight_decay=0.0, decoupled=False):
    """One step of torch.optim.Adam (decoupled=False) or AdamW (decoupled=True), the rule of
    tinylazy._update.adam_update, in place on params, exp_avgs (m) and exp_avg_sqs (v); `step` counts from 1.
    On cuda: ONE kernel launch for all the parameters."""
    if not params:
        return
    step_size, bias_correction2_sqrt = _capture.scalars(_adam_host_scalars, step, lr, beta1, beta2)
    if _kernels.usable_lists(params, grads, exp_avgs, exp_avg_sqs):
        return _kernels.adam(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, beta2, eps, weight_decay,
                             step_size, bias_correction2_sqrt, decoupled)
    work = _update.Scratch()
    for p, g, m, v in zip(params, grads, exp_avgs, exp_avg_sqs):
        _update.adam_update(p, g, m, v, None, partial(work.get, p), step=step, lr=lr, beta1=beta1, beta2=beta2,
                            eps=eps, weight_decay=weight_decay, decoupled=decoupled)
