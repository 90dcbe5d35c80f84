#!/usr/bin/env bash
# Side by side, in one run: fio through (1) the mirrored device (mirrorctl start, two file legs,
# FUSE + loop), (2) the same FUSE + loop frontend serving a single leg (FuseServe, one file), and
# (3) a plain kernel loop device over a file with dio=off. 4 KiB random write/read at QD16 and
# 1 MiB sequential write/read at QD4, direct, libaio, RUNTIME seconds each. Needs root, fio,
# losetup, and a built tree (make build).
#
#   bench/fio-compare.sh [--runtime S] [--size BYTES] [--dir DIR] [--record FILE] [-- FuseServe options...]
#
# Prints a table and, with --record FILE, appends it (with date, nproc, kernel, command) to FILE.
set -euo pipefail

RUNTIME=10
SIZE=$((1024 * 1024 * 1024))
BASE=/var/tmp
RECORD=
FUSE_OPTS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runtime) RUNTIME=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --dir) BASE=$2; shift 2 ;;
    --record) RECORD=$2; shift 2 ;;
    --) shift; FUSE_OPTS=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
[ "$(id -u)" = 0 ] || { echo "needs root" >&2; exit 1; }
for t in fio losetup java python3; do command -v $t >/dev/null || { echo "missing $t" >&2; exit 1; }; done
JAR=$(ls "$ROOT"/java-api/target/java-api-*.jar 2>/dev/null | grep -v sources | head -1)
[ -n "$JAR" ] || { echo "build first: mvn -q -B -o install -DskipTests" >&2; exit 1; }

