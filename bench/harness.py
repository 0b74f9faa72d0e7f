"""The user's regime, the machinery: each implementation's training loop in its own fresh process.

user_regime.py (the table of tinylazy vs PyTorch vs hand-written NumPy) and ab_revision.py (one version of
tinylazy against another) are both built on this module:

- `IMPLEMENTATIONS`: what can run a workload. Each names the libraries its process may import; the others
  are blocked in that process (`sys.modules[name] = None`), so the NumPy and PyTorch processes never import
  tinylazy (whose allocator tuning workloads.py turns on) and the tinylazy and NumPy processes never import torch (which
  loads its own OpenMP runtime). "tinylazy-captured" is the same tinylazy step wrapped in `tl.capture`; its
  processes report "skipped" when the tinylazy they import has no `capture`.
- `WORKLOADS`: what is timed, built from workloads.py (the same weights, data and checks as the
  pytest-benchmark suites), with each workload's default number of steps and warm-up steps.
- `run_rounds`: for every workload, R rounds; in round r the entries (implementation + environment +
  which tinylazy) run in the order rotated by r (a b c, b c a, c a b, ...), each in a fresh process:
  warm-up, then N consecutive steps, each timed with perf_counter; the process reports its median step.
- The environment is never tuned for one implementation: every process inherits the environment the
  harness found, plus whatever the caller asked for *for every process* (`--threads`, `--env`) and, in an
  A/B run, a side's own override (a tinylazy switch such as TINYLAZY_MALLOC_TUNING=0). Each process
  reports what it saw: versions, BLAS and OpenMP pools (threadpoolctl), thread counts, variables.

Run as a script only by run_rounds itself (`--child`, `--check`).
"""
import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import namedtuple

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
MARK = "HARNESS-RESULT "                     # the child's one line of JSON on stdout starts with this
ENV_PREFIXES = ("OMP_", "GOMP_", "KMP_", "OPENBLAS_", "GOTO", "MKL_", "BLIS_", "VECLIB_", "NUMEXPR_",
                "TINYLAZY_", "MALLOC_", "GLIBC_TUNABLES", "LD_PRELOAD", "PYTORCH_", "TORCH_", "ATEN_",
                "CUDA_VISIBLE_DEVICES", "PYTHONHASHSEED", "PYTHONMALLOC", "PYTHONPATH")

Impl = namedtuple("Impl", "label uses case capture")
IMPLEMENTATIONS = {
    "tinylazy": Impl("tinylazy", ("tinylazy",), "tinylazy", False),
    "tinylazy-captured": Impl("tinylazy captured (tl.capture)", ("tinylazy",), "tinylazy", True),
    "torch": Impl("PyTorch CPU", ("torch",), "torch", False),
    "numpy": Impl("hand-written NumPy", (), "numpy", False),
}
BLOCKABLE = ("tinylazy", "torch")

Workload = namedtuple("Workload", "what build check steps warmup capturable")
WORKLOADS = {
    "chain20-4x4": Workload("20 elementwise ops on 4x4 + backward", lambda W, cap: W.chain20(),
                            lambda W: W.check_chain20(), 1000, 100, False),
    "mlp-b32": Workload("MLP 784-256-10 SGD step, batch 32", lambda W, cap: W.mlp_step(32, capture=cap),
                        lambda W: W.check_mlp(32), 300, 30, True),
    "mlp-b256": Workload("MLP 784-256-10 SGD step, batch 256", lambda W, cap: W.mlp_step(256, capture=cap),
                         lambda W: W.check_mlp(256), 200, 20, True),
    "mlp-b1024": Workload("MLP 784-256-10 SGD step, batch 1024", lambda W, cap: W.mlp_step(1024, capture=cap),
                          lambda W: W.check_mlp(1024), 100, 10, True),
    "lenet-b64": Workload("LeNet step, batch 64 (SGD momentum 0.9)",
                          lambda W, cap: W.lenet_step(64, W.MOMENTUM, capture=cap),
                          lambda W: W.check_lenet(64, W.MOMENTUM), 100, 10, True),
    "lenet-b256": Workload("LeNet step, batch 256 (SGD momentum 0.9)",
                           lambda W, cap: W.lenet_step(256, W.MOMENTUM, capture=cap),
                           lambda W: W.check_lenet(256, W.MOMENTUM), 30, 5, True),
    "adam-100": Workload("Adam step, 100 small params (50x Linear(32,32)); torch foreach=True",
                         lambda W, cap: W.adam_step()[0], lambda W: W.check_adam(), 200, 20, False),
    "dataloader-b64": Workload("one shuffled epoch, Fashion-MNIST subset (2,000 images), batch 64",
                               lambda W, cap: W.dataloader_epoch(),
                               lambda W: W.check_dataloader(W.dataloader_epoch()), 50, 5, False),
}

