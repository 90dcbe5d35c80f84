#!/bin/bash
# Guest-side mirror suite (issue #4 part 4): the real mirrorctl and daemon, driven the way an
# operator drives them, over a kernel block device made by the chosen frontend.
#   tests/vm/run.sh --rw $PWD -- tests/vm/mirror.sh [--frontend ublk|fuse] [--size 256M]
# Default frontend: ublk. `--frontend fuse` runs the same checks over FUSE + loop (proves the
# suite itself on a build without the ublk frontend; the user-recovery check is ublk-only and is
# reported as FAIL there, never skipped). Checks (each PASS/FAIL, timed):
#   1 start: `mirrorctl start --frontend F` prints a block device, status says mirrored
#   2 fio verify (crc32c) on the raw device, legs identical online
#   3 ext4: mkfs + mount, files + sha256 after remount and drop_caches, e2fsck clean
#   4 outage: detach / write / attach / resync under fio load; tracked blocks = resynced blocks
#   5 bad input: start when already running -> one clear line, non-zero, legs unchanged
#   6 kill -9 during fio, restart WITH user recovery (ublk): same device node, fs keeps working
#   7 kill -9 during fio, restart WITHOUT recovery: reconcile reported and bounded, fio
#     verify_state_load, e2fsck clean, legs identical (mirrorctl verify + cmp of data areas)
# Exit status: 0 when every check passed, 1 otherwise. Cleans up (umount, daemons by PID).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FRONTEND=${MIRROR_FRONTEND:-ublk}
CHECK_TIMEOUT=${CHECK_TIMEOUT:-600}
SIZE=256M ONLY=
while [ $# -gt 0 ]; do
    case "$1" in
        --frontend) FRONTEND=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --only) ONLY="1 3 $2"; shift 2 ;;   # e.g. "7" (debugging); 1 and 3 (start, mkfs) always run
        --host) HOST_OK=1; shift ;;
        *) echo "mirror.sh: unknown option $1 (use --frontend ublk|fuse, --size SIZE)" >&2; exit 2 ;;
    esac
done
if [ "${IN_UBLK_VM:-}" != 1 ] && [ "${HOST_OK:-}" != 1 ]; then
    echo "mirror.sh: meant to run inside the test VM (tests/vm/run.sh -- $0); --host to force" >&2
    exit 2
fi
case "$FRONTEND" in ublk|fuse) ;; *) echo "mirror.sh: --frontend $FRONTEND: use ublk or fuse" >&2; exit 2 ;; esac
for t in fio mkfs.ext4 e2fsck cmp sha256sum java; do
    command -v $t >/dev/null || { echo "mirror.sh: $t missing on the host root (scripts/deps.sh installs it)" >&2; exit 1; }
done
[ -x "$ROOT/bin/mirrorctl" ] || { echo "mirror.sh: $ROOT/bin/mirrorctl missing: run 'make build' on the host" >&2; exit 1; }

NAME=vm
T=$(mktemp -d /tmp/mirror-vm.XXXXXX)
export UBLK_MIRROR_CONF_DIR=$T/conf UBLK_MIRROR_RUN_DIR=$T/run
MNT=$T/mnt
mkdir -p "$MNT" "$T/state"
PRIMARY=$T/primary.img SECONDARY=$T/secondary.img
# Checks run in subshells: what must outlive one is kept in files under $T
DEV=                       # the mirror's current device ($T/dev)
: > "$T/pids"              # every daemon and fio PID this suite started
VOLUME_BLOCKS=$(( $(numfmt --from=iec "$SIZE") / 4096 ))

ctl() { "$ROOT/bin/mirrorctl" "$@"; }
daemon_pid() { cat "$UBLK_MIRROR_RUN_DIR/$NAME.pid" 2>/dev/null; }
running() { [ -S "$UBLK_MIRROR_RUN_DIR/$NAME.sock" ] && p=$(daemon_pid) && kill -0 "$p" 2>/dev/null; }
secs() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}'; }

