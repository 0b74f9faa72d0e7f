"""Where the LeNet training step spends its time, and whether a change to conv/pool/batch norm pays. A diagnostic
(see shared/design/BENCHMARKING.md): the headline numbers come from the user-regime harness, not from here.

The model is the demo's LeNet with batch norm (Conv-BN-ReLU-MaxPool twice, then Linear-BN-ReLU twice and a
Linear), batch 64, SGD with momentum 0.9, one fixed batch -- built the same way in tinylazy and in PyTorch.

    python bench/profile_lenet.py ops                 # per Function: tinylazy's forward/backward µs per step
    python bench/profile_lenet.py layers              # conv/pool/batch-norm layers alone, tinylazy vs torch
    python bench/profile_lenet.py ab --rev HEAD       # the whole step: working tree vs a git revision
    python bench/profile_lenet.py ab --model plain    # d2l's LeNet without batch norm (workloads.py's)

`ab` runs both versions of tinylazy (and PyTorch) in one process, one step each in turn, in a shuffled order
every round, and prints the median over rounds of the per-round ratio with its quartiles. Both versions see the
same moments of a loaded machine, so the ratio holds where absolute times do not. Times are CPU time of this
thread (`time.thread_time`, which a process waiting for a core does not accumulate) with one BLAS/OpenMP
thread, unless --threads and --clock say otherwise; wall time with more threads than free cores measures the
machine, not the code.
"""
import argparse
import collections
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits          # imported after NumPy, so that OpenBLAS is seen

import workloads as W

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLOCKS = {"cpu": time.thread_time, "wall": time.perf_counter}


def lenet_bn(nn):
    """The demo's LeNet with batch norm, from `nn` = tinylazy.nn (either version) or torch.nn."""
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2, 2),
        nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2, 2), nn.Flatten(),
        nn.Linear(400, 120), nn.BatchNorm1d(120), nn.ReLU(),
        nn.Linear(120, 84), nn.BatchNorm1d(84), nn.ReLU(), nn.Linear(84, 10))


def init_arrays(net):
    """Fixed starting values for every parameter, the same for each implementation: weights
    U(-1/sqrt(fan_in), 1/sqrt(fan_in)), vectors (biases, batch-norm scales and shifts) U(0.9, 1.1)."""
    rng = np.random.default_rng(0)
    arrays = []
    for p in net.parameters():
        shape = tuple(p.shape)
        bound = 1 / np.sqrt(np.prod(shape[1:])) if len(shape) > 1 else None
        arrays.append((rng.uniform(-bound, bound, shape) if bound else rng.uniform(0.9, 1.1, shape)).astype(np.float32))
    return arrays


def _train_step(lib, net, x, y):
    """A closure running one step: cross-entropy, zero_grad, backward, SGD(momentum=0.9) (tinylazy or torch),
    built by workloads.py's step builders from the same initial weights."""
    W.load_into(net.parameters(), init_arrays(net))
    sgd = {"lr": W.LR, "momentum": 0.9}
    return W._torch_train_step(net, x, y, sgd) if lib is W.torch else W._tl_train_step(net, x, y, lib, sgd)


MODELS = {"bn": lenet_bn, "plain": W.lenet_layers}      # plain: d2l's LeNet without batch norm (workloads.py)
MODEL = ["bn"]                                            # set by --model


def tl_step(pkg, x, y):
    """One training step of the model in tinylazy package `pkg` (either version of tinylazy)."""
    return _train_step(pkg, MODELS[MODEL[0]](pkg.nn), x, y)


def torch_step(x, y):
    return _train_step(W.torch, MODELS[MODEL[0]](W.torch.nn), x, y)


def load_revision(rev, folder):
    """The package `tinylazy/` as it was at `rev`, imported as `tinylazy_base` (as ab_revision.py does)."""
    import importlib
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "tinylazy"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", folder], input=archive, check=True)
    os.rename(os.path.join(folder, "tinylazy"), os.path.join(folder, "tinylazy_base"))
    sys.path.insert(0, folder)
    return importlib.import_module("tinylazy_base")


def quartiles(values):
    q = statistics.quantiles(values, n=4)
    return q[0], statistics.median(values), q[2]


