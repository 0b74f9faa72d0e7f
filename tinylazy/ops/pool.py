"""Pooling: max_pool2d, avg_pool2d, adaptive_avg_pool2d (PyTorch's names, arguments and output sizes).

Every pool here is a loop over the *kernel taps*, never over pixels: tap (i, j) of all windows at once is one
strided slice of the (padded) input, xpad[..., i*dh + ho*sh, j*dw + wo*sw] for all (ho, wo). A 2x2 pool is
four vectorized slices. The ops work on any memory layout (conv2d returns batch-last views) and keep it.
"""
import numpy as np

from ..autograd import Function
from ..backend import is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .conv import _pair, _taps
from .elementwise import as_tensor_operand

METHODS = ()
__all__ = ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d")


# --- geometry --------------------------------------------------------------------------------------
def _out_size(n, k, s, p, d, ceil_mode):
    """PyTorch's pooling output size; in ceil mode the last window must start inside the input or its
    left padding."""
    out = (n + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= n + p:
        out -= 1
    return out


def _geometry(op, x, kernel_size, stride, padding, dilation, ceil_mode):
    """Validated (kernel, stride, dilation, (top, bottom, left, right) padding, (Ho, Wo)). The bottom/right
    padding is just what the last window needs (more than `padding` in ceil mode, less when it does not
    reach the end)."""
    if x.ndim not in (3, 4):
        raise ShapeError(f"{op}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {tuple(x.shape)}")
    kernel = _pair(kernel_size, "kernel_size", op)
    stride = kernel if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0) \
        else _pair(stride, "stride", op)
    pad, dil = _pair(padding, "padding", op), _pair(dilation, "dilation", op)
    if min(kernel) < 1 or min(stride) < 1 or min(dil) < 1:
        raise ValueError(f"{op}: kernel_size, stride and dilation must be positive, got kernel_size={kernel}, "
                         f"stride={stride}, dilation={dil}")
    if min(pad) < 0 or pad[0] > kernel[0] // 2 or pad[1] > kernel[1] // 2:
        raise ValueError(f"{op}: padding must be between 0 and half the kernel size, got padding={pad} for "
                         f"kernel_size={kernel}")
    h, w = x.shape[-2:]
    out = tuple(_out_size(n, k, s, p, d, ceil_mode) for n, k, s, p, d in zip((h, w), kernel, stride, pad, dil))
    if min(out) < 1:
        raise ShapeError(f"{op}: input of shape {tuple(x.shape)} is too small for kernel_size={kernel}, "
                         f"stride={stride}, padding={pad}, dilation={dil}: the output would be "
                         f"{out[0]}x{out[1]}")
    ends = [(o - 1) * s + d * (k - 1) + 1 - n - p for o, s, d, k, n, p in zip(out, stride, dil, kernel, (h, w), pad)]
    pads = (pad[0], max(ends[0], 0), pad[1], max(ends[1], 0))
    return kernel, stride, dil, pads, out


def _pad(xp, x, pads, value):
    """x with `value` added around its last two axes (x itself when no padding), in x's memory layout."""
    pt, pb, pl, pr = pads
    if not (pt or pb or pl or pr):
        return x
    h, w = x.shape[-2:]
    buf = xp.empty_like(x, shape=x.shape[:-2] + (h + pt + pb, w + pl + pr))
    buf.fill(value)
    buf[..., pt:pt + h, pl:pl + w] = x
    return buf


def _tiles(kernel, stride, dilation, pads, out, shape):
    """True when the windows tile the input exactly (no overlap, no gap, no padding): backward may then
    write each tap's slice instead of accumulating into a zeroed buffer."""
    return pads == (0, 0, 0, 0) and all(d == 1 and s == k and o * s == n
                                        for s, d, k, o, n in zip(stride, dilation, kernel, out, shape[-2:]))


def _layout(a):
    """a's axes from the outermost in memory to the innermost (the identity for a C-contiguous array)."""
    return tuple(sorted(range(a.ndim), key=lambda k: -a.strides[k]))


def _in_layout(xp, a, layout):
    """a with its memory ordered as `layout` (see _layout): a itself when it already is, else one copy. An
    elementwise pass over arrays of different layouts walks one of them with large strides (several times
    slower); Flatten's backward, for one, hands the pool a C-ordered gradient for a batch-last input. (Max
    pooling only: avg pool's backward, two separable spreads, measured slower with the copy than without.)"""
    if _layout(a) == layout:
        return a
    return xp.ascontiguousarray(a.transpose(layout)).transpose(tuple(int(k) for k in np.argsort(layout)))


def _new(xp, shape, dtype, layout, zero):
    """A new array of `shape` whose memory order follows `layout` (see _layout); zeroed when `zero`."""
    buf = (xp.zeros if zero else xp.empty)(tuple(shape[k] for k in layout), dtype)
    return buf.transpose(tuple(int(k) for k in np.argsort(layout)))