# One process of a run: `label` names it in the results; `env` is added to its environment (on top of the
# environment set for every process); `tinylazy_from` is the folder its `tinylazy` package is imported from.
Entry = namedtuple("Entry", "label impl env tinylazy_from")


def entry(impl, label=None, env=None, tinylazy_from=ROOT):
    if impl not in IMPLEMENTATIONS:
        raise ValueError(f"unknown implementation {impl!r}; known: {', '.join(IMPLEMENTATIONS)}")
    return Entry(label or impl, impl, dict(env or {}), tinylazy_from)


# --- inside a child process ------------------------------------------------------------------------------
def _import_workloads(uses, tinylazy_from):
    """workloads.py, with only the libraries in `uses` importable (and tinylazy from `tinylazy_from`)."""
    for lib in BLOCKABLE:
        if lib not in uses:
            sys.modules[lib] = None                          # `import lib` now raises ImportError
    if "tinylazy" in uses and tinylazy_from:
        sys.path.insert(0, tinylazy_from)
        import tinylazy
        where = os.path.dirname(os.path.dirname(os.path.abspath(tinylazy.__file__)))
        if os.path.realpath(where) != os.path.realpath(tinylazy_from):
            raise SystemExit(f"tinylazy was imported from {where}, not from {tinylazy_from}")
    sys.path.insert(0, HERE)
    import workloads
    return workloads


def summarize(result):
    """A step's return value as plain floats (a loss, the sum of a gradient, an epoch's totals), so that the
    parent can check that the processes computed the same thing."""
    import numpy as np
    if result is None:
        return None
    if isinstance(result, tuple):
        return [summarize(v) for v in result]
    if isinstance(result, (int, float)):
        return float(result)
    if hasattr(result, "detach"):
        result = result.detach()
    return float(np.asarray(result.numpy() if hasattr(result, "numpy") else result, np.float64).sum())


def malloc_tuning_state():
    """tinylazy's host allocator tuning in this process, as the library left it (tinylazy/_malloc.py): the first
    optimizer turns it on unless TINYLAZY_MALLOC_TUNING=0; older revisions differ (see workloads.py)."""
    malloc = sys.modules.get("tinylazy._malloc")
    tuned = getattr(malloc, "_tuned", "unknown")
    if tuned == "unknown":                         # a revision without tune_once: say what the variable asks
        return "on" if os.environ.get("TINYLAZY_MALLOC_TUNING", "1") != "0" else "off"
    return {True: "on (the first optimizer)", False: "off", None: "not applied (no optimizer built)"}[tuned]


def process_environment():
    """What this process runs with: versions, BLAS/OpenMP pools and their threads, variables."""
    import numpy as np
    env = {"python": platform.python_version(), "numpy": np.__version__,
           "variables": {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}}
    tl, torch = sys.modules.get("tinylazy"), sys.modules.get("torch")
    if tl is not None:
        env["tinylazy"] = f"{tl.__version__} ({os.path.dirname(tl.__file__)})"
        env["tinylazy_malloc_tuning"] = malloc_tuning_state()
        env["tinylazy_capture"] = hasattr(tl, "capture")
    if torch is not None:
        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
        env["torch_interop_threads"] = torch.get_num_interop_threads()
    try:
        from threadpoolctl import threadpool_info
        pools = [{"api": d.get("internal_api"), "version": d.get("version"), "threads": d.get("num_threads"),
                  "library": os.path.basename(d.get("filepath", "")), "kernel": d.get("architecture")}
                 for d in threadpool_info()]
        env["threadpools"] = sorted(pools, key=lambda p: (str(p["api"]), p["library"]))
    except ImportError:
        env["threadpools"] = "threadpoolctl not installed (pip install threadpoolctl, or tinylazy[bench])"
    return env


