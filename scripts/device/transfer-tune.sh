#!/usr/bin/env bash
# Host copies and tuned products on the GPU machine, each test's output kept in $OUT as it runs
# (so a run cut short still shows how far it got):
#
#   here:   cargo test --release -p strata-cuda --no-run; cargo build --release -p strata-cuda --example bandwidth
#   there:  scripts/device/transfer-tune.sh GPU_TEST_BIN BANDWIDTH_BIN
set -uo pipefail
bin="$1" bw="$2" out="${OUT:-/tmp}"
export STRATA_REQUIRE_CUDA=1 STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
seed="${STRATA_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
echo "seed $seed" | tee "$out/summary.txt"
status=0
for t in host_copies tuned_products; do
    start=$(date +%s)
    STRATA_SEED=$seed timeout "${TEST_LIMIT:-300}" "$bin" "$t" --nocapture > "$out/$t.txt" 2>&1
    rc=$?
    status=$((status | rc))
    echo "$t: exit $rc in $(( $(date +%s) - start )) s; $(grep -E 'test result|panicked' "$out/$t.txt" | head -3 | tr '\n' ' ')" | tee -a "$out/summary.txt"
done
timeout 120 "$bw" > "$out/bandwidth.txt" 2>&1
status=$((status | $?))
cat "$out/bandwidth.txt"
exit $status
