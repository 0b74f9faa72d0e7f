"""Tensor's in-place methods: zero_, fill_, copy_, uniform_, normal_, and the operators +=, -=, *=, ...

Each changes the values of the tensor's array where they are, bumps its version counter (so that a saved
tensor changed in place is caught by backward: version_counter.py), and is refused on a tensor that
requires grad while grad mode is on (PyTorch's rule: wrap parameter updates in `tl.no_grad()`).
`Tensor` inherits `InPlaceMethods`; `tensor_operators.py` binds `inplace_operator` for each operator.
"""
import numpy as np

from . import backend
from . import dtypes as _dt
from .grad_mode import _state


class InPlaceMethods:
    """Mixed into Tensor (which has the slots: `array`, `requires_grad`, `grad_fn`, `_vc`, ...)."""
    __slots__ = ()

    def _check_inplace(self, op):
        if self.requires_grad and _state.grad_enabled:
            what = "a leaf tensor that requires grad" if self.grad_fn is None else "a tensor that is part of a graph"
            raise RuntimeError(f"{op}: {what} cannot be changed in place while grad mode is on; "
                               "wrap the update in `with tl.no_grad():` (or use .detach())")

    def zero_(self):
        self._check_inplace("zero_")
        self.array.fill(0)
        self._vc[0] += 1
        return self

    def fill_(self, value):
        self._check_inplace("fill_")
        self.array.fill(value.item() if isinstance(value, InPlaceMethods) else value)
        self._vc[0] += 1
        return self

    def copy_(self, src):
        self._check_inplace("copy_")
        src = src.array if isinstance(src, InPlaceMethods) else src
        if backend.is_meta(self.array):
            np.broadcast_shapes(tuple(src.shape), self.shape)
            return self
        src = backend.to_device(src, self.device) if not np.isscalar(src) else src
        self.array[...] = src
        self._vc[0] += 1
        return self

    def uniform_(self, a=0.0, b=1.0):
        self._check_inplace("uniform_")
        from .creation import _random
        self.array[...] = _random("uniform", self.shape, self.dtype, self.device, a, b)
        self._vc[0] += 1
        return self

    def normal_(self, mean=0.0, std=1.0):
        self._check_inplace("normal_")
        from .creation import _random
        self.array[...] = _random("normal", self.shape, self.dtype, self.device, mean, std)
        self._vc[0] += 1
        return self


def inplace_operator(op_name, op):
    """`t += x` and its kin as a method: in place on a plain tensor (bumping its version); for a tensor in a
    graph, the out-of-place `op` (Python then rebinds the name to the result, as PyTorch's autograd would
    need a new node anyway); refused on a leaf that requires grad while grad mode is on."""
    def method(self, other):
        if self.requires_grad and _state.grad_enabled:
            if self.grad_fn is None:
                self._check_inplace(op_name)
            return op(self, other)             # a graph tensor: rebind the name to the new result
        if backend.is_meta(self.array):
            np.broadcast_shapes(np.shape(other.array if isinstance(other, InPlaceMethods) else other), self.shape)
            return self
        value = op(self.detach(), other).array
        if value.dtype != self.array.dtype and not _dt.can_cast(value.dtype, self.array.dtype):
            raise RuntimeError(f"{op_name}: the result type {value.dtype} can't be cast to the tensor's "
                               f"dtype {self.dtype} in place (as in PyTorch); use the out-of-place op")
        self.array[...] = value
        self._vc[0] += 1
        return self
    method.__name__ = op_name
    return method
