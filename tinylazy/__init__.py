"""tinylazy: a small, readable deep-learning engine on NumPy (cpu) and CuPy (cuda), with lazy parameters.

    import tinylazy as tl
    from tinylazy import nn, optim
    import tinylazy.nn.functional as F
"""
from . import backend, dtypes
from .backend import Device, device
from .random import manual_seed
from .dtypes import (float16, float32, float64, int8, int16, int32, int64, uint8, bool_ as bool,
                     get_default_dtype, set_default_dtype, result_type, promote_types, can_cast)
from .tensor import Tensor
from .size import Size
from ._printing import set_printoptions, get_printoptions, printoptions
from .autograd import no_grad, enable_grad, set_grad_enabled, is_grad_enabled
from . import autograd
from .creation import (tensor, as_tensor, from_numpy, empty, zeros, ones, full, empty_like, zeros_like,
                       ones_like, full_like, arange, linspace, eye, rand, randn, randint, rand_like,
                       randn_like, normal, randperm)
from .ops import *                      # noqa: F401,F403  (every op: tl.exp, tl.matmul, tl.cat, ...)
from .ops import where, METHODS as _METHODS  # noqa: F401
from .errors import ShapeError
from . import cuda, utils, datasets
from .serialization import save, load, CheckpointError
from .safetensors_io import save_safetensors, load_safetensors
from .capturing import capture, CaptureWarning

half, float, double, long, int = float16, float32, float64, int64, int32     # PyTorch's dtype aliases


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(t):
    return t.numel()


__version__ = "0.1.0"
from . import nn, optim                                      # noqa: E402  (they build on everything above)
