"""Tests of the CUDA hot path: kernels/*.cu, the references (ops/epilogue.py, ...), tinylazy/fast (dispatch, launches).

(a) every .cu file compiles with nvcc for sm_90, and with NVRTC (as CuPy compiles it) where libnvrtc exists;
(b) every reference function equals PyTorch on the CPU (float32 and float64, empty, tiny, odd shapes);
    the optimizer references equal torch.optim over several steps; the dropout mask is Philox4x32-10;
(c) every kernel equals its reference, through the real GPU branch of tinylazy.cuda, on two back ends:
    "emulator" runs the .cu code on the CPU (tests/kernel_emulator.py, needs g++), "cuda" on a real GPU
    (skipped, with the reason, when tinylazy.cuda.is_available() is False).
"""
import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tinylazy import _xpmath, backend
from tinylazy.fast import kernels as _kernels
from tinylazy import cuda as tlcuda

_spec = importlib.util.spec_from_file_location("kernel_emulator", Path(__file__).with_name("kernel_emulator.py"))
emulator = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(emulator)

CU_FILES = ("elementwise.cu", "softmax_xent.cu", "optim.cu", "dropout.cu", "checks.cu")
ONLY_DEVICE = os.environ.get("TINYLAZY_TEST_DEVICE", "")        # "cuda" on a GPU check, "cpu", or unset: both
GPU_BACKENDS = ["cuda"] if ONLY_DEVICE.startswith("cuda") else ["emulator"] if ONLY_DEVICE == "cpu" else ["emulator", "cuda"]
cpu_only = pytest.mark.skipif(ONLY_DEVICE.startswith("cuda"), reason="compile checks run in the cpu suite")
DTYPES = (np.float32, np.float64)
ACTS = tlcuda.ACTIVATIONS


def tol(dtype):
    return dict(rtol=2e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-13)


def rand(shape, dtype, seed=0, scale=3.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(dtype)


@pytest.fixture
def torch():
    return pytest.importorskip("torch")


def expected_kernels(file):
    """Every kernel name that tinylazy/fast/kernels.py may launch from `file`."""
    names = set()
    for s in ("f32", "f64"):
        if file == "elementwise.cu":
            names.add(f"col_sum_{s}")
            for a in ACTS:
                names |= {f"{a}_fwd_{s}", f"{a}_bwd_{s}", f"bias_{a}_fwd_{s}", f"bias_{a}_bwd_cols_{s}",
                          f"bias_{a}_bwd_planes_{s}"}
        elif file == "softmax_xent.cu":
            names |= {f"softmax_xent_fwd_{s}", f"softmax_xent_bwd_{s}"}
        elif file == "optim.cu":
            names |= {f"adam_{s}", f"sgd_{s}"}
        elif file == "checks.cu":
            names |= {f"class_targets_{s}", "index_range"}
        else:
            names |= {f"dropout_{s}", "dropout_mask"}
    return names


# =============================== (a) compilation =========================================================
@pytest.mark.parametrize("file", CU_FILES)
def test_entry_point_table_names_every_kernel_once(file):
    """fast/kernels.py spells out every extern "C" name it launches (greppable), each found in its file."""
    assert _kernels.ENTRY_POINTS[file] == expected_kernels(file)
    assert all(_kernels.FILE_OF[name] == file for name in expected_kernels(file))


@cpu_only
@pytest.mark.parametrize("file", CU_FILES)
def test_cu_compiles_with_nvcc(file, tmp_path):
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not installed")
    src = tmp_path / file
    src.write_text(_kernels.source(file))                 # exactly the text CuPy compiles
    out = subprocess.run([nvcc, "-arch=sm_90", "--ptx", "-std=c++17", src.name, "-o", "out.ptx"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    entries = set(re.findall(r"\.entry\s+(\w+)\(", (tmp_path / "out.ptx").read_text()))
    assert entries == expected_kernels(file)


def test_the_seam_imports_one_way():
    """ops hand their formulas to tinylazy.fast and never import its kernels module; fast imports no op."""
    import ast
    package = Path(__file__).resolve().parents[1] / "tinylazy"

    def imported(path):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                names |= {f"{node.module or ''}.{a.name}".strip(".") for a in node.names} | {node.module or ""}
            elif isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
        return names
    for path in sorted((package / "ops").glob("*.py")):
        assert not any("kernels" in name for name in imported(path)), path.name
    for path in sorted((package / "fast").glob("*.py")):
        assert not any(name.split(".")[0] in ("ops", "nn", "optim") for name in imported(path)), path.name


def _find_nvrtc():
    import ctypes.util
    import glob
    candidates = [ctypes.util.find_library("nvrtc")]
    for folder in sys.path + ["/usr/local/cuda/lib64"] + glob.glob("/usr/local/cuda-*/lib64"):
        candidates += sorted(glob.glob(f"{folder}/nvidia/*/lib/libnvrtc.so*")) + sorted(glob.glob(f"{folder}/libnvrtc.so*"))
    for c in candidates:
        if c and "builtins" not in c and ".alt." not in c:
            try:
                for builtins in glob.glob(str(Path(c).parent / "libnvrtc-builtins.so*")):
                    if ".alt." not in builtins:        # NVRTC dlopens it by name: load it from the same folder
                        ctypes.CDLL(builtins, mode=ctypes.RTLD_GLOBAL)
                return ctypes.CDLL(c)
            except OSError:
                continue
    return None


@cpu_only
@pytest.mark.parametrize("file", CU_FILES)
def test_cu_compiles_with_nvrtc(file):
    """NVRTC has no system headers: this is the compile that cupy.RawModule does (with CuPy's -ftz=true)."""
    import ctypes
    lib = _find_nvrtc()
    if lib is None:
        pytest.skip("libnvrtc is not installed (pip install nvidia-cuda-nvrtc to run this check without a GPU)")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), _kernels.source(file).encode(), file.encode(), 0, None, None) == 0
    opts = [b"-std=c++17", b"-arch=compute_90", b"-ftz=true"]
    status = lib.nvrtcCompileProgram(prog, len(opts), (ctypes.c_char_p * len(opts))(*opts))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(prog, log)
    lib.nvrtcDestroyProgram(ctypes.byref(prog))
    assert status == 0, log.value.decode()


# =============================== (b) references against PyTorch ========================================
TORCH_ACT = {
    "identity": lambda F, t: t * 1,
    "relu": lambda F, t: F.relu(t),
    "gelu": lambda F, t: F.gelu(t),
    "gelu_tanh": lambda F, t: F.gelu(t, approximate="tanh"),
    "sigmoid": lambda F, t: F.sigmoid(t),
    "tanh": lambda F, t: F.tanh(t),
}


def torch_fwd_bwd(torch, fn, inputs, grad):
    ts = [torch.tensor(a, requires_grad=True) for a in inputs]
    out = fn(*ts)
    out.backward(torch.tensor(grad))
    return out.detach().numpy(), [t.grad.numpy() for t in ts]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(0,), (1,), (1023,), (7, 13), (3, 5, 2)])
