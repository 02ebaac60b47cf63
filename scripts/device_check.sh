#!/usr/bin/env bash
# The GPU checks, as one short script for a lent accelerator (device tool), run from the repository
# root; sized to fit one 10-minute call (not yet timed on a GPU):
# 1. the ImageNet and GLUE workloads end to end on generated stand-ins with random weights
#    (scripts/bench_gpu_workloads.py): bf16 autocast with torch.compile, then fp32 eager as the
#    baseline; each stage's timings recorded;
# 2. the torch solver backend on CUDA;
# 3. real serving on CUDA, when the Fashion-MNIST model is cached (carry
#    .cache/ttamer/traces/trace/fashion_mnist-*).
# Tables go to $RESULTS (default results/device/). With $OUT set (device tool) the workload
# tables are also written there check by check, and everything is packed into
# $OUT/device_check.tgz after every step, so a step cut off by the time limit loses only itself
# (split the checks over calls with CHECK_ARGS="--only ..."). The library runs from the checkout
# (PYTHONPATH): nothing is installed, so the machine needs no network. A dry run of the whole
# flow on a CPU (the tests do this): DEVICE=cpu SIZE=tiny CHECK_ARGS="--no-compile --only
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
pack() {  # after every step: what is done so far reaches $OUT even if a later step is cut off
    [ -n "${OUT:-}" ] || return 0
    tar czf "$OUT/device_check.tgz" -C "$(dirname "$out")" "$(basename "$out")" || status=1
}
run() { echo "== $*"; "$py" "$@" || status=1; pack; }
also=()  # the workload tables also straight into $OUT, check by check
[ -n "${OUT:-}" ] && also=(--out "$OUT")
# shellcheck disable=SC2086  # CHECK_ARGS and SOLVER_ARGS are word lists
run scripts/bench_gpu_workloads.py --device "$device" --size "$size" --precision bf16 --compile --out "$out" "${also[@]}" \
    ${CHECK_ARGS:-}
# shellcheck disable=SC2086
run scripts/bench_gpu_workloads.py --device "$device" --size "$size" --precision fp32 --no-compile --out "$out" "${also[@]}" \
    --only imagenet_cascade,imagenet_exits_cnn,glue_bert ${CHECK_ARGS:-}
# shellcheck disable=SC2086
run scripts/bench_solver.py ${SOLVER_ARGS:---quick} --torch-device "$device" --out "$out/bench_solver_$device.json"
if [ "${SERVING:-auto}" != off ] && ls .cache/ttamer/traces/trace/fashion_mnist-* >/dev/null 2>&1; then
    run scripts/bench_serving.py --workload fashion_mnist --device "$device" --quick --out "$out/serving"
fi
echo "device_check: exit $status"
exit "$status"
