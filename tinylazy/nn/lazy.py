"""The lazy machinery, written once for every layer.

A layer with sizes that may be unknown declares three things (see `layers/linear.py`):

- ``lazy_sizes``: the names of those sizes, e.g. ``("in_features",)``;
- ``infer_sizes(x)``: validates an input and returns the sizes it implies, e.g. ``{"in_features": x.shape[-1]}``;
- ``parameter_shapes()``: the shape of each parameter/buffer given the current sizes (None where unknown);

and ends its ``__init__`` with `setup_lazy(...)`. Everything else happens here, the same way for every layer:

1. `prepare(module, args, kwargs)` runs before each forward of such a layer. It looks at the forward's first
   argument (positional, or by its name: `layer(input=x)`), checks the input's dtype, asks
   `infer_sizes`, compares with the sizes already fixed (a different size is a `ShapeError` naming the
   module path, before any computation) and, on the first call, *materializes*: fixes the sizes, then
   allocates every lazy tensor of the layer in place on the input's device with its floating dtype (an
   explicit `module.to(...)` wins), then initializes (the layer's `reset_parameters`, its
   ``weight_init=``/``bias_init=``, then the recorded `nn.init` calls and `.data` in-place inits).
   Validation comes before allocation.
2. Every materialization is written to the *journal* of the current top-level call. If that call raises
   anywhere, `rollback` makes every tensor it materialized lazy again and restores the sizes, so a failed
   first call leaves the model exactly as it was.
3. `trace` runs the forward on the meta device (shapes only). It is a placement: every lazy tensor is placed
   on meta for the trace, so `prepare` materializes meta arrays the usual way; `materialize()` then
   allocates the real arrays, and `summary()` reads the shapes and rolls back.
"""
import inspect
import threading

import numpy as np

from .. import backend, autograd
from .. import dtypes as _dt
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .parameter import LazyTensor, UninitializedParameterError, HINT, read_slot, fill_slot


class _State(threading.local):
    journal = None          # list of _Entry while a top-level call (or a trace) runs


_state = _State()


class _Entry:
    """One materialization: the module, its sizes before, the tensors it allocated."""
    __slots__ = ("module", "old_sizes", "tensors")

    def __init__(self, module, old_sizes, tensors):
        self.module, self.old_sizes, self.tensors = module, old_sizes, tensors


def describe(module):
    """How messages name a module: its path and type, e.g. ``Linear '0'`` (just the type for a root)."""
    path = module.__dict__.get("_path") or ""
    return f"{type(module).__name__} '{path}'" if path else type(module).__name__


# --- 0. the protocol a layer with sizes to infer overrides ------------------------------------------
class LazyProtocol:
    """The defaults of the lazy protocol (a base of `nn.Module`); a layer with sizes to infer overrides them."""
    lazy_sizes = ()          # names of the sizes this layer can infer from its first input
    needs_float = True       # a sized layer rejects integer/bool input with a clear message
    _sized = False           # True for classes that define infer_sizes (set by __init_subclass__)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._sized = cls.infer_sizes is not LazyProtocol.infer_sizes

    def infer_sizes(self, x):
        """{size name: value} implied by input `x`, after validating it (rank, divisibility, ...)."""
        return {}

    def parameter_shapes(self):
        """{parameter/buffer name: shape} for the current sizes (None where a size is unknown)."""
        return {}

    def sizes_from_shapes(self, shapes):
        """The sizes implied by loaded shapes {name: shape}; used by load_state_dict on a lazy layer."""
        return {}

    def setup_lazy(self, device=None, dtype=None, **initializers):
        """End of a sized layer's __init__: remember `weight_init=`/`bias_init=`-style callables, give the
        lazy tensors their partial shapes, and allocate right away when every size is already known."""
        self.__dict__["_initializers"] = {k[:-len("_init")]: fn for k, fn in initializers.items()}
        if device is not None or dtype is not None:
            self._place(backend.device(device) if device is not None else None, _dt.to_dtype(dtype))
        if all(getattr(self, n) is not None for n in self.lazy_sizes):
            pending = lazy_members(self)
            shapes = self.parameter_shapes()
            for name, t in pending:
                state = t._lazy
                fill_slot(t, backend.empty(tuple(shapes[name]), state.dtype_for(_dt.get_default_dtype()),
                                           state.device_for(backend.CPU)))
            initialize(self, [t for _, t in pending])
        else:
            refresh_partial_shapes(self)


