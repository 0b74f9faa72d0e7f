"""Converting a Tensor: `to(device or dtype or tensor)`, `cpu()`, `cuda()`, `float()`, `double()`, ... Each is
differentiable (a cast or a device move recorded like any op) and returns the tensor itself when nothing
changes. `Tensor` inherits `ConversionMethods`; Module.to parses its arguments with the same `_to_args`.
"""
from . import backend
from . import dtypes as _dt


class ToShortcuts:
    """`cpu()`, `cuda()`, `float()`, `double()`, `half()` as calls of `self.to(...)`: shared by Tensor and
    nn.Module (whose `to` moves and casts every parameter and buffer)."""
    __slots__ = ()

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to(f"cuda:{device}" if isinstance(device, int) else (device or "cuda"))

    def float(self):
        return self.to(_dt.float32)

    def double(self):
        return self.to(_dt.float64)

    def half(self):
        return self.to(_dt.float16)


class ConversionMethods(ToShortcuts):
    """Mixed into Tensor."""
    __slots__ = ()

    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        """`to(device)`, `to(dtype)`, `to(device, dtype)`, `to(other_tensor)`; differentiable; returns
        `self` when nothing changes (unless copy=True)."""
        from . import ops                 # (ops import the Tensor class, which is built from this module)
        device, dtype = self._to_args(args, device, dtype)
        out = self
        if dtype is not None:
            out = ops.unary.cast(out, dtype)
        if device is not None:
            out = ops.unary.to_device(out, device)
        if copy and out is self:
            out = ops.clone(self)
        return out

    @staticmethod
    def _to_args(args, device=None, dtype=None):
        """(device, dtype) from `to()`'s arguments (also Module.to's): a device, a dtype, or a tensor's both."""
        for a in args:
            if isinstance(a, ConversionMethods):          # a Tensor: its device and dtype
                device, dtype = a.device, a.dtype
            elif isinstance(a, (str, backend.Device)):
                device = a
            else:
                dtype = a
        return device, dtype

    def long(self):
        return self.to(_dt.int64)

    def int(self):
        return self.to(_dt.int32)

    def bool(self):
        return self.to(_dt.bool_)

    def type(self, dtype=None):
        return str(self.dtype) if dtype is None else self.to(dtype)
