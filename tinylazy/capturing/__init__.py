"""`tl.capture(fn)`: a whole training step recorded once and replayed (API.md section 9).

    @tl.capture
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for x, y in loader:
        loss = step(x, y)          # 1st call: eager; 2nd: recorded; later: replayed

The first call runs eagerly (a lazy model materializes there, the optimizer makes its state). The next call
with given argument shapes/dtypes/devices records the step's *array program*; later calls with that
signature replay it: the arguments are copied into the program's input buffers, the program runs, and the
returned tensors (detached) hold the step's outputs until the next call. Another signature records another
program (`step.programs`, keyed by the signature). `TINYLAZY_CAPTURE=0` makes every call eager.

Design (cpu). The eager engine stays the reference: recording *is* an eager step, run with the step's
arrays seen through `record.Rec`, an ndarray subclass whose NumPy calls (ufuncs and array functions through
NumPy's dispatch protocols, plus the computing ndarray methods) are logged as calls on fixed buffers:
``np.matmul(a, b, out=buffer)``, ``np.copyto``, in-place ufuncs, ... (record.py). The state (parameters,
buffers, optimizer state, flat buckets) is found by walking what the step function reaches (state.py), with
no knowledge of layers or optimizers. The replay is that list of NumPy calls: no Tensor, Function, Module
or optimizer code runs, every buffer was allocated once (at record time), and each call writes into its
buffer with ``out=`` or in place. Why this and not a compiler: the program is the eager step's own NumPy
calls with the same arguments in the same order, so it computes the same bits (matmul with ``out=`` calls
the same BLAS routine), and any op the engine gains is captured without capture-specific code.

Two kinds of per-step Python state feed the program, through hooks (tinylazy/_capture_hooks.py): the optimizer's step count
(Adam's bias corrections are recomputed before each replay, and the state's "step" advances) and dropout's
random draws (each replay draws the next mask from the counter-based Philox stream, advancing it exactly as
the eager step would). Before a program is kept, it is run once from the state the recorded step started
from and must reproduce that step bit for bit (program.py); if it does not, or if the step draws from a
stateful generator (tl.randn inside the step) or replaces a state array it reads, the signature runs
eagerly with a `CaptureWarning` saying why. Recording therefore costs two steps and a copy of the state
the step reaches.

Memory (plan.py). As logged, every temporary of the step has its own buffer, so a replay would touch far
more memory than the eager step, whose allocator hands a freed temporary's memory to the next one. Before
the check above, the temporaries (only arrays the recorder itself created; never the state, the input
buffers, the outputs, or anything sharing memory with them) are laid out in one arena where two of them
share memory when the last op touching one (views included) comes before the first op touching the
other, and the ops are rebound to it. The planned program is the one checked; should it fail (something
the plan cannot see, such as an array reached only through an opaque callable), the program as logged is
checked and kept instead. `TINYLAZY_CAPTURE_PLAN=0` (read when a step is recorded) skips the plan;
`program.plan` says what it did and `program.buffer_bytes()` counts the memory one replay touches.

What is frozen at record time (documented limits):
- Python control flow that depends on values: a value read into Python while recording (``float(a)``,
  ``a.item()``, ``if (t < 0).any()``) is frozen with whatever Python did with it; such reads are listed in
  ``program.reads`` and reported once in a `CaptureWarning` (cross_entropy's target-range check is one:
  it is not repeated for later batches).
- Hyperparameters read as Python numbers (the learning rate: a scheduler's change needs `step.reset()`),
  non-tensor arguments (part of the signature), and anything the step does to Python objects other than
  arrays and the hooked counters.
- The identity of the state's arrays: replacing them between calls (``load_state_dict`` that assigns new
  arrays, ``model.to(...)``, a new parameter group) needs `step.reset()`.

On cuda the step is captured as a CUDA graph (graph.py).
"""
import functools
import os
import warnings

import numpy as np

from ..tensor import Tensor
from .. import _capture_hooks as hooks
from .program import NotCapturable, check_result, record

__all__ = ["capture", "CapturedStep", "CaptureWarning"]


class CaptureWarning(UserWarning):
    """A captured step runs eagerly, or froze a value-dependent decision at record time."""


_EAGER = "eager"          # the program slot of a signature that runs eagerly


def capture(fn):
    """Record the step `fn` once and replay it (see the module docstring); also a decorator."""
    if not callable(fn):
        raise TypeError(f"capture: expected a function (the step), got {type(fn).__name__}")
    return CapturedStep(fn)


class CapturedStep:
    """A step function with its recorded programs, one per argument signature."""

    def __init__(self, fn):
        self.fn = fn
        self.programs = {}            # signature -> Program (or _EAGER)
        self.calls = 0
        functools.update_wrapper(self, fn)

    def reset(self):
        """Forget every recorded program: the next call records again."""
        self.programs.clear()

    def __call__(self, *args, **kwargs):
        if kwargs:
            raise TypeError("capture: the step takes positional arguments only (tensors and hashable values), "
                            f"got keyword arguments {sorted(kwargs)}")
        self.calls += 1
        if os.environ.get("TINYLAZY_CAPTURE", "1") == "0":
            return self.fn(*args)
        if self.calls == 1:
            result = self.fn(*args)
            check_result(result)
            return result
        key = _signature(args)
        program = self.programs.get(key)
        if program is _EAGER:
            return self.fn(*args)
        if program is not None:
            return program.replay(args)
        return self._record(key, args)

    def _record(self, key, args):
        devices = {a.device.type for a in args if isinstance(a, Tensor)}
        if devices - {"cpu"}:
            if devices != {"cuda"}:
                raise RuntimeError(f"capture: the step's tensors are on {sorted(devices)}; a captured step "
                                   "runs on cpu or on cuda")
            from .graph import record_graph
            record_fn = record_graph
        else:
            record_fn = record
        try:
            program = record_fn(self.fn, args)
        except NotCapturable as e:
            warnings.warn(f"capture: {getattr(self.fn, '__name__', 'step')}{_shapes(args)} runs eagerly: {e}",
                          CaptureWarning, stacklevel=3)
            self.programs[key] = _EAGER
            return _last_result(e)
        self.programs[key] = program
        if program.reads:
            warnings.warn(f"capture: the recorded step read array values into Python, and what it did with "
                          f"them is frozen in the replay: {'; '.join(program.reads[:3])}"
                          + (f" (+{len(program.reads) - 3} more)" if len(program.reads) > 3 else ""),
                          CaptureWarning, stacklevel=3)
        return program.outputs[0] if program.single else program.outputs


def _last_result(error):
    result = getattr(error, "result", None)
    if result is None:
        raise RuntimeError("capture: internal error: a failed recording lost the step's result") from error
    return result


def _signature(args):
    key = []
    for a in args:
        if isinstance(a, Tensor):
            arr = a.array
            key.append((type(arr), tuple(arr.shape), np.dtype(arr.dtype).str, str(a.device), a.requires_grad))
        else:
            try:
                hash(a)
            except TypeError:
                raise TypeError(f"capture: a step argument must be a Tensor or a hashable value (it is part of "
                                f"the program's signature), got {type(a).__name__}") from None
            key.append(("value", type(a), a))
    return tuple(key)


def _shapes(args):
    return "(" + ", ".join(str(tuple(a.shape)) if isinstance(a, Tensor) else repr(a) for a in args) + ")"
