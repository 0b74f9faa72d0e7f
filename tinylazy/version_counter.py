"""Version counters: a saved tensor changed in place between forward and backward is an error, not a silently
wrong gradient.

Every tensor has a version counter, `tensor._vc`: a one-element list that every in-place change of its
values bumps (+=, copy_, zero_, fill_, setitem, the optimizers' steps, ...; `tensor._version` reads it).
Views (reshape, permute, basic indexing, expand, detach, ...) share their base's list, so a change through
any of them counts for all; `.data` gets a fresh one (PyTorch's escape hatch, which autograd does not
watch). When `Function.apply` records a node, it notes the version of each input or output tensor whose
memory forward kept for backward (`_watch_saved`, or the cheaper `_watch_declared` for a Function that
declares `_saves`); backward calls `_check_versions` before using them.
"""
import numpy as np

from . import backend
from . import tensor as _tensor     # for the Tensor class, looked up at call time (see autograd.py)


def _storage(a):
    """The array that owns the memory `a` looks at (`a` itself when it is no view)."""
    base = getattr(a, "base", None)
    while base is not None:
        a, base = base, getattr(base, "base", None)
    return a


def _share_counter_if_view(result, source):
    """Give `result` the version counter of `source` when its array is a view of source's memory."""
    if _storage(result.array) is _storage(source.array):
        result._vc = source._vc


def _watch_saved(ctx, args, outs):
    """Note on `ctx` the version of every input or output tensor whose memory forward kept on ctx (an
    attribute that is the array, a view of it, or such arrays in a tuple or list): `_saved_versions`.
    (Runs for every recorded node, so the NumPy case is written out inline.)"""
    cp = backend._cupy
    device_array = cp.ndarray if cp else None
    kept = set()                          # ids of the memory owners of the arrays on ctx
    for v in ctx.__dict__.values():
        tv = type(v)
        if tv is tuple or tv is list:
            for u in v:
                tu = type(u)
                if tu is np.ndarray or tu is device_array:
                    kept.add(id(u if u.base is None else _storage(u)))
        elif tv is np.ndarray or tv is device_array:
            kept.add(id(v if v.base is None else _storage(v)))
    if not kept:
        return
    saved = []
    for i, t in enumerate(args):
        if isinstance(t, _tensor.Tensor):
            a = t.array
            if id(a if getattr(a, "base", None) is None else _storage(a)) in kept:
                saved.append((t._vc, t._vc[0], a, i))
    for k, t in enumerate(outs):
        a = t.array
        if id(a if getattr(a, "base", None) is None else _storage(a)) in kept:
            saved.append((t._vc, t._vc[0], a, -1 - k))
    if saved:
        ctx._saved_versions = saved


def _watch_declared(ctx, saves, args, outs):
    """_watch_saved for a Function that declares `_saves`, ((attribute, position), ...): the attribute, when
    forward set it to something other than None, holds (a view of) input `position`'s array, or output
    -1-position's. Much cheaper than looking; tests check each declaration against _watch_saved."""
    d = ctx.__dict__
    saved = []
    for name, pos in saves:
        if d.get(name) is not None:
            t = args[pos] if pos >= 0 else outs[-1 - pos]
            if isinstance(t, _tensor.Tensor):     # (a Python number operand has no version)
                vc = t._vc
                saved.append((vc, vc[0], t.array, pos))
    if saved:
        ctx._saved_versions = saved


def _check_versions(node):
    """Raise if a tensor that `node` saved for backward was changed in place since (PyTorch's message)."""
    for vc, version, array, where in node._saved_versions:
        if vc[0] != version:
            what = f"input {where}" if where >= 0 else f"output {-1 - where}"
            raise RuntimeError(
                f"one of the variables needed for gradient computation has been modified by an inplace "
                f"operation: the tensor of shape {tuple(array.shape)} saved by {type(node).__name__} (its {what}) "
                f"is at version {vc[0]}; expected version {version} instead. Hint: change it out of place "
                f"(x = x + 1, not x += 1), clone it before the in-place change, or change it after backward.")
