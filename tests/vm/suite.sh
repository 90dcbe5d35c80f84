#!/bin/bash
# What `make vm-test` runs in one guest boot: the harness smoke checks (smoke.sh), the ublk
# frontend's own end-to-end test (ublk-mirror-smoke.sh, with --frontend ublk), then the mirror
# suite (mirror.sh) over the frontend given (default ublk). Exit 0 only when all pass.
#   tests/vm/run.sh --rw $PWD -- tests/vm/suite.sh [--frontend ublk|fuse|none]
# --frontend none: smoke.sh only.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FRONTEND=ublk
[ "${1:-}" = --frontend ] && FRONTEND=${2:?--frontend needs ublk, fuse or none}
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
if [ "$FRONTEND" = ublk ] && [ -x "$HERE/ublk-mirror-smoke.sh" ]; then run ublk-mirror-smoke "$HERE/ublk-mirror-smoke.sh"; fi
if [ "$FRONTEND" != none ]; then run "mirror($FRONTEND)" "$HERE/mirror.sh" --frontend "$FRONTEND"; fi
printf 'vm suite: %s; %ss in the guest\n' "$(IFS=';'; echo "${parts[*]}")" "$(el "$t0")"
exit $rc
