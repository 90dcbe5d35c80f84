#!/bin/bash
# Prepare everything `tests/vm/run.sh` needs, idempotently, into a cache dir:
#   $UBLK_VM_CACHE (default /var/cache/ublk-mirror-vm)
#     vmlinuz          guest kernel (Debian bookworm-security 6.12, has ublk_drv and 9p as modules)
#     initramfs.cpio.gz busybox-static + decompressed modules + /init (tests/vm/init.sh)
#     kernel-version   the exact kernel package used
# Host packages (installed only when missing): qemu-system-x86, busybox-static, liburing-dev.
# The guest kernel package is downloaded and unpacked, never installed on the host.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
CACHE=${UBLK_VM_CACHE:-/var/cache/ublk-mirror-vm}
KPKG_META=${UBLK_VM_KERNEL_META:-linux-image-6.12-amd64}
# Modules the guest loads at boot, in this order (dependencies are added in front automatically).
BOOT_MODULES=(virtio_mmio netfs 9pnet 9pnet_virtio 9p overlay ublk_drv)
# Modules shipped in the initramfs and loaded at boot too (cheap) so the guest has them.
EXTRA_MODULES=(crc32c_generic crc32c-intel libcrc32c crc16 mbcache jbd2 ext4 loop md-mod raid1)

log() { echo "vm-setup: $*"; }
t0=$(date +%s.%N)

# --- host packages -------------------------------------------------------------------------
need=()
[ -x /usr/bin/qemu-system-x86_64 ] || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
[ -f /usr/include/liburing.h ] || need+=(liburing-dev)
[ -f /usr/include/linux/ublk_cmd.h ] || need+=(linux-libc-dev)
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null 2>&1 || {
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${need[@]}"
    }
fi
# The initramfs has no libc: /bin/busybox must run and be static. No pipe into `grep -q` here:
# busybox writes its help in ~570 unbuffered writes, grep -q exits at the first line, busybox gets
# SIGPIPE and, under pipefail, a good busybox read as "not usable" (CI, 2026-12-02).
bb_out=$(/bin/busybox echo busybox-ok 2>&1 || true)
[ "$bb_out" = busybox-ok ] || { log "/bin/busybox does not run ($bb_out): apt-get install --reinstall busybox-static"; exit 1; }
if command -v readelf >/dev/null; then
    bb_hdr=$(readelf -l /bin/busybox 2>&1 || true)
    case "$bb_hdr" in *"program interpreter"*)
        log "/bin/busybox is dynamically linked (package busybox?); the guest needs busybox-static: apt-get install busybox-static"; exit 1 ;;
    esac
fi
if [ ! -f /usr/share/qemu/qboot.rom ]; then log "missing /usr/share/qemu/qboot.rom (qemu-system-data)"; exit 1; fi
t1=$(date +%s.%N)

# --- mdadm for the guest (md raid1 baseline of tests/vm/bench.sh) ------------------------------
# Not installed on the host (its package pulls in udev and systemd hooks): unpacked into the
# cache; the guest sees the cache through the shared root.
mkdir -p "$CACHE"
if [ ! -x "$CACHE/tools/sbin/mdadm" ]; then
    mkdir -p "$CACHE/download"; chown _apt "$CACHE/download" 2>/dev/null || true
    mdeb=$(ls "$CACHE"/download/mdadm_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$mdeb" ]; then
        log "downloading mdadm (unpacked into the cache, not installed)"
        (cd "$CACHE/download" && { apt-get download -q mdadm >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get download -q mdadm >/dev/null; }; })
        mdeb=$(ls "$CACHE"/download/mdadm_*.deb | head -1)
    fi
    rm -rf "$CACHE/tools.new"; mkdir -p "$CACHE/tools.new"
    dpkg-deb --fsys-tarfile "$mdeb" | tar -x -C "$CACHE/tools.new" ./sbin/mdadm 2>/dev/null \
      || dpkg-deb --fsys-tarfile "$mdeb" | tar -x -C "$CACHE/tools.new" ./usr/sbin/mdadm
    [ -x "$CACHE/tools.new/sbin/mdadm" ] || { mkdir -p "$CACHE/tools.new/sbin"; mv "$CACHE/tools.new/usr/sbin/mdadm" "$CACHE/tools.new/sbin/"; }
    rm -rf "$CACHE/tools"; mv "$CACHE/tools.new" "$CACHE/tools"
    log "mdadm: $("$CACHE/tools/sbin/mdadm" --version 2>&1)"
fi

# --- guest kernel ----------------------------------------------------------------------------
kpkg=$(apt-cache depends "$KPKG_META" 2>/dev/null | awk '/Depends: linux-image-/ && !k {k=$2} END {print k}')
if [ -z "$kpkg" ]; then
    log "apt-get update (no $KPKG_META in the package lists)"
    apt-get update -q >/dev/null
    kpkg=$(apt-cache depends "$KPKG_META" | awk '/Depends: linux-image-/ && !k {k=$2} END {print k}')
