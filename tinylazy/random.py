"""Random numbers: one generator per device, all reseeded by `manual_seed`, so a program's numbers repeat.

cpu draws from NumPy's PCG64, cuda from CuPy's XORWOW, both seeded with the same number; the same seed and
program give the same numbers on the same device (not across devices). Counter-based kernels (dropout)
take a (seed, offset) pair instead of a generator: `RNG.next_offset` hands out fresh counter ranges.
"""
import threading

import numpy as np

from .backend import _require_cuda, device


class _RNG:
    """Per-device generators. `manual_seed(n)` reseeds them all, so a program's numbers repeat.

    As in PyTorch, they are shared by every thread of the process; a lock makes handing out a generator or
    a dropout counter range atomic, so two threads never get the same numbers (NumPy's generators lock each
    draw themselves)."""

    def __init__(self):
        self.seed = 0
        self._generators = {}
        self._counters = {}
        self._lock = threading.Lock()

    def manual_seed(self, seed):
        with self._lock:
            self.seed = int(seed)
            self._generators.clear()
            self._counters.clear()

    def generator(self, dev):
        """The generator of `dev`: a `numpy.random.Generator` on cpu, a `cupy.random.Generator` on cuda."""
        dev = device(dev)
        gen = self._generators.get(dev)
        if gen is None:
            with self._lock:
                return self._new_generator(dev)
        return gen

    def _new_generator(self, dev):
        gen = self._generators.get(dev)      # another thread may have made it meanwhile
        if gen is None:
            if dev.type == "cuda":
                cp = _require_cuda(dev)
                with cp.cuda.Device(dev.index):
                    gen = cp.random.Generator(cp.random.XORWOW(self.seed))
            else:
                gen = np.random.Generator(np.random.PCG64(self.seed))
            self._generators[dev] = gen
        return gen

    def next_offset(self, dev, n):
        """A fresh range of `n` counters for counter-based kernels (dropout): returns (seed, offset)."""
        dev = device(dev)
        with self._lock:
            start = self._counters.get(dev, 0)
            self._counters[dev] = start + int(n)
            return self.seed, start


RNG = _RNG()


def manual_seed(seed):
    """Seed every device's generator; the same seed and program give the same numbers on the same device."""
    RNG.manual_seed(seed)
