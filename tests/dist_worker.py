"""The rank side of tests/test_distributed.py: run under ``mpiexec -n N python tests/dist_worker.py SCENARIO...``.

Each scenario runs on every rank and reports one JSON line per rank (name, rank, ok|fail, detail) into
$TINYLAZY_DIST_RESULTS/rank-R.jsonl (or on stdout); test_distributed.py launches the job, reads the lines
and asserts that every rank said ok. A scenario that
fails is caught and reported so the others still run; the scenarios "abort_forward" and "timeout" end the
whole job on purpose (their test reads stderr and the exit status instead).

The training scenarios compare N ranks of DistributedDataParallel (local batch B each) with one process
training the same model from the same initial values on the N batches concatenated (batch N*B).
"""
import json
import os
import sys
import time
import traceback

import numpy as np

sys.path.insert(0, __file__.rsplit("/", 2)[0])            # the repository root, before any installed copy
import tinylazy as tl                                      # noqa: E402
import tinylazy.distributed as dist                        # noqa: E402
from tinylazy import nn, optim                              # noqa: E402
import tinylazy.nn.functional as F                          # noqa: E402
from tinylazy.nn.parallel import DistributedDataParallel as DDP   # noqa: E402
from tinylazy.utils.data import DataLoader, DistributedSampler, TensorDataset   # noqa: E402

SCENARIOS = {}


def scenario(fn):
    SCENARIOS[fn.__name__] = fn
    return fn


def check(cond, message):
    if not cond:
        raise AssertionError(message)


def gather(obj):
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


# --- models --------------------------------------------------------------------------------------------
def mlp():
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(10))


