"""Checks of index values (class targets, embedding and one_hot indices) that never make the host wait.

On cpu a check reads the values and raises at once, naming the offending value. On cuda, reading a value
is a device-to-host copy that waits until the GPU has finished everything queued before it (a "sync"): one
per training step stalls the host behind the GPU every step, and a CUDA graph capture cannot contain it.
So on cuda the check runs ON THE DEVICE (kernels/checks.cu, one launch): every kind of check owns a slot
of a small per-device int32 array, `errors(dev)`, which the kernel sets to 1 when it finds a bad value.
Nothing is read then. The error is raised later, as an IndexError naming the op and the valid range (not
the value, which was never read), the next time the host reads from the device anyway:
`Tensor.item()`, `.tolist()`, `.numpy()`, `tinylazy.cuda.synchronize()`, or `tinylazy.cuda.check_errors()`.
(PyTorch reports its device-side asserts the same way: at a later synchronizing call.)

Set the environment variable TINYLAZY_SYNC_CHECKS=1 to check eagerly on cuda too, while debugging: the
error is then raised by the faulty call, with the value, at the price of a sync per check.

Without the custom kernels (TINYLAZY_KERNELS=0, or a dtype they do not cover) the checks on cuda read the
values, like the cpu ones: correctness first.
"""
import os

import numpy as np

from . import backend, fast

_SLOTS = 32
_ERRORS = {}            # device id -> int32 CuPy array of _SLOTS flags
_MESSAGES = {}          # message -> slot (the first _SLOTS - 1 distinct messages; later ones share the last slot)
_ARMED = set()          # device ids with a check queued since their flags were last read


def eager():
    """True when checks on cuda read the values at once (TINYLAZY_SYNC_CHECKS=1: a sync per check)."""
    return os.environ.get("TINYLAZY_SYNC_CHECKS", "0") == "1"


def deferred(array):
    """True when a check of `array` runs on the device and reports later (see the module docstring)."""
    return type(array) is not np.ndarray and not eager() and fast.enabled() \
        and backend.cupy_module() is not None and isinstance(array, backend.cupy_module().ndarray)


def errors(array):
    """The error flags of `array`'s device (made on first use, zeroed)."""
    dev = array.device.id
    flags = _ERRORS.get(dev)
    if flags is None:
        with array.device:
            flags = _ERRORS[dev] = backend.cupy_module().zeros(_SLOTS, dtype=np.int32)
    _ARMED.add(dev)
    return flags


def slot(message):
    """The flag slot of a message (each distinct message gets its own, up to the last one, which is shared)."""
    s = _MESSAGES.get(message)
    if s is None:
        s = _MESSAGES[message] = min(len(_MESSAGES), _SLOTS - 1)
    return s


def _int64(idx):
    cp = backend.cupy_module()
    with idx.device:
        return cp.ascontiguousarray(idx.reshape(-1), dtype=cp.int64)


def index_range(idx, lo, hi, message):
    """Flag, on the device, any value of the CuPy integer array idx outside [lo, hi); `message` is the error
    raised later. One launch, no sync."""
    fast.kernels.index_range(_int64(idx), lo, hi, errors(idx), slot(message))


def class_targets(target, C, ignore_index, dtype, message):
    """Flag, on the device, any target != ignore_index outside [0, C); return the device array
    [kept, 1 / kept] (dtype), kept = the number of targets != ignore_index (1 / 0 taken as 0). One launch."""
    return fast.kernels.class_targets(_int64(target), C, ignore_index, dtype, errors(target), slot(message))


def check(device_id=None):
    """Raise IndexError for every check that failed on the device since the last call (all devices, or
    one), and clear their flags. Reads the flags (a sync) only for devices that ran a check since."""
    ids = sorted(_ARMED) if device_id is None else [d for d in _ARMED if d == device_id]
    found = []
    for dev in ids:
        _ARMED.discard(dev)
        flags = _ERRORS[dev]
        host = flags.get()
        if host.any():
            flags.fill(0)
            names = {s: m for m, s in _MESSAGES.items()}
            found += [f"cuda:{dev}: {names.get(int(s), 'an index check failed')}" for s in np.flatnonzero(host)]
    if found:
        raise IndexError("a device-side check failed (raised at this later read of device data; set "
                         "TINYLAZY_SYNC_CHECKS=1 to raise at the faulty call):\n  " + "\n  ".join(found))


def check_before_read(array):
    """Called before the host reads a device array (Tensor.item, tolist, numpy): raise pending errors."""
    if _ARMED and type(array) is not np.ndarray:
        check()
