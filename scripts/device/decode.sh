#!/usr/bin/env bash
# Products of few rows (decoding) on both GPU backends, in one go: wgpu's against cuBLAS through
# Vulkan (the bench's `decode` section, with the few-rows kernel off (STRATA_WGPU_FEW_ROWS=0) and
# on, alternately, twice), then wgpu's and CUDA's product suites, CUDA's also with
# the few-rows kernel off (STRATA_GEMM_SKINNY=0: the tiled kernels on small m) and forced
# everywhere (=1: wide B too). Each part's output lands in OUT-DIR as it runs.
#
#   here:   cargo test --release -p strata-cuda --no-run; cargo test --release -p strata-wgpu --all-features --no-run
#           (both print their binaries; the second also builds target/release/examples/bench), and .gl
#           as scripts/device/wgpu-test.sh says
#   there:  scripts/device/decode.sh CUDA-TEST-BINARY WGPU-TEST-BINARY WGPU-BENCH [OUT-DIR]
set -uo pipefail
gpu="$1" wgpu="$2" bench="$3" out="${4:-.}"
here="$(dirname "$0")"
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
status=0
for round in 1 2; do
    for setting in "STRATA_WGPU_FEW_ROWS=0" ""; do
        echo "== round $round, ${setting:-few-rows kernel}"
        env $setting "$here/wgpu-bench.sh" "$bench" decode 2>&1
    done
done > "$out/wgpu-decode.txt"
cat "$out/wgpu-decode.txt"
(
    . "$here/vulkan-env.sh"
    STRATA_REQUIRE_WGPU=1 STRATA_SEED=$seed "$wgpu" few_rows matmul2d_matches --test-threads=2 --nocapture 2>&1 \
        | grep -E "adapter|cases|test result|panicked|differ"
    exit "${PIPESTATUS[0]}"
) > "$out/wgpu-tests.txt" 2>&1
status=$((status | $?))
cat "$out/wgpu-tests.txt"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
for setting in "" "STRATA_GEMM_SKINNY=0" "STRATA_GEMM_SKINNY=1"; do
    echo "== CUDA few_rows, matmul2d_matches ${setting:-by the rules}"
    env $setting STRATA_SEED=$seed "$gpu" few_rows matmul2d_matches --test-threads=2 --nocapture 2>&1 \
        | grep -E "cases|test result|panicked|differ"
    status=$((status | PIPESTATUS[0]))
done > "$out/cuda-tests.txt" 2>&1
cat "$out/cuda-tests.txt"
exit $status
