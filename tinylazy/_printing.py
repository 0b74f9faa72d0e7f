"""Printing tensors as PyTorch does: `repr(t)` / `str(t)`, `format(t, spec)` and `tl.set_printoptions`.

For the same values, dtype and options, a cpu tensor prints the same string as PyTorch's (2.13), with one
deliberate difference: dtypes are spelled `dtype=tl.float64` where PyTorch writes `dtype=torch.float64`
(`DTYPE_PREFIX`).

Options (`set_printoptions`): `precision` (4) digits after the point, `threshold` (1000) elements before a
tensor is summarized, `edgeitems` (3) entries kept at each end of a summarized dimension, `linewidth` (80)
characters per line, `sci_mode` (None: chosen automatically; True/False force it). `profile` "default",
"short" (precision 2, edgeitems 2) or "full" (no summarization) first resets the other four. As in PyTorch,
every call sets `sci_mode` (leaving it out means None).

The rules, in PyTorch's order:

1. One *formatter* per tensor writes every element, so that the columns line up. It looks at the elements
   that will be printed (for a summarized tensor, only the kept edges).
   - Integer and bool tensors: each element as Python writes it (`7`, `-2`, `True`).
   - Floating tensors, judged by their finite non-zero elements only. If there are none (all zeros, nan
     or inf), integer mode: `tensor([0., nan])`. Otherwise:
       * notation: scientific (`1.2346e-05`) when max|x| / min|x| > 1000, max|x| > 1e8 or min|x| < 1e-4,
         or when `sci_mode=True`; never with `sci_mode=False`;
       * if not scientific: integer mode (`1.`, `-3.`: the point marks the floating dtype) when every
         element is a whole number, else `precision` fixed decimals (`1.2346`).
   - The column width is that of the widest finite non-zero element so formatted (integer tensors: the
     widest element, of all). Every element is right-aligned to it. nan, inf and -inf are written as such
     and do not count for the width; nor do zeros (so `-0.` may stick out by one).
2. Layout. A 0-d tensor prints its element: `tensor(3.1416)`. A 1-d tensor is `[a, b, c]`, wrapped after
   as many elements as fit: each takes `width + 2` characters of `linewidth - indent` (at least one per
   line), and a new line starts under the first element. An n-d tensor is the list of its (n-1)-d
   slices, separated by a comma and n - 1 newlines (a blank line between the matrices of a 3-d tensor),
   each nested one column further right.
3. Summarization. A tensor with more than `threshold` elements shows only the first and last `edgeitems`
   entries of each dimension longer than 2 * edgeitems, with `...` in between: ` ...` inside a row, a
   `...` line between slices.
4. Suffixes follow the values, each as `, name=value`; one that would make the line longer than `linewidth`
   starts a new line, indented under the first value. In order:
   `device='cuda:0'` (any device but cpu); `size=(2, 3)` (meta tensors, empty tensors that are not 1-d, and
   every tensor while edgeitems is 0); `dtype=tl.float64` (a dtype other than the default float dtype,
   int64 and bool; for empty and meta tensors, any but the default float dtype); then `grad_fn=<MulBackward0>`
   for a result of a recorded op, or `requires_grad=True` for a leaf that requires grad. The values of an
   empty tensor print as `[]`, those of a meta tensor (which has none) as `...`.
5. grad_fn names are PyTorch's: the op's name + "Backward0" (`MulBackward0`, `ExpBackward0`), with
   PyTorch's own name where it calls the same op otherwise (`_TORCH_NAMES` below: `x @ w` of matrices is
   `MmBackward0`, a cast `ToCopyBackward0`, ...). A user's `autograd.Function` named `MyOp` prints
   `MyOpBackward`, as in PyTorch.

`format(t, spec)` (f-strings): a one-element tensor formats its Python number (`f"{loss:.3f}"`); PyTorch
allows this for 0-d tensors only. An empty spec on a larger tensor gives `str(t)`; another spec raises
TypeError.
"""
import contextlib
import math

import numpy as np

from . import backend
from . import dtypes as _dt


class _PrintOptions:
    precision = 4
    threshold = 1000
    edgeitems = 3
    linewidth = 80
    sci_mode = None


PRINT_OPTS = _PrintOptions()

_PROFILES = {                      # (precision, threshold, edgeitems, linewidth)
    "default": (4, 1000, 3, 80),
    "short": (2, 1000, 2, 80),
    "full": (4, math.inf, 3, 80),
}


def set_printoptions(precision=None, threshold=None, edgeitems=None, linewidth=None, profile=None,
                     sci_mode=None):
    """Set how tensors print (PyTorch's `torch.set_printoptions`). Options left as None keep their value,
    except `sci_mode`, which every call sets (None: automatic). `profile` ("default", "short", "full")
    first resets precision, threshold, edgeitems and linewidth."""
    opts = PRINT_OPTS
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: unknown profile {profile!r} "
                             f"(expected one of {', '.join(map(repr, _PROFILES))})")
        opts.precision, opts.threshold, opts.edgeitems, opts.linewidth = _PROFILES[profile]
    if precision is not None:
        opts.precision = precision
    if threshold is not None:
        opts.threshold = threshold
    if edgeitems is not None:
        opts.edgeitems = edgeitems
    if linewidth is not None:
        opts.linewidth = linewidth
    opts.sci_mode = sci_mode


