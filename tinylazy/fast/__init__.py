"""tinylazy.fast: the speed seam. Everything here computes, faster, a formula that an op states plainly.

The ops are written as maths on NumPy/CuPy arrays. Where tinylazy has a faster way, the op calls a
function of this package and hands it the plain formula, the `reference`:

    self.y = fast.act_fwd("tanh", Tanh.formula, x)    # kernel tanh_fwd_f32 / _f64 on cuda, else Tanh.formula(x)

Every function below follows one rule, kernel or reference: it launches the custom CUDA kernel of
kernels/*.cu (through fast/kernels.py) when `usable(...)` says the kernels can take these arrays
(C-contiguous CuPy float32/float64 arrays on one device, and the environment variable TINYLAZY_KERNELS not
"0"), and otherwise runs the reference, which is also the kernel's test oracle (tests/test_kernels.py).
Both branches return new arrays of the input's dtype (the optimizer steps update in place).

fast/tricks.py holds the measured CPU tricks (ReLU's bit-mask gradient, skinny products in blocks). This
package never imports an op (the op passes its formula in), and importing it never imports CuPy.
"""
import math
import os

import numpy as np

from .. import backend
from .. import _capture_hooks as _capture
from . import kernels, tricks


# ---- the rule --------------------------------------------------------------------------------------------
def enabled():
    """False when the environment variable TINYLAZY_KERNELS is "0": every function then takes its reference."""
    return os.environ.get("TINYLAZY_KERNELS", "1") != "0"


def usable(*arrays):
    """True when the custom kernels can run on these arrays: kernels enabled, every array a C-contiguous
    CuPy array of the first one's dtype (float32 or float64) and on its device."""
    first = arrays[0]
    if type(first) is np.ndarray or first.dtype not in kernels.VECTOR or not enabled():
        return False
    cp = backend.cupy_module()
    if cp is None:
        return False
    for a in arrays:
        if not isinstance(a, cp.ndarray) or a.dtype != first.dtype or not a.flags.c_contiguous \
                or a.device != first.device:
            return False
    return True


def usable_lists(*lists):
    """`usable` for the optimizer: lists of arrays (a list may be None: not used), element i of every list of
    one size, all arrays C-contiguous CuPy arrays of one float dtype on one device."""
    present = [lst for lst in lists if lst is not None]
    arrays = [a for lst in present for a in lst]
    if not arrays or any(len(lst) != len(present[0]) for lst in present) or not usable(*arrays):
        return False
    return all(lst[i].size == present[0][i].size for lst in present for i in range(len(lst)))


# ---- activations and the fused bias + activation epilogue (kernels/elementwise.cu) -----------------------
def act_fwd(act, reference, x, out=None):
    """act(x): the kernel <act>_fwd, else reference(x, out) (out: None, or x when it may be written over)."""
    if usable(x):
        return kernels.act_fwd(act, x)
    return reference(x, out)


def act_bwd(act, reference, grad, saved, out=None):
    """grad * act'(...) from the saved array: the kernel <act>_bwd, else reference(grad, saved, out)."""
    if usable(grad, saved):
        return kernels.act_bwd(act, grad, saved)
    return reference(grad, saved, out)


def _layout(x, axis):
    """(outer, C, inner) of x seen as a contiguous (outer, C, inner) array with C = x.shape[axis]."""
    return math.prod(x.shape[:axis]), x.shape[axis], math.prod(x.shape[axis + 1:])


def bias_act_fwd(act, reference, x, b, axis):
    """act(x + b), b along the non-negative `axis` of x: the kernel bias_<act>_fwd, else reference(x, b)."""
    if usable(x, b):
        _, C, inner = _layout(x, axis)
        return kernels.bias_act_fwd(act, x, b, C, inner)
    return reference(x, b)


def bias_act_bwd(act, reference, grad, saved, b, axis):
    """(grad_x, grad_b) of act(x + b): the kernels bias_<act>_bwd_cols / _planes and col_sum, else
    reference(grad, saved, b). b is None when act's backward takes its output (the kernel then reads none)."""
    if usable(grad, saved) if b is None else usable(grad, saved, b):
        outer, C, inner = _layout(saved, axis)
        return kernels.bias_act_bwd(act, grad, saved, saved if b is None else b, outer, C, inner)
    return reference(grad, saved, b)


# ---- softmax + cross-entropy (kernels/softmax_xent.cu) ----------------------------------------------------
def _xent_usable(logits, target, *arrays):
    return usable(logits, *arrays) and isinstance(target, type(logits)) and target.device == logits.device


def softmax_xent_fwd(reference, logits, target, label_smoothing, ignore_index):
    """Per-row (loss, stats): the kernel softmax_xent_fwd, else reference(logits, target, eps, ignore_index)."""
    if _xent_usable(logits, target):
        return kernels.softmax_xent_fwd(logits, target, label_smoothing, ignore_index)
    return reference(logits, target, label_smoothing, ignore_index)


def softmax_xent_bwd(reference, grad_rows, logits, target, stats, label_smoothing, ignore_index):
    """The logits' gradient: the kernel softmax_xent_bwd, else reference(grad_rows, logits, target, stats, ...)."""
    if _xent_usable(logits, target, stats):
        return kernels.softmax_xent_bwd(grad_rows, logits, target, stats, label_smoothing, ignore_index)
    return reference(grad_rows, logits, target, stats, label_smoothing, ignore_index)


# ---- dropout (kernels/dropout.cu) --------------------------------------------------------------------------
def dropout_mask(reference, shape, seed, offset, threshold, xp):
    """The keep mask on xp's device: the kernel dropout_mask on cuda, else
    reference(shape, seed, offset, threshold, xp)."""
    if xp is not np and enabled():
        return kernels.dropout_mask(tuple(shape), seed, offset, threshold)
    return reference(shape, seed, offset, threshold, xp)


def dropout(reference, x, seed, offset, threshold, scale):
    """x * keep * scale: the kernel dropout_<t> (the mask made in registers), else reference(x)."""
    if usable(x):
        return kernels.dropout(x, seed, offset, threshold, scale)
    return reference(x)


# ---- fused optimizer steps (kernels/optim.cu): ONE launch for all the parameters ------------------------
def sgd_step(reference, params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step):
    """The kernel sgd_<t>, in place, else reference(params, grads, bufs, lr, ..., first_step)."""
    args = (params, grads, bufs, lr, momentum, dampening, weight_decay, nesterov, first_step)
    if usable_lists(params, grads, bufs if momentum != 0 else None):
        return kernels.sgd(*args)
    return reference(*args)


def adam_step(reference, params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, decoupled):
    """The kernel adam_<t>, in place, else reference(params, grads, exp_avgs, exp_avg_sqs, step, lr, ...)."""
    if usable_lists(params, grads, exp_avgs, exp_avg_sqs):
        step_size, bias_correction2_sqrt = _capture.scalars(_adam_host_scalars, step, lr, beta1, beta2)
        return kernels.adam(params, grads, exp_avgs, exp_avg_sqs, lr, beta1, beta2, eps, weight_decay,
                            step_size, bias_correction2_sqrt, decoupled)
    return reference(params, grads, exp_avgs, exp_avg_sqs, step, lr, beta1, beta2, eps, weight_decay, decoupled)


def _adam_host_scalars(step, lr, beta1, beta2):
    """The host scalars of the fused Adam kernel: lr / (1 - beta1^step) and sqrt(1 - beta2^step)."""
    return lr / (1 - beta1 ** step), (1 - beta2 ** step) ** 0.5
