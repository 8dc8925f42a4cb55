#!/usr/bin/env bash
# The narrow-tile GEMM rules in one call on the GPU machine: the sweep's shapes against cuBLAS
# from an earlier gemm example and from this one alternately (twice), the whole CUDA test suite
# by the rules, then the example's default table (squares, LLM shapes, fp8).
#
#   here:   cargo test --release -p strata-cuda --no-run   (gpu-HASH and examples/gemm)
#   there:  scripts/device/tiles-final.sh GPU-TEST-BINARY GEMM-EXAMPLE OLD-GEMM-EXAMPLE [OUT-DIR]
set -uo pipefail
bin="$1" gemm="$2" old="$3" out="${4:-.}"
here="$(dirname "$0")"
shapes=(32x4096x4096 64x4096x4096 128x4096x4096 256x4096x4096 512x4096x4096 1024x4096x4096 2048x4096x4096
    64x14336x4096 128x14336x4096 256x14336x4096 512x14336x4096 1024x14336x4096 128x4096x14336 512x4096x14336
    128x28672x8192 1024x28672x8192)
for round in 1 2; do
    for run in old new; do
        echo "== round $round, $run" | tee -a "$out/bench.txt"
        b=$gemm
        [ $run = old ] && b=$old
        "$here/gemm-bench.sh" "$b" "${shapes[@]}" 2>&1 | grep -E "NT|NN|device" | tee -a "$out/bench.txt"
    done
done
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed" | tee "$out/tests.txt"
STRATA_SEED=$seed "$bin" --test-threads=4 --nocapture 2>&1 | grep -E "cases|test result|panicked|differ|FAILED|^test " | tee -a "$out/tests.txt"
status=${PIPESTATUS[0]}
timeout 150 "$here/gemm-bench.sh" "$gemm" 2>&1 | tee "$out/default.txt"
exit $status
