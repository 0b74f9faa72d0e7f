"""Training on N ranks equals one process on the concatenated batches; batch-norm buffers; no_sync.
"""
import contextlib

import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn, optim
import tinylazy.nn.functional as F
from tinylazy.nn.parallel import DistributedDataParallel as DDP

from .harness import check, same_on_all_ranks, scenario
from .models import data, lenet, lenet_bn, mlp, train_pair


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
    copied, _ = train_pair(mlp, "adam", np.float64, set_to_none=False, as_view=False)
    check(copied <= 1e-12, f"MLP adam, gradient_as_bucket_view=False: DDP vs one process differ by {copied:.3g}")
    return ", ".join(lines) + f", sgd/float64/zeroed in place {worst:.2g}, adam/float64/copied back {copied:.2g}"


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
        ctx = ddp.no_sync() if s < 2 else contextlib.nullcontext()
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
