"""How the operands of an elementwise op meet: raw arrays and lists become Tensors, and every operand is
brought to the op's result dtype by PyTorch's type promotion (the rule is in tinylazy/dtypes.py:
`result_type`). Tensors change dtype through the differentiable cast, so a gradient comes back in its own
input's dtype; Python scalars become NumPy scalars of the result dtype (NumPy and CuPy then keep it)."""
import numpy as np

from .. import dtypes as _dt
from ..backend import xp_of
from ..tensor import Tensor


def is_scalar(x):
    """Python (and NumPy) numbers: operands that count only for their category in type promotion."""
    return isinstance(x, (int, float, complex, bool, np.number, np.bool_))


def as_tensor_operand(x, like=None, op="op"):
    """A Tensor for `x` when it is an array or a list (raw NumPy/CuPy arrays are welcome operands)."""
    if isinstance(x, Tensor):
        return x
    if hasattr(x, "__array_interface__") or hasattr(x, "__cuda_array_interface__") or hasattr(x, "shape"):
        return Tensor(x)
    if isinstance(x, (list, tuple)):
        from ..creation import tensor
        return tensor(x, device=like.device if like is not None else None)
    raise TypeError(f"{op}: unsupported operand of type {type(x).__name__}")


def operands(a, b, op):
    """(a, b, their result dtype): arrays become tensors, Python scalars stay as they are. Raises unless
    one of them is a tensor (or an array)."""
    if is_scalar(a) and is_scalar(b):
        raise TypeError(f"{op}: expected a tensor among the operands, got {type(a).__name__} and "
                        f"{type(b).__name__}")
    a = a if is_scalar(a) else as_tensor_operand(a, b if isinstance(b, Tensor) else None, op)
    b = b if is_scalar(b) else as_tensor_operand(b, a if isinstance(a, Tensor) else None, op)
    return a, b, _dt.result_type(a, b)


def in_dtype(x, dtype):
    """`x` as `dtype`: a tensor through the differentiable cast (so its gradient comes back in its own
    dtype), a Python scalar as a NumPy scalar of `dtype` (then NumPy and CuPy keep `dtype` as it is)."""
    if isinstance(x, Tensor):
        if x.array.dtype == dtype:
            return x
        from .unary import cast
        return cast(x, dtype)
    return _dt.scalar_as(x, dtype)


def binary_operands(a, b, op):
    """(a, b) ready for a binary Function: both in their result dtype (PyTorch's type promotion). Tensors
    stay Tensors (arrays become Tensors), Python scalars become NumPy scalars."""
    if isinstance(a, Tensor):                       # the common cases, kept cheap:
        dtype = a.array.dtype
        if type(b) is float or type(b) is int:      # a float tensor and a Python number (no bool)
            if dtype.kind == "f":
                return a, _dt.scalar_as(b, dtype)
        elif isinstance(b, Tensor) and b.array.dtype == dtype:     # two tensors of one dtype
            return a, b
    a, b, dtype = operands(a, b, op)
    return in_dtype(a, dtype), in_dtype(b, dtype)


def xp_pair(a, b):
    """The array module of a binary op whose operands may be one NumPy scalar and one array."""
    return xp_of(b if isinstance(a, np.generic) else a)


def float_input(x, op):
    """Unary math on an integer tensor computes in the default float dtype (as PyTorch does)."""
    x = as_tensor_operand(x, None, op)
    if x.array.dtype.kind in "fc":               # .array: a lazy parameter raises its clear error here
        return x
    return Tensor(x.array.astype(_dt.get_default_dtype()))


# --- checks on operands (PyTorch refuses these) -------------------------------------------------------
def is_bool(x):
    """A bool tensor or array, or a Python or NumPy bool."""
    if isinstance(x, Tensor):
        return x.array.dtype == _dt.bool_
    if isinstance(x, (float, int, complex, np.number, np.bool_)):     # a number (a Python bool is an int)
        return type(x) is bool or type(x) is np.bool_
    return getattr(x, "dtype", None) == _dt.bool_                     # a raw NumPy/CuPy array


def no_bools(x, op):
    """PyTorch defines // and % on integers and floats, not on bools: `x` is an operand after promotion,
    so it is bool only when both were (a bool with an int is an int)."""
    if is_bool(x):
        raise TypeError(f"{op}: not defined for bool operands (both are bool); convert with .int() or .float()")


def check_integer_divisor(a, b, op):
    """Integer (or bool) a // 0 and a % 0 raise RuntimeError, as in PyTorch (NumPy would give 0 and a
    warning); float division by zero gives inf or nan. Reads whether b has a zero (on cuda, that waits for
    the device)."""
    if not (_is_integer(a) and _is_integer(b)):
        return
    if isinstance(b, Tensor):
        if b.is_meta or not bool((b.array == 0).any()):
            return
    elif b != 0:
        return
    raise RuntimeError(f"{op}: ZeroDivisionError: integer division by zero (the divisor has a zero; a: "
                       f"{_describe(a)}, b: {_describe(b)})")


def _is_integer(x):
    return x.dtype.kind in "iub" if isinstance(x, Tensor) else isinstance(x, (int, bool, np.integer, np.bool_))


def _describe(x):
    return f"{x.dtype} tensor of shape {x.shape}" if isinstance(x, Tensor) else repr(x)