def lenet():
    """d2l's original LeNet (no batch norm: per-rank batch statistics would differ from the big batch's)."""
    return nn.Sequential(nn.LazyConv2d(6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(2, 2),
                         nn.LazyConv2d(16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(2, 2), nn.Flatten(),
                         nn.LazyLinear(120), nn.Sigmoid(), nn.LazyLinear(84), nn.Sigmoid(), nn.LazyLinear(10))


def lenet_bn():
    return nn.Sequential(nn.LazyConv2d(6, kernel_size=5, padding=2), nn.LazyBatchNorm2d(), nn.ReLU(),
                         nn.MaxPool2d(2, 2), nn.Flatten(), nn.LazyLinear(10))


def make_opt(kind, params):
    if kind == "sgd":
        return optim.SGD(params, lr=0.1, momentum=0.9)
    return optim.Adam(params, lr=1e-2)


def data(steps, batch, shape, dtype, seed=7):
    """The same full batches on every rank: (steps, world*batch, *shape) inputs and labels."""
    rng = np.random.default_rng(seed)
    n = dist.get_world_size() * batch
    X = rng.standard_normal((steps, n) + shape).astype(dtype)
    y = rng.integers(0, 10, (steps, n))
    return X, y


def train_pair(build, opt_kind, dtype, steps=3, batch=4, shape=(1, 12, 12), set_to_none=True):
    """Train DDP (this rank's slice) and, on the side, a single-process copy on the whole batch; return the
    largest relative difference of the final parameters and the DDP parameters (flattened)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = data(steps, batch, shape, dtype)
    tl.manual_seed(100 + rank)                     # different initial values per rank: rank 0's must win
    ddp = DDP(build())
    opt = make_opt(opt_kind, ddp.parameters())    # made before the first forward: lazy parameters
    ref = build()
    ref_opt = make_opt(opt_kind, ref.parameters())
    for s in range(steps):
        mine = slice(rank * batch, (rank + 1) * batch)
        out = ddp(tl.tensor(X[s][mine]))
        if s == 0:                                 # the synchronized initial values, before any update
            ref.load_state_dict(ddp.module.state_dict())
        loss = F.cross_entropy(out, tl.tensor(y[s][mine]))
        opt.zero_grad(set_to_none=set_to_none)     # False: backward adds into last step's bucket slices
        loss.backward()
        opt.step()
        ref_loss = F.cross_entropy(ref(tl.tensor(X[s])), tl.tensor(y[s]))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
    worst = 0.0
    for (name, p), q in zip(ddp.module.named_parameters(), ref.parameters()):
        a, b = p.array.astype(np.float64), q.array.astype(np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
    flat = np.concatenate([p.array.ravel() for p in ddp.parameters()])
    check(flat.dtype == dtype, f"parameters are {flat.dtype}, expected {np.dtype(dtype)}")
    return worst, flat


def same_on_all_ranks(flat, what):
    out = [tl.zeros(flat.size, dtype=flat.dtype) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tl.tensor(flat))
    for r, t in enumerate(out):
        check(np.array_equal(t.array, flat), f"{what}: rank {r}'s values differ from rank {dist.get_rank()}'s")


# --- scenarios -----------------------------------------------------------------------------------------
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
def train_mlp():
    lines = []
    for opt_kind in ("sgd", "adam"):
        for dtype, tol in ((np.float64, 1e-12), (np.float32, 2e-5)):
            worst, flat = train_pair(mlp, opt_kind, dtype)
            check(worst <= tol, f"MLP {opt_kind} {np.dtype(dtype)}: DDP vs one process differ by {worst:.3g} "
                                f"(relative), tolerance {tol:g}")
            same_on_all_ranks(flat, f"MLP {opt_kind} {np.dtype(dtype)}")
            lines.append(f"{opt_kind}/{np.dtype(dtype)} {worst:.2g}")
    worst, flat = train_pair(mlp, "sgd", np.float64, set_to_none=False)
    check(worst <= 1e-12, f"MLP sgd, zero_grad(set_to_none=False): DDP vs one process differ by {worst:.3g}")
    return ", ".join(lines) + f", sgd/float64/zeroed in place {worst:.2g}"


@scenario
def train_lenet():
    lines = []
    for opt_kind, dtype, tol in (("sgd", np.float64, 1e-12), ("adam", np.float64, 1e-12),
                                 ("adam", np.float32, 5e-4)):
        worst, flat = train_pair(lenet, opt_kind, dtype, steps=2, batch=2, shape=(1, 28, 28))
        check(worst <= tol, f"LeNet {opt_kind} {np.dtype(dtype)}: DDP vs one process differ by {worst:.3g}")
        same_on_all_ranks(flat, f"LeNet {opt_kind}")
        lines.append(f"{opt_kind}/{np.dtype(dtype)} {worst:.2g}")
    return ", ".join(lines)


@scenario
def batchnorm_buffers():
    """With batch norm the replicas still agree: parameters by averaging, buffers by rank 0's broadcast."""
    rank = dist.get_rank()
    tl.manual_seed(rank)
    ddp = DDP(lenet_bn())
    opt = optim.SGD(ddp.parameters(), lr=0.1)
    X, y = data(2, 3, (1, 12, 12), np.float64)
    for s in range(2):
        mine = slice(rank * 3, rank * 3 + 3)
        loss = F.cross_entropy(ddp(tl.tensor(X[s][mine])), tl.tensor(y[s][mine]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    ddp(tl.tensor(X[0][:3]))                        # a forward starts with rank 0's buffers
    same_on_all_ranks(np.concatenate([p.array.ravel() for p in ddp.parameters()]), "batch-norm parameters")
    bufs = [b.array.astype(np.float64).ravel() for b in ddp.buffers()]
    same_on_all_ranks(np.concatenate(bufs), "batch-norm buffers")
    return "parameters and running statistics identical"


@scenario
def no_sync_accumulation():
    """Two micro-batches under no_sync, a third synchronized: the gradients equal one process's on all of
    them (the sum of the three micro-batches' mean-loss gradients over the concatenated ranks, averaged)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = data(3, 2, (6,), np.float64)
    tl.manual_seed(3)
    ddp = DDP(nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.LazyLinear(10)))
    ref = None
    for s in range(3):
        mine = slice(rank * 2, rank * 2 + 2)
        ctx = ddp.no_sync() if s < 2 else _null()
        with ctx:
            out = ddp(tl.tensor(X[s][mine]))
            if ref is None:
                ref = nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.LazyLinear(10))
                ref.load_state_dict(ddp.module.state_dict())
            F.cross_entropy(out, tl.tensor(y[s][mine])).backward()
        if s == 0:
            local = ddp.module[0].weight.grad.array.copy()
    for s in range(3):
        F.cross_entropy(ref(tl.tensor(X[s])), tl.tensor(y[s])).backward()
    for p, q in zip(ddp.parameters(), ref.parameters()):
        check(np.allclose(p.grad.array, q.grad.array, rtol=1e-12, atol=1e-14),
              f"accumulated gradients differ by {np.max(np.abs(p.grad.array - q.grad.array)):.3g}")
    others = [tl.zeros(*local.shape, dtype=tl.float64) for _ in range(world)]
    dist.all_gather(others, tl.tensor(local))
    check(world == 1 or not np.array_equal(others[0].array, others[1].array),
          "under no_sync the ranks' gradients were averaged")
    return "accumulated gradients equal one process's"


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@scenario
def shared_and_unused():
    """A layer used twice (its hook fires once, after both uses) and a layer only rank 0 uses."""
    rank = dist.get_rank()

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b, self.extra = nn.LazyLinear(5), nn.LazyLinear(5), nn.Linear(5, 5)

        def forward(self, x, use_extra):
            h = self.b(tl.tanh(self.a(x)))
            h = self.b(tl.tanh(h))                  # b used twice
            return self.extra(h) if use_extra else h
    tl.manual_seed(rank)
    net = Net()
    ddp = DDP(net)
    X = tl.tensor(np.random.default_rng(0).standard_normal((2 * dist.get_world_size(), 5)).astype(np.float32))
    out = ddp(X[2 * rank:2 * rank + 2], rank == 0)
    (out ** 2).mean().backward()
    flat = np.concatenate([p.grad.array.ravel() for p in ddp.parameters()])
    same_on_all_ranks(flat, "gradients with a shared and an unused layer")
    ref = Net()                                      # every rank's loss, computed here, averaged
    ref.load_state_dict(net.state_dict())
    for r in range(dist.get_world_size()):
        (ref(X[2 * r:2 * r + 2], r == 0) ** 2).mean().backward()
    for (name, p), q in zip(net.named_parameters(), ref.parameters()):
        expect = q.grad.array / dist.get_world_size()
        check(np.allclose(p.grad.array, expect, rtol=1e-5, atol=1e-7),
              f"{name}: DDP's gradient differs from the average of the ranks' by "
              f"{np.max(np.abs(p.grad.array - expect)):.3g}")
    before = net.extra.weight.grad.array.copy()
    ddp(X[:2], False).sum().backward()               # now no rank uses `extra`: its grad is as it was
    check(np.array_equal(net.extra.weight.grad.array, before), "a gradient no rank produced was changed")
    return "gradients equal the ranks' average, identical on every rank"


@scenario
def buckets_overlap():
    """With one parameter per bucket, the last layer's all-reduce starts before backward reaches the first
    layer (the overlap), and the gradients are still the average."""
    rank = dist.get_rank()
    tl.manual_seed(rank)
    net = nn.Sequential(nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(8), nn.ReLU(), nn.LazyLinear(3))
    ddp = DDP(net, bucket_cap_mb=1e-6)
    x = tl.ones(2, 5) * (rank + 1)
    ddp(x)
    events = []
    start = ddp.reducer.group.all_reduce
    ddp.reducer.group.all_reduce = lambda array, op: (events.append("all_reduce"), start(array, op))[1]
    net[0].weight.register_post_accumulate_grad_hook(lambda p: events.append("first layer ready"))
    ddp(x).sum().backward()
    check(len(ddp.reducer.buckets) == 6, f"expected 6 buckets, got {len(ddp.reducer.buckets)}")
    first = events.index("first layer ready")
    check(events[:first].count("all_reduce") >= 4, f"the all-reduces did not start during backward: {events}")
    same_on_all_ranks(np.concatenate([p.grad.array.ravel() for p in net.parameters()]), "bucketed gradients")
    return f"{events[:first].count('all_reduce')} of 6 buckets started before the first layer's gradient"


@scenario
def mismatch():
    """Ranks that infer different sizes: ShapeError on every rank naming the layer and each rank's size,
    and the model is still lazy; the same inputs afterwards work."""
    rank, world = dist.get_rank(), dist.get_world_size()
    net = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
    ddp = DDP(net)
    try:
        ddp(tl.zeros(2, 4 + rank))
        raise AssertionError("no error for different input sizes")
    except nn.ShapeError as e:
        msg = str(e)
    for r in range(world):
        check(f"rank {r}: (3, {4 + r})" in msg, f"the message does not name rank {r}'s size: {msg}")
    check("Linear 'module.0'" in msg and "'module.0.weight'" in msg, f"the message does not name the layer: {msg}")
    check(net.has_uninitialized_params() and net[0].in_features is None, "the model was not rolled back")
    # a rank whose first forward fails: every rank raises, naming it
    try:
        ddp(tl.zeros(2, 4, dtype=tl.int64) if rank == world - 1 else tl.zeros(2, 4))
        raise AssertionError("no error when one rank's first forward failed")
    except TypeError as e:
        check(rank == world - 1, f"unexpected TypeError on rank {rank}: {e}")
    except dist.DistributedError as e:
        check(f"rank {world - 1}: TypeError" in str(e), f"the error does not name the failing rank: {e}")
    check(net.has_uninitialized_params(), "a failed first forward left parameters materialized")
    out = ddp(tl.ones(2, 4, dtype=tl.float64))
    check(out.dtype == tl.float64 and net[0].weight.shape == (3, 4), "the matching call did not materialize")

    class Branchy(nn.Module):                        # a layer the first call does not reach
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.LazyLinear(2), nn.LazyLinear(2)

        def forward(self, x):
            return self.a(x)
    try:
        DDP(Branchy())(tl.ones(1, 3))
        raise AssertionError("no error for a layer the first call did not reach")
    except dist.DistributedError as e:
        check("did not reach b.weight, b.bias" in str(e), f"unclear error: {e}")
    return "ShapeError on every rank; rolled back"


@scenario
def sampler():
    rank, world = dist.get_rank(), dist.get_world_size()
    mine = {}
    for n in (10, 11, 1, 17):
        for drop_last in (False, True):
            s = DistributedSampler(range(n), shuffle=True, seed=3, drop_last=drop_last)
            s.set_epoch(2)
            mine[f"{n}/{drop_last}"] = list(s)
    everyone = gather(mine)
    for key in mine:
        n, drop_last = int(key.split("/")[0]), key.endswith("True")
        parts = [e[key] for e in everyone]
        sizes = {len(p) for p in parts}
        check(len(sizes) == 1, f"{key}: ranks got different numbers of samples {sizes}")
        flat = [i for p in parts for i in p]
        if drop_last:
            check(len(set(flat)) == len(flat) and len(flat) == n - n % world, f"{key}: not disjoint: {parts}")
        else:
            check(set(flat) == set(range(n)), f"{key}: does not cover range({n}): {parts}")
            check(len(set(flat)) == min(n, len(flat)) and len(flat) == -(-n // world) * world,
                  f"{key}: overlaps beyond the padding: {parts}")
    X = tl.arange(12, dtype=tl.float32).reshape(12, 1)
    loader = DataLoader(TensorDataset(X), batch_size=2, sampler=DistributedSampler(range(12), shuffle=False))
    got = [float(v) for (b,) in loader for v in b.array.ravel()]
    check(got == [float(i) for i in range(rank, 12 + (-12) % world, world)][:len(got)] and len(loader) ==
          -(-(-(-12 // world)) // 2), f"DataLoader with a DistributedSampler gave {got}")
    return f"{len(mine)} partitions disjoint and covering"


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


@scenario
def abort_forward():
    """Rank 1 raises in its third forward: the job must end (MPI_Abort) with a message, not hang."""
    rank = dist.get_rank()
    ddp = DDP(nn.Sequential(nn.LazyLinear(4), nn.ReLU(), nn.LazyLinear(2)))
    for step in range(4):
        x = tl.ones(2, 3)
        if rank == 1 and step == 2:
            x = tl.ones(2, 5)                      # ShapeError in forward, on rank 1 only
        ddp(x).sum().backward()
    return "not reached"


@scenario
def timeout():
    """Rank 1 never joins an all_reduce: rank 0's bounded wait ends the job with a message."""
    if dist.get_rank() == 1:
        time.sleep(60)
    dist.all_reduce(tl.ones(3))
    return "not reached"


def report(line):
    """One JSON line per scenario: into $TINYLAZY_DIST_RESULTS/rank-R.jsonl when set (mpiexec may interleave
    the ranks' stdout mid-line), else on stdout."""
    folder = os.environ.get("TINYLAZY_DIST_RESULTS")
    if folder:
        with open(os.path.join(folder, f"rank-{dist.get_rank()}.jsonl"), "a") as f:
            f.write(line + "\n")
    else:
        sys.stdout.write("RESULT " + line + "\n")
        sys.stdout.flush()


def main(names):
    timeout_s = 3.0 if "timeout" in names else None
    dist.init_process_group("mpi", timeout=timeout_s)
    rank = dist.get_rank()
    expect = int(os.environ.get("TINYLAZY_DIST_EXPECT_WORLD") or dist.get_world_size())
    if dist.get_world_size() != expect:
        names = []                    # every process thinks it is alone: report that instead of the scenarios
        report(json.dumps({"name": "launch", "rank": rank, "status": "fail", "detail": (
            f"mpiexec started {expect} processes but MPI says the world has {dist.get_world_size()}: the "
            "mpiexec found and mpi4py's MPI library are different MPIs"), "seconds": 0}))
    for name in names:
        start = time.perf_counter()
        try:
            detail = SCENARIOS[name]()
            status = "ok"
        except Exception as e:
            status, detail = "fail", f"{type(e).__name__}: {e}\n{traceback.format_exc()}"
        seconds = time.perf_counter() - start
        report(json.dumps({"name": name, "rank": rank, "status": status, "detail": detail,
                           "seconds": round(seconds, 2)}))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:] or [n for n in SCENARIOS if n not in ("abort_forward", "timeout")])
