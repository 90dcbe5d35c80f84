#!/usr/bin/env bash
# Resync throughput over a network link against the link's own throughput, in one run.
#
# Two network namespaces made here (client: the mirror daemon; gateway: mirrorctl gateway), a
# veth pair between them on 10.213.N.0/30, optionally rate-limited by tc tbf on both ends (so the
# link, not the CPU, is the bottleneck). Nothing outside the two namespaces is touched; both are
# deleted on exit. Steps:
#   1. a mirror (primary: a local file; secondary: nbd://GATEWAY/sec) with a FUSE + loop device;
#   2. mirrorctl detach, then dd of SIZE MiB of random data to the device (tracked, not sent);
#   3. (after an unmeasured warm-up resync of the whole size per daemon start: the first resync of a fresh
#      JVM runs cold code) mirrorctl attach (waits for the resync): two times: the wall time of that command (a JVM
#      start and the control round trip included), and the daemon's own resync report (from the
#      attach to the end of the resync, measured inside the daemon, with where the time went:
#      checkpoint flushes, log persists, waiting for the window); steps 2-3 are repeated for each
#      --windows value (mirrorctl config --resync-window), the same bytes each time;
#   4. the link's own throughput, the same byte count: (a) a plain TCP copy (bench/net/LinkCopy.java,
#      sendfile into a sink in the gateway's namespace), (b) nbdcopy of a file of that size to a
#      scratch export of the same gateway (NBD + the gateway's disk, no mirror), (c) the plain TCP
#      copy again, written by the sink over a file beside the gateway's (written once before,
#      like the gateway's by the warm-up) and fdatasync'ed before it answers (the least a resync must do: the bytes over the link and onto the secondary's
#      disk; on a link faster than that disk this, not (a), is the ceiling).
# Ratio = resync MB/s / plain TCP MB/s (target >= 0.8), for both resync times; also daemon / (c).
#
#   bench/net-resync.sh [--size MiB] [--rate 200mbit|none] [--windows "16"] [--checkpoints "pipelined"] [--app-latency] [--dir DIR] [--record FILE]
# --dir: where the legs, the gateway's files and the sink's file live (default /var/tmp, this
# machine's disk). --dir /dev/shm puts them all in memory: the flushes cost nothing and the copy
# into a file is a copy into memory, so the resync is measured against the link alone.
# --windows: each N is the adaptive window with at most N copies in flight (the default mode),
# N/fixed always N copies in flight (mirrorctl config --resync-window N --resync-window-mode M).
# --app-latency: an application writing beside each resync: fio 4 KiB random writes at QD1,
# direct, on the device for the whole resync (started 0.3 s after the attach), against the same
# fio for 5 s on the mirrored device with no resync, in the same run; its completion latency
# (p50, p99, max) is reported next to each row. The fio writes land on both legs (resync runs
# mirrored), so the legs are still verified identical afterwards.
# BENCH_DAEMON_OPTS (environment): JVM options for the daemon, e.g. -Dublkmirror.resync.minQueueDelayMs=10.
# BENCH_GATEWAY_OPTS (environment): JVM options for the gateway (default none: the JVM's defaults,
# as bin/mirrorctl gives its long-running servers), e.g. -XX:TieredStopAtLevel=1.
# --checkpoints "pipelined stalling": each window also with stalling checkpoints (the copy loop
# waits for the window to empty and for each checkpoint's flush; the daemon restarted with
# -Dublkmirror.resync.stallingCheckpoints=true), side by side in the same run.
set -euo pipefail
SIZE=512
RATE=200mbit
RECORD=
WINDOWS=16
FLUSHES=pipelined
APP=0
DIR=/var/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift 2 ;;
    --rate) RATE=$2; shift 2 ;;
    --record) RECORD=$2; shift 2 ;;
    --windows) WINDOWS=$2; shift 2 ;;
    --checkpoints) FLUSHES=$2; shift 2 ;;
    --app-latency) APP=1; shift ;;
    --dir) DIR=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in ip tc nsenter java dd losetup nbdcopy; do command -v $t >/dev/null || { echo "missing $t (make deps)" >&2; exit 1; }; done
JAR=$ROOT/cli/target/mirrorctl.jar
[ -f "$JAR" ] || { echo "build first: make build" >&2; exit 1; }

