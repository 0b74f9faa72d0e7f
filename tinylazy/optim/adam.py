"""Adam and AdamW (PyTorch's torch.optim.Adam / AdamW, same numbers).

Per parameter p with gradient g, at step t = 1, 2, ... (lr, betas (b1, b2), eps, weight decay lambda):

    g = g + lambda p                 (Adam: weight decay coupled into the gradient)
    p = p (1 - lr lambda)            (AdamW: decoupled weight decay)
    m = lerp(m, g, 1 - b1)           (= b1 m + (1 - b1) g)
    v = b2 v + (1 - b2) g^2
    vmax = max(vmax, v)              (amsgrad: the denominator uses vmax instead of v)
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)

State per parameter: ``step``, ``exp_avg`` (m), ``exp_avg_sq`` (v) and, with amsgrad, ``max_exp_avg_sq``.
"""
import math

from .. import backend
from .optimizer import Optimizer, _cuda_module


def adam_update(p, g, m, v, vmax, tmp, gbuf, *, step, lr, beta1, beta2, eps, weight_decay, decoupled,
                maximize):
    """One Adam/AdamW step (`step` counts from 1) on raw arrays of one shape, in place on p, m, v (and
    vmax, None without amsgrad). `g` is only read; `tmp` and `gbuf` are work arrays (`gbuf` may be `g`
    itself when the caller owns it). The operations and their order are PyTorch's."""
    xp = backend.xp_of(p)
    if maximize:
        g = xp.negative(g, out=gbuf)
    if weight_decay != 0:
        if decoupled:
            p *= 1 - lr * weight_decay
        else:
            xp.multiply(p, weight_decay, out=tmp)              # g = g + weight_decay p
            g = xp.add(g, tmp, out=gbuf)
    w = 1 - beta1                                              # m = lerp(m, g, w), from the nearer end
    xp.subtract(g, m, out=tmp)
    if w < 0.5:
        tmp *= w
        m += tmp
    else:
        tmp *= 1 - w
        xp.subtract(g, tmp, out=m)
    v *= beta2                                                 # v = beta2 v + (1 - beta2) g g
    xp.multiply(g, 1 - beta2, out=tmp)
    tmp *= g
    v += tmp
    step_size = lr / (1 - beta1 ** step)
    bias_correction2_sqrt = math.sqrt(1 - beta2 ** step)
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        v = vmax
    xp.sqrt(v, out=tmp)                                        # denom = sqrt(v) / sqrt(bc2) + eps
    tmp /= bias_correction2_sqrt
    tmp += eps
    xp.divide(m, tmp, out=tmp)                                 # p = p + (-step_size) m / denom
    tmp *= -step_size
    p += tmp


class Adam(Optimizer):
    """``Adam(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
    maximize=False, decoupled_weight_decay=False)``; with ``decoupled_weight_decay=True`` it is AdamW.
    ``foreach``/``fused`` are accepted for PyTorch compatibility and ignored (updates are always batched)."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False, *,
                 maximize=False, decoupled_weight_decay=False, foreach=None, fused=None):
        # foreach/fused: accepted for PyTorch compatibility; tinylazy always batches what it can
        defaults = dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                        maximize=maximize, decoupled_weight_decay=decoupled_weight_decay)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if not group["eps"] >= 0:
            raise ValueError(f"Invalid epsilon value: {group['eps']}")
        betas = group["betas"]
        if len(betas) != 2:
            raise ValueError(f"Invalid betas: expected two values (beta1, beta2), got {betas!r}")
        for i, b in enumerate(betas):
            if not 0 <= b < 1:
                raise ValueError(f"Invalid beta parameter at index {i}: {b}")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")

    def _state_names(self, group):
        if group["amsgrad"]:
            return ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
        return ("exp_avg", "exp_avg_sq")

    def _apply(self, group, p, g, s, step, tmp, gbuf):
        beta1, beta2 = group["betas"]
        adam_update(p, g, s["exp_avg"], s["exp_avg_sq"], s.get("max_exp_avg_sq") if group["amsgrad"] else None,
                    tmp, gbuf, step=step + 1, lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"],
                    weight_decay=group["weight_decay"], decoupled=group["decoupled_weight_decay"],
                    maximize=group["maximize"])

    def _fused(self, group, params, grads, states, step):
        if group["amsgrad"] or group["maximize"]:
            return False
        adam_step = getattr(_cuda_module(), "adam_step", None)
        if adam_step is None:
            return False
        beta1, beta2 = group["betas"]
        adam_step(params, grads, [st["exp_avg"] for st in states], [st["exp_avg_sq"] for st in states],
                  step + 1, group["lr"], beta1, beta2, group["eps"], group["weight_decay"],
                  group["decoupled_weight_decay"])
        return True


class AdamW(Adam):
    """``AdamW(params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
    maximize=False)``: Adam with decoupled weight decay, p = p (1 - lr weight_decay) before the update."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, *,
                 maximize=False, foreach=None, fused=None):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize,
                         decoupled_weight_decay=True)
