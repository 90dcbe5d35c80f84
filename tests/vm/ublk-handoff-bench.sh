#!/bin/bash
# Guest-side measurement behind a design choice of the ublk frontend (docs/frontend-ublk.md):
# requests served on the queue thread one at a time (UblkServe --workers 0) versus handed to
# workers (--workers 16, the default), same device, same backing file (guest tmpfs), same VM run.
# fio 4 KiB randwrite and randread at QD 32, libaio, O_DIRECT. Prints one line per case and the
# ratios; appends them to $OUT (default build/vm/ublk-handoff.txt under the repository).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
JAR=$ROOT/cli/target/mirrorctl.jar
OUT=${OUT:-$ROOT/build/vm/ublk-handoff.txt}
RUNTIME=${RUNTIME:-15}
[ "${IN_UBLK_VM:-}" = 1 ] || { echo "run inside the test VM (tests/vm/run.sh -- $0)" >&2; exit 2; }
mkdir -p "$(dirname "$OUT")"
T=$(mktemp -d /tmp/handoff.XXXXXX)
truncate -s 512M "$T/backing"
dd if=/dev/urandom of="$T/backing" bs=1M count=512 conv=notrunc status=none
declare -A iops
for w in 0 16; do
    mkfifo "$T/in.$w"
    java -Xmx256m -cp "$JAR" org.ublkmirror.frontend.ublk.UblkServe "$T/backing" --workers $w --depth 64 \
        < "$T/in.$w" > "$T/dev.$w" 2> "$T/err.$w" &
    pid=$!
    exec 9> "$T/in.$w"
    for _ in $(seq 600); do [ -s "$T/dev.$w" ] && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    dev=$(head -1 "$T/dev.$w")
    [ -b "$dev" ] || { cat "$T/err.$w"; echo "no device for --workers $w"; exit 1; }
    for rw in randwrite randread; do
        fio --name=h --filename="$dev" --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
            --runtime=$RUNTIME --time_based --size=512M --output-format=terse --terse-version=3 > "$T/fio" 2>&1
        if [ $rw = randread ]; then v=$(cut -d';' -f8 "$T/fio"); else v=$(cut -d';' -f49 "$T/fio"); fi
        iops[$w,$rw]=$v
        echo "workers=$w $rw 4k QD32: $v IOPS"
    done
    exec 9>&-
    wait $pid
    tail -1 "$T/err.$w"
done
{
    echo "$(date -u +%FT%TZ) ublk handoff, guest $(uname -r), TCG, fio 4k QD32 libaio direct ${RUNTIME}s, UblkServe on tmpfs file"
    for rw in randwrite randread; do
        echo "  $rw: inline (workers=0) ${iops[0,$rw]} IOPS, workers=16 ${iops[16,$rw]} IOPS, ratio $(awk -v a=${iops[0,$rw]} -v b=${iops[16,$rw]} 'BEGIN{printf "%.2f", (a>0)?b/a:0}')x"
    done
} | tee -a "$OUT"
rm -rf "$T"
