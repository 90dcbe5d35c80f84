#!/bin/bash
# Guest test of the ublk zero-copy mode and of direct reads (docs/frontend-ublk.md "Zero copy",
# "Direct reads"): a device added with USER_COPY | AUTO_BUF_REG, reads served by the shim from
# the backing file (READ_FIXED into the request's registered pages), writes and fallback reads
# through Java with pread/pwrite on /dev/ublkcN; reads up to 64 KiB of this tmpfs file are one
# pwrite on /dev/ublkcN from a read-only mapping of the file (once more with
# UBLK_MIRROR_DIRECT_READS=pread: a pread into the tag's buffer, then that pwrite); in the copying
# mode the shim serves reads too (a read into the tag's buffer, copied by the kernel at the
# commit). Checks bytes, not timings:
#   - UblkServe over a file of random bytes: whole-device reads at 4 KiB, 128 KiB and 1 MiB equal
#     the file; direct writes land in the file; reads after writes see them; fio randrw with
#     crc32c verify; the counters say reads were served by the shim; the file cut short under the
#     server: a read the shim cannot complete goes to Java, which answers it (an I/O error);
#   - the same with --zero-copy off (the copying path) on the same kernel: the backing file is on
#     tmpfs, so the shim reads it with a pread on the queue thread (by default up to 64 KiB, larger
#     reads READ_FIXED into the registered tag buffer; with UBLK_MIRROR_DIRECT_READS=inline at
#     every size); then once more with UBLK_MIRROR_DIRECT_READS=uring (the io_uring read every
#     other file system gets);
#   - writes that would not wait (a plain file's page cache) are served on the queue thread in
#     those passes (the counter says how many), and those of 64 KiB and more are written to the
#     file from the request's buffer with io_uring WRITE_FIXED (zero copy: the request's pages;
#     copying: the registered tag buffer): the 256 KiB dd writes, not all of fio's 4k-256k; with
#     UBLK_MIRROR_FIXED_WRITES=0 every one of them; the io_uring-read pass writes through Java's
#     buffer instead (UBLK_MIRROR_FIXED_WRITES=off); in zero copy every other write is copied by the
#     kernel from the request straight into a mapping of the tmpfs file (the counter says how many),
#     and a write past the cut, whose copy faults (EFAULT), goes through Java's buffer and lands;
#   - the same with UBLK_MIRROR_DIRECT_READS=off and UBLK_MIRROR_INLINE_WRITES=off (every read and
#     write through Java's workers: zero copy's user-copy reads on a 6.16+ kernel, the copying
#     path's on older ones);
#   - a mirror (mirrorctl start --frontend ublk): a switch it does not understand refused in one
#     line, no byte of the legs changed; the daemon says zero copy and writes into the legs'
#     mappings, ext4 files and checksums, legs identical after stop.
#   tests/vm/run.sh --rw $PWD -- tests/vm/ublk-zero-copy.sh [--require]
# --require: fail when the kernel does not offer zero copy (CI runs it on a 6.16+ guest kernel);
# without it such a kernel is reported and the copying path is still checked.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
JAR=$ROOT/cli/target/mirrorctl.jar
MIRRORCTL=$ROOT/bin/mirrorctl
REQUIRE=0
[ "${1:-}" = --require ] && REQUIRE=1
[ "${IN_UBLK_VM:-}" = 1 ] || { echo "run inside the test VM (tests/vm/run.sh -- $0)" >&2; exit 2; }
command -v fio >/dev/null || { echo "ublk-zero-copy: fio missing (apt-get install fio on the host)" >&2; exit 2; }
T=$(mktemp -d /dev/shm/ublkzc.XXXXXX)   # tmpfs (the guest's /tmp is an overlay): the inline-read case
export UBLK_MIRROR_CONF_DIR=$T/conf UBLK_MIRROR_RUN_DIR=$T/run
mkdir -p "$UBLK_MIRROR_CONF_DIR" "$UBLK_MIRROR_RUN_DIR"
PIDS=() MNT= pass=0 fail=0
cleanup() {
    [ -n "$MNT" ] && umount "$MNT" 2>/dev/null
    "$MIRRORCTL" stop zc >/dev/null 2>&1
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
    rm -rf "$T"
}
trap cleanup EXIT
ok() { echo "PASS $*"; pass=$((pass + 1)); }
bad() { echo "FAIL $*"; fail=$((fail + 1)); }

