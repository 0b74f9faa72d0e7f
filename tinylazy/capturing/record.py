"""Recording a step: every NumPy call on the step's arrays, logged as a program of calls on fixed buffers.

While a step is recorded, its arrays are `Rec` arrays: an ndarray subclass whose `__array_ufunc__` and
`__array_function__` (NumPy's dispatch protocols) and whose computing methods (reshape, astype, copy,
sum, __getitem__, __setitem__, fill, ...) route through the `Recorder`. The recorder runs the real NumPy call
on plain views of the same memory (so the recorded step computes exactly what the eager step computes) and
appends one entry to the program:

- a call that writes into given arrays (``out=``, ``a += b``, ``a[i] = v``, ``fill``, ``np.copyto``,
  ``np.add.at``) is logged as it is;
- a call that makes a new array is logged with ``out=`` that very array (ufuncs, reductions, concatenate,
  ...) or as "compute, then copy into it" where NumPy has no ``out=``;
- a call whose result is a view of its input (reshape of a contiguous array, transpose, basic slicing,
  broadcast_to, as_strided, ...) is not logged at: the view keeps seeing its base's memory.

Every array the step touches stays alive, so each keeps its memory for the life of the program: the replay
runs the same calls, in the same order, on the same memory (the arrays the recorder made are noted in
`Recorder.created`: the memory plan, plan.py, may then move those temporaries into a shared arena). Arrays made by NumPy's creation functions
(`np.empty`, `np.zeros`, ...) and plain views taken with `np.asarray`/`as_strided` would escape the
subclass, so those functions are replaced by recording versions for the duration of the recording
(creation.py; calls from other threads meanwhile get plain arrays; record one step at a time).

A value that leaves the arrays for Python (`float(a)`, `a.item()`, `bool(a.any())`) is noted with its
call site: whatever Python did with it is frozen into the program.
"""
import functools
import sys
import threading

import numpy as np

from .. import _capture_hooks as hooks

_STRIDE = np.lib.stride_tricks
_ORIG = {name: getattr(np, name) for name in ("empty", "zeros", "ones", "full", "empty_like", "zeros_like",
                                              "ones_like", "full_like", "asarray", "array", "ascontiguousarray")}
_ORIG_AS_STRIDED = _STRIDE.as_strided


def _plain(x):
    """A plain ndarray view of the same memory."""
    return np.ndarray.view(x, np.ndarray)


class Dynamic(float):
    """A per-step Python scalar (see hooks.scalars): the record-time value, plus where the replay finds the
    current one (``group.values[index]``)."""

    def __new__(cls, value, group, index):
        self = float.__new__(cls, value)
        self.group, self.index = group, index
        return self


class _ScalarGroup:
    """The values ``fn(*args)`` of one `hooks.scalars` call, recomputed before each replay."""

    def __init__(self, fn, args, values):
        self.fn, self.args, self.values = fn, args, tuple(values)

    def update(self):
        self.values = self.fn(*[a.current() if type(a) is hooks.Counter else a for a in self.args])


def _unwrap(x):
    """Rec arrays (also inside lists and tuples) as plain views; everything else as it is."""
    t = type(x)
    if t is Rec:
        return _plain(x)
    if t is tuple or t is list:
        return t(_unwrap(v) for v in x)
    return x


def _wrap(x):
    """A result for the step's code: ndarrays as Rec views, numpy scalars as 0-d Rec arrays."""
    if isinstance(x, np.ndarray):
        return x.view(Rec) if type(x) is np.ndarray else x
    if type(x) is tuple or type(x) is list:
        return type(x)(_wrap(v) for v in x)
    return x


def _as_buffer(x):
    """A computed result as the program's buffer for it: a plain ndarray (numpy scalars become 0-d)."""
    if type(x) is np.ndarray:
        return x
    if isinstance(x, np.generic):
        return np.array(x)
    return None


def arrays_in(x):
    """The ndarrays in a call's arguments: `x` itself, or inside tuples, lists, dict values and partials (a
    logged op is a partial; plan.py reads the program's arrays with this too)."""
    if isinstance(x, np.ndarray):
        yield x
    elif type(x) is tuple or type(x) is list:
        for v in x:
            yield from arrays_in(v)
    elif type(x) is dict:
        for v in x.values():
            yield from arrays_in(v)
    elif type(x) is functools.partial:
        yield from arrays_in(x.args)
        yield from arrays_in(x.keywords)


def _is_view_of(result, args):
    """True when `result` shares memory with an input array (a view, or the input itself)."""
    return any(np.may_share_memory(result, a) for a in arrays_in(args))