# --- ab: the whole step, two versions side by side ---------------------------------------------------
def ab(args, clock):
    import tinylazy
    x, y = W.batch((args.batch, 1, 28, 28))
    with tempfile.TemporaryDirectory() as folder:
        base = load_revision(args.rev, folder)
        if base.nn.Conv2d is tinylazy.nn.Conv2d:
            raise SystemExit("tinylazy_base resolved to the working tree's modules")
        runs = {"new": tl_step(tinylazy, x, y), "old": tl_step(base, x, y)}
        if W.torch is not None:
            runs["torch"] = torch_step(x, y)
        first = {k: W.as_float(run()) for k, run in runs.items()}
        if not np.isclose(first["new"], first["old"], rtol=1e-4):
            raise SystemExit(f"the two versions disagree on the first loss: {first}")
        for run in runs.values():
            for _ in range(args.warmup):
                run()
        times = {k: [] for k in runs}
        rng = random.Random(0)
        names = list(runs)
        for r in range(args.rounds):
            if r and r % args.reset == 0:               # a fresh model now and then: a memorized batch
                runs = {"new": tl_step(tinylazy, x, y), "old": tl_step(base, x, y),     # has tiny gradients
                        **({"torch": torch_step(x, y)} if "torch" in runs else {})}
            rng.shuffle(names)
            for name in names:
                t0 = clock()
                runs[name]()
                times[name].append(clock() - t0)
    ratios = [n / o for n, o in zip(times["new"], times["old"])]
    print(f"LeNet ({args.model}) step, batch {args.batch}, SGD momentum; {args.threads} thread(s), clock={args.clock}, "
          f"{args.rounds} rounds (each runs every version once, shuffled); median [quartiles]:")
    for name, t in times.items():
        lo, med, hi = quartiles(t)
        print(f"  {name:>6}: {med * 1e3:7.3f} ms  [{lo * 1e3:.3f}, {hi * 1e3:.3f}]")
    lo, med, hi = quartiles(ratios)
    print(f"  new / old ({args.rev}), per round: {med:.3f}  [{lo:.3f}, {hi:.3f}]")
    if "torch" in times:
        for name in ("old", "new"):
            lo, med, hi = quartiles([a / b for a, b in zip(times[name], times["torch"])])
            print(f"  {name} / torch, per round: {med:.3f}  [{lo:.3f}, {hi:.3f}]")


# --- ops: tinylazy's step by Function ----------------------------------------------------------------
def ops(args, clock):
    import tinylazy
    from tinylazy.autograd import Function
    spent = collections.Counter()

    def timed(cls, name, kind):
        original = cls.__dict__[kind]

        def wrapper(self, *a, **k):
            t0 = clock()
            out = original(self, *a, **k)
            spent[f"{name}.{kind}"] += clock() - t0
            return out
        setattr(cls, kind, wrapper)

    def subclasses(c):
        for s in c.__subclasses__():
            yield s
            yield from subclasses(s)
    for cls in list(subclasses(Function)):
        for kind in ("forward", "backward"):
            if kind in cls.__dict__:
                timed(cls, cls.__name__, kind)
    x, y = W.batch((args.batch, 1, 28, 28))
    step = tl_step(tinylazy, x, y)
    for _ in range(args.warmup):
        step()
    spent.clear()
    t0 = clock()
    for _ in range(args.rounds):
        step()
    total = (clock() - t0) / args.rounds
    print(f"tinylazy LeNet ({args.model}) step, batch {args.batch}: {total * 1e6:,.0f} µs per step "
          f"({args.clock} clock, {args.threads} thread(s)), by Function:")
    for name, t in spent.most_common():
        print(f"  {t / args.rounds * 1e6:8,.0f} µs {100 * t / args.rounds / total:5.1f}%  {name}")
    rest = total - sum(spent.values()) / args.rounds
    print(f"  {rest * 1e6:8,.0f} µs {100 * rest / total:5.1f}%  outside Function.forward/backward")


