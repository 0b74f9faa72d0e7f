"""Distributed data parallel on the CPU: the bucketed all-reduce's bandwidth, and the overlap in a step.

    OMP_NUM_THREADS=1 mpiexec -n 2 python bench/dist_allreduce.py [--rounds 30] [--out bench/results]

1. Bandwidth. An MLP's gradients (float32) are averaged the way DistributedDataParallel does it after
   backward (`Reducer.finish`: copy each bucket's gradients into its flat array, start a non-blocking
   all-reduce per bucket, wait for all, divide, copy back into `.grad`), and, on the very same flat
   arrays, with raw mpi4py: `comm.Allreduce(MPI.IN_PLACE, flat)` per bucket, nothing else, and the same
   non-blocking calls tinylazy makes (`Iallreduce` per bucket, `Waitall`). Bandwidth is the gradient bytes
   over the time; the ratio raw/tinylazy is what the framework costs (target >= 90%).
2. Overlap. One training step (forward, backward, SGD) of the same model with DDP, against the same step
   under `no_sync()` (the compute alone: no all-reduce at all). "Exposed communication" is the difference;
   compared with the all-reduce alone (1.), the rest was hidden behind backward.

The measurements are interleaved, in a new shuffled order each round (the same on every rank), each after
a barrier, and the tables give medians. Each rank
is one process; on a machine with fewer free cores than ranks, the ranks also compete for the CPU.
"""
import argparse
import datetime
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import tinylazy as tl                                                  # noqa: E402
import tinylazy.distributed as dist                                    # noqa: E402
from tinylazy import nn, optim                                          # noqa: E402
import tinylazy.nn.functional as F                                      # noqa: E402
from tinylazy.nn.parallel import DistributedDataParallel as DDP       # noqa: E402


def mlp(width):
    return nn.Sequential(nn.LazyLinear(width), nn.ReLU(), nn.LazyLinear(width), nn.ReLU(), nn.LazyLinear(10))


def timed(fn, comm):
    comm.Barrier()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bandwidth(width, cap_mb, rounds, comm, MPI):
    tl.manual_seed(0)
    ddp = DDP(mlp(width), bucket_cap_mb=cap_mb)
    ddp(tl.ones(2, 784))
    params = list(ddp.parameters())
    for p in params:
        p.grad = tl.randn(*p.shape)
    reducer = ddp.reducer
    nbytes = sum(p.array.nbytes for p in params)

    def ours():
        reducer.prepare()
        reducer.finish()

    def raw():
        for b in reducer.buckets:
            comm.Allreduce(MPI.IN_PLACE, b.flat)

    def raw_nonblocking():                         # the same MPI calls as ours, without the framework
        MPI.Request.Waitall([comm.Iallreduce(MPI.IN_PLACE, b.flat) for b in reducer.buckets])
    ours(), raw(), raw_nonblocking()               # warm up
    t_ours, t_raw, t_nb = [], [], []
    order = np.random.default_rng(1)               # the same order on every rank: they must call alike
    for _ in range(rounds):
        for k in order.permutation(3):
            [t_ours, t_raw, t_nb][k].append(timed([ours, raw, raw_nonblocking][k], comm))
    mo, mr, mn = statistics.median(t_ours), statistics.median(t_raw), statistics.median(t_nb)
    return {"width": width, "cap_mb": cap_mb, "buckets": len(reducer.buckets), "MB": nbytes / 1e6,
            "ours_ms": mo * 1e3, "raw_ms": mr * 1e3, "nb_ms": mn * 1e3, "ours_GBps": nbytes / mo / 1e9,
            "raw_GBps": nbytes / mr / 1e9, "ratio": mr / mo, "nb_ratio": mn / mo}


