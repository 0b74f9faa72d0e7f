"""Normalization layers: `BatchNorm1d/2d` (lazy when num_features is None) and `LayerNorm` (lazy when
normalized_shape is None). The lazy buffers (running statistics) follow the same rules as parameters."""
import numpy as np

from .. import functional as F
from ...errors import ShapeError
from .. import init
from ..lazy import describe, lazy_alias
from ..module import Module
from ..parameter import Buffer
from .linear import _check_size, _optional_parameter


def _reset_affine(layer):
    """The norms' default affine parameters: weight = 1, bias = 0 (each only where the layer has it)."""
    if layer.weight is not None:
        init.ones_(layer.weight)
    if layer.bias is not None:
        init.zeros_(layer.bias)


class _BatchNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over every dim but the channel dim (1).

    Training uses the batch statistics and updates running_mean/running_var with `momentum` (None: the
    cumulative average, factor 1 / num_batches_tracked); eval uses the running statistics."""
    lazy_sizes = ("num_features",)
    _ranks = ()

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True,
                 device=None, dtype=None, *, bias=True, weight_init=None, bias_init=None):
        super().__init__()
        _check_size(type(self).__name__, "num_features", num_features, allow_none=True)
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        _optional_parameter(self, "weight", (num_features,), affine)
        _optional_parameter(self, "bias", (num_features,), affine and bias)
        if track_running_stats:
            self.running_mean = Buffer.lazy((num_features,))
            self.running_var = Buffer.lazy((num_features,))
            self.num_batches_tracked = Buffer.lazy((), dtype=np.int64)
        else:
            for name in ("running_mean", "running_var", "num_batches_tracked"):
                self.register_buffer(name, None)
        self.setup_lazy(device, dtype, weight_init=weight_init, bias_init=bias_init)

    def infer_sizes(self, x):
        if x.ndim not in self._ranks:
            dims = " or ".join(f"{r}-D" for r in self._ranks)
            raise ShapeError(f"{describe(self)}: expected a {dims} input (N, C, ...), got shape {tuple(x.shape)}")
        return {"num_features": x.shape[1]}

    def parameter_shapes(self):
        c = (self.num_features,)
        return {"weight": c, "bias": c, "running_mean": c, "running_var": c, "num_batches_tracked": ()}

    def sizes_from_shapes(self, shapes):
        for name in ("weight", "bias", "running_mean", "running_var"):
            if name in shapes:
                return {"num_features": shapes[name][0]}
        return {}

    def reset_running_stats(self):
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)
            self.num_batches_tracked.zero_()

    def reset_parameters(self):
        self.reset_running_stats()
        _reset_affine(self)

    def forward(self, input):
        factor = 0.0 if self.momentum is None else self.momentum
        track = self.training and self.track_running_stats and not self.num_batches_tracked.is_meta
        if track and self.momentum is None:           # the cumulative average, this batch included
            factor = 1.0 / float(self.num_batches_tracked.array + 1)
        use_batch_stats = self.training or self.running_mean is None
        out = F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                           use_batch_stats, factor, self.eps)
        if track:                   # counted only once batch_norm accepted the input: a bad batch changes nothing
            self.num_batches_tracked.array += 1
            self.num_batches_tracked._vc[0] += 1
        return out

    def extra_repr(self):
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"bias={self.bias is not None}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalization of (N, C) or (N, C, L) inputs."""
    _ranks = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalization of (N, C, H, W) inputs."""
    _ranks = (4,)


@lazy_alias(BatchNorm1d)
def LazyBatchNorm1d(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None, **kw):
    """`BatchNorm1d(None, ...)`: num_features inferred from the first input (x.shape[1])."""
    return BatchNorm1d(None, eps, momentum, affine, track_running_stats, device, dtype, **kw)


@lazy_alias(BatchNorm2d)
def LazyBatchNorm2d(eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, device=None, dtype=None, **kw):
    """`BatchNorm2d(None, ...)`: num_features inferred from the first input (x.shape[1])."""
    return BatchNorm2d(None, eps, momentum, affine, track_running_stats, device, dtype, **kw)


class LayerNorm(Module):
    """y = (x - mean) / sqrt(var + eps) * weight + bias over the trailing dims `normalized_shape`.
    Lazy when normalized_shape is None: the first input fixes it to ``x.shape[-1:]``."""
    lazy_sizes = ("normalized_shape",)

    def __init__(self, normalized_shape, eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None, *,
                 weight_init=None, bias_init=None):
        super().__init__()
        if isinstance(normalized_shape, int):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = None if normalized_shape is None else tuple(normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        shape = self.parameter_shapes()["weight"]
        _optional_parameter(self, "weight", shape, elementwise_affine)
        _optional_parameter(self, "bias", shape, elementwise_affine and bias)
        self.setup_lazy(device, dtype, weight_init=weight_init, bias_init=bias_init)

    def infer_sizes(self, x):
        n = 1 if self.normalized_shape is None else len(self.normalized_shape)
        if x.ndim < n:
            raise ShapeError(f"{describe(self)}: expected an input with at least {n} dimension(s), got shape {tuple(x.shape)}")
        return {"normalized_shape": tuple(x.shape[x.ndim - n:])}

    def parameter_shapes(self):
        shape = (None,) if self.normalized_shape is None else self.normalized_shape
        return {"weight": shape, "bias": shape}

    def sizes_from_shapes(self, shapes):
        for name in ("weight", "bias"):
            if name in shapes:
                return {"normalized_shape": tuple(shapes[name])}
        return {}

    def reset_parameters(self):
        _reset_affine(self)

    def forward(self, input):
        return F.layer_norm(input, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self):
        return (f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}, "
                f"bias={self.bias is not None}")


@lazy_alias(LayerNorm)
def LazyLayerNorm(eps=1e-5, elementwise_affine=True, bias=True, device=None, dtype=None, **kwargs):
    """`LayerNorm(None)`: normalizes over the last dim, whose size the first input tells."""
    return LayerNorm(None, eps, elementwise_affine, bias, device, dtype, **kwargs)