# --- layers: the conv/pool/BN layers alone, tinylazy vs torch ------------------------------------------
def layers(args, clock):
    import tinylazy as tl
    import tinylazy.nn.functional as F
    torch = W.torch
    tF = torch.nn.functional
    rng = np.random.default_rng(0)
    n = args.batch

    def batch_last(a):                  # the memory layout conv2d hands to the layers after it
        return np.ascontiguousarray(a.transpose(1, 2, 3, 0)).transpose(3, 0, 1, 2)

    def median_time(f):
        f()
        ts = []
        for _ in range(args.rounds):
            t0 = clock()
            f()
            ts.append(clock() - t0)
        return statistics.median(ts)

    def row(name, tl_fn, torch_fn, shape, x_grad=True, relu=False):
        a = rng.standard_normal(shape).astype(np.float32)
        if relu:
            a = np.maximum(a, 0)        # ReLU's zeros: ties in max pooling
        X = tl.tensor(batch_last(a), requires_grad=x_grad)
        Xt = torch.from_numpy(a).requires_grad_(x_grad)
        y, yt = tl_fn(X), torch_fn(Xt)
        ga = np.empty_like(y.array)                 # the output's memory layout, as in the step
        ga[...] = rng.standard_normal(y.shape)
        g, gt = tl.tensor(ga), torch.from_numpy(np.ascontiguousarray(ga))
        fwd = median_time(lambda: tl_fn(X)), median_time(lambda: torch_fn(Xt))
        both = median_time(lambda: tl_fn(X).backward(g)), median_time(lambda: torch_fn(Xt).backward(gt))
        bwd = both[0] - fwd[0], both[1] - fwd[1]
        print(f"  {name:<34} fwd {fwd[0] * 1e6:7,.0f} / {fwd[1] * 1e6:7,.0f} = {fwd[0] / fwd[1]:5.2f}x   "
              f"bwd {bwd[0] * 1e6:7,.0f} / {bwd[1] * 1e6:7,.0f} = {bwd[0] / bwd[1]:5.2f}x")

    def conv(c, o, pad):
        w = rng.standard_normal((o, c, 5, 5)).astype(np.float32) * 0.1
        b = np.zeros(o, np.float32)
        W_, B_ = tl.tensor(w, requires_grad=True), tl.tensor(b, requires_grad=True)
        Wt, Bt = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
        return (lambda X: F.conv2d(X, W_, B_, padding=pad)), (lambda X: tF.conv2d(X, Wt, Bt, padding=pad))

    def bn(c):
        m, mt = tl.nn.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
        return m, mt
    print(f"layers of LeNet-BN, batch {n}: tinylazy / torch µs ({args.clock} clock, {args.threads} thread(s); "
          "backward = forward+backward minus forward)")
    row("conv1 1->6 5x5 pad 2 (no input grad)", *conv(1, 6, 2), (n, 1, 28, 28), x_grad=False)
    row("conv2 6->16 5x5", *conv(6, 16, 0), (n, 6, 14, 14))
    row("batch_norm2d 6 @ 28x28", *bn(6), (n, 6, 28, 28))
    row("batch_norm2d 16 @ 10x10", *bn(16), (n, 16, 10, 10))
    row("max_pool2d 2x2 @ 6x28x28", lambda X: F.max_pool2d(X, 2, 2), lambda X: tF.max_pool2d(X, 2, 2),
        (n, 6, 28, 28), relu=True)
    row("max_pool2d 2x2 @ 16x10x10", lambda X: F.max_pool2d(X, 2, 2), lambda X: tF.max_pool2d(X, 2, 2),
        (n, 16, 10, 10), relu=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("mode", choices=("ab", "ops", "layers"))
    ap.add_argument("--rev", default="HEAD", help="ab: the git revision to compare the working tree with")
    ap.add_argument("--model", choices=sorted(MODELS), default="bn", help="bn (the demo's) or plain (no batch norm)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=sorted(CLOCKS), default="cpu")
    ap.add_argument("--rounds", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--reset", type=int, default=50, help="ab: fresh models every this many rounds")
    args = ap.parse_args(argv)
    MODEL[0] = args.model
    threadpool_limits(args.threads)
    if W.torch is not None:
        W.torch.set_num_threads(args.threads)
    {"ab": ab, "ops": ops, "layers": layers}[args.mode](args, CLOCKS[args.clock])


if __name__ == "__main__":
    sys.exit(main())
