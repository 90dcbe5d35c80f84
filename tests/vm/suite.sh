#!/bin/bash
# What `make vm-test` runs in one guest boot: the harness smoke checks (smoke.sh), then the
# mirror suite (mirror.sh) over the frontend given (default ublk). Exit 0 only when both pass.
#   tests/vm/run.sh --rw $PWD -- tests/vm/suite.sh [--frontend ublk|fuse|none]
# --frontend none: smoke checks only (mirror.sh not run, said so on the last line).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
FRONTEND=ublk
[ "${1:-}" = --frontend ] && FRONTEND=${2:?--frontend needs ublk, fuse or none}
t0=$EPOCHREALTIME
"$HERE/smoke.sh"; s=$?
m=0
if [ "$FRONTEND" != none ]; then "$HERE/mirror.sh" --frontend "$FRONTEND"; m=$?; fi
printf 'vm suite: smoke exit %d, mirror(%s) exit %s, %.0fs in the guest\n' $s "$FRONTEND" \
    "$([ "$FRONTEND" = none ] && echo 'not run' || echo $m)" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')"
[ $s -eq 0 ] && [ $m -eq 0 ]
