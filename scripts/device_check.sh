#!/usr/bin/env bash
# The GPU checks (solver speed, serving on CUDA), as one short script for a lent accelerator (device tool):
# the torch solver backend on CUDA and real serving on CUDA. Run from the repository root with
# the Fashion-MNIST model cached (carry .cache/ttamer/traces/trace/fashion_mnist-*); outputs go to
# $OUT (or results/device/ when $OUT is unset). About 5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-results/device}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
python -m pip install -q -e . --no-deps 2>/dev/null || true
python scripts/bench_solver.py --quick --torch-device cuda --out "$out/bench_solver_cuda.json" | tail -25
python scripts/bench_serving.py --workload fashion_mnist --device cuda --quick --out "$out/serving" | tail -1
