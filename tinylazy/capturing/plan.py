"""The memory plan of a recorded program (cpu): temporaries whose lifetimes do not overlap share memory.

As recorded, every temporary of the step keeps the buffer NumPy gave it during the recording, so one replay
touches every temporary's memory, far more than the eager step, whose allocator hands a freed temporary's
memory to the next one. `plan(ops, created, protected)` lays the temporaries out in one byte arena
instead, and returns the program's ops bound to the arena (Program.planned makes the program of them):

1. Candidates: the arrays the recorder itself created (`Recorder.created`: results logged with ``out=``,
   copies, creation functions, random draws), minus any whose memory overlaps a protected array (the
   state before and after the step, the input buffers, the outputs) or another candidate's memory in part.
2. Lifetimes: each op's array arguments are found (through tuples, lists, dicts and nested partials:
   ``out=`` tuples, `_copy_into` and `_run_dynamic` arguments) and attributed, by memory range, to the
   candidate they lie in; a view (a reshape, a transpose, a slice bound at record time) counts as touching
   its owner. A candidate lives from the first op that touches it to the last.
3. Placement: in order of first use, each candidate takes the smallest free slot of the arena that is big
   enough and whose last tenant's last use comes strictly before this one's first use; else a new slot at
   the end (or the last slot grows, when it is free). Slots start at multiples of 64 bytes.
4. Rebinding: every array argument owned by a candidate is rebuilt on the arena with the same dtype,
   shape, strides and offset within its owner (`np.ndarray(buffer=arena, offset=..., strides=...)`).

What the plan cannot see (an array reached only through an opaque callable, an op that reads a temporary
before writing it in the step) could make the planned program compute something else. So the planned
program is verified like any recorded program (program.py), on an arena filled with NaN bytes first, and
when it fails the unplanned program is verified and kept instead. `TINYLAZY_CAPTURE_PLAN=0` skips the plan
(to compare).
"""
import bisect
import functools
import os

import numpy as np

from .record import arrays_in

ALIGN = 64


def enabled():
    """False when the environment sets TINYLAZY_CAPTURE_PLAN=0 (read when a step is recorded)."""
    return os.environ.get("TINYLAZY_CAPTURE_PLAN", "1") != "0"


class MemoryPlan:
    """What a plan did: `temporaries` arrays (`before_bytes` in all) now share an arena of `arena_bytes`."""

    def __init__(self, temporaries, before_bytes, arena_bytes):
        self.temporaries, self.before_bytes, self.arena_bytes = temporaries, before_bytes, arena_bytes

    def __repr__(self):
        return (f"MemoryPlan({self.temporaries} temporaries: {self.before_bytes} bytes -> arena of "
                f"{self.arena_bytes} bytes)")


def bounds(a):
    """The byte range [lo, hi) that the array `a` can touch (negative strides included)."""
    lo = hi = a.__array_interface__["data"][0]
    for n, s in zip(a.shape, a.strides):
        if s < 0:
            lo += (n - 1) * s
        else:
            hi += (n - 1) * s
    return lo, hi + a.itemsize


def buffer_bytes(ops):
    """The bytes of memory a program's ops touch: the union of their array arguments' byte ranges."""
    spans = sorted(bounds(a) for op in ops for a in arrays_in(op) if a.size)
    total, end = 0, 0
    for lo, hi in spans:
        if hi > end:
            total += hi - max(lo, end)
            end = hi
    return total