def child(impl_name, workload_name, steps, warmup, tinylazy_from):
    """Build one workload for one implementation, warm up, time `steps` consecutive steps; print the JSON."""
    impl, work = IMPLEMENTATIONS[impl_name], WORKLOADS[workload_name]
    out = {"impl": impl_name, "workload": workload_name, "pid": os.getpid()}
    W = _import_workloads(impl.uses, tinylazy_from)
    if impl.capture and not hasattr(W.tl, "capture"):
        out["skipped"] = "tl.capture does not exist in this tinylazy"
    elif impl.capture and not work.capturable:
        out["skipped"] = "no captured form of this workload"
    else:
        case = work.build(W, impl.capture).get(impl.case)
        if case is None:
            out["skipped"] = f"{impl.case} is not available in this process"
    if "skipped" not in out:
        run = case.run
        out["first"] = summarize(run())                     # the first step counts as warm-up
        for _ in range(max(0, warmup - 1)):
            run()
        clock, times = time.perf_counter, []
        for _ in range(steps):
            t0 = clock()
            run()
            times.append(clock() - t0)
        times.sort()
        out.update(steps=steps, warmup=warmup, median_s=statistics.median(times),
                   mean_s=statistics.fmean(times), min_s=times[0],
                   p10_s=times[len(times) // 10], p90_s=times[(len(times) * 9) // 10])
    out["env"] = process_environment()
    print(MARK + json.dumps(out), flush=True)


def check(workload_names):
    """The implementations agree on each workload (losses, gradients, weights, batches): workloads.py's checks,
    run in one process with every library."""
    W = _import_workloads(BLOCKABLE, ROOT)
    for name in workload_names:
        WORKLOADS[name].check(W)
        print(f"checked {name}: the implementations agree", flush=True)


# --- in the parent --------------------------------------------------------------------------------------
def run_checks(workload_names, env=None):
    cmd = [sys.executable, os.path.abspath(__file__), "--check", *workload_names]
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"the implementations disagree (or a check failed); nothing was timed:\n"
                         f"{proc.stdout}{proc.stderr[-4000:]}")


def spawn(e, workload, steps, warmup, env_all, timeout=600):
    """One fresh process: entry `e` on `workload`; returns its result dict (with `error` if it failed)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", e.impl, workload, "--steps", str(steps),
           "--warmup", str(warmup)]
    if e.tinylazy_from:
        cmd += ["--tinylazy-from", e.tinylazy_from]
    env = {**os.environ, **env_all, **e.env}
    t0 = time.time()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARK)]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-1500:]}"}
    out = json.loads(lines[-1][len(MARK):])
    out["wall_s"] = time.time() - t0
    return out


def run_rounds(entries, workload_names, rounds, steps=None, warmup=None, env_all=None, log=print):
    """Every workload, `rounds` rounds of every entry, each in a fresh process, the order rotated each round.
    Returns {workload: {"runs": [per-process results], "skipped": {label: why}}}; each run carries `label`,
    `round`, `position` and the 1-minute load average at its start."""
    env_all = dict(env_all or {})
    results = {}
    for name in workload_names:
        work = WORKLOADS[name]
        n, w = steps or work.steps, warmup if warmup is not None else work.warmup
        runs, skipped = [], {}
        todo = [e for e in entries if not (IMPLEMENTATIONS[e.impl].capture and not work.capturable)]
        for e in entries:
            if e not in todo:
                skipped[e.label] = "no captured form of this workload"
        for r in range(rounds):
            live = [e for e in todo if e.label not in skipped]
            order = live[r % len(live):] + live[:r % len(live)] if live else []
            for pos, e in enumerate(order):
                load = os.getloadavg()[0]
                out = spawn(e, name, n, w, env_all)
                out.update(label=e.label, round=r, position=pos, load_1min=load)
                if "skipped" in out:
                    skipped[e.label] = out["skipped"]
                    log(f"{name:15s} round {r + 1}/{rounds}  {e.label}: skipped ({out['skipped']})")
                    continue
                runs.append(out)
                shown = f"error: {out['error'][-300:]}" if "error" in out else fmt_time(out["median_s"])
                log(f"{name:15s} round {r + 1}/{rounds}  {e.label:>20s}: {shown}")
        results[name] = {"what": work.what, "steps": n, "warmup": w, "runs": runs, "skipped": skipped}
    return results


# --- statistics over rounds -----------------------------------------------------------------------------
def spread(values):
    """median, min, max and (from 4 values on) the quartiles of a list of per-round medians."""
    values = sorted(values)
    s = {"median": statistics.median(values), "min": values[0], "max": values[-1], "n": len(values)}
    if len(values) >= 4:
        s["q1"], _, s["q3"] = statistics.quantiles(values, n=4, method="inclusive")
    return s


def medians_by_label(runs):
    by = {}
    for run in runs:
        if "median_s" in run:
            by.setdefault(run["label"], {})[run["round"]] = run["median_s"]
    return by


def ratio_stats(by, a, b):
    """a/b: the ratio of the medians over rounds, and the spread of the same-round ratios."""
    if a not in by or b not in by:
        return None
    same = [by[a][r] / by[b][r] for r in by[a] if r in by[b]]
    out = {"ratio": statistics.median(by[a].values()) / statistics.median(by[b].values())}
    if same:
        out["rounds"] = spread(same)
    return out


def agreement(runs, rtol=1e-3):
    """Notes where processes' first results (first loss, gradient sum, epoch totals) disagree."""
    firsts = {}
    for run in runs:
        if run.get("first") is not None:
            firsts.setdefault(run["label"], run["first"])
    flat = {k: v if isinstance(v, list) else [v] for k, v in firsts.items()}
    notes, ref = [], next(iter(flat.items()), None)
    for label, vals in flat.items():
        if ref and any(abs(x - y) > rtol * max(abs(y), 1e-12) for x, y in zip(vals, ref[1])):
            notes.append(f"{label}'s first result {vals} differs from {ref[0]}'s {ref[1]}")
    return notes


def fmt_time(s):
    if s is None:
        return "-"
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-6:.3g} µs"


