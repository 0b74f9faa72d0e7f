"""`nn.init`: fill a tensor in place with the initializations deep learning uses (PyTorch's formulas).

On a materialized tensor each function acts now, under no_grad, in place, drawing from the generator of
the tensor's own device (no host round trip). On a lazy tensor there is nothing to fill yet: the call is
*recorded* on the tensor and replayed when it is materialized, in order -- so `net.apply(init_fn)` works
before the first forward.

Fans (for a weight of shape (out, in, *kernel)): ``fan_in = in * prod(kernel)``, ``fan_out = out * prod(kernel)``.
"""
import functools
import math

import numpy as np

from .. import backend
from ..autograd import no_grad
from ..creation import _random
from .parameter import is_lazy


def _deferrable(fn):
    """Record the call on a lazy tensor; otherwise run it now under no_grad (nothing to do on meta)."""
    @functools.wraps(fn)
    def init_fn(tensor, *args, **kwargs):
        if is_lazy(tensor):
            tensor._lazy.deferred.append((init_fn, args, kwargs))
            return tensor
        if tensor.is_meta:
            return tensor
        with no_grad():
            fn(tensor, *args, **kwargs)
        return tensor
    return init_fn


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity: 1 (linear, conv, sigmoid), 5/3 (tanh), sqrt(2) (relu),
    sqrt(2 / (1 + slope**2)) (leaky_relu, slope default 0.01), 3/4 (selu)."""
    if nonlinearity in ("linear", "identity", "sigmoid") or nonlinearity.startswith(("conv", "conv_transpose")):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"calculate_gain: negative_slope {param!r} is not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"calculate_gain: unsupported nonlinearity {nonlinearity!r}")


def _calculate_fan_in_and_fan_out(tensor):
    shape = tensor.shape
    if len(shape) < 2:
        raise ValueError(f"Fan in and fan out can not be computed for a tensor with fewer than 2 dimensions "
                         f"(got shape {shape})")
    receptive = int(np.prod(shape[2:], dtype=np.int64)) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode {mode!r} not supported, use 'fan_in' or 'fan_out'")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


@_deferrable
def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """U(a, b)."""
    tensor.uniform_(a, b)


@_deferrable
def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """N(mean, std**2)."""
    tensor.normal_(mean, std)


@_deferrable
def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """N(mean, std**2) restricted to [a, b]: values outside are redrawn until none is left."""
    if a >= b:
        raise ValueError(f"trunc_normal_: need a < b, got a={a}, b={b}")
    dev, dtype = tensor.device, tensor.dtype
    values = _random("normal", tensor.shape, np.float64, dev, mean, std)
    xp = backend.xp_of(values)
    bad = xp.nonzero(((values < a) | (values > b)).ravel())[0]
    while bad.size:
        values.ravel()[bad] = _random("normal", (int(bad.size),), np.float64, dev, mean, std)
        fresh = values.ravel()[bad]
        bad = bad[(fresh < a) | (fresh > b)]
    tensor.array[...] = values.astype(dtype, copy=False)
    tensor._vc[0] += 1                      # an in-place change (see autograd's version counters)


@_deferrable
def constant_(tensor, val):
    tensor.fill_(val)


@_deferrable
def zeros_(tensor):
    tensor.fill_(0)


@_deferrable
def ones_(tensor):
    tensor.fill_(1)


@_deferrable
def eye_(tensor):
    """The identity matrix (2-D tensors)."""
    if tensor.ndim != 2:
        raise ValueError(f"eye_: only 2-D tensors are supported, got shape {tuple(tensor.shape)}")
    xp = backend.xp_of(tensor.array)
    with backend.on_device(tensor.device):
        tensor.array[...] = xp.eye(*tensor.shape, dtype=tensor.dtype)
    tensor._vc[0] += 1


@_deferrable
def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    a = math.sqrt(3.0) * gain * math.sqrt(2.0 / float(fan_in + fan_out))
    tensor.uniform_(-a, a)


@_deferrable
def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std**2) with std = gain * sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    tensor.normal_(0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)))


@_deferrable
def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-bound, bound) with bound = gain * sqrt(3 / fan) (He et al., 2015); gain from `nonlinearity`, `a`."""
    if 0 in tensor.shape:
        return
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode))
    bound = math.sqrt(3.0) * std
    tensor.uniform_(-bound, bound)


@_deferrable
def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std**2) with std = gain / sqrt(fan)."""
    if 0 in tensor.shape:
        return
    tensor.normal_(0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(tensor, mode)))


__all__ = ("calculate_gain", "uniform_", "normal_", "trunc_normal_", "constant_", "zeros_", "ones_", "eye_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_")
