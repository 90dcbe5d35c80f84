#!/bin/bash
# Guest-side end-to-end test of the ublk frontend (run through tests/vm/run.sh; part of
# `make vm-test`). Uses the host-built bin/mirrorctl and native/out/libublkmirror.so.
#  1. doctor: ublk present, features from GET_FEATURES decoded by name
#  2. create a mirror on two file legs; start --frontend ublk prints /dev/ublkbN; the
#     /dev/disk/by-mirror link; status names device and frontend
#  3. mkfs.ext4 + mount, files with checksums, remount, checksums again; stop refused while
#     mounted; unmount, stop, verify offline: legs identical, e2fsck clean
#  4. user recovery: mounted, writing; kill -9 the daemon; the device stays; start again
#     re-attaches it (START/END_USER_RECOVERY) after reconcile; the writer finishes without an
#     I/O error; checksums; unmount, stop, legs identical
#  5. --frontend auto --no-recover after a kill -9: auto says ublk; the old device is deleted,
#     a new one made, data intact, legs byte-identical
#  6. the legacy command encoding (6.0-6.4 kernels), forced on this kernel (whose ublk_drv keeps
#     the legacy opcodes) with UBLK_MIRROR_UBLK_ENCODING=legacy: doctor says so, start makes a
#     device that speaks it, ext4 files intact, new data written and read back, legs identical
#  (--frontend ublk on a kernel without ublk is covered on the host, which has none)
# Exit status: 0 when every check passed.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
M=$ROOT/bin/mirrorctl
if [ "${IN_UBLK_VM:-}" != 1 ] && [ "${1:-}" != --host ]; then
    echo "ublk-mirror-smoke.sh: meant to run inside the test VM (tests/vm/run.sh -- $0)" >&2
    exit 2
fi
export UBLK_MIRROR_CONF_DIR=/tmp/um-conf UBLK_MIRROR_RUN_DIR=/run/ublk-mirror
T=$(mktemp -d /tmp/umsmoke.XXXXXX)
MNT=$T/mnt
mkdir -p "$MNT" "$UBLK_MIRROR_CONF_DIR"
pass=0 fail=0 failed=()
check() {
    local name=$1 rc; shift
    local t0=$EPOCHREALTIME
    echo "--- $name"
    "$@" > "$T/out" 2>&1; rc=$?
    sed 's/^/    /' "$T/out"
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); r=PASS; else fail=$((fail + 1)); failed+=("$name"); r=FAIL; echo "    (exit status $rc)"; fi
    printf '%s %-44s %6.2fs\n' $r "$name" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')"
}
cleanup() {
    umount "$MNT" 2>/dev/null
    [ -f "$UBLK_MIRROR_RUN_DIR/m1.pid" ] && kill -9 "$(cat "$UBLK_MIRROR_RUN_DIR/m1.pid")" 2>/dev/null
    true
}
trap cleanup EXIT

doctor() (
    set -e
    "$M" doctor | tee "$T/doctor"
    grep -Eq '^  ublk +ok' "$T/doctor"
    grep -Eq 'ublk-feat +ok .*USER_RECOVERY.*from GET_FEATURES' "$T/doctor"
)

create() (
    set -e
    "$M" create m1 --primary "$T/p.img" --secondary "$T/s.img" --size 256M
)

start_ublk() (
    set -e
    dev=$("$M" start m1 --frontend ublk 2> "$T/start.err")
    cat "$T/start.err"
    echo "start printed: $dev"
    [[ "$dev" =~ ^/dev/ublkb[0-9]+$ ]]
    [ -b "$dev" ]
    echo "$dev" > "$T/dev"
    [ "$(readlink /dev/disk/by-mirror/m1)" = "$dev" ]
    "$M" status m1 --json | tee "$T/status"
    grep -q "\"device\": *\"$dev\"" "$T/status"
    grep -q '"frontend": *"ublk"' "$T/status"
)

fs_files() (
    set -e
    dev=$(cat "$T/dev")
    mkfs.ext4 -q -F "$dev"
    mount "$dev" "$MNT"
    for i in 1 2 3 4; do head -c $((i * 3))M /dev/urandom > "$MNT/f$i"; done
    dd if=/dev/urandom of="$MNT/big" bs=1M count=24 oflag=direct status=none
    (cd "$MNT" && sha256sum f1 f2 f3 f4 big) > "$T/sums"
    umount "$MNT"; mount "$dev" "$MNT"
    (cd "$MNT" && sha256sum -c "$T/sums")
    if "$M" stop m1 2> "$T/stop.err"; then echo "stop succeeded while mounted"; exit 1; fi
    cat "$T/stop.err"
    grep -q "is mounted on" "$T/stop.err"
    umount "$MNT"
    e2fsck -fn "$dev"
    "$M" stop m1
    sleep 0.5
    [ ! -e "$dev" ] || { echo "$dev still exists after stop"; exit 1; }
    [ ! -e /dev/disk/by-mirror/m1 ]
    "$M" verify m1
)

