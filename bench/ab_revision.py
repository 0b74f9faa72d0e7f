"""Does a change make tinylazy faster where users train? Two versions, each in its own processes, alternated.

    python bench/ab_revision.py                               # working tree (A) vs HEAD (B), ~2 min quiet
    python bench/ab_revision.py --b HEAD~3 --workloads mlp-b256 --rounds 20
    python bench/ab_revision.py --b worktree --env-b TINYLAZY_MALLOC_TUNING=0 --workloads lenet-b64
    python bench/ab_revision.py --b worktree --env-b TINYLAZY_KERNELS=0        # a switch, on vs off
    python bench/ab_revision.py --impl-a tinylazy-captured --b worktree         # captured vs eager step
    python bench/ab_revision.py --a worktree --b worktree                       # A/A: the noise floor

This is how every speed change is judged (shared/design/BENCHMARKING.md: a trick stays if it gains at least
2% of a realistic step). Each side is a version of tinylazy (`worktree`, or any git revision, whose
`tinylazy/` is extracted with git archive into a temporary folder), an implementation (`tinylazy` or
`tinylazy-captured`) and, optionally, its own environment variables (`--env-a`, `--env-b`: for tricks with
a switch). Each run is a fresh process in the user's regime (harness.py: the library's defaults, warm-up,
N consecutive steps, the process's median step); the sides alternate, A B then B A, over the rounds. Both
sides run the working tree's workloads.py, so a revision must accept its calls.

Printed per workload: each side's median over rounds (with the range), the ratio A/B of those medians,
and the same-round ratios' median, range and quartiles. Below 1, A is faster. On a shared machine trust a
difference only when the range of the same-round ratios stays on one side of 1; compare with an A/A run.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import harness as H


def side(spec, impl, env, folder, name):
    """An Entry for one side: `spec` is "worktree" or a git revision (extracted under `folder`)."""
    label = f"{name}: {spec}" + (f" {impl}" if impl != "tinylazy" else "") + \
        "".join(f" {k}={v}" for k, v in env.items())
    if spec == "worktree":
        return H.entry(impl, label, env, H.ROOT)
    where = os.path.join(folder, name)
    os.makedirs(where)
    archive = subprocess.run(["git", "-C", H.ROOT, "archive", spec, "tinylazy"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", where], input=archive, check=True)
    return H.entry(impl, label, env, where)


def summary_lines(results, a, b):
    lines = []
    for name, res in results.items():
        by = H.medians_by_label(res["runs"])
        lines.append(f"{name} ({res['what']}; {res['steps']} steps after {res['warmup']} warm-up):")
        for label in (a, b):
            if label in by:
                s = H.spread(by[label].values())
                lines.append(f"  {label:>40s}: {H.fmt_time(s['median'])} (min {H.fmt_time(s['min'])}, max "
                             f"{H.fmt_time(s['max'])}, {s['n']} rounds)")
        for r in res["runs"]:
            if "error" in r:
                lines.append(f"  {r['label']}, round {r['round'] + 1}: FAILED: {r['error'][-800:]}")
        lines += [f"  {label}: skipped ({why})" for label, why in res["skipped"].items()]
        stats = H.ratio_stats(by, a, b)
        if stats:
            r = stats.get("rounds", {})
            quart = f", quartiles {r['q1']:.3f}–{r['q3']:.3f}" if "q1" in r else ""
            lines.append(f"  A/B: {stats['ratio']:.3f} (same-round ratios: median {r['median']:.3f}, "
                         f"range {r['min']:.3f}–{r['max']:.3f}{quart})")
        lines += [f"  WARNING: {n}" for n in H.agreement(res["runs"], rtol=1e-4)]
    return lines


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--a", default="worktree", help="side A: 'worktree' (default) or a git revision")
    ap.add_argument("--b", "--rev", default="HEAD", help="side B: a git revision (default HEAD) or 'worktree'")
    ap.add_argument("--impl-a", default="tinylazy", choices=("tinylazy", "tinylazy-captured"))
    ap.add_argument("--impl-b", default="tinylazy", choices=("tinylazy", "tinylazy-captured"))
    ap.add_argument("--env-a", action="append", default=[], metavar="KEY=VALUE", help="for side A only")
    ap.add_argument("--env-b", action="append", default=[], metavar="KEY=VALUE", help="for side B only")
    ap.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="for both sides")
    ap.add_argument("--threads", type=int, default=None, help="OMP/OPENBLAS/MKL_NUM_THREADS for both sides")
    ap.add_argument("--workloads", nargs="+", default=["mlp-b32", "mlp-b256", "lenet-b64"],
                    choices=list(H.WORKLOADS), metavar="NAME",
                    help=f"default: mlp-b32 mlp-b256 lenet-b64; any of {', '.join(H.WORKLOADS)}")
    ap.add_argument("--rounds", type=int, default=10, help="rounds (A B, then B A, ...; default 10)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per process (default: per workload)")
    ap.add_argument("--warmup", type=int, default=None, help="warm-up steps per process (default: per workload)")
    ap.add_argument("--json", default=None, help="also write the results as JSON to this path")
    args = ap.parse_args(argv)
    env_all = {**H.thread_env(args.threads), **H.parse_env(args.env)}

    started, load0 = time.time(), os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        a = side(args.a, args.impl_a, H.parse_env(args.env_a), folder, "A")
        b = side(args.b, args.impl_b, H.parse_env(args.env_b), folder, "B")
        results = H.run_rounds([a, b], args.workloads, args.rounds, args.steps, args.warmup, env_all,
                               log=lambda s: print(s, file=sys.stderr, flush=True))
    load1 = os.getloadavg()
    lines = [f"A/B in the user's regime: A = {a.label}, B = {b.label}; {args.rounds} rounds, "
             f"revision {H.git_revision()}",
             f"load average {load0[0]:.2f} at the start, {load1[0]:.2f} at the end "
             f"({H.machine()['usable_cores']} usable cores); set for both sides: "
             + (", ".join(f"{k}={v}" for k, v in env_all.items()) or "nothing"),
             *summary_lines(results, a.label, b.label), f"took {time.time() - started:.0f} s"]
    print("\n".join(lines))
    if args.json:
        doc = {"kind": "ab", "a": a._asdict(), "b": b._asdict(), "settings": vars(args), "env_set_for_all": env_all,
               "machine": H.machine(), "load": {"start": load0, "end": load1}, "workloads": results}
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(doc, f, indent=1)
    return 1 if any("error" in r for res in results.values() for r in res["runs"]) else 0


if __name__ == "__main__":
    sys.exit(main())
