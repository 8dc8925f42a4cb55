#!/usr/bin/env bash
# The wgpu test suite on the GPU machine's NVIDIA adapter through Vulkan, from a prebuilt
# release test binary (no cargo there):
#
#   here:   cargo test --release -p strata-wgpu --no-run   (prints target/release/deps/wgpu-HASH)
#           mkdir -p .gl && (cd .gl && apt-get download libvulkan1 libglvnd0 libglx0 libgl1 libegl1
#               libopengl0 libgles2)   (the machine has the NVIDIA driver but not the Vulkan loader,
#               and its ICD, libGLX_nvidia, needs glvnd; carry .gl)
#   there:  scripts/device/wgpu-test.sh target/release/deps/wgpu-HASH
#
# STRATA_REQUIRE_WGPU=1: a missing adapter fails. The hardware adapter is taken before any
# software one, and the test prints which it ran on.
set -uo pipefail
bin="$1"
. "$(dirname "$0")/vulkan-env.sh"
export STRATA_REQUIRE_WGPU=1
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
# Summaries as they come (a run cut short by a timeout still shows how far it got).
STRATA_SEED=$seed "$bin" --test-threads=2 --nocapture 2>&1 | grep --line-buffered -vE "^(test .* ok$|$)"
exit "${PIPESTATUS[0]}"
