"""Tensor's operators and op methods: `a + b`, `a @ b`, `t.sum()`, ... are the public ops of tinylazy.ops.

The arithmetic lives in one place (one Function per op, in ops/); this binds those functions onto the
Tensor class when tensor.py is imported, so `t.exp()` is `tl.exp(t)` and `a + b` is `tl.add(a, b)`.
"""
from . import ops as _ops
from .tensor_inplace import inplace_operator


def bind(T):
    """Make every name in ops.METHODS a method of Tensor `T`, and the operators its dunder methods."""
    for name in _ops.METHODS:
        setattr(T, name, getattr(_ops, name))
    binary = {"add": "add", "sub": "sub", "mul": "mul", "truediv": "div", "floordiv": "floor_divide",
              "mod": "remainder", "pow": "pow", "matmul": "matmul"}
    for dunder, fn in binary.items():
        op = getattr(_ops, fn)
        setattr(T, f"__{dunder}__", op)
        setattr(T, f"__r{dunder}__", (lambda op: lambda self, other: op(other, self))(op))
        setattr(T, f"__i{dunder}__", inplace_operator(f"__i{dunder}__", op))
    T.__neg__ = _ops.neg
    T.__pos__ = lambda self: self
    T.__abs__ = _ops.abs
    T.__invert__ = _ops.logical_not
    T.__and__, T.__or__, T.__xor__ = _ops.logical_and, _ops.logical_or, _ops.logical_xor
    # comparing with None (e.g. `t in [None, t]`) answers as Python does, not with an error
    T.__eq__ = lambda self, other: False if other is None else _ops.eq(self, other)
    T.__ne__ = lambda self, other: True if other is None else _ops.ne(self, other)
    T.__lt__, T.__le__, T.__gt__, T.__ge__ = _ops.lt, _ops.le, _ops.gt, _ops.ge
    T.__getitem__, T.__setitem__ = _ops.getitem, _ops.setitem
    T.T = property(lambda self: _ops.permute(self, tuple(range(self.ndim - 1, -1, -1))))
    T.mT = property(lambda self: _ops.transpose(self, -2, -1))
