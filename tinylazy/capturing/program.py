"""A recorded step (cpu): the array program, checked against the eager step once, then replayed.

`record(fn, args)` runs the step once, eagerly but with its arrays in `Rec` form, which logs the program;
the state is then put back to what it was before and the program is run once on it: the program is kept only
if that run leaves every array of the state (and each output) bit for bit as the recorded eager step left it.
Otherwise (an operation escaped the recorder, the step rebinds state instead of updating it, it draws from a
stateful generator) `record` raises `NotCapturable` with the reason, and the state is as the eager step left
it, so the caller can go on eagerly.

Before that check, the temporaries of the program are laid out to share memory where their lifetimes allow
(plan.py); the planned program is the one checked, and if it fails the check, the program as recorded
(every temporary in its own buffer) is checked and kept instead.
"""
import copy

import numpy as np

from .. import backend
from ..tensor import Tensor
from .. import _capture_hooks as hooks
from . import plan as memory_plan
from .creation import install, uninstall
from .record import Rec, Recorder
from .state import Swap


class NotCapturable(Exception):
    """The step cannot be replayed as recorded (the message says why); it runs eagerly instead."""


class Program:
    """The replayable step: input buffers, the op list, per-step scalars and counters, the outputs."""

    def __init__(self, rec, inputs, outputs, single):
        self.ops = rec.ops
        self.scalar_groups = rec.scalar_groups
        self.counter_states = [st for states, _ in rec.counters for st in states]
        self.reads = rec.reads
        self.inputs = inputs                          # [(position in args, buffer)]
        self.buffers = rec.keep                       # keeps every array of the program alive
        self.outputs = tuple(_detached(o) for o in outputs)
        self.single = single
        self.plan = None                              # plan.MemoryPlan when the temporaries share memory

    def buffer_bytes(self):
        """The bytes of memory one replay touches (state, inputs, outputs and temporaries)."""
        return memory_plan.buffer_bytes(self.ops)

    def planned(self, protected, created):
        """This program with its temporaries sharing memory (plan.py), or None when nothing can be shared."""
        result = memory_plan.plan(self.ops, created, protected)
        if result is None:
            return None
        other = copy.copy(self)
        other.ops, arena, other.plan = result
        other.buffers = arena                 # the ops hold every other array they use
        return other

    def run(self):
        for g in self.scalar_groups:
            g.update()
        for op in self.ops:
            op()
        for st in self.counter_states:
            st["step"] += 1

    def replay(self, args):
        """Copy the arguments into the input buffers, run, and return the output tensors."""
        for i, buf in self.inputs:
            np.copyto(buf, args[i].array)
        self.run()
        return self.outputs[0] if self.single else self.outputs


def _detached(array):
    t = Tensor(array)
    return t


def record(fn, args):
    """Record `fn(*args)` (cpu tensors) into a Program; see the module docstring."""
    inputs, call_args = [], []
    for i, a in enumerate(args):
        if isinstance(a, Tensor):
            buf = np.array(a.array, copy=True)
            t = Tensor(buf.view(Rec))
            t.requires_grad = a.requires_grad
            inputs.append((i, buf))
            call_args.append(t)
        else:
            call_args.append(a)
    swap = Swap([fn] + [a for a in args if not isinstance(a, Tensor)])
    rec = Recorder()
    swap.swap_in()
    before = [(a, a.copy()) for a in swap.before] + [(b, b.copy()) for _, b in inputs]
    rng = _rng_state()
    hooks.recorder = rec
    install()
    rec.active = True
    try:
        result = fn(*call_args)
    finally:
        rec.active = False
        uninstall()
        hooks.recorder = None
        after = swap.swap_out()
    single, outputs = _outputs(result)
    rng_after = _rng_state()
    reason = _unreplayable(rec, rng, rng_after)
    program = Program(rec, inputs, outputs, single)
    if reason is None:
        program, reason = _checked(program, rec, before, after + list(outputs), rng, swap.before)
    if reason is not None:
        error = NotCapturable(reason)
        error.result = program.outputs[0] if single else program.outputs     # the (eager) step's result
        raise error
    return program


