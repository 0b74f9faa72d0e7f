"""`tinylazy.distributed`: process groups and collectives for data-parallel training (PyTorch's names).

    import tinylazy.distributed as dist
    dist.init_process_group("mpi")          # rank and size come from the launcher: mpiexec -n 4 python train.py
    dist.all_reduce(t, op=dist.ReduceOp.AVG) # in place, on every rank

No home-made transport: the ``"mpi"`` backend moves NumPy arrays (cpu tensors) with MPI through mpi4py
(``pip install mpi4py mpich``, or ``pip install tinylazy[mpi]``); the ``"nccl"`` backend moves CuPy arrays
(cuda tensors) with NCCL through `cupy.cuda.nccl`, and uses MPI only to start (rank, size, and NCCL's
unique id sent from rank 0). Neither is imported before `init_process_group` asks for it.

Every collective is called by every rank of the group, in the same order. Tensors are reduced and
broadcast in place, on their own device. A rank that never arrives must not hang the others forever: every
wait is bounded by the group's `timeout` (default 30 minutes, as PyTorch); when it runs out, the waiting
rank prints which collective timed out and aborts the whole job (``MPI_Abort``), since a collective that
has begun cannot be withdrawn.
"""
import datetime
import importlib.util
import numbers

from ..tensor import Tensor

__all__ = ["ReduceOp", "init_process_group", "is_initialized", "is_available", "is_mpi_available",
           "is_nccl_available", "get_rank", "get_world_size", "get_backend", "barrier", "broadcast",
           "all_reduce", "all_gather", "all_gather_object", "destroy_process_group", "DistributedError"]

MPI_HINT = "pip install mpi4py mpich   (or: pip install 'tinylazy[mpi]')"
DEFAULT_TIMEOUT = 1800.0          # seconds


class DistributedError(RuntimeError):
    """A distributed setup problem: no process group, a missing MPI, a tensor on the wrong device."""


class ReduceOp:
    """How `all_reduce` combines the ranks' values (PyTorch's names). AVG: the sum divided by the world size
    (floating tensors only)."""
    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"
    ALL = (SUM, AVG, PRODUCT, MIN, MAX)


_group = None                     # the default process group (one of the backends' Group classes)


def is_available():
    """True: tinylazy.distributed is always importable (the backends are imported by init_process_group)."""
    return True


def is_mpi_available():
    """True when mpi4py is installed (the 'mpi' backend; whether an MPI library starts shows at init)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_nccl_available():
    """True when CuPy and mpi4py are installed (the 'nccl' backend needs both: NCCL for the data, MPI to
    start); whether NCCL loads and a GPU answers shows at init."""
    return is_mpi_available() and importlib.util.find_spec("cupy") is not None


def is_initialized():
    return _group is not None


def init_process_group(backend="mpi", timeout=None, init_method=None, world_size=-1, rank=-1):
    """Join the job's default process group. Rank and world size come from the MPI launcher (``mpiexec -n
    N``); a script started without a launcher is a group of one. `timeout` (seconds or a `timedelta`)
    bounds every wait. `init_method`, `world_size` and `rank` exist for PyTorch's signature: given, they must
    agree with what the launcher says."""
    global _group
    if _group is not None:
        raise DistributedError("init_process_group: the default process group is already initialized "
                               f"(backend {_group.backend!r}); call destroy_process_group() first")
    if init_method not in (None, "env://"):
        raise DistributedError(f"init_process_group: init_method={init_method!r} is not supported; rank and "
                               "world size come from the MPI launcher (mpiexec -n N python ...)")
    seconds = _seconds(timeout)
    if backend == "mpi":
        from . import _mpi
        group = _mpi.MPIGroup(seconds)
    elif backend == "nccl":
        from . import _nccl
        group = _nccl.NCCLGroup(seconds)
    else:
        raise DistributedError(f"init_process_group: unknown backend {backend!r}; expected 'mpi' (cpu tensors, "
                               "through mpi4py) or 'nccl' (cuda tensors, through CuPy)")
    for name, asked, got in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if asked not in (-1, None) and asked != got:
            group.destroy()
            raise DistributedError(f"init_process_group: {name}={asked} was asked for, but the launcher "
                                   f"started this process with {name} {got}")
    _group = group


def destroy_process_group():
    """Leave the default group (MPI itself is finalized when the process exits)."""
    global _group
    if _group is not None:
        group, _group = _group, None
        group.destroy()


def group():
    """The default process group, or a clear error when there is none."""
    if _group is None:
        raise DistributedError("no process group: call tinylazy.distributed.init_process_group('mpi') (or "
                               "'nccl') first, in a script launched with mpiexec -n N python script.py")
    return _group


def get_rank():
    return group().rank


def get_world_size():
    return group().size


def get_backend():
    return group().backend


def barrier():
    """Wait until every rank has reached this call."""
    group().barrier()


def broadcast(tensor, src=0, async_op=False):
    """Copy rank `src`'s values into `tensor` on every rank (in place)."""
    g = group()
    g.check_rank(src, "broadcast")
    work = g.broadcast(_array(tensor, "broadcast", g), src)
    return work if async_op else work.wait()


