"""The class-index losses: cross_entropy (log-softmax + NLL fused into one Function) and nll_loss, plus the
argument checks every loss shares. (loss.py gathers all losses; import them from there.)

They work on logits of shape (N, C) or (N, C, d1, ...) with integer targets (N,) or
(N, d1, ...), or (C,) with a 0-d target. Internally the extra dims are flattened to one, so every body
sees (N, C) or (N, C, D) with the class axis 1 and a target (N,) or (N, D).
"""
import math

import numpy as np

from .. import _devcheck, fast
from ..autograd import Function
from ..backend import is_meta, xp_of
from .. import _capture_hooks as _capture
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand

_REDUCTIONS = ("none", "mean", "sum")
_UNSIGNED = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}     # by itemsize, for _check_targets


# --- shared checks ----------------------------------------------------------------------------------
def _reduction(op, reduction, size_average=None, reduce=None):
    if size_average is not None or reduce is not None:        # PyTorch's deprecated spelling
        size_average = True if size_average is None else size_average
        reduce = True if reduce is None else reduce
        reduction = "none" if not reduce else ("mean" if size_average else "sum")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
    return reduction


def _float_tensor(x, op, what="input"):
    x = x if type(x) is Tensor else as_tensor_operand(x, None, op)
    if x.array.dtype.kind != "f":
        raise TypeError(f"{op}: the {what} is {x.array.dtype}, but {op} needs floating-point {what}s; "
                        "convert it with .float()")
    return x


def _class_operands(op, input, target, weight):
    """Check (input, target, weight) of a class-index loss; return them as tensors plus C."""
    x = _float_tensor(input, op)
    t = target if type(target) is Tensor else as_tensor_operand(target, x, op)
    xs, ts = tuple(x.array.shape), tuple(t.array.shape)
    if t.array.dtype.kind not in "iu":
        hint = (" (class probabilities are not supported: pass class indices, e.g. target.argmax(1))"
                if t.array.dtype.kind == "f" else "")
        raise TypeError(f"{op}: expected integer class indices as target (int64), got {t.array.dtype}{hint}; "
                        "convert indices with .long()")
    if len(xs) == 0:
        raise ShapeError(f"{op}: input must have a class dimension, got a 0-d input")
    expected = () if len(xs) == 1 else xs[:1] + xs[2:]
    if ts != expected:
        if len(xs) >= 2 and len(ts) >= 1 and ts[0] != xs[0]:
            raise ShapeError(f"{op}: expected input batch size ({xs[0]}) to match target batch size "
                             f"({ts[0]}): input shape {xs}, target shape {ts}")
        raise ShapeError(f"{op}: expected target of shape {expected} for input of shape {xs} "
                         f"(input (N, C, d1, ...) takes target (N, d1, ...)), got target shape {ts}")
    C = xs[0] if len(xs) == 1 else xs[1]
    if weight is not None:
        weight = weight if type(weight) is Tensor else as_tensor_operand(weight, x, op)
        if tuple(weight.array.shape) != (C,):
            raise ShapeError(f"{op}: expected weight of shape ({C},) (one per class), got {tuple(weight.array.shape)}")
    return x, t, weight, C


def _as_ncd(x, t):
    """View logits as (N, C) or (N, C, D) and targets as (N,) or (N, D) (the class axis is always 1)."""
    if x.ndim == 1:
        return x.reshape(1, x.shape[0]), t.reshape(1)
    if x.ndim == 2:
        return x, t
    n, c = x.shape[0], x.shape[1]
    d = math.prod(x.shape[2:])
    return x.reshape(n, c, d), t.reshape(n, d)


def _check_targets(op, t, C, ignore_index):
    """Raise for a class index outside [0, C) that is not ignore_index. Returns whether any is ignored."""
    if t.size == 0 or (_capture.capturing_graph() and not 0 <= ignore_index < C):
        return False          # (no host sync may happen in a CUDA graph capture: targets go unchecked there)
    unsigned = t if t.dtype.kind == "u" else t.view(_UNSIGNED[t.dtype.itemsize])
    if int(unsigned.max()) < C:                           # one pass: viewed as unsigned, a negative index is huge
        return 0 <= ignore_index < C and bool((t == ignore_index).any())
    kept = t[t != ignore_index]
    if kept.size and (int(kept.min()) < 0 or int(kept.max()) >= C):
        bad = int(kept.min()) if int(kept.min()) < 0 else int(kept.max())
        raise IndexError(f"{op}: target class {bad} is out of range for {C} classes (expected 0 <= target < {C}"
                         f" or target == ignore_index={ignore_index})")
    return True


def _targets_on_device(x, t):
    """True when the targets' check runs on the device, with no sync (cuda with the custom kernels; see
    tinylazy._devcheck): the values are then never read on the host, so whether any target equals
    ignore_index is not known there, and the device takes care of it."""
    return _devcheck.deferred(t) and fast.usable(x)


