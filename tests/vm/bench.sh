#!/bin/bash
# Guest-side benchmark (issue #4 part 5), side by side in one guest run: fio through
#   mirror    ublk-mirror: mirrorctl start --frontend F, two file legs (ublk: zero copy where
#             the kernel offers it)
#   mirror-copy the same with --zero-copy off (ublk: request data copied through the daemon)
#   mirror-java the same as mirror with UBLK_MIRROR_DIRECT_READS=off (ublk: every read through
#             the engine in Java, as before the shim served reads itself)
#   mirror-uring the same as mirror with UBLK_MIRROR_DIRECT_READS=uring (ublk, copying mode: the
#             shim's reads of the tmpfs primary as io_uring reads, i.e. on io-wq threads, instead
#             of a pread on the queue thread)
#   mirror-inline the same as mirror with UBLK_MIRROR_DIRECT_READS=inline (ublk, tmpfs primary: every
#             read a pread on the queue thread, not READ_FIXED above 64 KiB)
#   mirror-pread the same as mirror with UBLK_MIRROR_DIRECT_READS=pread (ublk zero copy, tmpfs
#             primary: a small read a pread into the tag's buffer and a write into the request, two
#             copies, instead of one write into the request from a mapping of the primary)
#   mirror-mmapio the same as mirror with -Dublkmirror.mmapio=true (the legs' reads and non-FUA
#             writes from Java are memory copies through shared mappings of the leg files, no pwrite)
#   mirror-nomap the same as mirror with UBLK_MIRROR_MAPPED_WRITES=off (ublk zero copy, tmpfs legs:
#             a write under 64 KiB copied out of the request into Java's buffer, then a pwrite to
#             each leg, three copies, instead of one copy from the request into each leg's mapping)
#   mirror-workers the same as mirror with UBLK_MIRROR_INLINE_WRITES=off (ublk: every write handed
#             to a worker, as before page-cache writes were served on the queue thread)
#   mirror-javabuf the same as mirror with UBLK_MIRROR_FIXED_WRITES=off (ublk: writes on the queue
#             thread reach the legs through Java's buffer, pwrite, instead of WRITE_FIXED from the
#             request's buffer)
#   mirror-512k the same as mirror with --max-io 512K (ublk: requests up to 512 KiB, not 1 MiB)
#   mirror-serial the same as mirror with UBLK_MIRROR_BATCH_WRITES=off (ublk: the writes of a batch
#             served one after the other, each waiting for its legs, instead of all in flight together)
#   degraded  the same mirror with its secondary detached (the engine, one leg, tracking writes)
#   single    the frontend over one plain file, no engine (FuseServe / UblkServe when built)
#   md        md raid1 over two loop devices, internal write-intent bitmap (the mirror's
#             intent record is the same idea)
#   md-nobm   md raid1 over two loop devices, no bitmap
#   loop      one loop device (the backing-file floor)
#   ublk-null tests/vm/ublk-null: the kernel's ublk path with a C server over RAM, one queue
#             (the frontend floor: what ublk itself costs under TCG); I/O scheduler none, as
#             our servers set on their disks
# Every backing file lives on the same tmpfs (the guest's RAM): no device is favoured by a
# faster disk, and TCG makes CPU the bottleneck for all of them alike. Loop devices run with
# direct I/O off (tmpfs pages are the storage). Tests: 4 KiB randwrite / randread at QD32 and
# 1 MiB sequential write / read at QD4, libaio, direct, RUNTIME seconds each, devices in turn
# per test (the same host noise for all).
#   tests/vm/run.sh --mem 4096 --rw $PWD -- tests/vm/bench.sh [--frontend ublk|fuse] [--runtime S]
#       [--size SIZE] [--record FILE] [--mdadm PATH] [--only LIST] [--warmup S] [--java-opts OPTS]
#       [--tests 'NAME:RW:BS:QD ...'] (default: the four tests below) [--perf DIR] [--rounds N] [--ramp S]
# --rounds N: the tests N times over (default 1), the devices in turn inside each test, so slow
#   spells of the shared host fall on every device; the table gives each device's median round and,
#   for each ratio, the median of the rounds' ratios (a pair compared within its round); below it,
#   the mirror / md ratio of every round. --ramp S: each measured run first does S seconds of its own
#   workload, unmeasured (a fio run of its own; default 3): the warm-up below is 4 KiB random I/O, and
#   under TCG a Java server compiles the code of a large-request path only when that path first
#   runs, i.e. inside the measured seconds without a ramp.
# Beside the throughput table, a second one: the guest's busy CPU time (/proc/stat: all but idle and
#   iowait, both vCPUs) and context switches per request, for each device and test: under TCG the
#   guest's CPU is the bottleneck, so this says where a device spends more than another.
# --perf DIR: each measured run under `perf record -a -g -e cpu-clock` too; a report by command and
#   object, and one by command and symbol, are written to DIR/DEVICE-TEST.{comm,sym}.txt (the sampling slows
#   every device alike; read those runs' IOPS as perturbed).
# --warmup: seconds of unmeasured randrw per device first (default 5; under TCG the JIT compilers
#   run emulated too, so compiled code arrives late). --java-opts: JVM options for every Java server
#   of the run (JAVA_TOOL_OPTIONS), e.g. -XX:TieredStopAtLevel=1 (C1 only: compiles sooner).
set -uo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
FRONTEND=ublk RUNTIME=10 SIZE=256M RECORD= MDADM= PERF_DIR= ROUNDS=1 RAMP=3 ONLY="mirror degraded single md md-nobm loop ublk-null" WARMUP=5 JOPTS=
TESTS="randwrite:randwrite:4k:32 randread:randread:4k:32 seqwrite:write:1M:4 seqread:read:1M:4"
while [ $# -gt 0 ]; do
    case "$1" in
        --frontend) FRONTEND=$2; shift 2 ;;
        --runtime) RUNTIME=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --record) RECORD=$2; shift 2 ;;
        --mdadm) MDADM=$2; shift 2 ;;
        --only) ONLY=$2; shift 2 ;;
        --warmup) WARMUP=$2; shift 2 ;;
        --java-opts) JOPTS=$2; shift 2 ;;
        --tests) TESTS=$2; shift 2 ;;
        --perf) PERF_DIR=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --ramp) RAMP=$2; shift 2 ;;
        --host) HOST_OK=1; shift ;;
        *) echo "bench.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
