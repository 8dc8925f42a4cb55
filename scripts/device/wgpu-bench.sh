#!/usr/bin/env bash
# The wgpu benchmark on the GPU machine's NVIDIA adapter through Vulkan (bandwidth against the
# adapter's buffer copy, matmul2d against cuBLAS in the same process), from a prebuilt binary:
#
#   here:   cargo build --release -p strata-wgpu --example bench   (target/release/examples/bench)
#           and the .gl packages of scripts/device/wgpu-test.sh
#   there:  scripts/device/wgpu-bench.sh target/release/examples/bench [sections: bandwidth,
#           dispatch, gemm, f16, f32, decode]
set -uo pipefail
. "$(dirname "$0")/vulkan-env.sh"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader
"$@" 2>&1 | grep -v XDG_RUNTIME_DIR