recover_mounted() (
    set -e
    dev=$("$M" start m1 --frontend ublk --queues 2 --depth 32)  # two queue threads and rings
    ls /sys/block/${dev#/dev/}/mq | tee "$T/mq"
    [ "$(wc -l < "$T/mq")" = 2 ]
    # the largest request: 1 MiB by default (--max-io)
    [ "$(cat /sys/block/${dev#/dev/}/queue/max_hw_sectors_kb)" = 1024 ] || { echo "max_hw_sectors_kb $(cat /sys/block/${dev#/dev/}/queue/max_hw_sectors_kb), want 1024"; exit 1; }
    echo "started: $dev"
    mount "$dev" "$MNT"
    (cd "$MNT" && sha256sum -c "$T/sums" > /dev/null)
    # a writer that keeps going across the daemon's death
    ( for i in $(seq 1 40); do dd if=/dev/urandom of="$MNT/w$i" bs=256k count=4 conv=fsync status=none || exit 1; done
      echo writer-done ) > "$T/writer.out" 2>&1 &
    wpid=$!
    sleep 2
    pid=$(cat "$UBLK_MIRROR_RUN_DIR/m1.pid")
    kill -9 "$pid"
    echo "killed daemon $pid"
    sleep 1
    [ -b "$dev" ] || { echo "$dev vanished after kill -9"; exit 1; }
    t0=$EPOCHREALTIME
    # asked for smaller requests: the recovered device keeps its own queues, depth and 1 MiB buffers
    dev2=$("$M" start m1 --frontend ublk --max-io 256K 2> "$T/start2.err")
    cat "$T/start2.err"
    grep -q "^ublk: $dev 2 queues of depth 32, requests up to 1 MiB," "$T/start2.err" \
        || { echo "recovered device: want '2 queues of depth 32, requests up to 1 MiB' in the start-up lines"; exit 1; }
    echo "restart printed: $dev2 after $(awk -v a=$t0 -v b=$EPOCHREALTIME 'BEGIN{printf "%.1f", b-a}') s"
    [ "$dev2" = "$dev" ]
    grep -q "user recovery" "$T/start2.err"
    wait $wpid || { cat "$T/writer.out"; echo "writer failed"; exit 1; }
    cat "$T/writer.out"
    grep -q writer-done "$T/writer.out"
    (cd "$MNT" && sha256sum -c "$T/sums" > /dev/null && sha256sum w* > "$T/wsums")
    umount "$MNT"
    e2fsck -fn "$dev"
    mount "$dev" "$MNT"
    (cd "$MNT" && sha256sum -c "$T/wsums" > /dev/null)
    umount "$MNT"
    ! dmesg | grep -i "I/O error.*ublkb" || { echo "kernel logged I/O errors"; exit 1; }
    "$M" stop m1
    "$M" verify m1
)

no_recover() (
    set -e
    dev=$("$M" start m1 --frontend ublk)
    pid=$(cat "$UBLK_MIRROR_RUN_DIR/m1.pid")
    kill -9 "$pid"; sleep 1
    dev2=$("$M" start m1 --frontend auto --no-recover 2> "$T/start3.err")
    cat "$T/start3.err"
    grep -q "no-recover" "$T/start3.err"
    grep -q "frontend auto: using ublk" "$T/start3.err"
    [ -b "$dev2" ]
    mount "$dev2" "$MNT"
    (cd "$MNT" && sha256sum -c "$T/sums" > /dev/null && sha256sum -c "$T/wsums" > /dev/null)
    umount "$MNT"
    "$M" stop m1
    "$M" verify m1
    ! ls /dev/ublkb* 2>/dev/null
    # independent of verify: the volume is the last 256 MiB of each leg file (metadata in front)
    ls -l "$T/p.img" "$T/s.img"
    cmp <(tail -c $((256 << 20)) "$T/p.img") <(tail -c $((256 << 20)) "$T/s.img")
    echo "volume areas of the two leg files byte-identical (cmp)"
)

legacy_encoding() (
    set -e
    export UBLK_MIRROR_UBLK_ENCODING=legacy
    "$M" doctor | tee "$T/doctor2"
    grep -Eq 'ublk-feat +ok .*USER_RECOVERY.*legacy command encoding' "$T/doctor2"
    dev=$("$M" start m1 --frontend ublk 2> "$T/start4.err")
    cat "$T/start4.err"
    grep -q "speaks the legacy command encoding" "$T/start4.err"
    [ -b "$dev" ]
    mount "$dev" "$MNT"
    (cd "$MNT" && sha256sum -c "$T/sums" > /dev/null)
    dd if=/dev/urandom of="$MNT/legacy" bs=1M count=8 oflag=direct status=none
    s1=$(sha256sum < "$MNT/legacy")
    umount "$MNT"; echo 3 > /proc/sys/vm/drop_caches; mount "$dev" "$MNT"
    [ "$(sha256sum < "$MNT/legacy")" = "$s1" ] || { echo "data written over the legacy encoding changed"; exit 1; }
    echo "8 MiB written and read back over the legacy encoding; earlier files intact"
    umount "$MNT"
    e2fsck -fn "$dev"
    "$M" stop m1
    "$M" verify m1
)

t_all=$EPOCHREALTIME
check "doctor: ublk + GET_FEATURES decoded" doctor
check "create mirror on two file legs" create
check "start --frontend ublk" start_ublk
check "ext4, checksums, stop refused mounted, verify" fs_files
check "2 queues, kill -9 mounted, user recovery" recover_mounted
check "kill -9 + start --frontend auto --no-recover" no_recover
check "legacy command encoding (forced)" legacy_encoding
printf 'ublk-mirror-smoke: %d passed, %d failed in %.1fs%s\n' $pass $fail \
    "$(awk -v a="$t_all" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "${failed[*]:+ (failed: ${failed[*]})}"
rm -rf "$T"
[ $fail -eq 0 ]