kernel_zc=0
"$MIRRORCTL" doctor > "$T/doctor" 2>&1   # (no pipe into grep -q: pipefail + SIGPIPE)
if grep -Eq '^ *ublk-zc +ok +on:' "$T/doctor"; then kernel_zc=1; fi
grep -E '^ *ublk-zc' "$T/doctor" | sed 's/^/    /'
echo "kernel $(uname -r): zero copy offered: $([ $kernel_zc = 1 ] && echo yes || echo no)"
if [ $REQUIRE = 1 ] && [ $kernel_zc = 0 ]; then bad "this kernel does not offer USER_COPY + AUTO_BUF_REG (--require)"; exit 1; fi

SIZE_MB=64
dd if=/dev/urandom of="$T/patch" bs=1M count=8 status=none

# serve MODE [DIRECT [INLINE [FIXED]]]: starts UblkServe (--zero-copy MODE, UBLK_MIRROR_DIRECT_READS=DIRECT,
# UBLK_MIRROR_INLINE_WRITES=INLINE, UBLK_MIRROR_FIXED_WRITES=FIXED, all default on) on $T/backing;
# sets DEV and SPID
serve() {
    rm -f "$T/in" "$T/dev" "$T/err"; mkfifo "$T/in"
    UBLK_MIRROR_DIRECT_READS=${2:-on} UBLK_MIRROR_INLINE_WRITES=${3:-on} UBLK_MIRROR_FIXED_WRITES=${4:-on} UBLK_MIRROR_BATCH_WRITES=${5:-on} java -Xmx256m -cp "$JAR" org.ublkmirror.frontend.ublk.UblkServe "$T/backing" --zero-copy "$1" --depth 32 \
        < "$T/in" > "$T/dev" 2> "$T/err" &
    SPID=$!; PIDS+=("$SPID")
    exec 9> "$T/in"
    for _ in $(seq 600); do [ -s "$T/dev" ] && break; kill -0 $SPID 2>/dev/null || break; sleep 0.1; done
    DEV=$(head -1 "$T/dev")
    [ -b "$DEV" ] || { cat "$T/err"; return 1; }
    # the banner line is printed right after the device path
    for _ in $(seq 50); do grep -q '^serving' "$T/err" && break; sleep 0.1; done
    sed -n 's/^/    /; /^    serving/p' "$T/err"
}
unserve() { exec 9>&-; wait "$SPID"; local r=$?; sed 's/^/    /' "$T/err" | grep -v '^    serving'; return $r; }
# direct_counters NAME: after unserve, the shim served the reads (>1000) and handed back to Java
# only the three reads check_fallback made fail (a few more allowed: a udev probe of the disk's end
# after the truncation fails the same way; a regression that hands every read back shows thousands)
direct_counters() {
    local name=$1 served
    served=$(sed -n 's/^direct reads: \([0-9]*\) served without Java, \([0-9]*\) handed back$/\1 \2/p' "$T/err")
    set -- $served
    [ "${1:-0}" -gt 1000 ] && [ "${2:-0}" -ge 3 ] && [ "${2:-0}" -le 10 ] \
        && ok "$name: $1 reads served by the shim, $2 handed back to Java (the failed reads)" \
        || bad "$name: direct-read counters '$served' (want >1000 reads served by the shim, 3-10 handed back)"
}
# check_fallback NAME: a direct read that comes up short goes to Java, which answers it. The backing
# file is cut to 32 MiB under the running server (the device stays 64 MiB): reads below the cut
# still return the file; reads past it (4k: a pread on the queue thread on tmpfs; 128k and 512k:
# READ_FIXED in zero-copy mode, the io_uring read with DIRECT=uring) come up short in the shim, are
# handed to Java, whose read reaches the end of the file: each fails with an I/O error, none hangs.
# Then the file grows back: past the cut it reads zeroes, served by the shim again.
check_fallback() {
    local name=$1 kb bs failed=0 head
    head=$(dd if="$T/backing" bs=1M count=1 status=none | sha256sum)
    truncate -s 32M "$T/backing"
    [ "$(dd if="$DEV" bs=1M count=1 iflag=direct status=none | sha256sum)" = "$head" ] \
        && ok "$name: reads below the cut still return the file" || bad "$name: reads below the cut differ"
    for kb in 4 128 512; do
        bs=${kb}k
        if timeout 60 dd if="$DEV" of=/dev/null bs=$bs skip=$((48 * 1024 / kb)) count=1 iflag=direct status=none \
            2> "$T/dd.err"; then
            bad "$name: a $bs read past the cut succeeded"
        elif grep -q 'Input/output error' "$T/dd.err"; then
            failed=$((failed + 1))
        else
            bad "$name: a $bs read past the cut: $(head -1 "$T/dd.err") (want an I/O error)"
        fi
    done
    [ $failed = 3 ] && ok "$name: reads past the cut fail with an I/O error (handed to Java, answered)"
    # a write past the cut (zero copy: the kernel's copy into the mapping faults, EFAULT, and the
    # write goes through Java's buffer, a pwrite that grows the file): acknowledged, and it landed
    if dd if="$T/patch" of="$DEV" bs=4k count=1 seek=$((40 * 256)) oflag=direct conv=notrunc status=none 2> "$T/dd.err" \
        && cmp -s <(dd if="$T/backing" bs=4k skip=$((40 * 256)) count=1 status=none) <(head -c 4096 "$T/patch"); then
        ok "$name: a 4k write past the cut is acknowledged and lands in the file"
    else
        bad "$name: a 4k write past the cut: $(head -1 "$T/dd.err") (want it written to the file)"
    fi
    truncate -s ${SIZE_MB}M "$T/backing"
    cmp -s <(dd if="$DEV" bs=64k skip=768 count=16 iflag=direct status=none) <(head -c 1M /dev/zero) \
        && ok "$name: the file grown back reads zeroes past the cut" || bad "$name: the grown-back file does not read zeroes"
}
# check_device MODE: the byte checks through a served device
check_device() {
    local mode=$1 bs sum
    want=$(sha256sum < "$T/backing")
    for bs in 4k 128k 1M; do
        sum=$(dd if="$DEV" bs=$bs iflag=direct status=none | sha256sum)
        [ "$sum" = "$want" ] && ok "$mode: whole device read at bs=$bs equals the file" || bad "$mode: read at bs=$bs differs from the file"
    done
    # 8 MiB of new bytes at 16 MiB, direct: must land in the file (writes go through Java)
    dd if="$T/patch" of="$DEV" bs=256k seek=64 oflag=direct conv=notrunc status=none
    cmp -s <(dd if="$T/backing" bs=1M skip=16 count=8 status=none) "$T/patch" \
        && ok "$mode: direct writes landed in the backing file" || bad "$mode: the backing file does not hold the written bytes"
    cmp -s <(dd if="$DEV" bs=64k skip=256 count=128 iflag=direct status=none) "$T/patch" \
        && ok "$mode: reads after the writes return them" || bad "$mode: reads after writes return other bytes"
    # mixed random I/O with verification (reads of what fio wrote, at QD 16, sizes 4k-256k)
    if fio --name=zc --filename="$DEV" --rw=randrw --bsrange=4k-256k --iodepth=16 --ioengine=libaio --direct=1 \
        --size=32M --offset=24M --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/fio" >/dev/null 2>&1; then
        ok "$mode: fio randrw 4k-256k QD16 with crc32c verify"
    else
        bad "$mode: fio verify failed"; sed 's/^/    /' "$T/fio" | grep -i -m5 'error\|verify'
    fi
}