# --- 1. before each forward of a sized layer ------------------------------------------------------
def prepare(module, args, kwargs=None):
    """Check the input against the layer's sizes; on the first input, materialize the layer.

    It runs in full on every call. (Skipping it when the input's dtype and shape repeat saved 0.7% of the
    instructions of an MLP train step, 1.2% of a LeNet step, and needed an invalidation call wherever a
    member changes: removed.)"""
    x = args[0] if args else (kwargs or {}).get(first_parameter(type(module)))
    if not isinstance(x, Tensor):
        if not (hasattr(x, "shape") and hasattr(x, "dtype")):
            return                      # no input, or not an array: let forward raise its own TypeError
        x = Tensor(x)                   # a raw NumPy/CuPy array: look at it as a tensor
    if module.needs_float and x.dtype.kind != "f":
        raise TypeError(f"{describe(module)} needs a floating-point input, got {x.dtype}: convert it first, "
                        f"e.g. x.float() (or x.to(tl.float64))")
    sizes = module.infer_sizes(x)
    missing = False
    for name, got in sizes.items():
        have = getattr(module, name)
        if have is None:
            missing = True
        elif have != got:
            raise ShapeError(f"{describe(module)}: expected an input with {name}={_size(have)}, got {_size(got)} "
                             f"(input shape {tuple(x.shape)}); the size was fixed by the first input, or at "
                             f"construction, and inference happens once")
    pending = lazy_members(module)
    if missing or pending:
        materialize_module(module, sizes, pending, x)
    else:
        _check_device(module, x)


_first_parameters = {}


def first_parameter(cls):
    """The name of the first parameter of `cls.forward` after self (e.g. "input"), cached per class."""
    name = _first_parameters.get(cls)
    if name is None:
        params = list(inspect.signature(cls.forward).parameters.values())[1:2]
        name = _first_parameters[cls] = params[0].name if params else ""
    return name


def _size(v):
    return tuple(v) if isinstance(v, list) else v


def _check_device(module, x):
    for t in module._parameters.values():
        if t is not None:
            a, b = t.array, x.array
            kind = type(a)
            if kind is type(b) and (kind is np.ndarray or kind is MetaArray or a.device == b.device):
                return                                    # the same device (the fast, common case)
            dev, got = t.device, x.device
            if dev != got:
                raise RuntimeError(f"{describe(module)}: the input is on {got} but the parameters are on {dev}; "
                                   f"nothing is moved silently: move the input (x.to('{dev}')) or the model "
                                   f"(model.to('{got}'))")
            return


def lazy_members(module):
    """[(name, tensor)] of the module's own parameters and buffers that are still lazy."""
    out = []
    for d in (module._parameters, module._buffers):
        for name, t in d.items():
            if isinstance(t, LazyTensor):
                try:
                    read_slot(t)
                except AttributeError:                    # the empty slot of a lazy tensor
                    out.append((name, t))
    return out


