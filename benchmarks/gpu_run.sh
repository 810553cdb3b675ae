#!/usr/bin/env bash
# The whole GPU check, as one command on a GPU machine without network (benchmarks/README.md):
#   bash benchmarks/gpu_wheels.sh                       # here, once: the wheels into .whl/
#   bash benchmarks/gpu_run.sh [OUT_DIR [GPU_PY_ARGS...]] # there, with .whl/ carried along
# Installs the wheels, runs the CUDA tests (no host sync in a training step, the device-resident
# path), then benchmarks/gpu.py; logs and the JSON line go to OUT_DIR (default: $OUT or .).
# Arguments after OUT_DIR go to gpu.py (a small rehearsal on a CPU: benchmarks/README.md).
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-.}}"
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu_smi.txt"
timeout 240 python3 -m pytest -p no:cacheprovider -n 0 -q -rs tests/test_host_sync.py::test_no_host_sync_on_the_gpu \
  tests/test_device_batches.py 2>&1 | tee "$out/gpu_tests.log" | tail -15
# gpu.py gets what is left of 570 s (a device call may run 600), so that it, not the call's
# hard limit, ends the run: on SIGTERM it stops its fit and keeps the finished stages' figures.
left=$(( ${GPU_RUN_BUDGET_S:-570} - SECONDS )); (( left > 0 )) || left=1  # timeout 0: no limit
echo "gpu.py has ${left} s" | tee "$out/gpu_budget.txt"
timeout "$left" python3 benchmarks/gpu.py --out "$out/gpu.json" "${@:2}" 2>&1 | tee "$out/gpu.log" \
  | grep -v -e "it/s\]" -e "img/s\]" -e "B/s\]"
