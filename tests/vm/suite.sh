#!/bin/bash
# What `make vm-test` runs in one guest boot: the harness smoke checks (smoke.sh), the ublk
# frontend's own end-to-end test (ublk-mirror-smoke.sh), then the mirror suite (mirror.sh) over
# the frontend given. Exit 0 only when all that ran passed.
#   tests/vm/run.sh --rw $PWD -- tests/vm/suite.sh [--mirror ublk|fuse|none]
# --mirror none: mirror.sh is not run (said so on the last line).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
MIRROR=ublk
[ "${1:-}" = --mirror ] && MIRROR=${2:?--mirror needs ublk, fuse or none}
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
[ -x "$HERE/ublk-mirror-smoke.sh" ] && run ublk-mirror-smoke "$HERE/ublk-mirror-smoke.sh"
if [ "$MIRROR" != none ]; then run "mirror($MIRROR)" "$HERE/mirror.sh" --frontend "$MIRROR"; else parts+=("mirror.sh not run (--mirror none)"); fi
printf 'vm suite: %s; %ss in the guest\n' "$(IFS=';'; echo "${parts[*]}")" "$(el "$t0")"
exit $rc