if [ "${IN_UBLK_VM:-}" != 1 ] && [ "${HOST_OK:-}" != 1 ]; then
    echo "bench.sh: meant to run inside the test VM (tests/vm/run.sh -- $0); --host to force" >&2; exit 2
fi
[ -n "$MDADM" ] || MDADM=$(command -v mdadm || echo /var/cache/ublk-mirror-vm/tools/sbin/mdadm)
[ -n "$PERF_DIR" ] && { mkdir -p "$PERF_DIR" || exit 1; }
[[ "$ROUNDS" =~ ^[1-9][0-9]*$ ]] || { echo "bench.sh: --rounds takes a positive whole number, not '$ROUNDS'" >&2; exit 2; }
[[ "$RAMP" =~ ^[0-9]+$ ]] || { echo "bench.sh: --ramp takes whole seconds, not '$RAMP'" >&2; exit 2; }
for t in fio losetup java python3 "$MDADM" ${PERF_DIR:+perf}; do
    command -v "$t" >/dev/null || { echo "bench.sh: $t missing (make vm-setup extracts mdadm into the VM cache)" >&2; exit 1; }
done
[ -x "$ROOT/bin/mirrorctl" ] || { echo "bench.sh: bin/mirrorctl missing: make build" >&2; exit 1; }
BYTES=$(numfmt --from=iec "$SIZE")

