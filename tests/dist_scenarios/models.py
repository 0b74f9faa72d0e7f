"""Models, data and the reference comparison of the training scenarios.

The training scenarios compare N ranks of DistributedDataParallel (local batch B each) with one process
training the same model from the same initial values on the N batches concatenated (batch N*B).
"""
import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn, optim
import tinylazy.nn.functional as F
from tinylazy.nn.parallel import DistributedDataParallel as DDP

from .harness import check


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


def train_pair(build, opt_kind, dtype, steps=3, batch=4, shape=(1, 12, 12), set_to_none=True, as_view=True):
    """Train DDP (this rank's slice) and, on the side, a single-process copy on the whole batch; return the
    largest relative difference of the final parameters and the DDP parameters (flattened)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    X, y = data(steps, batch, shape, dtype)
    tl.manual_seed(100 + rank)                     # different initial values per rank: rank 0's must win
    ddp = DDP(build(), gradient_as_bucket_view=as_view)
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