@pytest.mark.parametrize("act", ACTS)
def test_activation_reference_matches_torch(torch, act, shape, dtype):
    x, g = rand(shape, dtype, 1), rand(shape, dtype, 2)
    y = tlcuda.act_fwd(x, act)
    dx = tlcuda.act_bwd(g, y if tlcuda.act_saves_output(act) else x, act)
    ty, (tdx,) = torch_fwd_bwd(torch, lambda t: TORCH_ACT[act](torch.nn.functional, t), [x], g)
    assert y.dtype == dx.dtype == dtype and y.shape == dx.shape == shape
    np.testing.assert_allclose(y, ty, **tol(dtype))
    np.testing.assert_allclose(dx, tdx, **tol(dtype))


def test_named_activation_functions(torch):
    x, g = rand((5, 9), np.float64), rand((5, 9), np.float64, 1)
    F = torch.nn.functional
    for fwd, bwd, ref in [(tlcuda.relu_fwd, tlcuda.relu_bwd, F.relu), (tlcuda.sigmoid_fwd, tlcuda.sigmoid_bwd, F.sigmoid),
                          (tlcuda.tanh_fwd, tlcuda.tanh_bwd, F.tanh)]:
        ty, (tdx,) = torch_fwd_bwd(torch, ref, [x], g)
        np.testing.assert_allclose(fwd(x), ty, **tol(np.float64))
        np.testing.assert_allclose(bwd(g, fwd(x)), tdx, **tol(np.float64))
    for approximate in ("none", "tanh"):
        ty, (tdx,) = torch_fwd_bwd(torch, lambda t: F.gelu(t, approximate=approximate), [x], g)
        np.testing.assert_allclose(tlcuda.gelu_fwd(x, approximate), ty, **tol(np.float64))
        np.testing.assert_allclose(tlcuda.gelu_bwd(g, x, approximate), tdx, **tol(np.float64))
    np.testing.assert_array_equal(tlcuda.relu_bwd(g, x), tlcuda.relu_bwd(g, tlcuda.relu_fwd(x)))
    with pytest.raises(ValueError, match="approximate"):
        tlcuda.gelu_fwd(x, "fast")
    with pytest.raises(ValueError, match="unknown activation"):
        tlcuda.act_fwd(x, "swish")


def test_activations_extreme_inputs():
    x = np.array([-1e4, -100.0, -0.0, 0.0, 100.0, 1e4, np.inf, -np.inf], dtype=np.float32)
    with np.errstate(over="raise", invalid="raise", divide="raise"):                       # stable formulas: no overflow anywhere
        s = tlcuda.sigmoid_fwd(x)
    np.testing.assert_allclose(s, [0, 3.7835e-44, 0.5, 0.5, 1, 1, 1, 0], rtol=1e-4, atol=1e-45)
    np.testing.assert_array_equal(tlcuda.gelu_fwd(x[[0, 5]]), [-0.0, 1e4])
    assert np.isnan(tlcuda.relu_fwd(np.array([np.nan]))[0])