def _copy_into(buf, fn, args, kwargs):
    """Replay step of a computation NumPy has no ``out=`` for: compute, then copy into the buffer."""
    value = fn(*args, **kwargs)
    if np.shape(value) != buf.shape:
        raise RuntimeError(f"capture: {getattr(fn, '__name__', fn)} made an array of shape {np.shape(value)} "
                           f"during replay, {buf.shape} when it was recorded: a shape that depends on values "
                           "cannot be replayed (run this step eagerly: TINYLAZY_CAPTURE=0)")
    np.copyto(buf, value, casting="unsafe")


def _run_dynamic(fn, args, kwargs):
    """Replay step of a call with per-step scalars among its arguments."""
    fn(*[a.group.values[a.index] if type(a) is Dynamic else a for a in args], **kwargs)


# NumPy functions whose `out=` gives the same numbers as the call without it
_HAS_OUT = {np.concatenate, np.sum, np.mean, np.max, np.min, np.amax, np.amin, np.prod, np.take, np.cumsum,
            np.einsum, np.stack, np.dot, np.clip, np.matmul}
_FILLERS = {np.zeros_like: 0, np.ones_like: 1}
_METHOD_OUT = {"sum", "mean", "max", "min", "prod", "any", "all", "cumsum", "cumprod", "clip", "take", "round"}
_MUTATING = {"fill", "__setitem__", "sort", "put", "partition", "setfield", "itemset", "resize"}
_READS = {"item", "tolist", "__float__", "__int__", "__bool__", "__index__", "__complex__", "tobytes"}


class Recorder:
    """The log of one recorded step: `ops` (zero-argument callables, in program order), the per-step
    scalars and counters of tinylazy._capture_hooks, and the sites where values were read into Python."""

    def __init__(self):
        self.ops = []
        self.scalar_groups = []      # _ScalarGroup, updated before each replay
        self.counters = []           # (states, step at record time): each replay adds 1 to their "step"
        self.fresh_fns = []          # hooks.fresh calls (random draws)
        self.reads = []              # "file:line" of each value read into Python
        self.keep = []               # every array the program uses (keeps their memory)
        self.created = []            # the arrays made by the recorder (temporaries the memory plan may share)
        self.active = False
        self.thread = threading.get_ident()      # NumPy calls of other threads are not the step's

    # --- the log ---------------------------------------------------------------------------------------
    def log(self, fn, args, kwargs):
        self.keep.append((args, kwargs))
        if any(type(a) is Dynamic for a in args):
            self.ops.append(functools.partial(_run_dynamic, fn, args, kwargs))
        else:
            self.ops.append(functools.partial(fn, *args, **kwargs))

    def note_read(self, what):
        frame = sys._getframe(1)
        while frame.f_back is not None and frame.f_code.co_filename == __file__:     # the caller's line
            frame = frame.f_back
        self.reads.append(f"{what} at {frame.f_code.co_filename}:{frame.f_lineno}")

    # --- the dispatch protocols ------------------------------------------------------------------------
    def ufunc(self, uf, method, inputs, kwargs):
        fn = uf if method == "__call__" else getattr(uf, method)
        args = _unwrap(inputs)
        kw = {k: _unwrap(v) for k, v in kwargs.items()}
        result = fn(*[float(a) if type(a) is Dynamic else a for a in args], **kw)
        if method == "at":
            self.log(fn, args, kw)
            return result
        out = kwargs.get("out")
        if out is not None:
            self.log(fn, args, kw)
            return out[0] if len(out) == 1 else out
        if type(result) is tuple:
            bufs = tuple(_as_buffer(r) for r in result)
        else:
            bufs = (_as_buffer(result),)
        self.created.extend(b for b in bufs if b is not None)
        self.log(fn, args, dict(kw, out=bufs))
        return _wrap(bufs if type(result) is tuple else bufs[0])

    def function(self, func, args, kwargs):
        args = _unwrap(args)
        kw = {k: _unwrap(v) for k, v in kwargs.items()}
        result = func(*args, **kw)
        if func is np.copyto or kw.get("out") is not None:
            self.log(func, args, kw)
            return kwargs["out"] if kw.get("out") is not None else result
        if result is None:
            self.log(func, args, kw)
            return None
        if type(result) is tuple or type(result) is list:
            parts = [self._new_result(func, r, args, kw, copy_only=True) for r in result]
            return type(result)(parts)
        return self._new_result(func, result, args, kw)

    def _new_result(self, func, result, args, kw, copy_only=False):
        buf = _as_buffer(result)
        if buf is None:
            return result                       # not an array (a shape, a dtype, ...)
        if type(result) is np.ndarray and _is_view_of(result, [args, kw]):
            return result.view(Rec)
        self.created.append(buf)
        if copy_only:
            self.log(np.copyto, (buf, np.array(result)), {})     # a part of a tuple result: frozen value
            self.note_read(f"np.{func.__name__} (tuple result)")
        elif func in _FILLERS:
            self.log(np.ndarray.fill, (buf, _FILLERS[func]), {})
        elif func is _ORIG["empty_like"]:
            pass
        elif func in _HAS_OUT:
            self.log(func, args, dict(kw, out=buf))
        else:
            self.log(_copy_into, (buf, func, args, kw), {})
        return buf.view(Rec)

    def method(self, name, self_array, args, kwargs):
        base = getattr(np.ndarray, name)
        me = _plain(self_array)
        a = _unwrap(args)
        kw = {k: _unwrap(v) for k, v in kwargs.items()}
        result = base(me, *a, **kw)
        if name in _READS:
            self.note_read(f"ndarray.{name}")
            return result
        if name in _MUTATING:
            self.log(base, (me,) + a, kw)
            return result
        if kw.get("out") is not None:
            self.log(base, (me,) + a, kw)
            return kwargs["out"]
        buf = _as_buffer(result)
        if buf is None:
            return result
        if type(result) is np.ndarray and _is_view_of(result, [me, a]):
            return result.view(Rec)
        self.created.append(buf)
        if name in _METHOD_OUT and "out" not in kw:
            self.log(base, (me,) + a, dict(kw, out=buf))
        elif name in ("copy", "astype"):
            self.log(np.copyto, (buf, me), {"casting": "unsafe"})
        elif name in ("reshape", "ravel", "flatten") and "order" not in kw and buf.flags.c_contiguous:
            self.log(np.copyto, (buf.reshape(me.shape), me), {})
        else:
            self.log(_copy_into, (buf, base, (me,) + a, kw), {})
        return buf.view(Rec)

    # --- creation functions, while recording -----------------------------------------------------------
    def made(self, array, fill=None):
        self.created.append(array)
        if fill is not None:
            self.log(np.copyto, (array, fill), {"casting": "unsafe"})
        return array.view(Rec)

    # --- hooks (tinylazy._capture_hooks) --------------------------------------------------------------
    def counter(self, states, step):
        self.counters.append((tuple(states), int(step)))
        return hooks.Counter(step, tuple(states))

    def scalars(self, fn, args):
        values = fn(*[int(a) if type(a) is hooks.Counter else a for a in args])
        if not any(type(a) is hooks.Counter for a in args):
            return values
        group = _ScalarGroup(fn, args, values)
        self.scalar_groups.append(group)
        return tuple(Dynamic(v, group, i) for i, v in enumerate(values))

    def fresh(self, fn, args):
        with paused():
            buf = np.array(fn(*args))
        self.fresh_fns.append(fn)
        self.created.append(buf)
        self.log(_copy_into, (buf, fn, args, {}), {})
        return buf.view(Rec)


