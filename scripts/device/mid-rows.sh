#!/usr/bin/env bash
# Products of 17 to 1024 rows (batched decoding, prefill of short prompts) on the GPU machine, in
# one go: the matmul2d suites on each tile width, then those shapes against cuBLAS from an
# earlier build of the gemm example and from this one (by the rules, and with the 256-column
# tiles forced) alternately, then which kernels each side launches for two of them.
#
#   here:   cargo test --release -p strata-cuda --no-run   (gpu-HASH and examples/gemm)
#   there:  scripts/device/mid-rows.sh GPU-TEST-BINARY GEMM-EXAMPLE OLD-GEMM-EXAMPLE [OUT-DIR]
set -uo pipefail
bin="$1" gemm="$2" old="$3" out="${4:-.}"
here="$(dirname "$0")"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed" | tee "$out/tests.txt"
status=0
for setting in "" "STRATA_GEMM_TILE_N=256" "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=coop" \
    "STRATA_GEMM_TILE_N=64 STRATA_GEMM_SCHEDULE=coop" "STRATA_GEMM_TILE_N=128 STRATA_GEMM_SCHEDULE=pingpong"; do
    echo "== matmul2d with ${setting:-the rules}" | tee -a "$out/tests.txt"
    env $setting STRATA_SEED=$seed "$bin" matmul2d --test-threads=4 --nocapture --skip tuned 2>&1 \
        | grep -E "cases|test result|panicked|differ" | tee -a "$out/tests.txt"
    status=$((status | PIPESTATUS[0]))
done
shapes=(${SHAPES:-32x4096x4096 64x4096x4096 128x4096x4096 256x4096x4096 512x4096x4096 1024x4096x4096
    64x14336x4096 128x14336x4096 256x14336x4096 1024x14336x4096 128x4096x14336 256x4096x14336})
for round in 1 2; do
    for run in old rules wide; do
        echo "== round $round, $run" | tee -a "$out/bench.txt"
        case $run in
            old) "$here/gemm-bench.sh" "$old" "${shapes[@]}" ;;
            rules) "$here/gemm-bench.sh" "$gemm" "${shapes[@]}" ;;
            wide) STRATA_GEMM_TILE_N=256 "$here/gemm-bench.sh" "$gemm" "${shapes[@]}" ;;
        esac 2>&1 | grep -E "NT|NN|device" | tee -a "$out/bench.txt"
    done
done
for c in ${KERNEL_CASES:-64x4096x4096 128x4096x4096}; do
    timeout 120 "$here/gemm-kernels.sh" "$gemm" "$c" "$out" 2>&1 | tee -a "$out/kernels.txt"
done
exit $status