@pytest.mark.parametrize("in_place", [False, True])
@pytest.mark.parametrize("dtype", (np.float16, np.float32, np.float64))
def test_relu_backward_reference_is_torch_threshold_backward_bit_for_bit(torch, dtype, in_place):
    """0 where y <= 0, else g: an off unit's NaN or inf gradient gives +0, a NaN y passes g, -0.0 is off."""
    g = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0, 2.0, 3.0, -4.0, np.nan, np.inf], dtype)
    y = np.array([0.0, -0.0, 0.0, 0.0, 1.0, np.nan, -1.0, 5.0, 2.0, np.nan], dtype)
    want = torch.ops.aten.threshold_backward(torch.tensor(g), torch.tensor(y), 0).numpy()
    bits = f"i{np.dtype(dtype).itemsize}"
    as_2d = lambda a: a.reshape(2, 5).T                                        # a transposed view
    for g2, y2, want2 in ((g, y, want), (as_2d(g), as_2d(y), as_2d(want))):
        gin = g2.copy(order="K")
        dx = tlcuda.relu_bwd(gin, y2, overwrite_grad=in_place)
        assert dx.dtype == dtype and dx.shape == g2.shape and (dx is gin) == in_place
        np.testing.assert_array_equal(dx.view(bits), want2.view(bits))
        if not in_place:
            np.testing.assert_array_equal(gin.view(bits), g2.view(bits))          # the input gradient untouched
    dx, db = tlcuda.bias_act_bwd(g.reshape(2, 5), y.reshape(2, 5), "relu", b=np.zeros(5, dtype))
    np.testing.assert_array_equal(dx.view(bits), want.reshape(2, 5).view(bits))
    np.testing.assert_array_equal(db, dx.sum(axis=0))


@pytest.mark.parametrize("in_place", [False, True])
def test_relu_backward_reference_of_a_dtype_without_an_int_as_wide(in_place):
    """longdouble has no int of its width to mask: the same rule through a masked write."""
    g = np.array([np.nan, np.inf, 1.5, 2.0, -4.0, 7.0], np.longdouble)
    y = np.array([0.0, -0.0, -1.0, np.nan, 3.0, 0.0], np.longdouble)
    gin = g.copy()
    dx = tlcuda.relu_bwd(gin, y, overwrite_grad=in_place)
    assert dx.dtype == np.longdouble and (dx is gin) == in_place
    np.testing.assert_array_equal(dx, [0.0, 0.0, 0.0, 2.0, -4.0, 0.0])


def test_erf_is_accurate(torch):
    x = np.concatenate([np.linspace(-7, 7, 20001), [0.0, 1e-300, 0.84375, 1.25, 1 / 0.35, 6.0, 40.0, np.inf, -np.inf]])
    exact = np.array([math.erf(v) for v in x])
    ulps = np.abs(_xpmath.erf(x) - exact) / np.spacing(np.maximum(np.abs(exact), 1e-300))
    assert ulps.max() <= 1.0
    assert np.isnan(_xpmath.erf(np.array([np.nan]))[0])
    x32 = x.astype(np.float32)
    np.testing.assert_allclose(_xpmath.erf(x32), torch.erf(torch.tensor(x32)).numpy(), rtol=1.2e-7, atol=1e-45)


def _ulps(ours, exact, dtype):
    """|ours - exact| in units of the spacing of `dtype` at exact (exact: float64 values)."""
    spacing = np.spacing(np.abs(exact).astype(dtype)).astype(np.float64)
    return np.abs(ours.astype(np.float64) - exact) / spacing


def test_erfc_is_accurate():
    """erfc against math.erfc: both are fdlibm-style and within 2.5 ulps of the truth, so within 5 of each other
    in float64 (the relative precision holds down to the subnormals, x = 27); float32 is float64 rounded once."""
    x = np.concatenate([np.linspace(-27, 27, 54001), np.geomspace(1e-300, 1, 300), -np.geomspace(1e-300, 1, 300),
                        [0.0, -0.0, 0.25, 0.84375, 1.25, 1 / 0.35, 6.0, 26.5, 27.5, 28.0, -28.0, 40.0, -40.0]])
    exact = np.array([math.erfc(v) for v in x])
    assert _ulps(_xpmath.erfc(x), exact, np.float64).max() <= 5
    x32 = np.concatenate([x.astype(np.float32), np.float32([1e-45, -1e-45, 9.5, 10.0, 10.5])])
    exact32 = np.array([math.erfc(v) for v in x32.astype(np.float64)])
    out32 = _xpmath.erfc(x32)
    assert out32.dtype == np.float32 and _ulps(out32, exact32, np.float32).max() <= 1
    specials = np.array([np.inf, -np.inf, np.nan])
    for dtype in DTYPES:
        out = _xpmath.erfc(specials.astype(dtype))
        assert out.dtype == dtype and out[0] == 0 and out[1] == 2 and np.isnan(out[2])
    assert _xpmath.erfc(np.arange(3)).dtype == np.float64


