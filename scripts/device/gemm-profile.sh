#!/usr/bin/env bash
# Where the GEMM kernel's warps stall, per SASS instruction, on the GPU machine:
#
#   here:   cargo build --release -p strata-cuda --example gemm
#   there:  scripts/device/gemm-profile.sh target/release/examples/gemm CASE [OUT_DIR]
#
# Profiles the third launch of our kernel for CASE (a case of the gemm example, e.g.
# 4096x4096x4096) with Nsight Compute's warp-state sampling, then prints the speed-of-light
# summary and the 40 instructions with the most stall samples (with the reason columns).
# ncu locks the clocks to base, so its ratios are not the benchmark's.
set -euo pipefail
bin="$1"
case="$2"
out="${3:-/tmp}"
ncu=$(command -v ncu || ls /usr/local/cuda*/bin/ncu | head -1)
export STRATA_CUDA_CACHE=/tmp/strata-cuda-cache
"$ncu" -f -k regex:strata --launch-skip 2 --launch-count 1 --section SpeedOfLight --section WarpStateStats \
    --section SourceCounters --import-source no -o "$out/profile" "$bin" "$case" >/dev/null
"$ncu" -i "$out/profile.ncu-rep" --section SpeedOfLight --section WarpStateStats | grep -E "Duration|Throughput|Cycles|stall" || true
"$ncu" -i "$out/profile.ncu-rep" --page source --csv --print-source sass >"$out/source.csv"
python3 - "$out/source.csv" <<'PY'
import csv, sys
rows = list(csv.reader(open(sys.argv[1])))
head = next(i for i, r in enumerate(rows) if "Source" in r)
cols, body = rows[head], rows[head + 1:]
src = cols.index("Source")
total = next(i for i, c in enumerate(cols) if c.startswith("Warp Stall Sampling (All"))
num = lambda v: float(v.replace(",", "") or 0)
samples = sum(num(r[total]) for r in body if len(r) > total)
print(f"{len(body)} SASS instructions, {samples:.0f} stall samples")
reasons = [i for i, c in enumerate(cols) if c.startswith("stall_") or "Stall" in c and i != total]
for r in sorted(body, key=lambda r: -num(r[total]))[:40]:
    top = sorted(((num(r[i]), cols[i]) for i in reasons if num(r[i]) > 0), reverse=True)[:2]
    print(f"{num(r[total]) / samples:6.1%}  {r[0]:>6}  {r[src][:60]:60}  " + ", ".join(f"{c} {v:.0f}" for v, c in top))
PY
