"""The "nccl" backend: collectives on CuPy arrays (cuda tensors) through NCCL (`cupy.cuda.nccl`).

Start-up goes through MPI: the launcher gives rank and size, each rank takes the GPU numbered by its rank
among the ranks of its node (modulo the GPUs there), rank 0 makes NCCL's unique id and MPI broadcasts it,
then every rank builds its `NcclCommunicator`. From then on the tensors' data only moves through NCCL,
on the current CuPy stream: a collective is ordered after the kernels that produced its input and before
those that read its output, so `wait()` has nothing to wait for on the host. Barriers and small objects
(`all_gather_object`) go through MPI.
"""
import numpy as np

from . import DistributedError, ReduceOp
from ._mpi import MPIGroup


class Work:
    """A collective queued on the stream: already ordered before whatever the stream runs next."""

    def __init__(self, finish=None):
        self.finish = finish

    def is_completed(self):
        return True

    def wait(self):
        if self.finish is not None:
            finish, self.finish = self.finish, None
            finish()


def import_nccl():
    try:
        import cupy
        from cupy.cuda import nccl
    except ImportError as e:
        raise DistributedError(f"init_process_group('nccl') needs CuPy with NCCL: {e}. Install CuPy with "
                               "pip install 'tinylazy[cuda]' (CuPy's wheels bring NCCL); for cpu tensors use "
                               "the 'mpi' backend") from e
    if not getattr(nccl, "available", True):
        raise DistributedError("init_process_group('nccl'): CuPy is installed but could not load the NCCL "
                               "library; install it (pip install nvidia-nccl-cu13) or use the 'mpi' backend")
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as e:
        raise DistributedError(f"init_process_group('nccl'): no usable GPU ({e}); use the 'mpi' backend for "
                               "cpu tensors") from e
    return cupy, nccl, count


class NCCLGroup(MPIGroup):
    backend = "nccl"

    def __init__(self, timeout):
        cupy, nccl, count = import_nccl()
        super().__init__(timeout)             # MPI: rank, size, barrier, all_gather_object, abort
        local = self.comm.Split_type(self.MPI.COMM_TYPE_SHARED)
        self.device_id = local.Get_rank() % count
        local.Free()
        cupy.cuda.Device(self.device_id).use()
        self.cupy, self.nccl = cupy, nccl
        uid = nccl.get_unique_id() if self.rank == 0 else None
        uid = self.comm.bcast(uid, root=0)    # a few bytes of id, sent once
        self.nccl_comm = nccl.NcclCommunicator(self.size, uid, self.rank)
        self.ops = {ReduceOp.SUM: nccl.NCCL_SUM, ReduceOp.AVG: nccl.NCCL_AVG, ReduceOp.PRODUCT: nccl.NCCL_PROD,
                    ReduceOp.MIN: nccl.NCCL_MIN, ReduceOp.MAX: nccl.NCCL_MAX}
        self.types = {np.dtype(k): v for k, v in (
            ("float16", nccl.NCCL_FLOAT16), ("float32", nccl.NCCL_FLOAT32), ("float64", nccl.NCCL_FLOAT64),
            ("int8", nccl.NCCL_INT8), ("uint8", nccl.NCCL_UINT8), ("int32", nccl.NCCL_INT32),
            ("int64", nccl.NCCL_INT64), ("bool", nccl.NCCL_UINT8))}

    def check_array(self, array, op):
        if not isinstance(array, self.cupy.ndarray):
            raise DistributedError(f"{op}: the 'nccl' backend reduces cuda tensors (CuPy arrays), got a "
                                   f"{type(array).__name__} (a cpu tensor?); use init_process_group('mpi') for "
                                   "cpu tensors, or move it with .cuda()")
        if array.device.id != self.device_id:
            raise DistributedError(f"{op}: this rank's NCCL communicator is on cuda:{self.device_id}, the tensor "
                                   f"is on cuda:{array.device.id}; move it with .to('cuda:{self.device_id}')")
        if array.dtype not in self.types:
            raise TypeError(f"{op}: NCCL cannot reduce dtype {array.dtype}")

    def _stream(self):
        return self.cupy.cuda.get_current_stream().ptr

    def _contiguous(self, array):
        if array.flags.c_contiguous:
            return array, None
        tmp = self.cupy.ascontiguousarray(array)

        def back():
            array[...] = tmp
        return tmp, back

    def all_reduce(self, array, op):
        buf, back = self._contiguous(array)
        nccl_op = self.ops[op]
        if buf.dtype == np.bool_:
            nccl_op = self.nccl.NCCL_MAX if op in (ReduceOp.SUM, ReduceOp.MAX) else self.nccl.NCCL_MIN
        self.nccl_comm.allReduce(buf.data.ptr, buf.data.ptr, buf.size, self.types[buf.dtype], nccl_op,
                                 self._stream())
        return Work(back)

    def broadcast(self, array, src):
        buf, back = self._contiguous(array)
        self.nccl_comm.bcast(buf.data.ptr, buf.size, self.types[buf.dtype], src, self._stream())
        return Work(back)

    def all_gather(self, outs, array):
        src = self.cupy.ascontiguousarray(array)
        recv = self.cupy.empty((self.size,) + src.shape, src.dtype)
        self.nccl_comm.allGather(src.data.ptr, recv.data.ptr, src.size, self.types[src.dtype], self._stream())

        def finish():
            for out, part in zip(outs, recv):
                out[...] = part
        return Work(finish)

    def destroy(self):
        self.nccl_comm.destroy()
        super().destroy()
