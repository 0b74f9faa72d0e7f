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


class GradMode:
    """The one grad-mode class: inside a `with` block, ops run by the calling thread record a graph iff
    `mode`; the block restores the mode it found (each block remembers its own, so nested and overlapping
    blocks unwind correctly). Also a decorator: each call of the decorated function runs in its own block.
    With `now=True` the mode is set when the object is made (PyTorch's set_grad_enabled, which works as a
    plain call too) and a `with` block restores the mode found then."""

    def __init__(self, mode, now=False):
        self.mode, self.now = bool(mode), now
        if now:
            self.prev, _state.grad_enabled = _state.grad_enabled, self.mode

    def __enter__(self):
        if not self.now:
            self.prev, _state.grad_enabled = _state.grad_enabled, self.mode
        return self

    def __exit__(self, *exc):
        _state.grad_enabled = self.prev
        return False

    def __call__(self, fn):
        """Used as a decorator (undoing the setting a `now=True` object made)."""
        if self.now:
            _state.grad_enabled = self.prev
        mode = self.mode

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with GradMode(mode):
                return fn(*args, **kwargs)
        return wrapper


def no_grad():
    """`with tl.no_grad():` -- ops inside record no graph (and in-place updates of parameters are allowed)."""
    return GradMode(False)


def enable_grad():
    """`with tl.enable_grad():` -- turn recording back on inside a no_grad block."""
    return GradMode(True)


def set_grad_enabled(mode=True):
    """`with tl.set_grad_enabled(mode):`, or a plain call `tl.set_grad_enabled(False)` (as in PyTorch, the
    mode is set at once, for the calling thread), or a decorator."""
    return GradMode(mode, now=True)
