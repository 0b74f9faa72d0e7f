"""tinylazy.cuda: device queries as in PyTorch: `is_available()`, `device_count()`, `current_device()`,
`synchronize()`; `check_errors()` raises the index errors found on a device (see tinylazy._devcheck);
`kernel_dir()`, the folder of the custom kernels' .cu sources.

The custom kernels themselves sit behind `tinylazy.fast`; the raw-array functions that used to live here
(act_fwd, bias_act_fwd, softmax_xent_fwd, dropout_fwd, sgd_step, ...) are re-exported at the end, from
the ops and the optimizer rules that now own them. Importing this module never imports CuPy.
"""
from . import _devcheck, backend
from .fast.kernels import kernel_dir  # noqa: F401

# =============================== devices ===============================================================


def is_available():
    """True when CuPy is installed and sees at least one GPU."""
    return device_count() > 0


def device_count():
    """The number of GPUs CuPy sees (0 without CuPy or a driver)."""
    cp = backend.cupy_module()
    if cp is None:
        return 0
    try:
        return cp.cuda.runtime.getDeviceCount()
    except Exception:
        return 0


def _require_cupy():
    cp = backend.cupy_module()
    if cp is None or device_count() == 0:
        raise RuntimeError("tinylazy.cuda: CUDA is not available (CuPy is not installed or no GPU was found)")
    return cp


def current_device():
    """The index of the current CUDA device."""
    return _require_cupy().cuda.runtime.getDevice()


def synchronize(device=None):
    """Wait until every kernel queued on `device` (an index, "cuda:N" or a Device; default: current) has finished."""
    cp = _require_cupy()
    if device is None:
        index = cp.cuda.runtime.getDevice()
    elif isinstance(device, int):
        index = device
    else:
        index = backend.device(device).index
    cp.cuda.Device(index).synchronize()
    _devcheck.check(index)


def check_errors():
    """Raise IndexError for any index check that failed on a GPU since the last look (see tinylazy._devcheck:
    on cuda, cross_entropy's targets and embedding's and one_hot's indices are checked on the device and
    reported at the next read). Reads a few bytes from each GPU that ran such a check (a sync)."""
    _devcheck.check()


# =============================== the raw-array functions, where they live now ==========================
from .ops.epilogue import (ACTIVATIONS, act_saves_output, act_fwd, act_bwd, bias_act_fwd,  # noqa: E402,F401
                           bias_act_bwd, relu_fwd, relu_bwd, gelu_fwd, gelu_bwd, sigmoid_fwd, sigmoid_bwd,
                           tanh_fwd, tanh_bwd)
from .ops.class_loss import softmax_xent_fwd, softmax_xent_bwd  # noqa: E402,F401
from .ops.activation import dropout_mask, dropout_fwd, dropout_bwd  # noqa: E402,F401
from ._update import sgd_step, adam_step  # noqa: E402,F401
