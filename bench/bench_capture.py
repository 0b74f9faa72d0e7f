"""tl.capture against the eager step: the MLP (SGD) and LeNet (SGD momentum) train steps, each run eagerly and
captured (`tl.capture`: recorded once, replayed), on a batch passed as arguments, as a user's loop does.

    python -m pytest bench/bench_capture.py --benchmark-only      # pytest-benchmark, one group per workload
    python bench/bench_capture.py [rounds] [steps]                 # alternated A/B in one process: medians, ratio
    python bench/bench_capture.py --plan [rounds] [steps]          # captured: memory plan on vs off (plan.py)

Before timing, each benchmark checks what it times: a few steps of the captured step leave the parameters
bit for bit where the eager step leaves them. Timings from a loaded machine are not results: repeat on a
quiet one (BENCHMARKING.md).
"""
import os
import statistics
import sys
import time
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
import tinylazy as tl                                      # noqa: E402
import tinylazy.nn.functional as F                         # noqa: E402
from tinylazy import nn, optim                             # noqa: E402
from tinylazy.capturing import CaptureWarning              # noqa: E402
import workloads as W                                      # noqa: E402

WORKLOADS = {"mlp-b32": ("mlp", 32), "mlp-b256": ("mlp", 256), "mlp-b1024": ("mlp", 1024),
             "lenet-b64": ("lenet", 64)}


def make_step(model, batch_size, captured):
    """(step, x, y, model): the workload's train step (a function of the batch), eager or captured."""
    if model == "mlp":
        net, params, shape = W.tl_mlp(), W.mlp_params(), (batch_size, 784)
        opt_kwargs = {}
    else:
        net, params, shape = W.lenet_layers(nn), W.lenet_params(), (batch_size, 1, 28, 28)
        opt_kwargs = {"momentum": 0.9}
    W.load_into(net.parameters(), params)
    opt = optim.SGD(net.parameters(), lr=W.LR, **opt_kwargs)
    x, y = W.batch(shape)

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        return loss
    return (tl.capture(step) if captured else step), tl.from_numpy(x), tl.from_numpy(y), net


def check_equal(model, batch_size, steps=4):
    """The captured step leaves the parameters bit for bit where the eager step leaves them."""
    runs = []
    for captured in (False, True):
        step, x, y, net = make_step(model, batch_size, captured)
        for _ in range(steps):
            step(x, y)
        runs.append([p.array.copy() for p in net.parameters()])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(*runs)), f"{model} b{batch_size}: capture != eager"


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CaptureWarning)
        yield


@pytest.mark.parametrize("mode", ("eager", "captured"))
@pytest.mark.parametrize("workload", WORKLOADS)
def test_capture_step(benchmark, workload, mode):
    model, batch_size = WORKLOADS[workload]
    check_equal(model, batch_size)
    benchmark.group = f"capture-{workload}"
    step, x, y, _ = make_step(model, batch_size, mode == "captured")
    for _ in range(3):                      # eager first call, recording, a replay
        step(x, y)
    benchmark(step, x, y)


def ab(rounds=5, steps=100, warmup=5):
    """Alternate eager and captured (a b, b a, ...) in one process; per workload, the median over rounds of
    each round's median step time, the spread, and the ratio captured / eager."""
    rows = []
    for name, (model, batch_size) in WORKLOADS.items():
        times = {"eager": [], "captured": []}
        for r in range(rounds):
            for mode in (("eager", "captured") if r % 2 == 0 else ("captured", "eager")):
                step, x, y, _ = make_step(model, batch_size, mode == "captured")
                times[mode].append(median_step(step, x, y, warmup, steps))
        e, c = (statistics.median(times[m]) for m in ("eager", "captured"))
        spread = {m: (min(v) * 1e6, max(v) * 1e6) for m, v in times.items()}
        rows.append((name, e * 1e6, c * 1e6, c / e, spread))
    return rows


def median_step(step, x, y, warmup, steps):
    """The median time of `steps` consecutive calls step(x, y), after `warmup` calls."""
    for _ in range(warmup):
        step(x, y)
    ts = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step(x, y)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def recorded(model, batch_size, plan):
    """(step, x, y, program): the captured step, recorded with its memory plan on or off
    (TINYLAZY_CAPTURE_PLAN, read when the step is recorded)."""
    step, x, y, _ = make_step(model, batch_size, True)
    old = os.environ.get("TINYLAZY_CAPTURE_PLAN")
    os.environ["TINYLAZY_CAPTURE_PLAN"] = "1" if plan else "0"
    try:
        for _ in range(2):                  # eager first call, recording
            step(x, y)
    finally:
        if old is None:
            del os.environ["TINYLAZY_CAPTURE_PLAN"]
        else:
            os.environ["TINYLAZY_CAPTURE_PLAN"] = old
    program, = step.programs.values()
    return step, x, y, program


def plan_ab(rounds=5, steps=100, warmup=5):
    """The captured step's replay with the memory plan off and on, alternated in one process: per workload,
    the bytes one replay touches, the median over rounds of each round's median replay time, and the median
    and range of the same-round ratios on/off."""
    rows = []
    for name, (model, batch_size) in WORKLOADS.items():
        sides = {"off": recorded(model, batch_size, False), "on": recorded(model, batch_size, True)}
        times = {"off": [], "on": []}
        for r in range(rounds):
            for mode in (("off", "on") if r % 2 == 0 else ("on", "off")):
                step, x, y, _ = sides[mode]
                times[mode].append(median_step(step, x, y, warmup, steps))
        off, on = (statistics.median(times[m]) for m in ("off", "on"))
        mem = {m: sides[m][3].buffer_bytes() for m in sides}
        same_round = sorted(a / b for a, b in zip(times["on"], times["off"]))
        rows.append((name, mem["off"], mem["on"], sides["on"][3].plan, off * 1e6, on * 1e6,
                     statistics.median(same_round), (same_round[0], same_round[-1])))
    return rows


def main_plan(rounds, steps):
    print(f"numpy {np.__version__}, captured step, memory plan off/on, {rounds} rounds x {steps} replays, "
          "alternated; medians of round medians")
    print(f"{'workload':<10} {'MB off':>7} {'MB on':>6} {'off us':>8} {'on us':>8} {'on/off':>7}  range of the "
          "same-round ratios; plan")
    for name, m_off, m_on, plan, off, on, ratio, (lo, hi) in plan_ab(rounds, steps):
        print(f"{name:<10} {m_off / 2**20:7.2f} {m_on / 2**20:6.2f} {off:8.0f} {on:8.0f} {ratio:7.3f}  "
              f"{lo:.3f}-{hi:.3f}; {plan}")


if __name__ == "__main__":
    warnings.simplefilter("ignore", CaptureWarning)
    argv = [a for a in sys.argv[1:] if a != "--plan"]
    rounds = int(argv[0]) if len(argv) > 0 else 5
    steps = int(argv[1]) if len(argv) > 1 else 100
    if "--plan" in sys.argv:
        main_plan(rounds, steps)
        sys.exit()
    for model, batch_size in WORKLOADS.values():
        check_equal(model, batch_size)
    print(f"numpy {np.__version__}, {rounds} rounds x {steps} steps, alternated; medians of round medians")
    print(f"{'workload':<10} {'eager us':>9} {'captured us':>12} {'captured/eager':>15}  spread (min-max of round medians)")
    for name, e, c, ratio, spread in ab(rounds, steps):
        s = ", ".join(f"{m} {lo:.0f}-{hi:.0f}" for m, (lo, hi) in spread.items())
        print(f"{name:<10} {e:9.0f} {c:12.0f} {ratio:15.3f}  {s}")
