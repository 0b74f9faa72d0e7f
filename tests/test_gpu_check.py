"""bench/gpu_check.sh and bench/gpu_check.py, the parts that run without a GPU: the early exit, and the
choice of the cuda test cases of the "ops" pass."""
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "bench" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_check)


def test_without_a_gpu_the_check_stops_at_once_with_one_line(tmp_path):
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        pytest.skip("needs bash and coreutils' timeout")
    stub = tmp_path / "stub" / "cupy"                         # a CuPy that sees no device
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("class _R:\n    @staticmethod\n    def getDeviceCount():\n"
                                      "        raise RuntimeError('no CUDA-capable device is detected')\n"
                                      "import types\ncuda = types.SimpleNamespace(runtime=_R)\n")
    out = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh")], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin:/usr/local/bin", "PYTHONPATH": str(tmp_path / "stub"),
                              "OUT": str(tmp_path / "out")})
    assert out.returncode == 2
    assert out.stdout == "" and out.stderr.count("\n") == 1 and "no usable NVIDIA GPU" in out.stderr
    assert not (tmp_path / "out" / "gpu-check-summary.md").exists()


def test_ops_pass_picks_a_float32_sample_of_every_cuda_test_function():
    ids = [f"tests/test_reduce.py::test_sum[cuda-{d}-{i}]" for d in ("float64", "float32") for i in range(10)]
    ids += [f"tests/test_linear.py::test_linear[cuda-(2, {i})]" for i in range(3)]
    ids += ["tests/test_conv.py::test_conv_float64_only[cuda-float64]", "tests/test_conv.py::test_cpu_only[cpu]",
            "tests/test_kernels.py::test_kernel_sgd[cuda-x]", "tests/test_zzz.py::test_other[cuda]"]
    chosen = gpu_check.select_tests(ids, per_function=4)
    reduce = [c for c in chosen if "test_reduce" in c]
    assert reduce == [f"tests/test_reduce.py::test_sum[cuda-float32-{i}]" for i in (0, 3, 6, 9)]   # spread out
    assert [c for c in chosen if "test_linear" in c] == ids[20:23]                                 # all 3
    assert "tests/test_conv.py::test_conv_float64_only[cuda-float64]" in chosen                 # only float64 cases
    assert not any("cpu_only" in c or "test_kernels" in c for c in chosen)                     # cpu / already run
    order = [Path(c.split("::")[0]).stem for c in chosen]
    assert order == sorted(order, key=lambda m: gpu_check.PRIORITY.index(m) if m in gpu_check.PRIORITY else 99)
    assert order[0] == "test_linear" and order[-1] == "test_zzz"
