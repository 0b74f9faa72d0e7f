"""GPU benchmarks of tinylazy, run by bench/gpu_check.sh on a machine with an NVIDIA GPU.

GPU times are CUDA-event times (median of several repetitions; for bandwidth figures the L2 cache is flushed
before each repetition by writing a buffer several times its size); host times per call come from
cupyx.profiler.benchmark. Nothing is timed with an unsynchronised wall clock. Sections:

  environment   device, versions, the test sections' results so far (gpu-check-summary.md)
  cold_start    first use of each kernels/*.cu in this process (NVRTC compile or CuPy disk-cache load)
  copy          device copy bandwidth of an SM copy kernel (reads + writes, 512 MiB arrays), and cudaMemcpy
  kernels       each custom kernel's effective bandwidth and its fraction of the copy figure, next to the same
                op through plain CuPy (tinylazy's reference path on CuPy arrays) and through PyTorch CUDA
  host          host time per launch at small sizes: tinylazy.cuda, a bare RawKernel call, CuPy, PyTorch
  optimizer     the fused Adam step (one launch) for the MLP and a 100-parameter model vs PyTorch's fused Adam,
                against its bandwidth bound of 28 bytes per float32 parameter
  training      MLP (784-1024-1024-10) and LeNet training steps at batch 128 and 1024 vs PyTorch CUDA eager
  no_sync       a training step under cupyx.allow_synchronize(False), and captured in a CUDA graph

Each section runs under its own time budget (scaled down to fit --budget); a section that fails or runs out
of time records its error text instead of figures, and the next one runs. The results are rewritten after
every section to <out>/gpu-check-<date>.json and .md.

`--select-tests PATH` instead writes the cuda test cases of gpu_check.sh's "ops" pass (see select_tests).
"""
import argparse
import datetime
import json
import os
import platform
import re
import signal
import subprocess
import sys
import statistics
import time
import traceback
from pathlib import Path

import numpy as np

N = 1 << 27                     # elements per array in the bandwidth sections: 512 MiB of float32
MIB = 1 << 20

COPY_SOURCE = r"""
extern "C" __global__ void copy_f4(const float4* __restrict__ x, float4* __restrict__ y, long long n4) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n4; i += (long long)gridDim.x * blockDim.x)
        y[i] = x[i];
}
"""


