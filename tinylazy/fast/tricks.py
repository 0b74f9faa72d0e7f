"""Measured CPU tricks: a faster (or more exact) way to compute a formula that an op states plainly.

Each function names the plain formula it replaces and the measurement that kept it.
"""
import numpy as np

_INT_OF_WIDTH = {2: np.int16, 4: np.int32, 8: np.int64}


def relu_grad(g, y, xp, in_place=False):
    """ReLU's backward, g * (y > 0) in maths, exactly as PyTorch's threshold_backward(g, y, 0): +0 where
    y <= 0, else g, so a NaN or inf gradient of an off unit gives 0 (g * (y > 0) would keep it NaN) and a
    NaN output passes its gradient. With `in_place` the result is written over g.

    Done on the bits: the sign test gives an int mask, 0 where y <= 0 and all ones (-1) elsewhere, and the
    gradient's bits are AND-ed with it. Measured against g * (y > 0): at 256x256 in place, float32 6-8 us
    (about 25%) slower, float16 9x faster; in the batch-256 MLP train step, 1.0-1.8% slower
    (bench/ab_revision.py, three runs). Masked writes (where, putmask, copyto) took 260-450 us."""
    ints = _INT_OF_WIDTH.get(g.itemsize)
    if ints is None:                                  # no int as wide (longdouble): the masked write
        out = g if in_place else g.copy()
        xp.copyto(out, 0, where=xp.less_equal(y, 0))
        return out
    mask = xp.less_equal(y, 0).view(np.int8)          # 1 where off, 0 where on ...
    mask -= 1                                         # ... 0 where off, -1 (all bits set) where on
    bits = g.view(ints)                               # the gradient's bits, as ints of the same width
    out = xp.bitwise_and(bits, mask, out=bits if in_place else None)
    return g if in_place else out.view(g.dtype)
