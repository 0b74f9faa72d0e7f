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
from .._update import adam_step, adam_update
from .optimizer import Optimizer


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

    def _updater(self, group):
        beta1, beta2 = group["betas"]
        kw = dict(lr=group["lr"], beta1=beta1, beta2=beta2, eps=group["eps"], weight_decay=group["weight_decay"],
                  decoupled=group["decoupled_weight_decay"], maximize=group["maximize"])
        amsgrad = group["amsgrad"]

        def update(p, g, s, step, work):
            adam_update(p, g, s["exp_avg"], s["exp_avg_sq"], s["max_exp_avg_sq"] if amsgrad else None, work,
                        step=step + 1, **kw)
        return update

    def _fused(self, group, params, grads, states, step):
        if group["amsgrad"] or group["maximize"]:
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