def _check_input(op, input):
    x = input if type(input) is Tensor else as_tensor_operand(input, None, op)
    if x.array.dtype.kind != "f":
        raise TypeError(f"{op}: expected a floating-point input, got {x.array.dtype} (convert it with .float())")
    return x


# --- max pooling -----------------------------------------------------------------------------------
def _max_forward(xp, x, geom):
    """(padded input, max over each window): a running np.maximum over the kernel taps (NaN propagates)."""
    kernel, stride, dil, pads, (ho, wo) = geom
    xpad = _pad(xp, x, pads, -np.inf)
    out = None
    for i, j, rows, cols in _taps(kernel[0], kernel[1], ho, wo, stride, dil):
        win = xpad[..., rows, cols]
        if out is None:
            out = win.copy(order="K")
        else:
            xp.maximum(out, win, out=out)
    return xpad, out


class MaxPool2d(Function):
    """y = max over each window of xpad (padding is -inf). dy/dx: g goes to each window's first maximal
    element in row-major window order (PyTorch's tie rule; in a window holding NaN, its last NaN),
    accumulated where windows overlap. Saves the padded input and the output; backward finds the winners
    tap by tap (`_winners`): tap k wins where it equals the max and no earlier tap did."""
    fresh_grads = True

    def forward(self, x, geom):
        self.geom, self.x_shape = geom, x.shape
        if is_meta(x):
            return MetaArray(x.shape[:-2] + geom[4], x.dtype)
        xpad, out = _max_forward(xp_of(x), x, geom)
        if self.needs_input_grad[0]:
            self.xpad, self.out = xpad, out
        return out

    def backward(self, g):
        if is_meta(g):
            return MetaArray(self.x_shape, g.dtype)
        xp = xp_of(g)
        g = _in_layout(xp, g, _layout(self.out))
        kernel, stride, dil, pads, (ho, wo) = self.geom
        h, w = self.x_shape[-2:]
        tiles = _tiles(kernel, stride, dil, pads, (ho, wo), self.x_shape)
        dpad = (xp.empty_like if tiles else xp.zeros_like)(self.xpad, dtype=g.dtype)   # the input's layout
        taps = list(_taps(kernel[0], kernel[1], ho, wo, stride, dil))
        wins = _winners(xp, self.xpad, self.out, taps, nan_rule=_may_hold_nan(xp, self.out))
        for (i, j, rows, cols), won in zip(taps, wins):
            if tiles:                            # disjoint slices that cover everything: write, do not add
                xp.multiply(g, won, out=dpad[..., rows, cols])
            else:
                dpad[..., rows, cols] += g * won
        return dpad[..., pads[0]:pads[0] + h, pads[2]:pads[2] + w]


def _may_hold_nan(xp, out):
    """Whether the NaN rule of `_winners` is needed. On cpu: only when the output holds a NaN (one cheap
    read). Otherwise always: on cuda the read would be a device-to-host copy that waits for the GPU (a sync
    in every training step), and while a step is recorded by tl.capture (`out` is not a plain ndarray) a
    read would freeze this decision into the replayed program. The rule gives the same winners without NaNs."""
    return type(out) is not np.ndarray or bool(xp.isnan(out).any())


def _winners(xp, xpad, out, taps, nan_rule):
    """One boolean mask per tap: where that tap wins its window by PyTorch's rule (scan the taps in order,
    replace the max when a value is greater or NaN): the first tap equal to the max, or, in a window that
    holds NaN, its last NaN tap. Exactly one tap wins each window. Without `nan_rule` a NaN window has no
    winner (its max is NaN, which equals nothing): pass False only when `out` holds no NaN."""
    wins, taken = [], None
    for i, j, rows, cols in taps:                       # first tap equal to the max
        w = xpad[..., rows, cols] == out
        if taken is None:
            taken = w.copy(order="K")                   # (keep the layout: mixed layouts are slow)
        else:
            w &= ~taken                                  # an earlier tap already holds this window's max
            taken |= w
        wins.append(w)
    if nan_rule:
        later = None
        for k in reversed(range(len(taps))):             # last NaN tap: scan backwards, keep the first seen
            v = xpad[..., taps[k][2], taps[k][3]]
            nan = v != v
            if later is None:
                later = nan.copy(order="K")
            else:
                nan &= ~later
                later |= nan
            wins[k] |= nan
    return wins


def _winning_taps(xp, xpad, out, taps):
    """The tap index of each window's winner (`_winners` with the NaN rule), as an int64 array."""
    arg = xp.zeros(out.shape, np.int64)
    for k, w in enumerate(_winners(xp, xpad, out, taps, nan_rule=True)):
        if k:
            arg += w * k
    return arg


