#!/usr/bin/env bash
# The CUDA suite in a device call of bounded length: the whole suite but the tuner's test, then
# the matmul2d settings of cuda-test.sh one by one while there is time left (each prints its
# cases and result), then the cubin cache saved for the next call.
#
#   there:  scripts/device/cuda-suite-timed.sh .device/gpu SECONDS [FIRST_SETTING_INDEX]
#
# (Give the call a limit a minute and a half past SECONDS: the last setting may run a minute over,
# then the save.)
set -uo pipefail
bin="$1"; budget="${2:-540}"; first="${3:-0}"
start=$SECONDS
here="$(dirname "$0")"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE="${STRATA_CUDA_CACHE:-/tmp/strata-cuda-cache}"
"$here/cubin-cache.sh" restore
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
status=0
if [ "$first" = 0 ]; then
    STRATA_SEED=$seed "$bin" --skip tuned --test-threads=4 --nocapture 2>&1 | grep -E "cases|test result|panicked|differ|FAILED|failed"
    status=${PIPESTATUS[0]}
fi
settings=("STRATA_GEMM_KERNEL=wg" "STRATA_GEMM_KERNEL=warp" "STRATA_GEMM_CLUSTER=1" "STRATA_GEMM_CLUSTER=2"
    "STRATA_GEMM_SCHEDULE=coop" "STRATA_GEMM_SCHEDULE=pingpong STRATA_GEMM_CLUSTER=1"
    "STRATA_GEMM_SCHEDULE=pingpong STRATA_GEMM_CLUSTER=2" "STRATA_GEMM_SKINNY=0" "STRATA_GEMM_SKINNY=1"
    "STRATA_GEMM_TILE_N=224" "STRATA_GEMM_TILE_N=224 STRATA_GEMM_SCHEDULE=pingpong" "STRATA_GEMM_TILE_N=256" "STRATA_GEMM_TILE_N=32"
    "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=coop"
    "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=pingpong" "STRATA_GEMM_TILE_N=64 STRATA_GEMM_SCHEDULE=coop"
    "STRATA_GEMM_TILE_N=64 STRATA_GEMM_SCHEDULE=pingpong")
for ((i = first; i < ${#settings[@]}; i++)); do
    if ((SECONDS - start > budget)); then echo "== out of time: settings from index $i not run"; break; fi
    echo "== [$i] matmul2d with ${settings[$i]} ($((SECONDS - start)) s)"
    # (Each setting stops at the budget's end, so that the cache is still saved.)
    left=$((budget + 60 - (SECONDS - start)))
    env ${settings[$i]} STRATA_SEED=$seed timeout $left "$bin" matmul2d --nocapture 2>&1 \
        | grep -E "cases|test result|panicked|differ"
    status=$((status | PIPESTATUS[0]))
done
"$here/cubin-cache.sh" save
exit $status
