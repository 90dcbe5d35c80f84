#!/usr/bin/env bash
# Installs what the build, tests and demo need, only when missing (Debian/Ubuntu, as root).
set -euo pipefail
need=()
command -v javac >/dev/null 2>&1 || need+=(openjdk-17-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v fio >/dev/null 2>&1 || need+=(fio)
command -v mkfs.ext4 >/dev/null 2>&1 || need+=(e2fsprogs)
command -v losetup >/dev/null 2>&1 || need+=(util-linux)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v make >/dev/null 2>&1 || need+=(make)
command -v setsid >/dev/null 2>&1 || need+=(util-linux)
# native/ (the ublk shim): liburing headers, found through pkg-config
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
[ -f /usr/include/liburing.h ] || need+=(liburing-dev)
# NBD interoperability tests: third-party servers and clients, and certificates for TLS
command -v qemu-nbd >/dev/null 2>&1 || need+=(qemu-utils)
command -v nbdinfo >/dev/null 2>&1 || need+=(libnbd-bin)
command -v nbdkit >/dev/null 2>&1 || need+=(nbdkit)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "deps: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
    exit 1
  fi
  echo "deps: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
