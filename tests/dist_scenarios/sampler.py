"""DistributedSampler: partitions disjoint and covering on every rank; with a DataLoader.
"""
import tinylazy as tl
import tinylazy.distributed as dist
from tinylazy.utils.data import DataLoader, DistributedSampler, TensorDataset

from .harness import check, gather, scenario


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
