"""The optimizer base class: parameter groups, per-parameter state, zero_grad, state_dict.

A subclass (SGD, Adam) supplies three things:

- ``_state_names(group)``: the names of its per-element state arrays, e.g. ``("exp_avg", "exp_avg_sq")``;
- ``_updater(group)``: the group's update with its hyperparameters read once per step, a function
  ``update(p, g, s, step, work)`` that changes raw arrays in place. ``p`` (values), ``g`` (gradient, read
  only) and the state arrays ``s[name]`` (``s`` is None for a rule without state) have one shape, and
  ``work(slot)`` hands out work arrays of that shape (the rules themselves live in tinylazy._update);
  ``step`` is how many updates this state has seen before (0 on the first);
- optionally ``_fused(group, params, grads, states, step)``: the same update for a list of cuda parameters
  in one fused kernel (tinylazy.fast, via _update.sgd_step / adam_step); returns False when it cannot.

The base class decides where each update runs (`step`):
- small cpu parameters of a group are packed into a `FlatBucket` (see _flat.py) and updated with a dozen
  NumPy calls in total: this is what makes 100 small parameters fast;
- large cpu parameters are updated one by one, in place, with `out=` ufuncs and reused work buffers;
- cuda parameters go through the fused kernels of tinylazy.fast when they exist, else one by one.
Every path runs the same update, so they agree to the last bit. No autograd graph is ever recorded: the
updates work on the raw arrays (``p.array``).

Lazy parameters (rule 12 of the API) are accepted: a parameter without data yet, or without a gradient, is
skipped, and its state is created at the first step that sees it with data and a gradient.

State is kept per parameter object: ``optimizer.state[p]`` is a dict with ``"step"`` (an int) and the raw
state arrays. ``state_dict()`` is PyTorch's format: ``{"state": {index: {...}}, "param_groups": [{...,
"params": [indices]}]}``, indices counting the parameters across the groups in order, tensors as copies.
"""
from functools import partial

import numpy as np

from .. import _malloc, backend
from ..autograd import enable_grad
from ..nn.parameter import is_lazy
from ..tensor import Tensor
from .._update import Scratch
from .. import _capture_hooks as _capture
from . import _state_io
from ._flat import FlatBucket

SMALL = 1 << 15       # cpu parameters with at most this many elements are updated together in flat buckets


class _Plan:
    """One group's step, worked out once: `buckets` (FlatBuckets of small cpu parameters) and `rest` (the
    other parameters with data and a gradient, each as ``(p, work)``: its work-array function, made once);
    `expected` holds, per parameter of the group, its array if it had a gradient (None if not), to notice a
    change."""
    __slots__ = ("names", "expected", "buckets", "rest", "reusable")

    def __init__(self, names):
        self.names = names
        self.expected, self.buckets, self.rest, self.reusable = [], [], [], True

    def matches(self, params, names):
        """Whether the plan still holds: the same state names, gradients on the same parameters, and their
        arrays the same objects (one pass of identity tests)."""
        if names != self.names or len(params) != len(self.expected):
            return False
        for p, d in zip(params, self.expected):
            if d is None:
                if p.grad is not None:
                    return False
            elif p.grad is None or p.array is not d:
                return False
        return True


def _new_versions(plan):
    """Count the step as an in-place change of every parameter it updated (autograd's version counters, as
    PyTorch's optimizers do): a graph recorded before the step and kept with retain_graph=True then refuses
    to backward through the parameters' old values instead of silently using the new ones."""
    for bucket in plan.buckets:
        for p in bucket.params:
            p._vc[0] += 1
    for p, _ in plan.rest:
        p._vc[0] += 1


