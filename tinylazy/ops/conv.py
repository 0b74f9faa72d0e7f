"""2-D convolution (PyTorch's F.conv2d) as one Function, by im2col and one matrix product.

How it computes (N batch, C in-channels, O out-channels, G groups, kernel kh x kw, output Ho x Wo):

1. The input is copied once into a zero-padded buffer in *batch-last* layout (C, Hp, Wp, N).
2. im2col is a strided view of that buffer, cols[c, i, j, ho, wo, n] = xpad[c, ho*sh + i*dh, wo*sw + j*dw, n],
   copied into a contiguous (G, C/G*kh*kw, Ho*Wo*N) matrix. Because n is the fastest axis, every run the copy
   reads is Wo*N (or N) elements long -- an NCHW im2col reads runs of only Wo, which for small images is
   several times slower.
3. out = W (G, O/G, C/G*kh*kw) @ cols: one BLAS call per group (`_gemm`), giving (O, Ho, Wo, N). The result is returned as
   the transposed *view* (N, O, Ho, Wo) of that buffer: no copy. NumPy ops downstream do not care about the
   memory order (elementwise ops keep it), and the next conv2d gets its batch-last input for free.

Backward, with g2 the output gradient as (G, O/G, Ho*Wo*N):
  dW = g2 @ cols^T (one BLAS call),  db = g2 summed over its last axis,
  dcols = W^T @ g2, then col2im: for each kernel tap (i, j), add dcols[:, i, j] into the strided slice of a
  zero (C, Hp, Wp, N) buffer that the tap read in forward (kh*kw vectorized adds, each over runs of Wo*N);
  dx is that buffer without its padding, as an (N, C, H, W) view.
Saves cols (only when W needs a gradient) and W (only when the input needs one).

With `activation` (see ops/linear.py) the output is act(conv + b), the epilogue running over the fresh
(O, Ho, Wo, N) product in place, and backward first takes g2 back through it.
"""
import numpy as np

from .. import cuda, fast
from ..autograd import Function
from ..backend import is_meta, xp_of
from ..errors import ShapeError
from ..meta import MetaArray
from ..tensor import Tensor
from .elementwise import as_tensor_operand
from .linear import activation_epilogue

METHODS = ()
__all__ = ("conv2d",)


