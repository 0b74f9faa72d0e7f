"""The step's state: every NumPy array that the step function can reach, swapped in and out of `Rec` form.

`tl.capture` knows nothing of modules or optimizers: the state of a step is whatever its function reaches
through its closure, the globals it names, its bound `self` and default arguments, and from there through
object attributes (``__dict__`` and ``__slots__``), dicts, lists, tuples and `functools.partial`s. That is
where a model's parameters and buffers, an optimizer's state, its flat buckets and scratch buffers live.
Before recording, every plain ndarray found in a mutable place (a Tensor's ``array``, a dict value, a list
item, an attribute) is replaced by a `Rec` view of the same memory, the same view for the same array, so
that identity tests (``p.array is plan_entry``) still hold; after recording every `Rec` is replaced back,
by the original array where there was one. Modules, classes and plain values are not entered.
"""
import functools
import types

import numpy as np

from ..tensor import Tensor
from .record import Rec

_ATOMS = (str, bytes, int, float, complex, bool, type(None), np.dtype, np.generic, range, slice,
          types.ModuleType, type, types.BuiltinFunctionType, types.BuiltinMethodType, types.CodeType)


def _names(code):
    """The global names a code object (and the functions defined inside it) may read."""
    names = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            names |= _names(c)
    return names


def walk(roots, convert):
    """Visit everything reachable from `roots`; each ndarray value found in a mutable place is passed to
    `convert`, and replaced by what it returns unless that is None."""
    seen = set()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, _ATOMS):
            continue
        seen.add(id(obj))
        if isinstance(obj, Tensor):
            new = convert(obj.array) if isinstance(obj.array, np.ndarray) else None
            if new is not None:
                obj.array = new
            stack.append(obj.grad)
        elif isinstance(obj, np.ndarray):
            continue
        elif type(obj) is dict:
            for k, v in list(obj.items()):
                if isinstance(v, np.ndarray):
                    new = convert(v)
                    if new is not None:
                        obj[k] = new
                else:
                    stack.append(v)
                stack.append(k)
        elif type(obj) is list:
            for i, v in enumerate(obj):
                if isinstance(v, np.ndarray):
                    new = convert(v)
                    if new is not None:
                        obj[i] = new
                else:
                    stack.append(v)
        elif isinstance(obj, (tuple, set, frozenset)):
            stack.extend(obj)
        elif isinstance(obj, types.FunctionType):
            stack.extend(c.cell_contents for c in obj.__closure__ or () if _filled(c))
            stack.extend(obj.__defaults__ or ())
            stack.extend((obj.__kwdefaults__ or {}).values())
            g = obj.__globals__
            stack.extend(g[n] for n in _names(obj.__code__) if n in g)
        elif isinstance(obj, types.MethodType):
            stack.extend((obj.__self__, obj.__func__))
        elif isinstance(obj, functools.partial):
            stack.extend((obj.func, obj.args, obj.keywords))
        else:
            d = getattr(obj, "__dict__", None)
            if type(d) is dict:
                stack.append(d)
            for cls in type(obj).__mro__:
                for slot in _slots(cls):
                    v = getattr(obj, slot, None)
                    if isinstance(v, np.ndarray):
                        new = convert(v)
                        if new is not None:
                            setattr(obj, slot, new)
                    elif v is not None:
                        stack.append(v)


def _filled(cell):
    try:
        cell.cell_contents
        return True
    except ValueError:
        return False


def _slots(cls):
    slots = cls.__dict__.get("__slots__", ())
    return (slots,) if isinstance(slots, str) else tuple(s for s in slots if s not in ("__weakref__", "__dict__"))


class Swap:
    """The step's state in `Rec` form while recording (`swap_in`), and back in plain form (`swap_out`)."""

    def __init__(self, roots):
        self.roots = roots
        self.rec_of = {}          # id(original) -> its Rec view
        self.originals = {}       # id(Rec view) -> the original array
        self.before = []          # the plain arrays found before recording

    def swap_in(self):
        def to_rec(a):
            if type(a) is not np.ndarray:
                return None
            r = self.rec_of.get(id(a))
            if r is None:
                r = self.rec_of[id(a)] = a.view(Rec)
                self.originals[id(r)] = a
                self.before.append(a)
            return r
        walk(self.roots, to_rec)

    def swap_out(self):
        """Put plain arrays back; returns every array found (the state after the step)."""
        plain = {}
        found = []

        def to_plain(a):
            if type(a) is Rec:
                p = plain.get(id(a))
                if p is None:
                    p = self.originals.get(id(a))
                    p = plain[id(a)] = np.ndarray.view(a, np.ndarray) if p is None else p
                found.append(p)
                return p
            if type(a) is np.ndarray:
                found.append(a)
            return None
        walk(self.roots, to_plain)
        return found