ID=$(printf '%06x' $((RANDOM * 32768 + RANDOM)))
C=umc-$ID G=umg-$ID CI=umc$ID GI=umg$ID N=$((RANDOM % 256))
CA=10.213.$N.1 GA=10.213.$N.2
WORK=$(mktemp -d "$DIR/net-resync.XXXXXX")
export UBLK_MIRROR_CONF_DIR=$WORK/conf UBLK_MIRROR_RUN_DIR=$WORK/run
MIRRORCTL="java -cp $JAR org.ublkmirror.cli.Mirrorctl"
INC="nsenter --net=/run/netns/$C --"
ING="nsenter --net=/run/netns/$G --"
GW_PID= SINK_PID= UP= FIO_PID=
FUSECTL_WAS_MOUNTED=$(mountpoint -q /sys/fs/fuse/connections && echo 1 || echo 0)
cleanup() {
  set +e
  [ -n "$FIO_PID" ] && kill "$FIO_PID" 2>/dev/null && wait "$FIO_PID" 2>/dev/null
  [ -n "$UP" ] && $MIRRORCTL stop bench --force >/dev/null 2>&1
  [ -n "$SINK_PID" ] && kill "$SINK_PID" 2>/dev/null
  [ -n "$GW_PID" ] && kill "$GW_PID" 2>/dev/null && wait "$GW_PID" 2>/dev/null
  ip netns del "$C" 2>/dev/null
  ip netns del "$G" 2>/dev/null
  rm -rf "$WORK"
  if [ "$FUSECTL_WAS_MOUNTED" = 0 ] && mountpoint -q /sys/fs/fuse/connections; then umount /sys/fs/fuse/connections; fi
}
trap cleanup EXIT
calc() { awk "BEGIN { printf \"%.6f\", $* }"; }
APP_FIO=(fio --name=app --rw=randwrite --bs=4k --iodepth=1 --ioengine=libaio --direct=1 --time_based --output-format=json)
app_fio() { # device json-out [runtime]: 4 KiB random writes at QD1, direct
  "${APP_FIO[@]}" --filename="$1" --runtime="${3:-3600}" --output="$2" >/dev/null 2>&1
}
app_lat() { # json -> "p50 / p99 / max ms, N writes/s"
  python3 - "$1" <<'PY'
import json, sys
t = open(sys.argv[1]).read()
j = json.loads(t[t.index("{"):])["jobs"][0]["write"]  # fio stopped by SIGINT writes a line before its JSON
p = j["clat_ns"]["percentile"]
print("p50 %.1f / p99 %.1f / max %.1f ms, %.0f writes/s" % (p["50.000000"] / 1e6, p["99.000000"] / 1e6, j["clat_ns"]["max"] / 1e6, j["iops"]))
PY
}

ip netns add "$C"; ip netns add "$G"
ip -n "$C" link add "$CI" type veth peer name "$GI" netns "$G"
ip -n "$C" addr add "$CA/30" dev "$CI"; ip -n "$G" addr add "$GA/30" dev "$GI"
for x in "$C $CI" "$G $GI"; do set -- $x; ip -n "$1" link set lo up; ip -n "$1" link set "$2" up; done
if [ "$RATE" != none ]; then
  for x in "$C $CI" "$G $GI"; do set -- $x; tc -n "$1" qdisc add dev "$2" root tbf rate "$RATE" burst 256kb latency 50ms; done
fi

VOL=$((SIZE + 64))
BYTES=$((VOL * 1024 * 1024))
# leg files: the volume plus metadata (the secondary must exist: the gateway serves it)
truncate -s $((BYTES + 64 * 1024 * 1024)) "$WORK/secondary.img"
truncate -s $((SIZE * 1024 * 1024)) "$WORK/scratch.img"
# shellcheck disable=SC2086
$ING java ${BENCH_GATEWAY_OPTS:-} -cp "$JAR" org.ublkmirror.cli.Mirrorctl gateway --export sec="$WORK/secondary.img" --export scratch="$WORK/scratch.img" \
  --listen "$GA:10809" >"$WORK/gw.log" 2>&1 &
GW_PID=$!
for _ in $(seq 1 100); do grep -q serving "$WORK/gw.log" && break; sleep 0.2; done
grep -q serving "$WORK/gw.log" || { cat "$WORK/gw.log"; exit 1; }

