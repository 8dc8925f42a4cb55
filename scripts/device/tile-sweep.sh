#!/usr/bin/env bash
# The warp-specialized GEMM's tile shapes against cuBLAS on the GPU machine: every product of
# SHAPES (or the list below) with each schedule (cooperative, ping-pong) on each tile width
# (256, 128, 64 columns; ping-pong also 32), forced through the environment, ROUNDS times (2);
# then by the rules.
# fp8 cases (`fp8:MxNxK`) run their 256-column tiles in CTA pairs, as the rules do. Prints the
# ratios to cuBLAS in one table (rows: shapes; columns: configurations), from which the rules
# in `WsConfig::rule` were set.
#
#   here:   cargo build --release -p strata-cuda --example gemm
#   there:  scripts/device/tile-sweep.sh target/release/examples/gemm [OUT-DIR]
set -uo pipefail
gemm="$1" out="${2:-.}"
here="$(dirname "$0")"
shapes=(${SHAPES:-32x4096x4096 64x4096x4096 128x4096x4096 256x4096x4096 512x4096x4096 1024x4096x4096
    2048x4096x4096 64x14336x4096 128x14336x4096 256x14336x4096 512x14336x4096 1024x14336x4096
    128x4096x14336 512x4096x14336 128x28672x8192 1024x28672x8192})
configs=("coop 256" "coop 128" "coop 64" "pingpong 256" "pingpong 128" "pingpong 64" "pingpong 32")
for round in $(seq "${ROUNDS:-2}"); do
    for c in "${configs[@]}"; do
        set -- $c
        echo "== round $round: $1 $2" >>"$out/sweep.txt"
        STRATA_GEMM_SCHEDULE=$1 STRATA_GEMM_TILE_N=$2 "$here/gemm-bench.sh" "$gemm" "${shapes[@]}" 2>&1 \
            | grep -E "NT|NN" >>"$out/sweep.txt"
    done
done
echo "== rules" >>"$out/sweep.txt"
"$here/gemm-bench.sh" "$gemm" "${shapes[@]}" 2>&1 | grep -E "NT|NN" >>"$out/sweep.txt"
python3 - "$out/sweep.txt" <<'PY'
import sys
runs, cur = {}, None
for line in open(sys.argv[1]):
    if line.startswith("=="):
        cur = line.split(":")[-1].strip() if ":" in line else "rules"
        continue
    f = line.split()
    runs.setdefault(cur, {}).setdefault("x".join(f[2:5]), []).append(float(f[7]))
names = list(runs)
print("ratio to cuBLAS (each run)".ljust(18) + "".join(n.rjust(16) for n in names))
for shape in runs[names[0]]:
    print(shape.ljust(18) + "".join(("/".join(f"{v:.2f}" for v in runs[n].get(shape, []))).rjust(16) for n in names))
PY
