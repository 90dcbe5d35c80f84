#!/usr/bin/env bash
# make demo: the whole story on a real file system.
# Two legs (sparse files), the daemon with its device (FUSE + loop on kernels without ublk),
# ext4 on it, a data set, an outage with more writes, the tracking log, the return with an
# online resync under load, verify, stop; then a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
MIRRORCTL="$PWD/bin/mirrorctl"
SIZE=${DEMO_SIZE:-1G}
WORK=$(mktemp -d /var/tmp/ublk-mirror-demo.XXXXXX)
export UBLK_MIRROR_CONF_DIR=$WORK/conf UBLK_MIRROR_RUN_DIR=$WORK/run
NAME=demo
MNT=$WORK/mnt
started=0 mounted=0 loadpid=
# The daemon mounts fusectl for its watchdog when it is not there; the demo leaves it as it found it.
FUSECTL=/sys/fs/fuse/connections
fusectl_before=0; grep -q " $FUSECTL fusectl " /proc/self/mounts && fusectl_before=1
t0=$(date +%s%N)

cleanup() {
  set +e
  [ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null && wait "$loadpid" 2>/dev/null
  [ $mounted = 1 ] && umount "$MNT"
  [ $started = 1 ] && "$MIRRORCTL" stop $NAME >/dev/null 2>&1
  [ $fusectl_before = 0 ] && grep -q " $FUSECTL fusectl " /proc/self/mounts && umount "$FUSECTL"
  rm -rf "$WORK"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

[ "$(id -u)" = 0 ] || { echo "make demo: needs root (FUSE mount, loop device, mkfs)"; exit 1; }
mkdir -p "$MNT" "$WORK/ship"

step "what this kernel offers"
run "$MIRRORCTL" doctor || true

step "create two legs ($SIZE each, sparse) and the mirror"
run "$MIRRORCTL" create $NAME --primary "$WORK/primary.img" --secondary "$WORK/secondary.img" --size "$SIZE" --ship-dir "$WORK/ship"

step "start: the device appears"
DEV=$("$MIRRORCTL" start $NAME)
started=1
echo "device: $DEV"

step "mkfs.ext4 and mount"
run mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$DEV"
run mount -o discard "$DEV" "$MNT"
mounted=1

step "write a data set (64 MiB in 16 files) while mirrored"
for i in $(seq 1 16); do head -c 4M /dev/urandom > "$MNT/base-$i.bin"; done
sync
run "$MIRRORCTL" status $NAME

step "outage: detach the secondary, keep writing"
run "$MIRRORCTL" detach $NAME
t_out=$(date +%s)
for i in $(seq 1 8); do head -c 2M /dev/urandom > "$MNT/outage-$i.bin"; done
dd if=/dev/urandom of="$MNT/base-3.bin" bs=4k count=16 seek=100 conv=notrunc,fsync status=none
sync
(cd "$MNT" && sha256sum *.bin > "$WORK/sums")
run "$MIRRORCTL" status $NAME

step "the tracking log: what changed, and when"
"$MIRRORCTL" log $NAME | head -n 12
echo "..."
tracked=$("$MIRRORCTL" log $NAME --json | sed -n 's/.*"dirty_blocks": \([0-9]*\).*/\1/p' | head -1)
echo "tracked blocks: $tracked"
echo "shipped copy at the second location:"
"$MIRRORCTL" log $NAME --shipped | head -n 1

step "return: attach, resync online while the file system keeps writing"
( i=0; while :; do i=$((i+1)); head -c 256K /dev/urandom > "$MNT/during-resync-$((i % 8)).bin"; sleep 0.05; done ) &
loadpid=$!
tr0=$(date +%s%N)
"$MIRRORCTL" attach $NAME | tee "$WORK/attach.out"
tr1=$(date +%s%N)
kill $loadpid; wait $loadpid 2>/dev/null || true; loadpid=
sync
resynced=$(sed -n 's/.*resync copied \([0-9]*\) block.*/\1/p' "$WORK/attach.out")

step "verify online: the legs must be identical"
run "$MIRRORCTL" verify $NAME

step "the files are intact"
(cd "$MNT" && sha256sum --quiet -c "$WORK/sums") && echo "all $(wc -l < "$WORK/sums") checksums match"

step "unmount, stop, verify offline"
run umount "$MNT"; mounted=0
run "$MIRRORCTL" stop $NAME; started=0
run "$MIRRORCTL" verify $NAME
run "$MIRRORCTL" status $NAME

t1=$(date +%s%N)
vol=$("$MIRRORCTL" status $NAME --json | sed -n 's/.*"bytes": \([0-9]*\).*/\1/p' | head -1)
bs=4096
step "summary"
awk -v tr="$tracked" -v rs="${resynced:-0}" -v vol="$vol" -v bs=$bs -v t=$(( (t1 - t0) / 1000000 )) -v r=$(( (tr1 - tr0) / 1000000 )) 'BEGIN {
  printf "blocks tracked during the outage: %d (%.1f MiB)\n", tr, tr*bs/1048576;
  printf "resynced: %.1f MiB of a %.0f MiB volume (%.2f%%) in %.1f s\n", rs*bs/1048576, vol/1048576, 100*rs*bs/vol, r/1000;
  printf "whole demo: %.1f s\n", t/1000 }'
