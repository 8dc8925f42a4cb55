#!/usr/bin/env bash
# The cooperative-matrix f16 GEMM on the GPU machine's NVIDIA adapter through Vulkan: the
# matmul2d conformance tests with both staging variants (Vulkan's quads, the portable f16 one
# Metal's translation keeps valid), then f16 GEMM against cuBLAS with the default tiles and
# each configuration named (STRATA_WGPU_COOP_TILES, see coop.rs).
#
#   here:   cargo test --release -p strata-wgpu --no-run; cargo build --release -p strata-wgpu
#           --example bench; copy both into .device/ (wgpu, bench) and fetch .gl as
#           scripts/device/wgpu-test.sh says
#   there:  scripts/device/wgpu-coop.sh .device/wgpu .device/bench [WMxWNxRMxRNxBKxSTAGES ...]
#
# With "-" for the tests, only the GEMM runs (scripts/device/wgpu-sass.sh does that).
set -uo pipefail
tests="$1"; bench="$2"; shift 2
. "$(dirname "$0")/vulkan-env.sh"
export STRATA_REQUIRE_WGPU=1
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
status=0
for wide in 1 0; do
    [ "$tests" = - ] && break
    echo "== matmul2d tests, STRATA_WGPU_COOP_WIDE=$wide"
    STRATA_SEED=$seed STRATA_WGPU_COOP_WIDE=$wide "$tests" matmul2d --test-threads=1 --nocapture 2>&1 \
        | grep -vE "^$|XDG_RUNTIME_DIR" | tail -12
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
done
echo "== f16 GEMM, default tiles"
"$bench" f16 2>&1 | grep -v XDG_RUNTIME_DIR
for tiles in "$@"; do
    echo "== f16 GEMM, tiles $tiles"
    STRATA_WGPU_COOP_TILES=$tiles "$bench" f16 2>&1 | grep -v XDG_RUNTIME_DIR | tail -n +3
done
exit $status
