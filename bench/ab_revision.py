"""Does a change make the MLP train step faster where compare.py measures it? Working tree vs a git revision.

    python bench/ab_revision.py                      # working tree vs HEAD, batch 256, 2 threads, 1,500 rounds
    python bench/ab_revision.py --rev HEAD~3 --batch 32 --threads 1 --rounds 1000

compare.py times each implementation right after another one (rounds shuffled), so tinylazy's step always
starts after a NumPy or a torch step has used the caches. Timing two versions of tinylazy one right after
the other would let each find the other's code and data in the caches, so this script keeps compare.py's
regime: every round runs both versions, each right after a NumPy or a torch step (the round is
[filler, version, filler, version], the fillers and the versions each in a shuffled order). Both versions
see the same moments of a shared machine, which matters more than the number of rounds: with the versions
in alternate rounds (this script's first design), two copies of the same code differed by 1.5% in 600
rounds; run as now, by 0.1-0.7% in 1,500 (five runs; the working tree's copy was the slower in four: the two
packages' objects sit at different addresses). It prints medians and ratios. Trust a difference of 1% or
more; for smaller changes count instructions (and cold-cache misses) with count_instructions.py.

The revision's `tinylazy/` is extracted (git archive) into a temporary folder as package `tinylazy_base`
(the package imports itself only relatively, so both load side by side). Both versions must agree on the
loss of the first step before anything is timed.
"""
import argparse
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from compare import W      # first: compare.py sets the BLAS/OpenMP environment before NumPy loads
import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_revision(rev, folder):
    """The package `tinylazy/` as it was at `rev`, imported as `tinylazy_base`."""
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "tinylazy"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "tinylazy"), os.path.join(folder, "tinylazy_base"))
    sys.path.insert(0, folder)
    return importlib.import_module("tinylazy_base")


def mlp_step(pkg, x, y):
    """workloads.py's tinylazy MLP train step, built from package `pkg` (either version of tinylazy)."""
    net = W.tl_mlp(pkg)
    W.load_into(net.parameters(), W.mlp_params())
    return W._tl_train_step(net, x, y, pkg)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rev", default="HEAD", help="the git revision to compare the working tree with")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1500)
    args = ap.parse_args()
    if W.torch is None:
        raise SystemExit("ab_revision.py needs torch (the third case of every round)")
    from threadpoolctl import threadpool_limits
    threadpool_limits(args.threads)                      # after NumPy's import, so that OpenBLAS is seen
    W.torch.set_num_threads(args.threads)
    import tinylazy
    with tempfile.TemporaryDirectory() as folder:
        base = load_revision(args.rev, folder)
        if base.Tensor is tinylazy.Tensor or base.nn.Linear is tinylazy.nn.Linear:
            raise SystemExit("tinylazy_base resolved to the working tree's modules (an absolute self-import?)")
        x, y = W.batch((args.batch, 784))
        cases = W.mlp_step(args.batch)
        runs = {"working tree": mlp_step(tinylazy, x, y), args.rev: mlp_step(base, x, y),
                "numpy": cases["numpy"].run, "torch": cases["torch"].run}
        first = [W.as_float(runs[k]()) for k in ("working tree", args.rev)]
        if not np.isclose(first[0], first[1], rtol=1e-5):
            raise SystemExit(f"the two versions disagree on the first loss: {first}")
        for run in runs.values():                        # warm-up
            for _ in range(10):
                run()
        versions = ["working tree", args.rev]
        times = {name: [] for name in runs}
        rng = random.Random(0)
        for _ in range(args.rounds):
            fillers, pair = ["numpy", "torch"], list(versions)
            rng.shuffle(fillers)
            rng.shuffle(pair)
            for name in (fillers[0], pair[0], fillers[1], pair[1]):
                t0 = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"MLP step, batch {args.batch}, {args.threads} thread(s), {args.rounds} rounds (both versions in "
          f"each); medians:")
    for name, m in med.items():
        ratio = f"   {m / med['numpy']:.3f}x numpy" if name in versions else ""
        print(f"  {name:>14}: {m * 1e3:7.3f} ms{ratio}")
    print(f"  working tree / {args.rev}: {med['working tree'] / med[args.rev]:.3f}")


if __name__ == "__main__":
    main()