def _device_target_check(op, t, C, ignore_index, dtype):
    """The device-side `_check_targets`: flags a bad target for a later IndexError and returns the device
    array [kept, 1 / kept] (kept = the number of targets != ignore_index). One launch, no sync."""
    message = (f"{op}: a target class is out of range for {C} classes (expected 0 <= target < {C} or "
               f"target == ignore_index={ignore_index})")
    return _devcheck.class_targets(t, C, ignore_index, dtype, message)


class _ClassLoss(Function):
    """What cross_entropy and nll_loss share: picking each sample's target class, the per-sample weights
    w_i = weight[t_i] (0 where t_i == ignore_index), and the reduction (mean divides by sum_i w_i)."""
    fresh_grads = True

    def _prepare(self, x2, t2, weight, ignore_index, has_ignored):
        xp = xp_of(x2)
        valid = None
        if has_ignored:
            valid = t2 != ignore_index
            t2 = xp.where(valid, t2, 0)
        n = x2.shape[0]
        if x2.ndim == 2:                                  # (i, t_i) picks each row's target class
            self.index = (xp.arange(n), t2)
        else:                                             # (i, t_id, d) in an (N, C, D) array
            self.index = (xp.arange(n)[:, None], t2, xp.arange(x2.shape[2])[None, :])
        w = None
        if weight is not None:
            w = weight[t2]
            if valid is not None:
                w *= valid
        elif valid is not None:
            w = valid.astype(x2.dtype)
        self.w, self.valid, self.sample_shape = w, valid, t2.shape
        return w

    def _reduce(self, loss, reduction, out_shape, kept=None):
        """Reduce per-sample losses; remember the factor backward scales the incoming gradient by. `kept`:
        the device array [kept, 1 / kept] of `_device_target_check` (the mean's denominator on cuda)."""
        if reduction == "none":
            return loss.reshape(out_shape)
        total = loss.sum()
        if reduction == "sum":
            self.scale = 1
            return total
        if kept is not None:                              # counted on the device: 0 / 0 = nan when all ignored
            self.scale = kept[1]
            return total / kept[0]
        denom = loss.size if self.w is None else self.w.sum()
        if not isinstance(loss, np.ndarray) and self.w is not None:   # a device sum: decided on the device, no sync
            xp = xp_of(loss)
            self.scale = xp.where(denom != 0, 1 / xp.where(denom != 0, denom, 1), 0).astype(loss.dtype)
            return total / denom
        if not denom:                                     # empty, or all ignored: loss nan, gradient 0
            self.scale = 0
            return total * math.nan
        self.scale = 1 / denom
        return total / denom

    def _coef(self, g):
        """The incoming gradient per sample, shaped like the targets ((N,) or (N, D)), or a 0-d factor."""
        if self.reduction == "none":
            return g.reshape(self.sample_shape)
        return g * self.scale

    def _meta(self, x, out_shape):
        self.meta = (x.shape, x.dtype)
        return MetaArray(out_shape if self.reduction == "none" else (), x.dtype)


def _per_sample(xp, a):
    """A per-sample factor broadcast against (N, C[, D]): insert the class axis (scalars stay scalars)."""
    return xp.expand_dims(a, 1) if getattr(a, "ndim", 0) else a


def _class_column(W, ndim):
    """Class weights (C,) shaped to broadcast against (N, C) or (N, C, D)."""
    return W if ndim == 2 else W.reshape(-1, 1)


def use_fused_kernel(x2, weight, has_ignored):
    """Whether cross_entropy runs `softmax_xent_fwd/bwd` (a fused kernel on cuda): CuPy (N, C)
    logits without class weights, and no ignored target (has_ignored False) or none known on the host
    (None: checked on the device; the kernel gives an ignored row loss 0 and gradient 0). On cpu the NumPy
    path below is the leaner one."""
    return not isinstance(x2, np.ndarray) and x2.ndim == 2 and weight is None and not has_ignored


# --- the per-row fused softmax + cross-entropy (cuda; kernels softmax_xent_fwd / _bwd) -------------------
def _xent_rows(logits, target, label_smoothing, ignore_index):
    xp = xp_of(logits)
    rows, C = logits.shape
    kept = target != ignore_index
    bad = kept & ((target < 0) | (target >= C))
    if bool(bad.any()):
        raise IndexError(f"softmax_xent: target values must be in [0, {C}) or ignore_index={ignore_index}, "
                         f"got {int(target[bad][0])}")
    safe = xp.where(kept, target, 0).astype(xp.int64)
    m = logits.max(axis=1, keepdims=True)
    log_s = xp.log(xp.exp(logits - m).sum(axis=1))
    m = m[:, 0]
    loss = (m - xp.take_along_axis(logits, safe.reshape(-1, 1), axis=1)[:, 0]) + log_s
    if label_smoothing != 0:
        loss = (1 - label_smoothing) * loss + label_smoothing * ((m - logits.sum(axis=1) / C) + log_s)
    return xp.where(kept, loss, 0).astype(logits.dtype, copy=False), xp.stack([m, log_s], axis=1)


