"""Simulated cache misses per replay of a captured step, its memory plan on and off (valgrind): no noise.

    python bench/count_capture_cache.py mlp 1024
    python bench/count_capture_cache.py lenet 64

The captured step of bench_capture.py (recorded with TINYLAZY_CAPTURE_PLAN=1, then =0) runs n1 and n2
replays under `valgrind --tool=cachegrind --cache-sim=yes` with caches like one core of this machine
(L1d 48 KiB 12-way, and its 2 MiB L2 as cachegrind's last level; one thread, no address randomization,
fixed hash seed); the difference / (n2 - n1) is one steady-state replay: instructions, L1d misses and
last-level misses (reads + writes). The plan does not change the instructions much; it changes how much
distinct memory a replay touches, which is what the misses show. A development tool, not a test.
"""
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
CACHES = ["--I1=32768,8,64", "--D1=49152,12,64", "--LL=2097152,16,64"]


def inner(model, batch, plan, replays):
    os.environ["TINYLAZY_CAPTURE_PLAN"] = plan
    sys.path[:0] = [HERE, os.path.dirname(HERE)]
    import warnings
    import bench_capture
    warnings.simplefilter("ignore")
    step, x, y, program = bench_capture.recorded(model, batch, plan == "1")
    for _ in range(replays):
        step(x, y)


def count(model, batch, plan, replays):
    env = dict(os.environ, PYTHONHASHSEED="0", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    cmd = ["setarch", os.uname().machine, "-R", "valgrind", "--tool=cachegrind", "--cache-sim=yes", *CACHES,
           "--cachegrind-out-file=/dev/null", sys.executable, __file__, "--inner", model, str(batch), plan,
           str(replays)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stderr

    def field(name):
        return int(re.search(name + r":\s+([\d,]+)", out).group(1).replace(",", ""))
    return {"instructions": field(r"I\s+refs"), "L1d misses": field(r"D1\s+misses"),
            "LL misses": field(r"LLd\s+misses")}


if __name__ == "__main__":
    if sys.argv[1] == "--inner":
        inner(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        sys.exit()
    model, batch = sys.argv[1], int(sys.argv[2])
    n1, n2 = 2, 6
    per = {}
    for plan in ("0", "1"):
        a, b = count(model, batch, plan, n1), count(model, batch, plan, n2)
        per[plan] = {k: (b[k] - a[k]) / (n2 - n1) for k in a}
    print(f"{model} b{batch}, per replay (valgrind cachegrind; L1d 48 KiB, LL 2 MiB; 1 thread):")
    for k in per["0"]:
        print(f"  {k:>12}: plan off {per['0'][k]:14,.0f}   plan on {per['1'][k]:14,.0f}   "
              f"on/off {per['1'][k] / per['0'][k]:.3f}")