# --- the machine ----------------------------------------------------------------------------------------
def machine():
    info = {"cpu": platform.processor() or platform.machine(), "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "system": f"{platform.system()} {platform.release()}", "python": sys.executable}
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
        with open("/proc/meminfo") as f:
            info["memory"] = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("MemTotal"))
    except (OSError, StopIteration):
        pass
    return info


def git_revision():
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--", "tinylazy", "bench"],
                               capture_output=True, text=True, check=True).stdout.strip()
        return rev + (" + uncommitted changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def found_environment():
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)}


def parse_env(pairs):
    """["KEY=VALUE", ...] -> {KEY: VALUE}."""
    out = {}
    for pair in pairs or ():
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"expected KEY=VALUE, got {pair!r}")
        out[key] = value
    return out


def thread_env(threads):
    """The same thread count for every library's pool, for every process (never for one of them)."""
    if not threads:
        return {}
    return {k: str(threads) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def _main(argv=None):
    ap = argparse.ArgumentParser(description="a child process of user_regime.py / ab_revision.py")
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "WORKLOAD"))
    ap.add_argument("--check", nargs="+", metavar="WORKLOAD")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--tinylazy-from", default=ROOT)
    args = ap.parse_args(argv)
    if args.check:
        check(args.check)
    elif args.child:
        impl, work = args.child
        w = WORKLOADS[work]
        child(impl, work, args.steps or w.steps, w.warmup if args.warmup is None else args.warmup,
              args.tinylazy_from)
    else:
        ap.error("run user_regime.py or ab_revision.py; this script is their child process")


if __name__ == "__main__":
    _main()
