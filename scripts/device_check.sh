#!/usr/bin/env bash
# The GPU checks, as one short script for a lent accelerator (device tool), run from the repository
# root; sized to fit one 10-minute call (not yet timed on a GPU):
# 1. the ImageNet and GLUE workloads end to end on generated stand-ins with random weights
#    (scripts/bench_gpu_workloads.py): bf16 autocast with torch.compile, then fp32 eager as the
#    baseline; each stage's timings recorded;
# 2. the torch solver backend on CUDA;
# 3. real serving on CUDA, when the Fashion-MNIST model is cached (carry
#    .cache/ttamer/traces/trace/fashion_mnist-*).
# Tables go to $RESULTS/$PART (default results/device/all/). With $OUT set (device tool) the workload
# tables are also written there check by check, and everything is packed into
# $OUT/device_check.tgz after every step, so a step cut off by the time limit loses only itself
# (PART=vision, then PART=text, splits the run over two calls; CHECK_ARGS="--only ..." narrows
# it further). The library runs from the checkout (PYTHONPATH): nothing is installed, so the
# machine needs no network. A dry run of the whole flow on a CPU (the tests do this): DEVICE=cpu SIZE=tiny CHECK_ARGS="--no-compile --only
# glue_gpt2" SOLVER_ARGS="--sizes 20:3 --main 20:3 --repeats 1" SERVING=off.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${RESULTS:-results/device}/${PART:-all}"
device="${DEVICE:-cuda}"
size="${SIZE:-full}"
case "${PART:-all}" in
    vision) compiled=imagenet_cascade,imagenet_cascade_reordered,imagenet_exits_cnn,imagenet_exits_vit
            eager=imagenet_cascade,imagenet_exits_cnn ;;
    text) compiled=glue_bert,glue_gpt2; eager=glue_bert ;;
    all) compiled=imagenet_cascade,imagenet_cascade_reordered,imagenet_exits_cnn,imagenet_exits_vit,glue_bert,glue_gpt2
         eager=imagenet_cascade,imagenet_exits_cnn,glue_bert ;;
    *) echo "PART: all | vision | text, got ${PART}" >&2; exit 2 ;;
esac
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
gpu_checks() {  # $1: precision, $2: --compile | --no-compile, $3: the checks
    # shellcheck disable=SC2086  # CHECK_ARGS is a word list
    run scripts/bench_gpu_workloads.py --device "$device" --size "$size" --precision "$1" "$2" --only "$3" \
        --out "$out" "${also[@]}" ${CHECK_ARGS:-}
}
gpu_checks bf16 --compile "$compiled"
gpu_checks fp32 --no-compile "$eager"
if [ "${PART:-all}" != vision ]; then
    # shellcheck disable=SC2086  # SOLVER_ARGS is a word list
    run scripts/bench_solver.py ${SOLVER_ARGS:---quick} --torch-device "$device" --out "$out/bench_solver_$device.json"
    if [ "${SERVING:-auto}" != off ] && ls .cache/ttamer/traces/trace/fashion_mnist-* >/dev/null 2>&1; then
        run scripts/bench_serving.py --workload fashion_mnist --device "$device" --quick --out "$out/serving"
    fi
fi
echo "device_check: exit $status"
exit "$status"
