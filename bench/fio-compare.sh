#!/usr/bin/env bash
# Side by side, in one run: fio through (1) the mirrored device (mirrorctl start, two file legs,
# FUSE + loop), (2) the same FUSE + loop frontend serving a single leg (FuseServe, one file), and
# (3) a plain kernel loop device over a file with dio=off. 4 KiB random write/read at QD16 and
# 1 MiB sequential write/read at QD4, direct, libaio, RUNTIME seconds each. Needs root, fio,
# losetup, and a built tree (make build).
#
#   bench/fio-compare.sh [--runtime S] [--size BYTES] [--dir DIR] [--rounds N] [--variants LIST]
#                        [--tests LIST] [--jar NAME=PATH]... [--no-sync] [--no-fill] [--floor]
#                        [--record FILE] [-- FuseServe options...]
#
# --variants: comma-separated FUSE transports, each served by its own mirror and its own single
#   leg, all measured in the same rounds: "uring" (FUSE over io_uring, 4 threads per queue x 1 entry;
#   the script sets /sys/module/fuse/parameters/enable_uring to Y while the devices start, and
#   puts back what it found), "dev" (read/write on /dev/fuse only), or an io_uring shape
#   "THREADS:DEPTH" (threads per kernel queue, entries per thread); any of them may end in
#   "@JVMOPTS" (JVM options for that variant's daemon and FuseServe, '+' between options, e.g.
#   dev@-Dublkmirror.rawio=true), and then in "%NAME": that variant runs the mirrorctl.jar given
#   by --jar NAME=PATH (two builds side by side: --jar base=/tmp/base.jar --variants dev%base,dev).
#   Default: uring,dev .
# --rounds: every test is run this many times, the devices taking turns; the table gives the
#   median and, for the ratios, the range over the rounds.
# --tests: a subset of randwrite,randread,seqwrite,seqread.
# --no-fill: skip the warm-up's fill (every block written once before anything is measured).
# --floor: also measure the floor of FUSE + loop, bench/profile/fuse-floor.c (a C server doing
#   nothing but one pread or one pwrite per leg per request, negotiated as the Java frontend is),
#   with one leg and with two: the table then says how far each ratio's target is from what any
#   FUSE server can reach on this kernel, and how close the Java daemon is to that floor.
# --no-sync: do not `sync` before each measured fio run (by default each run starts with the dirty
#   pages of the runs before it written back, so no device pays for another's writeback).
#
# Prints a table and, with --record FILE, appends it (with date, nproc, kernel, load, command) to FILE.
set -euo pipefail

RUNTIME=10
SIZE=$((1024 * 1024 * 1024))
BASE=/var/tmp
RECORD=
ROUNDS=1
VARIANTS=uring,dev
TESTS_WANTED=randwrite,randread,seqwrite,seqread
FUSE_OPTS=()
JAR_ARGS=()
SYNC=1
FILL=1
FLOOR=0
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) RUNTIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --dir) BASE=$2; shift 2 ;;
    --record) RECORD=$2; shift 2 ;;
    --rounds) ROUNDS=$2; shift 2 ;;
    --variants) VARIANTS=$2; shift 2 ;;
    --tests) TESTS_WANTED=$2; shift 2 ;;
    --jar) JAR_ARGS+=("$2"); shift 2 ;;
    --no-sync) SYNC=0; shift ;;
    --no-fill) FILL=0; shift ;;
    --floor) FLOOR=1; shift ;;
    --) shift; FUSE_OPTS=("$@"); break ;;
    *) echo "unknown option $1 (see the head of $0)" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in fio losetup java python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
# mirrorctl.jar carries the engine and every dependency: FuseServe runs from it too
JAR=$ROOT/cli/target/mirrorctl.jar
[ -f "$JAR" ] || { echo "build first: make build" >&2; exit 1; }
URING_PARAM=/sys/module/fuse/parameters/enable_uring

