#!/usr/bin/env bash
# restore-fusectl.sh CMD...: runs CMD and passes on its exit status. The FUSE frontend mounts
# fusectl (/sys/fs/fuse/connections) on a machine that has not, and unmounts it when its last
# device closes; a daemon a test kills with -9 cannot. So: when fusectl was not mounted before
# CMD, is after, and no FUSE connection is left, it is unmounted here (the machine as found).
FUSECTL=/sys/fs/fuse/connections
mounted() { grep -q " $FUSECTL fusectl " /proc/self/mounts; }
before=0; mounted && before=1
"$@"; rc=$?
if [ $before = 0 ] && mounted && [ -z "$(ls -A $FUSECTL 2>/dev/null)" ]; then
    umount "$FUSECTL" && echo "restore-fusectl: unmounted $FUSECTL (not mounted before: '$*')" >&2
fi
exit $rc
