#!/usr/bin/env bash
# Take the 173 MB stand-in archive to the GPU machine, where at most 64 MiB travels per call.
#
#   here:  bash benchmarks/device_data.sh split [ARCHIVE]   # 3 parts, .gpudata/part{1,2,3}/ (git-ignored)
#   there: bash benchmarks/device_data.sh stash             # copy the carried part(s) to $DATA_DIR
#   there: bash benchmarks/device_data.sh join              # stash, join, check the md5; prints the path
#
# Each part folder travels in its own call (carry: [".gpudata/partN"]); carried folders are
# replaced at the next call, so `stash` copies each part to $DATA_DIR (default
# /tmp/scratchcnn-data), outside the repository copy, where it stays while the machine is
# warm (30 s after a call: make the calls back to back). The last part can travel with the
# call that runs benchmarks/gpu_check.sh, which joins the parts itself.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${DATA_DIR:-/tmp/scratchcnn-data}
NAME=cifar-10-python-jpeg.tar.gz
PARTS=3

case "${1:-}" in
split)
    archive=${2:-../shared/data/$NAME}
    [ -f "$archive" ] || { echo "device_data: no archive at $archive" >&2; exit 1; }
    rm -rf .gpudata
    size=$(stat -c %s "$archive")
    chunk=$(((size + PARTS - 1) / PARTS))
    md5=$(md5sum "$archive" | cut -d' ' -f1)
    for i in $(seq 1 $PARTS); do
        mkdir -p ".gpudata/part$i"
        # part i holds bytes [(i-1)*chunk, i*chunk) of the archive
        dd if="$archive" of=".gpudata/part$i/$NAME.part$i" bs=1M iflag=skip_bytes,count_bytes \
            skip=$(((i - 1) * chunk)) count=$chunk status=none
        echo "$md5" >".gpudata/part$i/$NAME.md5"
    done
    du -sh .gpudata/part*
    echo "md5 $md5; carry .gpudata/part1, then .gpudata/part2 (command: bash benchmarks/device_data.sh stash),"
    echo "then .gpudata/part3 with the check (it joins the parts)"
    ;;
stash)
    mkdir -p "$DATA_DIR"
    found=0
    for f in .gpudata/part*/*; do
        [ -e "$f" ] || continue
        cp "$f" "$DATA_DIR/" && found=1
    done
    [ $found = 1 ] || { echo "device_data: no carried part in .gpudata/" >&2; exit 1; }
    ls -l "$DATA_DIR" >&2
    ;;
join)
    "$0" stash 2>/dev/null || true  # the part carried with this call, if any
    out="$DATA_DIR/$NAME"
    if [ ! -f "$out" ]; then
        for i in $(seq 1 $PARTS); do
            [ -f "$DATA_DIR/$NAME.part$i" ] || {
                echo "device_data: part $i of $PARTS missing in $DATA_DIR (the machine went back between calls?)" >&2
                exit 1
            }
        done
        for i in $(seq 1 $PARTS); do cat "$DATA_DIR/$NAME.part$i"; done >"$out.tmp"
        mv "$out.tmp" "$out"
    fi
    want=$(cat "$DATA_DIR/$NAME.md5")
    got=$(md5sum "$out" | cut -d' ' -f1)
    [ "$got" = "$want" ] || { echo "device_data: md5 $got of the joined archive, expected $want" >&2; exit 1; }
    echo "$out"
    ;;
*)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
