#!/usr/bin/env bash
# One command for the GPU machine, from the repository root: the encoding's tests (GPU checks included), then its
# benchmark. Both run even if the other fails; the exit status is non-zero if either did.
#   bash benchmarks/gpu_check_encoding.sh [bench_encoding.py options]
# Logs go to $OUT (the device tool's folder that comes back) when it is set, and the benchmark JSON with them.
set -uo pipefail
export PYTHONUNBUFFERED=1
export PYTHONPATH="$(python3 benchmarks/_bootstrap.py)${PYTHONPATH:+:$PYTHONPATH}"   # carrara = this checkout
logs="${OUT:-/tmp}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv || true
python3 -m pytest -q -rs tests/backend/test_hashgrid.py tests/backend/test_hashgrid_triton_interpreter.py \
    2>&1 | tee "$logs/pytest_encoding.log"
tests=${PIPESTATUS[0]}
python3 benchmarks/bench_encoding.py "$@" 2>&1 | tee "$logs/bench_encoding.log"
bench=${PIPESTATUS[0]}
echo "tests exit ${tests}, benchmark exit ${bench}"
[ "$tests" -eq 0 ] && [ "$bench" -eq 0 ]
