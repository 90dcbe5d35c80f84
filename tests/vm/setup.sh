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
command -v curl >/dev/null || need+=(curl)       # the trixie-backports kernel is fetched by URL
command -v xz >/dev/null || need+=(xz-utils)     # its index and modules are xz-compressed
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
# UBLK_VM_KERNEL_SOURCE=bookworm (default): Debian 12's 6.12 kernel through apt (this host's
# sources). =trixie-backports: a 7.x kernel (ublk zero copy: UBLK_F_SUPPORT_ZERO_COPY 6.15,
# UBLK_F_AUTO_BUF_REG 6.16) fetched by URL from the trixie-backports Packages index, SHA256
# checked against it; the host's apt sources are not changed. Its image is split in two packages:
# linux-binary-VER (usr/lib/modules/VER/vmlinuz) and linux-modules-VER (usr/lib/modules/VER/kernel).
# UBLK_VM_KERNEL_VERSION picks the version (default below); when the archive no longer has it, the
# newest +deb13-amd64 one is taken and said so.
KSRC=${UBLK_VM_KERNEL_SOURCE:-bookworm}
dl="$CACHE/download"
mkdir -p "$dl"; chown _apt "$dl" 2>/dev/null || true   # apt-get download runs as _apt
case "$KSRC" in
bookworm)
    kpkg=$(apt-cache depends "$KPKG_META" 2>/dev/null | awk '/Depends: linux-image-/ && !k {k=$2} END {print k}')
    if [ -z "$kpkg" ]; then
        log "apt-get update (no $KPKG_META in the package lists)"
        apt-get update -q >/dev/null
        kpkg=$(apt-cache depends "$KPKG_META" | awk '/Depends: linux-image-/ && !k {k=$2} END {print k}')
    fi
    [ -n "$kpkg" ] || { log "cannot resolve $KPKG_META"; exit 1; }
    kver=${kpkg#linux-image-}
    ;;
trixie-backports)
    BPO_MIRROR=${UBLK_VM_BPO_MIRROR:-http://deb.debian.org/debian}
    kwant=${UBLK_VM_KERNEL_VERSION:-7.3.4+deb13-amd64}
    idx="$dl/trixie-backports.Packages"
    # The index is fetched once a day at most (offline re-setup works from the cache).
    if [ ! -s "$idx" ] || [ -n "$(find "$idx" -mmin +1440 2>/dev/null)" ]; then
        log "fetching the trixie-backports package index"
        curl -fsS --retry 3 "$BPO_MIRROR/dists/trixie-backports/main/binary-amd64/Packages.xz" | xz -dc > "$idx.new" \
            || { log "cannot fetch $BPO_MIRROR/dists/trixie-backports/main/binary-amd64/Packages.xz"; exit 1; }
        mv "$idx.new" "$idx"
    fi
    # field PKG NAME: one field of one package's stanza
    pkgfield() { awk -v RS= -v P="$1" -v F="$2" '{ if (index($0, "Package: " P "\n") == 1) { n = split($0, L, "\n"); for (i = 1; i <= n; i++) if (index(L[i], F ": ") == 1) { print substr(L[i], length(F) + 3); exit } } }' "$idx"; }
    if [ -z "$(pkgfield "linux-binary-$kwant" Filename)" ]; then
        newest=$(sed -n 's/^Package: linux-binary-\([0-9.]*+deb13-amd64\)$/\1/p' "$idx" | sort -V | tail -1)
        [ -n "$newest" ] || { log "no linux-binary-*+deb13-amd64 in the trixie-backports index"; exit 1; }
        log "note: kernel $kwant is no longer in trixie-backports; taking the newest, $newest"
        kwant=$newest
    fi
    kver=$kwant
    kpkg="linux-binary-$kver"
    ;;
*) log "UBLK_VM_KERNEL_SOURCE=$KSRC: use bookworm or trixie-backports"; exit 1 ;;
esac
stamp="$kpkg $(sha256sum "$HERE/init.sh" "$0" | sha256sum | cut -c1-16)"
if [ -f "$CACHE/stamp" ] && [ "$(cat "$CACHE/stamp")" = "$stamp" ] \
   && [ -f "$CACHE/vmlinuz" ] && [ -f "$CACHE/initramfs.cpio.gz" ]; then
    log "up to date ($kpkg) in $CACHE"
    exit 0
fi

ext="$CACHE/extract"
rm -rf "$ext"; mkdir -p "$ext"
if [ "$KSRC" = bookworm ]; then
    deb=$(ls "$dl"/"${kpkg}"_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        log "downloading $kpkg"
        (cd "$dl" && apt-get download -q "$kpkg" >/dev/null)
        deb=$(ls "$dl"/"${kpkg}"_*.deb | head -1)
    fi
    log "kernel package $(basename "$deb") ($(du -m "$deb" | cut -f1) MB)"
    t2=$(date +%s.%N)
    dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ext" --wildcards \
        './boot/vmlinuz-*' './boot/config-*' './lib/modules/*/kernel/*' 2>/dev/null \
      || dpkg-deb -x "$deb" "$ext"
    kdir=$(ls -d "$ext"/lib/modules/* | head -1)
    vmlinuz=$(ls "$ext"/boot/vmlinuz-* | head -1)
    cp "$ext"/boot/config-* "$CACHE/config"
    grep -q '^CONFIG_BLK_DEV_UBLK=[ym]' "$CACHE/config" || { log "kernel $kver has no ublk"; exit 1; }
else
    for p in "linux-binary-$kver" "linux-modules-$kver"; do
        f=$(pkgfield "$p" Filename); sum=$(pkgfield "$p" SHA256)
        [ -n "$f" ] && [ -n "$sum" ] || { log "$p: not in the trixie-backports index"; exit 1; }
        deb="$dl/$(basename "$f")"
        if [ ! -f "$deb" ] || [ "$(sha256sum < "$deb" | cut -d' ' -f1)" != "$sum" ]; then
            log "downloading $p ($(($(pkgfield "$p" Size) / 1048576)) MB)"
            curl -fsS --retry 3 -o "$deb.part" "$BPO_MIRROR/$f" || { log "cannot fetch $BPO_MIRROR/$f"; exit 1; }
            got=$(sha256sum < "$deb.part" | cut -d' ' -f1)
            [ "$got" = "$sum" ] || { rm -f "$deb.part"; log "$p: SHA256 $got, the index says $sum: not used"; exit 1; }
            mv "$deb.part" "$deb"
        fi
        dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$ext" --wildcards './usr/lib/modules/*/vmlinuz' './usr/lib/modules/*/kernel/*' 2>/dev/null \
          || dpkg-deb -x "$deb" "$ext"
    done
    t2=$(date +%s.%N)
    kdir="$ext/usr/lib/modules/$kver"
    vmlinuz="$kdir/vmlinuz"
    [ -f "$vmlinuz" ] || { log "no vmlinuz in linux-binary-$kver"; exit 1; }
    : > "$CACHE/config"   # these packages ship no config; ublk is checked by its module below
fi
[ -n "$(find "$kdir/kernel" -name 'ublk_drv.ko*' | head -1)" ] || { log "kernel $kver has no ublk_drv module"; exit 1; }
cp "$vmlinuz" "$CACHE/vmlinuz.new"

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
