"""The Tensor: a raw array (`array`) plus what autograd needs (`requires_grad`, `grad`, `grad_fn`).

Every operator method is a thin call into `tinylazy.ops`, bound at the bottom of this file (by
tensor_operators.py), so the arithmetic lives in one place (one Function per op) and this class stays about
data and bookkeeping. `Tensor._make` is the one constructor the engine uses for new tensors.
"""
import numpy as np

from . import autograd, backend
from . import dtypes as _dt
from .size import _from_shape
from .tensor_conversions import ConversionMethods
from .tensor_inplace import InPlaceMethods
from .tensor_values import ValueMethods


class Tensor(ValueMethods, InPlaceMethods, ConversionMethods):
    """Getting values out (item, numpy, repr, ...) is in tensor_values.py, the in-place methods (zero_, copy_,
    +=, ...) in tensor_inplace.py, the conversions (to, float, cuda, ...) in tensor_conversions.py; the operators and op methods (+, @, t.sum(), ...) are bound by
    tensor_operators.py."""
    __slots__ = ("array", "grad", "requires_grad", "grad_fn", "_out_index", "_retains_grad", "_vc", "__weakref__")
    __array_priority__ = 1000          # NumPy defers `ndarray + Tensor` to Tensor.__radd__

    def __init__(self, data, requires_grad=False):
        if isinstance(data, Tensor):
            data = data.array
        elif not (isinstance(data, np.ndarray) or backend.is_meta(data) or _is_cupy(data)):
            data = np.asarray(data)
        self._set_slots(data, False)
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, array, requires_grad=False):
        """The constructor the engine uses for every tensor it makes (op results, gradients, detach, lazy and
        unpickled parameters): a raw array in, no checks. `array=None` leaves the slot empty (lazy)."""
        t = object.__new__(cls)
        t._set_slots(array, requires_grad)
        return t

    def _set_slots(self, array, requires_grad):
        """Every slot's starting value, in one place (`__init__` and `_make` both end here)."""
        if array is not None:
            self.array = array
        self.grad = None               # (one assignment a line: cheaper than unpacking a tuple, and every
        self.requires_grad = requires_grad    # op result passes here)
        self.grad_fn = None
        self._out_index = 0
        self._retains_grad = False
        self._vc = [0]                 # the version counter (version_counter.py): views share it

    # --- the values as a Tensor, as in PyTorch ----------------------------------------------------
    @property
    def data(self):
        """A detached Tensor sharing this tensor's storage: in-place changes through it change `self` and are
        not recorded by autograd (PyTorch's escape hatch). The raw NumPy/CuPy array is `self.array`."""
        return Tensor._make(self.array)

    @data.setter
    def data(self, value):
        """`t.data = other` (a Tensor or a raw NumPy/CuPy array) replaces t's values, shape and dtype; nothing is
        recorded by autograd."""
        array = value.array if isinstance(value, Tensor) else value
        if not (isinstance(array, np.ndarray) or backend.is_meta(array) or _is_cupy(array)):
            raise TypeError(f"Tensor.data: expected a Tensor or a NumPy/CuPy array, got {type(value).__name__}")
        if self.requires_grad and not _dt.is_floating(array.dtype):
            raise RuntimeError(f"Tensor.data: this tensor requires grad, so its data must be floating point, "
                               f"got {array.dtype}")
        self.array = array

    # --- what the data looks like ---------------------------------------------------------------
    @property
    def shape(self):
        """The sizes, as a `tl.Size` (a tuple). Engine code reads `self.array.shape` instead."""
        return _from_shape(self.array.shape)

    @property
    def ndim(self):
        return self.array.ndim

    @property
    def dtype(self):
        return self.array.dtype

    @property
    def device(self):
        return backend.device_of(self.array)

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def is_cuda(self):
        return self.device.type == "cuda"

    @property
    def is_meta(self):
        return backend.is_meta(self.array)

    def size(self, dim=None):
        shape = self.shape
        return shape if dim is None else shape[_dim(dim, len(shape), "size")]

    def numel(self):
        return int(self.array.size)

    def dim(self):
        return self.array.ndim

    def element_size(self):
        return self.array.dtype.itemsize

    def __len__(self):
        if self.array.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.array.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __hash__(self):
        return id(self)

    # --- autograd ---------------------------------------------------------------------------------
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not _dt.is_floating(self.dtype):
            raise RuntimeError(f"requires_grad_: only floating-point tensors can require gradients, "
                               f"got {self.dtype} (convert with .float() or .double() first)")
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad_(False) on a non-leaf tensor: use .detach() instead")
        self.requires_grad = bool(requires_grad)
        return self

    def retain_grad(self):
        """Keep `.grad` of this non-leaf tensor after backward (leaves always keep theirs)."""
        if self.grad_fn is None:
            return
        if not self._retains_grad:
            self._retains_grad = True
            fn = self.grad_fn
            if fn._retained is None:
                fn._retained = []
            fn._retained.append((self._out_index, self))

    @property
    def retains_grad(self):
        return self._retains_grad

    @property
    def _version(self):
        """How many in-place changes this tensor's values (or a view's sharing them) have seen (PyTorch's
        name). Backward refuses a saved tensor whose version moved since forward (see autograd)."""
        return self._vc[0]

    def backward(self, gradient=None, retain_graph=False, create_graph=False):
        if create_graph:
            raise NotImplementedError("backward(create_graph=True): tinylazy computes first-order gradients only")
        autograd.backward(self, gradient, retain_graph)

    def register_post_accumulate_grad_hook(self, hook):
        """`hook(tensor)` runs after backward has accumulated this leaf's whole gradient (see autograd)."""
        return autograd.register_post_accumulate_grad_hook(self, hook)

    def detach(self):
        """The same data, cut from the graph (a view: it shares the version counter, unlike `.data`)."""
        t = Tensor._make(self.array)
        t._vc = self._vc
        return t

    def detach_(self):
        if self.grad_fn is not None:
            self.grad_fn = None
        self.requires_grad = False
        return self


def _is_cupy(data):
    cp = backend.cupy_module() if backend._cupy is not None or type(data).__module__.startswith("cupy") else None
    return cp is not None and isinstance(data, cp.ndarray)


def _dim(d, ndim, op):
    if not -max(ndim, 1) <= d < max(ndim, 1):
        raise IndexError(f"{op}: dimension {d} is out of range for a tensor with {ndim} dimensions "
                         f"(expected in [{-max(ndim, 1)}, {max(ndim, 1) - 1}])")
    return d % max(ndim, 1)


# --- operator methods (+, *, @, ..., and every op as a method): bound by tensor_operators.py -------------
from . import ops as _ops, tensor_operators  # noqa: E402  (ops import Tensor: so after the class)

tensor_operators.bind(Tensor)
