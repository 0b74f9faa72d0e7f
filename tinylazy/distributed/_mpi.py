"""The "mpi" backend: collectives on NumPy arrays (cpu tensors) through mpi4py.

Only mpi4py's buffer calls (the capitalised ones: ``Iallreduce``, ``Ibcast``, ``Iallgather``) touch
tensor data: MPI reads and writes the array's own memory, with no pickling and no copy when the array is
contiguous. Every collective is started non-blocking and then waited for by `wait`, which polls with a
deadline (the group's timeout) so that a rank that never arrives ends the job with a message instead of
hanging it.
"""
import json
import os
import sys
import time

import numpy as np

from . import DistributedError, MPI_HINT, ReduceOp

_yield = getattr(os, "sched_yield", lambda: None)        # not on Windows: spin there


def import_mpi():
    """mpi4py's MPI module (initializing MPI), or a DistributedError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(f"tinylazy.distributed needs mpi4py and an MPI library for its 'mpi' backend "
                               f"(and to start 'nccl'): {e}. Install them with: {MPI_HINT}") from e
    except RuntimeError as e:                 # mpi4py is there but cannot load or start the MPI library
        raise DistributedError(f"tinylazy.distributed: mpi4py could not load or start an MPI library: {e}. "
                               f"Install one with: {MPI_HINT}") from e
    return MPI


class Work:
    """A started collective: `wait()` blocks (bounded by the timeout) until it is done, then runs `finish`
    (e.g. AVG's division, or copying a temporary back into a non-contiguous tensor)."""

    def __init__(self, group, requests, what, finish=None):
        self.group, self.requests, self.what, self.finish = group, requests, what, finish
        self.done = False

    def is_completed(self):
        if not self.done and self.group.MPI.Request.Testall(self.requests):
            self._complete()
        return self.done

    def wait(self):
        if not self.done:
            self.group.wait(self.requests, self.what)
            self._complete()

    def _complete(self):
        self.done = True
        if self.finish is not None:
            self.finish()


class MPIGroup:
    backend = "mpi"

    def __init__(self, timeout):
        MPI = self.MPI = import_mpi()
        self.comm = MPI.COMM_WORLD.Dup()      # our own context: never mixed with the user's messages
        self.rank, self.size, self.timeout = self.comm.Get_rank(), self.comm.Get_size(), timeout
        self.ops = {ReduceOp.SUM: MPI.SUM, ReduceOp.AVG: MPI.SUM, ReduceOp.PRODUCT: MPI.PROD,
                    ReduceOp.MIN: MPI.MIN, ReduceOp.MAX: MPI.MAX}

    # --- checks -------------------------------------------------------------------------------------
    def check_array(self, array, op):
        if type(array) is not np.ndarray:
            dev = "cuda" if hasattr(array, "device") and hasattr(array, "data") else type(array).__name__
            raise DistributedError(f"{op}: the 'mpi' backend reduces cpu tensors (NumPy arrays), got a tensor on "
                                   f"{dev}; use init_process_group('nccl') for cuda tensors, or move it with .cpu()")
        if array.dtype.kind not in "biuf":
            raise TypeError(f"{op}: cannot send dtype {array.dtype} over MPI")

    def check_rank(self, r, op):
        if not (isinstance(r, int) and 0 <= r < self.size):
            raise ValueError(f"{op}: src must be a rank in [0, {self.size}), got {r!r}")

    # --- collectives: start, then a Work to wait on -------------------------------------------------
    def all_reduce(self, array, op):
        buf, back = _contiguous(array)
        mpi_op = self.ops[op]
        if buf.dtype == np.bool_:             # MPI defines no sum on C bool: or/and of the bytes
            buf = buf.view(np.uint8)
            mpi_op = self.MPI.MAX if op in (ReduceOp.SUM, ReduceOp.MAX) else self.MPI.MIN
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, mpi_op)

        def finish():
            if op == ReduceOp.AVG:
                np.divide(buf, self.size, out=buf)
            if back is not None:
                back()
        return Work(self, [request], f"all_reduce({op}) of {buf.size} {buf.dtype} values", finish)

    def broadcast(self, array, src):
        buf, back = _contiguous(array)
        request = self.comm.Ibcast(buf.view(np.uint8) if buf.dtype == np.bool_ else buf, root=src)
        return Work(self, [request], f"broadcast from rank {src} of {buf.size} {buf.dtype} values", back)

    def all_gather(self, outs, array):
        src = np.ascontiguousarray(array)
        recv = np.empty((self.size,) + src.shape, src.dtype)
        as_bytes = (lambda a: a.view(np.uint8)) if src.dtype == np.bool_ else (lambda a: a)
        request = self.comm.Iallgather(as_bytes(src), as_bytes(recv))

        def finish():
            for out, part in zip(outs, recv):
                out[...] = part
        return Work(self, [request], f"all_gather of {src.size} {src.dtype} values", finish)

    def all_gather_object(self, obj):
        """Every rank's JSON-able `obj`, as a list in rank order (lengths first, then the bytes)."""
        data = np.frombuffer(json.dumps(obj).encode(), np.uint8)
        lengths = np.zeros(self.size, np.int64)
        self.wait([self.comm.Iallgather(np.array([data.size], np.int64), lengths)], "all_gather_object (sizes)")
        recv = np.empty(int(lengths.sum()), np.uint8)
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        request = self.comm.Iallgatherv(data, [recv, lengths, offsets, self.MPI.BYTE])
        self.wait([request], "all_gather_object")
        return [json.loads(recv[o:o + n].tobytes()) for o, n in zip(offsets, lengths)]

    def barrier(self):
        self.wait([self.comm.Ibarrier()], "barrier")

    # --- waiting, bounded -----------------------------------------------------------------------------
    def wait(self, requests, what):
        """Wait for `requests`; past the timeout, print what was waited for and abort the whole job."""
        Testall = self.MPI.Request.Testall
        if Testall(requests):
            return
        # MPI moves a started collective along only while it is called, so spin on Testall as MPI's own
        # Wait would (a sleep between polls would stall a large message between its chunks). After a short
        # spin, give the CPU away every few polls (sched_yield): on a machine with more runnable processes
        # than cores, the rank we wait for may be queued on this very core, and a pure spin keeps it out for
        # a whole time slice (measured with MPICH, two ranks on one core, a 1 MB all-reduce: ~25 ms spinning,
        # ~5 ms yielding, as MPICH's own Waitall; the same ~0.5 ms either way when each rank has a core).
        # After a second of waiting (some rank is late), sleep between polls. Past the deadline, end the job.
        start = time.monotonic()
        deadline, patient = start + self.timeout, start + 1.0
        polls = 0
        while not Testall(requests):
            polls += 1
            if polls > 256 and polls % 16 == 0:
                _yield()
            if polls % 1024 == 0:
                now = time.monotonic()
                if now > deadline:
                    self.abort(f"{what} did not complete within {self.timeout:g} s: another rank stopped "
                               "taking part (it raised, exited or hangs)")
                if now > patient:
                    time.sleep(0.001)

    def abort(self, message):
        """Print `message` (naming this rank) and end every process of the job: MPI_Abort."""
        print(f"tinylazy.distributed [rank {self.rank}/{self.size}]: {message}; aborting the job (MPI_Abort)",
              file=sys.stderr, flush=True)
        self.comm.Abort(1)

    def destroy(self):
        self.comm.Free()


def _contiguous(array):
    """(a contiguous array to hand MPI, a function that copies it back into `array`, or None)."""
    if array.flags.c_contiguous:
        return array, None
    tmp = np.ascontiguousarray(array)

    def back():
        array[...] = tmp
    return tmp, back
