"""`Conv2d`, lazy when `in_channels` is None (`LazyConv2d(out, k)` is `Conv2d(None, out, k)`).

Weight shape (out_channels, in_channels // groups, kh, kw). The first input fixes in_channels
(``x.shape[-3]``), after checking its rank, that groups divides it, and that the kernel fits -- all before
anything is allocated. A 3-D input (C, H, W) is one unbatched image.
"""
import math

from .. import functional as F
from ...errors import ShapeError
from .. import init
from ..lazy import describe, lazy_alias
from ..module import Module
from ..parameter import Parameter
from .linear import _check_size, _optional_parameter


def _pair(v, name):
    v = tuple(v) if isinstance(v, (tuple, list)) else (v, v)
    if len(v) != 2 or not all(isinstance(i, int) and not isinstance(i, bool) for i in v):
        raise ValueError(f"Conv2d: {name} must be an int or a pair of ints, got {v!r}")
    return v


class Conv2d(Module):
    """2-D cross-correlation: out[n, o] = bias[o] + sum_c weight[o, c] * x[n, g(o) * C/groups + c]."""
    lazy_sizes = ("in_channels",)

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1,
                 bias=True, padding_mode="zeros", device=None, dtype=None, *, weight_init=None, bias_init=None):
        super().__init__()
        _check_size("Conv2d", "in_channels", in_channels, allow_none=True)
        _check_size("Conv2d", "out_channels", out_channels, allow_none=False)
        if not isinstance(groups, int) or groups < 1:
            raise ValueError(f"Conv2d: groups must be a positive int, got {groups!r}")
        if out_channels % groups:
            raise ValueError(f"Conv2d: out_channels={out_channels} must be divisible by groups={groups}")
        if in_channels is not None and in_channels % groups:
            raise ValueError(f"Conv2d: in_channels={in_channels} must be divisible by groups={groups}")
        if padding_mode != "zeros":
            raise NotImplementedError(f"Conv2d: padding_mode={padding_mode!r} (only 'zeros' is supported)")
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size, self.stride = _pair(kernel_size, "kernel_size"), _pair(stride, "stride")
        self.padding = padding if isinstance(padding, str) else _pair(padding, "padding")
        self.dilation, self.padding_mode = _pair(dilation, "dilation"), padding_mode
        shapes = self.parameter_shapes()
        self.weight = Parameter.lazy(shapes["weight"])
        _optional_parameter(self, "bias", shapes["bias"], bias)
        self.setup_lazy(device, dtype, weight_init=weight_init, bias_init=bias_init)

    def infer_sizes(self, x):
        if x.ndim not in (3, 4):
            raise ShapeError(f"{describe(self)}: expected a 3-D (C, H, W) or 4-D (N, C, H, W) input, "
                             f"got shape {tuple(x.shape)}")
        channels = x.shape[-3]
        if channels % self.groups:
            raise ValueError(f"{describe(self)}: the input has {channels} channels, which groups={self.groups} "
                             f"does not divide (input shape {tuple(x.shape)})")
        if not isinstance(self.padding, str):
            for size, k, s, p, d in zip(x.shape[-2:], self.kernel_size, self.stride, self.padding, self.dilation):
                if size + 2 * p - d * (k - 1) - 1 < 0:
                    raise ShapeError(f"{describe(self)}: the kernel {self.kernel_size} (dilation {self.dilation}) "
                                     f"is larger than the padded input {tuple(x.shape[-2:])} + 2*{self.padding}")
        return {"in_channels": channels}

    def parameter_shapes(self):
        cin = None if self.in_channels is None else self.in_channels // self.groups
        return {"weight": (self.out_channels, cin) + self.kernel_size, "bias": (self.out_channels,)}

    def sizes_from_shapes(self, shapes):
        return {"in_channels": shapes["weight"][1] * self.groups} if "weight" in shapes else {}

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = (self.in_channels // self.groups) * self.kernel_size[0] * self.kernel_size[1]
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input, activation=None):
        unbatched = input.ndim == 3
        if unbatched:
            input = input.unsqueeze(0)
        out = F.conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups,
                       activation=activation)
        return out.squeeze(0) if unbatched else out

    def extra_repr(self):
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


@lazy_alias(Conv2d)
def LazyConv2d(out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True, **kwargs):
    """`Conv2d(None, out_channels, kernel_size, ...)`: in_channels inferred from the first input."""
    return Conv2d(None, out_channels, kernel_size, stride, padding, dilation, groups, bias, **kwargs)
