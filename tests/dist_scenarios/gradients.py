"""How gradients are averaged: shared and unused layers, bucket order and overlap, bucket views.
"""
import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn
from tinylazy.nn.parallel import DistributedDataParallel as DDP

from .harness import check, gather, same_on_all_ranks, scenario


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


class TwoHeads(nn.Module):
    """A trunk and two heads of the same shape, float64; `head` picks the one a call uses."""

    def __init__(self):
        super().__init__()
        self.trunk, self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)
        self.double()

    def forward(self, x, head):
        return (self.a if head == "a" else self.b)(tl.tanh(self.trunk(x)))


def average_of_ranks(build_loss, net):
    """The gradients DDP should produce: every rank's loss, run here on a copy of `net`, summed, / world."""
    ref = type(net)()
    ref.load_state_dict(net.state_dict())
    for r in range(dist.get_world_size()):
        build_loss(ref, r).backward()
    return [None if q.grad is None else q.grad.array / dist.get_world_size() for q in ref.parameters()]


@scenario
def bucket_order():
    """Rank 0 uses head a, the others head b, one parameter per bucket: the ranks' backwards reach the
    buckets in different orders, yet every rank starts the all-reduces in bucket order (MPI matches them by
    order: head a's gradients must not be summed with head b's, which have the same shapes)."""
    rank = dist.get_rank()
    tl.manual_seed(rank)
    net = TwoHeads()
    ddp = DDP(net, bucket_cap_mb=1e-6)
    X = tl.tensor(np.random.default_rng(1).standard_normal((2 * dist.get_world_size(), 4)))

    def loss(model, r):
        return (model(X[2 * r:2 * r + 2], "a" if r == 0 else "b") ** 2).mean()
    sizes = []
    start = ddp.reducer.group.all_reduce
    ddp.reducer.group.all_reduce = lambda array, op: (sizes.append(int(array.size)), start(array, op))[1]
    loss(ddp, rank).backward()
    del ddp.reducer.group.all_reduce
    everyone = gather(sizes)
    check(all(s == everyone[0] for s in everyone), f"the ranks started the buckets in different orders: {everyone}")
    same_on_all_ranks(np.concatenate([p.grad.array.ravel() for p in net.parameters()]), "two-head gradients")
    for (name, p), expect in zip(net.named_parameters(), average_of_ranks(loss, net)):
        check(np.allclose(p.grad.array, expect, rtol=1e-12, atol=1e-15),
              f"{name}: differs from the ranks' average by {np.max(np.abs(p.grad.array - expect)):.3g}")
    return f"{len(sizes)} buckets, started in the same order on every rank"


@scenario
def no_sync_then_unused():
    """Head a is used by rank 0 under no_sync() only; the synchronizing backward uses head b everywhere.
    The gradient accumulated in head a still counts at the sync (PyTorch's rule): it is averaged over the
    ranks (the others contribute zeros), so the replicas stay identical. Before it, a synchronizing forward
    whose output is dropped (as a validation pass with grad enabled)."""
    rank, world = dist.get_rank(), dist.get_world_size()
    tl.manual_seed(rank)
    net = TwoHeads()
    ddp = DDP(net)
    X = tl.tensor(np.random.default_rng(2).standard_normal((4 * world, 4)))

    def micro(model, r, k):
        return (model(X[4 * r + 2 * k:4 * r + 2 * k + 2], "a" if (k == 0 and r == 0) else "b") ** 2).mean()
    micro(ddp, rank, 1)                             # a synchronizing forward never backpropagated: it must
    with ddp.no_sync():                             # not make the no_sync backward average
        micro(ddp, rank, 0).backward()
    local = gather(net.trunk.weight.grad.array.ravel().tolist())
    check(world == 1 or local[0] != local[1], "the no_sync backward averaged the gradients")
    micro(ddp, rank, 1).backward()
    same_on_all_ranks(np.concatenate([p.grad.array.ravel() for p in net.parameters()]), "gradients after no_sync")

    class Both(nn.Module):                          # every rank's two micro-batches, on one process
        def __init__(self):
            super().__init__()
            self.net = TwoHeads()

        def forward(self, r):
            return micro(self.net, r, 0) + micro(self.net, r, 1)
    ref = Both()
    ref.net.load_state_dict(net.state_dict())
    for r in range(world):
        ref(r).backward()
    for (name, p), q in zip(net.named_parameters(), ref.net.parameters()):
        check(np.allclose(p.grad.array, q.grad.array / world, rtol=1e-12, atol=1e-15),
              f"{name}: differs from the average by {np.max(np.abs(p.grad.array - q.grad.array / world)):.3g}")
    return "the gradient accumulated under no_sync was averaged"


@scenario
def bucket_views():
    """gradient_as_bucket_view=True (the default): each .grad is its slice of the bucket, and with
    zero_grad(set_to_none=False) backward accumulates into that slice; False: .grad keeps its own array,
    the average copied into it. Both give the same values."""
    rank = dist.get_rank()
    X = tl.tensor(np.random.default_rng(3).standard_normal((2, 4)) * (rank + 1))
    grads = {}
    for as_view in (True, False):
        tl.manual_seed(0)
        net = TwoHeads()
        ddp = DDP(net, gradient_as_bucket_view=as_view)
        flat = ddp.reducer.buckets[0].flat
        arrays = []
        for step in range(2):
            for p in net.parameters():
                if p.grad is not None:
                    p.grad.zero_()
            (ddp(X, "a") ** 2).sum().backward()
            arrays.append([p.grad.array for p in net.parameters() if p.grad is not None])
        shared = [np.shares_memory(a, flat) for a in arrays[1]]
        check(all(shared) if as_view else not any(shared),
              f"gradient_as_bucket_view={as_view}: .grad shares the bucket's memory: {shared}")
        check(all(a is b for a, b in zip(arrays[0], arrays[1])),
              f"gradient_as_bucket_view={as_view}: zero_grad(set_to_none=False) did not keep the .grad arrays")
        check(net.b.weight.grad is None, "an unused head got a gradient")
        grads[as_view] = np.concatenate([a.ravel() for a in arrays[1]])
    check(np.array_equal(grads[True], grads[False]), "the two layouts gave different gradients")
    same_on_all_ranks(grads[True], "bucket-view gradients")
    return "views of the bucket by default, own arrays with False; same values"
