#!/usr/bin/env bash
# NVRTC's cubins from one device call to the next. A call starts on a fresh machine with an
# empty cache, so every kernel compiles again: the first matmul2d suite of a call spent about
# 170 s of its 210 compiling (H200, 2026-11-29). Pack the cache into $OUT at the end of a call
# and carry it into the next:
#
#   there:  scripts/device/cubin-cache.sh restore    (unpacks .device/cubins.tar.xz, if carried)
#           ... the tests and benchmarks ...
#           scripts/device/cubin-cache.sh save       (packs the cache into $OUT/cubins.tar.xz)
#   here:   cp FILES_AT/cubins.tar.xz .device/       (then carry .device as usual)
#
# Entries are keyed by source, options, architecture and NVRTC's version, so a stale archive
# only costs the compiles it cannot serve; `save` packs only the cubins this call used or made
# (newer than the mark `restore` leaves), so the archive does not grow with old kernels (where
# the file system keeps no access times, entries only read are dropped and compile again). The
# cache is $STRATA_CUDA_CACHE, by default /tmp/strata-cuda-cache as in the other scripts here:
# a program run between restore and save must see the same value (the crate's own default is
# ~/.cache/strata/cuda). A call carries 64 MiB and brings back files of 16 MiB at most, so save
# warns above 12 MiB.
set -euo pipefail
cache="${STRATA_CUDA_CACHE:-/tmp/strata-cuda-cache}"
archive="$(dirname "$0")/../../.device/cubins.tar.xz"
case "${1:-}" in
    restore)
        mkdir -p "$cache"
        # The mark names the call ($OUT is a fresh folder each call): a second restore in the
        # same call (a script that restores, run after another) would mark the kernels
        # compiled since as old, and `save` would drop them; a later call on a machine still
        # warm restores its own archive.
        if [ -n "${OUT:-}" ] && [ "$(cat "$cache/.restored" 2>/dev/null)" = "$OUT" ]; then
            echo "cubin cache: already restored in this call ($(ls "$cache" | wc -l) entries)"
        elif [ -f "$archive" ]; then
            tar -xJf "$archive" -C "$cache"
            echo "cubin cache: $(ls "$cache" | wc -l) entries restored into $cache"
            # Restored entries count as used only once read: mark them old, and the time.
            find "$cache" -name '*.cubin' -exec touch -a -d '2000-01-01' {} +
            printf '%s' "${OUT:-}" >"$cache/.restored"
        else
            echo "cubin cache: no $archive carried; starting cold"
        fi
        ;;
    save)
        : "${OUT:?save writes \$OUT/cubins.tar.xz: run it on the device machine}"
        mkdir -p "$cache"
        # Entries read (atime) or written (mtime) since the restore; everything without one.
        if [ -f "$cache/.restored" ]; then
            used=$(cd "$cache" && find . -name '*.cubin' \( -anewer .restored -o -newer .restored \) | sort)
        else
            used=$(cd "$cache" && find . -name '*.cubin' | sort)
        fi
        # xz: the 1,198 cubins of a whole suite came to 16.4 MiB with gzip, over what a call brings back.
        printf '%s\n' $used | XZ_OPT='-6 -T0' tar -cJf "$OUT/cubins.tar.xz" -C "$cache" -T -
        bytes=$(stat -c %s "$OUT/cubins.tar.xz")
        echo "cubin cache: $(printf '%s\n' $used | grep -c . || true) entries, $((bytes >> 10)) KiB in \$OUT/cubins.tar.xz"
        [ "$bytes" -le $((12 << 20)) ] || echo "cubin cache: over 12 MiB; carrying it may not fit" >&2
        ;;
    *)
        echo "usage: $0 restore|save" >&2
        exit 2
        ;;
esac
