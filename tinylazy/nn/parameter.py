"""Parameters and buffers, with the lazy state.

A *lazy* tensor is a tensor whose array does not exist yet: only a partial shape such as ``(256, None)``
(None marks a size that the first input will tell). Laziness is a state of the object, not a class: the
same `Parameter` object later receives its array in place, so optimizers, hooks and tied references made
before the first forward stay valid.

How the state is stored: `Tensor` keeps its array in the `array` slot. A lazy tensor simply leaves that slot
*empty* (`fill_slot`, `read_slot` and `empty_slot` below are the only raw accesses to it). Reading an empty
slot raises AttributeError, Python then asks `__getattr__("array")`, and that turns it into
`UninitializedParameterError` with the parameter's path, its unknown sizes and the fix. Every property and op
that needs values (`shape`, `numel()`, `x @ w`, ...) reads `array`, so all of them fail the same clear way,
and materialized tensors pay nothing for it (the getter is the slot itself). What a lazy tensor knows besides
(partial shape, placement, recorded inits, ...) is one `LazyState` object, ``t._lazy``.
"""
import copy

import numpy as np

from .. import backend
from ..tensor import Tensor
from .. import dtypes as _dt

_SLOT = Tensor.array          # the base class' member descriptor for the `array` slot


def read_slot(t):
    """The array in `t`'s slot; AttributeError when the slot is empty (`t` is lazy)."""
    return _SLOT.__get__(t)


def fill_slot(t, array):
    """Put `array` in `t`'s slot: `t` is materialized (no check, no conversion)."""
    _SLOT.__set__(t, array)


def empty_slot(t):
    """Empty `t`'s slot: `t` is lazy again."""
    _SLOT.__delete__(t)


HINT = ("run one forward on an example first (e.g. `net(X)`), or call `net.materialize(example)` "
        "or `net.load_state_dict(...)`")


class UninitializedParameterError(RuntimeError):
    """A lazy parameter or buffer was asked for its values (or shape) before it was materialized."""


def is_lazy(t):
    """True for a Parameter/buffer that has no array yet."""
    return isinstance(t, LazyTensor) and t.is_lazy


def _fmt_shape(shape):
    if shape is None:
        return "?"
    inner = ", ".join("?" if s is None else str(s) for s in shape)
    return f"({inner},)" if len(shape) == 1 else f"({inner})"


class LazyState:
    """What a lazy tensor knows before its array exists. Every LazyTensor has one (``t._lazy``), kept after
    materialization, so that a rolled-back first call finds it again.

    partial_shape   the shape with None for unknown sizes (None: not even the rank is known)
    fixed_dtype     a dtype that never follows the input (int64 for `num_batches_tracked`), else None
    device, dtype   the placement asked for with `module.to()` while lazy; None: the first input decides
    deferred        [(fn, args, kwargs)]: `nn.init` calls and `.data` inits, replayed at materialization
    path            where the tensor sits in its model (``"0.weight"``), for messages
    unknown         the names of the sizes still missing (``("in_features of Linear '0'",)``)
    """
    __slots__ = ("partial_shape", "fixed_dtype", "device", "dtype", "deferred", "path", "unknown")

    def __init__(self, partial_shape=None, fixed_dtype=None):
        self.partial_shape = None if partial_shape is None else tuple(partial_shape)
        self.fixed_dtype = None if fixed_dtype is None else np.dtype(fixed_dtype)
        self.device = self.dtype = self.path = None
        self.deferred, self.unknown = [], ()

    def __copy__(self):
        new = LazyState(self.partial_shape, self.fixed_dtype)
        new.device, new.dtype, new.path, new.unknown = self.device, self.dtype, self.path, self.unknown
        new.deferred = list(self.deferred)
        return new

    def dtype_for(self, default):
        """The dtype to allocate with: fixed > placed with `.to()` > `default` (the input's)."""
        return self.fixed_dtype or self.dtype or default

    def device_for(self, default):
        """The device to allocate on: placed with `.to()` > `default` (the input's)."""
        return self.device or default