$INC $MIRRORCTL create bench --primary "$WORK/primary.img" --secondary "nbd://$GA:10809/sec" --size "${VOL}M" >/dev/null
dd if=/dev/urandom of="$WORK/data" bs=1M count="$SIZE" status=none
declare -a ROWS=()
for FL in $FLUSHES; do
  case "$FL" in
    pipelined) JOPT= ;;
    stalling) JOPT=-Dublkmirror.resync.stallingCheckpoints=true ;;
    *) echo "--checkpoints takes pipelined and/or stalling" >&2; exit 2 ;;
  esac
  [ -n "$UP" ] && { $MIRRORCTL stop bench --force >/dev/null; UP=; }
  DEV=$(JAVA_TOOL_OPTIONS="${BENCH_DAEMON_OPTS:-} $JOPT" $INC $MIRRORCTL start bench --frontend fuse 2>/dev/null | tail -1)
  UP=1
  # warm-up, not measured: the first resync of a fresh daemon runs in cold (interpreted) code,
  # and the first one into the gateway's sparse file allocates every page of it (in this VM a
  # first-touched page costs several times more: RESULTS.md, issue 3): the whole size, so that
  # the first measured row pays neither (with 64 MiB it ran at 0.4-0.5x of the later rows)
  $MIRRORCTL detach bench >/dev/null
  dd if="$WORK/data" of="$DEV" bs=1M oflag=direct status=none
  $MIRRORCTL attach bench >/dev/null
  if [ "$APP" = 1 ]; then
    app_fio "$DEV" "$WORK/app-idle-$FL.json" 5
    APP_IDLE=$(app_lat "$WORK/app-idle-$FL.json")
    echo "application writes, mirrored, no resync ($FL daemon): $APP_IDLE" >&2
  fi
  for W in $WINDOWS; do
    # W: N (adaptive window, at most N copies in flight) or N/fixed (always N)
    WN=${W%/*}; WM=adaptive; [ "$W" = "$WN/fixed" ] && WM=fixed
    $MIRRORCTL config bench --resync-window "$WN" --resync-window-mode "$WM" >/dev/null
    $MIRRORCTL detach bench >/dev/null
    dd if="$WORK/data" of="$DEV" bs=1M oflag=direct status=none
    sync
    t0=$(date +%s.%N)
    if [ "$APP" = 1 ]; then
      $MIRRORCTL attach bench >"$WORK/attach.out" 2>/dev/null &
      ATT_PID=$!
      sleep 0.3
      # fio itself in the background (not a function's subshell), so that SIGINT reaches it
      "${APP_FIO[@]}" --filename="$DEV" --runtime=3600 --output="$WORK/app-${W//\//-}-$FL.json" >/dev/null 2>&1 &
      FIO_PID=$!
      wait "$ATT_PID"
      t1=$(date +%s.%N)
      kill -INT "$FIO_PID"; wait "$FIO_PID" || true; FIO_PID=
      OUT=$(cat "$WORK/attach.out")
      LAT=$(app_lat "$WORK/app-${W//\//-}-$FL.json")
      echo "application writes during the resync (window $W, $FL): $LAT (mirrored, no resync: $APP_IDLE)" >&2
    else
      OUT=$($MIRRORCTL attach bench 2>/dev/null)
      t1=$(date +%s.%N)
      LAT=
    fi
    COPIED=$(echo "$OUT" | sed -n 's/.*resync copied \([0-9]*\) block.*/\1/p')
    DMS=$(echo "$OUT" | sed -n 's/.* bytes in \([0-9]*\) ms .*/\1/p')
    WDETAIL=$(echo "$OUT" | sed -n 's/.*window [0-9]* \(adaptive ([^)]*)\|fixed ([^)]*)\), .*/\1/p')
    DETAIL=$(echo "$OUT" | sed -n 's/.*window [0-9]*\( [a-z]* ([^)]*)\)*, \([0-9]*\) checkpoint(s)\( ([^)]*)\)*: waiting for the window \([0-9]*\) ms, for a checkpoint \([0-9]*\) ms; secondary flush \([0-9]*\) ms, log persist \([0-9]*\) ms;.*/\2 checkpoints\3: waited for the window \4 ms, for a checkpoint \5 ms; flush \6 ms, persist \7 ms/p')
    $MIRRORCTL verify bench >/dev/null || { echo "legs differ after the resync (window $W, $FL checkpoints)" >&2; exit 1; }
    ROWS+=("$W $FL|$COPIED|$(calc "$t1 - $t0")|$(calc "$DMS / 1000")|$DETAIL${WDETAIL:+; window $WDETAIL}${LAT:+; app writes beside it: $LAT (no resync: $APP_IDLE)}")
    echo "window $W, $FL checkpoints: $OUT" >&2
    case "$OUT" in *"window $WN $WM"*) ;; *) echo "the daemon did not take --resync-window $WN --resync-window-mode $WM" >&2; exit 1 ;; esac
  done