cleanup() {
    set +e
    for p in $(cat "$T/fio-pids" 2>/dev/null); do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
    mountpoint -q "$MNT" && { umount "$MNT" || umount -l "$MNT"; }
    if running; then ctl stop "$NAME" --force >/dev/null 2>&1; fi
    for p in $(cat "$T/pids"); do kill -0 "$p" 2>/dev/null && kill -9 "$p"; done
    # a daemon killed with user recovery on leaves its ublk device: a start + stop removes it
    if [ "$FRONTEND" = ublk ] && ls /dev/ublkb* >/dev/null 2>&1 && [ -f "$UBLK_MIRROR_CONF_DIR/$NAME.conf" ] && ! running; then
        ctl start "$NAME" --frontend ublk >/dev/null 2>&1 && ctl stop "$NAME" --force >/dev/null 2>&1
    fi
    for l in $(losetup -a 2>/dev/null | grep "$T" | cut -d: -f1); do losetup -d "$l"; done
    for m in $(awk -v t="$T" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
    rm -rf "$T"
}
trap cleanup EXIT

pass=0 fail=0 failed=() timings=()
check() { # name function: runs, times, reports
    local name=$1 rc; shift
    if [ -n "$ONLY" ] && [[ " $ONLY " != *" ${name%% *} "* ]]; then return 0; fi
    local t0=$EPOCHREALTIME
    echo "--- $name"
    # not in an `if`: `set -e` in the bodies must count; a watchdog ends a check that hangs
    "$@" > "$T/out" 2>&1 &
    local cpid=$!
    ( for _ in $(seq "$CHECK_TIMEOUT"); do sleep 1; kill -0 $cpid 2>/dev/null || exit 0; done
      echo "check timed out after ${CHECK_TIMEOUT}s" >> "$T/out"; kill -TERM $cpid ) &
    local wd=$!
    wait $cpid; rc=$?
    wait $wd
    sed 's/^/    /' "$T/out"
    if [ $rc -eq 0 ]; then pass=$((pass + 1)); r=PASS; else fail=$((fail + 1)); failed+=("$name"); r=FAIL; echo "    (exit status $rc)"; fi
    printf '%s %-44s %6ss\n' $r "$name" "$(secs "$t0")"
    timings+=("$(printf '%s %-44s %6ss' $r "$name" "$(secs "$t0")")")
}

# start [args...]: starts the daemon, sets DEV, records the PID
start() {
    local out
    out=$(ctl start "$NAME" "$@" 2>"$T/start.err") || { cat "$T/start.err"; echo "mirrorctl start $* failed"; return 1; }
    cat "$T/start.err"
    DEV=$(echo "$out" | tail -1)
    echo "$DEV" > "$T/dev"
    daemon_pid >> "$T/pids"
    echo "started: $DEV (daemon $(daemon_pid))"
    [ -b "$DEV" ] || { echo "'$DEV' is not a block device"; return 1; }
}
ensure_running() { if running; then DEV=$(cat "$T/dev"); else start --frontend "$FRONTEND"; fi; }
bg() { echo "$1" >> "$T/fio-pids"; }

# Data-area offset, block size and block count of a leg, from superblock slot A (big endian).
be64() { printf '%d' "0x$(od -An -tx1 -j "$2" -N8 "$1" | tr -d ' \n')"; }
be32() { printf '%d' "0x$(od -An -tx1 -j "$2" -N4 "$1" | tr -d ' \n')"; }
# legs_equal: mirror stopped or quiet; cmp of both data areas byte for byte
legs_equal() {
    local op os bs n
    op=$(be64 "$PRIMARY" 64) os=$(be64 "$SECONDARY" 64) bs=$(be32 "$PRIMARY" 60) n=$(be64 "$PRIMARY" 72)
    [ "$bs" -gt 0 ] && [ "$n" -gt 0 ] || { echo "cannot read the superblock of $PRIMARY"; return 1; }
    cmp -n $((bs * n)) -i "$op:$os" "$PRIMARY" "$SECONDARY" || { echo "data areas differ"; return 1; }
    echo "data areas identical: $n blocks of $bs bytes (cmp, offsets $op / $os)"
}
verify_online() { ctl verify "$NAME"; }
# a crash repair may leave blocks to the resync: wait for it (state mirrored) before comparing
resync_wait() { { ctl resync "$NAME" --wait || true; } | tail -1; ctl status "$NAME" --json | grep -q '"state": "mirrored"'; }

# fio_state_save file size runtime -> runs fio in the background (randwrite, crc32c headers, state saved)
fio_bg_writes() {
    (cd "$T/state" && exec fio --thread --name=crash --filename="$1" --size="$2" --rw=randwrite --bs=4k --iodepth=16 \
        --ioengine=libaio --direct=1 --time_based --runtime="$3" --verify=crc32c --verify_state_save=1 \
        --do_verify=0 --output="$T/fio-bg.out" 2>"$T/fio-bg.err") &
    FIO_BG=$!; bg $FIO_BG
}
# fio_verify_state file size [failed]: every write fio saw acknowledged reads back intact.
# fio's saved state counts a write that completed with an error (EIO when the daemon died) as
# done, so with "failed" the offsets fio reported as failed writes ("io_u error ... write
# offset=N") may hold old data; any other bad block fails the check.
fio_verify_state() {
    local rc=0
    (cd "$T/state" && fio --name=crash --filename="$1" --size="$2" --rw=randwrite --bs=4k --iodepth=16 \
        --ioengine=libaio --direct=1 --verify=crc32c --verify_state_load=1 --verify_only=1 \
        --verify_fatal=$([ -n "${3:-}" ] && echo 0 || echo 1) --output="$T/fio-verify.out" 2>"$T/fio-verify.err") || rc=$?
    { grep -E "READ:" "$T/fio-verify.out" || true; } | head -1
    { grep -ho "write offset=[0-9]*" "$T/fio-bg.err" "$T/fio-bg.out" 2>/dev/null || true; } | sed 's/.*=//' | sort -u > "$T/failed-writes"
    { grep -hi "verify" "$T/fio-verify.out" "$T/fio-verify.err" || true; } | { grep -o "offset[= ][0-9]*" || true; } \
        | { grep -o "[0-9]*" || true; } | sort -u > "$T/bad-blocks"
    echo "fio: $(wc -l < "$T/failed-writes") write(s) failed with an error when the daemon died; verify found $(wc -l < "$T/bad-blocks") block(s) not holding fio's last write"
    if [ $rc -ne 0 ] && [ -z "${3:-}" ]; then cat "$T/fio-verify.out" "$T/fio-verify.err"; echo "fio verify_state_load FAILED"; return 1; fi
    if [ -n "$(comm -23 "$T/bad-blocks" "$T/failed-writes")" ]; then
        cat "$T/fio-verify.err"; echo "acknowledged writes lost or corrupt at offsets: $(comm -23 "$T/bad-blocks" "$T/failed-writes" | tr '\n' ' ')"
        return 1
    fi
    [ $rc -eq 0 ] || grep -q "verify" "$T/fio-verify.err" "$T/fio-verify.out" || { cat "$T/fio-verify.out" "$T/fio-verify.err"; echo "fio verify failed for another reason"; return 1; }
    echo "fio verify_state_load: every acknowledged write intact"
}

# --- the checks ---------------------------------------------------------------------------

c_start() (
    set -e
    ctl create "$NAME" --primary "$PRIMARY" --secondary "$SECONDARY" --size "$SIZE" --ship-dir "$T/ship"
    start --frontend "$FRONTEND"
    st=$(ctl status "$NAME" --json)
    echo "$st" | grep -E '"state"|"device"|"frontend"'
    echo "$st" | grep -q '"state": "mirrored"'
    case "$FRONTEND" in
        ublk) [[ $DEV == /dev/ublkb* ]] ;;
        fuse) [[ $DEV == /dev/loop* ]]; echo "loop direct I/O: $(cat /sys/block/${DEV#/dev/}/loop/dio)" ;;
    esac
    grep -i "warn\|error" "$UBLK_MIRROR_RUN_DIR/$NAME.log" || true
)

