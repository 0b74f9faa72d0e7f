"""NumPy's creation and conversion functions while a step is recorded (see record.py).

Arrays made by `np.empty`, `np.zeros`, ... inside the step, and plain views taken of a step's array with
`np.asarray`, `np.ascontiguousarray` or `as_strided`, would be plain ndarrays whose later NumPy calls nobody
logs. `install()` replaces these functions in the `numpy` module by versions that return `Rec` arrays (and log
the fill of zeros/ones/full), for the duration of a recording; `uninstall()` puts NumPy's back.
"""
import numpy as np

from .record import _ORIG, _ORIG_AS_STRIDED, _STRIDE, Rec, _recording, _unwrap


# --- NumPy's creation functions while recording ------------------------------------------------------------
def _empty(*args, **kwargs):
    rec, out = _recording(), _ORIG["empty"](*args, **kwargs)
    return out if rec is None else rec.made(out)


def _filled(name, value):
    def make(shape, dtype=float, *args, **kwargs):
        rec, out = _recording(), _ORIG[name](shape, dtype, *args, **kwargs)
        return out if rec is None else rec.made(out, value)
    return make


def _full(shape, fill_value, *args, **kwargs):
    rec = _recording()
    out = _ORIG["full"](shape, _unwrap(fill_value), *args, **kwargs)
    return out if rec is None else rec.made(out, _unwrap(fill_value))


def _like(name, value):
    def make(prototype, *args, **kwargs):
        if type(prototype) is Rec:            # dispatched to the recorder by __array_function__
            return _ORIG[name](prototype, *args, **kwargs)
        rec, out = _recording(), _ORIG[name](prototype, *args, **kwargs)
        if rec is None:
            return out
        return rec.made(out, None if value is None else (args[0] if value == "arg" else value))
    return make


def _asarray(a, dtype=None, *args, **kwargs):
    if type(a) is Rec and _recording() is not None and not args and set(kwargs) <= {"copy"}:
        if kwargs.get("copy"):
            return a.astype(a.dtype if dtype is None else dtype)
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return _ORIG["asarray"](a, dtype, *args, **kwargs)


def _array(a, dtype=None, *args, copy=True, **kwargs):
    if type(a) is Rec and _recording() is not None and not args and not kwargs:
        if copy:
            return a.astype(a.dtype if dtype is None else dtype)
        return a if dtype is None or np.dtype(dtype) == a.dtype else a.astype(dtype)
    return _ORIG["array"](a, dtype, *args, copy=copy, **kwargs)


def _ascontiguousarray(a, dtype=None, **kwargs):
    if type(a) is Rec and _recording() is not None and not kwargs:
        want = a.dtype if dtype is None else np.dtype(dtype)
        if a.flags.c_contiguous and want == a.dtype:
            return a
        out = np.empty(a.shape, want)
        np.copyto(out, a, casting="unsafe")
        return out
    return _ORIG["ascontiguousarray"](a, dtype, **kwargs)


def _as_strided(x, shape=None, strides=None, subok=False, writeable=True):
    if type(x) is Rec:
        subok = True                          # keep the view a Rec: later copies of it must be logged
    return _ORIG_AS_STRIDED(x, shape, strides, subok, writeable)


_PATCHES = {"empty": _empty, "zeros": _filled("zeros", 0), "ones": _filled("ones", 1), "full": _full,
            "empty_like": _like("empty_like", None), "zeros_like": _like("zeros_like", 0),
            "ones_like": _like("ones_like", 1), "full_like": _like("full_like", "arg"),
            "asarray": _asarray, "array": _array, "ascontiguousarray": _ascontiguousarray}


def install():
    """Route NumPy's creation functions through the recorder (until `uninstall`)."""
    for name, fn in _PATCHES.items():
        setattr(np, name, fn)
    _STRIDE.as_strided = _as_strided


def uninstall():
    for name, fn in _ORIG.items():
        setattr(np, name, fn)
    _STRIDE.as_strided = _ORIG_AS_STRIDED
