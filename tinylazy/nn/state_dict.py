"""`Module.state_dict()` and `Module.load_state_dict()`.

A state dict maps dotted paths (``"0.weight"``) to tensors: parameters and persistent buffers, module by
module, in registration order (a tied tensor appears under each of its names, as in PyTorch). A lazy
model's state dict holds its lazy Parameters themselves.

Loading is checked completely before anything changes (missing, unexpected and mis-shaped keys, lazy values
for materialized tensors), so a failed load leaves the model as it was. Loading into a lazy layer
materializes it from the checkpoint's shapes: the layer computes its sizes (`sizes_from_shapes`), checks
that its parameter shapes follow, allocates in place (on the checkpoint's device and dtype unless the
model was placed explicitly) and copies the values.
"""
from collections import OrderedDict, namedtuple

import numpy as np

from .. import backend
from .. import dtypes as _dt
from ..autograd import no_grad
from ..tensor import Tensor
from . import lazy
from .parameter import is_lazy, _fmt_shape

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _entries(module, prefix=""):
    """(key, owning module, local name, tensor) for every parameter and persistent buffer, in order."""
    for name, p in module._parameters.items():
        if p is not None:
            yield prefix + name, module, name, p
    for name, b in module._buffers.items():
        if b is not None and name not in module._non_persistent:
            yield prefix + name, module, name, b
    for name, child in module._modules.items():
        if child is not None:
            yield from _entries(child, prefix + name + ".")


def state_dict(module, destination=None, prefix="", keep_vars=False):
    out = OrderedDict() if destination is None else destination
    for key, _, _, t in _entries(module, prefix):
        out[key] = t if keep_vars or is_lazy(t) else t.detach()
    return out


def _as_tensor(key, v):
    if isinstance(v, Tensor):
        return v
    if isinstance(v, (np.ndarray, np.generic, int, float, bool)):
        return Tensor(np.asarray(v))
    raise TypeError(f"load_state_dict: the value of '{key}' is a {type(v).__name__}, expected a tensor")


def _shape(t):
    return tuple(t.partial_shape) if is_lazy(t) else t.shape


def load_state_dict(module, sd, strict=True):
    if not hasattr(sd, "keys"):
        raise TypeError(f"load_state_dict: expected a dict-like state dict, got {type(sd).__name__}")
    entries = list(_entries(module))
    own = {key for key, _, _, _ in entries}
    missing = [key for key, _, _, _ in entries if key not in sd]
    unexpected = [key for key in sd.keys() if key not in own]
    errors, copies, lazy_plan = [], [], OrderedDict()
    for key, m, name, t in entries:
        if key not in sd:
            continue
        v = _as_tensor(key, sd[key])
        if is_lazy(v):
            if not is_lazy(t):
                errors.append(f"'{key}': the checkpoint's value is uninitialized (a lazy parameter that was never "
                              f"materialized), but the model's has shape {tuple(t.shape)}; run one forward on the source "
                              f"model (or materialize it) before taking its state_dict")
            continue                                   # lazy into lazy: nothing to load
        if is_lazy(t):
            lazy_plan.setdefault(id(m), (m, OrderedDict()))[1][name] = (key, v)
        elif v.shape != t.shape:
            errors.append(f"size mismatch for {key}: copying a param with shape {tuple(v.shape)} from checkpoint, "
                          f"the shape in current model is {tuple(t.shape)}.")
        else:
            copies.append((t, v))
    plans = [_plan_lazy(m, values, errors) for m, values in lazy_plan.values()]
    if strict:
        if unexpected:
            errors.insert(0, "Unexpected key(s) in state_dict: " + ", ".join(f'"{k}"' for k in unexpected) + ".")
        if missing:
            errors.insert(0, "Missing key(s) in state_dict: " + ", ".join(f'"{k}"' for k in missing) + ".")
    if errors:
        raise RuntimeError(f"Error(s) in loading state_dict for {type(module).__name__}:\n\t" + "\n\t".join(errors))
    with no_grad():
        for t, v in copies:
            _copy(t, v)
        for plan in plans:
            _materialize_from_checkpoint(*plan)
    return IncompatibleKeys(missing, unexpected)


def _copy(t, v):
    t.array[...] = backend.to_device(v.array, t.device, t.dtype)
    t._vc[0] += 1                           # an in-place change (see autograd's version counters)


def _plan_lazy(m, values, errors):
    """Check that the checkpoint's shapes fit lazy module `m`; return (m, sizes, values)."""
    shapes = {name: v.shape for name, (_, v) in values.items()}
    if not m._sized:
        for name, (key, v) in values.items():
            partial = getattr(m, name).partial_shape
            if partial is not None and (len(partial) != len(v.shape) or
                                        any(p is not None and p != s for p, s in zip(partial, v.shape))):
                errors.append(f"size mismatch for {key}: the checkpoint has shape {tuple(v.shape)}, the (lazy) "
                              f"parameter's partial shape is {_fmt_shape(partial)}")
        return m, {}, values
    try:
        sizes = m.sizes_from_shapes(shapes)
    except (IndexError, KeyError, TypeError, ValueError):
        sizes = None
    old = {k: getattr(m, k) for k in (sizes or ())}
    try:
        for k, s in (sizes or {}).items():
            setattr(m, k, s)
        expected = m.parameter_shapes()
    finally:
        for k, s in old.items():
            setattr(m, k, s)
    for name, (key, v) in values.items():
        want = expected.get(name)
        if sizes is None or want is None or tuple(want) != v.shape:
            errors.append(f"size mismatch for {key}: the checkpoint has shape {tuple(v.shape)}, which does not fit "
                          f"{lazy.describe(m)} ({m.extra_repr()}; expected {_fmt_shape(getattr(m, name).partial_shape)})")
    return m, sizes, values


def _materialize_from_checkpoint(m, sizes, values):
    for k, s in sizes.items():
        setattr(m, k, s)
    shapes = m.parameter_shapes() if m._sized else {}
    ref = next(iter(values.values()))[1]
    allocated = []
    for name, t in lazy.lazy_members(m):
        v = values[name][1] if name in values else None
        shape = v.shape if v is not None else shapes.get(name)
        if shape is None or any(s is None for s in shape):
            continue                                    # not in the checkpoint and still unknown: stays lazy
        dtype = v.dtype if v is not None else ref.dtype if ref.dtype.kind == "f" else _dt.get_default_dtype()
        device = (ref if v is None else v).device
        t.array = backend.empty(tuple(shape), t._lazy.dtype_for(dtype), t._lazy.device_for(device))
        allocated.append(t)
    lazy.initialize(m, allocated)
    for name, (_, v) in values.items():
        t = getattr(m, name)
        _copy(t, v)
        t._lazy.deferred = []                           # the loaded values win over recorded inits
    lazy.refresh_partial_shapes(m)
