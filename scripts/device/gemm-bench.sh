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
# cuBLAS from the machine's CUDA libraries (cudarc loads it at run time): the system's, or the
# nvidia-cublas wheel's that PyTorch uses.
lib=$(ls /usr/local/cuda/lib64/libcublas.so* 2>/dev/null | head -1 || true)
[ -n "$lib" ] || lib=$(python3 -c 'import glob, nvidia, os; print(next(iter(sorted(glob.glob(os.path.join(list(nvidia.__path__)[0], "**", "libcublas.so*"), recursive=True))), ""))' 2>/dev/null || true)
[ -n "$lib" ] && export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
echo "cuBLAS: ${lib:-not found}"
"$bin" "$@"
