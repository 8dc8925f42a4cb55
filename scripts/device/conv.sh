#!/usr/bin/env bash
# Convolution on the GPU machine, in one go, from prebuilt release binaries (no cargo there):
#
#   here:   cargo test --release -p strata-cuda --no-run            (target/release/deps/gpu-HASH)
#           cargo build --release -p strata-cuda --example conv
#   there:  scripts/device/conv.sh GPU_TEST_BIN CONV_EXAMPLE_BIN [CASES...]
#
# The convolution conformance suite (every kernel against the CPU backend) with the tensor-core
# kernel where it applies and with the general kernels alone, memcheck and racecheck over it,
# then the benchmark: our kernels, and PyTorch's conv2d (cuDNN) on the same shapes.
set -uo pipefail
test_bin="$1"
bench_bin="$2"
shift 2
here="$(dirname "$0")"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
status=0
filter="conv|cases|test result|panicked|differ"
echo "== conv: the tensor-core kernel where it applies, then the general kernels alone"
STRATA_SEED=$seed "$test_bin" conv --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
# On Hopper the warpgroup kernel takes the tensor-core shapes; run them once more on each of its
# tiles, with its reduction never split and split three ways, and on the warp-scope (mma.sync)
# kernel.
for setting in "STRATA_CONV_TILE_N=256" "STRATA_CONV_TILE_N=128" "STRATA_CONV_SPLITS=1" "STRATA_CONV_SPLITS=3" \
    "STRATA_GEMM_KERNEL=warp"; do
    echo "== conv with $setting"
    env $setting STRATA_SEED=$seed "$test_bin" conv_matches --nocapture 2>&1 | grep -E "$filter"
    status=$((status | PIPESTATUS[0]))
done
for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool"
    STRATA_SEED=$seed compute-sanitizer --tool $tool --error-exitcode 1 "$test_bin" conv_matches 2>&1 \
        | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Error|Hazard" | head -20
    status=$((status | PIPESTATUS[0]))
done
echo "== benchmark: ours"
"$bench_bin" "$@"
status=$((status | $?))
echo "== benchmark: PyTorch conv2d (cuDNN)"
python3 "$here/conv_peer.py" "$@"
status=$((status | $?))
echo "exit status $status"
exit $status