fi
[ -n "$kpkg" ] || { log "cannot resolve $KPKG_META"; exit 1; }
kver=${kpkg#linux-image-}
stamp="$kpkg $(sha256sum "$HERE/init.sh" "$0" | sha256sum | cut -c1-16)"
if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$stamp" ] \
   && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.cpio.gz" ]; then
    log "up to date ($kpkg) in $CACHE"
    exit 0
fi

dl="$CACHE/download"
mkdir -p "$dl"; chown _apt "$dl" 2>/dev/null || true   # apt-get download runs as _apt
deb=$(ls "$dl"/"${kpkg}"_*.deb 2>/dev/null | head -1 || true)
if [ -z "$deb" ]; then
    log "downloading $kpkg"
    (cd "$dl" && apt-get download -q "$kpkg" >/dev/null)
    deb=$(ls "$dl"/"${kpkg}"_*.deb | head -1)
fi
log "kernel package $(basename "$deb") ($(du -m "$deb" | cut -f1) MB)"
t2=$(date +%s.%N)

ext="$CACHE/extract"
rm -rf "$ext"; mkdir -p "$ext"
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ext" --wildcards \
    './boot/vmlinuz-*' './boot/config-*' './lib/modules/*/kernel/*' 2>/dev/null \
  || dpkg-deb -x "$deb" "$ext"
kdir=$(ls -d "$ext"/lib/modules/* | head -1)
cp "$ext"/boot/vmlinuz-* "$CACHE/vmlinuz.new"
cp "$ext"/boot/config-* "$CACHE/config"
grep -q '^CONFIG_BLK_DEV_UBLK=[ym]' "$CACHE/config" || { log "kernel $kver has no ublk"; exit 1; }

# --- module closure ---------------------------------------------------------------------------
norm() { echo "${1//-/_}"; }
declare -A path_of=()
while IFS= read -r f; do
    b=$(basename "$f"); b=${b%.xz}; b=${b%.zst}; b=${b%.ko}
    path_of[$(norm "$b")]=$f
done < <(find "$kdir/kernel" -name '*.ko*')
modinfo_field() { # file field
    case "$1" in
        *.xz) xz -dc "$1" ;; *.zst) zstd -dcq "$1" ;; *) cat "$1" ;;
    esac | strings | sed -n "s/^$2=//p" | head -1
}
declare -A done_=() ; order=()
add_mod() {
    local m; m=$(norm "$1")
    [ -n "${done_[$m]:-}" ] && return 0
    local f=${path_of[$m]:-}
    if [ -z "$f" ]; then
        log "note: module $1 not in package (built in?)"; done_[$m]=builtin; return 0
    fi
    done_[$m]=pending
    local d
    for d in $(modinfo_field "$f" depends | tr ',' ' '); do add_mod "$d"; done
    done_[$m]=1
    order+=("$m")
}
for m in "${EXTRA_MODULES[@]}" "${BOOT_MODULES[@]}"; do add_mod "$m"; done

# --- initramfs ----------------------------------------------------------------------------
ir="$CACHE/initramfs.d"
rm -rf "$ir"; mkdir -p "$ir"/{bin,dev,proc,sys,tmp,lower,rw,newroot,lib/modules}
cp /bin/busybox "$ir/bin/busybox"
ln -s busybox "$ir/bin/sh"
: > "$ir/lib/modules/order"
for m in "${order[@]}"; do
    f=${path_of[$m]}
    case "$f" in
        *.xz) xz -dc "$f" > "$ir/lib/modules/$m.ko" ;;
        *.zst) zstd -dcq "$f" > "$ir/lib/modules/$m.ko" ;;
        *) cp "$f" "$ir/lib/modules/$m.ko" ;;
    esac
    echo "$m" >> "$ir/lib/modules/order"
done
install -m 0755 "$HERE/init.sh" "$ir/init"
echo "$kver" > "$ir/kernel-version"
(cd "$ir" && find . | LC_ALL=C sort | /bin/busybox cpio -o -H newc 2>/dev/null) | gzip -1 > "$CACHE/initramfs.cpio.gz.new"
mv "$CACHE/vmlinuz.new" "$CACHE/vmlinuz"
mv "$CACHE/initramfs.cpio.gz.new" "$CACHE/initramfs.cpio.gz"
echo "$kpkg" > "$CACHE/kernel-version"
rm -rf "$ext"
[ "${UBLK_VM_KEEP_DEB:-1}" = 1 ] || rm -rf "$dl"   # keep the .deb by default: re-setup is then offline
echo "$stamp" > "$CACHE/stamp"
t3=$(date +%s.%N)
log "modules (load order): ${order[*]}"
log "initramfs $(du -k "$CACHE/initramfs.cpio.gz" | cut -f1) KiB, vmlinuz $(du -k "$CACHE/vmlinuz" | cut -f1) KiB"
awk -v a="$t0" -v b="$t1" -v c="$t2" -v d="$t3" 'BEGIN{printf "vm-setup: timings: host packages %.1fs, kernel download %.1fs, unpack+initramfs %.1fs\n", b-a, c-b, d-c}'
