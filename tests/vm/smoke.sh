#!/bin/bash
# Guest-side smoke test of the VM harness (run by `make vm-test` through tests/vm/run.sh).
# Proves: ublk_drv loaded and /dev/ublk-control present; java runs; ext4 on a loop device;
# md raid1 available; a ublk device (tests/vm/ublk-null, RAM backing) round trip: raw dd with
# checksums, then ext4 on /dev/ublkbN with a file checksum and e2fsck; device deleted after.
# Exit status: 0 when every check passed, 1 otherwise.
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
UBLK_NULL=${UBLK_NULL:-$ROOT/build/vm/ublk-null}
if [ "${IN_UBLK_VM:-}" != 1 ] && [ "${1:-}" != --host ]; then
    echo "smoke.sh: meant to run inside the test VM (tests/vm/run.sh -- $0); --host to force" >&2
    exit 2
fi

pass=0 fail=0 failed=()
T=$(mktemp -d /tmp/smoke.XXXXXX)
check() { # name command...: runs, times, reports
    local name=$1 rc; shift
    local t0=$EPOCHREALTIME
    echo "--- $name"
    # Not in an `if`: there bash would ignore the `set -e` inside the check bodies.
    "$@" > "$T/out" 2>&1; rc=$?
    if [ $rc -eq 0 ]; then
        pass=$((pass + 1)); sed 's/^/    /' "$T/out"
        printf 'PASS %-34s %6.2fs\n' "$name" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')"
    else
        fail=$((fail + 1)); failed+=("$name"); sed 's/^/    /' "$T/out"; echo "    (exit status $rc)"
        printf 'FAIL %-34s %6.2fs\n' "$name" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')"
    fi
}

ublk_control() {
    grep -w '^ublk_drv' /proc/modules && test -c /dev/ublk-control && ls -l /dev/ublk-control
}

java_version() { java -version 2>&1; }

ext4_on_loop() (
    set -e
    truncate -s 128M "$T/loop.img"
    dev=$(losetup -f --show "$T/loop.img")
    trap 'rc=$?; set +e; umount "$T/mnt" 2>/dev/null; losetup -d "$dev"; exit $rc' EXIT
    mkfs.ext4 -q -F "$dev"
    mkdir -p "$T/mnt" && mount "$dev" "$T/mnt"
    head -c 8M /dev/urandom > "$T/file"
    cp "$T/file" "$T/mnt/file" && sync
    umount "$T/mnt"; mount "$dev" "$T/mnt"
    cmp "$T/file" "$T/mnt/file"
    umount "$T/mnt"
    e2fsck -fn "$dev"
    echo "ext4 on $dev: 8 MiB file intact after remount, e2fsck clean"
)

md_raid1() {
    grep -q raid1 /proc/mdstat || { cat /proc/mdstat; return 1; }
    head -1 /proc/mdstat
}

ublk_roundtrip() (
    set -e
    [ -x "$UBLK_NULL" ] || { echo "$UBLK_NULL missing (make build/vm/ublk-null on the host)"; exit 1; }
    "$UBLK_NULL" -s 128 > "$T/ublk.log" 2>&1 &
    pid=$!
    trap 'rc=$?; set +e; umount "$T/um" 2>/dev/null; kill -TERM $pid 2>/dev/null; wait $pid; exit $rc' EXIT
    for _ in $(seq 200); do grep -q ready "$T/ublk.log" && break; kill -0 $pid || break; sleep 0.05; done
    cat "$T/ublk.log"
    dev=$(sed -n 's/.*ready \(\/dev\/ublkb[0-9]*\).*/\1/p' "$T/ublk.log")
    [ -b "$dev" ]
    head -c 64M /dev/urandom > "$T/data"
    t0=$EPOCHREALTIME
    dd if="$T/data" of="$dev" bs=1M oflag=direct status=none
    t1=$EPOCHREALTIME
    dd if="$dev" of="$T/back" bs=1M count=64 iflag=direct status=none
    t2=$EPOCHREALTIME
    a=$(sha256sum < "$T/data") b=$(sha256sum < "$T/back")
    echo "raw 64 MiB: write $(awk -v a=$t0 -v b=$t1 'BEGIN{printf "%.0f", 64/(b-a)}') MB/s, read $(awk -v a=$t1 -v b=$t2 'BEGIN{printf "%.0f", 64/(b-a)}') MB/s, sha256 ${a%% *}"
    [ "$a" = "$b" ]
    mkfs.ext4 -q -F "$dev"
    mkdir -p "$T/um" && mount "$dev" "$T/um"
    head -c 16M "$T/data" > "$T/um/f"; sync
    umount "$T/um"; mount "$dev" "$T/um"
    head -c 16M "$T/data" | cmp - "$T/um/f"
    umount "$T/um"
    e2fsck -fn "$dev"
    echo "ext4 on $dev: 16 MiB file intact after remount, e2fsck clean"
    trap - EXIT; kill -TERM $pid; wait $pid
    cat "$T/ublk.log" | tail -1
    ! ls /dev/ublkb* 2>/dev/null
)

t_all=$EPOCHREALTIME
check "ublk_drv + /dev/ublk-control" ublk_control
check "java -version" java_version
check "mkfs.ext4 + mount on loop" ext4_on_loop
check "md raid1 personality" md_raid1
check "ublk RAM device round trip" ublk_roundtrip
rm -rf "$T"
printf 'smoke: %d passed, %d failed in %.1fs%s\n' $pass $fail \
    "$(awk -v a="$t_all" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" "${failed[*]:+ (failed: ${failed[*]})}"
[ $fail -eq 0 ]