done
$MIRRORCTL stop bench --force >/dev/null; UP=

# (a) the link itself: the same number of bytes by plain TCP
$ING java "$ROOT/bench/net/LinkCopy.java" sink "$GA" 9000 >"$WORK/sink.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/sink.log" && break; sleep 0.2; done
head -c $((COPIED * 4096)) "$WORK/data" > "$WORK/same" 2>/dev/null || cp "$WORK/data" "$WORK/same"
TCP=$($INC java "$ROOT/bench/net/LinkCopy.java" send "$GA" 9000 "$WORK/same")
wait "$SINK_PID" 2>/dev/null; SINK_PID=
TCP_S=$(echo "$TCP" | sed -n 's/.* in \([0-9.]*\) s/\1/p')
# (c) the same TCP copy into a file on the gateway's disk, fdatasync'ed (the sender's time ends
# when the sink closes, after its fdatasync). The file is written and synced once before, as the
# warm-up did for the gateway's: the timed copy overwrites allocated blocks, as the resync does.
cp "$WORK/same" "$WORK/sink.img"; sync -f "$WORK/sink.img"
$ING java "$ROOT/bench/net/LinkCopy.java" sink "$GA" 9001 "$WORK/sink.img" >"$WORK/sink2.log" 2>&1 &
SINK_PID=$!
for _ in $(seq 1 100); do grep -q listening "$WORK/sink2.log" && break; sleep 0.2; done
TCPF=$($INC java "$ROOT/bench/net/LinkCopy.java" send "$GA" 9001 "$WORK/same")
wait "$SINK_PID" 2>/dev/null; SINK_PID=
TCPF_S=$(echo "$TCPF" | sed -n 's/.* in \([0-9.]*\) s/\1/p')
rm -f "$WORK/sink.img"
# (b) NBD to the same gateway, no mirror
t0=$(date +%s.%N)
$INC nbdcopy "$WORK/same" "nbd://$GA:10809/scratch"
t1=$(date +%s.%N)
NBD_S=$(calc "$t1 - $t0")

MB=$(calc "$COPIED * 4096 / 1000000")
T=$(calc "$MB / $TCP_S"); B=$(calc "$MB / $NBD_S"); TF=$(calc "$MB / $TCPF_S")
TABLE=$(printf '| link | window, checkpoints | bytes | resync, daemon report | resync, mirrorctl attach wall | plain TCP copy | TCP copy into a file + fdatasync | nbdcopy to the gateway | daemon / TCP | daemon / TCP into a file | daemon / nbdcopy | attach wall / TCP | checkpoints (time inside the daemon) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n'
  for row in "${ROWS[@]}"; do
    IFS='|' read -r W C WALL_S D_S DETAIL <<<"$row"
    M=$(calc "$C * 4096 / 1000000"); R=$(calc "$M / $WALL_S"); D=$(calc "$M / $D_S")
    printf '| veth, tbf %s | %s | %.0f MB | %.1f MB/s (%.2f s) | %.1f MB/s (%.2f s) | %.1f MB/s (%.2f s) | %.1f MB/s (%.2f s) | %.1f MB/s (%.2f s) | **%.2f** | %.2f | %.2f | %.2f | %s |\n' \
      "$RATE" "$W" "$M" "$D" "$D_S" "$R" "$WALL_S" "$T" "$TCP_S" "$TF" "$TCPF_S" "$B" "$NBD_S" "$(calc "$D / $T")" "$(calc "$D / $TF")" "$(calc "$D / $B")" "$(calc "$R / $T")" "$DETAIL"
  done)
echo "$TABLE"
if [ -n "$RECORD" ]; then
  { echo; echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) vCPUs, kernel $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg): \`bench/net-resync.sh --size $SIZE --rate $RATE --windows '$WINDOWS' --checkpoints '$FLUSHES' --dir $DIR\`, commit $(git -C "$ROOT" rev-parse --short HEAD)"; echo; echo "$TABLE"; } >> "$RECORD"
fi
