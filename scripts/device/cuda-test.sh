#!/usr/bin/env bash
# The CUDA test suite on the GPU machine, from a prebuilt release test binary (no cargo there):
#
#   here:   cargo test --release -p strata-cuda --no-run   (prints target/release/deps/gpu-HASH)
#   there:  scripts/device/cuda-test.sh target/release/deps/gpu-HASH [compute-sanitizer]
#
# Every kernel against the CPU backend (STRATA_REQUIRE_CUDA=1: a missing device
# fails). With "compute-sanitizer", the suite runs once more under memcheck.
set -uo pipefail
bin="$1"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
STRATA_SEED=$seed "$bin" --test-threads=4 --nocapture 2>&1 | tail -40
status=${PIPESTATUS[0]}
# On Hopper the K-major products run on the warp-specialized TMA kernel (the cp.async
# warpgroup kernel where tensor maps cannot describe the operands); run them once more on the
# cp.async warpgroup kernel and on the warp-scope (mma.sync) kernel.
for kernel in wg warp; do
    echo "== matmul2d with STRATA_GEMM_KERNEL=$kernel"
    STRATA_GEMM_KERNEL=$kernel STRATA_SEED=$seed "$bin" matmul2d --nocapture 2>&1 | grep -E "cases|test result|panicked|differ"
    status=$((status | PIPESTATUS[0]))
done
# The warp-specialized kernel runs in pairs of CTAs (sharing B) for fp8 and alone otherwise,
# with cooperative consumers unless told otherwise; run every product the other ways too.
# Products of few rows run on their own kernel unless B is wide: run them on the tiled kernels,
# and the wide ones on the few-rows kernel, too. Small 16-bit and fp8 products take tiles of 32
# (ping-pong, B K-major), 64 or 128 columns, and fp8 ones 224 where their waves are fuller: run
# every product on each width, with each schedule.
for setting in "STRATA_GEMM_CLUSTER=1" "STRATA_GEMM_CLUSTER=2" "STRATA_GEMM_SCHEDULE=coop" \
    "STRATA_GEMM_SCHEDULE=pingpong STRATA_GEMM_CLUSTER=1" "STRATA_GEMM_SCHEDULE=pingpong STRATA_GEMM_CLUSTER=2" \
    "STRATA_GEMM_SKINNY=0" "STRATA_GEMM_SKINNY=1" "STRATA_GEMM_TILE_N=256" "STRATA_GEMM_TILE_N=224" "STRATA_GEMM_TILE_N=224 STRATA_GEMM_SCHEDULE=pingpong" "STRATA_GEMM_TILE_N=32" \
    "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=coop" "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=pingpong" \
    "STRATA_GEMM_TILE_N=64 STRATA_GEMM_SCHEDULE=coop" "STRATA_GEMM_TILE_N=64 STRATA_GEMM_SCHEDULE=pingpong"; do
    echo "== matmul2d with $setting"
    env $setting STRATA_SEED=$seed "$bin" matmul2d --nocapture 2>&1 | grep -E "cases|test result|panicked|differ"
    status=$((status | PIPESTATUS[0]))
done
# Convolutions likewise on each tile of the warpgroup kernel and on the mma.sync one, and with
# the warpgroup kernel's reduction never split and split three ways wherever it can be.
for setting in "STRATA_CONV_TILE_N=256" "STRATA_GEMM_KERNEL=warp" "STRATA_CONV_SPLITS=1" "STRATA_CONV_SPLITS=3"; do
    echo "== conv with $setting"
    env $setting STRATA_SEED=$seed "$bin" conv_matches --nocapture 2>&1 | grep -E "cases|test result|panicked|differ"
    status=$((status | PIPESTATUS[0]))
done
if [ "${2:-}" = "compute-sanitizer" ]; then
    # The out-of-memory test makes the driver refuse an allocation on purpose; memcheck reports
    # such API errors, so it runs apart and its report is shown, not counted.
    echo "== compute-sanitizer memcheck, every kernel test"
    STRATA_SEED=$seed compute-sanitizer --tool memcheck --print-limit 10 --error-exitcode 9 "$bin" --test-threads=1 --skip tuned \
        --skip bad_input_and_out_of_memory_are_errors 2>&1 | grep -E "ERROR SUMMARY|Invalid|Program hit|test result"
    status=$((status | PIPESTATUS[0]))
    echo "== compute-sanitizer memcheck, the out-of-memory test (API errors expected)"
    compute-sanitizer --tool memcheck "$bin" --exact bad_input_and_out_of_memory_are_errors 2>&1 \
        | grep -E "ERROR SUMMARY|Invalid|Program hit|test result"
fi
exit $status
