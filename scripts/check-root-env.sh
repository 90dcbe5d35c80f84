#!/usr/bin/env bash
# The root-level tests need these; say exactly what is missing and fail (never skip).
set -u
fail=0
[ "$(id -u)" = 0 ] || { echo "root-test: must run as root (FUSE mount, losetup, mkfs)"; fail=1; }
[ -c /dev/fuse ] || { echo "root-test: /dev/fuse is missing (modprobe fuse)"; fail=1; }
[ -e /dev/loop-control ] || { echo "root-test: /dev/loop-control is missing (modprobe loop)"; fail=1; }
for t in losetup mkfs.ext4 e2fsck fio mount umount ip tc nft nsenter; do
  command -v $t >/dev/null 2>&1 || { echo "root-test: $t is missing (make deps installs it)"; fail=1; }
done
# the network-namespace tests make their own namespaces and a veth pair
if command -v ip >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  ns=umchk-$$
  if ip netns add $ns 2>/dev/null; then ip netns del $ns; else echo "root-test: 'ip netns add' fails (network namespaces needed)"; fail=1; fi
fi
exit $fail
