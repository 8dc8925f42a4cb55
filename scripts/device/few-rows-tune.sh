#!/usr/bin/env bash
# Shapes of the few-rows GEMM (m <= 16) on the decoding shapes against cuBLAS, one run a shape
# setting (STRATA_GEMM_SKINNY=U,GROUPS,PARTS; 0 = the tiled kernels), after its tests
# on each setting given with a trailing "+test".
#
#   there:  scripts/device/few-rows-tune.sh GPU-TEST-BINARY GEMM-EXAMPLE SETTING[+test]...
set -uo pipefail
bin="$1" gemm="$2"
shift 2
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
shapes=(1x4096x4096 8x4096x4096 16x4096x4096 1x14336x4096 16x14336x4096 16x4096x14336 1x28672x8192 16x28672x8192)
status=0
for s in "$@"; do
    setting="${s%+test}"
    if [ "$s" != "$setting" ]; then
        echo "== tests, STRATA_GEMM_SKINNY=$setting"
        STRATA_GEMM_SKINNY=$setting "$bin" few_rows --nocapture 2>&1 | grep -E "cases|test result|panicked|differ"
        status=$((status | PIPESTATUS[0]))
    fi
    echo "== STRATA_GEMM_SKINNY=$setting"
    STRATA_GEMM_SKINNY=$setting "$(dirname "$0")/gemm-bench.sh" "$gemm" "${shapes[@]}" 2>&1 | grep -E "^bfloat16"
done
exit $status