def all_reduce(tensor, op=ReduceOp.SUM, async_op=False):
    """Combine `tensor` across ranks with `op` and leave the result in `tensor` on every rank (in place).
    With ``async_op=True`` returns a work object: the values are final after ``work.wait()``."""
    g = group()
    if op not in ReduceOp.ALL:
        raise ValueError(f"all_reduce: unknown op {op!r}; use one of dist.ReduceOp.SUM, AVG, PRODUCT, MIN, MAX")
    array = _array(tensor, "all_reduce", g)
    if op == ReduceOp.AVG and array.dtype.kind != "f":
        raise TypeError(f"all_reduce: ReduceOp.AVG needs a floating tensor, got {array.dtype}")
    work = g.all_reduce(array, op)
    return work if async_op else work.wait()


def all_gather(tensor_list, tensor, async_op=False):
    """Fill ``tensor_list[r]`` with rank r's `tensor`, on every rank. The list holds world_size tensors of
    `tensor`'s shape, dtype and device (PyTorch's contract); they are written in place."""
    g = group()
    array = _array(tensor, "all_gather", g)
    if len(tensor_list) != g.size:
        raise ValueError(f"all_gather: tensor_list has {len(tensor_list)} tensors, expected one per rank "
                         f"({g.size})")
    for i, t in enumerate(tensor_list):
        out = _array(t, "all_gather", g)
        if out.shape != array.shape or out.dtype != array.dtype:
            raise ValueError(f"all_gather: tensor_list[{i}] has shape {tuple(out.shape)} and dtype {out.dtype}, "
                             f"expected {tuple(array.shape)} and {array.dtype} (the input's)")
    work = g.all_gather([t.array for t in tensor_list], array)
    return work if async_op else work.wait()


def all_gather_object(object_list, obj):
    """Fill ``object_list`` (world_size entries) with every rank's `obj`. The objects travel as JSON (no
    pickle): numbers, strings, None, lists and dicts with string keys; tuples arrive as lists."""
    g = group()
    if len(object_list) != g.size:
        raise ValueError(f"all_gather_object: object_list has {len(object_list)} entries, expected one per "
                         f"rank ({g.size})")
    object_list[:] = g.all_gather_object(obj)


def _array(t, op, g):
    """The raw array of tensor `t`, checked to fit the group's backend."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: expected a tinylazy Tensor, got {type(t).__name__}")
    array = t.array
    g.check_array(array, op)
    return array


def _seconds(timeout):
    if timeout is None:
        return DEFAULT_TIMEOUT
    if isinstance(timeout, datetime.timedelta):
        return timeout.total_seconds()
    if isinstance(timeout, numbers.Real) and timeout > 0:
        return float(timeout)
    raise ValueError(f"init_process_group: timeout must be a positive number of seconds or a timedelta, "
                     f"got {timeout!r}")