def get_printoptions():
    """The current print options, as a dict of the keyword arguments of `set_printoptions`."""
    return {name: getattr(PRINT_OPTS, name)
            for name in ("precision", "threshold", "edgeitems", "linewidth", "sci_mode")}


@contextlib.contextmanager
def printoptions(**kwargs):
    """`with tl.printoptions(precision=2): ...` sets options for the block and restores them after."""
    saved = get_printoptions()
    set_printoptions(**kwargs)
    try:
        yield
    finally:
        set_printoptions(**saved)


# --- one formatter per tensor (rule 1) ------------------------------------------------------------
class _Formatter:
    """Chooses the notation and the column width from the values that will be printed (a NumPy array)."""

    def __init__(self, values):
        self.floating = values.dtype.kind == "f"
        self.int_mode = True           # floats that are all whole numbers print as `1.`
        self.sci_mode = False
        self.width = 1
        values = values.reshape(-1)
        if not self.floating:
            self.width = max([1] + [len(str(v)) for v in values.tolist()])
            return
        shown = values[np.isfinite(values) & (values != 0)]
        if shown.size == 0:
            return                      # nothing finite and non-zero: integer mode, sci_mode ignored
        magnitude = np.abs(shown.astype(np.float64))
        smallest, largest = float(magnitude.min()), float(magnitude.max())
        self.int_mode = bool(np.all(shown == np.ceil(shown)))
        if PRINT_OPTS.sci_mode is None:
            self.sci_mode = largest / smallest > 1000.0 or largest > 1.0e8 or smallest < 1.0e-4
        else:
            self.sci_mode = bool(PRINT_OPTS.sci_mode)
        p = PRINT_OPTS.precision
        if self.sci_mode:
            texts = [f"{v:.{p}e}" for v in shown.tolist()]
        elif self.int_mode:
            texts = [f"{v:.0f}." for v in shown.tolist()]
        else:
            texts = [f"{v:.{p}f}" for v in shown.tolist()]
        self.width = max(len(text) for text in texts)

    def format(self, v):
        """One element (a Python number), right-aligned to the column width."""
        if not self.floating:
            text = str(v)
        elif self.sci_mode:
            text = f"{v:.{PRINT_OPTS.precision}e}"
        elif self.int_mode:
            text = f"{v:.0f}" + ("." if math.isfinite(v) else "")
        else:
            text = f"{v:.{PRINT_OPTS.precision}f}"
        return text.rjust(self.width)


# --- summarization (rule 3) and layout (rule 2) ---------------------------------------------------
def _summarized(array, edge):
    """Keep the first and last `edge` entries of every dimension longer than 2 * edge. Returns the smaller
    array (on the array's own device) and, per dimension, whether it was cut."""
    xp = backend.xp_of(array)
    cut = []
    for axis, n in enumerate(array.shape):
        cut.append(n > 2 * edge)
        if cut[-1]:
            head = (slice(None),) * axis + (slice(0, edge),)
            tail = (slice(None),) * axis + (slice(n - edge, n),)
            array = xp.concatenate([array[head], array[tail]], axis=axis)
    return array, cut


def _block(a, cut, indent, fmt):
    """The text of NumPy array `a` (a slice of the tensor) starting at column `indent`."""
    edge = PRINT_OPTS.edgeitems
    if a.ndim == 0:
        return fmt.format(a.item())
    if a.ndim == 1:
        items = [fmt.format(v) for v in a.tolist()]
        if cut[0]:
            items[edge:edge] = [" ..." if edge else "..."]
        per_line = max(1, int(math.floor((PRINT_OPTS.linewidth - indent) / (fmt.width + 2))))
        lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    slices = [_block(a[i], cut[1:], indent + 1, fmt) for i in range(a.shape[0])]
    if cut[0]:
        slices[edge:edge] = ["..."]
    return "[" + ("," + "\n" * (a.ndim - 1) + " " * (indent + 1)).join(slices) + "]"


def _values(array, indent):
    """The bracketed values of a non-empty array, summarized past the threshold."""
    if array.size > PRINT_OPTS.threshold:
        array, cut = _summarized(array, PRINT_OPTS.edgeitems)
    else:
        cut = [False] * array.ndim
    host = backend.to_device(array, "cpu")
    if host.dtype == np.float16:
        host = host.astype(np.float32)    # as PyTorch; the printed numbers are the same
    return _block(host, cut, indent, _Formatter(host))


# --- suffixes (rule 4) and the whole repr ---------------------------------------------------------
DTYPE_PREFIX = "tl."                  # PyTorch writes "torch."; the tests set this to compare exact strings


def dtype_name(dtype):
    """`tl.float64`: how a dtype is written in a repr."""
    return DTYPE_PREFIX + np.dtype(dtype).name


