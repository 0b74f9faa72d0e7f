#!/usr/bin/env bash
# The one GPU check of tinylazy, for a machine with an NVIDIA GPU (CuPy, NumPy and PyTorch CUDA installed,
# no network needed). From the repository root:
#
#     PYTHONPATH=. bash bench/gpu_check.sh
#
# 1. the whole test suite on the cuda device (TINYLAZY_TEST_DEVICE=cuda), stopping at the first failure;
# 2. the distributed step: the NCCL backend and DDP on 1 rank (bench/dist_nccl_check.py, needs mpi4py);
# 3. the GPU benchmarks of bench/gpu_check.py.
# Every figure goes to one JSON and one markdown file (plus the test log) under $OUT when it is set, else
# under bench/results/. Each step runs under `timeout`, so the whole check ends within 7 minutes.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-.}"
export PYTHONUNBUFFERED=1
RESULTS="${OUT:-bench/results}"
mkdir -p "$RESULTS"

echo "== tests on cuda (at most 150 s)"
TINYLAZY_TEST_DEVICE=cuda timeout 150 python3 -m pytest -x -q -rs tests 2>&1 | tee "$RESULTS/gpu-tests.log"
tests_rc=${PIPESTATUS[0]}
echo "== tests exit code: $tests_rc"

echo "== distributed: NCCL backend and DDP on 1 rank (at most 60 s; skipped without mpi4py)"
timeout -k 5 60 mpiexec -n 1 python3 bench/dist_nccl_check.py --out "$RESULTS" 2>&1 | tail -5 || echo "== distributed check failed or mpiexec missing"

echo "== benchmarks (at most 190 s)"
timeout -k 5 190 python3 bench/gpu_check.py --out "$RESULTS" --tests-rc "$tests_rc" --tests-log "$RESULTS/gpu-tests.log"
bench_rc=$?
echo "== benchmarks exit code: $bench_rc"
ls -l "$RESULTS"
exit $(( tests_rc != 0 || bench_rc != 0 ))