class Rec(np.ndarray):
    """An ndarray whose NumPy calls are logged by the recorder of the step being recorded."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        rec = _recording()
        if rec is None:
            return getattr(ufunc, method)(*_unwrap(inputs), **{k: _unwrap(v) for k, v in kwargs.items()})
        return rec.ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func, types, args, kwargs):
        rec = _recording()
        if rec is None:
            return func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return rec.function(func, args, kwargs)


def _method(name):
    def method(self, *args, **kwargs):
        rec = _recording()
        if rec is None:
            return getattr(np.ndarray, name)(_plain(self), *_unwrap(args), **kwargs)
        return rec.method(name, self, args, kwargs)
    method.__name__ = name
    return method


for _name in ("reshape", "ravel", "flatten", "copy", "astype", "__getitem__", "__setitem__", "fill", "sort",
              "put", "partition", "resize", "item", "tolist", "tobytes", "__float__", "__int__", "__bool__",
              "__index__", "__complex__", "sum", "mean", "max", "min", "prod", "any", "all", "std", "var",
              "argmax", "argmin", "argsort", "cumsum", "cumprod", "clip", "round", "dot", "take", "repeat",
              "nonzero", "searchsorted", "compress", "choose", "trace", "ptp", "conj", "conjugate"):
    if hasattr(np.ndarray, _name):
        setattr(Rec, _name, _method(_name))


# --- the recorder of this thread, if it is recording ------------------------------------------------
def _recording():
    rec = hooks.recorder
    return rec if rec is not None and rec.active and rec.thread == threading.get_ident() else None


class paused:
    """Inside: NumPy calls run plainly, nothing is logged (e.g. a random draw replayed as one call)."""

    def __enter__(self):
        self.rec = hooks.recorder
        if self.rec is not None:
            self.was, self.rec.active = self.rec.active, False
        return self

    def __exit__(self, *exc):
        if self.rec is not None:
            self.rec.active = self.was
        return False