WORK=$(mktemp -d "$BASE/fio-compare.XXXXXX")
cp "$JAR" "$WORK/mirrorctl.jar"   # a rebuild during the run must not change the code under test
JAR=$WORK/mirrorctl.jar
declare -A JARS=()
for a in "${JAR_ARGS[@]}"; do
  n=${a%%=*} f=${a#*=}
  [[ "$a" == *=* && -n "$n" && -f "$f" ]] || { echo "--jar $a: give NAME=PATH of a built mirrorctl.jar" >&2; exit 2; }
  cp "$f" "$WORK/jar-$n.jar"; JARS[$n]=$WORK/jar-$n.jar
done
SERVER_PIDS=()
PLAIN_DEV=
FLOOR_LOOPS=()
MIRRORS=()
URING_WAS=
export UBLK_MIRROR_CONF_DIR=$WORK/conf UBLK_MIRROR_RUN_DIR=$WORK/run
MIRRORCTL="java -cp $JAR org.ublkmirror.cli.Mirrorctl"
FUSECTL_WAS_MOUNTED=$(mountpoint -q /sys/fs/fuse/connections && echo 1 || echo 0)
restore_uring() {
  if [ -n "$URING_WAS" ]; then echo "$URING_WAS" >"$URING_PARAM"; URING_WAS=; fi
}
cleanup() {
  set +e
  restore_uring
  for m in "${MIRRORS[@]}"; do $MIRRORCTL stop "$m" --force >/dev/null; done
  if [ -n "$PLAIN_DEV" ]; then losetup -d "$PLAIN_DEV"; fi
  for d in "${FLOOR_LOOPS[@]}"; do losetup -d "$d"; done   # before their servers unmount
  for i in "${!SERVER_PIDS[@]}"; do
    pid=${SERVER_PIDS[$i]}
    eval "exec $((20 + i))>&-"     # closing stdin makes FuseServe tear down
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then kill "$pid"; sleep 2; fi
    if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
  done
  for m in "$WORK"/mnt-*; do
    if mountpoint -q "$m" 2>/dev/null; then umount -l "$m"; fi
  done
  rm -rf "$WORK"
  # the frontend's watchdog mounts fusectl; leave the machine as it was
  if [ "$FUSECTL_WAS_MOUNTED" = 0 ] && mountpoint -q /sys/fs/fuse/connections; then umount /sys/fs/fuse/connections; fi
}
trap cleanup EXIT

# start_server WHAT CMD...: CMD in the background as server number N (= how many were started
# before it), its stdin a fifo held open as descriptor 20+N (cleanup closes it: the server then
# tears down), its output in serve-N.out/.err; waits for its first line (FuseServe: the device;
# fuse-floor: "ready") and leaves it in LINE, or stops the script with the server's errors.
start_server() {
  local what=$1 n=${#SERVER_PIDS[@]}
  shift
  mkfifo "$WORK/in-$n"
  "$@" <"$WORK/in-$n" >"$WORK/serve-$n.out" 2>"$WORK/serve-$n.err" &
  SERVER_PIDS+=($!)
  eval "exec $((20 + n))>\"$WORK/in-$n\""
  for _ in $(seq 1 150); do [ -s "$WORK/serve-$n.out" ] && break; kill -0 "${SERVER_PIDS[$n]}" || break; sleep 0.2; done
  LINE=$(head -1 "$WORK/serve-$n.out" 2>/dev/null || true)
  [ -n "$LINE" ] || { echo "$what did not start:"; cat "$WORK/serve-$n.err"; exit 1; } >&2
}

IFS=, read -r -a VLIST <<<"$VARIANTS"
spec_of() { # variant -> UBLK_MIRROR_FUSE_URING / --uring value
  local v=${1%%%*}
  case "${v%%@*}" in uring) echo 4:1 ;; dev) echo off ;; *) echo "${v%%@*}" ;; esac
}
jvm_of() { # variant -> JVM options for JAVA_TOOL_OPTIONS
  local v=${1%%%*}
  case "$v" in *@*) echo "${v#*@}" | tr '+' ' ' ;; *) echo "" ;; esac
}
jar_of() { # variant -> the jar it runs
  case "$1" in
    *%*) local n=${1##*%}; [ -n "${JARS[$n]:-}" ] || { echo "variant $1: no --jar $n=PATH given" >&2; exit 2; }; echo "${JARS[$n]}" ;;
    *) echo "$JAR" ;;
  esac
}
for v in "${VLIST[@]}"; do jar_of "$v" >/dev/null; done
NEED_URING=0
for v in "${VLIST[@]}"; do [ "$(spec_of "$v")" != off ] && NEED_URING=1; done
if [ "$NEED_URING" = 1 ]; then
  if [ -w "$URING_PARAM" ]; then
    URING_WAS=$(cat "$URING_PARAM")
    echo Y >"$URING_PARAM"       # FUSE offers io_uring at INIT only while this is Y; restored below
  else
    echo "note: $URING_PARAM missing (kernel without CONFIG_FUSE_IO_URING): io_uring variants fall back to /dev/fuse" >&2
  fi
fi

