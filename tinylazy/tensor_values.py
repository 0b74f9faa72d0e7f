"""Getting values out of a Tensor: Python numbers (item, float(t), ...), lists, NumPy arrays, DLPack, and
its printed form. `Tensor` inherits `ValueMethods`.

On cuda, every read first raises the index errors that kernels found on the device (_devcheck.py), so a bad
index is reported at the first value read, as PyTorch's asynchronous errors are.
"""
from . import _devcheck, _printing, backend


class ValueMethods:
    """Mixed into Tensor (which has the `array` and `requires_grad` slots)."""
    __slots__ = ()

    def item(self):
        if self.array.size != 1:
            raise ValueError(f"item(): only one-element tensors can be converted to a Python scalar, "
                             f"got shape {tuple(self.array.shape)}")
        _devcheck.check_before_read(self.array)          # cuda: raise index errors found on the device
        return self.array.item()

    def tolist(self):
        _devcheck.check_before_read(self.array)
        return self.array.tolist()

    def numpy(self):
        """The data as a NumPy array: the same memory on cpu, a host copy for cuda."""
        if self.requires_grad:
            raise RuntimeError("numpy(): the tensor requires grad; use tensor.detach().numpy()")
        _devcheck.check_before_read(self.array)
        return backend.to_device(self.array, "cpu")

    def __array__(self, dtype=None, copy=None):
        out = backend.to_device(self.array, "cpu")
        return out if dtype is None else out.astype(dtype, copy=False)

    def __dlpack__(self, *args, **kwargs):
        return self.array.__dlpack__(*args, **kwargs)

    def __dlpack_device__(self):
        return self.array.__dlpack_device__()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        return bool(self.item())

    def __index__(self):
        if self.array.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, got {self.dtype}")
        return int(self.item())

    def __repr__(self):
        """PyTorch's format (see tinylazy/_printing.py); `tl.set_printoptions` changes it."""
        return _printing.tensor_repr(self)

    def __format__(self, spec):
        """`f"{loss:.3f}"` on a one-element tensor formats its number; `f"{t}"` is `str(t)` (for a 0-d
        tensor its number, as in PyTorch)."""
        return _printing.format_tensor(self, spec)