def _xent_rows_grad(grad_rows, logits, target, stats, label_smoothing, ignore_index):
    xp = xp_of(logits)
    rows, C = logits.shape
    kept = target != ignore_index
    grad = logits - stats[:, :1]
    grad -= stats[:, 1:]
    xp.exp(grad, out=grad)
    grad -= label_smoothing / C
    grad[xp.arange(rows), xp.where(kept, target, 0).astype(xp.int64)] -= 1 - label_smoothing
    grad *= xp.asarray(grad_rows, dtype=logits.dtype).reshape(-1, 1)
    grad *= kept.reshape(-1, 1)
    return grad


def softmax_xent_fwd(logits, target, label_smoothing=0.0, ignore_index=-100):
    """Per-row cross-entropy of softmax(logits) against integer class targets, with label smoothing eps:
        m_r = max_j z_rj,   l_r = log sum_j exp(z_rj - m_r)       (so logsumexp_r = m_r + l_r)
        loss_r = (1 - eps) ((m_r - z_r,target_r) + l_r) + eps ((m_r - mean_j z_rj) + l_r)
    and loss_r = 0 where target_r == ignore_index. logits (rows, C) float, target (rows,) integers in
    [0, C) or ignore_index. Returns (loss (rows,), stats (rows, 2)) with stats[:, 0] = m and
    stats[:, 1] = l: save stats for backward. (m and l are kept apart so that no precision is lost when the
    logits are large.) Raises IndexError for another target outside [0, C); the cuda kernel gives that row
    a NaN loss instead (tinylazy._devcheck reports it without a sync)."""
    if logits.ndim != 2 or target.shape != logits.shape[:1]:
        raise ValueError(f"softmax_xent: expected logits (rows, C) and target (rows,), got {logits.shape} and {target.shape}")
    return fast.softmax_xent_fwd(_xent_rows, logits, target, label_smoothing, ignore_index)


def softmax_xent_bwd(grad_rows, logits, target, stats, label_smoothing=0.0, ignore_index=-100):
    """d loss_r / d z_rj times the upstream gradient g_r of loss_r (an array (rows,) or a scalar):
        grad_z_rj = g_r (p_rj - eps / C - (1 - eps) [j == target_r]),   p_rj = exp((z_rj - m_r) - l_r)
    with (m, l) = stats from softmax_xent_fwd; 0 on the rows whose target is ignore_index."""
    return fast.softmax_xent_bwd(_xent_rows_grad, grad_rows, logits, target, stats, label_smoothing, ignore_index)


class CrossEntropy(_ClassLoss):
    """Fused log_softmax + NLL with label smoothing eps. With z = x - max, lse = log sum_c exp(z_c),
    W the class weights (all 1 without), w_i = W[t_i] (0 if ignored), v_i = 0 if ignored else 1:
        loss_i = (1 - eps) w_i (lse_i - z_{i,t_i}) + (eps / C) v_i sum_c W_c (lse_i - z_ic).
    Closed-form gradient, the softmax p minus the smoothed one-hot, times the per-sample factor k_i:
        dx_ic = k_i [((1 - eps) w_i + (eps / C) v_i sum W) p_ic - (1 - eps) w_i [c == t_i] - (eps / C) v_i W_c].
    Saves p (computed in place over exp(z), the only (N, C) array forward allocates) and the targets."""
    _saves = (("logits", 0), ("index", 1), ("target", 1), ("W", 2))

    def forward(self, x, target, weight, *, C, ignore_index, reduction, has_ignored, label_smoothing, kept=None):
        self.reduction, self.eps, self.in_shape, self.W = reduction, label_smoothing, x.shape, weight
        if is_meta(x):
            return self._meta(x, target.shape)
        xp = xp_of(x)
        x2, t2 = _as_ncd(x, target)
        if use_fused_kernel(x2, weight, has_ignored):     # cuda: one kernel pass (kernels/softmax_xent.cu)
            self.w, self.valid, self.sample_shape, self.ignore_index = None, None, t2.shape, ignore_index
            loss, self.lse = softmax_xent_fwd(x2, t2, label_smoothing, ignore_index)
            self.logits, self.target, self.p = x2, t2, None
            return self._reduce(loss, reduction, target.shape, kept)
        w = self._prepare(x2, t2, weight, ignore_index, has_ignored is not False)
        z = x2 - x2.max(axis=1, keepdims=True) if x2.shape[1] else x2.copy()
        picked = z[self.index]                            # z at each target class: (N,) or (N, D)
        if label_smoothing:
            zsum = (z if weight is None else z * _class_column(weight, z.ndim)).sum(axis=1)
        xp.exp(z, out=z)                                  # in place: z becomes exp(z) ...
        s = z.sum(axis=1, keepdims=True)
        z /= s                                            # ... then the softmax p
        self.p = z
        lse = xp.log(s.reshape(picked.shape))
        loss = lse - picked                               # -log p at the target
        if w is not None:
            loss *= w
        if label_smoothing:
            self.wsum = C if weight is None else weight.sum()
            smooth = lse * self.wsum
            smooth -= zsum
            if self.valid is not None:
                smooth *= self.valid
            loss *= 1 - label_smoothing
            smooth *= label_smoothing / C
            loss += smooth
        return self._reduce(loss, reduction, target.shape)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(*self.meta), None, None
        xp, p, eps = xp_of(g), self.p, self.eps
        k = self._coef(g)
        if p is None:                                     # the fused kernel's backward
            return softmax_xent_bwd(k, self.logits, self.target, self.lse, eps, self.ignore_index), None, None
        hit = k if self.w is None else k * self.w         # weight of the one-hot at t_i
        if eps:
            kv = k if self.valid is None else k * self.valid
            hit = hit * (1 - eps)
            gx = p * _per_sample(xp, hit + kv * (eps * self.wsum / p.shape[1]))
            side = _per_sample(xp, kv * (eps / p.shape[1]))
            gx -= side if self.W is None else side * _class_column(self.W, p.ndim)
        else:
            gx = p * _per_sample(xp, hit)
        gx[self.index] -= hit
        return gx.reshape(self.in_shape), None, None


