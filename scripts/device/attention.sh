#!/usr/bin/env bash
# Attention on the GPU machine, in one go, from prebuilt release binaries (no cargo there):
#
#   here:   cargo test --release -p strata-cuda --no-run            (target/release/deps/gpu-HASH)
#           cargo build --release -p strata-cuda --example attention
#   there:  scripts/device/attention.sh GPU_TEST_BIN ATTENTION_EXAMPLE_BIN [CASES...]
#
# The attention conformance suite (every kernel against the CPU backend) with the tensor-core
# kernels where they apply, with mma.sync where Hopper would take wgmma, with wgmma fed by
# cp.async, without ping-pong, and with the general kernel alone; memcheck and racecheck over
# both wgmma forms; then the benchmark: our kernels (both tensor-core kernels), and PyTorch's
# SDPA (FLASH and cuDNN) on the same shapes.
set -uo pipefail
test_bin="$1"
bench_bin="$2"
shift 2
here="$(dirname "$0")"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed"
status=0
filter="attention|cases|test result|panicked|differ"
echo "== attention: the tensor-core kernel where it applies"
STRATA_SEED=$seed "$test_bin" attention --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
echo "== attention: mma.sync where Hopper would take wgmma (STRATA_GEMM_KERNEL=warp)"
STRATA_GEMM_KERNEL=warp STRATA_SEED=$seed "$test_bin" attention --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
echo "== attention: wgmma fed by cp.async rather than the copy engine (STRATA_ATTENTION_TMA=0)"
STRATA_ATTENTION_TMA=0 STRATA_SEED=$seed "$test_bin" attention_matches --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
echo "== attention: the copy engine's consumers without turns (STRATA_ATTENTION_PINGPONG=0)"
STRATA_ATTENTION_PINGPONG=0 STRATA_SEED=$seed "$test_bin" attention_matches --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
echo "== attention: the general kernel alone (STRATA_CUDA_TENSOR_CORES=0)"
STRATA_CUDA_TENSOR_CORES=0 STRATA_SEED=$seed "$test_bin" attention --nocapture 2>&1 | grep -E "$filter"
status=$((status | PIPESTATUS[0]))
# (racecheck follows the threads' shared-memory accesses, not the copy engine's or wgmma's: the
# rings of the copy engine's form rest on their barriers, which it cannot check.)
for setting in "STRATA_ATTENTION_TMA=1" "STRATA_ATTENTION_TMA=0"; do
    for tool in memcheck racecheck; do
        echo "== compute-sanitizer --tool $tool ($setting)"
        env $setting STRATA_SEED=$seed compute-sanitizer --tool $tool --error-exitcode 1 "$test_bin" attention 2>&1 \
            | grep -E "ERROR SUMMARY|RACECHECK SUMMARY|test result|Error|Hazard" | head -20
        status=$((status | PIPESTATUS[0]))
    done
done
echo "== benchmark: ours"
"$bench_bin" "$@"
status=$((status | $?))
echo "== benchmark: ours, mma.sync where Hopper would take wgmma (STRATA_GEMM_KERNEL=warp)"
STRATA_GEMM_KERNEL=warp "$bench_bin" "$@"
status=$((status | $?))
echo "== benchmark: PyTorch SDPA"
python3 "$here/attention_peer.py" "$@"
status=$((status | $?))
echo "exit status $status"
exit $status