def materialize_module(module, sizes, pending, x):
    """Fix `sizes`, allocate `pending` lazy tensors in place (on x's device/dtype unless placed), init."""
    old = {name: getattr(module, name) for name in sizes}
    for name, value in sizes.items():
        setattr(module, name, value)
    try:
        shapes = module.parameter_shapes()
        arrays = []
        for name, t in pending:
            state = t._lazy
            shape = shapes.get(name) if name in shapes else state.partial_shape
            if shape is None or any(s is None for s in shape):
                raise RuntimeError(f"{describe(module)}: cannot tell the shape of '{name}' from the input "
                                   f"(got {shape}); this is a bug in the layer's parameter_shapes()")
            arrays.append(backend.empty(tuple(shape), state.dtype_for(x.dtype), state.device_for(x.device)))
    except BaseException:
        for name, value in old.items():
            setattr(module, name, value)
        raise
    tensors = [t for _, t in pending]
    for t, a in zip(tensors, arrays):
        fill_slot(t, a)
    if _state.journal is not None:
        _state.journal.append(_Entry(module, old, tensors))
    initialize(module, tensors)
    _check_device(module, x)


def initialize(module, tensors):
    """Fill freshly allocated tensors: the layer's default init, its weight_init=/bias_init=, then the
    `nn.init` calls and `.data` in-place inits recorded while the tensors were lazy (in the order made).
    Meta arrays (a trace) have no values to fill: they are left alone."""
    if not tensors or type(tensors[0].array) is MetaArray:
        return
    with autograd.no_grad():
        reset = getattr(module, "reset_parameters", None)
        if reset is not None:
            reset()
        for name, fn in module.__dict__.get("_initializers", {}).items():
            t = getattr(module, name, None)
            if fn is not None and t is not None and any(t is u for u in tensors):
                fn(t)
        for t in tensors:
            for fn, a, kw in t._lazy.deferred:
                fn(t, *a, **kw)


def refresh_partial_shapes(module):
    """Give every lazy tensor of a sized layer its partial shape and the names of its unknown sizes."""
    if not module._sized:
        return
    shapes = module.parameter_shapes()
    unknown = tuple(f"{n} of {describe(module)}" for n in module.lazy_sizes if getattr(module, n) is None)
    for name, t in lazy_members(module):
        if name in shapes:
            t._lazy.partial_shape = None if shapes[name] is None else tuple(shapes[name])
        t._lazy.unknown = unknown


# --- 2. the top-level call and its journal --------------------------------------------------------
def root_call(module, args, kwargs):
    """A top-level `module(...)`: run it; if it raises anywhere, undo every materialization it made."""
    journal = _state.journal = []
    try:
        out = module._call_impl(args, kwargs)
    except BaseException:
        rollback(journal)
        raise
    finally:
        _state.journal = None
    for entry in journal:
        for t in entry.tensors:
            t._lazy.deferred = []
    return out


def rollback(journal):
    for entry in reversed(journal):
        for t in entry.tensors:
            t._make_lazy()
        for name, value in entry.old_sizes.items():
            setattr(entry.module, name, value)
        refresh_partial_shapes(entry.module)


# --- 3. shape-only tracing: a placement on the meta device ---------------------------------------------
def as_meta_example(x, dtype):
    """A meta tensor from a real tensor, a meta tensor, or a shape tuple."""
    if isinstance(x, Tensor):
        return Tensor(MetaArray(x.shape, x.dtype))
    if isinstance(x, (tuple, list)) and all(isinstance(s, (int, np.integer)) for s in x):
        return Tensor(MetaArray(tuple(x), _dt.to_dtype(dtype) or _dt.get_default_dtype()))
    raise TypeError(f"materialize: an example must be a tensor (real or meta) or a shape tuple, got {x!r}")


