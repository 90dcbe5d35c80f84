#!/bin/bash
# What `make vm-test` runs in one guest boot: the harness smoke checks (smoke.sh), the ublk
# frontend's own end-to-end test (ublk-mirror-smoke.sh), the zero-copy test (ublk-zero-copy.sh),
# then the mirror suite (mirror.sh) over the frontend given. Exit 0 only when all that ran passed.
#   tests/vm/run.sh --rw $PWD -- tests/vm/suite.sh [--mirror ublk|fuse|none] [--zero-copy require|check] [--compat]
# --mirror none: mirror.sh is not run (said so on the last line).
# --zero-copy require: the kernel must offer ublk zero copy (the 7.x guest kernel); check: test
#   whatever this kernel offers (the copying path where it has none).
# --compat: the short run on the second kernel (Debian 12's 6.12): smoke.sh and ublk-zero-copy.sh
#   only (the copying path, a mirror with ext4, legs identical).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=ublk ZC=check COMPAT=0
while [ $# -gt 0 ]; do
    case "$1" in
        --mirror) MIRROR=${2:?--mirror needs ublk, fuse or none}; shift 2 ;;
        --zero-copy) ZC=${2:?--zero-copy needs require or check}; shift 2 ;;
        --compat) COMPAT=1; shift ;;
        *) echo "suite.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
case "$ZC" in require|check) ;; *) echo "suite.sh: --zero-copy $ZC: use require or check" >&2; exit 2 ;; esac
case "$MIRROR" in ublk|fuse|none) ;; *) echo "suite.sh: --mirror $MIRROR: use ublk, fuse or none" >&2; exit 2 ;; esac
t0=$EPOCHREALTIME
el() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.0f", b-a}'; }
rc=0 parts=()
run() { # name script args...
    local n=$1 t=$EPOCHREALTIME r; shift
    echo "=== $n"
    "$@"; r=$?
    parts+=("$n exit $r in $(el "$t")s"); [ $r -eq 0 ] || rc=1
}
run smoke "$HERE/smoke.sh"
zcopt=(); [ "$ZC" = require ] && zcopt=(--require)
if [ $COMPAT = 1 ]; then
    run ublk-zero-copy "$HERE/ublk-zero-copy.sh" "${zcopt[@]}"
    MIRROR=none
else
    run ublk-mirror-smoke "$HERE/ublk-mirror-smoke.sh"
    run ublk-zero-copy "$HERE/ublk-zero-copy.sh" "${zcopt[@]}"
fi
if [ "$MIRROR" != none ]; then run "mirror($MIRROR)" "$HERE/mirror.sh" --frontend "$MIRROR"; else parts+=("mirror.sh not run (--mirror none)"); fi
printf 'vm suite: %s; %ss in the guest\n' "$(IFS=';'; echo "${parts[*]}")" "$(el "$t0")"
exit $rc
