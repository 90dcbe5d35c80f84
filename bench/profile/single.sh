#!/bin/bash
# Single leg (FuseServe over one 512 MiB file): warm-up, then fio 4 KiB QD16 direct for SECONDS, with
# the server's utime/stime (clock ticks) before and after, so CPU per request = delta / (IOPS x SECONDS).
#   sudo JOPTS="-D..." bench/profile/single.sh JAR randwrite|randread SECONDS perf|stat|none [FuseServe options]
# perf: perf record -a -g into /tmp/fp/ (report-RW.txt, comm-RW.txt, perf-RW.data); stat: perf stat -a.
# Run under flock -w 1800 /tmp/ublk-mirror-heavy.lock.
set -e; mkdir -p /tmp/fp
# the frontend's watchdog mounts fusectl when it is not there: leave the machine as it was
FUSECTL_WAS=$(mountpoint -q /sys/fs/fuse/connections && echo 1 || echo 0)
JAR=$1; RW=$2; T=$3; MODE=$4; shift 4
W=/var/tmp/fp.$$; mkdir -p $W/mnt
fallocate -l 512M $W/leg.img
mkfifo $W/in
java ${JOPTS:-} -Xms256m -Xmx256m -XX:+AlwaysPreTouch -cp $JAR org.ublkmirror.frontend.fuse.FuseServe $W/leg.img $W/mnt "$@" <$W/in >$W/out 2>$W/err &
SP=$!
exec 9>$W/in
trap 'set +e; exec 9>&- 2>/dev/null; wait $SP 2>/dev/null; rm -rf $W; [ $FUSECTL_WAS = 1 ] || ! mountpoint -q /sys/fs/fuse/connections || umount /sys/fs/fuse/connections' EXIT   # closing stdin tears FuseServe down
for i in $(seq 100); do [ -s $W/out ] && break; sleep 0.2; done
DEV=$(head -1 $W/out); echo "dev $DEV pid $SP"
fio --name=w --filename=$DEV --rw=randrw --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=3 --output=/dev/null
cat /proc/$SP/stat | awk '{print "before utime",$14,"stime",$15}'
case $MODE in
 perf) perf record -a -g -o $W/perf.data -- fio --name=t --filename=$DEV --rw=$RW --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=$T --output-format=terse --terse-version=3 | awk -F';' '{print "IOPS r",$8," w",$49}'; perf report -i $W/perf.data --no-children --sort comm,dso,sym --stdio 2>/dev/null | grep -v '^$' | grep '%' | head -60 > /tmp/fp/report-$RW.txt; perf report -i $W/perf.data --no-children --sort comm --stdio 2>/dev/null | grep '%' | head > /tmp/fp/comm-$RW.txt; cp $W/perf.data /tmp/fp/perf-$RW.data;;
 stat) perf stat -a -e task-clock,context-switches,cpu-migrations -- fio --name=t --filename=$DEV --rw=$RW --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=$T --output-format=terse --terse-version=3 2>&1 | awk -F';' 'NF>50{print "IOPS r",$8," w",$49; next} {print}' | grep -v '^$';;
 *) fio --name=t --filename=$DEV --rw=$RW --bs=4k --iodepth=16 --ioengine=libaio --direct=1 --size=512M --time_based --runtime=$T --output-format=terse --terse-version=3 | awk -F';' '{print "IOPS r",$8," w",$49}';;
esac
cat /proc/$SP/stat | awk '{print "after utime",$14,"stime",$15}'
exec 9>&-
wait $SP || true
tail -2 $W/err
rm -rf $W
