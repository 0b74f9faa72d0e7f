"""Grad mode: whether the ops that the calling thread runs record a graph for backward.

As in PyTorch, the mode belongs to a thread: `with tl.no_grad():` in an evaluating thread leaves a training
thread recording, every thread starts with recording on, and blocks in different threads each restore the
mode their own thread had. `Function.apply` reads `_state.grad_enabled` once per op (only when some input
requires grad), so the mode is one attribute of a `threading.local`.
"""
import functools
import threading


class _ThreadState(threading.local):
    """One per thread; each thread sees the class default (recording on) until it sets its own."""
    grad_enabled = True


_state = _ThreadState()


def is_grad_enabled():
    """Whether ops run by the calling thread record a graph."""
    return _state.grad_enabled


class _GradMode:
    """Sets the calling thread's grad mode to `mode` inside a `with` block and restores the mode it found on
    exit (each block remembers its own, so nested and overlapping blocks unwind correctly); also a decorator
    (each call of the decorated function runs in its own block). no_grad, enable_grad and
    set_grad_enabled are this class with the mode fixed or given."""
    mode = True

    def __enter__(self):
        self.prev = _state.grad_enabled
        _state.grad_enabled = self.mode
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev
        return False

    def __call__(self, fn):              # used as a decorator
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            block = _GradMode()
            block.mode = mode
            with block:
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """`with tl.no_grad():` -- ops inside record no graph (and in-place updates of parameters are allowed)."""
    mode = False


class enable_grad(_GradMode):
    """`with tl.enable_grad():` -- turn recording back on inside a no_grad block."""
    mode = True


class set_grad_enabled(_GradMode):
    """`with tl.set_grad_enabled(mode):`, or a plain call `tl.set_grad_enabled(False)` (as in PyTorch, the
    mode is set when the object is made, for the calling thread), or a decorator."""

    def __init__(self, mode=True):
        self.mode = bool(mode)
        self.prev = _state.grad_enabled
        _state.grad_enabled = self.mode

    def __enter__(self):                 # the mode was set by __init__; exit restores the one found there
        return self

    def __call__(self, fn):              # as a decorator: undo __init__'s setting, apply it per call
        _state.grad_enabled = self.prev
        return super().__call__(fn)
