"""Elementwise ops: arithmetic, unary math, activations, comparisons.

Binary ops broadcast as NumPy does; their backward sums each gradient back to its input's shape with
`unbroadcast`. Python scalars never upcast a tensor (float32 * 2.0 is float32); a float scalar next to an
integer tensor gives the default float dtype, as in PyTorch.
"""
import numpy as np

from .. import dtypes as _dt
from ..autograd import Function, unbroadcast
from ..backend import xp_of
from ..tensor import Tensor


# --- operands --------------------------------------------------------------------------------------
def _scalar(x):
    return isinstance(x, (int, float, bool, np.number, np.bool_))


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


def binary_operands(a, b, op):
    """(a, b) ready for a binary Function: tensors stay, arrays become tensors, Python scalars stay
    scalars (NumPy's weak scalars keep the tensor's dtype), except a float scalar next to an integer
    tensor, which makes the tensor the default float dtype first."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return a, b
    if _scalar(b):
        a = as_tensor_operand(a, None, op)
        return _promote_for_scalar(a, b), _py(b)
    if _scalar(a):
        b = as_tensor_operand(b, None, op)
        return _py(a), _promote_for_scalar(b, a)
    a = as_tensor_operand(a, b if isinstance(b, Tensor) else None, op)
    return a, as_tensor_operand(b, a, op)


def _py(x):
    return x.item() if isinstance(x, (np.number, np.bool_)) else x


def _promote_for_scalar(t, s):
    kind = t.dtype.kind
    if kind in "fc" or isinstance(s, (bool, np.bool_)) or (isinstance(s, (int, np.integer)) and kind != "b"):
        return t
    if isinstance(s, (int, np.integer)):            # bool tensor + int -> int64
        return Tensor(t.array.astype(_dt.int64))
    return Tensor(t.array.astype(_dt.get_default_dtype()))


def float_input(x, op):
    """Unary math on an integer tensor computes in the default float dtype (as PyTorch does)."""
    x = as_tensor_operand(x, None, op)
    if x.dtype.kind in "fc":
        return x
    return Tensor(x.array.astype(_dt.get_default_dtype()))


def _shape(x):
    return getattr(x, "shape", ())


# --- arithmetic ------------------------------------------------------------------------------------
class Add(Function):
    """z = a + b;  dz/da = dz/db = 1."""
    _saves = ()
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return a + b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if na else None,
                unbroadcast(g, self.shapes[1]) if nb else None)


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""
    _saves = ()
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        return a - b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if na else None,
                unbroadcast(-g, self.shapes[1]) if nb else None)


class Mul(Function):
    """z = a * b;  dz/da = b, dz/db = a. Saves b when a needs a gradient, a when b does."""
    _saves = (("a", 0), ("b", 1))
    fresh_grads = True

    def forward(self, a, b):
        na, nb = self.needs_input_grad
        self.shapes = (_shape(a), _shape(b))
        self.a, self.b = (a if nb else None), (b if na else None)
        return a * b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g * self.b, self.shapes[0]) if na else None,
                unbroadcast(g * self.a, self.shapes[1]) if nb else None)


class Div(Function):
    """z = a / b;  dz/da = 1/b, dz/db = -z/b. Saves b, and the output when b needs a gradient."""
    _saves = (("b", 1), ("z", -1))
    fresh_grads = True

    def forward(self, a, b):
        self.a_shape, self.b = _shape(a), b
        z = a / b
        if self.needs_input_grad[1]:
            self.z = z
        return z

    def backward(self, g):
        na, nb = self.needs_input_grad
        gb = g / self.b
        return (unbroadcast(gb, self.a_shape) if na else None,
                unbroadcast(-gb * self.z, _shape(self.b)) if nb else None)


class Remainder(Function):
    """z = a mod b (sign of b, like Python and PyTorch);  dz/da = 1, dz/db = -floor(a/b). Saves a and b
    when b needs a gradient."""
    _saves = (("a", 0), ("b", 1))
    def forward(self, a, b):
        self.shapes = (_shape(a), _shape(b))
        if self.needs_input_grad[1]:
            self.a, self.b = a, b
        return xp_of(a if hasattr(a, "shape") else b).remainder(a, b)

    def backward(self, g):
        na, nb = self.needs_input_grad
        gb = None
        if nb:
            gb = unbroadcast(-g * xp_of(g).floor(self.a / self.b), self.shapes[1])
        return (unbroadcast(g, self.shapes[0]) if na else None, gb)


class Pow(Function):
    """z = a ** b;  dz/da = b * a**(b-1), dz/db = z * log(a) (0 where a == 0 and b >= 0, as PyTorch)."""
    _saves = (("a", 0), ("b", 1), ("z", -1))
    fresh_grads = True

    def forward(self, a, b):
        self.a, self.b = a, b
        z = a ** b
        if self.needs_input_grad[1]:        # dz/db needs the output
            self.z = z
        return z

    def backward(self, g):
        na, nb = self.needs_input_grad
        a, b = self.a, self.b
        xp = xp_of(g)
        ga = gb = None
        if na:
            if _scalar(b) and b == 0:
                ga = xp.zeros_like(a)
            else:
                ga = unbroadcast(g * b * a ** (b - 1), _shape(a))
        if nb:
            with np.errstate(divide="ignore", invalid="ignore"):
                dz = xp.where((a == 0) & (b >= 0), 0, self.z * xp.log(a))
            gb = unbroadcast(g * dz, _shape(b))
        return ga, gb


class Neg(Function):
    """z = -a."""
    _saves = ()
    fresh_grads = True

    def forward(self, a):
        return -a

    def backward(self, g):
        return -g


def add(a, b, alpha=1):
    a, b = binary_operands(a, b, "add")
    return Add.apply(a, b if alpha == 1 else mul(b, alpha))


def sub(a, b, alpha=1):
    a, b = binary_operands(a, b, "sub")
    return Sub.apply(a, b if alpha == 1 else mul(b, alpha))


def mul(a, b):
    return Mul.apply(*binary_operands(a, b, "mul"))


def div(a, b, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(a, b)
    a, b = binary_operands(a, b, "div")
    ints = [x.dtype.kind in "iub" if isinstance(x, Tensor) else not isinstance(x, float) for x in (a, b)]
    if rounding_mode == "trunc":
        check_integer_divisor(a, b, "div")
    if all(ints):                                   # true division of integers gives floats
        a = Tensor(a.array.astype(_dt.get_default_dtype())) if isinstance(a, Tensor) else float(a)
    out = Div.apply(a, b)
    if rounding_mode == "trunc":
        return trunc(out)
    return out


def remainder(a, b):
    a, b = binary_operands(a, b, "remainder")
    check_integer_divisor(a, b, "remainder")
    return Remainder.apply(a, b)


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
    return x.dtype.kind in "iub" if isinstance(x, Tensor) else isinstance(x, (int, bool))


def _describe(x):
    return f"{x.dtype} tensor of shape {x.shape}" if isinstance(x, Tensor) else repr(x)


def pow(a, b):
    a, b = binary_operands(a, b, "pow")
    return Pow.apply(a, b)


def neg(a):
    return Neg.apply(as_tensor_operand(a, None, "neg"))


true_divide = divide = div
subtract, multiply, negative = sub, mul, neg


# --- clamp, maximum, minimum, where ----------------------------------------------------------------
class Clamp(Function):
    """y = min(max(x, lo), hi);  dy/dx = 1 where lo <= x <= hi, else 0."""
    _saves = (("x", 0),)
    fresh_grads = True

    def forward(self, x, lo, hi):
        self.x, self.lo, self.hi = x, lo, hi
        return xp_of(x).clip(x, lo, hi)

    def backward(self, g):
        x, lo, hi = self.x, self.lo, self.hi
        keep = (x >= lo) if lo is not None else None
        if hi is not None:
            keep = (x <= hi) if keep is None else keep & (x <= hi)
        return (g * keep if keep is not None else g.copy()), None, None


def clamp(x, min=None, max=None):
    if min is None and max is None:
        raise ValueError("clamp: give at least one of min and max")
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        out = x
        if min is not None:
            out = maximum(out, min)
        if max is not None:
            out = minimum(out, max)
        return out
    x = as_tensor_operand(x, None, "clamp")
    if x.dtype.kind in "iub" and any(isinstance(v, float) for v in (min, max)):
        x = Tensor(x.array.astype(_dt.get_default_dtype()))
    return Clamp.apply(x, min, max)


clip = clamp


class Maximum(Function):
    """z = max(a, b) elementwise; the gradient goes to the larger input, split in half on ties (PyTorch)."""
    _saves = (("a", 0), ("b", 1))
    fresh_grads = True
    pick = staticmethod(lambda a, b: xp_of(a if hasattr(a, "shape") else b).maximum(a, b))

    def forward(self, a, b):
        self.a, self.b = a, b
        return self.pick(a, b)

    def backward(self, g):
        a, b = self.a, self.b
        na, nb = self.needs_input_grad
        wins_a = self._wins(a, b)
        tie = (a == b)
        share_a = g * (wins_a + 0.5 * tie)
        return (unbroadcast(share_a, _shape(a)) if na else None,
                unbroadcast(g - share_a, _shape(b)) if nb else None)

    @staticmethod
    def _wins(a, b):
        return a > b


class Minimum(Maximum):
    """z = min(a, b) elementwise; the gradient goes to the smaller input, split in half on ties."""
    pick = staticmethod(lambda a, b: xp_of(a if hasattr(a, "shape") else b).minimum(a, b))

    @staticmethod
    def _wins(a, b):
        return a < b


def maximum(a, b):
    return Maximum.apply(*binary_operands(a, b, "maximum"))


def minimum(a, b):
    return Minimum.apply(*binary_operands(a, b, "minimum"))


class Where(Function):
    """z = x where cond else y;  the gradient flows to x where cond holds and to y elsewhere."""
    _saves = (("cond", 0),)
    fresh_grads = True

    def forward(self, cond, x, y):
        self.cond, self.shapes = cond, (_shape(x), _shape(y))
        return xp_of(cond).where(cond, x, y)

    def backward(self, g):
        _, nx, ny = self.needs_input_grad
        xp = xp_of(g)
        return (None,
                unbroadcast(xp.where(self.cond, g, 0), self.shapes[0]) if nx else None,
                unbroadcast(xp.where(self.cond, 0, g), self.shapes[1]) if ny else None)


def where(condition, x=None, y=None):
    condition = as_tensor_operand(condition, None, "where")
    if x is None and y is None:
        from .shape import nonzero
        return nonzero(condition, as_tuple=True)
    if condition.dtype != _dt.bool_:
        raise TypeError(f"where: the condition must be a bool tensor, got {condition.dtype}")
    if not isinstance(x, Tensor) and not isinstance(y, Tensor):
        x = as_tensor_operand(x, condition, "where") if not _scalar(x) else x
    x, y = binary_operands(x, y, "where") if not (_scalar(x) and _scalar(y)) else (x, y)
    return Where.apply(condition, x, y)


# --- ops without gradients -------------------------------------------------------------------------
class _Elementwise(Function):
    """Shared body of the ops that have no gradient: run the NumPy/CuPy ufunc named `ufunc`."""
    differentiable = False
    ufunc = None

    def forward(self, *args):
        ref = next(a for a in args if hasattr(a, "shape"))
        return getattr(xp_of(ref), self.ufunc)(*args)


def _no_grad_op(ufunc_name, name, binary):
    cls = type(name.capitalize(), (_Elementwise,), {"ufunc": ufunc_name})
    if binary:
        def op(a, b):
            return cls.apply(*binary_operands(a, b, name))
    else:
        def op(a):
            return cls.apply(as_tensor_operand(a, None, name))
    op.__name__ = name
    return op


eq, ne, lt, le, gt, ge = (_no_grad_op(u, n, True) for u, n in (
    ("equal", "eq"), ("not_equal", "ne"), ("less", "lt"), ("less_equal", "le"), ("greater", "gt"),
    ("greater_equal", "ge")))
logical_and, logical_or, logical_xor = (_no_grad_op(n, n, True) for n in ("logical_and", "logical_or", "logical_xor"))
logical_not, isnan, isinf, isfinite, sign, floor, ceil, round, trunc = (
    _no_grad_op(u, n, False) for u, n in (("logical_not", "logical_not"), ("isnan", "isnan"), ("isinf", "isinf"),
                                          ("isfinite", "isfinite"), ("sign", "sign"), ("floor", "floor"),
                                          ("ceil", "ceil"), ("round", "round"), ("trunc", "trunc")))
_floor_divide = _no_grad_op("floor_divide", "floor_divide", True)


def floor_divide(a, b):
    """a // b, rounded toward minus infinity (no gradient); integer division by zero raises, as in PyTorch."""
    a, b = binary_operands(a, b, "floor_divide")
    check_integer_divisor(a, b, "floor_divide")
    return _floor_divide(a, b)


equal_elementwise = eq


METHODS = ("add", "sub", "mul", "div", "true_divide", "divide", "subtract", "multiply", "remainder", "pow",
            "neg", "negative", "clamp", "clip", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
            "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite", "sign",
            "floor", "ceil", "round", "trunc", "floor_divide")
__all__ = METHODS + ("where", "binary_operands", "as_tensor_operand", "float_input")