W=$(mktemp -d /tmp/vm-bench.XXXXXX)
mkdir -p "$W/b" && mount -t tmpfs -o size=$((BYTES * 14 / 1048576 + 256))M bench "$W/b"
export UBLK_MIRROR_CONF_DIR=$W/conf UBLK_MIRROR_RUN_DIR=$W/run
ctl() { "$ROOT/bin/mirrorctl" "$@"; }
declare -A DEVS=() ; ORDER=()
MIRRORS=() LOOPS=() MDS=() SERVE_PID=
cleanup() {
    set +e
    [ -n "${UNULL_PID:-}" ] && { kill -TERM "$UNULL_PID"; wait "$UNULL_PID"; }
    [ -n "$SERVE_PID" ] && { exec 9>&-; sleep 2; kill "$SERVE_PID" 2>/dev/null; wait "$SERVE_PID" 2>/dev/null; }
    for m in "${MIRRORS[@]}"; do ctl stop "$m" --force >/dev/null 2>&1; done
    for m in "${MDS[@]}"; do "$MDADM" --stop "$m" >/dev/null 2>&1; done
    for l in "${LOOPS[@]}"; do losetup -d "$l"; done
    for m in $(awk -v t="$W" 'index($2, t) == 1 {print $2}' /proc/mounts | sort -r); do umount -l "$m"; done
    rm -rf "$W"
}
trap cleanup EXIT
B=$W/b
want() { [[ " $ONLY " == *" $1 "* ]]; }
# sets LOOPDEV (not echoed: LOOPS must grow in this shell, not in a $(...) subshell, for cleanup to detach it)
loop() { LOOPDEV=$(losetup --find --show --direct-io=off "$1") || return 1; LOOPS+=("$LOOPDEV"); }
add() {
    DEVS[$1]=$2; ORDER+=("$1")
    local k; k=$(cat "/sys/block/$(basename "$2")/queue/max_sectors_kb" 2>/dev/null || echo "?")
    echo "  $1: $2 (requests up to $k KiB)" >&2
}

# JVM options for every Java server of the run (the mirror daemons and the single-leg server)
[ -n "$JOPTS" ] && export JAVA_TOOL_OPTIONS="$JOPTS"
echo "bench: frontend $FRONTEND, size $SIZE, runtime ${RUNTIME}s, warm-up ${WARMUP}s, JVM options '${JOPTS:-none}', backing tmpfs $B" >&2
# the mirrors, each the engine under mirrorctl start with one setting changed (see the list above)
for m in mirror mirror-copy mirror-java mirror-uring mirror-inline mirror-pread mirror-mmapio mirror-nomap mirror-workers mirror-javabuf mirror-512k mirror-serial degraded; do
    want $m || continue
    ctl create $m --primary "$B/$m-p.img" --secondary "$B/$m-s.img" --size "$SIZE" >/dev/null || exit 1
    for f in "$B/$m-p.img" "$B/$m-s.img"; do fallocate -l "$(stat -c %s "$f")" "$f" || exit 1; done
    zc=() dr=on iw=on fw=on bw=on mw=on jo=${JOPTS:-}
    case $m in
        mirror-copy) zc=(--zero-copy off) ;;
        mirror-512k) zc=(--max-io 512K) ;;
        mirror-java) dr=off ;;
        mirror-uring) dr=uring ;;
        mirror-inline) dr=inline ;;
        mirror-pread) dr=pread ;;
        mirror-workers) iw=off ;;
        mirror-javabuf) fw=off ;;
        mirror-serial) bw=off ;;
        mirror-nomap) mw=off ;;
        mirror-mmapio) jo="$jo -Dublkmirror.mmapio=true" ;;
    esac
    dev=$(JAVA_TOOL_OPTIONS=$jo UBLK_MIRROR_DIRECT_READS=$dr UBLK_MIRROR_INLINE_WRITES=$iw UBLK_MIRROR_FIXED_WRITES=$fw UBLK_MIRROR_BATCH_WRITES=$bw UBLK_MIRROR_MAPPED_WRITES=$mw ctl start $m --frontend "$FRONTEND" "${zc[@]}") || { echo "bench: mirrorctl start $m --frontend $FRONTEND failed" >&2; exit 1; }
    MIRRORS+=($m)
    [ $m = degraded ] && { ctl detach $m >/dev/null || exit 1; }
    add $m "$dev"
