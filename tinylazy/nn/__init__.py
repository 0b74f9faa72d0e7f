"""`tinylazy.nn`: modules, parameters (lazy or not), layers, initializers and losses.

    from tinylazy import nn
    net = nn.Sequential(nn.LazyLinear(256), nn.ReLU(), nn.LazyLinear(10))   # sizes inferred on first call
"""
from ..errors import ShapeError
from .parameter import Parameter, Buffer, UninitializedParameterError, is_lazy
from .module import Module
from . import init, functional
from .layers import *                   # noqa: F401,F403
from .layers import __all__ as _layers
from . import parallel                  # noqa: E402  (DistributedDataParallel; imports no MPI)

__all__ = ("Module", "Parameter", "Buffer", "UninitializedParameterError", "ShapeError", "is_lazy", "init",
           "functional") + _layers