class NLLLoss(_ClassLoss):
    """loss_i = -w_i x_{i,t_i} (x holds log-probabilities);  dx = -k_i w_i at (i, t_i), 0 elsewhere.
    Saves the targets and weights."""

    def forward(self, x, target, weight, *, C, ignore_index, reduction, has_ignored, kept=None):
        self.reduction, self.in_shape = reduction, x.shape
        if is_meta(x):
            return self._meta(x, target.shape)
        x2, t2 = _as_ncd(x, target)
        self.shape2, self.dtype = x2.shape, x2.dtype
        w = self._prepare(x2, t2, weight, ignore_index, has_ignored is not False)
        loss = -x2[self.index]
        if w is not None:
            loss *= w
        return self._reduce(loss, reduction, target.shape)

    def backward(self, g):
        if is_meta(g):
            return MetaArray(*self.meta), None, None
        k = self._coef(g)
        gx = xp_of(g).zeros(self.shape2, self.dtype)
        gx[self.index] = -(k if self.w is None else k * self.w)
        return gx.reshape(self.in_shape), None, None


def _class_loss(op, cls, input, target, weight, ignore_index, reduction, **options):
    x, t, weight, C = _class_operands(op, input, target, weight)
    if weight is not None and weight.array.dtype != x.array.dtype:
        raise TypeError(f"{op}: the weight is {weight.array.dtype} but the input is {x.array.dtype}; "
                        "convert one of them")
    kept = None
    if is_meta(t.array):
        has_ignored = False
    elif _targets_on_device(x.array, t.array):            # cuda: checked on the device, never read (no sync)
        has_ignored = None
        kept = _device_target_check(op, t.array, C, ignore_index, x.array.dtype)
    else:
        has_ignored = _check_targets(op, t.array, C, ignore_index)
    return cls.apply(x, t, weight, C=C, ignore_index=ignore_index, reduction=reduction, has_ignored=has_ignored,
                     kept=kept, **options)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
                  reduction="mean", label_smoothing=0.0):
    """Softmax cross-entropy of logits (N, C[, d1, ...]) against integer class targets (N[, d1, ...]):
    nll_loss(log_softmax(input, 1), target) in one Function. `weight` (C,) weighs the classes; targets
    equal to `ignore_index` count for nothing; `label_smoothing` eps trains against
    (1 - eps) one_hot + eps / C. On cuda the targets are checked on the device, without a sync: a class
    out of range raises IndexError at the next read of device data (see tinylazy._devcheck)."""
    reduction = _reduction("cross_entropy", reduction, size_average, reduce)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be between 0.0 and 1.0, got {label_smoothing}")
    return _class_loss("cross_entropy", CrossEntropy, input, target, weight, ignore_index, reduction,
                       label_smoothing=float(label_smoothing))


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None, reduction="mean"):
    """Negative log-likelihood: -input[i, target_i] (input holds log-probabilities, (N, C[, d1, ...]))."""
    reduction = _reduction("nll_loss", reduction, size_average, reduce)
    return _class_loss("nll_loss", NLLLoss, input, target, weight, ignore_index, reduction)


__all__ = ("cross_entropy", "nll_loss")