def tensor_repr(t):
    """PyTorch's repr of tensor `t` (see the module docstring)."""
    prefix = "tensor("
    indent = len(prefix)
    array = t.array
    shape, dtype = tuple(array.shape), array.dtype
    default = _dt.get_default_dtype()
    device = backend.device_of(array)
    suffixes = [f"device='{device}'"] if device.type != "cpu" else []
    if backend.is_meta(array):
        suffixes.append(f"size={shape}")
        if dtype != default:
            suffixes.append(f"dtype={dtype_name(dtype)}")
        body = "..."
    elif array.size == 0:
        if len(shape) != 1:
            suffixes.append(f"size={shape}")
        if dtype != default:
            suffixes.append(f"dtype={dtype_name(dtype)}")
        body = "[]"
    else:
        if not PRINT_OPTS.edgeitems:
            suffixes.append(f"size={shape}")
        if dtype not in (default, _dt.int64, _dt.bool_):
            suffixes.append(f"dtype={dtype_name(dtype)}")
        body = _values(array, indent)
    if t.grad_fn is not None:
        suffixes.append(f"grad_fn=<{grad_fn_name(t.grad_fn, len(shape))}>")
    elif t.requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + body, suffixes, indent)


def _with_suffixes(text, suffixes, indent):
    # PyTorch's measure of the last line: its length + 1 (+ 2 when the text has a single line)
    last_line = len(text) - text.rfind("\n") + 1
    parts = [text]
    for s in suffixes:
        if last_line + len(s) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + s)
            last_line = indent + len(s)
        else:
            parts.append(", " + s)
            last_line += len(s) + 2
    return "".join(parts) + ")"


def format_tensor(t, spec):
    """`format(t, spec)`: a one-element tensor formats its number. An empty spec gives str(t), except for a
    plain 0-d tensor, which formats as its number (`f"{t}"` is `1.5`), as in PyTorch."""
    from .tensor import Tensor
    if not spec:
        plain_scalar = type(t) is Tensor and t.ndim == 0 and not t.is_meta
        return format(t.item(), "") if plain_scalar else str(t)
    if not t.is_meta and t.numel() == 1:
        return format(t.item(), spec)
    raise TypeError(f"unsupported format string {spec!r} passed to Tensor.__format__: only a one-element "
                    f"tensor formats as a number, this one has shape {tuple(t.shape)}"
                    + (" (meta: no values)" if t.is_meta else ""))


# --- grad_fn names (rule 5) -----------------------------------------------------------------------
def _by_ndim(names, default):
    """A name that depends on the result's number of dimensions (PyTorch picks the kernel by shape)."""
    return lambda ndim: names.get(ndim, default)


# tinylazy's op class -> what PyTorch's grad_fn is called for the same op (where it is not NAME + Backward0)
_TORCH_NAMES = {
    "MatMul": _by_ndim({0: "DotBackward0", 1: "MvBackward0", 2: "MmBackward0"}, "UnsafeViewBackward0"),
    "Linear": _by_ndim({2: "AddmmBackward0"}, "ViewBackward0"),
    "Sum": _by_ndim({0: "SumBackward0"}, "SumBackward1"),
    "Mean": _by_ndim({0: "MeanBackward0"}, "MeanBackward1"),
    "Prod": _by_ndim({0: "ProdBackward0"}, "ProdBackward1"),
    "Dropout": "MulBackward0",
    "GeluTanh": "GeluBackward0",
    "Clamp": "ClampBackward1",
    "CrossEntropy": "NllLossBackward0",
    "NLLLoss": "NllLossBackward0",
    "Conv2d": "ConvolutionBackward0",
    "BasicIndex": "SelectBackward0",
    "AdvancedIndex": "IndexBackward0",
    "BCEWithLogits": "BinaryCrossEntropyWithLogitsBackward0",
    "MSELoss": "MseLossBackward0",
    "BatchNorm": "NativeBatchNormBackward0",
    "LayerNorm": "NativeLayerNormBackward0",
    "AdaptiveAvgPool2d": "AdaptiveAvgPool2DBackward0",
    "_GlobalAvgPool": "MeanBackward1",
    "AvgPool2d": "AvgPool2DBackward0",
    "MaxPool2d": "MaxPool2DWithIndicesBackward0",
    "MaxDim": "MaxBackward0",
    "MinDim": "MinBackward0",
    "LogSumExp": "LogsumexpBackward0",
    "Norm": "LinalgVectorNormBackward0",
    "Contiguous": "CloneBackward0",
    "Reshape": "ViewBackward0",
    "Log1p": "Log1PBackward0",
    "Cast": "ToCopyBackward0",
    "ToDevice": "ToCopyBackward0",
}


def grad_fn_name(fn, ndim):
    """PyTorch's name for the grad_fn `fn` of a result with `ndim` dimensions."""
    cls = type(fn)
    if not cls.__module__.startswith("tinylazy."):
        return cls.__name__ + "Backward"             # a user's autograd.Function, named as PyTorch does
    name = _TORCH_NAMES.get(cls.__name__, cls.__name__ + "Backward0")
    return name(ndim) if callable(name) else name
