"""Where tinylazy spends a step: cProfile over the tinylazy case of a workload, top functions by own time.

    python bench/profile_steps.py                    # mlp-b32, mlp-b256, chain20, lenet-b64
    python bench/profile_steps.py mlp-b256 --calls 300 --top 25 --threads 1

Times are per step (total own time / calls), in µs. cProfile adds a fixed cost to every Python call, so
Python-heavy functions look somewhat dearer than they are; compare rows with each other, and check a
suggestion by timing the step with and without it in the user regime (ab_revision.py).
"""
import argparse
import cProfile
import os
import pstats
import sys
import time

from threadpoolctl import threadpool_limits

import workloads as W

BUILDERS = {"mlp-b1": lambda: W.mlp_step(1), "mlp-b32": lambda: W.mlp_step(32),
            "mlp-b256": lambda: W.mlp_step(256), "mlp-b1024": lambda: W.mlp_step(1024),
            "chain20": W.chain20, "lenet-b64": lambda: W.lenet_step(64), "lenet-b256": lambda: W.lenet_step(256),
            "adam-100": lambda: W.adam_step()[0], "dataloader-b64": W.dataloader_epoch}


def short(path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.relpath(path, root) if path.startswith(root) else os.path.basename(path)


def profile(name, calls, top, impl="tinylazy"):
    case = BUILDERS[name]()[impl]
    for _ in range(max(5, calls // 10)):
        case()
    t0 = time.perf_counter()
    for _ in range(calls):
        case()
    plain = (time.perf_counter() - t0) / calls
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(calls):
        case()
    prof.disable()
    stats = pstats.Stats(prof)
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in stats.stats.items():
        rows.append((tt / calls, ct / calls, nc / calls, f"{short(file)}:{line}({func})"))
    rows.sort(reverse=True)
    total = sum(r[0] for r in rows)
    print(f"\n## {name} ({impl}): {plain * 1e6:,.0f} µs per step unprofiled, {total * 1e6:,.0f} µs profiled")
    print(f"{'own µs':>9} {'cum µs':>9} {'calls':>7}  function")
    for tt, ct, nc, where in rows[:top]:
        print(f"{tt * 1e6:9.1f} {ct * 1e6:9.1f} {nc:7.1f}  {where}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workloads", nargs="*", default=["mlp-b32", "mlp-b256", "chain20", "lenet-b64"])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--top", type=int, default=18)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: less noise)")
    ap.add_argument("--impl", default="tinylazy", help="tinylazy, numpy or torch")
    args = ap.parse_args(argv)
    threadpool_limits(args.threads)
    if W.torch is not None:
        W.torch.set_num_threads(args.threads)
    for name in args.workloads:
        calls = args.calls if not name.startswith("lenet") else max(20, args.calls // 10)
        profile(name, calls, args.top, args.impl)


if __name__ == "__main__":
    sys.exit(main())