BIAS_LAYOUTS = [((0, 5), -1), ((1, 1), -1), ((33, 31), -1), ((64, 32), -1), ((1023, 3), -1),
                ((4, 3, 5, 7), 1), ((2, 6, 4, 4), 1), ((2, 0, 3), 1), ((5, 2, 3), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, axis", BIAS_LAYOUTS)
@pytest.mark.parametrize("act", ACTS)
def test_bias_act_reference_matches_torch(torch, act, shape, axis, dtype):
    x, g = rand(shape, dtype, 1), rand(shape, dtype, 2)
    b = rand((shape[axis],), dtype, 3)
    y = tlcuda.bias_act_fwd(x, b, act, axis)
    saved = y if tlcuda.act_saves_output(act) else x
    dx, db = tlcuda.bias_act_bwd(g, saved, act, b=b, axis=axis)
    view = (-1,) + (1,) * (len(shape) - axis % len(shape) - 1)
    ty, (tdx, tdb) = torch_fwd_bwd(torch, lambda t, u: TORCH_ACT[act](torch.nn.functional, t + u.reshape(view)), [x, b], g)
    assert y.dtype == dx.dtype == db.dtype == dtype and db.shape == b.shape
    np.testing.assert_allclose(y, ty, **tol(dtype))
    np.testing.assert_allclose(dx, tdx, **tol(dtype))
    np.testing.assert_allclose(db, tdb, rtol=tol(dtype)["rtol"], atol=tol(dtype)["atol"] * max(1, x.size))


def test_bias_act_errors():
    x = np.zeros((3, 4))
    with pytest.raises(ValueError, match=r"expected \(4,\)"):
        tlcuda.bias_act_fwd(x, np.zeros(3), "relu")
    with pytest.raises(ValueError, match="needed"):
        tlcuda.bias_act_bwd(x, x, "gelu")


XENT_SHAPES = [(0, 5), (1, 1), (1, 10), (17, 1023), (64, 12), (5, 31)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("shape", XENT_SHAPES)
def test_softmax_xent_reference_matches_torch(torch, shape, smoothing, dtype):
    rows, C = shape
    z, g = rand(shape, dtype, 1), rand((rows,), dtype, 2)
    t = np.random.default_rng(3).integers(0, C, rows)
    loss, stats = tlcuda.softmax_xent_fwd(z, t, smoothing)
    dz = tlcuda.softmax_xent_bwd(g, z, t, stats, smoothing)
    F = torch.nn.functional
    tz = torch.tensor(z, requires_grad=True)
    tloss = F.cross_entropy(tz, torch.tensor(t), reduction="none", label_smoothing=smoothing)
    tloss.backward(torch.tensor(g))
    assert loss.dtype == stats.dtype == dz.dtype == dtype and loss.shape == (rows,) and stats.shape == (rows, 2)
    assert dz.shape == shape
    np.testing.assert_allclose(loss, tloss.detach().numpy(), **tol(dtype))
    np.testing.assert_allclose(stats.sum(axis=1), torch.logsumexp(torch.tensor(z), 1).numpy(), **tol(dtype))
    np.testing.assert_allclose(dz, tz.grad.numpy(), **tol(dtype))


def test_softmax_xent_is_stable_and_checks_targets(torch):
    z = np.array([[1000.0, -1000.0, 0.0], [-5e3, -5e3, -5e3]], dtype=np.float32)
    t = np.array([1, 2])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        loss, stats = tlcuda.softmax_xent_fwd(z, t, 0.2)
    tz = torch.tensor(z, requires_grad=True)
    tl = torch.nn.functional.cross_entropy(tz, torch.tensor(t), reduction="none", label_smoothing=0.2)
    tl.sum().backward()
    np.testing.assert_allclose(loss, tl.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(tlcuda.softmax_xent_bwd(1.0, z, t, stats, 0.2), tz.grad.numpy(), rtol=1e-6, atol=1e-7)
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        tlcuda.softmax_xent_fwd(z, np.array([0, 3]))
    with pytest.raises(ValueError, match="rows"):
        tlcuda.softmax_xent_fwd(z[0], t)


PARAM_SHAPES = [(3, 4), (5,), (1,), (0,), (7, 13)]
SGD_CONFIGS = [dict(lr=0.1), dict(lr=0.1, weight_decay=0.1), dict(lr=0.1, momentum=0.9),
               dict(lr=0.05, momentum=0.9, dampening=0.3), dict(lr=0.1, momentum=0.9, nesterov=True),
               dict(lr=0.1, momentum=0.8, weight_decay=0.01), dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)]
ADAM_CONFIGS = [("Adam", dict()), ("Adam", dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6)),
                ("Adam", dict(lr=1e-2, weight_decay=0.1)), ("Adam", dict(lr=1e-2, betas=(0.3, 0.9))),
                ("AdamW", dict()), ("AdamW", dict(lr=1e-2, weight_decay=0.5))]


def _optimizer_data(dtype, steps, shapes=PARAM_SHAPES, seed=0):
    rng = np.random.default_rng(seed)
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(steps)]
    return params, grads


def _run_sgd(xp_params, grads_per_step, cfg, to_xp=lambda a: a.copy()):
    params = [to_xp(p) for p in xp_params]
    bufs = [to_xp(np.zeros_like(p)) for p in xp_params]
    for step, grads in enumerate(grads_per_step):
        tlcuda.sgd_step(params, [to_xp(g) for g in grads], bufs, cfg["lr"], cfg.get("momentum", 0.0),
                        cfg.get("dampening", 0.0), cfg.get("weight_decay", 0.0), cfg.get("nesterov", False),
                        first_step=step == 0)
    return params, bufs


def _run_adam(xp_params, grads_per_step, name, cfg, to_xp=lambda a: a.copy()):
    params = [to_xp(p) for p in xp_params]
    m, v = [to_xp(np.zeros_like(p)) for p in xp_params], [to_xp(np.zeros_like(p)) for p in xp_params]
    beta1, beta2 = cfg.get("betas", (0.9, 0.999))
    wd = cfg.get("weight_decay", 0.01 if name == "AdamW" else 0.0)
    for step, grads in enumerate(grads_per_step, start=1):
        tlcuda.adam_step(params, [to_xp(g) for g in grads], m, v, step, cfg.get("lr", 1e-3), beta1, beta2,
                         cfg.get("eps", 1e-8), wd, decoupled=name == "AdamW")
    return params, m, v


def _torch_steps(torch, params, grads_per_step, make):
    tp = [torch.tensor(p, requires_grad=True) for p in params]
    opt = make(tp)
    for grads in grads_per_step:
        for t, g in zip(tp, grads):
            t.grad = torch.tensor(g)
        opt.step()
    return tp, opt


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_sgd_reference_matches_torch(torch, cfg, dtype):
    params, grads = _optimizer_data(dtype, steps=4)
    ours, bufs = _run_sgd(params, grads, cfg)
    tp, opt = _torch_steps(torch, params, grads, lambda tp: torch.optim.SGD(tp, **cfg))
    for p, b, t in zip(ours, bufs, tp):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-6 if dtype == np.float32 else 1e-14, atol=1e-7)
        if cfg.get("momentum"):
            np.testing.assert_allclose(b, opt.state[t]["momentum_buffer"].numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, cfg", ADAM_CONFIGS, ids=lambda c: str(c))
def test_adam_reference_matches_torch(torch, name, cfg, dtype):
    params, grads = _optimizer_data(dtype, steps=5)
    ours, m, v = _run_adam(params, grads, name, cfg)
    tp, opt = _torch_steps(torch, params, grads, lambda tp: getattr(torch.optim, name)(tp, **cfg))
    for p, a, b, t in zip(ours, m, v, tp):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, t.detach().numpy(), rtol=1e-6 if dtype == np.float32 else 1e-13, atol=1e-7)
        np.testing.assert_allclose(a, opt.state[t]["exp_avg"].numpy(), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(b, opt.state[t]["exp_avg_sq"].numpy(), rtol=1e-6, atol=1e-7)


def test_optimizer_reference_edge_cases():
    tlcuda.sgd_step([], [], None, lr=0.1)                      # nothing to do
    tlcuda.adam_step([], [], [], [], step=1)
    p, g = np.ones(3), np.full(3, 2.0)
    tlcuda.sgd_step([p], [g], None, lr=0.5)                    # no momentum: no buffers needed
    np.testing.assert_array_equal(p, 0.0)
    np.testing.assert_array_equal(g, 2.0)                      # gradients are never written
    with pytest.raises(ValueError, match="buffer"):
        tlcuda.sgd_step([p], [g], None, lr=0.5, momentum=0.9)


def test_philox_known_answers():
    """Random123's known-answer vectors for Philox4x32-10."""
    cases = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2, (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    for ctr, key, expected in cases:
        out = _xpmath.philox4x32_10(*[np.array([c], dtype=np.uint32) for c in ctr], *key)
        assert tuple(int(o[0]) for o in out) == expected


def test_dropout_randoms_are_uniform_and_addressed_by_counter():
    r = _xpmath.dropout_randoms(1 << 16, seed=7, offset=0)
    counts = np.bincount(r >> 28, minlength=16)                  # 16 bins of the top 4 bits
    chi2 = ((counts - r.size / 16) ** 2 / (r.size / 16)).sum()
    assert chi2 < 50                                             # 15 degrees of freedom: p < 1e-5
    np.testing.assert_array_equal(_xpmath.dropout_randoms(100, 7, 37), r[37:137])   # element i <-> counter offset+i
    assert not np.array_equal(_xpmath.dropout_randoms(100, 8, 0), r[:100])


@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
@pytest.mark.parametrize("dtype", DTYPES)
def test_dropout_reference_keep_rate_and_scale(p, dtype):
    n = 200_000
    x = rand((n,), dtype, 1)
    y = tlcuda.dropout_fwd(x, p, seed=3, offset=12)
    keep = tlcuda.dropout_mask((n,), p, 3, 12)
    assert y.dtype == dtype and keep.dtype == np.bool_
    assert abs(keep.mean() - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    np.testing.assert_array_equal(y[keep], x[keep] * dtype(1 / (1 - p)))
    assert np.all(y[~keep] == 0)
    np.testing.assert_array_equal(tlcuda.dropout_bwd(x, p, 3, 12), y)      # backward regenerates the same mask


def test_dropout_reference_is_reproducible():
    x = rand((40, 25), np.float32)
    a = tlcuda.dropout_fwd(x, 0.5, seed=11, offset=4)
    np.testing.assert_array_equal(a, tlcuda.dropout_fwd(x, 0.5, seed=11, offset=4))
    assert not np.array_equal(a, tlcuda.dropout_fwd(x, 0.5, seed=12, offset=4))
    assert not np.array_equal(a, tlcuda.dropout_fwd(x, 0.5, seed=11, offset=1004))
    whole = tlcuda.dropout_mask((2000,), 0.5, 11, 0)            # a call at offset k sees counters k, k+1, ...
    np.testing.assert_array_equal(tlcuda.dropout_mask((40, 25), 0.5, 11, 4), whole[4:1004].reshape(40, 25))
    np.testing.assert_array_equal(tlcuda.dropout_fwd(x, 0.0, 11, 4), x)
    assert not np.any(tlcuda.dropout_fwd(x, 1.0, 11, 4))
    assert tlcuda.dropout_fwd(np.zeros((0, 3)), 0.5, 1, 0).shape == (0, 3)
    with pytest.raises(ValueError, match="between 0 and 1"):
        tlcuda.dropout_fwd(x, 1.5, 1, 0)


# =============================== devices =================================================================
def test_import_needs_no_cupy_and_prints_nothing():
    code = "import sys, tinylazy.cuda; print('cupy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "False\n" and out.stderr == ""


def test_device_queries():
    if backend.cupy_module() is None:
        assert tlcuda.is_available() is False and tlcuda.device_count() == 0
        with pytest.raises(RuntimeError, match="not available"):
            tlcuda.synchronize()
        with pytest.raises(RuntimeError, match="not available"):
            tlcuda.current_device()
    else:
        assert tlcuda.device_count() >= 1 and tlcuda.is_available()
        assert 0 <= tlcuda.current_device() < tlcuda.device_count()
        tlcuda.synchronize()
        tlcuda.synchronize("cuda:0")


# =============================== (c) kernels against their references ====================================
class Gpu:
    """A back end for the kernel tests: `put` moves a NumPy array there, `get` brings one back."""

    def __init__(self, name, xp, big):
        self.name, self.xp, self.big = name, xp, big

    def put(self, a):
        return self.xp.asarray(a)

    def get(self, a):
        return np.array(a.get() if hasattr(a, "get") else a)

    def sizes(self):
        return [0, 1, 1023, self.big]


@pytest.fixture(params=GPU_BACKENDS)
def gpu(request, monkeypatch):
    if request.param == "emulator":
        if not emulator.available():
            pytest.skip("kernel emulator: g++ is not installed")
        monkeypatch.setattr(backend, "_cupy", emulator.FakeCupy())
        for cache in ("_MODULES", "_FUNCTIONS", "_SM_COUNT", "_TABLES"):
            monkeypatch.setattr(_kernels, cache, {})
        monkeypatch.delenv("TINYLAZY_KERNELS", raising=False)
        return Gpu("emulator", backend.cupy_module(), big=4099)
    if not tlcuda.is_available():
        pytest.skip("cuda: tinylazy.cuda.is_available() is False (no GPU or no CuPy on this machine)")
    monkeypatch.setattr(_kernels, "_TABLES", {})
    monkeypatch.delenv("TINYLAZY_KERNELS", raising=False)
    return Gpu("cuda", backend.cupy_module(), big=2 ** 20 + 3)


def gpu_tol(dtype):
    return dict(rtol=1e-5, atol=1e-5) if np.dtype(dtype) == np.float32 else dict(rtol=1e-11, atol=1e-13)


def assert_close(actual, desired, dtype):
    """Elementwise close, with the absolute tolerance scaled by the largest |desired|: float32 formulas such
    as 1 - tanh(x)^2 cancel, and the GPU's libm differs from NumPy's by an ulp."""
    t = gpu_tol(dtype)
    scale = max(1.0, float(np.abs(desired).max())) if np.size(desired) else 1.0
    np.testing.assert_allclose(actual, desired, rtol=t["rtol"], atol=t["atol"] * scale)


class launches:
    """with launches() as n: ...; n.count is the number of custom kernel launches inside the block."""

    def __enter__(self):
        self.start = _kernels.LAUNCHES
        return self

    def __exit__(self, *exc):
        self.count = _kernels.LAUNCHES - self.start


def _variants(gpu, a):
    """The array on the device, and (when it has 2+ elements) a contiguous view starting one element in,
    which is not 16-byte aligned: the kernels must take their scalar path there."""
    flat = gpu.put(np.concatenate([[0], a.reshape(-1)]).astype(a.dtype))
    out = [(gpu.put(a), a)]
    if a.size > 1:
        out.append((flat[1:].reshape(a.shape), a))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_kernel_activation(gpu, act, dtype):
    for n in gpu.sizes():
        for gx, x in _variants(gpu, rand((n,), dtype, n)):
            g = rand((n,), dtype, n + 1)
            with launches() as k:
                gy = tlcuda.act_fwd(gx, act)
                saved = gy if tlcuda.act_saves_output(act) else gx
                gdx = tlcuda.act_bwd(gpu.put(g), saved, act)
            assert k.count == (2 if n else 0)
            y = tlcuda.act_fwd(x, act)
            assert_close(gpu.get(gy), y, dtype)
            ref_saved = y if tlcuda.act_saves_output(act) else x
            assert_close(gpu.get(gdx), tlcuda.act_bwd(g, ref_saved, act), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_kernel_relu_backward_of_non_finite_values_equals_the_reference(gpu, dtype):
    g = np.array([np.nan, np.inf, -np.inf, 1.5, -0.0, 2.0, 3.0, -4.0, np.nan, np.inf] * 3, dtype)
    y = np.array([0.0, -0.0, 0.0, 0.0, 1.0, np.nan, -1.0, 5.0, 2.0, np.nan] * 3, dtype)
    bits = f"i{np.dtype(dtype).itemsize}"
    want = tlcuda.relu_bwd(g, y)
    np.testing.assert_array_equal(gpu.get(tlcuda.relu_bwd(gpu.put(g), gpu.put(y))).view(bits), want.view(bits))
    gdx, gdb = tlcuda.bias_act_bwd(gpu.put(g.reshape(3, 10)), gpu.put(y.reshape(3, 10)), "relu",
                                   b=gpu.put(np.zeros(10, dtype)))
    np.testing.assert_array_equal(gpu.get(gdx).view(bits), want.reshape(3, 10).view(bits))


def _bias_layouts(gpu):
    big = [((gpu.big, 1), -1), ((3, gpu.big), -1), ((2, 3, gpu.big // 6), 1)]
    return [((0, 7), -1), ((1, 1), -1), ((1023, 1), -1), ((3, 341), -1), ((33, 31), -1), ((64, 32), -1),
            ((4, 3, 5, 7), 1), ((2, 6, 4, 4), 1)] + big


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ACTS)
def test_kernel_bias_act(gpu, act, dtype):
    for shape, axis in _bias_layouts(gpu):
        x, g, b = rand(shape, dtype, 1), rand(shape, dtype, 2), rand((shape[axis],), dtype, 3)
        for gx, _ in _variants(gpu, x):
            with launches() as k:
                gy = tlcuda.bias_act_fwd(gx, gpu.put(b), act, axis)
                saved = gy if tlcuda.act_saves_output(act) else gx
                gdx, gdb = tlcuda.bias_act_bwd(gpu.put(g), saved, act, b=gpu.put(b), axis=axis)
            assert k.count == (3 if x.size else 0), shape
            y = tlcuda.bias_act_fwd(x, b, act, axis)
            dx, db = tlcuda.bias_act_bwd(g, y if tlcuda.act_saves_output(act) else x, act, b=b, axis=axis)
            assert_close(gpu.get(gy), y, dtype)
            assert_close(gpu.get(gdx), dx, dtype)
            scale = np.abs(dx).sum(axis=tuple(i for i in range(x.ndim) if i != axis % x.ndim)) + 1
            np.testing.assert_allclose(gpu.get(gdb), db, rtol=0, atol=10 * gpu_tol(dtype)["rtol"] * scale.max())


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_kernel_softmax_xent(gpu, smoothing, dtype):
    shapes = [(0, 5), (1, 1), (1, 10), (37, 1023), (64, 12), (5, 31), (gpu.big, 1), (3, gpu.big)]
    for rows, C in shapes:
        z, g = rand((rows, C), dtype, 1), rand((rows,), dtype, 2)
        t = np.random.default_rng(3).integers(0, C, rows)
        for gz, _ in _variants(gpu, z):
            with launches() as k:
                gloss, gstats = tlcuda.softmax_xent_fwd(gz, gpu.put(t), smoothing)
                gdz = tlcuda.softmax_xent_bwd(gpu.put(g), gz, gpu.put(t), gstats, smoothing)
            assert k.count == (2 if rows else 0)
            loss, stats = tlcuda.softmax_xent_fwd(z, t, smoothing)
            np.testing.assert_allclose(gpu.get(gloss), loss, **gpu_tol(dtype))
            np.testing.assert_allclose(gpu.get(gstats), stats, **gpu_tol(dtype))
            np.testing.assert_allclose(gpu.get(gdz), tlcuda.softmax_xent_bwd(g, z, t, stats, smoothing), **gpu_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("offset", [0, 2, 3, 2 ** 33 + 1])   # every phase offset % 4
def test_kernel_dropout_matches_reference_bit_for_bit(gpu, offset, dtype):
    for n in gpu.sizes():
        for gx, x in _variants(gpu, rand((n,), dtype, n)):
            with launches() as k:
                gy = tlcuda.dropout_fwd(gx, 0.3, 1234, offset)
                gdx = tlcuda.dropout_bwd(gx, 0.3, 1234, offset)
                gmask = tlcuda.dropout_mask((n,), 0.3, 1234, offset, xp=gpu.xp)
            assert k.count == (3 if n else 0)
            np.testing.assert_array_equal(gpu.get(gy), tlcuda.dropout_fwd(x, 0.3, 1234, offset))
            np.testing.assert_array_equal(gpu.get(gdx), gpu.get(gy))
            np.testing.assert_array_equal(gpu.get(gmask), tlcuda.dropout_mask((n,), 0.3, 1234, offset))


def _optimizer_shapes(gpu):
    return [(3, 4), (5,), (1,), (0,), (1023,), (gpu.big,), (7, 13)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cfg", SGD_CONFIGS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()))
def test_kernel_sgd(gpu, cfg, dtype):
    params, grads = _optimizer_data(dtype, steps=3, shapes=_optimizer_shapes(gpu))
    with launches() as k:
        ours, bufs = _run_sgd(params, grads, cfg, to_xp=gpu.put)
    assert k.count == 3                                          # one launch per step for all 7 parameters
    ref, ref_bufs = _run_sgd(params, grads, cfg)
    for a, b in zip(ours + bufs, ref + ref_bufs):
        np.testing.assert_allclose(gpu.get(a), b, **gpu_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, cfg", ADAM_CONFIGS, ids=lambda c: str(c))
def test_kernel_adam(gpu, name, cfg, dtype):
    params, grads = _optimizer_data(dtype, steps=3, shapes=_optimizer_shapes(gpu))
    with launches() as k:
        ours = _run_adam(params, grads, name, cfg, to_xp=gpu.put)
    assert k.count == 3
    ref = _run_adam(params, grads, name, cfg)
    for mine, theirs in zip(ours, ref):
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(gpu.get(a), b, **gpu_tol(dtype))


def test_kernel_optimizer_one_launch_for_many_parameters(gpu):
    rng = np.random.default_rng(0)
    shapes = [(int(rng.integers(1, 3000)),) for _ in range(100)]
    params, grads = _optimizer_data(np.float32, steps=2, shapes=shapes)
    with launches() as k:
        ours = _run_adam(params, grads, "AdamW", {}, to_xp=gpu.put)
    assert k.count == 2
    for mine, theirs in zip(ours, _run_adam(params, grads, "AdamW", {})):
        for a, b in zip(mine, theirs):
            np.testing.assert_allclose(gpu.get(a), b, **gpu_tol(np.float32))
    p = [gpu.put(a) for a in params]
    tables = len(_kernels._TABLES)
    with launches() as k:
        for _ in range(3):                                          # fresh gradients every step (zero_grad to None)
            tlcuda.sgd_step(p, [gpu.put(a) for a in grads[0]], None, lr=0.1)
    assert k.count == 3 and len(_kernels._TABLES) == tables + 1    # keyed on parameters and state: built once
    want = params[0] - 0.3 * grads[0][0]
    np.testing.assert_allclose(gpu.get(p[0]), want, **gpu_tol(np.float32))


def test_kernels_off_and_fallbacks(gpu, monkeypatch):
    x = rand((33, 31), np.float32)
    gx, gb, gt = gpu.put(x), gpu.put(x[0]), gpu.put(np.arange(33) % 31)

    def runs():
        return [tlcuda.gelu_fwd(gx), tlcuda.bias_act_fwd(gx, gb, "relu"), tlcuda.softmax_xent_fwd(gx, gt, 0.1)[0],
                tlcuda.dropout_fwd(gx, 0.5, 1, 8)]
    with launches() as k:
        on = runs()
    assert k.count == 4
    monkeypatch.setenv("TINYLAZY_KERNELS", "0")
    with launches() as k:
        off = runs()
        params = [gpu.put(x)]
        tlcuda.adam_step(params, [gpu.put(x)], [gpu.put(0 * x)], [gpu.put(0 * x)], 1)
    assert k.count == 0
    for a, b in zip(on, off):
        np.testing.assert_allclose(gpu.get(a), gpu.get(b), **gpu_tol(np.float32))
    np.testing.assert_allclose(gpu.get(params[0]), x - 1e-3 * np.sign(x), rtol=1e-5, atol=1e-6)
    monkeypatch.delenv("TINYLAZY_KERNELS")
    with launches() as k:                                   # non-contiguous and integer arrays take the reference path
        strided = tlcuda.relu_fwd(gx[:, ::2])
        ints = tlcuda.relu_fwd(gpu.put(np.arange(-3, 3)))
    assert k.count == 0
    np.testing.assert_array_equal(gpu.get(strided), np.maximum(x[:, ::2], 0))
    np.testing.assert_array_equal(gpu.get(ints), [0, 0, 0, 0, 1, 2])
