#!/usr/bin/env bash
# One compute-sanitizer tool over the CUDA test suite (or the tests matching FILTER), with its
# reports counted per kernel and offset: every kernel's symbol names it (`compile::named`:
# strata_gemm_ws_..._cols_224), so the table says which kernel and where.
#
#   there:  scripts/device/cuda-sanitize.sh .device/gpu memcheck|initcheck|racecheck [FILTER]
#
# The tuner's test (minutes of timing, no new kernels) and the out-of-memory test (whose refused
# allocation memcheck reports as an API error) are left out. Exits non-zero on any report.
#
# initcheck does not appear to follow the copy engine's stores (TMA, `cp.async.bulk.tensor`): a
# buffer they alone wrote reads as uninitialized (inferred, not checked directly). Its only
# reports on the suite (H200, 2026-11-29) are the split-K reduction's reads of partial tiles
# that `gemm_ws` stored that way, and only where the pool's block had not been written by a
# plain store or copy before: 2 × 1440 16-byte reads a type, exactly the 23,040 bytes by which
# the 599,040-byte workspace of the 48 × 520 × 1000 products outgrows the 576,000 bytes its
# block last held (an operand's upload), while the products match the CPU.
set -uo pipefail
bin="$1"; tool="${2:-memcheck}"; filter="${3:-}"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE="${STRATA_CUDA_CACHE:-/tmp/strata-cuda-cache}"
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed, $tool${filter:+, tests matching $filter}"
log="$(mktemp)"
STRATA_SEED=$seed compute-sanitizer --tool "$tool" --print-limit 100000 --error-exitcode 9 "$bin" $filter \
    --skip tuned --skip bad_input_and_out_of_memory_are_errors --test-threads=1 --nocapture >"$log" 2>&1
status=$?
grep -E "cases|test result|ERROR SUMMARY|RACECHECK SUMMARY" "$log"
echo "== reports per kind, kernel and offset"
# A report's first line says its kind ("Uninitialized __global__ memory read of size 16 bytes"),
# the next where ("at strata_...+0x4cd0").
# (The first report may share its line with the test's name.)
awk '!/SUMMARY|COMPUTE-SANITIZER|Saved host/ && match($0, /========= [A-Z].*/) { kind = substr($0, RSTART + 10) }
     /^=========     at / { print kind " | " $3 }' "$log" | sort | uniq -c | sort -rn | head -30
rm -f "$log"
exit $status
