#!/usr/bin/env bash
# Two settings of the GEMM against cuBLAS in one call, alternately (A, B, A, B): each run times
# cuBLAS beside ours in the same process, so the table compares ratios measured minutes apart
# on the same warm card. A setting is a list of environment assignments ("-" for none), e.g.
# the rules against a width forced as an earlier rule chose it:
#
#   here:   cargo build --release -p strata-cuda --example gemm
#   there:  scripts/device/gemm-ab.sh target/release/examples/gemm "-" "STRATA_GEMM_TILE_N=64" \
#               32x4096x4096 64x4096x4096 fp8:128x4096x4096 ...
#
# A setting may name another binary as GEMM=PATH (two builds of the kernels against each
# other: the kernels are compiled from the source each binary embeds, and cached apart):
#
#   there:  scripts/device/gemm-ab.sh .device/gemm "GEMM=.device/gemm-old" "-" 4096 8192
#
# Prints one row per case: the ratio to cuBLAS of each run of A, then of B.
set -uo pipefail
gemm="$1" a="$2" b="$3"
shift 3
here="$(dirname "$0")"
log="$(mktemp)"
for round in 1 2; do
    for side in A B; do
        setting=$a
        [ $side = B ] && setting=$b
        [ "$setting" = "-" ] && setting=""
        bin=$gemm vars=""
        for kv in $setting; do
            case $kv in
            GEMM=*) bin=${kv#GEMM=} ;;
            *) vars="$vars $kv" ;;
            esac
        done
        echo "== $side" >>"$log"
        env $vars "$here/gemm-bench.sh" "$bin" "$@" 2>&1 | grep -E "NT|NN" >>"$log"
    done
done
python3 - "$log" "$a" "$b" <<'PY'
import sys
runs, side = {"A": {}, "B": {}}, None
for line in open(sys.argv[1]):
    if line.startswith("=="):
        side = line.split()[1]
        continue
    f = line.split()
    runs[side].setdefault(" ".join(f[0:5]), []).append(float(f[7]))
print(f"A: {sys.argv[2]}\nB: {sys.argv[3]}")
print("case".ljust(26) + "A".rjust(12) + "B".rjust(12))
for case in runs["A"]:
    cell = lambda s: "/".join(f"{v:.2f}" for v in runs[s].get(case, []))
    print(case.ljust(26) + cell("A").rjust(12) + cell("B").rjust(12))
PY
