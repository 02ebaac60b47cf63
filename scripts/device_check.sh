#!/usr/bin/env bash
# The GPU checks, as one short script for a lent accelerator (device tool), run from the repository
# root; about 8 minutes on an H100:
# 1. the ImageNet and GLUE workloads end to end on generated stand-ins with random weights
#    (scripts/bench_gpu_workloads.py): bf16 autocast with torch.compile, then fp32 eager as the
#    baseline; each stage's timings recorded;
# 2. the torch solver backend on CUDA;
# 3. real serving on CUDA, when the Fashion-MNIST model is cached (carry
#    .cache/ttamer/traces/trace/fashion_mnist-*).
# Tables go to $RESULTS (default results/device/); with $OUT set (device tool) they are packed
# into $OUT/device_check.tgz and the workload tables copied there. The library runs from the
# checkout (PYTHONPATH): nothing is installed, so the machine needs no network. A dry run of the
# whole flow on a CPU (the tests do this): DEVICE=cpu SIZE=tiny CHECK_ARGS="--no-compile --only
# glue_gpt2" SOLVER_ARGS="--sizes 20:3 --main 20:3 --repeats 1" SERVING=off.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${RESULTS:-results/device}"
device="${DEVICE:-cuda}"
size="${SIZE:-full}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
py=$(command -v python3 || command -v python)
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpu.csv" 2>/dev/null || rm -f "$out/gpu.csv"
status=0
run() { echo "== $*"; "$py" "$@" || status=1; }
# shellcheck disable=SC2086  # CHECK_ARGS and SOLVER_ARGS are word lists
run scripts/bench_gpu_workloads.py --device "$device" --size "$size" --precision bf16 --compile --out "$out" ${CHECK_ARGS:-}
# shellcheck disable=SC2086
run scripts/bench_gpu_workloads.py --device "$device" --size "$size" --precision fp32 --no-compile --out "$out" \
    --only imagenet_cascade,imagenet_exits_cnn,glue_bert ${CHECK_ARGS:-}
# shellcheck disable=SC2086
run scripts/bench_solver.py ${SOLVER_ARGS:---quick} --torch-device "$device" --out "$out/bench_solver_$device.json"
if [ "${SERVING:-auto}" != off ] && ls .cache/ttamer/traces/trace/fashion_mnist-* >/dev/null 2>&1; then
    run scripts/bench_serving.py --workload fashion_mnist --device "$device" --quick --out "$out/serving"
fi
if [ -n "${OUT:-}" ]; then
    tar czf "$OUT/device_check.tgz" -C "$(dirname "$out")" "$(basename "$out")" || status=1
    cp "$out"/bench_gpu_workloads-*.csv "$OUT"/ || status=1
fi
echo "device_check: exit $status"
exit "$status"