c_fio_raw() (
    set -e
    ensure_running
    fio --name=raw --filename="$DEV" --size=16M --rw=randwrite --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/fio-raw.out" \
        || { cat "$T/fio-raw.out"; exit 1; }
    grep -E "WRITE:|READ:" "$T/fio-raw.out"
    fio --name=seq --filename="$DEV" --offset=64M --size=32M --rw=write --bs=1M --iodepth=4 --ioengine=libaio --direct=1 \
        --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/fio-seq.out" \
        || { cat "$T/fio-seq.out"; exit 1; }
    grep -E "WRITE:|READ:" "$T/fio-seq.out"
    echo "fio crc32c verify passed: 16 MiB 4 KiB random QD32, 32 MiB 1 MiB sequential"
    verify_online
)

c_ext4() (
    set -e
    ensure_running
    # no lazy init: nothing writes behind the tests' back (tracked = resynced must be exact)
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$DEV"
    mount -o noatime "$DEV" "$MNT"
    mkdir -p "$MNT/d"
    for i in 1 2 3 4; do head -c $((i * 3))M /dev/urandom > "$MNT/d/f$i"; done
    cp -a "$ROOT/tests/vm" "$MNT/d/tree"
    (cd "$MNT/d" && find . -type f -print0 | sort -z | xargs -0 sha256sum) > "$T/sums"
    sync; umount "$MNT"
    echo 3 > /proc/sys/vm/drop_caches
    mount -o noatime "$DEV" "$MNT"
    (cd "$MNT/d" && sha256sum --quiet -c "$T/sums")
    echo "$(wc -l < "$T/sums") files, sha256 equal after remount and drop_caches"
    umount "$MNT"
    e2fsck -fn "$DEV"
    mount -o noatime "$DEV" "$MNT"
)

