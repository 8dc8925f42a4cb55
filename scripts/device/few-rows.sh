#!/usr/bin/env bash
# The few-rows GEMM (m <= 16, B stored n x k) on the GPU machine, in one go: its tests and the
# other matmul2d suites, then the decoding shapes against cuBLAS with the kernel off
# (STRATA_GEMM_SKINNY=0) and as the rules choose alternately, then memcheck on its tests and the
# scans'.
#
#   here:   cargo test --release -p strata-cuda --no-run; cargo build --release -p strata-cuda --example gemm
#   there:  scripts/device/few-rows.sh GPU-TEST-BINARY GEMM-EXAMPLE [OUT-DIR]
set -uo pipefail
bin="$1" gemm="$2" out="${3:-.}"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed" | tee "$out/tests.txt"
STRATA_SEED=$seed "$bin" matmul2d --test-threads=4 --nocapture --skip tuned 2>&1 \
    | grep -E "cases|test result|panicked|differ" | tee -a "$out/tests.txt"
status=${PIPESTATUS[0]}
shapes=(1x4096x4096 8x4096x4096 16x4096x4096 1x14336x4096 16x14336x4096 16x4096x14336 1x28672x8192 16x28672x8192)
for round in 1 2; do
    for setting in "STRATA_GEMM_SKINNY=0" ""; do
        echo "== round $round, ${setting:-the rules}" | tee -a "$out/bench.txt"
        env $setting "$(dirname "$0")/gemm-bench.sh" "$gemm" "${shapes[@]}" 2>&1 | tee -a "$out/bench.txt"
    done
done
echo "== compute-sanitizer memcheck: few rows and scans" | tee "$out/sanitizer.txt"
STRATA_SEED=$seed compute-sanitizer --tool memcheck --print-limit 10 --error-exitcode 9 "$bin" --test-threads=1 \
    few_rows scans 2>&1 | grep -E "ERROR SUMMARY|Invalid|Program hit|test result|cases" | tee -a "$out/sanitizer.txt"
status=$((status | PIPESTATUS[0]))
exit $status