done
NOTES=()
if want single; then
    # mirrorctl's jar holds java-api and every dependency (no Maven in the guest: its ~/.m2 is read-only)
    JAR=$ROOT/cli/target/mirrorctl.jar
    [ -f "$JAR" ] || { echo "bench: $JAR missing: make build" >&2; exit 1; }
    case "$FRONTEND" in
        fuse) SERVE=(org.ublkmirror.frontend.fuse.FuseServe "$B/single.img" "$W/fmnt") ;;
        ublk) SERVE=(org.ublkmirror.frontend.ublk.UblkServe "$B/single.img") ;;
    esac
    fallocate -l "$BYTES" "$B/single.img" || exit 1; mkdir -p "$W/fmnt"; mkfifo "$W/in"
    java -Xms256m -Xmx256m -XX:+AlwaysPreTouch -XX:+UseSerialGC -cp "$JAR" "${SERVE[@]}" \
        <"$W/in" >"$W/serve.out" 2>"$W/serve.err" &
    SERVE_PID=$!
    exec 9>"$W/in"
    for _ in $(seq 1 600); do [ -s "$W/serve.out" ] && break; kill -0 $SERVE_PID 2>/dev/null || break; sleep 0.2; done
    dev=$(head -1 "$W/serve.out")
    [ -b "$dev" ] || { echo "bench: ${SERVE[0]} did not start:" >&2; cat "$W/serve.err" >&2; exit 1; }
    add single "$dev"
    for _ in $(seq 50); do grep -q '^serving' "$W/serve.err" && break; sleep 0.1; done
    NOTES+=("single: $(grep -m1 '^serving' "$W/serve.err")")