# one_pass NAME ZC DIRECT WANT COUNTERS [FIXED] [BATCH]: a fresh backing file served by UblkServe
# --zero-copy ZC with UBLK_MIRROR_DIRECT_READS=DIRECT, UBLK_MIRROR_FIXED_WRITES=FIXED (default
# on) and UBLK_MIRROR_BATCH_WRITES=BATCH (default on); WANT: a string its banner must hold;
# COUNTERS: yes = the shim served the reads (and only the failed ones fell back) and writes were
# served on the queue thread (FIXED on: those of 64 KiB and more written to the file with
# WRITE_FIXED; 0: all of them; off: none; with BATCH on each of those started beside its batch's
# others, off: none so), no = every read and every write went through the workers
# (UBLK_MIRROR_INLINE_WRITES=off)
one_pass() {
    local name=$1 zc=$2 direct=$3 want=$4 counters=$5 fixed=${6:-on} batch=${7:-on} inline=on
    [ "$counters" = no ] && inline=off
    dd if=/dev/urandom of="$T/backing" bs=1M count=$SIZE_MB status=none
    if ! serve "$zc" "$direct" "$inline" "$fixed" "$batch"; then bad "$name: UblkServe did not start"; return; fi
    grep -qF -- "$want" "$T/err" && ok "$name: the server says '$want'" || bad "$name: the server does not say '$want'"
    # the disk's I/O scheduler: none, set by the server (the kernel gives a one-queue ublk disk mq-deadline)
    local sched; sched=$(cat "/sys/block/${DEV#/dev/}/queue/scheduler")
    [[ "$sched" == *"[none]"* ]] && grep -q '; I/O scheduler none' "$T/err" && ok "$name: I/O scheduler none ($sched)" \
        || bad "$name: I/O scheduler '$sched', server says: $(grep -o 'I/O scheduler [^;]*' "$T/err")"
    check_device "$name"
    [ "$counters" = yes ] && check_fallback "$name"
    if unserve; then ok "$name: server stopped cleanly"; else bad "$name: server exit status"; fi
    # writes on the queue thread (a page-cache write of a plain file): check_device's and fio's
    local wq fw bw mw mf
    wq=$(sed -n 's/^stopped: .*, \([0-9]*\) writes on the queue thread, .*$/\1/p' "$T/err")
    fw=$(sed -n "s/^stopped: .*, \([0-9]*\) leg writes from the request's buffer, .*\$/\1/p" "$T/err")
    bw=$(sed -n 's/^stopped: .*, \([0-9]*\) writes started with their batch$/\1/p' "$T/err")
    mw=$(sed -n 's/^stopped: .*, \([0-9]*\) leg writes copied into a mapping ([0-9]* failed), .*$/\1/p' "$T/err")
    mf=$(sed -n 's/^stopped: .*, [0-9]* leg writes copied into a mapping (\([0-9]*\) failed), .*$/\1/p' "$T/err")
    # zero copy, the file on tmpfs: every write not sent with WRITE_FIXED is copied by the kernel
    # from the request into a mapping of the file; the one past check_fallback's cut failed so
    if [ "$zc" = auto ] && [ $kernel_zc = 1 ]; then
        local want_mf=0; [ "$counters" = yes ] && want_mf=1
        [ "${mw:-0}" -ge 10 ] && [ "${mf:-x}" = $want_mf ] && [ $(( ${mw:-0} + ${fw:-0} + ${mf:-0} )) -ge "${wq:-0}" ] \
            && ok "$name: $mw leg writes copied from the request into the file's mapping, $mf failed$([ $want_mf = 1 ] && echo ' (the write past the cut)')" \
            || bad "$name: writes copied into a mapping: '${mw}', failed '${mf}' (want 10 or more and $want_mf; with the $fw WRITE_FIXED at least the $wq on the queue thread)"
    else
        [ "${mw:-x}" = 0 ] && [ "${mf:-x}" = 0 ] && ok "$name: no write copied into a mapping (copying mode)" \
            || bad "$name: writes copied into a mapping in the copying mode: '${mw}' ('${mf}' failed)"
    fi
    # a plain file has one leg: each write from the request's buffer is one WRITE_FIXED
    if [ "$inline" = on ] && [ "$fixed" != off ] && [ "$batch" = on ]; then
        [ "${bw:-0}" -gt 0 ] && [ "${bw:-0}" = "${fw:-x}" ] \
            && ok "$name: $bw writes started beside their batch's others, then awaited (UBLK_MIRROR_BATCH_WRITES on)" \
            || bad "$name: writes started with their batch: '${bw}' (want all $fw written from the request's buffer)"
    else
        [ "${bw:-x}" = 0 ] && ok "$name: no write started with its batch (batch $batch, fixed $fixed, inline $inline)" \
            || bad "$name: writes started with their batch: '${bw}' (want 0)"
    fi
    if [ "$inline" = on ]; then
        [ "${wq:-0}" -gt 100 ] && ok "$name: $wq writes served on the queue thread" || bad "$name: writes on the queue thread: '${wq}' (want >100)"
        if [ "$fixed" = 0 ]; then
            # a plain file: one leg, so one WRITE_FIXED per write served on the queue thread
            [ -n "$wq" ] && [ "${fw:-x}" = "$wq" ] && ok "$name: each written to the file from the request's buffer ($fw WRITE_FIXED)" \
                || bad "$name: leg writes from the request's buffer: '${fw}' (want $wq)"
        elif [ "$fixed" = on ]; then
            # the 32 dd writes of 256 KiB and fio's larger ones; fio's writes under 64 KiB not (zero copy:
            # copied into the file's mapping; copying: through Java's buffer)
            [ -n "$wq" ] && [ "${fw:-0}" -ge 32 ] && [ "${fw:-0}" -lt "$wq" ] \
                && ok "$name: $fw of them (64 KiB and more) written to the file from the request's buffer" \
                || bad "$name: leg writes from the request's buffer: '${fw}' (want 32 to $wq, fewer than all)"
        else
            [ "${fw:-x}" = 0 ] && ok "$name: written through Java's buffer (UBLK_MIRROR_FIXED_WRITES=off)" \
                || bad "$name: leg writes from the request's buffer: '${fw}' (want 0)"
        fi
    else
        [ "${wq:-x}" = 0 ] && ok "$name: every write through the workers (UBLK_MIRROR_INLINE_WRITES=off)" || bad "$name: writes on the queue thread: '${wq}' (want 0)"
    fi
    if [ "$counters" = yes ]; then
        direct_counters "$name"
    else
        grep -q '^direct reads:' "$T/err" && bad "$name: the shim served reads" || ok "$name: no read served by the shim"
    fi
}
[ "$(stat -f -c %T "$T")" = tmpfs ] || bad "the test directory $T is not on tmpfs: the inline-read cases are not what they say"
INLINE="; copying through buffers, reads served by the shim from $T/backing (up to 64 KiB a pread on the queue thread: a memory file system)"
INLINE_ALL="; copying through buffers, reads served by the shim from $T/backing (a pread on the queue thread: a memory file system)"
# --zero-copy auto: zero copy where the kernel offers it, else the copying path (reads inline: tmpfs)
if [ $kernel_zc = 1 ]; then
    # reads up to 64 KiB inline (tmpfs), larger ones READ_FIXED: check_device reads at 4k, 128k and 1M
    # reads up to 64 KiB: one write into the request from a mapping of the file (a read past the
    # cut faults in that write: EFAULT, handed to Java, as check_fallback wants)
    one_pass "auto (zero copy)" auto on "; zero copy, reads served in the kernel from $T/backing (up to 64 KiB written into the request from a mapping of the file on the queue thread: a memory file system); file legs written from the request's pages (io_uring WRITE_FIXED from 64 KiB; a batch's writes in flight together); smaller writes copied from the request's pages into a mapping of a leg on a memory file system" yes
    # the same with the small reads a pread into the tag's buffer, then written into the request
    one_pass "auto (zero copy), reads by pread" auto pread "; zero copy, reads served in the kernel from $T/backing (up to 64 KiB a pread on the queue thread: a memory file system)" yes
