"""Speed as users measure it: tinylazy vs PyTorch CPU vs hand-written NumPy, each in its own process.

    python bench/user_regime.py                          # every workload, 5 rounds (see below for the time)
    python bench/user_regime.py --rounds 3 --steps 50    # shorter
    python bench/user_regime.py --workloads mlp-b32 lenet-b64 --impls tinylazy torch
    python bench/user_regime.py --threads 1              # OMP/OPENBLAS/MKL_NUM_THREADS=1 for every process
    python bench/user_regime.py --smoke                  # 1 round, a few steps: proves the harness works

This is the headline regime (shared/design/BENCHMARKING.md). Each implementation runs its own training loop
in its own fresh process, as a user would run it: its libraries' defaults (the harness sets no variable for
one library; `--threads`/`--env` set the same values for every process, and the results say so), the
workload built from workloads.py (the same weights and data everywhere), a warm-up, then N consecutive
steps, each timed; the process reports its median step. The processes of a workload alternate over R
rounds (a b c, b c a, c a b, ...), so a slow spell of a shared machine hits each of them. The table gives,
per implementation, the median over rounds of the processes' medians with the range over rounds, and the
ratios of those medians with the range of the same-round ratios. Before timing, one process with every
library checks that the implementations agree (workloads.py's checks: losses, gradients, updated weights,
batches); after, the processes' first results (first loss, gradient sum, epoch totals) are compared.

The "tinylazy captured" column is the same tinylazy step wrapped in `tl.capture` (API.md section 9); it is
skipped, with a note, where `tl.capture` does not exist, and for workloads that are not a training step.

The interleaved single-process regime of compare.py (every step right after another library's, with
OMP_WAIT_POLICY=PASSIVE) is a diagnostic for finding where time goes, not this table.

Time: on a quiet 2-core machine the default run should take about 4-6 minutes (an estimate from the step
times: most of it is process start-up, torch's import above all, and the NumPy LeNet); on a loaded machine
far longer (a 1-round `--smoke` run took 4.5 minutes at a load average of 10). Fewer `--rounds`, `--steps`
or `--workloads` shorten it.

Writes bench/results/user-regime-<date>[-<workloads>][-smoke].md and a .json twin with the machine, load,
versions, BLAS and thread counts each process saw, and the environment found.
"""
import argparse
import datetime
import json
import os
import sys
import time

import harness as H

DEFAULT_ORDER = ("tinylazy", "tinylazy-captured", "torch", "numpy")
COLUMNS = (("tinylazy", "tinylazy"), ("tinylazy-captured", "tinylazy captured"), ("torch", "PyTorch CPU"),
           ("numpy", "hand NumPy"))
RATIOS = (("tinylazy", "torch"), ("tinylazy-captured", "torch"), ("tinylazy", "numpy"))
TARGETS = {"chain20-4x4": ("<= 0.8", None), "mlp-b32": ("<= 1.15", "<= 0.9"), "mlp-b256": ("<= 1.0", "<= 0.9"),
           "mlp-b1024": ("<= 1.05", "<= 0.95"), "lenet-b64": ("<= 1.2", "<= 1.0")}   # issue 17, vs torch


def cell_time(by, label):
    if label not in by:
        return "-"
    s = H.spread(by[label].values())
    return H.fmt_time(s["median"]) + (f" ({H.fmt_time(s['min'])}–{H.fmt_time(s['max'])})" if s["n"] > 1 else "")


def cell_ratio(stats):
    if stats is None:
        return "-"
    r = stats.get("rounds")
    return f"{stats['ratio']:.2f}x" + (f" ({r['min']:.2f}–{r['max']:.2f})" if r and r["n"] > 1 else "")


