"""Elementwise ops: arithmetic, unary math, activations, comparisons.

Binary ops broadcast as NumPy does; their backward sums each gradient back to its input's shape with
`unbroadcast`. Their operands first meet in one dtype, PyTorch's `result_type` (the rule is written out in
tinylazy/dtypes.py): float32 * 2.0 and float32 + int64 stay float32, a float scalar next to an integer
tensor gives the default float dtype, and `/` on integers gives the default float dtype.
"""
import numpy as np

from .. import dtypes as _dt
from ..autograd import Function, unbroadcast
from ..backend import xp_of
from ..tensor import Tensor
from .operands import as_tensor_operand, binary_operands, float_input, in_dtype, operands  # noqa: F401
from .operands import is_scalar as _scalar, xp_pair as _xp
from .operands import check_integer_divisor, is_bool as _is_bool, no_bools as _no_bools  # noqa: F401


def _shape(x):
    return getattr(x, "shape", ())


def _grad_shapes(ctx, a, b):
    """The shapes backward sums the gradients back to: that of each input that needs a gradient (so an
    array; None for the others)."""
    na, nb = ctx.needs_input_grad
    return (a.shape if na else None, b.shape if nb else None)


# --- arithmetic ------------------------------------------------------------------------------------
class Add(Function):
    """z = a + b;  dz/da = dz/db = 1."""
    _saves = ()
    def forward(self, a, b):
        self.shapes = _grad_shapes(self, a, b)
        return a + b

    def backward(self, g):
        na, nb = self.needs_input_grad
        return (unbroadcast(g, self.shapes[0]) if na else None,
                unbroadcast(g, self.shapes[1]) if nb else None)


class Sub(Function):
    """z = a - b;  dz/da = 1, dz/db = -1."""
    _saves = ()
    def forward(self, a, b):
        self.shapes = _grad_shapes(self, a, b)
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
        self.shapes = (a.shape if na else None, b.shape if nb else None)
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
        return _xp(a, b).remainder(a, b)

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
    if alpha != 1:
        b = _times_alpha(a, b, alpha, "add")
    return Add.apply(*binary_operands(a, b, "add"))


def sub(a, b, alpha=1):
    if _is_bool(a) or _is_bool(b):
        raise RuntimeError("sub: subtraction (the `-` operator) with a bool tensor or a bool is not supported "
                           "(as in PyTorch); to invert a mask use `~` or logical_not()")
    if alpha != 1:
        b = _times_alpha(a, b, alpha, "sub")
    return Sub.apply(*binary_operands(a, b, "sub"))


def _times_alpha(a, b, alpha, op):
    """b * alpha for add/sub; as in PyTorch, a float alpha needs a floating result."""
    if isinstance(alpha, float) and _dt.category(operands(a, b, op)[2]) < 2:
        raise TypeError(f"{op}: alpha={alpha} is a float but both operands are integer or bool")
    return b * alpha if _scalar(b) else mul(b, alpha)


def mul(a, b):
    return Mul.apply(*binary_operands(a, b, "mul"))


def div(a, b, rounding_mode=None):
    """a / b. True division (rounding_mode=None) of integers or bools gives the default float dtype;
    rounding_mode="floor" is floor_divide, "trunc" rounds toward zero (integers stay integers)."""
    if rounding_mode == "floor":
        return floor_divide(a, b)
    if rounding_mode == "trunc":
        return _trunc_divide(a, b)
    if rounding_mode is not None:
        raise ValueError(f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}")
    a, b, dtype = operands(a, b, "div")
    if _dt.category(dtype) < 2:                     # true division of integers gives floats
        dtype = _dt.get_default_dtype()
    return Div.apply(in_dtype(a, dtype), in_dtype(b, dtype))


def _trunc_divide(a, b):
    a, b, dtype = operands(a, b, "div")
    if _dt.category(dtype) >= 2:
        return trunc(div(a, b))
    q = floor_divide(a, b)                          # floor and trunc differ where q < 0 and b does not divide a
    with_rest = ne(mul(q, b), in_dtype(a, dtype))
    return add(q, logical_and(lt(q, 0), with_rest))


