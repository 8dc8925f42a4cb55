#!/usr/bin/env bash
# The SASS of every compute pipeline in an NVIDIA driver's shader disk cache, as brought back by
# scripts/device/wgpu-sass.sh, with a count of the instructions that matter for a GEMM.
#
#   scripts/sass-from-nvcache.sh FILES_AT/glcache.tar.gz OUT_DIR
#
# Needs nvcachetools (github.com/therontarigo/nvcachetools: `make`; its nvcachedec unpacks the
# cache's .toc/.bin pairs into objects, its nvucdump splits an object into sections) in $NVCT
# (default /tmp/nvcachetools) and nvdisasm (PyPI nvidia-cuda-nvdisasm) in $NVDISASM. Checked on
# driver 580 (H200, 2026-11-29): each pipeline is an NVuc object whose section 1 is the code.
set -euo pipefail
tarball="$1" out="$2"
nvct="${NVCT:-/tmp/nvcachetools}"
nvdisasm="${NVDISASM:-nvdisasm}"
arch="${ARCH:-SM90}"
mkdir -p "$out/cache" "$out/objs" "$out/sass"
tar -xzf "$tarball" -C "$out/cache"
find "$out/cache" -name '*.toc' | while read -r toc; do
    "$nvct/nvcachedec" "$toc" "$out/objs" >/dev/null 2>&1
done
printf '%-12s %7s %6s %6s %6s %6s %5s %5s %5s\n' object lines HMMA LDSM LDG STS BAR STL regs
for obj in "$out"/objs/*.nvuc; do
    [ -e "$obj" ] || continue
    name=$(basename "$obj" .nvuc)
    "$nvct/nvucdump" "$obj" "$out/objs/$name" >/dev/null 2>&1
    code=$(ls "$out/objs/$name"/section1_*.bin 2>/dev/null | head -1)
    [ -n "$code" ] && "$nvdisasm" --binary "$arch" "$code" >"$out/sass/$name.sass" 2>/dev/null || continue
    f="$out/sass/$name.sass"
    # (An opcode, not a longer one it begins: LDG, not LDGSTS.)
    count() { grep -cE "\b$1[ .]" "$f" || true; }
    regs=$(grep -oE '\bR[0-9]+' "$f" | tr -d R | sort -n | tail -1 || true)
    printf '%-12s %7s %6s %6s %6s %6s %5s %5s %5s\n' "$name" "$(wc -l <"$f")" "$(count HMMA)" "$(count LDSM)" \
        "$(count LDG)" "$(count STS)" "$(count BAR)" "$(count STL)" "$((${regs:--1} + 1))"
done
