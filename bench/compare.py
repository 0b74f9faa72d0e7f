"""DIAGNOSTIC: tinylazy vs hand-written NumPy vs PyTorch CPU interleaved step by step in one process.

Not the headline regime. The headline table is user_regime.py's: each implementation's loop in its own
process with its libraries' defaults. This script interleaves single steps of the three libraries in one
process and sets OMP_WAIT_POLICY=PASSIVE (torch's threads then sleep between calls and wake slowly, which
is not how PyTorch runs for its users), so each step starts on caches another library left: useful for
finding where time goes (which phase, which cache effects), misleading as a verdict. Its table is labelled
"interleaved (diagnostic)" and written to bench/results/interleaved-<date>.md.

    python bench/compare.py                   # every workload at 2 then 1 threads, ~4-5 minutes on 2 cores
    python bench/compare.py --quick           # fewer rounds (a smoke run, ~1-2 minutes; writes nothing)
    python bench/compare.py --only mlp lenet  # workloads whose name contains one of these words
    python bench/compare.py --threads 2       # thread counts, the same for NumPy's BLAS and torch
    python bench/compare.py --only mlp-b256 --repeat 7   # 7 independent timings; the table shows their median

Environment, set in this process only, before NumPy and torch load (the result file records what was
found and what was used; `--keep-env` changes nothing):
- OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE are removed, both together (some machines set them for old
  OpenBLAS builds; they slow a current NumPy): OpenBLAS then picks its kernel itself, and the kernel it
  picked is recorded (threadpoolctl). The same as `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`.
- OMP_WAIT_POLICY=PASSIVE (torch's OpenMP pool) and OPENBLAS_THREAD_TIMEOUT=4 (NumPy's OpenBLAS pool), unless
  already set: with more than one thread, each library's idle workers otherwise spin for a while after every
  call (OpenBLAS's default is 2^28 cycles, ~0.1 s), and in an interleaved run those spinning threads steal
  the cores from whichever library runs next. Measured here at batch 32, 2 threads: tinylazy 3.7 ms, NumPy
  1.0 ms, torch 3.4 ms with the defaults; 1.8 / 1.0 / 2.5 ms with both set (1-thread runs are unaffected).

How it measures. Every workload is built three ways from the same weights and data (workloads.py), and checked
first: the implementations must agree (loss, gradients, updated weights, shapes, batches) or the script stops.
Then, after a warm-up, the implementations run *interleaved*, in a new order each round (a seeded shuffle),
so a slow spell of a shared machine hits all of them alike, and each one follows each other one about
equally often (never itself): a sample starts with the caches the previous implementation left, and a torch
step leaves them colder than a NumPy step. (A fixed rotation, a b c / b c a / c a b, does not balance that: it
put tinylazy after torch in two rounds of three, and measured in one run, batch-256 MLP, 2 threads, it gave
tinylazy/numpy 1.295 where shuffled rounds gave 1.220.) Each sample times `inner` back-to-back calls
(enough to take about a millisecond), and the table reports the median time per
call over all rounds, with the ratios tinylazy/torch and tinylazy/numpy of those medians. First-forward cases
build a fresh lazy model before each call, untimed. On a shared machine one timing of a few milliseconds moves
by a few hundredths of a ratio from run to run (the batch-256 MLP's tinylazy/numpy: 1.13x to 1.24x in 22
timings of the same code), so a target close to its limit needs `--repeat N`: N independent timings of each
workload (each with its own warm-up and rounds), the table showing the median over them of each
implementation's median and the notes each timing's ratios.

The table, with the machine (CPU, cores, load), versions, BLAS (threadpoolctl), thread counts and the
OpenBLAS variables, is printed and written to bench/results/interleaved-<date>.md.
"""
import argparse
import datetime
import gc
import os
import platform
import random
import statistics
import sys
import time

