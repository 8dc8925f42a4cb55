#!/usr/bin/env bash
# Two settings of the wgpu f16 GEMM benchmark, alternately, so that a change behind an
# environment switch is compared with cuBLAS timed beside each run on the same warm card.
#
#   there:  scripts/device/wgpu-ab.sh .device/bench "STRATA_X=0" "STRATA_X=1" [ROUNDS]
set -uo pipefail
bench="$1"; a="$2"; b="$3"; rounds="${4:-2}"
. "$(dirname "$0")/vulkan-env.sh"
export STRATA_REQUIRE_WGPU=1
for ((r = 1; r <= rounds; r++)); do
    for setting in "$a" "$b"; do
        echo "== round $r: $setting"
        env $setting "$bench" f16 2>&1 | grep -v XDG_RUNTIME_DIR | tail -n +2
    done
done