# --- window geometry, shared with pool.py ----------------------------------------------------------
def _pair(value, name, op):
    """An int or a pair of ints as a 2-tuple of Python ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value):
        return int(value[0]), int(value[1])
    if isinstance(value, (tuple, list)) and len(value) == 1 and isinstance(value[0], (int, np.integer)):
        return int(value[0]), int(value[0])
    raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")


def _taps(kh, kw, ho, wo, stride, dilation, offset=(0, 0)):
    """For each kernel tap (i, j): the (row, col) slices of the padded input that the tap reads for all
    outputs: rows i*dh + ho*sh for ho < Ho (and likewise for columns)."""
    (sh, sw), (dh, dw), (oh, ow) = stride, dilation, offset
    for i in range(kh):
        rows = slice(oh + i * dh, oh + i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            yield i, j, rows, slice(ow + j * dw, ow + j * dw + sw * (wo - 1) + 1, sw)


def _gemm(xp, a, b):
    """a @ b for stacks of matrices (one per group): one BLAS call per group; a single group's product goes
    through fast.tricks.matmul (blocks along a long size where that was measured faster)."""
    if a.shape[0] == 1:
        return fast.tricks.matmul(a[0], b[0])[None]
    return xp.matmul(a, b)


def _as_strided(xp, a, shape, strides):
    return xp.lib.stride_tricks.as_strided(a, shape=shape, strides=strides)


# --- the op ----------------------------------------------------------------------------------------
class Conv2d(Function):
    """y[n, o] = b[o] + sum_{c in o's group, i, j} W[o, c, i, j] * xpad[n, c, ho*sh + i*dh, wo*sw + j*dw].

    See the module docstring for the layout; `geom` = (stride, dilation, (top, bottom, left, right), groups)."""
    _saves = (("w3", 1), ("bias", 2), ("output", -1))
    fresh_grads = True
    overwrites_grad = True                  # the activation's backward may mask g in place

    def forward(self, x, w, b, geom, activation=None):
        (sh, sw), (dh, dw), (pt, pb, pl, pr), groups = geom
        self.unbatched = x.ndim == 3
        if self.unbatched:
            x = x[None]
        n, c, h, wd = x.shape
        o, cg, kh, kw = w.shape
        ho = (h + pt + pb - dh * (kh - 1) - 1) // sh + 1
        wo = (wd + pl + pr - dw * (kw - 1) - 1) // sw + 1
        out_shape = (o, ho, wo) if self.unbatched else (n, o, ho, wo)
        if is_meta(x) or is_meta(w):
            self.shapes = (((c, h, wd) if self.unbatched else (n, c, h, wd)), w.shape,
                           None if b is None else b.shape)
            return MetaArray(out_shape, x.dtype)
        xp = xp_of(x)
        need_x, need_w, _ = self.needs_input_grad
        xpad = _pad_batch_last(xp, x, (pt, pb, pl, pr))                   # (C, Hp, Wp, N)
        s_c, s_h, s_w, s_n = xpad.strides
        view = _as_strided(xp, xpad, (c, kh, kw, ho, wo, n), (s_c, s_h * dh, s_w * dw, s_h * sh, s_w * sw, s_n))
        cols = view.reshape(groups, cg * kh * kw, ho * wo * n)              # the one im2col copy
        w3 = w.reshape(groups, o // groups, cg * kh * kw)
        out = _gemm(xp, w3, cols).reshape(o, ho, wo, n)
        self.act = activation
        if activation is not None:
            out = activation_epilogue(self, out, b, activation, axis=0)
        elif b is not None:
            out += b.reshape(o, 1, 1, 1)
        if need_w:
            self.cols = cols
        if need_x:
            self.w3 = w3
        self.geom, self.x_shape, self.w_shape = geom, (n, c, h, wd), w.shape
        y = out.transpose(3, 0, 1, 2)                                       # (N, O, Ho, Wo), a view
        if xp is not np:
            y = xp.ascontiguousarray(y)       # CuPy: the custom kernels downstream want C-contiguous arrays
        return y[0] if self.unbatched else y

    def backward(self, g):
        need_x, need_w, need_b = self.needs_input_grad
        if is_meta(g):
            return tuple(MetaArray(s, g.dtype) if s is not None and need else None
                         for s, need in zip(self.shapes, self.needs_input_grad))
        xp = xp_of(g)
        if self.unbatched:
            g = g[None]
        n, o, ho, wo = g.shape
        groups = self.geom[3]
        gt = g.transpose(1, 2, 3, 0)                                        # (O, Ho, Wo, N)
        g4 = xp.ascontiguousarray(gt)
        if self.act is not None:            # back through the activation first
            own = self.grad_owned or not gt.flags.c_contiguous                # a copy is ours as well
            s = self.saved                  # the output, or for the gelus the product, plus b if any
            if self.bias is not None and not cuda.act_saves_output(self.act):
                s = s + self.bias.reshape(o, 1, 1, 1)
            # (not bias_act_bwd: its bias reduction gives each channel one warp, too few for a conv's
            # (O, Ho*Wo*N) layout; an elementwise pass and a sum parallelize over everything)
            g4 = cuda.act_bwd(g4, s, self.act, overwrite_grad=own)
        g2 = g4.reshape(groups, o // groups, ho * wo * n)
        gb = g2.sum(axis=2).reshape(o) if need_b else None
        gw = _gemm(xp, g2, self.cols.transpose(0, 2, 1)).reshape(self.w_shape) if need_w else None
        gx = self._input_grad(xp, g2, n, ho, wo) if need_x else None
        return gx, gw, gb

    def _input_grad(self, xp, g2, n, ho, wo):
        """col2im: scatter-add W^T @ g2 back over every input position each kernel tap read."""
        stride, dilation, (pt, pb, pl, pr), _ = self.geom
        _, c, h, wd = self.x_shape
        _, _, kh, kw = self.w_shape
        dcols = _gemm(xp, self.w3.transpose(0, 2, 1), g2).reshape(c, kh, kw, ho, wo, n)
        dpad = xp.zeros((c, h + pt + pb, wd + pl + pr, n), g2.dtype)
        for i, j, rows, cols in _taps(kh, kw, ho, wo, stride, dilation):
            dpad[:, rows, cols] += dcols[:, i, j]
        gx = dpad[:, pt:pt + h, pl:pl + wd].transpose(3, 0, 1, 2)
        if xp is not np:
            gx = xp.ascontiguousarray(gx)
        return gx[0] if self.unbatched else gx


def _pad_batch_last(xp, x, pads):
    """x (N, C, H, W) as a contiguous zero-padded (C, H+top+bottom, W+left+right, N) array (x itself, seen
    through a transpose, when it already is one)."""
    pt, pb, pl, pr = pads
    xt = x.transpose(1, 2, 3, 0)
    if not (pt or pb or pl or pr):
        return xp.ascontiguousarray(xt)
    c, h, w, n = xt.shape
    buf = xp.zeros((c, h + pt + pb, w + pl + pr, n), x.dtype)
    buf[:, pt:pt + h, pl:pl + w] = xt
    return buf


# --- the public function: validation before any work -----------------------------------------------
def _padding(padding, kernel, dilation, stride):
    """(top, bottom, left, right) from an int, a pair, 'valid' or 'same' (PyTorch's rules)."""
    if isinstance(padding, str):
        if padding == "valid":
            return 0, 0, 0, 0
        if padding == "same":
            if stride != (1, 1):
                raise ValueError(f"conv2d: padding='same' is not supported for strided convolutions "
                                 f"(stride={stride})")
            pads = []
            for k, d in zip(kernel, dilation):
                total = d * (k - 1)                 # odd totals put the extra row/column at the end
                pads += [total // 2, total - total // 2]
            return tuple(pads)
        raise ValueError(f"conv2d: padding must be an int, a pair of ints, 'valid' or 'same', got {padding!r}")
    ph, pw = _pair(padding, "padding", "conv2d")
    if ph < 0 or pw < 0:
        raise ValueError(f"conv2d: padding must be non-negative, got {padding!r}")
    return ph, ph, pw, pw


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, activation=None):
    """2-D convolution (cross-correlation, as PyTorch): input (N, C, H, W) or unbatched (C, H, W), weight
    (O, C/groups, kh, kw), bias (O,) or None. stride, dilation: int or pair; padding: int, pair, 'valid' or
    'same'. Output (N, O, Ho, Wo) with Ho = (H + 2*ph - dh*(kh - 1) - 1) // sh + 1 (likewise Wo).
    tinylazy's `activation` (as in linear) returns act(output) from the same node."""
    x = input if type(input) is Tensor else as_tensor_operand(input, None, "conv2d")
    w = weight if type(weight) is Tensor else as_tensor_operand(weight, None, "conv2d")
    xd, wd = x.array, w.array
    if xd.ndim not in (3, 4):
        raise ShapeError(f"conv2d: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, got shape {tuple(xd.shape)}")
    if wd.ndim != 4:
        raise ShapeError(f"conv2d: expected a 4-D weight (out_channels, in_channels/groups, kH, kW), "
                         f"got shape {tuple(wd.shape)}")
    for what, t in (("input", xd), ("weight", wd)):
        if t.dtype.kind != "f":
            raise TypeError(f"conv2d: the {what} is {t.dtype}, but conv2d needs floating-point tensors; "
                            "convert it with .float()")
    if xd.dtype != wd.dtype:
        raise TypeError(f"conv2d: the input is {xd.dtype} but the weight is {wd.dtype}; convert one of them "
                        f"(e.g. input.to({str(wd.dtype)!r}))")
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups < 1:
        raise ValueError(f"conv2d: groups must be a positive int, got {groups!r}")
    groups = int(groups)
    o, cg, kh, kw = wd.shape
    c = xd.shape[-3]
    if o % groups:
        raise ShapeError(f"conv2d: out_channels={o} (weight shape {tuple(wd.shape)}) is not divisible by "
                         f"groups={groups}")
    if c % groups:
        raise ShapeError(f"conv2d: in_channels={c} (input shape {tuple(xd.shape)}) is not divisible by "
                         f"groups={groups}")
    if c != cg * groups:
        raise ShapeError(f"conv2d: weight of shape {tuple(wd.shape)} with groups={groups} expects input with "
                         f"{cg * groups} channels (shape (N, {cg * groups}, H, W)), got input of shape "
                         f"{tuple(xd.shape)} with {c} channels")
    if bias is not None:
        bias = bias if type(bias) is Tensor else as_tensor_operand(bias, None, "conv2d")
        if tuple(bias.array.shape) != (o,):
            raise ShapeError(f"conv2d: expected bias of shape ({o},) for weight of shape {tuple(wd.shape)}, "
                             f"got {tuple(bias.array.shape)}")
        if bias.array.dtype != wd.dtype:
            raise TypeError(f"conv2d: the bias is {bias.array.dtype} but the weight is {wd.dtype}")
    stride = _pair(stride, "stride", "conv2d")
    dilation = _pair(dilation, "dilation", "conv2d")
    if min(stride) < 1 or min(dilation) < 1:
        raise ValueError(f"conv2d: stride and dilation must be positive, got stride={stride}, dilation={dilation}")
    pads = _padding(padding, (kh, kw), dilation, stride)
    h, wi = xd.shape[-2:]
    hp, wp = h + pads[0] + pads[1], wi + pads[2] + pads[3]
    eh, ew = dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1
    if eh > hp or ew > wp:
        raise ShapeError(f"conv2d: the kernel ({kh}x{kw}, {eh}x{ew} with dilation {dilation}) is larger than the "
                         f"padded input ({hp}x{wp}); input shape {tuple(xd.shape)}, weight shape "
                         f"{tuple(wd.shape)}, padding {pads[0::2] if pads[0] == pads[1] else pads}")
    if xd.shape[-3] == 0 or 0 in wd.shape:
        raise ShapeError(f"conv2d: empty channels or kernel: input shape {tuple(xd.shape)}, weight shape "
                         f"{tuple(wd.shape)}")
    if activation is not None and activation not in cuda.ACTIVATIONS:
        raise ValueError(f"conv2d: unknown activation {activation!r}; expected None or one of {cuda.ACTIVATIONS}")
    return Conv2d.apply(x, w, bias, geom=(stride, dilation, pads, groups), activation=activation)