else
    one_pass "auto (copying)" auto on "$INLINE; file legs written from the request's buffer (io_uring WRITE_FIXED from 64 KiB; a batch's writes in flight together)" yes
fi
# the copying path on the same kernel: reads with a pread on the queue thread, then with io_uring
one_pass "off, every read inline, every write from the request's buffer, one at a time" off inline "$INLINE_ALL; file legs written from the request's buffer (io_uring WRITE_FIXED; one write at a time, UBLK_MIRROR_BATCH_WRITES=off)" yes 0 off
one_pass "off, io_uring reads, writes through Java's buffer" off uring "; copying through buffers, reads served by the shim from $T/backing (io_uring READ_FIXED); legs written through Java's buffer (UBLK_MIRROR_FIXED_WRITES=off)" yes off
# every read and write through the workers (zero copy's user-copy reads on a 6.16+ kernel)
one_pass "auto, reads and writes through the workers" auto off ", reads through Java" no

# --- a mirror over zero copy
# first, a switch set to a value it does not understand: refused in one line, non-zero exit, before
# any ublk device is added; the legs keep every byte
if "$MIRRORCTL" create zc --primary "$T/p.img" --secondary "$T/s.img" --size 256M >"$T/create" 2>&1; then
    legs_before=$(cat "$T/p.img" "$T/s.img" | sha256sum)
    devs_before=$(ls /sys/class/ublk-char 2>/dev/null | wc -l)
    for setting in "UBLK_MIRROR_DIRECT_READS=mmap|use on, off, uring, inline or pread" "UBLK_MIRROR_MAPPED_WRITES=yes|use on or off"; do
        var=${setting%%|*}
        want="$var is not understood; ${setting#*|}"
        env "$var" "$MIRRORCTL" start zc --frontend ublk > "$T/badenv" 2>&1; rc=$?
        if [ $rc -ne 0 ] && [ "$(grep -c . "$T/badenv")" = 1 ] && grep -qF "$want" "$T/badenv" \
           && [ "$(ls /sys/class/ublk-char 2>/dev/null | wc -l)" = "$devs_before" ] \
           && [ "$(cat "$T/p.img" "$T/s.img" | sha256sum)" = "$legs_before" ]; then
            ok "mirror: $var refused in one line (exit $rc), no device added, legs unchanged"
        else
            bad "mirror: $var: exit $rc, want one line '$want', no device, legs unchanged; got:"
            sed 's/^/    /' "$T/badenv"
        fi
        "$MIRRORCTL" stop zc >/dev/null 2>&1  # in case it started
    done