# quiesce DEV: wait until the block device has no I/O in flight and its write count stands still.
# The writers must be stopped first (fio runs with --thread: SIGSTOP to its PID stops every job;
# without it the jobs are child processes that a stopped parent does not stop). One sync, then
# watch: each further sync would itself add a write on ext4 over ublk (seen: +1 per second).
quiesce() {
    local d last=x now fl i trail=
    d=$(basename "$(readlink -f "$1")")
    sync
    for i in $(seq 1 60); do
        now=$(awk '{print $5}' "/sys/block/$d/stat"); fl=$(echo $(cat "/sys/block/$d/inflight"))
        if [ "$now" = "$last" ] && [ "${fl#* }" = 0 ]; then return 0; fi
        trail="$trail $now/${fl// /+}"
        last=$now; sleep 1
    done
    echo "$1 did not go quiet in 60 s: writes completed/in flight (reads+writes) each second:$trail"
    echo "processes not sleeping: $(ps -eo pid,stat,comm | awk '$2 !~ /^[SI]/' | tr '\n' ';')"
    echo "fio processes: $(pgrep -a fio | tr '\n' ';')"
    return 1
}
num() { sed -n "s/.*\"$1\": \([0-9]*\).*/\1/p" | head -1; }

c_outage() (
    set -e
    ensure_running
    mountpoint -q "$MNT" || mount -o noatime "$DEV" "$MNT"
    dd if=/dev/urandom of="$MNT/base" bs=1M count=24 conv=fsync status=none
    ctl detach "$NAME" | tee "$T/detach.out"; grep -q "detached" "$T/detach.out"
    # load across the outage and the resync: fio writes and, at its end, verifies its own file
    fio --thread --name=load --filename="$MNT/load" --size=32M --rw=randwrite --bs=4k --iodepth=8 --ioengine=libaio \
        --direct=1 --time_based --runtime=15 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --verify_state_save=0 --output="$T/fio-load.out" &
    load=$!; bg $load
    trap 'rc=$?; set +e; kill -CONT $load 2>/dev/null; kill $load ${reader:-} 2>/dev/null; exit $rc' EXIT   # never leave a stopped writer behind
    sleep 3
    dd if=/dev/urandom of="$MNT/outage" bs=1M count=8 conv=fsync status=none
    # quiesce the writers for an exact count: fio stopped, file system synced; a reader keeps
    # the device busy through the resync (reads track nothing: noatime)
    kill -STOP $load; quiesce "$DEV"
    log=$(ctl log "$NAME" --json)
    tracked=$(echo "$log" | num dirty_blocks)
    echo "tracked while detached: $tracked blocks"
    [ "$tracked" -ge 2048 ] || { echo "8 MiB written while detached, only $tracked blocks tracked"; exit 1; }
    fio --thread --name=reader --filename="$MNT/base" --rw=randread --bs=4k --iodepth=8 --ioengine=libaio --direct=1 \
        --time_based --runtime=600 --output=/dev/null &
    reader=$!; bg $reader
    attach=$(ctl attach "$NAME"); echo "$attach"
    kill $reader; wait $reader || true
    copied=$(echo "$attach" | sed -n 's/.*resync copied \([0-9]*\) block.*/\1/p')
    [ "$copied" = "$tracked" ] || { echo "resync copied ${copied:-?} blocks, tracked $tracked: must be equal"; exit 1; }
    echo "resync copied exactly the $tracked tracked blocks (volume: $VOLUME_BLOCKS)"
    echo "$attach" | grep -q "state mirrored"
    kill -CONT $load
    wait $load || { cat "$T/fio-load.out"; echo "fio verify under outage and resync FAILED"; exit 1; }
    grep -E "WRITE:|READ:" "$T/fio-load.out"
    sync
    verify_online
)

