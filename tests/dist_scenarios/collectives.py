"""The collectives over MPI, and the "nccl" backend over tests/fake_nccl.py (no GPU needed).
"""
import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist

from .harness import check, gather, scenario


@scenario
def collectives():
    rank, world = dist.get_rank(), dist.get_world_size()
    t = tl.tensor([1.0, 2.0, 3.0], dtype=tl.float64) * (rank + 1)
    dist.all_reduce(t)
    total = sum(range(1, world + 1))
    check(t.tolist() == [total, 2 * total, 3 * total], f"SUM gave {t.tolist()}")
    for op, expect in ((dist.ReduceOp.AVG, total / world), (dist.ReduceOp.MAX, world), (dist.ReduceOp.MIN, 1),
                       (dist.ReduceOp.PRODUCT, float(np.prod(np.arange(1, world + 1))))):
        t = tl.full((2, 2), float(rank + 1), dtype=tl.float32)
        dist.all_reduce(t, op=op)
        check(np.allclose(t.array, expect), f"{op} gave {t.tolist()}, expected {expect}")
    i = tl.tensor([rank, 10], dtype=tl.int64)
    work = dist.all_reduce(i, async_op=True)
    work.wait()
    check(i.tolist() == [sum(range(world)), 10 * world], f"int64 SUM gave {i.tolist()}")
    flags = tl.tensor([rank == 0, True])
    dist.all_reduce(flags)                          # bool SUM: logical or
    check(flags.tolist() == [True, True], f"bool SUM gave {flags.tolist()}")
    m = tl.zeros(3, 4, dtype=tl.float64) + rank
    col = m[:, 1]                                   # not contiguous: reduced through a temporary
    m_col = tl.Tensor(m.array[:, 1])
    dist.all_reduce(m_col)
    check(np.allclose(m.array[:, 1], sum(range(world))) and np.allclose(m.array[:, 0], rank),
          f"non-contiguous all_reduce gave {m.tolist()}")
    del col
    b = tl.arange(4, dtype=tl.float32) * (rank + 5)
    dist.broadcast(b, src=world - 1)
    check(b.tolist() == [float(i * (world + 4)) for i in range(4)], f"broadcast gave {b.tolist()}")
    out = [tl.zeros(2, dtype=tl.int32) for _ in range(world)]
    dist.all_gather(out, tl.tensor([rank, rank * rank], dtype=tl.int32))
    check([o.tolist() for o in out] == [[r, r * r] for r in range(world)], f"all_gather gave {out}")
    objs = gather({"rank": rank, "name": "x" * rank})
    check(objs == [{"rank": r, "name": "x" * r} for r in range(world)], f"all_gather_object gave {objs}")
    dist.barrier()
    try:
        dist.all_reduce(tl.empty(2, device="meta"))
        raise AssertionError("a meta tensor was accepted by the mpi backend")
    except dist.DistributedError as e:
        check("'mpi' backend reduces cpu tensors" in str(e), f"unclear device error: {e}")
    return f"world {world}"


@scenario
def nccl_emulated():
    """The "nccl" backend over tests/fake_nccl.py (NCCL's C arguments, performed with MPI on the host):
    the unique id from rank 0, pointers, counts, datatypes and ops as NCCL would receive them."""
    import fake_nccl
    from tinylazy.distributed import _nccl
    rank, world = dist.get_rank(), dist.get_world_size()
    dist.destroy_process_group()
    real, _nccl.import_nccl = _nccl.import_nccl, lambda: (fake_nccl.cupy, fake_nccl.nccl, 1)
    try:
        dist.init_process_group("nccl")
        check(dist.get_backend() == "nccl" and dist.get_rank() == rank, "the nccl group has another rank")
        dev = fake_nccl._wrap

        t = tl.Tensor(dev(np.arange(6, dtype=np.float32).reshape(2, 3) * (rank + 1)))
        dist.all_reduce(t, op=dist.ReduceOp.AVG)
        mean = np.mean(np.arange(1, world + 1))
        check(np.allclose(t.array, np.arange(6).reshape(2, 3) * mean), f"AVG gave {t.array}")
        for op, expect in ((dist.ReduceOp.SUM, sum(range(world))), (dist.ReduceOp.MAX, world - 1),
                           (dist.ReduceOp.MIN, 0)):
            i = tl.Tensor(dev(np.full(4, rank, np.int64)))
            dist.all_reduce(i, op=op)
            check(np.all(i.array == expect), f"int64 {op} gave {i.array}")
        whole = dev(np.zeros((3, 4)) + rank)
        dist.all_reduce(tl.Tensor(whole[:, 1]))          # a non-contiguous column, through a temporary
        check(np.all(whole[:, 1] == sum(range(world))) and np.all(whole[:, 0] == rank), f"column gave {whole}")
        b = tl.Tensor(dev(np.full(5, float(rank), np.float64)))
        dist.broadcast(b, src=world - 1)
        check(np.all(b.array == world - 1), f"broadcast gave {b.array}")
        flags = tl.Tensor(dev(np.array([rank == 0, False])))
        dist.all_reduce(flags)
        check(flags.array.tolist() == [True, False], f"bool gave {flags.array}")
        outs = [tl.Tensor(dev(np.zeros(2, np.float16))) for _ in range(world)]
        dist.all_gather(outs, tl.Tensor(dev(np.array([rank, -rank], np.float16))))
        check([o.array.tolist() for o in outs] == [[r, -r] for r in range(world)], f"all_gather gave {outs}")
        try:
            dist.all_reduce(tl.ones(3))
            raise AssertionError("a cpu tensor was accepted by the nccl backend")
        except dist.DistributedError as e:
            check("'nccl' backend reduces cuda tensors" in str(e), f"unclear error: {e}")
        kinds = {(name, count, dtype) for name, count, dtype in fake_nccl.calls}
        check(("allReduce", 6, fake_nccl.NCCL_FLOAT32) in kinds and ("bcast", 5, fake_nccl.NCCL_FLOAT64) in kinds
              and ("allGather", 2, fake_nccl.NCCL_FLOAT16) in kinds, f"unexpected NCCL calls {sorted(kinds)}")
        dist.barrier()
        dist.destroy_process_group()
    finally:
        _nccl.import_nccl = real
        if not dist.is_initialized():
            dist.init_process_group("mpi")
    return f"{len(fake_nccl.calls)} NCCL calls, all as expected"