def remainder(a, b):
    a, b = binary_operands(a, b, "remainder")
    _no_bools(a, "remainder")
    check_integer_divisor(a, b, "remainder")
    return Remainder.apply(a, b)


def pow(a, b):
    """a ** b in the operands' result dtype. Integer bases to negative integer exponents: a Python
    exponent raises (as in PyTorch); a tensor exponent gives PyTorch's integer answer (1 for base 1,
    +-1 for base -1, 0 otherwise)."""
    a, b, dtype = operands(a, b, "pow")
    if dtype == _dt.bool_:
        if not _scalar(b):
            raise TypeError("pow: not defined for two bool tensors; convert with .int() or .float()")
        return ne(IntPow.apply(in_dtype(a, _dt.int8), in_dtype(b, _dt.int8)), 0)   # x ** True: x; ** False: ones
    if _dt.category(dtype) == 1:
        if _scalar(b) and b < 0:
            raise RuntimeError(f"pow: integers to negative integer powers are not allowed (base {dtype}, "
                               f"exponent {b}); use a float base, e.g. x.float() ** {b}")
        return IntPow.apply(in_dtype(a, dtype), in_dtype(b, dtype))
    return Pow.apply(in_dtype(a, dtype), in_dtype(b, dtype))


class IntPow(Function):
    """z = a ** b on integers (no gradient): where b < 0, z = 1 for a = 1, (-1)**b for a = -1, 0 otherwise."""
    differentiable = False

    def forward(self, a, b):
        if isinstance(b, np.generic) or b.dtype.kind == "u":
            return a ** b                           # (a negative Python exponent was refused before)
        xp = _xp(a, b)
        negative = b < 0
        z = a ** xp.where(negative, 0, b)
        odd = (b % 2) != 0
        small = xp.where(a == 1, 1, xp.where(a == -1, xp.where(odd, -1, 1), 0))
        return xp.where(negative, small, z).astype(z.dtype)


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
    dtype = _dt.result_type(x, *(v for v in (min, max) if v is not None))   # clamp(int tensor, 0.5) is float
    lo, hi = (None if v is None else in_dtype(v, dtype) for v in (min, max))
    return Clamp.apply(in_dtype(x, dtype), lo, hi)


clip = clamp


class Maximum(Function):
    """z = max(a, b) elementwise; the gradient goes to the larger input, split in half on ties (PyTorch)."""
    _saves = (("a", 0), ("b", 1))
    fresh_grads = True
    pick = staticmethod(lambda a, b: _xp(a, b).maximum(a, b))

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
    pick = staticmethod(lambda a, b: _xp(a, b).minimum(a, b))

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
    if _scalar(x) and _scalar(y):                   # where(mask, 1.0, 0) is the default float dtype
        dtype = _dt.result_type(x, y)
        x, y = _dt.scalar_as(x, dtype), _dt.scalar_as(y, dtype)
    else:
        x, y = binary_operands(x, y, "where")
    return Where.apply(condition, x, y)


# --- ops without gradients -------------------------------------------------------------------------
class _Elementwise(Function):
    """Shared body of the ops that have no gradient: run the NumPy/CuPy ufunc named `ufunc`."""
    differentiable = False
    ufunc = None

    def forward(self, *args):
        ref = next(a for a in args if hasattr(a, "shape") and not isinstance(a, np.generic))
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
    """floor(a / b) in the operands' result dtype (integers stay integers; not defined for two bools);
    integer division by zero raises, as in PyTorch. No gradient."""
    a, b = binary_operands(a, b, "floor_divide")
    _no_bools(a, "floor_divide")
    check_integer_divisor(a, b, "floor_divide")
    return _floor_divide(a, b)


equal_elementwise = eq


METHODS = ("add", "sub", "mul", "div", "true_divide", "divide", "subtract", "multiply", "remainder", "pow",
            "neg", "negative", "clamp", "clip", "maximum", "minimum", "eq", "ne", "lt", "le", "gt", "ge",
            "logical_and", "logical_or", "logical_xor", "logical_not", "isnan", "isinf", "isfinite", "sign",
            "floor", "ceil", "round", "trunc", "floor_divide")
__all__ = METHODS + ("where", "binary_operands", "as_tensor_operand", "float_input")