class LazyTensor(Tensor):
    """A Tensor that may be lazy (its `array` slot empty). Base of `Parameter` and `Buffer`."""
    _kind = "tensor"

    # `array` reads the slot itself (fast: an empty slot falls through to __getattr__ below); assigning an
    # array (or a tensor, whose array is taken) fills the slot, which also ends the lazy state.
    def _set_array(self, value):
        fill_slot(self, value.array if isinstance(value, Tensor) else value)

    array = property(_SLOT.__get__, _set_array)

    def __init__(self, data=None, requires_grad=False):
        if data is None:
            data = np.empty((0,), _dt.get_default_dtype())
        super().__init__(data, requires_grad=False)
        self._lazy = LazyState()
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def lazy(cls, partial_shape, dtype=None, requires_grad=None):
        """A lazy tensor of shape `partial_shape` (None for unknown sizes; the whole shape may be None).
        `dtype` fixes the dtype (otherwise it follows the first input, or an explicit placement)."""
        t = cls._make(None, cls._default_requires_grad if requires_grad is None else bool(requires_grad))
        t._lazy = LazyState(partial_shape, dtype)
        return t

    _default_requires_grad = False

    # --- the lazy state -----------------------------------------------------------------------------
    @property
    def is_lazy(self):
        try:
            read_slot(self)
            return False
        except AttributeError:
            return True

    @property
    def partial_shape(self):
        """The shape with None for sizes not known yet (the full shape once materialized)."""
        if not self.is_lazy:
            return tuple(read_slot(self).shape)
        return self._lazy.partial_shape

    def __getattr__(self, name):
        # only reached when normal lookup failed: for `array`, that means the slot is empty (lazy)
        if name == "array":
            raise UninitializedParameterError(self._uninitialized_message())
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def _uninitialized_message(self):
        state = self._lazy
        path = state.path
        what = f"{self._kind} '{path}'" if path else f"this {self._kind}"
        shape = _fmt_shape(state.partial_shape)
        unknown = state.unknown
        sizes = f"unknown size(s): {', '.join(unknown)}" if unknown else "its sizes are not known yet"
        return (f"{what} is uninitialized (lazy, shape {shape}; {sizes}), so it has no values, shape or "
                f"device yet. The sizes are inferred from the first input: {HINT}.")

    def _make_lazy(self):
        """Back to the lazy state (used to roll back a failed first call)."""
        if not self.is_lazy:
            empty_slot(self)
        self.grad = None

    # --- what a lazy tensor can still answer ----------------------------------------------------------
    @property
    def dtype(self):
        """The dtype; while lazy, the one fixed (e.g. int64 counters) or placed with `.to()`, else None."""
        if self.is_lazy:
            return self._lazy.dtype_for(None)
        return read_slot(self).dtype

    @property
    def device(self):
        """The device; while lazy, the one placed with `.to()`, else None (the first input will tell)."""
        if self.is_lazy:
            return self._lazy.device
        return backend.device_of(read_slot(self))

    @property
    def data(self):
        """As for every Tensor, a detached Tensor sharing the storage; while lazy, a `LazyData` that records
        in-place inits (`p.data.normal_(0, 0.01)`) and replays them at materialization, as `nn.init` does."""
        if self.is_lazy:
            return LazyData(self)
        return Tensor(read_slot(self))

    @data.setter
    def data(self, value):
        Tensor.data.fset(self, value)

    def numpy(self):
        if self.is_lazy:
            raise UninitializedParameterError(self._uninitialized_message())
        return super().numpy()

    def requires_grad_(self, requires_grad=True):
        if self.is_lazy:                    # no dtype to check yet; floats are allocated for parameters
            self.requires_grad = bool(requires_grad)
            return self
        return super().requires_grad_(requires_grad)

    def __repr__(self):
        name = type(self).__name__
        if self.is_lazy:
            return f"{name}(shape={_fmt_shape(self._lazy.partial_shape)}, lazy)"
        return self._materialized_repr()

    def _materialized_repr(self):
        return Tensor.__repr__(self)

    # --- copy and pickle: rebuild from (array or None, requires_grad, grad, extra state) -------------
    def __reduce_ex__(self, protocol):
        data = None if self.is_lazy else read_slot(self)
        state = dict(self.__dict__, _lazy=copy.copy(self._lazy))       # a copy's lazy state is its own
        return (_rebuild, (type(self), data, self.requires_grad, self.grad, state))


