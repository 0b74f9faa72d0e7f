"""Instructions per MLP train step, tinylazy vs hand-written NumPy, counted by valgrind: a figure with no noise.

    python bench/count_instructions.py                 # batch 32, both implementations (~2 minutes)
    python bench/count_instructions.py --batch 256 --part fwd
    python bench/count_instructions.py --by-function  # + where the difference goes, by C function (callgrind)
    python bench/count_instructions.py --cold         # + simulated cache misses, each step on cold caches
    python bench/count_instructions.py --workload chain20   # the 20-op chain on 4x4 + backward (per-op cost)

On a shared machine, timings of a few hundred microseconds move by 10-20% from run to run; instruction
counts do not. This runs the step under `valgrind --tool=cachegrind` for 11 and for 51 steps (one thread,
address-space randomization off, a fixed hash seed) and reports the difference / 40: the instructions of one
steady-state step, import and warm-up excluded. The gap between tinylazy and NumPy is the framework's own
work (interpreter and bookkeeping); in the interleaved timings of compare.py each such instruction costs
more than BLAS's, because the interpreter runs with cold caches there. `--part` counts a prefix of the step:
fwd (the model), loss (+ cross-entropy; NumPy's includes its gradient), bwd (+ backward), full (+ SGD).
`--by-function` runs the same four programs under callgrind and prints the functions whose instructions per
step differ most (interpreter, attribute lookup, allocation, NumPy's loops): it tells interpreter work from
arithmetic, which no Python profiler can. `--cold` models compare.py's regime, where every step follows
another implementation's and large BLAS calls evict the caches mid-step: each step starts after a 4 MiB
write, and cachegrind simulates caches like this machine's (L1 32 KiB, L2 1 MiB as the last level); it reports
the misses per step as well (the write itself is counted alike in both implementations). `--workload chain20`
counts bench_chain.py's step instead (20 elementwise ops on 4x4 and their backward; NumPy's is the forward
and the chain rule written by hand): the engine's per-op cost, with no arithmetic to speak of; `--part fwd`
counts its forward alone (with grad recorded). A last-level miss
costs the time of dozens of instructions, so on cold caches what counts is how much distinct code and data a
step touches, not only how many instructions it runs. Needs valgrind (and setarch); it is a development
tool, not part of the test suite.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run_steps(impl, batch, steps, part, cold=False, workload="mlp"):
    """The measured program: build the MLP, then run `steps` steps of `impl` (everything before is the same
    for both counts, so it cancels out)."""
    sys.path[:0] = [HERE, os.path.dirname(HERE)]
    if workload == "chain20":
        return run_chain_steps(impl, steps, part)
    import numpy as np
    import np_ref
    import tinylazy as tl
    import tinylazy.nn.functional as F
    from tinylazy import nn, optim
    try:
        from tinylazy._malloc import tune_from_env        # needed by revisions from issue 18 to session 7;
        tune_from_env()                                     # later ones tune at their first optimizer anyway
    except ImportError:                                     # an older tinylazy tunes on import
        pass
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((batch, 784)).astype(np.float32), rng.integers(0, 10, batch)
    net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    if impl == "numpy":
        ref = np_ref.MLP([p.array.copy() for p in net.parameters()], 0.05)
        W1, b1, W2, b2 = ref.params

        def forward():
            h = x @ W1.T
            h += b1
            np.maximum(h, 0, out=h)
            z = h @ W2.T
            z += b2
            return z
        step = {"fwd": forward, "loss": lambda: np_ref.xent_forward_backward(forward(), y),
                "bwd": lambda: ref.loss_and_grads(x, y), "full": lambda: ref.step(x, y)}[part]
    else:
        opt = optim.SGD(net.parameters(), lr=0.05)
        X, Y = tl.from_numpy(x), tl.from_numpy(y)

        def step():
            out = net(X)
            if part == "fwd":
                return
            loss = F.cross_entropy(out, Y)
            if part == "loss":
                return
            opt.zero_grad()
            loss.backward()
            if part == "full":
                opt.step()
    evict = np.zeros(1 << 20, np.float32) if cold else None   # 4 MiB: more than the simulated last level
    for _ in range(steps):
        if cold:
            evict += 1
        step()


def run_chain_steps(impl, steps, part):
    """run_steps for bench_chain.py's 20-op chain: `part` is fwd (forward, recording the graph) or full."""
    import bench_chain as bc
    if part not in ("fwd", "full"):
        sys.exit(f"count_instructions: --workload chain20 counts --part fwd or full, not {part}")
    if impl == "numpy":
        step = bc.numpy_step if part == "full" else lambda: bc.numpy_step(forward_only=True)
    else:
        step = bc.tinylazy_step if part == "full" else lambda: bc.chain(bc.tl.tensor(bc.X, requires_grad=True))
    for _ in range(steps):
        step()