def _root_bounds(a):
    """The byte range of the allocation an array lies in (its outermost ndarray base, else itself)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return bounds(a)


class _Temp:
    __slots__ = ("lo", "hi", "first", "last", "offset", "ok")

    def __init__(self, lo, hi):
        self.lo, self.hi = lo, hi
        self.first = self.last = None
        self.offset = None
        self.ok = True


def _candidates(created, protected):
    """The temporaries that may share memory, sorted by address (see the module docstring, step 1)."""
    ranges = {}
    for a in created:
        if a.size and not a.dtype.hasobject:         # object arrays cannot be rebuilt on raw bytes
            lo, hi = _root_bounds(a)
            ranges[lo, hi] = _Temp(lo, hi)
    temps = sorted(ranges.values(), key=lambda t: t.lo)
    reach = None                                     # the candidate reaching furthest so far
    for t in temps:                                  # two candidates in one allocation: neither is planned
        if reach is not None and t.lo < reach.hi:
            reach.ok = t.ok = False
        if reach is None or t.hi > reach.hi:
            reach = t
    starts = [t.lo for t in temps]
    for a in protected:
        if a.size:
            for t in _overlapping(temps, starts, *bounds(a)):
                t.ok = False
    return temps


def _overlapping(temps, starts, lo, hi):
    """The candidates (sorted by address, `starts` their addresses) whose memory meets [lo, hi)."""
    i = max(bisect.bisect_right(starts, lo) - 1, 0)
    while i < len(temps) and temps[i].lo < hi:
        if temps[i].hi > lo:
            yield temps[i]
        i += 1


def _containing(temps, starts, lo, hi):
    """The candidate whose memory contains [lo, hi), else None."""
    i = bisect.bisect_right(starts, lo) - 1
    if i >= 0 and temps[i].lo <= lo and hi <= temps[i].hi:
        return temps[i]
    return None


def _owner(temps, starts, lo, hi):
    """The candidate whose memory contains [lo, hi), else None; a candidate met only in part is spoilt."""
    t = _containing(temps, starts, lo, hi)
    if t is None:
        for t_part in _overlapping(temps, starts, lo, hi):
            t_part.ok = False
    return t


def _lifetimes(ops, temps):
    starts = [t.lo for t in temps]
    for i, op in enumerate(ops):
        for a in arrays_in(op):
            if not a.size:
                continue
            t = _owner(temps, starts, *bounds(a))
            if t is not None:
                if t.first is None:
                    t.first = i
                t.last = i


def _place(temps):
    """Slot offsets for the candidates (step 3); returns the arena's size in bytes."""
    slots = []                                   # [offset, size, last use of its tenant]
    end = 0
    for t in sorted(temps, key=lambda t: (t.first, t.lo)):
        need = -(-(t.hi - t.lo) // ALIGN) * ALIGN
        free = [s for s in slots if s[2] < t.first]
        fits = [s for s in free if s[1] >= need]
        if fits:
            slot = min(fits, key=lambda s: s[1])
        elif free and free[-1] is slots[-1]:      # the last slot is free: it grows
            slot = slots[-1]
            end += need - slot[1]
            slot[1] = need
        else:
            slot = [end, need, None]
            slots.append(slot)
            end += need
        slot[2] = t.last
        t.offset = slot[0]
    return end


def _arena(size):
    """`size` bytes starting at a multiple of ALIGN, filled with 0xff (NaN for floats: a read of memory the
    step has not written shows in the verification)."""
    raw = np.empty(size + ALIGN, np.uint8)
    skip = -raw.ctypes.data % ALIGN
    arena = raw[skip:skip + size]
    arena.fill(0xFF)
    return arena


def _rebind(x, temps, starts, arena, memo):
    """`x` with every array that lies in a planned candidate rebuilt on the arena (step 4)."""
    if isinstance(x, np.ndarray):
        new = memo.get(id(x))
        if new is not None:
            return new
        new = x
        t = _containing(temps, starts, *bounds(x)) if x.size else None
        if t is not None:
            ptr = x.__array_interface__["data"][0]
            new = np.ndarray(x.shape, x.dtype, buffer=arena, offset=t.offset + (ptr - t.lo), strides=x.strides)
            if type(x) is not np.ndarray:
                new = new.view(type(x))
            if not x.flags.writeable:
                new.flags.writeable = False
        memo[id(x)] = new
        return new
    if type(x) is tuple or type(x) is list:
        return type(x)(_rebind(v, temps, starts, arena, memo) for v in x)
    if type(x) is dict:
        return {k: _rebind(v, temps, starts, arena, memo) for k, v in x.items()}
    if type(x) is functools.partial:
        return functools.partial(x.func, *_rebind(x.args, temps, starts, arena, memo),
                                 **_rebind(x.keywords, temps, starts, arena, memo))
    return x


def plan(ops, created, protected):
    """(ops bound to a shared arena, the arena, MemoryPlan) for a recorded program's `ops`; None when no
    two temporaries can share memory."""
    temps = _candidates(created, protected)
    _lifetimes(ops, temps)
    temps = [t for t in temps if t.ok and t.first is not None]
    if len(temps) < 2:
        return None
    size = _place(temps)
    before = sum(t.hi - t.lo for t in temps)
    if size >= before:
        return None
    arena = _arena(size)
    starts = [t.lo for t in temps]
    memo = {}
    new_ops = [_rebind(op, temps, starts, arena, memo) for op in ops]
    return new_ops, arena, MemoryPlan(len(temps), before, size)
