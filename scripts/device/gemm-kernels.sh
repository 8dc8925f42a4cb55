#!/usr/bin/env bash
# Which kernels each side of the gemm example launches, and how long each takes, on the GPU
# machine (Nsight Compute, clocks left alone):
#
#   here:   cargo build --release -p strata-cuda --example gemm
#   there:  scripts/device/gemm-kernels.sh target/release/examples/gemm CASE [OUT_DIR]
#
# Profiles every kernel of one case (ours, cuBLAS's and the L2 flushes) for its duration only,
# then prints the median duration per kernel (name and grid): how a product's time splits between its
# kernels (split-K's second pass, cuBLAS's own reductions).
set -euo pipefail
bin="$1"
case="$2"
out="${3:-/tmp}"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
export STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
. "$(dirname "$0")/cublas-env.sh"
name="kernels-${case//[:x]/_}"
"$ncu" -f --clock-control none --metrics gpu__time_duration.sum --csv --page raw "$bin" "$case" >"$out/$name.csv" 2>"$out/$name.err" || { tail -5 "$out/$name.err"; exit 1; }
python3 - "$out/$name.csv" "$case" <<'PY'
import csv, statistics, sys
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 5]
head = rows[0]
col = {c: head.index(c) for c in ("Kernel Name", "Grid Size", "Block Size", "gpu__time_duration.sum")}
scale = {"nsecond": 1e-3, "ns": 1e-3, "usecond": 1.0, "us": 1.0, "msecond": 1e3, "ms": 1e3}.get(rows[1][col["gpu__time_duration.sum"]], 1.0)
times = {}
for r in rows[2:]:
    try:
        key = (r[col["Kernel Name"]][:70], r[col["Grid Size"]], r[col["Block Size"]])
        times.setdefault(key, []).append(float(r[col["gpu__time_duration.sum"]].replace(",", "")) * scale)
    except ValueError:
        pass
print(f"{sys.argv[2]}: median µs per kernel (launches, grid, block)")
for (k, grid, block), v in sorted(times.items(), key=lambda kv: -statistics.median(kv[1])):
    print(f"  {statistics.median(v):9.2f}  ({len(v):3})  {grid:>14} {block:>12}  {k}")
PY