def table(results):
    names = dict(COLUMNS)
    head = ["workload"] + [c for _, c in COLUMNS] + [f"{names[a]} / {names[b]}" for a, b in RATIOS]
    head += ["targets vs torch (eager; captured)", "steps × rounds"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, res in results.items():
        by = H.medians_by_label(res["runs"])
        rounds = max((len(v) for v in by.values()), default=0)
        cells = [name] + [cell_time(by, k) for k, _ in COLUMNS]
        cells += [cell_ratio(H.ratio_stats(by, a, b)) for a, b in RATIOS]
        cells += ["; ".join(t for t in TARGETS.get(name, ()) if t) or "", f"{res['steps']} × {rounds}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def notes(results):
    out = []
    for name, res in results.items():
        out += [f"- {name}: {res['what']}"]
        out += [f"  - {label}: skipped ({why})" for label, why in res["skipped"].items()]
        out += [f"  - {r['label']}, round {r['round'] + 1}: FAILED: {r['error'][-500:]}" for r in res["runs"]
                if "error" in r]
        out += [f"  - WARNING: {n}" for n in H.agreement(res["runs"])]
    return out


def process_envs(results):
    """The environment each implementation's processes reported (the first of each; differences noted)."""
    seen = {}
    for res in results.values():
        for run in res["runs"]:
            if "env" in run:
                seen.setdefault(run["label"], []).append(run["env"])
    out = {}
    for label, envs in seen.items():
        first = envs[0]
        differ = {k: sorted({json.dumps(e.get(k), sort_keys=True) for e in envs})
                  for k in first if any(e.get(k) != first[k] for e in envs[1:])}
        out[label] = dict(first, differs_between_processes=differ) if differ else first
    return out


def env_lines(label, env):
    pools = env.get("threadpools")
    pools = "; ".join(f"{p['api']} {p['version']} ({p['library']}): {p['threads']} threads"
                      + (f", kernel {p['kernel']}" if p.get("kernel") else "") for p in pools) \
        if isinstance(pools, list) else pools
    versions = ", ".join(f"{k} {env[k]}" for k in ("python", "numpy", "tinylazy", "torch") if k in env)
    extra = []
    if "torch_threads" in env:
        extra.append(f"torch.get_num_threads() = {env['torch_threads']}, interop {env['torch_interop_threads']}")
    if "tinylazy_malloc_tuning" in env:
        extra.append(f"malloc tuning {env['tinylazy_malloc_tuning']}, "
                     f"tl.capture {'present' if env['tinylazy_capture'] else 'absent'}")
    if env.get("differs_between_processes"):
        extra.append("differs between processes: " + "; ".join(
            f"{k} ({' | '.join(v)})" for k, v in env["differs_between_processes"].items()))
    return [f"- {label}: {versions}; BLAS/OpenMP (threadpoolctl): {pools or 'none loaded'}"
            + "".join(f"; {x}" for x in extra)]


def report(doc):
    m, found = doc["machine"], doc["environment_found"]
    loaded = doc["load"]["max_1min"] > 0.5 * (m["usable_cores"] or m["logical_cores"] or 1)
    lines = [f"# tinylazy in the user's regime, {doc['date']}", ""]
    if doc["smoke"]:
        lines += ["**SMOKE RUN: a test of the harness (few steps, few rounds), not a measurement.**", ""]
    if loaded:
        lines += [f"**The machine was loaded (1-minute load average up to {doc['load']['max_1min']:.2f} on "
                  f"{m['usable_cores']} usable cores): these figures are not headline figures.**", ""]
    lines += ["Each implementation ran its own training loop in its own fresh process with its libraries' "
              "defaults: warm-up, then N consecutive steps, the process reporting its median step; the processes "
              "alternated over the rounds (a b c, b c a, ...). Times: median over rounds of the processes' "
              "medians (min–max over rounds). Ratios: of those medians (min–max of the same-round ratios); "
              "below 1 tinylazy is faster. `python bench/user_regime.py`, see its docstring.", "",
              table(doc["workloads"]), "", "## Notes", "", *notes(doc["workloads"]), "",
              "## Machine and environment", "",
              f"- Machine: {m['cpu']}, {m['logical_cores']} logical cores ({m['usable_cores']} usable), "
              f"{m['system']}, memory {m.get('memory', '?')}",
              f"- tinylazy revision: {doc['revision']}; Python {sys.version.split()[0]} ({m['python']})",
              f"- Load average (1, 5, 15 min): {', '.join(f'{v:.2f}' for v in doc['load']['start'])} at the "
              f"start, {', '.join(f'{v:.2f}' for v in doc['load']['end'])} at the end; 1-minute load up to "
              f"{doc['load']['max_1min']:.2f} at the start of a process",
              "- Environment found (OMP_*, OPENBLAS_*, MKL_*, TINYLAZY_*, ...): "
              + (", ".join(f"{k}={v}" for k, v in found.items()) or "none of them set"),
              "- Set by the harness, the same for every process: "
              + (", ".join(f"{k}={v}" for k, v in doc["env_set_for_all"].items()) or "nothing (library defaults)"),
              f"- Steps: {doc['settings']['steps'] or 'per workload (table)'} after "
              f"{doc['settings']['warmup'] if doc['settings']['warmup'] is not None else 'per-workload'} "
              f"warm-up steps; {doc['settings']['rounds']} round(s); the run took {doc['elapsed_s']:.0f} s",
              "- What each implementation's processes saw:"]
    for label, env in doc["process_environments"].items():
        lines += ["  " + line for line in env_lines(label, env)]
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=list(H.WORKLOADS), choices=list(H.WORKLOADS),
                    metavar="NAME", help=f"which workloads (default all: {', '.join(H.WORKLOADS)})")
    ap.add_argument("--impls", nargs="+", default=list(DEFAULT_ORDER), choices=list(H.IMPLEMENTATIONS),
                    help="which implementations, in the first round's order (default: all)")
    ap.add_argument("--rounds", type=int, default=5, help="rounds of alternating processes (default 5)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per process (default: per workload)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per process (default: per workload)")
    ap.add_argument("--threads", type=int, default=None,
                    help="OMP_NUM_THREADS, OPENBLAS_NUM_THREADS, MKL_NUM_THREADS for every process (default: unset)")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                    help="a variable set for every process (repeatable)")
    ap.add_argument("--smoke", action="store_true", help="1 round, 10 steps, 2 warm-up: a test, labelled so")
    ap.add_argument("--no-check", action="store_true", help="skip the agreement check before timing")
    ap.add_argument("--out", default=os.path.join(H.HERE, "results"), help="folder for the results")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    if args.smoke:
        args.rounds, args.steps, args.warmup = 1, args.steps or 10, 2 if args.warmup is None else args.warmup
    env_all = {**H.thread_env(args.threads), **H.parse_env(args.env)}
    entries = [H.entry(impl) for impl in args.impls]

    started, load0 = time.time(), os.getloadavg()
    if not args.no_check:
        H.run_checks(args.workloads, env_all)
    loads = []
    results = H.run_rounds(entries, args.workloads, args.rounds, args.steps, args.warmup, env_all,
                           log=lambda s: print(s, file=sys.stderr, flush=True))
    for res in results.values():
        loads += [r["load_1min"] for r in res["runs"]]
    stamp = datetime.datetime.now()
    doc = {"kind": "user-regime", "date": f"{stamp:%Y-%m-%d %H:%M}", "smoke": args.smoke,
           "settings": {"rounds": args.rounds, "steps": args.steps, "warmup": args.warmup,
                        "implementations": args.impls, "command": " ".join(sys.argv)},
           "machine": H.machine(), "revision": H.git_revision(),
           "load": {"start": load0, "end": os.getloadavg(), "max_1min": max(loads + [load0[0]])},
           "environment_found": H.found_environment(), "env_set_for_all": env_all,
           "elapsed_s": time.time() - started, "workloads": results,
           "process_environments": process_envs(results)}
    for res in results.values():                   # the per-process environments are summarized above
        for run in res["runs"]:
            run.pop("env", None)
        by = H.medians_by_label(res["runs"])
        res["summary"] = {label: H.spread(v.values()) for label, v in by.items()}
        res["ratios"] = {f"{a}/{b}": H.ratio_stats(by, a, b) for a, b in RATIOS if a in by and b in by}
    text = report(doc)
    print(text)
    if not args.no_write:
        os.makedirs(args.out, exist_ok=True)
        part = "" if args.workloads == list(H.WORKLOADS) else "-" + "-".join(args.workloads)
        base = os.path.join(args.out, f"user-regime-{stamp:%Y-%m-%d}{part}{'-smoke' if args.smoke else ''}")
        with open(base + ".md", "w", encoding="utf-8") as f:
            f.write(text)
        with open(base + ".json", "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
        print(f"written to {base}.md and .json", file=sys.stderr)
    failed = any("error" in r for res in results.values() for r in res["runs"])
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
