#!/bin/bash
# The mirror (mirrorctl create + start --frontend fuse, two fallocated 512 MiB legs): warm-up, then fio
# 4 KiB QD16 direct for SECONDS, with the daemon's utime/stime (clock ticks) before and after.
#   sudo JOPTS="-D..." bench/profile/mirror.sh JAR randwrite|randread SECONDS jfr|perf|stat|none
# jfr: a recording with 1 ms lock/park/file thresholds (needs /tmp/fp/my.jfc: the JDK profile.jfc with
# those thresholds) to /tmp/fp/mirror-RW.jfr; perf: perf record -g -p DAEMON (run the daemon with
# JOPTS=-XX:+PreserveFramePointer), JIT symbols from jcmd Compiler.perfmap, to /tmp/fp/mperf.data.
# Run under flock -w 1800 /tmp/ublk-mirror-heavy.lock.
set -e; mkdir -p /tmp/fp
# the frontend's watchdog mounts fusectl when it is not there: leave the machine as it was
FUSECTL_WAS=$(mountpoint -q /sys/fs/fuse/connections && echo 1 || echo 0)
JAR=$1; RW=$2; T=$3; MODE=$4
W=/var/tmp/mp.$$; mkdir -p $W
export UBLK_MIRROR_CONF_DIR=$W/conf UBLK_MIRROR_RUN_DIR=$W/run
M="java -cp $JAR org.ublkmirror.cli.Mirrorctl"
trap 'set +e; $M stop mp --force >/dev/null 2>&1; rm -rf $W; [ $FUSECTL_WAS = 1 ] || ! mountpoint -q /sys/fs/fuse/connections || umount /sys/fs/fuse/connections' EXIT
$M create mp --primary $W/p.img --secondary $W/s.img --size 536870912 >/dev/null
fallocate -l $(stat -c %s $W/p.img) $W/p.img; fallocate -l $(stat -c %s $W/s.img) $W/s.img
J="${JOPTS:-}"
[ $MODE = jfr ] && J="$J -XX:StartFlightRecording=filename=$W/rec.jfr,settings=/tmp/fp/my.jfc -Xlog:jfr=off"
DEV=$(env JAVA_TOOL_OPTIONS="$J" UBLK_MIRROR_FUSE_URING=off $M start mp --frontend fuse 2>/dev/null | tail -1)
echo dev $DEV
PID=$(pgrep -f "Dublk|mp" -n || true)
fio --name=w --filename=$DEV --rw=randrw --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=3 --output=/dev/null
for p in $(pgrep java); do tr "\0" "\n" </proc/$p/environ 2>/dev/null | grep -qx "UBLK_MIRROR_RUN_DIR=$W/run" && DPID=$p; done
awk '{print "before utime",$14,"stime",$15}' /proc/$DPID/stat
F="fio --name=t --filename=$DEV --rw=$RW --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=$T --output-format=terse --terse-version=3"
case $MODE in
 stat) perf stat -a -e task-clock,context-switches,syscalls:sys_enter_futex,syscalls:sys_enter_pwrite64,syscalls:sys_enter_write,syscalls:sys_enter_read -- $F 2>&1 | awk -F';' 'NF>50{print "IOPS r",$8," w",$49; next} {print}' | grep -v '^$';;
 perf) perf record -F 2000 -g -p $DPID -o /tmp/fp/mperf.data -- $F | awk -F';' '{print "IOPS r",$8," w",$49}'; jcmd $DPID Compiler.perfmap >/dev/null; cp /tmp/perf-$DPID.map /tmp/fp/ 2>/dev/null; echo map /tmp/perf-$DPID.map;;
 *) $F | awk -F';' '{print "IOPS r",$8," w",$49}';;
esac
awk '{print "after utime",$14,"stime",$15}' /proc/$DPID/stat
if [ $MODE = jfr ]; then
  for p in $(pgrep java); do tr "\0" "\n" </proc/$p/environ 2>/dev/null | grep -qx "UBLK_MIRROR_RUN_DIR=$W/run" && DPID=$p; done; echo daemon $DPID
  jcmd $DPID JFR.dump filename=$W/rec.jfr >/dev/null 2>&1 || true
  cp $W/rec.jfr /tmp/fp/mirror-$RW.jfr || true
fi
$M stop mp --force >/dev/null || true
ls $W/run
rm -rf $W