FOUND_ENV = {k: os.environ.get(k) for k in
             ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
if "--keep-env" not in sys.argv:                 # before NumPy and torch read them (see the docstring)
    os.environ.pop("OPENBLAS_CORETYPE", None)
    os.environ.pop("OPENBLAS_L2_SIZE", None)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")

import numpy as np  # noqa: E402

import workloads as W  # noqa: E402
from harness import fmt_time  # noqa: E402,F401  (one formatter for both tables)

HERE = os.path.dirname(os.path.abspath(__file__))
TARGETS = {"mlp-b256": ("<= 1.0", "<= 1.15"), "mlp-b32": ("<= 1.0", None), "chain20-4x4": ("<= 0.8", None),
           "lenet-b64": ("<= 1.5", None), "adam-100": ("<= 1.0", None)}


# --- what to run ------------------------------------------------------------------------------------
def workload_table():
    """(name, what it is, builder, check): builders return {impl: Case}; checks assert the impls agree."""
    rows = [("chain20-4x4", "20 elementwise ops on 4x4 + backward", W.chain20, W.check_chain20)]
    for b in (1, 32, 256, 1024):
        rows.append((f"mlp-b{b}", f"MLP 784-256-10 train step, batch {b}", lambda b=b: W.mlp_step(b),
                     lambda b=b: W.check_mlp(b)))
    for b in (64, 256):
        rows.append((f"lenet-b{b}", f"LeNet (ReLU, MaxPool) train step, batch {b}", lambda b=b: W.lenet_step(b),
                     lambda b=b: W.check_lenet(b)))
    rows.append(("adam-100", "Adam step, 100 params (50x Linear(32,32)); torch foreach=True",
                 lambda: W.adam_step(("foreach", "default"))[0], W.check_adam))
    rows.append(("dataloader-b64", "one shuffled epoch, Fashion-MNIST subset (2,000), batch 64",
                 W.dataloader_epoch, lambda: W.check_dataloader(W.dataloader_epoch())))
    rows.append(("lazy-lenet-b64", "lazy LeNet forward, batch 64", lambda: W.first_forward("lenet", 64),
                 lambda: W.check_first_forward("lenet", 64)))
    rows.append(("lazy-mlp-b32", "lazy MLP forward, batch 32", lambda: W.first_forward("mlp", 32),
                 lambda: W.check_first_forward("mlp", 32)))
    return rows


# --- timing ------------------------------------------------------------------------------------------
def round_order(names, previous, rng):
    """The next round's order: a shuffle of `names` that does not start with the case that ended `previous`
    (a case timed right after itself would find its own data in the caches)."""
    order = list(names)
    rng.shuffle(order)
    if previous and len(order) > 1 and order[0] == previous[-1]:
        order[0], order[1] = order[1], order[0]
    return order


def time_interleaved(cases, budget_s, min_rounds, max_rounds, target_sample_s=1e-3):
    """Median seconds per call of each case, the cases interleaved round by round."""
    names = list(cases)
    inner = {}
    for name in names:                                 # warm up, and size each sample
        case = cases[name]
        t_end, calls, spent = time.perf_counter() + max(0.05, budget_s / 20), 0, 0.0
        while True:
            args = case.setup() if case.setup else ()
            t0 = time.perf_counter()
            case.run(*args)
            spent += time.perf_counter() - t0
            calls += 1
            if calls >= 3 and time.perf_counter() > t_end:
                break
        per_call = spent / calls
        inner[name] = 1 if case.setup else max(1, min(1000, int(target_sample_s / max(per_call, 1e-9))))
    samples = {name: [] for name in names}
    rng, order = random.Random(0), None
    deadline = time.perf_counter() + budget_s
    rounds = 0
    while rounds < max_rounds and (rounds < min_rounds or time.perf_counter() < deadline):
        order = round_order(names, order, rng)
        for name in order:
            case, n = cases[name], inner[name]
            if case.setup:
                args = case.setup()
                t0 = time.perf_counter()
                case.run(*args)
                samples[name].append(time.perf_counter() - t0)
            else:
                run = case.run
                t0 = time.perf_counter()
                for _ in range(n):
                    run()
                samples[name].append((time.perf_counter() - t0) / n)
        rounds += 1
    return {name: statistics.median(s) for name, s in samples.items()}, rounds, inner


# --- the machine -------------------------------------------------------------------------------------
def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def blas_info():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["threadpoolctl not installed (pip install threadpoolctl, or tinylazy[bench])"]
    lines = []
    for d in threadpool_info():
        lib = os.path.basename(d.get("filepath", "?"))
        extra = f", kernel {d['architecture']}" if d.get("architecture") else ""
        lines.append(f"{d.get('internal_api')} {d.get('version')} ({lib}): {d.get('num_threads')} threads "
                     f"in the first section{extra}")
    return lines


def environment(threads):
    import tinylazy
    env = [f"- Machine: {cpu_model()}, {os.cpu_count()} logical cores "
           f"({len(os.sched_getaffinity(0))} usable), {platform.system()} {platform.release()}",
           f"- Python {platform.python_version()}, NumPy {np.__version__}, "
           + (f"torch {W.torch.__version__}" if W.torch else "torch not installed")
           + f", tinylazy {tinylazy.__version__}",
           f"- Threads: {threads} for NumPy's BLAS (threadpoolctl) and for torch "
           + (f"(torch.get_num_threads() = {W.torch.get_num_threads()}, "
              f"interop threads {W.torch.get_num_interop_threads()})" if W.torch else ""),
           "- BLAS / OpenMP (threadpoolctl): " + "; ".join(blas_info())]
    def show(keys, env_):
        return ", ".join(f"{k}={env_.get(k)!s}" if env_.get(k) is not None else f"{k} unset" for k in keys)
    blas_keys = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
    spin_keys = ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")
    env.append(f"- OpenBLAS core type: found {show(blas_keys, FOUND_ENV)}; used {show(blas_keys, os.environ)}"
               + (" (both unset in this process, so OpenBLAS chose the kernel shown above itself)"
                  if not any(os.environ.get(k) for k in blas_keys) else
                  " (overrides kept: they slow a current NumPy; rerun without --keep-env)"))
    env.append(f"- Idle-thread spinning: found {show(spin_keys, FOUND_ENV)}; used {show(spin_keys, os.environ)} "
               "(see compare.py's docstring: spinning workers of one library slow the next in an interleaved run)")
    return env


# --- output -------------------------------------------------------------------------------------------
def ratio(a, b):
    return "-" if a is None or b is None else f"{a / b:.2f}x"


def verdict(value, target):
    if target is None or value is None:
        return ""
    return " ✅" if value <= float(target.split()[-1]) else " ❌"


def main_table(results):
    head = ("| workload | tinylazy | numpy | torch | tinylazy/torch | tinylazy/numpy | target (torch; numpy) "
            "| rounds | notes |\n|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, what, med, rounds, runs in results:
        if name.startswith("lazy-"):
            continue
        tl_, np_, th = med.get("tinylazy"), med.get("numpy"), med.get("torch")
        t_torch, t_np = TARGETS.get(name, (None, None))
        r_t = tl_ / th if th else None
        r_n = tl_ / np_ if np_ else None
        target = "; ".join(t for t in (t_torch, t_np) if t) or ""
        notes = [what]
        for extra in sorted(set(med) - {"tinylazy", "numpy", "torch"}):
            notes.append(f"{extra.replace('_', ' ')}: {fmt_time(med[extra])} (tinylazy/it {ratio(tl_, med[extra])})")
        if name.startswith("dataloader"):
            notes.append(f"tinylazy {2000 / tl_:,.0f} images/s")
        if len(runs) > 1:
            for peer in ("numpy", "torch"):
                if peer in med:
                    notes.append(f"tinylazy/{peer} in each of the {len(runs)} timings: "
                                 + ", ".join(ratio(m["tinylazy"], m[peer]) for m in runs))
        lines.append(f"| {name} | {fmt_time(tl_)} | {fmt_time(np_)} | {fmt_time(th)} | "
                     f"{ratio(tl_, th)}{verdict(r_t, t_torch)} | {ratio(tl_, np_)}{verdict(r_n, t_np)} | "
                     f"{target} | {rounds} | {'; '.join(notes)} |")
    return "\n".join(lines)


def lazy_table(results):
    head = ("| model | tinylazy first | tinylazy steady | first/steady | tinylazy materialize (meta) | "
            "torch first | torch steady | torch first/steady | tinylazy/torch first |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for name, what, med, *_ in results:
        if not name.startswith("lazy-"):
            continue
        g = med.get
        lines.append(f"| {what} | {fmt_time(g('tinylazy_first'))} | {fmt_time(g('tinylazy_steady'))} | "
                     f"{ratio(g('tinylazy_first'), g('tinylazy_steady'))} | "
                     f"{fmt_time(g('tinylazy_materialize'))} | {fmt_time(g('torch_first'))} | "
                     f"{fmt_time(g('torch_steady'))} | {ratio(g('torch_first'), g('torch_steady'))} | "
                     f"{ratio(g('tinylazy_first'), g('torch_first'))} |")
    return "\n".join(lines)


def run_all(threads, budget, min_rounds, max_rounds, only, repeat=1):
    """Check and time the selected workloads with `threads` BLAS/OpenMP threads, `repeat` times each:
    [(name, what, medians, rounds, [medians of each timing])]."""
    from threadpoolctl import threadpool_limits
    threadpool_limits(threads)                           # NumPy's OpenBLAS (and torch's OpenMP pool)
    if W.torch is not None:
        W.torch.set_num_threads(threads)
    results = []
    for name, what, build, check in workload_table():
        if only and not any(word in name for word in only):
            continue
        W.tl.manual_seed(0)
        check()                                         # the implementations agree, or we stop here
        cases = build()
        gc.collect()
        runs = [time_interleaved(cases, budget, min_rounds, max_rounds)[:2] for _ in range(repeat)]
        med = {k: statistics.median(m[k] for m, _ in runs) for k in runs[0][0]}
        rounds = sum(r for _, r in runs)
        results.append((name, what, med, rounds, [m for m, _ in runs]))
        print(f"[{threads} thr] {name:16s} " + "  ".join(f"{k} {fmt_time(v)}" for k, v in med.items()), flush=True)
    return results


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                    help="thread counts to run, each for NumPy's BLAS and torch alike (default: 2 1)")
    ap.add_argument("--quick", action="store_true", help="short budgets: a smoke run, not a measurement")
    ap.add_argument("--budget", type=float, default=None, help="seconds of timing per workload (default 8)")
    ap.add_argument("--only", nargs="*", default=None, help="run workloads whose name contains one of these")
    ap.add_argument("--out", default=os.path.join(HERE, "results"),
                    help="folder for interleaved-<date>.md (interleaved-<date>-<words>.md with --only)")
    ap.add_argument("--no-write", action="store_true", help="print only")
    ap.add_argument("--keep-env", action="store_true", help="leave the OpenBLAS/OpenMP variables as found")
    ap.add_argument("--repeat", type=int, default=1, help="independent timings of each workload (table: median)")
    args = ap.parse_args(argv)
    budget = args.budget if args.budget is not None else (1.5 if args.quick else 8.0)
    min_rounds, max_rounds = (3, 40) if args.quick else (5, 400)

    started = time.time()
    load0 = os.getloadavg()
    env = None
    sections = []
    for threads in args.threads:
        results = run_all(threads, budget, min_rounds, max_rounds, args.only, args.repeat)
        env = env or environment(threads)
        sections.append((threads, results))
    load1 = os.getloadavg()
    elapsed = time.time() - started

    stamp = datetime.datetime.now()
    doc = [f"# tinylazy CPU benchmarks, interleaved (diagnostic), {stamp:%Y-%m-%d %H:%M}", "",
           "**A diagnostic, not the headline regime** (that is `python bench/user_regime.py`: each "
           "implementation in its own process, with its libraries' defaults). "
           "Median time per call; implementations interleaved round by round in one process "
           "(`python bench/compare.py`, see its docstring). Ratios < 1 mean tinylazy is faster. "
           "Each workload was checked before timing: the implementations agree on losses, gradients, updated "
           "weights, inferred shapes or batches.", "",
           *[line for line in env if not line.startswith("- Threads")],
           f"- Threads: {', then '.join(map(str, args.threads))} -- the same count for NumPy's BLAS "
           "(threadpoolctl) and torch (torch.set_num_threads) in each section"
           + (f"; torch interop threads {W.torch.get_num_interop_threads()}" if W.torch else ""),
           f"- Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in load0)} at the start, "
           f"{', '.join(f'{v:.2f}' for v in load1)} at the end ({os.cpu_count()} cores; other sessions share "
           "this machine, and multi-threaded BLAS/OpenMP suffer most from that)",
           f"- Budget {budget:g} s of timing per workload"
           + (f", {args.repeat} independent timings each (the table shows their median)" if args.repeat > 1 else "")
           + f"; the whole run took {elapsed:.0f} s", ""]
    for threads, results in sections:
        doc += [f"## {threads} thread{'s' if threads > 1 else ''}: train steps, optimizer, data", "",
                main_table(results), ""]
        if any(n.startswith("lazy-") for n, *_ in results):
            doc += [f"### {threads} thread{'s' if threads > 1 else ''}: first (materializing) forward of a "
                    "lazy model vs steady state", "",
                    "`first`: forward of a freshly built lazy model (construction untimed); `steady`: the same "
                    "model after it was materialized; `materialize (meta)`: `net.materialize(shape)`, a "
                    "shape-only trace on the meta device plus allocation.", "", lazy_table(results), ""]
    text = "\n".join(doc)
    print("\n" + text)
    if not args.no_write and not args.quick:
        os.makedirs(args.out, exist_ok=True)
        only = "".join(f"-{word}" for word in args.only or ())      # a partial run keeps the full table
        path = os.path.join(args.out, f"interleaved-{stamp:%Y-%m-%d}{only}.md")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"written to {os.path.relpath(path)}")


if __name__ == "__main__":
    sys.exit(main())
