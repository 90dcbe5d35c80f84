#!/bin/bash
# The FUSE + loop floor (bench/profile/fuse-floor.c, one or two fallocated 512 MiB legs): warm-up,
# then fio 4 KiB QD16 direct for SECONDS, with the server's utime/stime (clock ticks) before and
# after; the counterpart of mirror.sh and single.sh for a server with no engine.
#   sudo bench/profile/floor.sh 1|2 randwrite|randread SECONDS stat|none
# stat: perf stat -a over the measured run (task clock, context switches, futex/pwrite/write/read calls).
set -e
LEGS=$1; RW=$2; T=$3; MODE=$4
case "$LEGS" in 1|2) ;; *) echo "usage: $0 1|2 randwrite|randread SECONDS stat|none" >&2; exit 2 ;; esac
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
W=$(mktemp -d /var/tmp/floor.XXXXXX)
SPID= DEV=
cleanup() {
  set +e
  [ -n "$DEV" ] && losetup -d "$DEV"
  exec 9>&-            # closing its stdin makes the server unmount and exit
  if [ -n "$SPID" ]; then
    for _ in $(seq 1 50); do kill -0 "$SPID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SPID" 2>/dev/null && kill "$SPID"
  fi
  mountpoint -q "$W/mnt" && umount -l "$W/mnt"
  rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -pthread -o "$W/fuse-floor" "$ROOT/bench/profile/fuse-floor.c"
legs=()
for i in $(seq 1 "$LEGS"); do fallocate -l 536870912 "$W/leg$i.img"; legs+=("$W/leg$i.img"); done
mkfifo "$W/in"
"$W/fuse-floor" "$W/mnt" 536870912 "${legs[@]}" 8 <"$W/in" >"$W/out" 2>"$W/err" &
SPID=$!
exec 9>"$W/in"
for _ in $(seq 1 50); do [ -s "$W/out" ] && break; sleep 0.1; done
[ -s "$W/out" ] || { cat "$W/err" >&2; exit 1; }
DEV=$(losetup --find --show --direct-io=on --sector-size 4096 "$W/mnt/disk")
echo "dev $DEV, $LEGS leg(s)"
fio --name=w --filename=$DEV --rw=randrw --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=3 --output=/dev/null
awk '{print "before utime",$14,"stime",$15}' /proc/$SPID/stat
F="fio --name=t --filename=$DEV --rw=$RW --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=$T --output-format=terse --terse-version=3"
case $MODE in
 stat) perf stat -a -e task-clock,context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64,syscalls:sys_enter_write,syscalls:sys_enter_read -- $F 2>&1 | awk -F';' 'NF>50{print "IOPS r",$8," w",$49; next} {print}' | grep -v '^$';;
 *) $F | awk -F';' '{print "IOPS r",$8," w",$49}';;
esac
awk '{print "after utime",$14,"stime",$15}' /proc/$SPID/stat
