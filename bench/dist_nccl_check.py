"""The GPU check's distributed step: the "nccl" backend and DistributedDataParallel on cuda tensors.

    mpiexec -n 1 python bench/dist_nccl_check.py [--out DIR]       (any -n up to the number of GPUs)

Every rank: all_reduce (SUM, AVG, MAX), broadcast and all_gather of CuPy arrays through NCCL, then a lazy
MLP trained 3 steps with DistributedDataParallel on its own slice of each batch, compared with one
process training on the whole batch (float64, relative difference <= 1e-12). Prints one JSON line per rank
and writes rank 0's to DIR/dist-nccl.json. Without mpi4py or a GPU it says so and exits 0 (skipped).
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tinylazy as tl                                                  # noqa: E402
from tinylazy import nn, optim                                          # noqa: E402
import tinylazy.nn.functional as F                                      # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "bench/results"))
    args = ap.parse_args()
    import importlib.util
    if importlib.util.find_spec("mpi4py") is None or not tl.cuda.is_available():
        print(json.dumps({"skipped": "needs mpi4py (pip install mpi4py mpich) and a GPU with CuPy"}))
        return 0
    import tinylazy.distributed as dist
    dist.init_process_group("nccl")
    rank, world = dist.get_rank(), dist.get_world_size()
    dev = f"cuda:{dist.group().device_id}"
    checks = {}
    t = tl.full((1000,), float(rank + 1), dtype=tl.float32, device=dev)
    dist.all_reduce(t)
    checks["sum"] = bool((t.numpy() == world * (world + 1) / 2).all())
    t = tl.full((7,), float(rank + 1), dtype=tl.float64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.AVG)
    checks["avg"] = bool(np.allclose(t.numpy(), (world + 1) / 2))
    t = tl.full((3,), rank, dtype=tl.int64, device=dev)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    checks["max"] = bool((t.numpy() == world - 1).all())
    b = tl.full((5,), float(rank), device=dev)
    dist.broadcast(b, src=0)
    checks["broadcast"] = bool((b.numpy() == 0).all())
    outs = [tl.zeros(2, device=dev) for _ in range(world)]
    dist.all_gather(outs, tl.tensor([rank, rank], dtype=tl.float32, device=dev))
    checks["all_gather"] = [o.numpy().tolist() for o in outs] == [[r, r] for r in range(world)]

    rng = np.random.default_rng(0)
    batch = 8
    X = rng.standard_normal((3, world * batch, 20))
    y = rng.integers(0, 10, (3, world * batch))
    build = lambda: nn.Sequential(nn.LazyLinear(32), nn.ReLU(), nn.LazyLinear(10))   # noqa: E731
    tl.manual_seed(rank)
    ddp = nn.parallel.DistributedDataParallel(build())
    opt = optim.Adam(ddp.parameters(), lr=1e-2)
    ref = build()
    ref_opt = optim.Adam(ref.parameters(), lr=1e-2)
    for s in range(3):
        mine = slice(rank * batch, (rank + 1) * batch)
        out = ddp(tl.tensor(X[s][mine], device=dev))
        if s == 0:
            ref.load_state_dict(ddp.module.state_dict())
        loss = F.cross_entropy(out, tl.tensor(y[s][mine], device=dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        ref_loss = F.cross_entropy(ref(tl.tensor(X[s], device=dev)), tl.tensor(y[s], device=dev))
        ref_opt.zero_grad()
        ref_loss.backward()
        ref_opt.step()
    worst = max(float(np.max(np.abs(p.numpy() - q.numpy())) / np.max(np.abs(q.numpy())))
                for p, q in zip(ddp.module.parameters(), ref.parameters()))
    checks["ddp_vs_one_process"] = worst <= 1e-12
    result = {"rank": rank, "world": world, "device": dev, "checks": checks, "ddp_max_rel_diff": worst,
              "ok": all(checks.values())}
    print(json.dumps(result), flush=True)
    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        with open(os.path.join(args.out, "dist-nccl.json"), "w") as f:
            json.dump(result, f, indent=1)
    dist.destroy_process_group()
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
