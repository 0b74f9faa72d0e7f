"""The three places where the engine tells `tl.capture` about per-step Python state (and nothing else).

A recorded step replays its array program without running the Python that produced it, so any value that
the eager step derives from Python state *each step* would be frozen at its record-time value. Three such
values exist in a training step, and the code that makes them calls these hooks (each a plain pass-through
when nothing is being recorded):

- `counter(states, step)`: an optimizer's step count (Adam's bias correction reads it). While recording
  it returns a `Counter` (an int that remembers where it came from), and each replay adds 1 to
  ``st["step"]`` of every state dict in `states`, as the eager step does.
- `scalars(fn, *args)`: Python scalars computed from a `Counter` (``fn(step, ...)``, e.g. 1 - beta^step).
  While recording they become program inputs: each replay calls `fn` again with the counter's current value.
- `fresh(fn, *args)`: an array drawn from a random stream (dropout's mask). Each replay calls `fn` again,
  which advances the generator exactly as the eager step would, and copies its result into the buffer.

This module imports nothing of tinylazy, so anything may import it.
"""

recorder = None          # the tinylazy.capturing.record.Recorder of the step being recorded, else None


def recording():
    """True while a step is being recorded."""
    return recorder is not None


class Counter(int):
    """A step count seen while recording: its value now, plus where the replay finds the current one
    (``states[0]["step"] + offset``). Adding an int keeps the link; any other arithmetic gives a plain int."""

    def __new__(cls, value, states, offset=0):
        self = int.__new__(cls, value)
        self.states, self.offset = states, offset
        return self

    def __add__(self, k):
        if type(k) is not int:
            return int(self) + k
        return Counter(int(self) + k, self.states, self.offset + k)

    __radd__ = __add__

    def current(self):
        return self.states[0]["step"] + self.offset


def capturing_graph():
    """True while a CUDA graph is being captured: no host synchronization may happen then."""
    return getattr(recorder, "graph", False)


def counter(states, step):
    """`step` (the common ``"step"`` of the state dicts in `states`, which the caller advances by one after
    the update); while recording, a Counter, and every replay advances those state dicts."""
    if recorder is None:
        return step
    return recorder.counter(states, step)


def scalars(fn, *args):
    """``fn(*args)``, a tuple of Python floats; while recording, with a Counter among `args`, the floats are
    marked so that the replay recomputes them from the counter's current value."""
    if recorder is None:
        return fn(*args)
    return recorder.scalars(fn, args)


def fresh(fn, *args):
    """``fn(*args)``, an array drawn from a random stream; while recording, the replay calls `fn` again."""
    if recorder is None:
        return fn(*args)
    return recorder.fresh(fn, args)
