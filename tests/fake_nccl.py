"""A host emulation of the parts of CuPy and `cupy.cuda.nccl` that the "nccl" backend calls, for machines
without a GPU (used by the `nccl_emulated` scenario of tests/dist_scenarios/collectives.py, under
mpiexec).

"Device" arrays are NumPy arrays of the subclass `HostCudaArray`, which answers `.data.ptr` (the address
of its first byte) and `.device.id` as a CuPy array does. The communicator takes raw pointers, counts and
NCCL datatype codes, exactly the arguments of NCCL's C API, rebuilds a NumPy view of that memory with
ctypes, and performs the collective with MPI. So the backend's pointer, count, datatype and op plumbing
runs unchanged; what this cannot check is NCCL itself, the GPU and stream ordering (the GPU check does).
"""
import ctypes
import types

import numpy as np
from mpi4py import MPI


class HostCudaArray(np.ndarray):
    @property
    def data(self):
        return types.SimpleNamespace(ptr=self.__array_interface__["data"][0])

    @property
    def device(self):
        return types.SimpleNamespace(id=0)


def _wrap(a):
    return np.asarray(a).view(HostCudaArray)


cupy = types.SimpleNamespace(
    ndarray=HostCudaArray,
    ascontiguousarray=lambda a: _wrap(np.ascontiguousarray(a)),
    empty=lambda shape, dtype: _wrap(np.empty(shape, dtype)),
    cuda=types.SimpleNamespace(Device=lambda i: types.SimpleNamespace(use=lambda: None),
                               get_current_stream=lambda: types.SimpleNamespace(ptr=0)))

_TYPES = {0: np.int8, 1: np.uint8, 2: np.int32, 4: np.int64, 6: np.float16, 7: np.float32, 8: np.float64}
NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_INT64, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 0, 1, 2, 4, 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN, NCCL_AVG = 0, 1, 2, 3, 4
_OPS = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN, NCCL_AVG: MPI.SUM}
calls = []                               # (name, count, datatype) of every call, for the scenario to check


def _view(ptr, count, datatype):
    dtype = np.dtype(_TYPES[datatype])
    raw = (ctypes.c_char * (count * dtype.itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype)


def get_unique_id():
    return bytes(np.random.default_rng().integers(0, 256, 128, dtype=np.uint8))


class NcclCommunicator:
    def __init__(self, ndev, commId, rank):
        self.comm = MPI.COMM_WORLD.Dup()
        ids = self.comm.allgather(commId)
        assert len(set(ids)) == 1 and len(commId) == 128, "the ranks got different unique ids"
        assert ndev == self.comm.size and rank == self.comm.rank
        self.rank = rank

    def allReduce(self, sendbuf, recvbuf, count, datatype, op, stream):
        calls.append(("allReduce", count, datatype))
        send, recv = _view(sendbuf, count, datatype), _view(recvbuf, count, datatype)
        self.comm.Allreduce(MPI.IN_PLACE if sendbuf == recvbuf else send, recv, _OPS[op])
        if op == NCCL_AVG:
            recv[...] = recv / self.comm.size
        return None

    def bcast(self, buff, count, datatype, root, stream):
        calls.append(("bcast", count, datatype))
        self.comm.Bcast(_view(buff, count, datatype), root=root)

    def allGather(self, sendbuf, recvbuf, count, datatype, stream):
        calls.append(("allGather", count, datatype))
        self.comm.Allgather(_view(sendbuf, count, datatype), _view(recvbuf, count * self.comm.size, datatype))

    def destroy(self):
        self.comm.Free()


nccl = types.SimpleNamespace(**{k: v for k, v in globals().items() if k.startswith("NCCL_")},
                             get_unique_id=get_unique_id, NcclCommunicator=NcclCommunicator, available=True)
