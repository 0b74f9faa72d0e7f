#!/usr/bin/env bash
# The one GPU check of tinylazy, for a machine with an NVIDIA GPU (CuPy, NumPy and PyTorch CUDA installed,
# no network needed). From the repository root:
#
#     PYTHONPATH=. bash bench/gpu_check.sh          # results under $OUT when set, else bench/results/
#
# It diagnoses rather than stops: every section runs under its own timeout (SIGINT first, so pytest still
# prints its summary and writes its junit XML), whatever a section leaves is kept, and its exit code, wall
# time and last pytest line go to gpu-check-summary.md as soon as it ends. The whole check stays within
# GPU_CHECK_BUDGET seconds (default 330: under 6 minutes with the start and the 15 s grace after a
# timeout) on a cold machine, where CuPy's kernel cache is empty: NVRTC takes ~0.1 s per elementwise
# kernel, ~1.2 s per reduction, ~5 s for elementwise.cu, so a pass over the whole 1,400-case cuda matrix
# would spend its minutes compiling.
# The sections, in priority order (a later one gets what time is left):
#   env       the device, driver and versions
#   kernels   tests/test_kernels.py on the GPU: every custom kernel against its reference (compiles every .cu)
#   step      a training step and the lazy rules on cuda: test_optim, test_lazy*, test_fusion, test_data, ...
#   bench     bench/gpu_check.py: copy bandwidth, kernels vs copy, fused Adam vs its bound, MLP/LeNet steps
#             vs PyTorch CUDA eager (the figures the kernels issue asks for)
#   distributed  bench/dist_nccl_check.py: the NCCL backend and DDP on 1 rank (when mpi4py is there)
#   ops       every op once in float32: up to 3 cases per cuda test function, float32 preferred, spread
#             over its parameters (bench/gpu_check.py --select-tests picks them), op files first
# With no GPU it stops at once with one line and exit code 2.
set -u
cd "$(dirname "$0")/.."
export PYTHONPATH="${PYTHONPATH:-.}"
export PYTHONUNBUFFERED=1
RESULTS="${OUT:-bench/results}"
mkdir -p "$RESULTS"
BUDGET="${GPU_CHECK_BUDGET:-330}"
START=$SECONDS
SUMMARY="$RESULTS/gpu-check-summary.md"
PYTEST=(python3 -m pytest -q -p no:cacheprovider --maxfail=25 -rfE --durations=20)

if ! timeout 60 python3 -c "import cupy, sys; sys.exit(cupy.cuda.runtime.getDeviceCount() < 1)" >/dev/null 2>&1; then
  echo "gpu_check: no usable NVIDIA GPU here (no CuPy, no driver or no device): nothing to check" >&2
  exit 2
fi

{ echo "# tinylazy GPU check, $(date -u +%Y-%m-%dT%H:%MZ)"; echo
  echo "| section | exit code (124: timed out) | seconds | last line |"; echo "| --- | --- | --- | --- |"; } > "$SUMMARY"
FAILED=0

# section NAME SECONDS COMMAND...: run COMMAND with at most SECONDS (and no more than the budget left),
# its output to NAME.log as it goes; one summary row when it ends.
section() {
  local name=$1 limit=$2
  shift 2
  local left=$(( BUDGET - (SECONDS - START) ))
  (( limit > left )) && limit=$left
  if (( limit < 10 )); then
    echo "| $name | not run: out of time | 0 | |" >> "$SUMMARY"
    FAILED=1
    return
  fi
  echo "== $name (at most $limit s)"
  local t0=$SECONDS
  timeout -s INT -k 15 "$limit" "$@" 2>&1 | tee "$RESULTS/$name.log"
  local rc=${PIPESTATUS[0]}
  local last
  last=$(grep -E "passed|failed|error|no tests ran|FAILED in|ok in|selected|wrote" "$RESULTS/$name.log" | tail -1 | tr '|' '/')
  echo "| $name | $rc | $(( SECONDS - t0 )) | $last |" >> "$SUMMARY"
  echo "== $name: exit code $rc in $(( SECONDS - t0 )) s"
  (( rc != 0 )) && FAILED=1
  return 0
}

section env 20 bash -c 'nvidia-smi; python3 -c "import sys, numpy, cupy; print(sys.version); print(\"numpy\", numpy.__version__, \"cupy\", cupy.__version__, \"CUDA runtime\", cupy.cuda.runtime.runtimeGetVersion(), \"driver\", cupy.cuda.runtime.driverGetVersion())"; python3 -c "import torch; print(\"torch\", torch.__version__, torch.cuda.is_available())"'

export TINYLAZY_TEST_DEVICE=cuda
section kernels 80 "${PYTEST[@]}" tests/test_kernels.py -k "cuda or device_queries" --junitxml="$RESULTS/kernels.xml"

section step 50 "${PYTEST[@]}" tests/test_optim.py tests/test_lazy.py tests/test_lazy_materialize.py \
  tests/test_fusion.py tests/test_data.py tests/test_d2l_builders.py tests/test_module.py -k cuda \
  --junitxml="$RESULTS/step.xml"
unset TINYLAZY_TEST_DEVICE

section bench 130 python3 bench/gpu_check.py --out "$RESULTS" --budget 125 --summary "$SUMMARY"

# the NCCL backend and DDP on 1 rank (needs mpi4py and mpiexec there; without them it says so and moves on)
if command -v mpiexec >/dev/null && python3 -c "import mpi4py" 2>/dev/null; then
  section distributed 30 mpiexec -n 1 python3 bench/dist_nccl_check.py --out "$RESULTS"
else
  echo "| distributed | not run: no mpi4py or mpiexec on this machine | 0 | |" >> "$SUMMARY"
fi

export TINYLAZY_TEST_DEVICE=cuda
section select 25 python3 bench/gpu_check.py --select-tests "$RESULTS/ops-tests.txt"
if [ -s "$RESULTS/ops-tests.txt" ]; then
  mapfile -t OPS_TESTS < "$RESULTS/ops-tests.txt"
  section ops 400 "${PYTEST[@]}" "${OPS_TESTS[@]}" --junitxml="$RESULTS/ops.xml"
fi
unset TINYLAZY_TEST_DEVICE

echo >> "$SUMMARY"
echo "whole check: $(( SECONDS - START )) s of a $BUDGET s budget" >> "$SUMMARY"
cat "$SUMMARY"
ls -l "$RESULTS"
exit $FAILED
