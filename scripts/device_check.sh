#!/usr/bin/env bash
# The GPU checks, as one short script for a lent accelerator (device tool), run from the repository
# root; about 8 minutes on an H100:
# 1. the ImageNet and GLUE workloads end to end on generated stand-ins with random weights
#    (scripts/bench_gpu_workloads.py): bf16 autocast with torch.compile, then fp32 eager as the
#    baseline; each stage's timings recorded;
# 2. the torch solver backend on CUDA;
# 3. real serving on CUDA, when the Fashion-MNIST model is cached (carry
#    .cache/ttamer/traces/trace/fashion_mnist-*).
# Tables go to results/device/; with $OUT set (device tool) they are packed into
# $OUT/device_check.tgz as well. The library runs from the checkout (PYTHONPATH): nothing is
# installed, so the machine needs no network.
set -uo pipefail
cd "$(dirname "$0")/.."
out=results/device
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=$(command -v python3 || command -v python)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" || true
status=0
run() { echo "== $*"; "$py" "$@" || status=1; }
run scripts/bench_gpu_workloads.py --device cuda --precision bf16 --compile --out "$out"
run scripts/bench_gpu_workloads.py --device cuda --precision fp32 --no-compile --out "$out" \
    --only imagenet_cascade,imagenet_exits_cnn,glue_bert
run scripts/bench_solver.py --quick --torch-device cuda --out "$out/bench_solver_cuda.json"
if ls .cache/ttamer/traces/trace/fashion_mnist-* >/dev/null 2>&1; then
    run scripts/bench_serving.py --workload fashion_mnist --device cuda --quick --out "$out/serving"
fi
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/device_check.tgz" "$out" && cp "$out"/bench_gpu_workloads-*.csv "$OUT"/ 2>/dev/null
fi
exit "$status"
