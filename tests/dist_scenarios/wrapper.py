"""The first call (sizes agreed across ranks, rolled back on a mismatch) and the wrapper's PyTorch surface.
"""
import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy import nn
from tinylazy.nn.parallel import DistributedDataParallel as DDP

from .harness import check, scenario


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
def wrapper_api():
    """What a PyTorch DDP user expects of the wrapper: `module` is the wrapped model; `state_dict()` keys
    carry the ``module.`` prefix and load back into a wrapper (a lazy one included), not into the bare
    model; values loaded differently on each rank are replaced by rank 0's at the first call."""
    rank = dist.get_rank()
    net = nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2))
    ddp = DDP(net, find_unused_parameters=True)
    check(ddp.module is net, "ddp.module is not the wrapped model")
    ddp(tl.ones(2, 4))
    state = ddp.state_dict()
    check(sorted(state) == ["module.0.bias", "module.0.weight", "module.2.bias", "module.2.weight"],
          f"state_dict keys {sorted(state)}")
    check([n for n, _ in ddp.named_parameters()][0] == "module.0.weight", "named_parameters lacks the prefix")
    try:
        net.load_state_dict(state)
        raise AssertionError("the bare model loaded the wrapper's keys")
    except RuntimeError as e:
        check("Missing key(s)" in str(e) and "module.0.weight" in str(e), f"unclear error: {e}")
    other = DDP(nn.Sequential(nn.LazyLinear(3), nn.ReLU(), nn.LazyLinear(2)))      # lazy until loaded
    mine = {k: tl.tensor(v.array + rank) for k, v in state.items()}                # different on each rank
    other.load_state_dict(mine)
    other(tl.ones(2, 4))                                                           # first call: rank 0's values
    for (k, v), w in zip(other.state_dict().items(), state.values()):
        check(np.array_equal(v.array, w.array), f"{k}: rank {rank} kept its own loaded values")
    check("world_size=" in repr(ddp) and "(module): Sequential" in repr(ddp), f"repr: {ddp!r}")
    return "module attribute, prefixed state_dict, rank 0's loaded values win"