DEVS=()    # label|device (labels may hold "=": JVM options)
for i in "${!VLIST[@]}"; do
  v=${VLIST[$i]}; spec=$(spec_of "$v"); vjar=$(jar_of "$v")
  VCTL="java -cp $vjar org.ublkmirror.cli.Mirrorctl"
  $VCTL create "m$i" --primary "$WORK/primary-$i.img" --secondary "$WORK/secondary-$i.img" --size "$SIZE" >/dev/null
  # legs fully allocated, like the single leg and the plain loop's file
  fallocate -l "$(stat -c %s "$WORK/primary-$i.img")" "$WORK/primary-$i.img"
  fallocate -l "$(stat -c %s "$WORK/secondary-$i.img")" "$WORK/secondary-$i.img"
  MIRRORS+=("m$i")
  jvm=$(jvm_of "$v")
  JENV=(env)
  [ -n "$jvm" ] && JENV=(env JAVA_TOOL_OPTIONS="$jvm")
  dev=$("${JENV[@]}" UBLK_MIRROR_FUSE_URING="$spec" $VCTL start "m$i" --frontend fuse 2>/dev/null)
  DEVS+=("mirror/$v|$dev")

  fallocate -l "$SIZE" "$WORK/fuse-$i.img"
  # FuseServe prints the device on its first line and serves until its stdin closes. One server
  # per variant so far: it is server number $i (serve-$i.err is read for the table's heading).
  uring_opt=()
  [ -n "$spec" ] && uring_opt=(--uring "$spec")
  start_server FuseServe "${JENV[@]}" java -Xms256m -Xmx256m -XX:+AlwaysPreTouch -cp "$vjar" \
    org.ublkmirror.frontend.fuse.FuseServe "$WORK/fuse-$i.img" "$WORK/mnt-$i" "${uring_opt[@]}" "${FUSE_OPTS[@]}"
  DEVS+=("single/$v|$LINE")
done
restore_uring
if [ "$FLOOR" = 1 ]; then
  command -v cc >/dev/null || { echo "--floor needs a C compiler (apt-get install gcc)" >&2; exit 1; }
  cc -O2 -pthread -o "$WORK/fuse-floor" "$ROOT/bench/profile/fuse-floor.c"
  for f in single mirror; do
    n=${#SERVER_PIDS[@]}
    fallocate -l "$SIZE" "$WORK/floor-$f-a.img"
    legs=("$WORK/floor-$f-a.img")
    if [ "$f" = mirror ]; then fallocate -l "$SIZE" "$WORK/floor-$f-b.img"; legs+=("$WORK/floor-$f-b.img"); fi
    start_server fuse-floor "$WORK/fuse-floor" "$WORK/mnt-$n" "$SIZE" "${legs[@]}" 8   # prints "ready"
    dev=$(losetup --find --show --direct-io=on --sector-size 4096 "$WORK/mnt-$n/disk")
    FLOOR_LOOPS+=("$dev")
    DEVS+=("floor-$f|$dev")
  done
fi
fallocate -l "$SIZE" "$WORK/plain.img"
PLAIN_DEV=$(losetup --find --show --direct-io=off --sector-size 4096 "$WORK/plain.img")
DEVS+=("plain|$PLAIN_DEV")
SERVED=""
for i in "${!VLIST[@]}"; do
  SERVED="$SERVED ${VLIST[$i]}: mirror $(grep -h '^frontend fuse:' "$WORK/run/m$i.log" 2>/dev/null | tail -1 | sed 's/.*(FUSE/(FUSE/') single $(tail -1 "$WORK/serve-$i.err" | sed 's/.*(FUSE/(FUSE/');"
done
echo "devices: ${DEVS[*]}; runtime ${RUNTIME}s, size $SIZE, rounds $ROUNDS" >&2
echo "served:$SERVED" >&2

run_fio() { # dev out rw bs qd
  fio --name=t --filename="$1" --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio --direct=1 \
      --size="$SIZE" --time_based --runtime="$RUNTIME" --group_reporting --output-format=json \
      >"$2"
}
# Warm up (JIT, page cache of every backing file), not measured. First a fill: every block written
# once in 4 KiB random order (fio's random map), so each backing file's page cache holds every
# block before anything is measured. Otherwise the measured runs keep paying a block's first write
# (a page-cache allocation and, in a VM, the host's first touch of that guest page: 5.9 us against
# 1.3 us per page here, bench/profile/first-touch.c), and the mirror, with two legs, pays it twice
# as often (--no-fill: skip it). Not a sequential fill: 1 MiB buffered writes leave large folios in
# the legs' page cache, and every later 4 KiB write into one then walks all its buffer heads
# (ext4_block_write_begin: 60 % of a FUSE worker's time in the profile), which bills the mirror
# twice and says nothing about the frontend. Then 3 s of random I/O.
echo "  warm-up ..." >&2
for d in "${DEVS[@]}"; do
  if [ "$FILL" = 1 ]; then
    fio --name=fill --filename="${d#*|}" --rw=randwrite --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
        --size="$SIZE" --output=/dev/null
  fi
  fio --name=warm --filename="${d#*|}" --rw=randrw --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
      --size="$SIZE" --time_based --runtime=3 --output=/dev/null
done
ALL_TESTS="randwrite:randwrite:4k:16 randread:randread:4k:16 seqwrite:write:1M:4 seqread:read:1M:4"
TESTS=
for t in $ALL_TESTS; do
  case ",$TESTS_WANTED," in *",${t%%:*},"*) TESTS="$TESTS $t" ;; esac