def _outputs(result):
    check_result(result)
    single = isinstance(result, Tensor)
    items = (result,) if single else result
    arrays = []
    for t in items:
        a = t.array
        if not isinstance(a, np.ndarray):
            raise TypeError(f"capture: the step returned a {type(a).__name__} tensor; cpu replay needs NumPy arrays")
        arrays.append(np.ndarray.view(a, np.ndarray) if type(a) is Rec else a)
    return single, arrays


def check_result(result):
    """Raise unless the step returned a Tensor or a non-empty tuple of Tensors."""
    items = (result,) if isinstance(result, Tensor) else result
    if not isinstance(items, tuple) or not items or not all(isinstance(t, Tensor) for t in items):
        raise TypeError(f"capture: the step function must return a Tensor or a tuple of Tensors, got "
                        f"{_describe(result)}")


def _describe(x):
    if isinstance(x, tuple):
        return "a tuple of (" + ", ".join(type(v).__name__ for v in x) + ")"
    return type(x).__name__


def _rng_state():
    """The host generators' states and the counters of the counter-based streams (dropout)."""
    gens = {str(d): g.bit_generator.state for d, g in backend.RNG._generators.items() if d.type == "cpu"}
    return backend.RNG.seed, dict(backend.RNG._counters), gens


def _unreplayable(rec, rng, rng_after):
    if rng[2] != rng_after[2]:
        return ("the step draws from a stateful random generator (tl.rand, tl.randn, tl.randperm, ...): "
                "a replay would repeat the recorded numbers")
    if rng[0] != rng_after[0]:
        return "the step reseeds the random generators (tl.manual_seed)"
    return None


def _checked(program, rec, before, after, rng, state_before):
    """(the program to keep, None) or (program, the reason it cannot be kept): the planned program if it
    reproduces the eager step, else the program as recorded if that does."""
    planned = None
    if memory_plan.enabled():
        inputs = [buf for _, buf in program.inputs]
        planned = program.planned(list(state_before) + after + inputs, rec.created)
    if planned is not None and _verify(planned, rec, before, after, rng) is None:
        return planned, None
    return program, _verify(program, rec, before, after, rng)


def _verify(program, rec, before, after, rng):
    """Rerun the program from the state before the step; None when it reproduces the eager step bit for bit,
    else the reason (and the state is then put back to the eager step's result)."""
    want = [(a, a.copy()) for a in after]
    gone = _rebound(before[:len(before) - len(program.inputs)], after, rec)
    if gone:
        _restore(want)
        return gone
    counters_after = [(st, st["step"]) for st in program.counter_states]
    rng_counters_after = dict(backend.RNG._counters)
    _restore(before)
    for states, step in rec.counters:
        for st in states:
            st["step"] = step
    backend.RNG._counters.clear()
    backend.RNG._counters.update(rng[1])
    try:
        program.run()
        failed = None
    except Exception as e:                  # e.g. an index read from memory the plan gave to another array
        failed = f" and raised {type(e).__name__}: {e}"
    if failed is None and all(a.tobytes() == w.tobytes() for a, w in want):
        return None
    _restore(want)
    for st, step in counters_after:
        st["step"] = step
    backend.RNG._counters.clear()
    backend.RNG._counters.update(rng_counters_after)
    return ("replaying the recorded program did not reproduce the eager step bit for bit (some operation "
            f"escaped the recorder){failed or ''}")


def _rebound(before, after, rec):
    """A reason when the step replaced a state array that the program reads (holder.x = new array instead of
    an in-place update): the replay would read the stale one."""
    kept = {id(a) for a in after}
    gone = [a for a, _ in before if id(a) not in kept and not any(np.may_share_memory(a, b) for b in after)]
    for a in gone:
        for args, kwargs in rec.keep:
            for x in list(args) + list(kwargs.values()):
                if isinstance(x, np.ndarray) and np.may_share_memory(x, a):
                    return (f"the step replaces a state array of shape {a.shape} by a new one (instead of "
                            "updating it in place) and reads the old one")
    return None


def _restore(pairs):
    for a, saved in pairs:
        np.copyto(a, saved)