class Optimizer:
    """Base class. `params`: an iterable of tensors, or of dicts (parameter groups) each with a ``"params"``
    entry and optional per-group hyperparameters that override `defaults`."""

    _export_step = True          # whether state_dict() shows "step" (PyTorch's SGD does not)

    def __init__(self, params, defaults):
        if isinstance(params, Tensor):
            raise TypeError("optimizer: params should be an iterable of Tensors or dicts, but got a Tensor "
                            "(pass [tensor] or model.parameters())")
        _malloc.tune_once()      # training starts: keep freed host buffers for reuse (tinylazy/_malloc.py)
        self.defaults = dict(defaults)
        self.state = {}
        self.param_groups = []
        self._pending = {}       # parameter -> loaded state, for parameters that were still lazy at load time
        self._buckets = {}       # group index -> [FlatBucket, ...] (one per dtype)
        self._plans = {}         # group index -> _Plan of the last step
        self._scratch = Scratch()
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    # --- groups -----------------------------------------------------------------------------------------
    def add_param_group(self, param_group):
        """Add a group: a dict with ``"params"`` and optional hyperparameters (the defaults fill the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"add_param_group: expected a dict, got {type(param_group).__name__}")
        group = dict(param_group)
        params = group.get("params")
        if params is None:
            raise ValueError("add_param_group: the group has no 'params' entry")
        params = [params] if isinstance(params, Tensor) else list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but parameter {i} of the group is a "
                                f"{type(p).__name__}")
            if p.grad_fn is not None:
                raise ValueError(f"optimizer can't optimize a non-leaf Tensor (parameter {i} of the group was "
                                 "computed by an op; use .detach() or a Parameter)")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("optimizer: a parameter group lists the same parameter more than once")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in params):
            raise ValueError("optimizer: some parameters appear in more than one parameter group")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        group["params"] = params
        self._check_group(group)
        self.param_groups.append(group)
        self._forget_plans()

    def _check_group(self, group):
        """Validate a group's hyperparameters (subclasses add their own checks)."""
        if not group["lr"] >= 0:
            raise ValueError(f"Invalid learning rate: {group['lr']}")

    def zero_grad(self, set_to_none=True):
        """Drop the gradients (``set_to_none=True``, the default) or fill them with zeros in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.grad_fn = None
                    p.grad.requires_grad = False
                    p.grad.array.fill(0)

    # --- the step -----------------------------------------------------------------------------------------
    def step(self, closure=None):
        """One update of every parameter that has data and a gradient. `closure` (optional) re-evaluates
        the model and returns the loss, which step returns."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        if self._pending:
            self._adopt_pending()
        for gi, group in enumerate(self.param_groups):
            plan = self._plan(gi, group)
            for bucket in plan.buckets:
                self._step_bucket(group, bucket)
            if plan.rest:
                self._step_each(group, plan)
            _new_versions(plan)
        return loss

    def _plan(self, gi, group):
        """Which parameters of group `gi` step this time, and how: the last plan is reused while the same
        parameters have gradients, their arrays are the same objects and the state names are the same
        (checking that costs a few identity tests per parameter); otherwise a new plan is made."""
        params = group["params"]
        names = self._state_names(group)
        plan = self._plans.get(gi)
        if plan is not None and plan.matches(params, names):
            return plan
        plan = self._plans[gi] = _Plan(names)
        small = {}
        for p in params:
            g = p.grad is not None
            if not g or is_lazy(p):
                plan.reusable = plan.reusable and not g       # a lazy parameter with a grad: re-plan each step
                plan.expected.append(None)
                continue
            d = p.array
            plan.expected.append(d)
            if backend.is_meta(d):                            # shapes only: nothing to update
                continue
            if p in self.state:
                self._conform(self.state[p], d)
            if isinstance(d, np.ndarray) and d.size <= SMALL and names:   # stateless (plain SGD): no gain
                small.setdefault(d.dtype, []).append(p)
            else:
                plan.rest.append((p, self._work(d)))
        old = {b.dtype: b for b in self._buckets.get(gi, ())}
        for dtype, members in small.items():
            if len(members) < 2:
                plan.rest.extend((p, self._work(p.array)) for p in members)
                continue
            bucket = old.get(dtype)
            if bucket is None or not bucket.matches(members, names):
                bucket = FlatBucket(members, [self._state_for(p, group, names) for p in members], names, dtype)
            plan.buckets.append(bucket)
        self._buckets[gi] = plan.buckets
        if not plan.reusable:
            del self._plans[gi]
        return plan

    def _step_bucket(self, group, bucket):
        steps = {st["step"] for st in bucket.states}
        update = self._updater(group)
        if len(steps) != 1:                  # members at different steps (rare): update them one by one
            for p, st in zip(bucket.params, bucket.states):
                self._update_one(update, p, st)
            return
        step = steps.pop()
        bucket.gather()
        update(bucket.P, bucket.G, bucket.flat, _capture.counter(bucket.states, step), bucket.work)
        bucket.scatter()
        for st in bucket.states:
            st["step"] = step + 1

    def _forget_plans(self):
        self._buckets.clear()
        self._plans.clear()

    def _step_each(self, group, plan):
        """Update the plan's cpu parameters one by one; cuda ones in one fused call per (device, dtype, step)
        when the optimizer has a fused kernel, else one by one too. A rule without state arrays (plain SGD)
        keeps no state at all, as in PyTorch."""
        names = plan.names
        update = self._updater(group)
        cuda = {}
        for p, work in plan.rest:
            st = self._state_for(p, group, names) if names else None
            d = p.array
            if not isinstance(d, np.ndarray):
                key = (backend.device_of(d), d.dtype, 0 if st is None else st["step"])
                cuda.setdefault(key, []).append((p, st, work))
                continue
            self._update_one(update, p, st, work)
        for (_, _, step), members in cuda.items():
            ps = [p for p, _, _ in members]
            states = [st for _, st, _ in members]
            step = _capture.counter([st for st in states if st is not None], step)
            if not self._fused(group, [p.array for p in ps], [p.grad.array for p in ps], states, step):
                for p, st, work in members:
                    self._update_one(update, p, st, work)
                continue
            for st in states:
                if st is not None:
                    st["step"] = step + 1

    def _work(self, d):
        """`work(slot)` for the update rules: reusable work arrays shaped like the raw array `d`."""
        return partial(self._scratch.get, d)

    def _update_one(self, update, p, st, work=None):
        d, g = p.array, p.grad.array
        if g.shape != d.shape:
            raise ValueError(f"optimizer step: a parameter of shape {tuple(d.shape)} has a .grad of shape "
                             f"{tuple(g.shape)}")
        work = work or self._work(d)
        if st is None:
            update(d, g, None, 0, work)
        else:
            update(d, g, st, _capture.counter((st,), st["step"]), work)
            st["step"] += 1

    def _state_for(self, p, group, names):
        """The state dict of `p`, created (zeros) at the first step that sees it, and completed with any state
        array that `names` asks for and it lacks (e.g. after turning on amsgrad)."""
        st = self.state.get(p)
        if st is None:
            st = self.state[p] = {"step": 0}
        for name in names:
            if name not in st:
                st[name] = self._new_state_array(p, st, name)
        return st

    @staticmethod
    def _conform(st, d):
        """Move/cast a parameter's state arrays to its array's device and dtype (they differ only when the
        parameter was moved or cast after steps were taken, e.g. ``model.double()``)."""
        dev = backend.device_of(d)
        for key, value in st.items():
            if hasattr(value, "shape") and (value.dtype != d.dtype or backend.device_of(value) != dev):
                st[key] = backend.to_device(value, dev, dtype=d.dtype)

    def _new_state_array(self, p, st, name):
        d = p.array
        return backend.full(tuple(d.shape), 0, d.dtype, backend.device_of(d))

    # --- subclass hooks -----------------------------------------------------------------------------------
    def _state_names(self, group):
        return ()

    def _updater(self, group):
        raise NotImplementedError

    def _fused(self, group, params, grads, states, step):
        return False

    # --- state_dict (tinylazy/optim/_state_io.py) ----------------------------------------------------------
    def state_dict(self):
        """``{"state": {index: {"step": tensor, name: tensor, ...}}, "param_groups": [{hyperparameters...,
        "params": [index, ...]}]}``, PyTorch's format; the tensors are copies (a snapshot)."""
        return _state_io.pack(self)

    def load_state_dict(self, state_dict):
        """Load a state_dict() (of an optimizer of the same kind over parameters of the same shapes). The
        hyperparameters of each group are replaced by the saved ones; state arrays are copied and cast to
        each parameter's device and floating dtype."""
        _state_io.load(self, state_dict)

    def _adopt_pending(self):
        """Move loaded state of parameters that were lazy at load time into place once they have data."""
        for p, (index, entry) in list(self._pending.items()):
            if not is_lazy(p):
                self.state[p] = _state_io.cast_entry(p, index, entry)
                del self._pending[p]
                self._forget_plans()

    # --- display ------------------------------------------------------------------------------------------
    def __repr__(self):
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for key in sorted(k for k in group if k != "params"):
                lines.append(f"    {key}: {group[key]}")
        lines.append(")")
        return "\n".join(lines)
