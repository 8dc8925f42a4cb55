#!/usr/bin/env bash
# NVRTC's cubins from one device call to the next. A call starts on a fresh machine with an
# empty cache, so every kernel compiles again: the first matmul2d suite of a call spent about
# 170 s of its 210 compiling (H200, 2026-11-29). Pack the cache into $OUT at the end of a call
# and carry it into the next:
#
#   there:  scripts/device/cubin-cache.sh restore    (unpacks .device/cubins.tar.gz, if carried)
#           ... the tests and benchmarks ...
#           scripts/device/cubin-cache.sh save       (packs the cache into $OUT/cubins.tar.gz)
#   here:   cp FILES_AT/cubins.tar.gz .device/       (then carry .device as usual)
#
# Entries are keyed by source, options, architecture and NVRTC's version, so a stale archive
# only costs the compiles it cannot serve. The cache is $STRATA_CUDA_CACHE, by default
# /tmp/strata-cuda-cache as in the other scripts here.
set -euo pipefail
cache="${STRATA_CUDA_CACHE:-/tmp/strata-cuda-cache}"
archive="$(dirname "$0")/../../.device/cubins.tar.gz"
case "${1:-}" in
    restore)
        mkdir -p "$cache"
        if [ -f "$archive" ]; then
            tar -xzf "$archive" -C "$cache"
            echo "cubin cache: $(ls "$cache" | wc -l) entries restored into $cache"
        else
            echo "cubin cache: no $archive carried; starting cold"
        fi
        ;;
    save)
        : "${OUT:?save writes \$OUT/cubins.tar.gz: run it on the device machine}"
        mkdir -p "$cache"
        tar -czf "$OUT/cubins.tar.gz" -C "$cache" .
        echo "cubin cache: $(ls "$cache" | wc -l) entries, $(du -h "$OUT/cubins.tar.gz" | cut -f1) in \$OUT/cubins.tar.gz"
        ;;
    *)
        echo "usage: $0 restore|save" >&2
        exit 2
        ;;
esac