done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
# Tests outside, rounds inside: every random round runs before any 1 MiB write (see the warm-up).
for t in $TESTS; do
  for r in $(seq 1 "$ROUNDS"); do
    IFS=: read -r name rw bs qd <<<"$t"
    echo "  round $r: $name ..." >&2
    for d in "${DEVS[@]}"; do
      label=${d%%|*}
      # write back what the previous device dirtied (legs, backing files) before this one runs:
      # otherwise each device's measurement pays for its predecessor's writeback, and the mirror,
      # which dirties twice the pages, bills whoever comes after it (--no-sync: the old behaviour)
      [ "$SYNC" = 1 ] && sync
      run_fio "${d#*|}" "$WORK/${label//\//-}-$name-$r.json" "$rw" "$bs" "$qd"
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

TABLE=$(python3 - "$WORK" "$ROUNDS" "${VARIANTS}" "$FLOOR" $TESTS <<'PY'
import json, statistics, sys
work, rounds, variants, floor = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(","), sys.argv[4] == "1"
tests = sys.argv[5:]
def get(label, name, rw, r):
    j = json.load(open(f"{work}/{label.replace('/', '-')}-{name}-{r}.json"))["jobs"][0]
    return (j["write"] if "write" in rw else j["read"])["iops"]
def fmt(x):
    return f"{x:,.0f}"
def rng(v):
    m = statistics.median(v)
    return f"**{m:.2f}**" if len(v) == 1 else f"**{m:.2f}** ({min(v):.2f}-{max(v):.2f})"
cols = []
for v in variants:
    cols += [f"mirror {v}", f"single {v}"]
if floor:
    cols += ["floor mirror", "floor single"]
cols.append("plain loop")
ratios = [f"mirror/single {v}" for v in variants] + [f"single {v}/plain" for v in variants]
if floor:
    ratios += ["floor mirror/floor single", "floor single/plain"] \
        + [f"single {v}/floor single" for v in variants] + [f"mirror {v}/floor mirror" for v in variants]
head = "| test | " + " | ".join(cols) + " | " + " | ".join(ratios) + " |"
print("IOPS, median of the rounds; ratios: median (range) of the per-round ratios.")
if floor:
    print("floor: bench/profile/fuse-floor.c, a C FUSE server doing one pread or one pwrite per leg per request.")
print()
print(head)
print("|---" * (1 + len(cols) + len(ratios)) + "|")
for t in tests:
    name, rw, bs, qd = t.split(":")
    R = range(1, rounds + 1)
    val = {}
    for v in variants:
        for side in ("mirror", "single"):
            val[f"{side}/{v}"] = [get(f"{side}/{v}", name, rw, r) for r in R]
    val["plain"] = [get("plain", name, rw, r) for r in R]
    cells = [fmt(statistics.median(val[f"{s}/{v}"])) for v in variants for s in ("mirror", "single")]
    if floor:
        for s in ("mirror", "single"):
            val[f"floor-{s}"] = [get(f"floor-{s}", name, rw, r) for r in R]
            cells.append(fmt(statistics.median(val[f"floor-{s}"])))
    cells.append(fmt(statistics.median(val["plain"])))
    ratio = lambda a, b: rng([x / y for x, y in zip(val[a], val[b])])
    rs = [ratio(f"mirror/{v}", f"single/{v}") for v in variants] + [ratio(f"single/{v}", "plain") for v in variants]
    if floor:
        rs += [ratio("floor-mirror", "floor-single"), ratio("floor-single", "plain")] \
            + [ratio(f"single/{v}", "floor-single") for v in variants] + [ratio(f"mirror/{v}", "floor-mirror") for v in variants]
    print(f"| {name} {bs} QD{qd} | " + " | ".join(cells + rs) + " |")
PY
)
echo "$TABLE"
echo "load average before: $LOAD_BEFORE, after: $LOAD_AFTER" >&2
if [ -n "$RECORD" ]; then
  {
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), kernel $(uname -r), load $LOAD_BEFORE -> $LOAD_AFTER"
    echo
    echo "Command: \`bench/fio-compare.sh $ARGS\`; served:$SERVED"
    echo
    echo "$TABLE"
  } >>"$RECORD"
fi
