#!/usr/bin/env bash
# The array layer's test suites with CUDA as the default device, on the GPU machine, from
# prebuilt release test binaries of `strata` built with the `cuda` feature (no cargo there):
#
#   here:   cargo test --release -p strata --features cuda --no-run   (target/release/deps/*)
#   there:  scripts/device/array-test.sh DIR REFS
#
# DIR holds the test binaries (arrays, autodiff, compile, memory, nn, numpy, random, vmap), REFS the NumPy
# vectors `scripts/test` writes (target/refs). STRATA_EXPECT_DEVICE=cuda makes the suites fail,
# rather than quietly run on the CPU, if CUDA cannot be the default device.
set -uo pipefail
dir="$1"
refs="$2"
export STRATA_DEVICE=cuda STRATA_EXPECT_DEVICE=cuda STRATA_REFS="$refs" STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
status=0
for t in arrays autodiff compile memory nn numpy random vmap; do
    echo "== strata $t on cuda"
    "$dir/$t" --test-threads=1 2>&1 | grep -E "^test |test result|panicked|left|right|differ" | grep -v " ok$" | tail -15
    status=$((status | PIPESTATUS[0]))
done
exit $status