def trace(module, examples, device=None, dtype=None, keep=True, hooks=None):
    """Run `module` on meta versions of `examples` (no activation memory, no FLOPs). For the trace every
    materialized tensor gets a meta stand-in and every lazy one is placed on meta (with the input's dtype),
    so each lazy tensor the forward reaches gets a meta array. Then, if `keep`, real arrays on the target
    device (`device`, else an explicit placement, else cpu) with `dtype` (else fixed, placement, the default
    dtype), initialized; if not `keep`, everything is rolled back. Returns the (meta) output."""
    if _state.journal is not None:
        raise RuntimeError("materialize()/summary() cannot run inside a forward call")
    metas = [as_meta_example(x, dtype) for x in examples]
    stand_ins, placed = _place_on_meta(module)
    journal = _state.journal = []
    handles = [m.register_forward_hook(h) for m, h in (hooks or ())]
    try:
        with autograd.no_grad():
            out = module._call_impl(tuple(metas), {})
    except BaseException:
        rollback(journal)
        raise
    finally:
        for h in handles:
            h.remove()
        _state.journal = None
        for t, array in stand_ins:
            _set_array(t, array)
        for state, dev, dt in placed:
            state.device, state.dtype = dev, dt
    if not keep:
        rollback(journal)
        return out
    try:
        dev, dt = backend.device(device) if device is not None else None, _dt.to_dtype(dtype)
        for entry in journal:
            for t in entry.tensors:
                state = t._lazy
                target = state.fixed_dtype or dt or state.dtype_for(_dt.get_default_dtype())
                fill_slot(t, backend.empty(tuple(t.array.shape), target, dev or state.device_for(backend.CPU)))
            initialize(entry.module, entry.tensors)
            for t in entry.tensors:
                t._lazy.deferred = []
    except BaseException:
        rollback(journal)
        raise
    return out


def _place_on_meta(module):
    """Give every materialized parameter/buffer a meta stand-in and place every lazy one on meta; returns
    what to restore: [(tensor, real array)], [(lazy state, device, dtype)]."""
    stand_ins, placed, seen = [], [], set()
    for m in module.modules():
        for d in (m._parameters, m._buffers):
            for t in d.values():
                if t is None or id(t) in seen:
                    continue
                seen.add(id(t))
                if isinstance(t, LazyTensor) and t.is_lazy:
                    state = t._lazy
                    placed.append((state, state.device, state.dtype))
                    state.device, state.dtype = backend.META, None
                    continue
                array = t.array
                stand_ins.append((t, array))
                _set_array(t, MetaArray(array.shape, array.dtype))
    return stand_ins, placed


def _set_array(t, array):
    if isinstance(t, LazyTensor):
        fill_slot(t, array)
    else:
        t.array = array


def require_materialized(module, what):
    """Raise the clear error for helpers that need real values (e.g. counting parameters)."""
    lazy = [n for n, t in list(module.named_parameters()) + list(module.named_buffers())
            if isinstance(t, LazyTensor) and t.is_lazy]
    if lazy:
        shown = ", ".join(lazy[:6]) + (", ..." if len(lazy) > 6 else "")
        raise UninitializedParameterError(f"{what}: the model still has uninitialized (lazy) parameters "
                                          f"({shown}): {HINT}")


# --- 4. the Lazy* names ---------------------------------------------------------------------------------
class _LazyAlias(type):
    """The type of the Lazy* names (see `lazy_alias`)."""

    def __call__(cls, *args, **kwargs):
        return cls.build(*args, **kwargs)

    def __instancecheck__(cls, obj):
        return isinstance(obj, cls.base) and obj.has_uninitialized_params()

    def __repr__(cls):
        return f"<lazy alias {cls.__module__}.{cls.__name__}: builds {cls.base.__name__} with sizes to infer>"


def lazy_alias(base):
    """Decorator: ``@lazy_alias(Linear) def LazyLinear(out_features, ...)`` makes `LazyLinear` a name whose
    call builds a plain `base` with its sizes left to infer (rule 1: laziness is a state, not a class, so
    ``type(LazyLinear(10)) is Linear``), and which answers ``isinstance`` as PyTorch's LazyLinear does: True
    while the module still has lazy parameters, False once they are materialized."""
    def wrap(build):
        return _LazyAlias(build.__name__, (), {
            "base": base, "build": staticmethod(build), "__doc__": build.__doc__,
            "__module__": build.__module__, "__signature__": inspect.signature(build)})
    return wrap
