#!/usr/bin/env bash
# Scans on the GPU machine, in one call: the CUDA scan and reduction tests, the CUDA bandwidth
# table from a binary before a change and after it (alternately, twice), then the wgpu scan
# tests (with the windowed suite) and the wgpu bandwidth table through Vulkan. Each step's
# output goes to $OUT as it runs (a call cut short still returns what it got).
#
#   here:   the binaries of cuda-test.sh, wgpu-test.sh and wgpu-bench.sh, and the bandwidth
#           example, copied into .device (the older bandwidth as .device/bandwidth-old)
#   there:  scripts/device/scans.sh .device   (carry .device and .gl)
set -uo pipefail
d="$1"
out="${OUT:-/tmp/out}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$out/device.txt"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed" | tee -a "$out/device.txt"
STRATA_SEED=$seed "$d/gpu" scan --test-threads=2 --nocapture > "$out/cuda-scans.txt" 2>&1
echo "cuda scans: exit $?" | tee -a "$out/device.txt"
for turn in 1 2; do
    for b in bandwidth-old bandwidth; do
        [ -x "$d/$b" ] || continue
        echo "== $b (turn $turn)" >> "$out/cuda-bandwidth.txt"
        "$d/$b" >> "$out/cuda-bandwidth.txt" 2>&1
    done
done
. "$(dirname "$0")/vulkan-env.sh"
export STRATA_REQUIRE_WGPU=1
STRATA_SEED=$seed "$d/wgpu" scan --test-threads=2 --nocapture 2>&1 | grep -v XDG_RUNTIME_DIR > "$out/wgpu-scans.txt"
echo "wgpu scans: exit ${PIPESTATUS[0]}" | tee -a "$out/device.txt"
for turn in 1 2; do
    echo "== bench bandwidth (turn $turn)" >> "$out/wgpu-bandwidth.txt"
    "$d/bench" bandwidth 2>&1 | grep -v XDG_RUNTIME_DIR >> "$out/wgpu-bandwidth.txt"
done
STRATA_SEED=$seed "$d/wgpu" ops_past --test-threads=1 --nocapture 2>&1 | grep -v XDG_RUNTIME_DIR > "$out/wgpu-windows.txt"
echo "wgpu windows: exit ${PIPESTATUS[0]}" | tee -a "$out/device.txt"