def overlap(width, batch, cap_mb, rounds, comm):
    tl.manual_seed(0)
    ddp = DDP(mlp(width), bucket_cap_mb=cap_mb)
    opt = optim.SGD(ddp.parameters(), lr=1e-3)
    rng = np.random.default_rng(dist.get_rank())
    X = tl.tensor(rng.standard_normal((batch, 784)).astype(np.float32))
    y = tl.tensor(rng.integers(0, 10, batch))

    def step():
        opt.zero_grad()
        F.cross_entropy(ddp(X), y).backward()
        opt.step()

    def compute_only():
        with ddp.no_sync():
            step()
    step(), compute_only()
    t_ddp, t_compute = [], []
    order = np.random.default_rng(2)
    for _ in range(rounds):
        for k in order.permutation(2):
            [t_ddp, t_compute][k].append(timed([step, compute_only][k], comm))
    return {"width": width, "batch": batch, "cap_mb": cap_mb, "buckets": len(ddp.reducer.buckets),
            "ddp_ms": statistics.median(t_ddp) * 1e3,
            "compute_ms": statistics.median(t_compute) * 1e3}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--tag", default="", help="appended to the result file's name")
    ap.add_argument("--note", default="", help="a line about the machine's state, written under the tables")
    args = ap.parse_args()
    dist.init_process_group("mpi")
    comm, MPI = dist.group().comm, dist.group().MPI
    rows = [bandwidth(w, cap, args.rounds, comm, MPI) for w, cap in ((256, 25), (1024, 25), (1024, 1), (2048, 25))]
    steps = [overlap(w, b, cap, args.rounds, comm) for w, b, cap in ((1024, 64, 25), (1024, 64, 1), (2048, 64, 25),
                                                                      (2048, 64, 4))]
    if dist.get_rank() != 0:
        return
    for s in steps:
        match = next(r for r in rows if r["width"] == s["width"] and r["cap_mb"] == 25)   # all gradients, 1 bucket
        s["exposed_ms"] = s["ddp_ms"] - s["compute_ms"]
        s["allreduce_ms"] = match["ours_ms"]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    library = MPI.Get_library_version().splitlines()[0].strip()
    lines = [f"# DDP on the CPU, {dist.get_world_size()} ranks over MPI ({library})",
             "", f"{now}, `bench/dist_allreduce.py --rounds {args.rounds}`, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} cores. {args.note}", "",
             "## All-reduce of an MLP's float32 gradients (784-W-W-10): tinylazy's bucketed path vs raw mpi4py",
             "", "| W | bucket cap | buckets | MB | tinylazy | raw Allreduce | raw Iallreduce+Waitall | tinylazy GB/s "
             "| raw GB/s | raw/tinylazy | raw Iallreduce/tinylazy |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['width']} | {r['cap_mb']} MiB | {r['buckets']} | {r['MB']:.2f} | {r['ours_ms']:.2f} ms | "
                     f"{r['raw_ms']:.2f} ms | {r['nb_ms']:.2f} ms | {r['ours_GBps']:.2f} | {r['raw_GBps']:.2f} | "
                     f"{r['ratio']:.0%} | {r['nb_ratio']:.0%} |")
    lines += ["", "## A training step (batch per rank, SGD): DDP vs the same step under no_sync() (compute alone)",
              "", "| W | batch/rank | bucket cap | buckets | DDP step | compute alone | exposed communication | "
              "all-reduce alone |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in steps:
        lines.append(f"| {s['width']} | {s['batch']} | {s['cap_mb']} MiB | {s['buckets']} | {s['ddp_ms']:.2f} ms | "
                     f"{s['compute_ms']:.2f} ms | "
                     f"{s['exposed_ms']:.2f} ms | {s['allreduce_ms']:.2f} ms |")
    progress = os.environ.get("MPICH_ASYNC_PROGRESS", "unset")
    lines += ["", f"MPICH_ASYNC_PROGRESS={progress}: " + (
        "a progress thread per rank advances started all-reduces while Python computes." if progress == "1" else
        "no progress thread: MPI advances a started all-reduce only inside MPI calls (when the next bucket "
        "starts, and in the final wait).")]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"dist-cpu-{now[:10]}{args.tag}.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
