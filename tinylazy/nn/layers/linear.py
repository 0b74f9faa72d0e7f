"""`Linear` (y = x W^T + b), lazy when `in_features` is None (`LazyLinear(out)` is just `Linear(None, out)`)."""
import math

from .. import functional as F
from ...errors import ShapeError
from .. import init
from ..lazy import describe, lazy_alias
from ..module import Module
from ..parameter import Parameter


def _check_size(layer, name, value, allow_none):
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{layer}: {name} must be a non-negative int{' or None (inferred)' if allow_none else ''}, "
                         f"got {value!r}")


def _optional_parameter(layer, name, shape, wanted):
    """Give `layer` a lazy Parameter `name` of `shape` (None for unknown sizes) if `wanted`, else register
    `name` as None, as PyTorch does for bias=False (the name exists, the parameter does not)."""
    if wanted:
        setattr(layer, name, Parameter.lazy(shape))
    else:
        layer.register_parameter(name, None)


class Linear(Module):
    """y = x W^T + b with W of shape (out_features, in_features).

    `in_features=None` makes it lazy: the first input fixes it (``x.shape[-1]``). Parameters start from
    PyTorch's defaults: W ~ kaiming_uniform(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), b ~ U(-1/sqrt(in), 1/sqrt(in)),
    unless `weight_init=` / `bias_init=` (callables taking the tensor) say otherwise.
    """
    lazy_sizes = ("in_features",)

    def __init__(self, in_features, out_features, bias=True, device=None, dtype=None, *,
                 weight_init=None, bias_init=None):
        super().__init__()
        _check_size("Linear", "in_features", in_features, allow_none=True)
        _check_size("Linear", "out_features", out_features, allow_none=False)
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter.lazy((out_features, in_features))      # None marks the unknown size
        _optional_parameter(self, "bias", (out_features,), bias)
        self.setup_lazy(device, dtype, weight_init=weight_init, bias_init=bias_init)

    def infer_sizes(self, x):
        if x.ndim == 0:
            raise ShapeError(f"{describe(self)}: expected an input with at least 1 dimension, got a 0-d tensor")
        return {"in_features": x.shape[-1]}

    def parameter_shapes(self):
        return {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}

    def sizes_from_shapes(self, shapes):
        return {"in_features": shapes["weight"][1]} if "weight" in shapes else {}

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input, activation=None):
        return F.linear(input, self.weight, self.bias, activation=activation)

    def extra_repr(self):
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


@lazy_alias(Linear)
def LazyLinear(out_features, bias=True, **kwargs):
    """`Linear(None, out_features, bias)`: the same class, with in_features inferred from the first input."""
    return Linear(None, out_features, bias, **kwargs)
