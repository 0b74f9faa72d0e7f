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
    """The dtype a Python scalar becomes on its own: bool, int64, the default float dtype, or the default
    complex dtype (complex64 next to a float32 default, complex128 next to float64)."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default
    if isinstance(value, (complex, np.complexfloating)):
        return np.dtype("complex128") if _default == float64 else np.dtype("complex64")
    raise TypeError(f"expected a number, got {type(value).__name__}")


# --- type promotion, as PyTorch does it (torch.result_type) ----------------------------------------
# Every dtype has a category: bool < integer < floating < complex. A result's category is the highest among
# its operands; its width comes from the operands that count most. Dimensioned tensors count first; 0-d
# tensors count only when they bring a higher category than every dimensioned tensor; Python scalars count
# only when they bring a higher category than every tensor. So float32 * 2.0 and float32 + (a 0-d float64)
# stay float32, float16 + int64 is float16, int8 + (a 0-d float64) is float64, int64 + 2.5 is the default
# float dtype and a bool tensor + 1 is int64.
_CATEGORY = {"b": 0, "u": 1, "i": 1, "f": 2, "c": 3}
_CATEGORY_NAME = ("bool", "integer", "floating", "complex")


def category(dtype):
    """0 for bool, 1 for the integers, 2 for floating, 3 for complex."""
    return _CATEGORY[dtype.kind]


def promote_types(type1, type2):
    """The smallest dtype that both dtypes convert to (torch.promote_types). Within a category, the wider
    one (uint8 with int8 gives int16, which holds both); across categories, the dtype of the higher
    category as it is (int64 with float16 gives float16), except that complex keeps the float's precision
    (complex64 with float64 gives complex128)."""
    d1, d2 = to_dtype(type1), to_dtype(type2)
    c1, c2 = category(d1), category(d2)
    if c1 == c2:
        out = np.promote_types(d1, d2)
        if category(out) != c1:                  # uint64 with a signed integer: NumPy would answer float64
            raise TypeError(f"promote_types: no integer dtype holds both {d1} and {d2}")
        return out
    high, low = (d1, d2) if c1 > c2 else (d2, d1)
    if high.kind == "c" and low.kind == "f":
        return np.promote_types(high, low)
    return high


def can_cast(from_, to):
    """Whether PyTorch's type promotion allows writing a `from_` result into a `to` tensor (torch.can_cast):
    any cast that does not lower the category (float -> int, int -> bool, complex -> float are refused;
    float64 -> float16 and int64 -> uint8 are allowed)."""
    return category(to_dtype(from_)) <= category(to_dtype(to))


def result_type(*operands):
    """The dtype of an elementwise op on `operands` (tensors, NumPy/CuPy arrays, Python scalars), as
    torch.result_type: see the rule above. Raw arrays count as tensors of their own ndim."""
    dimensioned = zero_dim = scalars = None
    for x in operands:
        if isinstance(x, (bool, int, float, complex, np.generic)):
            scalars = _wider(scalars, scalar_dtype(x))
        elif x.ndim:
            dimensioned = _wider(dimensioned, x.dtype)
        else:
            zero_dim = _wider(zero_dim, x.dtype)
    out = _higher_category(dimensioned, _higher_category(zero_dim, scalars))
    if out is None:
        raise TypeError("result_type: expected at least one tensor or number")
    return out


def _wider(d1, d2):
    return d2 if d1 is None else promote_types(d1, d2)


def _higher_category(first, then):
    """`first` (the dtype of the operands that count more), unless `then` brings a higher category: then
    `then` (a complex of `first`'s precision when `first` is floating)."""
    if first is None or then is None:
        return then if first is None else first
    if category(then) <= category(first):
        return first
    if then.kind == "c" and first.kind == "f":
        return np.dtype("complex128") if first == float64 else np.dtype("complex64")
    return then


def scalar_as(value, dtype):
    """A Python scalar as a NumPy scalar of `dtype`, converted as PyTorch converts a scalar operand:
    integers wrap around (1000 as int8 is -24, -1 as uint8 is 255), floats round (1e6 as float16 is inf)."""
    if dtype.kind in "iu" and not isinstance(value, (bool, np.bool_)):
        value = int(value)
        if not -(1 << 63) <= value < (1 << 64):
            raise OverflowError(f"the Python integer {value} does not fit in 64 bits")
        bits = 8 * dtype.itemsize
        low = -(1 << (bits - 1)) if dtype.kind == "i" else 0
        value = (value - low) % (1 << bits) + low
    elif dtype.kind == "f" and not -65504.0 <= value <= 65504.0:     # may round to inf (float16's limit)
        with np.errstate(over="ignore"):
            return dtype.type(value)
    return dtype.type(value)
