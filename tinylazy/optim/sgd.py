"""Stochastic gradient descent with momentum, dampening, weight decay and Nesterov momentum (PyTorch's SGD).

Per parameter p with gradient g (lr, momentum mu, dampening tau, weight decay lambda):

    d   = g + lambda p                          (when lambda != 0)
    buf = d                                     on the first step (PyTorch's rule: no dampening then)
    buf = mu buf + (1 - tau) d                  on later steps
    d   = d + mu buf   (nesterov)   or   buf    (when mu != 0)
    p   = p - lr d

State: ``momentum_buffer`` per parameter, only when momentum != 0 (as in PyTorch).
"""
from .._update import add_scaled, sgd_step, sgd_update
from .optimizer import Optimizer


class SGD(Optimizer):
    """``SGD(params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, maximize=False)``,
    numerically PyTorch's torch.optim.SGD. ``foreach``/``fused`` are accepted for PyTorch compatibility and
    ignored (updates are always batched)."""

    _export_step = False

    def __init__(self, params, lr=1e-3, momentum=0, dampening=0, weight_decay=0, nesterov=False, *,
                 maximize=False, foreach=None, fused=None):
        defaults = dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                        nesterov=nesterov, maximize=maximize)
        super().__init__(params, defaults)

    def _check_group(self, group):
        super()._check_group(group)
        if not group["momentum"] >= 0:
            raise ValueError(f"Invalid momentum value: {group['momentum']}")
        if not group["weight_decay"] >= 0:
            raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")

    def _state_names(self, group):
        return ("momentum_buffer",) if group["momentum"] != 0 else ()

    def _new_state_array(self, p, st, name):
        st["step"] = 0                       # a new buffer starts with PyTorch's first-step rule
        return super()._new_state_array(p, st, name)

    def _updater(self, group):
        if not (group["momentum"] or group["weight_decay"] or group["maximize"]):
            alpha = -group["lr"]             # plain SGD: sgd_update would do just this
            return lambda p, g, s, step, work: add_scaled(p, g, alpha)
        kw = dict(lr=group["lr"], momentum=group["momentum"], dampening=group["dampening"],
                  weight_decay=group["weight_decay"], nesterov=group["nesterov"], maximize=group["maximize"])
        if kw["momentum"] == 0:
            return lambda p, g, s, step, work: sgd_update(p, g, None, work, **kw)
        return lambda p, g, s, step, work: sgd_update(p, g, s["momentum_buffer"], work, first=step == 0, **kw)

    def _fused(self, group, params, grads, states, step):
        if group["maximize"]:
            return False
        bufs = [st["momentum_buffer"] for st in states] if group["momentum"] != 0 else None
        sgd_step(params, grads, bufs, group["lr"], group["momentum"], group["dampening"],
                 group["weight_decay"], group["nesterov"], step == 0)
        return True
