#!/bin/sh
# /init of the ublk-mirror test VM (busybox-static initramfs built by tests/vm/setup.sh).
# Loads the modules, mounts the host root (9p, read-only) under a tmpfs overlay, mounts the
# writable work share at /vmwork, runs /vmwork/cmd.sh as root in a chroot, writes its exit code
# to /vmwork/exit-code and powers off. Any failure before the command: message + poweroff, and
# no exit-code file (run.sh reports "VM failed").
export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() { echo "vm-init: FAILED: $*"; sync; poweroff -f; sleep 10; }

for m in $(cat /lib/modules/order); do
    # Non-fatal: some (crc32c-intel) only load on CPUs with the feature; the command checks what it needs.
    out=$(insmod "/lib/modules/$m.ko" 2>&1) || echo "vm-init: insmod $m: $out"
done

OPTS9P="trans=virtio,version=9p2000.L,msize=512000"
mount -t 9p -o ro,$OPTS9P,cache=loose hostroot /lower || fail "mount host root over 9p"
mount -t tmpfs -o mode=0755,size=${vm_rwsize:-50%} rw /rw || fail "tmpfs for the overlay"
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || fail "overlay over the host root"

R=/newroot
mount -t proc proc $R/proc || fail "proc"
mount -t sysfs sysfs $R/sys || fail "sysfs"
mount -t devtmpfs devtmpfs $R/dev || fail "devtmpfs"
mkdir -p $R/dev/pts $R/dev/shm
ln -sf /proc/self/fd $R/dev/fd; ln -sf /proc/self/fd/0 $R/dev/stdin
ln -sf /proc/self/fd/1 $R/dev/stdout; ln -sf /proc/self/fd/2 $R/dev/stderr
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 shm $R/dev/shm
mount -t tmpfs -o mode=1777 tmp $R/tmp
mount -t tmpfs -o mode=0755 run $R/run
mkdir -p $R/vmwork
mount -t 9p -o $OPTS9P work $R/vmwork || fail "mount work share"
[ -f $R/vmwork/cmd.sh ] || fail "no /vmwork/cmd.sh"
# Extra shares requested with run.sh --rw DIR: tags rw0, rw1, ... mounted at their host paths.
if [ -f $R/vmwork/shares ]; then
    while read -r tag path; do
        mkdir -p "$R$path" && mount -t 9p -o $OPTS9P "$tag" "$R$path" || fail "mount share $path"
    done < $R/vmwork/shares
fi
hostname ublk-vm 2>/dev/null

echo "vm-init: exec guest command (uptime $(cut -d' ' -f1 /proc/uptime)s, kernel $(uname -r))"
env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=dumb \
    LANG=C.UTF-8 VM_WORK=/vmwork IN_UBLK_VM=1 \
    /bin/chroot $R /bin/sh /vmwork/cmd.sh </dev/null >/dev/console 2>&1
rc=$?
echo "vm-init: guest command exited $rc (uptime $(cut -d' ' -f1 /proc/uptime)s)"
echo $rc > $R/vmwork/exit-code
sync
poweroff -f
sleep 10
