"""The scenario registry, checks, cross-rank helpers and the per-rank report.

Each scenario runs on every rank and reports one JSON line per rank (name, rank, ok|fail, detail) into
$TINYLAZY_DIST_RESULTS/rank-R.jsonl (or on stdout); test_distributed.py launches the job, reads the lines
and asserts that every rank said ok. A scenario that fails is caught and reported so the others still run.
"""
import json
import os
import sys
import time
import traceback

import numpy as np

import tinylazy as tl
import tinylazy.distributed as dist

SCENARIOS = {}
ON_PURPOSE = ("abort_forward", "timeout")           # they end the whole job: only run when named


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


def same_on_all_ranks(flat, what):
    out = [tl.zeros(flat.size, dtype=flat.dtype) for _ in range(dist.get_world_size())]
    dist.all_gather(out, tl.tensor(flat))
    for r, t in enumerate(out):
        check(np.array_equal(t.array, flat), f"{what}: rank {r}'s values differ from rank {dist.get_rank()}'s")


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

