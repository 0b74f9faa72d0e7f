"""Matrix products: matmul (with PyTorch's rules for 1-d operands and broadcast batch dims), mm, bmm,
dot, outer.

For C = A @ B the gradients are dA = dC @ B^T and dB = A^T @ dC. A 1-d operand is treated as a matrix
with a size-1 dim inserted (a row vector on the left, a column vector on the right) that the result
then drops; backward puts that dim back into the gradient and takes it out of the answer. Broadcast
batch dims are summed back with `unbroadcast`, except in the common case "batched @ matrix" where
dB = A^T @ dC is one big product over the flattened batch instead of a batch of products and a sum.
"""
import math

from ..autograd import Function, unbroadcast
from ..backend import xp_of
from ..errors import ShapeError
from ..tensor import Tensor
from .elementwise import as_tensor_operand, mul
from .shape import reshape


def _mT(a):
    """Swap the last two dims (a view)."""
    return a.T if a.ndim == 2 else xp_of(a).swapaxes(a, -1, -2)


class MatMul(Function):
    """C = A @ B (NumPy's matmul: batched, broadcasting, 1-d operands promoted). Saves B when A needs a
    gradient and A when B does. Both gradients are new products, so the engine may keep them without a copy."""
    _saves = (("a", 0), ("b", 1))
    fresh_grads = True

    def forward(self, a, b):
        na, nb = self.needs_input_grad
        self.shapes = (a.shape, b.shape)
        self.a, self.b = (a if nb else None), (b if na else None)
        return a @ b

    def backward(self, g):
        a, b = self.a, self.b
        sa, sb = self.shapes
        na, nb = self.needs_input_grad
        if len(sa) == 2 and len(sb) == 2:                               # the common case first
            return (g @ b.T if na else None), (a.T @ g if nb else None)
        sa2 = (1,) + sa if len(sa) == 1 else sa                         # a as a row vector
        sb2 = sb + (1,) if len(sb) == 1 else sb                         # b as a column vector
        if len(sa) == 1:
            g = g.reshape(g.shape[:-1] + (1,) + g.shape[-1:]) if len(sb) > 1 else g.reshape(1, 1)
        if len(sb) == 1:
            g = g.reshape(g.shape + (1,)) if len(sa) > 1 else g
        ga = gb = None
        if na:
            ga = unbroadcast(g @ _mT(b.reshape(sb2)), sa2).reshape(sa)
        if nb:
            a2 = a.reshape(sa2)
            if len(sb2) == 2 and len(sa2) > 2:                          # batched @ matrix: one product
                rows, k, m = math.prod(sa2[:-1]), sa2[-1], g.shape[-1]
                gb = a2.reshape(rows, k).T @ g.reshape(rows, m)
            else:
                gb = unbroadcast(_mT(a2) @ g, sb2)
            gb = gb.reshape(sb)
        return ga, gb


def _operand(x, op):
    if isinstance(x, Tensor):
        return x
    if isinstance(x, (int, float, bool, complex)):
        raise ShapeError(f"{op}: both arguments need at least one dimension, got a Python number")
    return as_tensor_operand(x, None, op)


def matmul(a, b):
    """Matrix product with PyTorch's rules: 1-d @ 1-d is a dot product, a 1-d operand on the left (right)
    is a row (column) vector whose dim the result drops, and batch dims broadcast."""
    a, b = _operand(a, "matmul"), _operand(b, "matmul")
    try:
        return MatMul.apply(a, b)
    except ValueError:
        raise _mismatch("matmul", a.shape, b.shape) from None


def _mismatch(op, sa, sb):
    sa, sb = tuple(sa), tuple(sb)
    if not sa or not sb:
        return ShapeError(f"{op}: both arguments need at least one dimension, got shapes {sa} and {sb}")
    k1, k2 = sa[-1], (sb[-2] if len(sb) > 1 else sb[0])
    if k1 != k2:
        return ShapeError(f"{op}: shapes {sa} and {sb} cannot be multiplied (inner sizes {k1} != {k2})")
    return ShapeError(f"{op}: the batch dims of shapes {sa} and {sb} do not broadcast "
                      f"({sa[:-2]} vs {sb[:-2]})")


def mm(a, b):
    """Product of two matrices (2-d tensors only, no broadcasting)."""
    a, b = _operand(a, "mm"), _operand(b, "mm")
    if a.ndim != 2 or b.ndim != 2:
        raise ShapeError(f"mm: expects two matrices (2-d), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[1] != b.shape[0]:
        raise _mismatch("mm", a.shape, b.shape)
    return MatMul.apply(a, b)


def bmm(a, b):
    """Batched product of (B, n, k) and (B, k, m) tensors (same B, no broadcasting)."""
    a, b = _operand(a, "bmm"), _operand(b, "bmm")
    if a.ndim != 3 or b.ndim != 3:
        raise ShapeError(f"bmm: expects two 3-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    if a.shape[0] != b.shape[0] or a.shape[2] != b.shape[1]:
        raise ShapeError(f"bmm: shapes {tuple(a.shape)} and {tuple(b.shape)} do not fit: expected (B, n, k) and (B, k, m) "
                         "with the same B and k")
    return MatMul.apply(a, b)


def dot(a, b):
    """Dot product of two 1-d tensors of the same size."""
    a, b = _operand(a, "dot"), _operand(b, "dot")
    if a.ndim != 1 or b.ndim != 1 or a.shape != b.shape:
        raise ShapeError(f"dot: expects two 1-d tensors of the same size, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return MatMul.apply(a, b)


vdot = dot


def mv(a, b):
    """Matrix (n, k) times vector (k,)."""
    a, b = _operand(a, "mv"), _operand(b, "mv")
    if a.ndim != 2 or b.ndim != 1 or a.shape[1] != b.shape[0]:
        raise ShapeError(f"mv: expects a matrix (n, k) and a vector (k,), got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return MatMul.apply(a, b)


def outer(a, b):
    """Outer product of two 1-d tensors: out[i, j] = a[i] * b[j]."""
    a, b = _operand(a, "outer"), _operand(b, "outer")
    if a.ndim != 1 or b.ndim != 1:
        raise ShapeError(f"outer: expects two 1-d tensors, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return mul(reshape(a, -1, 1), reshape(b, 1, -1))


ger = outer

METHODS = ("matmul", "mm", "bmm", "dot", "vdot", "mv", "outer", "ger")
__all__ = METHODS