WORK=$(mktemp -d "$BASE/fio-compare.XXXXXX")
SERVER_PID=
PLAIN_DEV=
MIRROR_UP=
export UBLK_MIRROR_CONF_DIR=$WORK/conf UBLK_MIRROR_RUN_DIR=$WORK/run
MIRRORCTL="java -cp $ROOT/cli/target/mirrorctl.jar org.ublkmirror.cli.Mirrorctl"
FUSECTL_WAS_MOUNTED=$(mountpoint -q /sys/fs/fuse/connections && echo 1 || echo 0)
cleanup() {
  set +e
  if [ -n "$MIRROR_UP" ]; then $MIRRORCTL stop bench --force >/dev/null; fi
  if [ -n "$PLAIN_DEV" ]; then losetup -d "$PLAIN_DEV"; fi
  if [ -n "$SERVER_PID" ]; then
    exec 9>&-                      # closing stdin makes FuseServe tear down
    for _ in $(seq 1 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.2; done
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill "$SERVER_PID"; sleep 2; fi
    if kill -0 "$SERVER_PID" 2>/dev/null; then kill -9 "$SERVER_PID"; fi
  fi
  if mountpoint -q "$WORK/mnt" 2>/dev/null; then umount -l "$WORK/mnt"; fi
  rm -rf "$WORK"
  # the frontend's watchdog mounts fusectl; leave the machine as it was
  if [ "$FUSECTL_WAS_MOUNTED" = 0 ] && mountpoint -q /sys/fs/fuse/connections; then umount /sys/fs/fuse/connections; fi
}
trap cleanup EXIT

mvn -q -o -f "$ROOT/pom.xml" -pl java-api dependency:build-classpath -Dmdep.outputFile="$WORK/cp.txt" >/dev/null
CP="$JAR:$(cat "$WORK/cp.txt")"

[ -f "$ROOT/cli/target/mirrorctl.jar" ] || { echo "build first: make build" >&2; exit 1; }
$MIRRORCTL create bench --primary "$WORK/primary.img" --secondary "$WORK/secondary.img" --size "$SIZE" >/dev/null
# legs fully allocated, like the single leg and the plain loop's file
fallocate -l "$(stat -c %s "$WORK/primary.img")" "$WORK/primary.img"
fallocate -l "$(stat -c %s "$WORK/secondary.img")" "$WORK/secondary.img"
MIRROR_DEV=$($MIRRORCTL start bench --frontend fuse 2>/dev/null)
MIRROR_UP=1
fallocate -l "$SIZE" "$WORK/fuse.img"
fallocate -l "$SIZE" "$WORK/plain.img"

# FuseServe prints the device on its first line and serves until its stdin closes.
mkfifo "$WORK/in"
java -Xms256m -Xmx256m -XX:+AlwaysPreTouch -cp "$CP" org.ublkmirror.frontend.fuse.FuseServe \
  "$WORK/fuse.img" "$WORK/mnt" "${FUSE_OPTS[@]}" <"$WORK/in" >"$WORK/serve.out" 2>"$WORK/serve.err" &
SERVER_PID=$!
exec 9>"$WORK/in"
for _ in $(seq 1 150); do [ -s "$WORK/serve.out" ] && break; kill -0 $SERVER_PID || break; sleep 0.2; done
FUSE_DEV=$(head -1 "$WORK/serve.out" || true)
[ -n "$FUSE_DEV" ] || { echo "FuseServe did not start:"; cat "$WORK/serve.err"; exit 1; } >&2
cat "$WORK/serve.err" >&2
PLAIN_DEV=$(losetup --find --show --direct-io=off --sector-size 4096 "$WORK/plain.img")
echo "mirror: $MIRROR_DEV   single leg: $FUSE_DEV   plain loop (dio=off): $PLAIN_DEV   runtime ${RUNTIME}s, size $SIZE" >&2

run_fio() { # dev name rw bs qd -> json file
  fio --name="$2" --filename="$1" --rw="$3" --bs="$4" --iodepth="$5" --ioengine=libaio --direct=1 \
      --size="$SIZE" --time_based --runtime="$RUNTIME" --group_reporting --output-format=json \
      >"$WORK/$2.json"
}
# Warm up (JIT, page cache of both backing files): not measured.
echo "  warm-up ..." >&2
for d in "$MIRROR_DEV" "$FUSE_DEV" "$PLAIN_DEV"; do
  fio --name=warm --filename="$d" --rw=randrw --bs=4k --iodepth=16 --ioengine=libaio --direct=1 \
      --size="$SIZE" --time_based --runtime=3 --output=/dev/null
done
TESTS="randwrite:randwrite:4k:16 randread:randread:4k:16 seqwrite:write:1M:4 seqread:read:1M:4"
for t in $TESTS; do
  IFS=: read -r name rw bs qd <<<"$t"
  echo "  $name ..." >&2
  run_fio "$MIRROR_DEV" "mirror-$name" "$rw" "$bs" "$qd"
  run_fio "$FUSE_DEV" "fuse-$name" "$rw" "$bs" "$qd"
  run_fio "$PLAIN_DEV" "plain-$name" "$rw" "$bs" "$qd"
done

TABLE=$(python3 - "$WORK" $TESTS <<'PY'
import json, sys
work = sys.argv[1]
print("| test | mirror IOPS | single leg IOPS | plain loop IOPS | mirror / single | single / plain |")
print("|---|---:|---:|---:|---:|---:|")
for t in sys.argv[2:]:
    name, rw, bs, qd = t.split(":")
    def get(side):
        j = json.load(open(f"{work}/{side}-{name}.json"))["jobs"][0]
        d = j["write"] if "write" in rw else j["read"]
        return d["iops"], d["bw_bytes"] / 1e6
    mi, mb = get("mirror"); fi, fb = get("fuse"); pi, pb = get("plain")
    print(f"| {name} {bs} QD{qd} | {mi:,.0f} ({mb:,.0f} MB/s) | {fi:,.0f} ({fb:,.0f} MB/s) | {pi:,.0f} ({pb:,.0f} MB/s) | {mi / fi:.2f} | {fi / pi:.2f} |")
PY
)
echo "$TABLE"
if [ -n "$RECORD" ]; then
  {
    echo
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), nproc $(nproc), kernel $(uname -r)"
    echo
    echo "Command: \`bench/fio-compare.sh --runtime $RUNTIME --size $SIZE${FUSE_OPTS:+ -- ${FUSE_OPTS[*]}}\`; " \
         "server: $(tail -1 "$WORK/serve.err" | sed 's/^serving //')"
    echo
    echo "$TABLE"
  } >>"$RECORD"
fi