CACHES = ["--I1=32768,8,64", "--D1=32768,8,64", "--LL=1048576,16,64"]     # this machine's L1i, L1d and L2
MISSES = {"I1 misses": r"I1\s+misses:\s+([\d,]+)", "D1 misses": r"D1\s+misses:\s+([\d,]+)",
          "LL misses": r"LL misses:\s+([\d,]+)"}


def _valgrind(tool_args, impl, batch, steps, part, cold=False, workload="mlp"):
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = ["valgrind", *tool_args, sys.executable, os.path.abspath(__file__), "--inner", impl, str(batch),
           str(steps), part, workload] + (["--cold"] if cold else [])
    if shutil.which("setarch"):
        cmd = ["setarch", os.uname().machine, "-R"] + cmd
    return subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr


def count(impl, batch, steps, part, cold=False, workload="mlp"):
    """{"instructions": n} for `steps` steps; with `cold`, also the simulated misses of each cache level."""
    sim = ["--cache-sim=yes", *CACHES] if cold else ["--cache-sim=no"]
    out = _valgrind(["--tool=cachegrind", *sim, "--cachegrind-out-file=/dev/null"], impl, batch, steps, part, cold,
                    workload)
    patterns = {"instructions": r"I\s+refs:\s+([\d,]+)", **(MISSES if cold else {})}
    return {k: int(re.search(pat, out).group(1).replace(",", "")) for k, pat in patterns.items()}


def count_by_function(impl, batch, steps, part, workload="mlp"):
    """{C function: instructions spent in it (self cost)} for `steps` steps, from callgrind."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "callgrind.out")
        _valgrind(["--tool=callgrind", f"--callgrind-out-file={path}"], impl, batch, steps, part, workload=workload)
        report = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True,
                                text=True, check=True).stdout
    costs = {}
    for line in report.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            name = m.group(2).split(" [")[0]
            name = name.rsplit("/", 1)[-1]           # file:function, without the build directory
            costs[name] = costs.get(name, 0) + int(m.group(1).replace(",", ""))
    return costs


def by_function(batch, part, top=25, workload="mlp"):
    """Print the C functions whose instructions per step differ most between tinylazy and NumPy."""
    per_step = {}
    for impl in ("numpy", "tinylazy"):
        a = count_by_function(impl, batch, 11, part, workload)
        b = count_by_function(impl, batch, 51, part, workload)
        per_step[impl] = {k: (b.get(k, 0) - a.get(k, 0)) / 40 for k in set(a) | set(b)}
    np_, tl_ = per_step["numpy"], per_step["tinylazy"]
    rows = sorted(((tl_.get(k, 0) - np_.get(k, 0), k) for k in set(np_) | set(tl_)), reverse=True)
    print(f"\nper step, by C function (self instructions; tinylazy - numpy, tinylazy, numpy), top {top}:")
    for diff, name in rows[:top]:
        print(f"{diff:>10,.0f} {tl_.get(name, 0):>12,.0f} {np_.get(name, 0):>12,.0f}  {name[:90]}")
    print("where NumPy spends more (e.g. its SGD subtracts where tinylazy adds a negative step):")
    for diff, name in rows[:-6:-1]:
        print(f"{diff:>10,.0f} {tl_.get(name, 0):>12,.0f} {np_.get(name, 0):>12,.0f}  {name[:90]}")


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--inner":
        impl, batch, steps, part, workload = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), *sys.argv[5:7]
        return run_steps(impl, batch, steps, part, cold="--cold" in sys.argv, workload=workload)
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", default="mlp", choices=("mlp", "chain20"),
                    help="the MLP train step (default), or bench_chain.py's 20-op chain + backward")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--part", default="full", choices=("fwd", "loss", "bwd", "full"))
    ap.add_argument("--by-function", action="store_true", help="also attribute the difference to C functions")
    ap.add_argument("--cold", action="store_true", help="each step on cold caches; also count simulated misses")
    args = ap.parse_args(argv)
    if not shutil.which("valgrind"):
        sys.exit("count_instructions: valgrind is not installed")
    per_step = {}
    for impl in ("numpy", "tinylazy"):
        many = count(impl, args.batch, 51, args.part, args.cold, args.workload)
        few = count(impl, args.batch, 11, args.part, args.cold, args.workload)
        per_step[impl] = {k: (many[k] - few[k]) // 40 for k in many}
        what = f"batch {args.batch}" if args.workload == "mlp" else args.workload
        print(f"{impl:9s} " + ", ".join(f"{v:>10,} {k}" for k, v in per_step[impl].items())
              + f" per step ({args.part}, {what}{', cold caches' if args.cold else ''})")
    for k, v in per_step["numpy"].items():
        extra = per_step["tinylazy"][k] - v
        print(f"tinylazy - numpy: {extra:>+10,} {k} ({extra / max(v, 1):+.1%})")
    if args.by_function:
        if not shutil.which("callgrind_annotate"):
            sys.exit("count_instructions: --by-function needs callgrind_annotate (valgrind's)")
        by_function(args.batch, args.part, workload=args.workload)


if __name__ == "__main__":
    sys.exit(main())
