#!/usr/bin/env bash
# matmul2d against cuBLAS on the GPU machine, from a prebuilt release example (no cargo there):
#
#   here:   cargo build --release -p strata-cuda --example gemm   (target/release/examples/gemm)
#   there:  scripts/device/gemm-bench.sh target/release/examples/gemm [SIZES...]
#
# Prints the card, then one row per (dtype, size): our TFLOP/s, cuBLAS's in the same process
# (cuBLASLt's fp8 GEMM for the e4m3 rows), the ratio (peer's time / ours) and the relative
# difference of the two results. STRATA_GEMM_CLUSTER=1|2 sets whether CTAs run in pairs.
set -euo pipefail
bin="$1"
shift
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.draw --format=csv,noheader
export STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
. "$(dirname "$0")/cublas-env.sh"
echo "cuBLAS: ${lib:-not found}"
"$bin" "$@"
