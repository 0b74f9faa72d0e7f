"""Distributed data parallel on the CPU: the bucketed all-reduce's bandwidth, and the overlap in a step.

    OMP_NUM_THREADS=1 mpiexec -n 2 python bench/dist_allreduce.py [--rounds 15] [--out bench/results]

1. Bandwidth. An MLP's float32 gradients are averaged the way DistributedDataParallel does it when backward
   has ended with no bucket started (`Reducer.finish`: per bucket, gradient / world written into the
   bucket's flat array, a non-blocking all-reduce, then wait for all and make each `.grad` its slice).
   Two cases: fresh gradients (backward after `zero_grad()`: `.grad` is a new array, copied into the
   bucket) and gradients already in the bucket (`zero_grad(set_to_none=False)`: backward accumulated into
   the slices, divided in place). Against raw mpi4py on the same flat arrays:
   - raw SUM: `comm.Allreduce(MPI.IN_PLACE, flat)` per bucket and nothing else. The lower bound, but not
     like with like: it neither averages nor gathers the gradients into the buffer.
   - raw AVG: what a hand-written mpi4py average of the same gradients does, with the same buckets:
     gradient / world written into the flat array (fresh), or divided in place (in the bucket), then
     `Allreduce` per bucket. This is the fair baseline: the same arithmetic, without the framework.
     Also with the calls tinylazy makes (`Iallreduce` per bucket, `Waitall`): MPI's non-blocking
     all-reduce may take another algorithm than the blocking one; tinylazy needs it to start buckets
     during backward and to bound its waits.
   Each round times every variant once, in a new shuffled order (the same on every rank), each after a
   barrier; the ratio raw/tinylazy is taken per round (both under the same load) and the table gives its
   median and interquartile range over the rounds. Target: >= 90%.
2. Overlap. One training step (forward, backward, SGD) with DDP, against the same step under `no_sync()`
   (the compute alone, no all-reduce), alternated per round. And, instrumented, when each bucket's
   all-reduce starts relative to the end of backward (autograd's end callback): negative means the bucket
   started while backward was still running; then the time from backward's end to every gradient
   averaged (the exposed part), and the same from the moment the last rank ended its backward (what is
   left once the wait for the slower rank is taken out: the communication that did not hide).

Each rank is one process; on a machine with fewer free cores than ranks the ranks compete for the CPU, and
without an MPI progress thread (MPICH_ASYNC_PROGRESS unset) a started all-reduce moves only inside MPI calls.
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


def spread(values, scale=1.0, fmt="{:.2f}"):
    """'median [q1-q3]' of `values` times `scale`."""
    v = sorted(x * scale for x in values)
    q1, med, q3 = (statistics.quantiles(v, n=4, method="inclusive") if len(v) > 1 else (v[0], v[0], v[0]))
    return f"{fmt.format(statistics.median(v))} [{fmt.format(q1)}-{fmt.format(q3)}]"


def gbps(row, name):
    """Gradient bytes over the median time of variant `name`, in GB/s."""
    return row["nbytes"] / statistics.median(row["times"][name]) / 1e9


def rounds_of(variants, rounds, comm, seed, setup=None):
    """{name: [seconds per round]}: every variant once per round, in a shuffled order (the same on every
    rank); `setup(name)` runs untimed before each."""
    times = {name: [] for name in variants}
    names = list(variants)
    order = np.random.default_rng(seed)
    for name in names:                              # warm up
        if setup:
            setup(name)
        variants[name]()
    for _ in range(rounds):
        for k in order.permutation(len(names)):
            name = names[k]
            if setup:
                setup(name)
            comm.Barrier()
            start = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - start)
    return times


def bandwidth(width, cap_mb, rounds, comm, MPI):
    tl.manual_seed(0)
    ddp = DDP(mlp(width), bucket_cap_mb=cap_mb)
    ddp(tl.ones(2, 784))
    reducer, world = ddp.reducer, dist.get_world_size()
    params = [p for b in reducer.buckets for p in b.params]
    rng = np.random.default_rng(dist.get_rank())
    fresh = {id(p): rng.standard_normal(p.shape).astype(np.float32) for p in params}
    nbytes = sum(a.nbytes for a in fresh.values())

    def setup(name):
        """Fresh: each .grad a new array (as after zero_grad()); in bucket: the slices hold the gradients
        (as after zero_grad(set_to_none=False) and a backward). Untimed."""
        for b in reducer.buckets:
            for p, view in zip(b.params, b.views):
                if name.endswith("fresh"):
                    p.grad = tl.Tensor(fresh[id(p)])
                else:
                    view[...] = fresh[id(p)]
                    p.grad = tl.Tensor(view)

    def ours():                                     # backward ended, no bucket started during it
        reducer.prepare()
        for b in reducer.buckets:
            b.ready.update(id(p) for p in b.params)
        reducer.finish()

    def raw_sum():
        for b in reducer.buckets:
            comm.Allreduce(MPI.IN_PLACE, b.flat)

    def raw_avg_fresh():
        for b in reducer.buckets:
            for p, view in zip(b.params, b.views):
                np.divide(p.grad.array, world, out=view)
            comm.Allreduce(MPI.IN_PLACE, b.flat)

    def raw_avg_fresh_nonblocking():                # the same, with the calls tinylazy makes
        requests = []
        for b in reducer.buckets:
            for p, view in zip(b.params, b.views):
                np.divide(p.grad.array, world, out=view)
            requests.append(comm.Iallreduce(MPI.IN_PLACE, b.flat))
        MPI.Request.Waitall(requests)

    def raw_avg_in_bucket():
        for b in reducer.buckets:
            np.divide(b.flat, world, out=b.flat)
            comm.Allreduce(MPI.IN_PLACE, b.flat)
    variants = {"ours fresh": ours, "ours in bucket": ours, "raw sum": raw_sum,
                "raw avg fresh": raw_avg_fresh, "raw avg in bucket": raw_avg_in_bucket,
                "raw avg fresh nb": raw_avg_fresh_nonblocking}
    t = rounds_of(variants, rounds, comm, seed=1, setup=setup)
    ratio = {k: [r / o for r, o in zip(t[raw], t[mine])] for k, raw, mine in (
        ("sum/fresh", "raw sum", "ours fresh"), ("sum/in", "raw sum", "ours in bucket"),
        ("avg/fresh", "raw avg fresh", "ours fresh"), ("avg/in", "raw avg in bucket", "ours in bucket"),
        ("nb/fresh", "raw avg fresh nb", "ours fresh"))}
    return {"width": width, "cap_mb": cap_mb, "buckets": len(reducer.buckets), "MB": nbytes / 1e6,
            "times": t, "ratio": ratio, "nbytes": nbytes}


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
    ddp(X)
    t = rounds_of({"ddp": step, "compute": compute_only}, rounds, comm, seed=2)

    # instrumented steps: each all-reduce's start and the end of backward, on the clock of this rank
    reducer, group = ddp.reducer, ddp.group
    starts, ends, done = [], [], []
    finish, all_reduce = reducer.finish, group.all_reduce

    def timed_all_reduce(array, op):
        starts[-1].append(time.perf_counter())
        return all_reduce(array, op)

    def timed_finish():
        ends.append(time.perf_counter())
        finish()
        done.append(time.perf_counter())
    group.all_reduce, reducer.finish = timed_all_reduce, timed_finish
    try:
        for _ in range(rounds):
            starts.append([])
            comm.Barrier()
            step()
    finally:
        del group.all_reduce, reducer.finish
    n = len(reducer.buckets)
    per_bucket = [[(s[k] - e) * 1e3 for s, e in zip(starts, ends)] for k in range(n)]
    # perf_counter is the machine's monotonic clock (Linux), the same in both processes: the last rank to
    # end backward tells how much of the wait was for the slower rank rather than for communication
    last = [max(e) for e in zip(*comm.allgather(ends))]
    return {"width": width, "batch": batch, "cap_mb": cap_mb, "buckets": n, "times": t,
            "ratio": [d / c for d, c in zip(t["ddp"], t["compute"])], "starts_ms": per_bucket,
            "after_ms": [(d - e) * 1e3 for d, e in zip(done, ends)],
            "after_last_ms": [(d - e) * 1e3 for d, e in zip(done, last)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--tag", default="", help="appended to the result file's name")
    ap.add_argument("--note", default="", help="a line about the machine's state, written under the title")
    args = ap.parse_args()
    dist.init_process_group("mpi")
    comm, MPI = dist.group().comm, dist.group().MPI
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    rows = [bandwidth(w, cap, args.rounds, comm, MPI) for w, cap in ((256, 25), (1024, 25), (1024, 1), (2048, 25),
                                                                      (2048, 4))]
    steps = [overlap(w, b, cap, args.rounds, comm) for w, b, cap in ((1024, 64, 25), (1024, 64, 1),
                                                                      (2048, 64, 4))]
    if dist.get_rank() != 0:
        return
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    library = MPI.Get_library_version().splitlines()[0].strip()
    progress = os.environ.get("MPICH_ASYNC_PROGRESS", "unset")
    lines = [f"# DDP on the CPU, {dist.get_world_size()} ranks over MPI ({library})", "",
             f"{now}, `bench/dist_allreduce.py --rounds {args.rounds}`, OMP_NUM_THREADS="
             f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, MPICH_ASYNC_PROGRESS={progress}, {os.cpu_count()} "
             f"cores, load average at the start {' '.join(f'{x:.2f}' for x in load) if load else '?'}. "
             f"{args.note}", "",
             "Times: median [interquartile range] over the rounds, rank 0's clock. Ratios raw/tinylazy: taken "
             "per round, then the median [IQR]; >= 100% means tinylazy was at least as fast.", "",
             "## Averaging an MLP's float32 gradients (784-W-W-10) after backward", "",
             "| W | cap | buckets | MB | tinylazy, fresh grads | tinylazy, grads in bucket | raw SUM only | "
             "raw AVG, fresh | raw AVG, in bucket | raw AVG/tinylazy fresh | raw AVG/tinylazy in bucket | "
             "raw SUM/tinylazy fresh | raw SUM/tinylazy in bucket | raw AVG, fresh, Iallreduce+Waitall | "
             "that/tinylazy fresh |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        t, q = r["times"], r["ratio"]
        ms = [spread(t[k], 1e3) + " ms" for k in ("ours fresh", "ours in bucket", "raw sum", "raw avg fresh",
                                                   "raw avg in bucket")]
        pc = [spread(q[k], 100, "{:.0f}") + "%" for k in ("avg/fresh", "avg/in", "sum/fresh", "sum/in")]
        nb = [spread(t["raw avg fresh nb"], 1e3) + " ms", spread(q["nb/fresh"], 100, "{:.0f}") + "%"]
        lines.append(f"| {r['width']} | {r['cap_mb']} MiB | {r['buckets']} | {r['MB']:.2f} | "
                     + " | ".join(ms + pc + nb) + " |")
    lines += ["", "Bandwidth (gradient bytes / median time), GB/s: " + "; ".join(
        f"W={r['width']}/{r['cap_mb']} MiB: tinylazy fresh {gbps(r, 'ours fresh'):.2f}, raw AVG fresh "
        f"{gbps(r, 'raw avg fresh'):.2f}, raw SUM {gbps(r, 'raw sum'):.2f}" for r in rows) + ".", "",
              "## A training step (batch 64 per rank, SGD): DDP vs the same step under no_sync() (compute alone)",
              "", "| W | cap | buckets | DDP step | compute alone | DDP/compute (per round) | bucket starts, ms "
              "from backward's end (median per bucket, in start order) | from backward's end to grads averaged | "
              "from the last rank's backward end to grads averaged |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in steps:
        starts = ", ".join(f"{statistics.median(v):+.1f}" for v in s["starts_ms"])
        lines.append(f"| {s['width']} | {s['cap_mb']} MiB | {s['buckets']} | {spread(s['times']['ddp'], 1e3)} ms | "
                     f"{spread(s['times']['compute'], 1e3)} ms | {spread(s['ratio'], 100, '{:.0f}')}% | {starts} | "
                     f"{spread(s['after_ms'])} ms | {spread(s['after_last_ms'])} ms |")
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"dist-cpu-{now[:10]}{args.tag}.md")
    with open(path, "w") as f:
        f.write(text)
    print(f"written to {path}")


if __name__ == "__main__":
    main()