c_bad_input() (
    set -e
    ensure_running
    quiesce "$DEV"
    a=$(md5sum < "$PRIMARY"); b=$(md5sum < "$SECONDARY")
    rc=0; ctl start "$NAME" --frontend ublk > "$T/bad.out" 2> "$T/bad.err" || rc=$?
    echo "exit $rc; stdout: $(cat "$T/bad.out"); stderr: $(cat "$T/bad.err")"
    [ $rc -ne 0 ] || { echo "second start succeeded"; exit 1; }
    [ "$(wc -l < "$T/bad.err")" = 1 ] || { echo "expected one line on stderr"; exit 1; }
    grep -q "already running" "$T/bad.err"
    [ ! -s "$T/bad.out" ]
    rc=0; ctl start "$NAME" --frontend nosuch 2> "$T/bad.err" >/dev/null || rc=$?
    echo "--frontend nosuch: exit $rc; $(cat "$T/bad.err")"
    [ $rc -ne 0 ] && grep -q "nosuch" "$T/bad.err"
    [ "$(md5sum < "$PRIMARY")" = "$a" ] && [ "$(md5sum < "$SECONDARY")" = "$b" ] \
        || { echo "a leg changed"; exit 1; }
    echo "legs unchanged (md5 of both leg files)"
    running || { echo "the running daemon is gone"; exit 1; }
    if mountpoint -q "$MNT"; then ls "$MNT/d" >/dev/null; fi
)