class _MaxPoolIndices(Function):
    """The flat index (h * W + w in the unpadded input plane) of each window's max, as PyTorch's
    return_indices gives it: the first maximal tap, or the last NaN tap of a window holding NaN. No gradient."""
    differentiable = False

    def forward(self, x, geom):
        if is_meta(x):
            return MetaArray(x.shape[:-2] + geom[4], np.int64)
        xp = xp_of(x)
        kernel, stride, dil, pads, (ho, wo) = geom
        xpad, out = _max_forward(xp, x, geom)
        arg = _winning_taps(xp, xpad, out, list(_taps(kernel[0], kernel[1], ho, wo, stride, dil)))
        rows = (xp.arange(ho) * stride[0] - pads[0])[:, None] + (arg // kernel[1]) * dil[0]
        cols = (xp.arange(wo) * stride[1] - pads[2]) + (arg % kernel[1]) * dil[1]
        return rows * x.shape[-1] + cols


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over kh x kw windows (input (N, C, H, W) or (C, H, W)); stride defaults to kernel_size, padding
    (at most half the kernel) is -inf. With return_indices, also the flat h * W + w index of each max."""
    x = _check_input("max_pool2d", input)
    geom = _geometry("max_pool2d", x.array, kernel_size, stride, padding, dilation, ceil_mode)
    out = MaxPool2d.apply(x, geom=geom)
    if return_indices:
        return out, _MaxPoolIndices.apply(x, geom=geom)
    return out


# --- average pooling -------------------------------------------------------------------------------
def _window_sum(a, k, step, n, axis):
    """sum_{i<k} a[..., i + step*o, ...] for o < n along `axis` (-1 or -2): k strided slices, k-1 adds."""
    def tap(i):
        s = slice(i, i + step * (n - 1) + 1, step)
        return a[..., s] if axis == -1 else a[..., s, :]
    acc = tap(0).copy(order="K") if k == 1 else tap(0) + tap(1)
    for i in range(2, k):
        acc += tap(i)
    return acc


def _window_spread(xp, g, k, step, size, axis, tiles, layout):
    """The adjoint of _window_sum: out[..., i + step*o] += g[..., o] for i < k, into a new array of `size`
    along `axis`, laid out in memory as `layout` says."""
    shape = list(g.shape)
    shape[axis] = size
    out = _new(xp, shape, g.dtype, layout, zero=not tiles)
    n = g.shape[axis]
    for i in range(k):
        s = slice(i, i + step * (n - 1) + 1, step)
        view = out[..., s] if axis == -1 else out[..., s, :]
        if tiles:
            view[...] = g
        else:
            view += g
    return out


def _divisor(xp, x, kernel, stride, pads, out, count_include_pad, divisor_override):
    """PyTorch's divisor for each output position: the window clipped to the padded input (count_include_pad)
    or to the input itself; one number when every window has the same one."""
    if divisor_override is not None:
        return float(divisor_override)
    per_axis = []
    for k, s, p, o, n in zip(kernel, stride, pads[0::2], out, x.shape[-2:]):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, n + p)
        if count_include_pad:
            per_axis.append(end - start)
        else:
            per_axis.append(np.minimum(end, n) - np.maximum(start, 0))
    d = np.outer(per_axis[0], per_axis[1])
    if (d == d.flat[0]).all():
        return float(d.flat[0])
    return xp.asarray(d.astype(x.dtype))


class AvgPool2d(Function):
    """y = (sum of each kh x kw window of the zero-padded input) / divisor; dy/dx spreads g / divisor back
    over each window. Separable: the window sum is a sum over kernel rows, then over kernel columns
    (kh + kw slices instead of kh*kw). Saves only shapes and the divisor."""
    fresh_grads = True

    def forward(self, x, geom, divisor_args):
        kernel, stride, _, pads, out = geom
        self.geom, self.x_shape, self.layout = geom, x.shape, _layout(x)
        if is_meta(x):
            return MetaArray(x.shape[:-2] + out, x.dtype)
        xp = xp_of(x)
        self.divisor = _divisor(xp, x, kernel, stride, pads, out, *divisor_args)
        xpad = _pad(xp, x, pads, 0)
        y = _window_sum(_window_sum(xpad, kernel[0], stride[0], out[0], -2), kernel[1], stride[1], out[1], -1)
        if not isinstance(self.divisor, float):
            y /= self.divisor
        elif self.divisor != 1:
            y *= 1.0 / self.divisor
        return y

    def backward(self, g):
        shape = self.x_shape
        if is_meta(g):
            return MetaArray(shape, g.dtype)
        xp = xp_of(g)
        kernel, stride, _, pads, out = self.geom
        h, w = shape[-2:]
        tiles = _tiles(kernel, stride, (1, 1), pads, out, shape)
        gs = g * (1.0 / self.divisor) if isinstance(self.divisor, float) else g / self.divisor
        rows = _window_spread(xp, gs, kernel[1], stride[1], w + pads[2] + pads[3], -1, tiles, self.layout)
        dpad = _window_spread(xp, rows, kernel[0], stride[0], h + pads[0] + pads[1], -2, tiles, self.layout)
        return dpad[..., pads[0]:pads[0] + h, pads[2]:pads[2] + w]


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over kh x kw windows (input (N, C, H, W) or (C, H, W)); stride defaults to kernel_size; zero
    padding, counted in the divisor when count_include_pad (PyTorch's rules, also in ceil mode)."""
    x = _check_input("avg_pool2d", input)
    geom = _geometry("avg_pool2d", x.array, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (not isinstance(divisor_override, (int, np.integer)) or divisor_override == 0):
        raise ValueError(f"avg_pool2d: divisor_override must be a nonzero int, got {divisor_override!r}")
    return AvgPool2d.apply(x, geom=geom, divisor_args=(count_include_pad, divisor_override))


# --- adaptive average pooling ----------------------------------------------------------------------
def _adaptive_matrix(n, o, dtype):
    """(o, n) matrix averaging window i = [floor(i*n/o), ceil((i+1)*n/o)) -- PyTorch's windows."""
    m = np.zeros((o, n), dtype)
    for i in range(o):
        start, end = (i * n) // o, -((-(i + 1) * n) // o)
        m[i, start:end] = 1.0 / (end - start)
    return m


class AdaptiveAvgPool2d(Function):
    """Windows of varying size: y = Ph @ x @ Pw^T with Ph (Ho, H), Pw (Wo, W) averaging matrices (a window
    average is separable into a row average and a column average); dy/dx: gx = Ph^T @ g @ Pw.
    Saves the two small matrices."""
    fresh_grads = True

    def forward(self, x, out):
        self.x_shape = x.shape
        if is_meta(x):
            return MetaArray(x.shape[:-2] + out, x.dtype)
        xp = xp_of(x)
        self.ph = xp.asarray(_adaptive_matrix(x.shape[-2], out[0], x.dtype))
        self.pw = xp.asarray(_adaptive_matrix(x.shape[-1], out[1], x.dtype))
        return xp.matmul(self.ph, xp.matmul(x, self.pw.T))

    def backward(self, g):
        if is_meta(g):
            return MetaArray(self.x_shape, g.dtype)
        xp = xp_of(g)
        return xp.matmul(self.ph.T, xp.matmul(g, self.pw))


class _GlobalAvgPool(Function):
    """y = mean of each (H, W) plane (adaptive pooling to 1x1); dy/dx = g / (H*W) everywhere."""
    fresh_grads = True

    def forward(self, x):
        self.x_shape = x.shape
        if is_meta(x):
            return MetaArray(x.shape[:-2] + (1, 1), x.dtype)
        return x.mean(axis=(-2, -1), keepdims=True)

    def backward(self, g):
        shape = self.x_shape
        if is_meta(g):
            return MetaArray(shape, g.dtype)
        gx = xp_of(g).empty(shape, g.dtype)
        gx[...] = g * (1.0 / (shape[-1] * shape[-2]))
        return gx


def adaptive_avg_pool2d(input, output_size):
    """Average pooling to a fixed (Ho, Wo) (an int, a pair, None keeping that input size): window i along H
    covers [floor(i*H/Ho), ceil((i+1)*H/Ho)), as in PyTorch."""
    x = _check_input("adaptive_avg_pool2d", input)
    xd = x.array
    if xd.ndim not in (3, 4):
        raise ShapeError(f"adaptive_avg_pool2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape "
                         f"{tuple(xd.shape)}")
    sizes = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise TypeError(f"adaptive_avg_pool2d: output_size must be an int or a pair, got {output_size!r}")
    out = tuple(xd.shape[-2 + k] if s is None else _pair(s, "output_size", "adaptive_avg_pool2d")[0]
                for k, s in enumerate(sizes))
    if min(out) < 1:
        raise ShapeError(f"adaptive_avg_pool2d: output_size must be positive, got {out} for input of shape "
                         f"{tuple(xd.shape)}")
    h, w = xd.shape[-2:]
    if min(h, w) < 1:
        raise ShapeError(f"adaptive_avg_pool2d: input of shape {tuple(xd.shape)} has an empty plane")
    if out == (1, 1):
        return _GlobalAvgPool.apply(x)
    if h % out[0] == 0 and w % out[1] == 0:        # equal windows: an ordinary average pool
        k = (h // out[0], w // out[1])
        return AvgPool2d.apply(x, geom=(k, k, (1, 1), (0, 0, 0, 0), out), divisor_args=(True, None))
    return AdaptiveAvgPool2d.apply(x, out=out)
