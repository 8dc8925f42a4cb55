#!/usr/bin/env bash
# The machine code NVIDIA's Vulkan driver makes of our WGSL: runs the f16 GEMM benchmark (the
# cooperative-matrix kernel, with the default tiles and each tiling named) with the driver's
# shader disk cache pointed into $OUT, so that the cache comes back to be decoded and
# disassembled here (there is no profiler for Vulkan compute on the GPU machine; the SASS is the
# only view of what the driver did with the cooperative matrices: ldmatrix or not, registers,
# spills).
#
#   there:  scripts/device/wgpu-sass.sh .device/bench [WMxWNxRMxRNxBKxSTAGES ...]
#   here:   scripts/sass-from-nvcache.sh FILES_AT/glcache.tar.gz OUT_DIR (one .sass per pipeline)
set -uo pipefail
bench="$1"; shift
out="${OUT:-/tmp/out}"
cache=/tmp/glcache
rm -rf "$cache"; mkdir -p "$cache"
export __GL_SHADER_DISK_CACHE=1 __GL_SHADER_DISK_CACHE_PATH="$cache" __GL_SHADER_DISK_CACHE_SKIP_CLEANUP=1
"$(dirname "$0")/wgpu-coop.sh" - "$bench" "$@"
# (Packed: the cache's nested folders are too deep to come back from the machine as they are.)
find "$cache" -type f | head -50
tar -czf "$out/glcache.tar.gz" -C "$cache" .