class Ctx:
    """What the sections share: modules, the timer, and figures later sections need (the copy bandwidth)."""

    def __init__(self, args):
        import cupy
        self.args, self.cp = args, cupy
        self.torch = None
        try:
            import torch
            if torch.cuda.is_available():
                self.torch = torch
        except Exception:
            pass
        props = cupy.cuda.runtime.getDeviceProperties(0)
        self.props = props
        self.sms = props["multiProcessorCount"]
        self.flush = cupy.empty(max(4 * props["l2CacheSize"], 256 * MIB) // 4, dtype=cupy.float32)
        self.start, self.end = cupy.cuda.Event(), cupy.cuda.Event()
        self.copy_gbps = None

    def gpu_ms(self, fn, reps=10, warmup=2, flush=True):
        """Median GPU milliseconds of fn(), between two CUDA events on the null stream (which PyTorch's default
        stream also is); the L2 cache is flushed before each repetition when `flush`."""
        for _ in range(warmup):
            fn()
        times = []
        for _ in range(reps):
            if flush:
                self.flush.fill(0)
            self.start.record()
            fn()
            self.end.record()
            self.end.synchronize()
            times.append(self.cp.cuda.get_elapsed_time(self.start, self.end))
        return statistics.median(times)

    def free(self):
        self.cp.get_default_memory_pool().free_all_blocks()
        if self.torch is not None:
            self.torch.cuda.empty_cache()


def gbps(nbytes, ms):
    return nbytes / (ms * 1e-3) / 1e9


# ================================ sections =============================================================
def environment(ctx):
    cp, p = ctx.cp, ctx.props
    name = p["name"].decode() if isinstance(p["name"], bytes) else str(p["name"])
    summary = Path(ctx.args.summary) if ctx.args.summary else None
    rows = [line for line in summary.read_text(errors="replace").splitlines() if line.startswith("| ")
            and not line.startswith("| section") and not line.startswith("| ---")] if summary and summary.exists() else []
    return {"notes": {
        "device": name, "compute_capability": f"{p['major']}.{p['minor']}", "sms": ctx.sms,
        "memory_gib": round(p["totalGlobalMem"] / 2 ** 30, 1), "l2_mib": round(p["l2CacheSize"] / MIB, 1),
        "cupy": cp.__version__, "numpy": np.__version__, "torch": getattr(ctx.torch, "__version__", None),
        "python": platform.python_version(),
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "test_sections": " ; ".join(r.strip("| ").replace(" | ", ", ") for r in rows) or None,
        "cupy_cache_dir": os.environ.get("CUPY_CACHE_DIR", "~/.cupy/kernel_cache")}}


def cold_start(ctx):
    from tinylazy.fast import kernels as _kernels
    first = {"elementwise.cu": "relu_fwd_f32", "softmax_xent.cu": "softmax_xent_fwd_f32", "optim.cu": "adam_f32",
             "dropout.cu": "dropout_f32"}
    rows = []
    for file, name in first.items():
        fresh = file not in _kernels._MODULES
        t0 = time.perf_counter()
        _kernels._function(name)                             # compile (or load from CuPy's disk cache) + load
        rows.append({"file": file, "first_use_s": round(time.perf_counter() - t0, 3), "fresh_in_process": fresh})
    return {"rows": rows, "notes": {"meaning": "host seconds for the first kernel of each file; the test run before "
                                               "this usually filled CuPy's disk cache, so these are cache loads"}}


def copy(ctx):
    cp = ctx.cp
    x, y = cp.ones(N, dtype=cp.float32), cp.empty(N, dtype=cp.float32)
    kernel = cp.RawKernel(COPY_SOURCE, "copy_f4")
    nbytes, rows = 2 * N * 4, []
    for blocks in [ctx.sms * k for k in (4, 8, 16, 32, 64)] + [N // 4 // 256]:
        ms = ctx.gpu_ms(lambda: kernel((blocks,), (256,), (x, y, N // 4)))
        rows.append({"method": f"SM copy kernel, float4, {blocks} blocks x 256", "ms": round(ms, 4),
                     "GB/s": round(gbps(nbytes, ms), 1)})
    assert bool((y == 1).all()), "copy kernel produced wrong data"
    runtime = cp.cuda.runtime
    ms = ctx.gpu_ms(lambda: runtime.memcpyAsync(y.data.ptr, x.data.ptr, N * 4, runtime.memcpyDeviceToDevice, 0))
    rows.append({"method": "cudaMemcpyAsync device-to-device (copy engine)", "ms": round(ms, 4),
                 "GB/s": round(gbps(nbytes, ms), 1)})
    ctx.copy_gbps = max(r["GB/s"] for r in rows[:-1])
    return {"rows": rows, "notes": {"copy_GBps": ctx.copy_gbps, "array_MiB": N * 4 // MIB,
                                    "bytes_counted": "reads + writes", "l2_flushed_before_each_rep": True}}


def _torch_ops(torch):
    F, aten = torch.nn.functional, torch.ops.aten
    fwd = {"identity": lambda t: t.clone(), "relu": torch.relu, "gelu": F.gelu,
           "gelu_tanh": lambda t: F.gelu(t, approximate="tanh"), "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    bwd = {"identity": lambda g, s: g.clone(), "relu": lambda g, y: aten.threshold_backward(g, y, 0),
           "gelu": lambda g, x: aten.gelu_backward(g, x), "gelu_tanh": lambda g, x: aten.gelu_backward(g, x, approximate="tanh"),
           "sigmoid": aten.sigmoid_backward, "tanh": aten.tanh_backward}
    return fwd, bwd


def _reference(fn):
    """fn through tinylazy's reference path (plain CuPy array ops): the custom kernels switched off."""
    def run():
        os.environ["TINYLAZY_KERNELS"] = "0"
        try:
            return fn()
        finally:
            os.environ.pop("TINYLAZY_KERNELS", None)
    return run


def kernels(ctx):
    from tinylazy import cuda as tlcuda
    cp, torch = ctx.cp, ctx.torch
    rows, C = N // 1024, 1024
    x = cp.random.standard_normal(N, dtype=cp.float32)
    g = cp.random.standard_normal(N, dtype=cp.float32)
    b = cp.random.standard_normal(C, dtype=cp.float32)
    target = cp.random.randint(0, C, rows).astype(cp.int64)
    x2, g2 = x.reshape(rows, C), g.reshape(rows, C)
    tfwd, tbwd = _torch_ops(torch) if torch else ({}, {})
    tx, tg, tb, tt = ((torch.as_tensor(a, device="cuda") for a in (x, g, b, target)) if torch else (None,) * 4)
    cases = []                                               # (op, bytes, tinylazy, torch or None)
    for act in tlcuda.ACTIVATIONS:
        saved = tlcuda.act_fwd(x, act) if tlcuda.act_saves_output(act) else x
        tsaved = torch.as_tensor(saved, device="cuda") if torch else None
        cases.append((f"{act} forward", 8 * N, lambda a=act: tlcuda.act_fwd(x, a), torch and (lambda a=act: tfwd[a](tx))))
        cases.append((f"{act} backward", 12 * N, lambda a=act, s=saved: tlcuda.act_bwd(g, s, a),
                      torch and (lambda a=act, s=tsaved: tbwd[a](tg, s))))
    for act in ("relu", "gelu"):
        y2 = tlcuda.bias_act_fwd(x2, b, act)
        s2 = y2 if tlcuda.act_saves_output(act) else x2
        ts2 = torch.as_tensor(s2, device="cuda") if torch else None
        tx2, tg2 = (tx.view(rows, C), tg.view(rows, C)) if torch else (None, None)
        cases.append((f"bias+{act} forward ({rows}x{C})", 8 * N + 4 * C, lambda a=act: tlcuda.bias_act_fwd(x2, b, a),
                      torch and (lambda a=act: tfwd[a](tx2 + tb))))
        cases.append((f"bias+{act} backward, incl. bias grad", 12 * N + 4 * C,
                      lambda a=act, s=s2: tlcuda.bias_act_bwd(g2, s, a, b=b),
                      torch and (lambda a=act, s=ts2: tbwd[a](tg2, s).sum(0))))
    loss, stats = tlcuda.softmax_xent_fwd(x2, target, 0.1)
    cases.append((f"softmax xent forward ({rows}x{C})", 4 * N + 20 * rows, lambda: tlcuda.softmax_xent_fwd(x2, target, 0.1),
                  torch and (lambda: torch.nn.functional.cross_entropy(tx.view(rows, C), tt, reduction="none",
                                                                       label_smoothing=0.1))))
    grad_rows = cp.ones(rows, dtype=cp.float32)
    cases.append(("softmax xent backward", 8 * N + 20 * rows,
                  lambda: tlcuda.softmax_xent_bwd(grad_rows, x2, target, stats, 0.1),
                  torch and (lambda: torch.softmax(tx.view(rows, C), 1))))      # torch: the softmax alone, a lower bound
    cases.append(("dropout p=0.5 forward", 8 * N, lambda: tlcuda.dropout_fwd(x, 0.5, 7, 0),
                  torch and (lambda: torch.nn.functional.dropout(tx, 0.5, training=True))))
    out = []
    for op, nbytes, mine, theirs in cases:
        row = {"op": op}
        for label, fn in (("tinylazy", mine), ("cupy", _reference(mine)), ("torch", theirs)):
            if not fn:
                continue
            try:
                ms = ctx.gpu_ms(fn, reps=8 if label != "cupy" else 3, warmup=1)
                row[f"{label}_ms"] = round(ms, 4)
                row[f"{label}_GB/s"] = round(gbps(nbytes, ms), 1)
                if label == "tinylazy" and ctx.copy_gbps:
                    row["tinylazy_frac_of_copy"] = round(gbps(nbytes, ms) / ctx.copy_gbps, 3)
            except Exception as e:                          # e.g. out of memory in a reference path
                row[f"{label}_error"] = f"{type(e).__name__}: {e}"[:200]
            ctx.free()
        out.append(row)
    return {"rows": out, "notes": {"elements": N, "dtype": "float32", "copy_GBps": ctx.copy_gbps,
                                   "bytes": "compulsory bytes of the op (reads + writes), the same for all three columns",
                                   "cupy": "tinylazy's reference path (NumPy-style CuPy array ops) with TINYLAZY_KERNELS=0",
                                   "torch softmax xent backward": "torch.softmax only: a lower bound of its backward"}}


def host(ctx):
    from cupyx.profiler import benchmark
    from tinylazy.fast import kernels as _kernels
    from tinylazy import cuda as tlcuda
    cp, torch = ctx.cp, ctx.torch
    raw = _kernels._function("relu_fwd_f32")
    rows = []
    for n in (1, 4096, 1 << 16):
        x, y = cp.ones(n, dtype=cp.float32), cp.empty(n, dtype=cp.float32)
        cases = {"tinylazy.cuda.relu_fwd (wrapper + alloc + launch)": lambda: tlcuda.relu_fwd(x),
                 "bare RawKernel launch (preallocated output)": lambda: raw((-(-n // 1024),), (256,), (x, y, n)),
                 "cupy.maximum(x, 0)": lambda: cp.maximum(x, 0)}
        if torch:
            tx = torch.as_tensor(x, device="cuda")
            cases["torch.relu"] = lambda: torch.relu(tx)
        for name, fn in cases.items():
            r = benchmark(fn, n_repeat=2000, n_warmup=100)
            rows.append({"n": n, "call": name, "host_us": round(float(np.mean(r.cpu_times)) * 1e6, 2),
                         "gpu_us": round(float(np.mean(r.gpu_times)) * 1e6, 2)})
    return {"rows": rows, "notes": {"tool": "cupyx.profiler.benchmark (2000 calls): host time per call and GPU time"}}


def optimizer(ctx):
    from cupyx.profiler import benchmark
    from tinylazy.fast import kernels as _kernels
    from tinylazy import cuda as tlcuda
    cp, torch = ctx.cp, ctx.torch
    models = {"MLP 784-1024-1024-10": [(1024, 784), (1024,), (1024, 1024), (1024,), (10, 1024), (10,)],
              "100 tensors (50 x 512x512 + 50 x 512)": [(512, 512), (512,)] * 50}
    rows = []
    for model, shapes in models.items():
        count = sum(int(np.prod(s)) for s in shapes)
        params = [cp.random.standard_normal(s, dtype=cp.float32) for s in shapes]
        grads = [cp.random.standard_normal(s, dtype=cp.float32) for s in shapes]
        m, v = [cp.zeros(s, dtype=cp.float32) for s in shapes], [cp.zeros(s, dtype=cp.float32) for s in shapes]
        step = [0]

        def tl_step():
            step[0] += 1
            tlcuda.adam_step(params, grads, m, v, step[0], lr=1e-3)
        before = _kernels.LAUNCHES
        tl_step()
        launches = _kernels.LAUNCHES - before
        ms = ctx.gpu_ms(tl_step, reps=20, warmup=3)
        bound_ms = 28 * count / (ctx.copy_gbps * 1e9) * 1e3 if ctx.copy_gbps else None
        row = {"model": model, "parameters": count, "tensors": len(shapes), "tinylazy_launches_per_step": launches,
               "tinylazy_ms": round(ms, 4), "bound_ms_28B_per_param": bound_ms and round(bound_ms, 4),
               "tinylazy_frac_of_bound": bound_ms and round(bound_ms / ms, 3),
               "tinylazy_host_us": round(float(np.mean(benchmark(tl_step, n_repeat=200, n_warmup=10).cpu_times)) * 1e6, 1)}
        if torch:
            tp = [torch.nn.Parameter(torch.as_tensor(p, device="cuda").clone()) for p in params]
            for t, gr in zip(tp, grads):
                t.grad = torch.as_tensor(gr, device="cuda").clone()
            for label, kwargs in (("torch_fused", {"fused": True}), ("torch_foreach", {"foreach": True})):
                opt = torch.optim.Adam(tp, lr=1e-3, **kwargs)
                tms = ctx.gpu_ms(opt.step, reps=20, warmup=3)
                row[f"{label}_ms"] = round(tms, 4)
                row[f"{label}_host_us"] = round(float(np.mean(benchmark(opt.step, n_repeat=200, n_warmup=10).cpu_times)) * 1e6, 1)
            row["speedup_vs_torch_fused"] = round(row["torch_fused_ms"] / ms, 3)
        rows.append(row)
    return {"rows": rows, "notes": {"dtype": "float32", "l2_flushed_before_each_rep": True, "copy_GBps": ctx.copy_gbps}}


def _mlp(nn):
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def _lenet(nn):
    return nn.Sequential(nn.Conv2d(1, 6, kernel_size=5, padding=2), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
                         nn.Conv2d(6, 16, kernel_size=5), nn.Sigmoid(), nn.AvgPool2d(kernel_size=2, stride=2),
                         nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.Sigmoid(), nn.Linear(120, 84), nn.Sigmoid(),
                         nn.Linear(84, 10))


def _step_ms(ctx, lib, nn, optim, F, build, batch, steps=20):
    """ms per training step (forward, cross-entropy, backward, SGD step) between CUDA events over `steps` steps."""
    net = build(nn).to("cuda")
    X = lib.randn(batch, 1, 28, 28, device="cuda")
    y = lib.randint(0, 10, (batch,), device="cuda")
    opt = optim.SGD(net.parameters(), lr=0.05, momentum=0.9)

    def step():
        opt.zero_grad()
        loss = F.cross_entropy(net(X), y)
        loss.backward()
        opt.step()
        return loss
    for _ in range(3):
        loss = step()
    ctx.start.record()
    for _ in range(steps):
        loss = step()
    ctx.end.record()
    ctx.end.synchronize()
    final = float(loss.item())
    assert np.isfinite(final), f"loss is {final}"
    return ctx.cp.cuda.get_elapsed_time(ctx.start, ctx.end) / steps


def _budget(seconds, fn):
    """fn() under its own time budget (SIGALRM); the enclosing section's budget is restored afterwards."""
    outer, t0 = signal.alarm(seconds), time.monotonic()
    try:
        return fn()
    finally:
        signal.alarm(0)
        if outer:
            signal.alarm(max(1, int(outer - (time.monotonic() - t0))))


def training(ctx):
    rows = []
    for model, build in (("MLP 784-1024-1024-10", _mlp), ("LeNet", _lenet)):
        for batch in (128, 1024):
            row = {"model": model, "batch": batch}
            try:
                import tinylazy as tl
                import tinylazy.nn.functional as TF
                from tinylazy import nn as tnn
                from tinylazy import optim as toptim
                row["tinylazy_ms"] = round(_budget(8, lambda: _step_ms(ctx, tl, tnn, toptim, TF, build, batch)), 3)
            except Exception as e:
                row["tinylazy_error"] = f"{type(e).__name__}: {e}"[:300]
            if ctx.torch:
                torch = ctx.torch
                try:
                    row["torch_ms"] = round(_budget(8, lambda: _step_ms(ctx, torch, torch.nn, torch.optim,
                                                                       torch.nn.functional, build, batch)), 3)
                except Exception as e:
                    row["torch_error"] = f"{type(e).__name__}: {e}"[:300]
            if "tinylazy_ms" in row and "torch_ms" in row:
                row["torch_over_tinylazy"] = round(row["torch_ms"] / row["tinylazy_ms"], 3)
            rows.append(row)
            ctx.free()
    return {"rows": rows, "notes": {"step": "zero_grad, forward, cross_entropy, backward, SGD(momentum=0.9) step; "
                                            "CUDA events over 20 steps after 3 warm-up steps; float32",
                                    "torch_over_tinylazy": "> 1 means tinylazy is faster"}}


def no_sync(ctx):
    """A warm tinylazy MLP training step (cross_entropy, Adam) under cupyx.allow_synchronize(False), which
    raises at any synchronizing CuPy call (tests/test_gpu_emulated.py checks the same on the CPU); then the
    same step captured in a CUDA graph on a non-blocking stream and replayed (what a captured step needs)."""
    import cupyx

    import tinylazy as tl
    import tinylazy.nn.functional as TF
    from tinylazy import nn as tnn
    from tinylazy import optim as toptim
    net = _mlp(tnn).to("cuda")
    X, y = tl.randn(128, 1, 28, 28, device="cuda"), tl.randint(0, 10, (128,), device="cuda")
    opt = toptim.Adam(net.parameters(), lr=1e-3)

    def step():
        opt.zero_grad(set_to_none=False)
        TF.cross_entropy(net(X), y).backward()
        opt.step()
    for _ in range(3):
        step()
    ctx.cp.cuda.Device().synchronize()
    rows = []
    try:
        with cupyx.allow_synchronize(False):
            step()
        rows.append({"check": "step under cupyx.allow_synchronize(False)", "result": "ok: no synchronizing call"})
    except Exception as e:
        rows.append({"check": "step under cupyx.allow_synchronize(False)", "result": f"{type(e).__name__}: {e}"[:300]})
    try:
        stream = ctx.cp.cuda.Stream(non_blocking=True)
        with stream:
            stream.begin_capture()
            try:
                step()
            finally:
                graph = stream.end_capture()
            graph.launch()
        stream.synchronize()
        rows.append({"check": "step captured in a CUDA graph and replayed", "result": "ok"})
    except Exception as e:
        rows.append({"check": "step captured in a CUDA graph and replayed", "result": f"{type(e).__name__}: {e}"[:300]})
    return {"rows": rows, "notes": {"model": "MLP 784-1024-1024-10, batch 128, Adam, zero_grad(set_to_none=False)"}}


# (name, function, time budget in seconds): 200 s in all, scaled down by --budget (gpu_check.sh gives 125 s)
SECTIONS = [("environment", environment, 10), ("cold_start", cold_start, 20), ("copy", copy, 15),
            ("kernels", kernels, 40), ("host", host, 15), ("optimizer", optimizer, 20), ("training", training, 65),
            ("no_sync", no_sync, 15)]


# ================================ output ================================================================
def write(results, out_dir, stem):
    (out_dir / f"{stem}.json").write_text(json.dumps(results, indent=1, default=str))
    lines = [f"# tinylazy GPU check — {stem}", ""]
    for name, section in results.items():
        lines += [f"## {name}", ""]
        if "error" in section:
            lines += ["```", section["error"].strip(), "```", ""]
            continue
        for key, value in section.get("notes", {}).items():
            lines.append(f"- {key}: {value}")
        rows = section.get("rows", [])
        if rows:
            cols = list(dict.fromkeys(k for r in rows for k in r))
            lines += ["", "| " + " | ".join(cols) + " |", "|" + " --- |" * len(cols)]
            lines += ["| " + " | ".join(str(r.get(c, "")) for c in cols) + " |" for r in rows]
        lines += ["", f"_{section.get('seconds', '?')} s_", ""]
    (out_dir / f"{stem}.md").write_text("\n".join(lines))


class SectionTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise SectionTimeout("section ran past its time budget")


# ================================ the cuda test subset of gpu_check.sh ===================================
# Op test files first (the ops most models use come first), then the rest; the kernel and step sections of
# gpu_check.sh have already run their files, and the emulator/packaging/CuPy-signature tests are cpu-only.
PRIORITY = ["test_linear", "test_conv", "test_pool", "test_activation", "test_loss", "test_norm", "test_embedding",
            "test_elementwise", "test_indexing", "test_shape", "test_reduce", "test_linalg", "test_tensor",
            "test_autograd", "test_init", "test_layers", "test_serialization", "test_meta"]
ALREADY_RUN = {"test_kernels", "test_optim", "test_lazy", "test_lazy_materialize", "test_fusion", "test_data",
               "test_d2l_builders", "test_module", "test_gpu_emulated", "test_cupy_api", "test_packaging", "test_demo"}


def select_tests(ids, per_function=3):
    """From the collected test ids (TINYLAZY_TEST_DEVICE=cuda), the cuda cases to run on a cold machine:
    for each test function, up to `per_function` cases, float32 preferred (no float64/float16 in the id, when
    the function has such cases), spread evenly over its parameter list so that different ops and layouts
    are hit; files in PRIORITY order. Every op is then exercised once or more in float32 in a few hundred
    cases instead of ~1,400, which keeps NVRTC's compiles (one per distinct CuPy kernel) within the pass."""
    by_function = {}
    for nodeid in ids:
        name, _, params = nodeid.partition("[")
        module = Path(name.split("::")[0]).stem
        if "cuda" not in params.rstrip("]").split("-") or module in ALREADY_RUN:
            continue
        by_function.setdefault(name, []).append(nodeid)
    chosen = []
    for name, cases in by_function.items():
        preferred = [c for c in cases if not re.search(r"float64|float16|bfloat16|complex", c)] or cases
        k = min(per_function, len(preferred))
        picks = [preferred[round(i * (len(preferred) - 1) / max(k - 1, 1))] for i in range(k)]
        chosen += list(dict.fromkeys(picks))
    rank = {m: i for i, m in enumerate(PRIORITY)}
    return sorted(chosen, key=lambda c: rank.get(Path(c.split("::")[0]).stem, len(PRIORITY)))


def write_selected_tests(path):
    env = dict(os.environ, TINYLAZY_TEST_DEVICE="cuda")
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", "tests"],
                         capture_output=True, text=True, env=env)
    ids = [line.strip() for line in out.stdout.splitlines() if "::" in line]
    chosen = select_tests(ids)
    Path(path).write_text("".join(c + "\n" for c in chosen))
    print(f"selected {len(chosen)} of {len(ids)} collected test cases -> {path}")
    return 0 if chosen else 1


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.environ.get("OUT") or "bench/results")
    parser.add_argument("--summary", default=None, help="gpu_check.sh's summary of the test sections")
    parser.add_argument("--budget", type=float, default=None, help="seconds for all sections (scales their budgets)")
    parser.add_argument("--only", nargs="*", help="run only these sections")
    parser.add_argument("--select-tests", metavar="PATH", help="write the cuda test cases of the ops pass and exit")
    args = parser.parse_args()
    if args.select_tests:
        raise SystemExit(write_selected_tests(args.select_tests))
    total = sum(budget for _, _, budget in SECTIONS)
    scale = min(1.0, (args.budget - 5) / total) if args.budget else 1.0
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "gpu-check-" + datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d-%H%M")
    results = {}
    try:
        ctx = Ctx(args)
    except Exception:
        results["setup"] = {"error": traceback.format_exc()}
        write(results, out_dir, stem)
        print("setup FAILED:\n" + results["setup"]["error"], flush=True)
        raise SystemExit(1)
    signal.signal(signal.SIGALRM, _alarm)
    failed = False
    for name, fn, budget in SECTIONS:
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        signal.alarm(max(3, int(budget * scale)))
        try:
            results[name] = fn(ctx)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            results[name] = {"error": traceback.format_exc()}
            failed = True
        finally:
            signal.alarm(0)
        results[name]["seconds"] = round(time.perf_counter() - t0, 1)
        print(f"{name}: {'FAILED' if 'error' in results[name] else 'ok'} in {results[name]['seconds']} s", flush=True)
        try:
            ctx.free()
        except Exception:
            pass
        write(results, out_dir, stem)
    print(f"wrote {out_dir / (stem + '.json')} and .md")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
