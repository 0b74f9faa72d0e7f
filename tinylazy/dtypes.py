"""dtypes are NumPy dtypes. Python floats become the default float dtype (float32 unless changed)."""
import numpy as np

float16, float32, float64 = np.dtype("float16"), np.dtype("float32"), np.dtype("float64")
int8, int16, int32, int64, uint8 = (np.dtype(n) for n in ("int8", "int16", "int32", "int64", "uint8"))
bool_ = np.dtype("bool")

_default = float32


def get_default_dtype():
    return _default


def set_default_dtype(dtype):
    global _default
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise TypeError(f"set_default_dtype: only floating dtypes can be the default, got {dtype}")
    _default = dtype


def to_dtype(dtype):
    """Normalize anything dtype-like (np.float32, 'float32', torch-like aliases) to a NumPy dtype."""
    if dtype is None:
        return None
    if dtype is bool:
        return bool_
    try:
        return np.dtype(dtype)
    except TypeError:
        raise TypeError(f"not a dtype: {dtype!r}") from None


def is_floating(dtype):
    return dtype.kind in "fc"


def scalar_dtype(value):
    """The dtype a Python scalar becomes on its own: bool, int64, or the default float dtype."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default
    if isinstance(value, complex):
        return np.dtype("complex128")
    raise TypeError(f"expected a number, got {type(value).__name__}")


def operand_dtype(tensor_dtype, scalar):
    """The dtype a Python scalar takes next to a tensor: it never upcasts the tensor (float32 * 2.0 is
    float32), but a float scalar next to an integer or bool tensor gives the default float dtype, and an
    int next to a bool tensor gives int64 (as PyTorch does)."""
    kind = tensor_dtype.kind
    if isinstance(scalar, (bool, np.bool_)):
        return tensor_dtype
    if isinstance(scalar, (int, np.integer)):
        return int64 if kind == "b" else tensor_dtype
    if isinstance(scalar, (float, np.floating)):
        return tensor_dtype if kind in "fc" else _default
    raise TypeError(f"expected a number, got {type(scalar).__name__}")