# kill -9 during fio writes, then `mirrorctl start` re-attaches to the live ublk device
c_kill_recover() (
    set -e
    [ "$FRONTEND" = ublk ] || { echo "user recovery is a ublk feature; frontend is $FRONTEND"; exit 1; }
    ensure_running
    mountpoint -q "$MNT" || mount -o noatime "$DEV" "$MNT"
    old=$DEV
    rm -f "$T/state"/*
    fio --name=layout --filename="$MNT/crash1" --size=32M --rw=write --bs=1M --direct=1 --end_fsync=1 --output=/dev/null
    fio_bg_writes "$MNT/crash1" 32M 25
    sleep 5
    pid=$(daemon_pid); kill -9 "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "daemon $pid killed during fio writes"
    [ -b "$old" ] || { echo "$old vanished after kill -9"; exit 1; }
    start
    [ "$DEV" = "$old" ] || { echo "re-attached as $DEV, expected the same $old"; exit 1; }
    echo "re-attached to the same device $DEV with user recovery"
    wait $FIO_BG || { cat "$T/fio-bg.out"; echo "fio writes failed across the daemon restart"; exit 1; }
    { grep -E "WRITE:|err=" "$T/fio-bg.out" || true; } | head -2
    echo "fio ran on through the restart (no I/O error)"
    grep "recovery:" "$T/start.err" || true
    resync_wait
    echo hello > "$MNT/after"; sync; grep -q hello "$MNT/after"
    fio_verify_state "$MNT/crash1" 32M
    umount "$MNT"; e2fsck -fn "$DEV"; mount -o noatime "$DEV" "$MNT"
    verify_online
)

# kill -9 during fio writes, then a start without recovery: the crash is reconciled first
c_kill_reconcile() (
    set -e
    ensure_running
    mountpoint -q "$MNT" || mount -o noatime "$DEV" "$MNT"
    rm -f "$T/state"/*
    fio --name=layout --filename="$MNT/crash2" --size=32M --rw=write --bs=1M --direct=1 --end_fsync=1 --output=/dev/null
    fio_bg_writes "$MNT/crash2" 32M 60
    sleep 5
    pid=$(daemon_pid); kill -9 "$pid"; while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    echo "daemon $pid killed during fio writes"
    if [ "$FRONTEND" = ublk ]; then
        # --no-recover stops the old device (its waiting I/O fails: fio ends with errors) and
        # deletes it, which waits until the file system on it is unmounted
        (start --no-recover > "$T/start-nr.out" 2>&1) &
        spid=$!
        wait $FIO_BG || true
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
        wait $spid || { cat "$T/start-nr.out"; exit 1; }
        cat "$T/start-nr.out"; DEV=$(cat "$T/dev")
    else
        wait $FIO_BG || true
        umount "$MNT" 2>/dev/null || umount -l "$MNT"
        start --frontend "$FRONTEND"
    fi
    echo "fio ended: $(grep -m1 -E 'err=' "$T/fio-bg.out" || echo '(no summary)')"
    log=$(cat "$T/start.err" "$UBLK_MIRROR_RUN_DIR/$NAME.log" 2>/dev/null)
    line=$(echo "$log" | grep -m1 "recovery: daemon-crash") || { echo "no daemon-crash recovery report:"; echo "$log"; exit 1; }
    echo "$line"
    repaired=$(echo "$line" | sed -n 's/.*repaired \([0-9]*\) block.*/\1/p')
    left=$(echo "$line" | sed -n 's/.* \([0-9]*\) block(s) left dirty.*/\1/p')
    total=$(( ${repaired:-0} + ${left:-0} ))
    [ -n "$repaired" ] && [ "$total" -le 16384 ] && [ "$total" -lt $((VOLUME_BLOCKS / 4)) ] \
        || { echo "repaired ${repaired:-?} + ${left:-0} left for resync: not bounded by the writes in flight"; exit 1; }
    echo "crash repair: $repaired block(s) copied at start, ${left:-0} left to the resync; bounded (<= 16384, volume $VOLUME_BLOCKS)"
    resync_wait
    mount -o noatime "$DEV" "$MNT"    # replays the ext4 journal
    fio_verify_state "$MNT/crash2" 32M failed-allowed
    (cd "$MNT/d" && sha256sum --quiet -c "$T/sums") && echo "files of check 3 intact"
    umount "$MNT"
    e2fsck -fn "$DEV"
    verify_online
    ctl stop "$NAME"
    ctl verify "$NAME"        # offline, on the legs
    legs_equal
)

t_all=$EPOCHREALTIME
echo "mirror.sh: frontend $FRONTEND, volume $SIZE, legs on $(df --output=fstype "$T" | tail -1) ($T)"
check "1 start --frontend $FRONTEND" c_start
check "2 fio crc32c verify on the raw device" c_fio_raw
check "3 ext4: files + sha256, remount, fsck" c_ext4
check "4 detach/write/attach/resync under load" c_outage
check "5 bad input: start when running" c_bad_input
check "6 kill -9, restart with user recovery" c_kill_recover
check "7 kill -9, restart with reconcile" c_kill_reconcile
echo "=== mirror.sh ($FRONTEND) timings"
printf '%s\n' "${timings[@]}"
printf 'mirror(%s): %d passed, %d failed in %.1fs%s\n' "$FRONTEND" $pass $fail "$(secs "$t_all")" \
    "${failed[*]:+ (failed: ${failed[*]})}"
[ $fail -eq 0 ]