fi
for m in md md-nobm; do
    want $m || continue
    truncate -s "$((BYTES + 64 * 1048576))" "$B/$m-a.img" "$B/$m-b.img"
    fallocate -l "$((BYTES + 64 * 1048576))" "$B/$m-a.img" && fallocate -l "$((BYTES + 64 * 1048576))" "$B/$m-b.img" || exit 1
    loop "$B/$m-a.img" && a=$LOOPDEV && loop "$B/$m-b.img" && b=$LOOPDEV || exit 1
    bm=internal; [ $m = md-nobm ] && bm=none
    n=/dev/md$(( ${#MDS[@]} + 10 ))
    "$MDADM" --create "$n" --run --quiet --level=1 --raid-devices=2 --metadata=1.2 --assume-clean \
        --bitmap=$bm --size=$((BYTES / 1024)) "$a" "$b" || { echo "bench: mdadm --create $n failed" >&2; exit 1; }
    MDS+=("$n"); add $m "$n"
done
if want loop; then
    fallocate -l "$BYTES" "$B/loop.img" || exit 1; loop "$B/loop.img" || exit 1; add loop "$LOOPDEV"
fi
UNULL_PID=
if want ublk-null && [ "$FRONTEND" = ublk ]; then
    "$ROOT/build/vm/ublk-null" -s $((BYTES / 1048576)) > "$W/unull.log" 2>&1 &
    UNULL_PID=$!
    for _ in $(seq 200); do grep -q ready "$W/unull.log" && break; kill -0 $UNULL_PID || break; sleep 0.1; done
    dev=$(sed -n 's/.*ready \(\/dev\/ublkb[0-9]*\).*/\1/p' "$W/unull.log")
    [ -b "$dev" ] || { echo "bench: ublk-null did not start:" >&2; cat "$W/unull.log" >&2; exit 1; }
    # the I/O scheduler our servers set on their disks (UblkDevice.setScheduler), so the floor compares like with like
    echo none > "/sys/block/${dev#/dev/}/queue/scheduler" || exit 1
    add ublk-null "$dev"
fi
grep -A2 '^md' /proc/mdstat >&2

# busy (all but idle and iowait) jiffies of all vCPUs, and context switches since boot
cpu_snap() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9} $1 == "ctxt" {print $2}' /proc/stat | paste -sd' '; }
FIO_WRAP=() # a command fio runs under (--perf: perf record)
run_fio() { # dev out rw bs qd runtime
    "${FIO_WRAP[@]}" fio --name=b --filename="$1" --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio --direct=1 \
        --size="$BYTES" --time_based --runtime="$6" --group_reporting --output-format=json --output="$2"
}
t0=$EPOCHREALTIME
echo "  warm-up (JIT, page cache): $WARMUP s randrw per device, not measured" >&2
for k in "${ORDER[@]}"; do run_fio "${DEVS[$k]}" /dev/null randrw 4k 32 "$WARMUP"; done
for round in $(seq "$ROUNDS"); do
for t in $TESTS; do
    IFS=: read -r name rw bs qd <<<"$t"
    for k in "${ORDER[@]}"; do
        echo "  $name $k (round $round of $ROUNDS) ..." >&2
        out=$W/$k-$name-r$round
        # the ramp as a run of its own (not fio's ramp_time: its seconds would count in /proc/stat and perf)
        if [ "$RAMP" -gt 0 ]; then run_fio "${DEVS[$k]}" /dev/null "$rw" "$bs" "$qd" "$RAMP" >/dev/null || exit 1; fi
        before=$(cpu_snap)
        [ -n "$PERF_DIR" ] && FIO_WRAP=(perf record -q -a -g -e cpu-clock -o "$W/perf.data" --)
        run_fio "${DEVS[$k]}" "$out.json" "$rw" "$bs" "$qd" "$RUNTIME" || exit 1
        FIO_WRAP=()
        echo "$before $(cpu_snap) $(getconf CLK_TCK)" > "$out.cpu"
        if [ -n "$PERF_DIR" ]; then
            p=$PERF_DIR/$k-$name-r$round
            perf report -i "$W/perf.data" --stdio --no-children -g none --percent-limit 0.5 --sort comm,dso 2>/dev/null | grep -v '^# [A-Z]' | grep . > "$p.comm.txt"
            perf report -i "$W/perf.data" --stdio --no-children -g none --percent-limit 0.3 --sort comm,sym 2>/dev/null | grep -v '^# [A-Z]' | grep . | head -100 > "$p.sym.txt"
            rm -f "$W/perf.data"
        fi
    done
done
done
for m in "${MIRRORS[@]}"; do
    [ $m = degraded ] && continue
    ctl verify $m > "$W/verify.out" 2>&1; echo "  $m after the runs: $(cat "$W/verify.out")" >&2
done
TABLE=$(python3 - "$W" "${ORDER[*]}" "$ROUNDS" $TESTS <<'PY'
import json, statistics, sys
work, order, rounds, tests = sys.argv[1], sys.argv[2].split(), int(sys.argv[3]), sys.argv[4:]
def one(k, name, rw, r):
    j = json.load(open(f"{work}/{k}-{name}-r{r}.json"))["jobs"][0]
    return j["write"] if "write" in rw else j["read"]
def get(k, name, rw):  # the median round's IOPS and MB/s
    ds = sorted((one(k, name, rw, r) for r in range(1, rounds + 1)), key=lambda d: d["iops"])
    d = ds[(len(ds) - 1) // 2] if len(ds) % 2 else None
    if d is None:
        a, b = ds[len(ds) // 2 - 1], ds[len(ds) // 2]
        return (a["iops"] + b["iops"]) / 2, (a["bw_bytes"] + b["bw_bytes"]) / 2e6
    return d["iops"], d["bw_bytes"] / 1e6
ratios = [(a, b) for a, b in [("mirror", "md"), ("mirror-copy", "md"), ("mirror", "mirror-copy"), ("mirror", "mirror-javabuf"), ("mirror-512k", "md"), ("mirror", "mirror-512k"), ("mirror", "mirror-serial"), ("mirror-serial", "md"), ("mirror", "mirror-inline"), ("mirror", "mirror-pread"), ("mirror-pread", "md"), ("mirror", "mirror-mmapio"), ("mirror-mmapio", "md"), ("mirror", "mirror-nomap"), ("mirror-nomap", "md"), ("mirror", "mirror-java"), ("mirror", "mirror-uring"), ("mirror", "md-nobm"), ("mirror", "single"), ("mirror", "degraded"), ("mirror", "ublk-null"), ("md", "loop")] if a in order and b in order]
print("| test | " + " | ".join(f"{k} IOPS (MB/s)" for k in order) + " | " + " | ".join(f"{a} / {b}" for a, b in ratios) + " |")
print("|---|" + "---:|" * (len(order) + len(ratios)))
for t in tests:
    name, rw, bs, qd = t.split(":")
    v = {k: get(k, name, rw) for k in order}
    cells = [f"{v[k][0]:,.0f} ({v[k][1]:,.1f})" for k in order]
    # a ratio is the median of the rounds' ratios (each round's pair ran minutes apart, under the
    # same host noise), not the ratio of the two medians, which may come from different rounds
    rr = {(a, b): statistics.median(one(a, name, rw, r)["iops"] / one(b, name, rw, r)["iops"] for r in range(1, rounds + 1))
          for a, b in ratios}
    rs = [f"**{rr[(a, b)]:.2f}**" if (a, b) == ("mirror", "md") else f"{rr[(a, b)]:.2f}" for a, b in ratios]
    print(f"| {name} {bs} QD{qd} | " + " | ".join(cells) + " | " + " | ".join(rs) + " |")
if rounds > 1 and "mirror" in order and "md" in order:
    print()
    print(f"mirror / md in each of {rounds} rounds (median in the table above):")
    for t in tests:
        name, rw, bs, qd = t.split(":")
        rs = [one("mirror", name, rw, r)["iops"] / one("md", name, rw, r)["iops"] for r in range(1, rounds + 1)]
        print(f"- {name} {bs} QD{qd}: " + ", ".join(f"{x:.2f}" for x in rs) + f" (min {min(rs):.2f}, median {statistics.median(rs):.2f}, max {max(rs):.2f})")
def cpu(k, name, rw):  # summed over the rounds
    busy = sw = n = 0
    for r in range(1, rounds + 1):
        b0, c0, b1, c1, hz = map(float, open(f"{work}/{k}-{name}-r{r}.cpu").read().split())
        busy += (b1 - b0) / hz * 1e6
        sw += c1 - c0
        n += one(k, name, rw, r)["total_ios"]
    n = max(n, 1)
    return busy / n, sw / n
print()
print("| busy guest CPU per request (us) / context switches per request | " + " | ".join(order) + " |")
print("|---|" + "---:|" * len(order))
for t in tests:
    name, rw, bs, qd = t.split(":")
    print(f"| {name} {bs} QD{qd} | " + " | ".join("%.0f / %.1f" % cpu(k, name, rw) for k in order) + " |")
PY
) || exit 1
echo "$TABLE"
printf 'bench: %d devices x %d tests x %ss in %.0fs\n' ${#ORDER[@]} "$(wc -w <<<"$TESTS")" "$RUNTIME" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" >&2
if [ -n "$RECORD" ]; then
    {
        echo
        echo "### $(date -u +%Y-%m-%dT%H:%MZ): guest kernel $(uname -r), $(nproc) vCPU (TCG), $(awk '/MemTotal/{printf "%d MiB", $2/1024}' /proc/meminfo)"
        echo
        echo "Guest command: \`tests/vm/bench.sh --frontend $FRONTEND --runtime $RUNTIME --size $SIZE --only '$ONLY' --warmup $WARMUP --rounds $ROUNDS --ramp $RAMP --java-opts '$JOPTS' --tests '$TESTS'\`; devices: $(for k in "${ORDER[@]}"; do printf '%s=%s ' "$k" "${DEVS[$k]}"; done)"
        echo
        echo "$TABLE"
        for n in "${NOTES[@]}"; do echo; echo "Note: $n"; done
    } >> "$RECORD"
fi