def _rebuild(cls, data, requires_grad, grad, state):
    t = cls._make(data, requires_grad)          # (data None: a lazy parameter, its array slot left empty)
    t.grad = grad
    t.__dict__.update(state)              # LazyState included
    return t


class LazyData:
    """What `p.data` returns while `p` is lazy: there are no values to change yet, so the in-place inits
    `normal_`, `uniform_`, `fill_` and `zero_` are recorded on `p` (like a deferred `nn.init` call) and run
    when `p` is materialized, after the layer's default init and in the order they were made. (PyTorch
    silently loses them.) Anything that needs values, `copy_` included, raises UninitializedParameterError."""
    __slots__ = ("owner",)

    def __init__(self, owner):
        self.owner = owner

    def _record(self, method, *args):
        self.owner._lazy.deferred.append((method, args, {}))
        return self

    def normal_(self, mean=0.0, std=1.0):
        return self._record(Tensor.normal_, mean, std)

    def uniform_(self, a=0.0, b=1.0):
        return self._record(Tensor.uniform_, a, b)

    def fill_(self, value):
        return self._record(Tensor.fill_, value)

    def zero_(self):
        return self._record(Tensor.zero_)

    def copy_(self, src):
        raise UninitializedParameterError(
            f"copy_ through .data: {self.owner._uninitialized_message()} Copying values needs the final shape: "
            f"copy after materializing (or load them with load_state_dict, which materializes).")

    @property
    def dtype(self):
        return self.owner.dtype

    @property
    def device(self):
        return self.owner.device

    is_lazy = True

    def __getattr__(self, name):
        if name.startswith("_"):                # protocol probes (copy, NumPy, IPython) get the usual answer
            raise AttributeError(f"'LazyData' object has no attribute {name!r}")
        raise UninitializedParameterError(
            f"'.data.{name}': {self.owner._uninitialized_message()} While lazy, `.data` only records the in-place "
            f"inits normal_, uniform_, fill_ and zero_.")

    def __array__(self, *args, **kwargs):
        return self.__getattr__("numpy")

    def __repr__(self):
        pending = len(self.owner._lazy.deferred)
        return f"<lazy data of {self.owner!r}: {pending} init(s) recorded for materialization>"


class Parameter(LazyTensor):
    """`nn.Parameter(tensor, requires_grad=True)`: a tensor that a Module registers as learnable.

    It shares the array of `tensor`. `Parameter.lazy((256, None))` makes a lazy one (see the module doc).
    """
    _kind = "parameter"
    _default_requires_grad = True

    def __init__(self, data=None, requires_grad=True):
        if isinstance(data, LazyTensor) and data.is_lazy:
            raise UninitializedParameterError(data._uninitialized_message())
        super().__init__(data, requires_grad=requires_grad)

    def _materialized_repr(self):
        return "Parameter containing:\n" + Tensor.__repr__(self)


class Buffer(LazyTensor):
    """A tensor a Module keeps in its state (e.g. BatchNorm's running mean), not trained.

    `self.x = nn.Buffer(t)` registers it as a buffer; `Buffer.lazy((None,))` makes a lazy buffer.
    """
    _kind = "buffer"
    persistent = True

    def __init__(self, data=None, persistent=True):
        super().__init__(data, requires_grad=False)
        self.persistent = persistent