fi
if [ -s "$T/p.img" ] && "$MIRRORCTL" start zc --frontend ublk > "$T/start" 2>&1; then
    MDEV=$(grep -m1 '^/dev/ublkb' "$T/start")
    grep -q "^ublk: $MDEV I/O scheduler none" "$T/start" && [[ "$(cat "/sys/block/${MDEV#/dev/}/queue/scheduler")" == *"[none]"* ]] \
        && ok "mirror: I/O scheduler none" || bad "mirror: I/O scheduler $(cat "/sys/block/${MDEV#/dev/}/queue/scheduler")"
    sed 's/^/    /' "$T/start" | grep -iE 'zero-copy|copies through|workers'
    # workers: twice the CPUs, 4..16 (docs/frontend-ublk.md "Workers")
    nw=$(( $(nproc) * 2 )); [ $nw -lt 4 ] && nw=4; [ $nw -gt 16 ] && nw=16
    [ $kernel_zc = 1 ] && what=pages || what=buffer
    grep -q "^ublk: $MDEV 1 queue of depth 64, requests up to 1 MiB, $nw workers (--queues, --depth, --max-io, --workers); page-cache writes served on the queue thread, file legs written from the request's $what (io_uring WRITE_FIXED from 64 KiB; a batch's writes in flight together)" "$T/start" \
        && ok "mirror: $nw workers for $(nproc) CPUs, page-cache writes on the queue thread, legs written from the request's $what" \
        || bad "mirror: want '1 queue of depth 64, $nw workers' in: $(grep -m1 workers "$T/start")"
    if [ $kernel_zc = 1 ]; then
        grep -q 'in zero-copy mode' "$T/start" && ok "mirror: the daemon runs ublk in zero-copy mode" || bad "mirror: no zero copy"
        # the legs are on tmpfs: writes under 64 KiB are copied from the request into their mappings
        grep -q "together); smaller writes copied from the request's pages into a mapping of a leg on a memory file system" "$T/start" \
            && ok "mirror: smaller writes copied from the request into the legs' mappings" || bad "mirror: no mapped writes named"
    else
        grep -q 'copies through buffers: reads served by the shim from .* (up to 64 KiB a pread on the queue thread: a memory file system)' "$T/start" \
            && ok "mirror: the daemon copies through buffers, reads served by the shim" || bad "mirror: no direct reads in the copying mode"
    fi
    MNT=$T/mnt; mkdir -p "$MNT"
    if mkfs.ext4 -q -F "$MDEV" && mount "$MDEV" "$MNT"; then
        for i in 1 2 3 4; do dd if=/dev/urandom of="$MNT/f$i" bs=1M count=8 status=none; done
        (cd "$MNT" && sha256sum f* > "$T/sums")
        umount "$MNT" && mount "$MDEV" "$MNT"
        echo 3 > /proc/sys/vm/drop_caches
        (cd "$MNT" && sha256sum -c --quiet "$T/sums") && ok "mirror: 32 MiB of files read back after remount and drop_caches" \
            || bad "mirror: files differ after remount"
        umount "$MNT"; MNT=
        e2fsck -fn "$MDEV" >/dev/null 2>&1 && ok "mirror: e2fsck clean" || bad "mirror: e2fsck found errors"
    else
        bad "mirror: mkfs/mount on $MDEV"
    fi
    "$MIRRORCTL" stop zc >/dev/null 2>&1 || bad "mirror: stop"
    "$MIRRORCTL" verify zc > "$T/verify" 2>&1 && ok "mirror: $(grep -m1 'identical' "$T/verify")" \
        || { bad "mirror: verify"; sed 's/^/    /' "$T/verify"; }
else
    bad "mirror: create/start"; sed 's/^/    /' "$T/create" "$T/start" 2>/dev/null
fi
echo "ublk-zero-copy: $pass passed, $fail failed"
[ $fail -eq 0 ]
