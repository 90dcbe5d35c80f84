#!/bin/bash
# Run a command as root inside a fresh qemu (TCG) guest whose kernel has ublk_drv.
#   tests/vm/run.sh [--mem MiB] [--smp N] [--tcg-thread single|multi] [--timeout S] [--boot-timeout S] [--boot-retries N]
#                   [--rw DIR]... [--verbose] -- COMMAND...
# The guest's root is the host's root (read-only 9p + tmpfs overlay: writes vanish at exit);
# COMMAND runs in the caller's current directory; /vmwork is a writable share (scratch, removed
# at exit); each --rw DIR is shared writable at the same path (results that must survive).
# Exit status: COMMAND's, or
#   124  the timeout expired (qemu killed)
#   125  the VM failed: did not boot (after --boot-retries more tries, default 1; a boot is
#        "hung" when COMMAND has not started within --boot-timeout, default 180 s), or the
#        guest died while COMMAND ran (kernel panic: see the console output)
#   126  usage error / harness not set up (run tests/vm/setup.sh)
set -uo pipefail

CACHE=${UBLK_VM_CACHE:-/var/cache/ublk-mirror-vm}
# TCG: one host thread for all vCPUs by default. Multi-threaded TCG crashed guest JVMs (SIGSEGV
# and SIGILL in JIT-compiled code and in the C2 compiler thread, 3 runs of 2026-12-02): code the
# JVM patches on one vCPU while another runs it. --tcg-thread multi for speed when no JVM runs.
TCG_THREAD=${UBLK_VM_TCG_THREAD:-single}
MEM=2048 SMP=2 TIMEOUT=600 BOOT_TIMEOUT=180 BOOT_RETRIES=1 VERBOSE=0 RW=()
usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 126; }
while [ $# -gt 0 ]; do
    case "$1" in
        --mem) MEM=$2; shift 2 ;;
        --smp) SMP=$2; shift 2 ;;
        --tcg-thread) TCG_THREAD=$2; shift 2 ;;
        --timeout) TIMEOUT=$2; shift 2 ;;
        --boot-timeout) BOOT_TIMEOUT=$2; shift 2 ;;
        --boot-retries) BOOT_RETRIES=$2; shift 2 ;;
        --rw) RW+=("$(cd "$2" && pwd)") || exit 126; shift 2 ;;
        --verbose) VERBOSE=1; shift ;;
        --) shift; break ;;
        -h|--help) usage ;;
        *) echo "run.sh: unknown option $1" >&2; usage ;;
    esac
done
[ $# -gt 0 ] || usage
for f in vmlinuz initramfs.cpio.gz; do
    [ -f "$CACHE/$f" ] || { echo "run.sh: $CACHE/$f missing: run tests/vm/setup.sh (make vm-setup)" >&2; exit 126; }
done
command -v qemu-system-x86_64 >/dev/null || { echo "run.sh: qemu-system-x86_64 missing: run tests/vm/setup.sh" >&2; exit 126; }

W=$(mktemp -d "${TMPDIR:-/tmp}/ublk-vm.XXXXXX")
QPID= WPID=
cleanup() {
    [ -n "$WPID" ] && kill "$WPID" 2>/dev/null
    if [ -n "$QPID" ] && kill -0 "$QPID" 2>/dev/null; then kill "$QPID" 2>/dev/null; sleep 0.5; kill -9 "$QPID" 2>/dev/null; fi
    rm -rf "$W"
}
trap cleanup EXIT
trap 'echo "run.sh: interrupted" >&2; exit 130' INT TERM HUP

# The command, quoted for /bin/sh (dash runs it in the guest), run from the caller's directory.
{
    echo '#!/bin/sh'
    q() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
    printf 'cd %s 2>/dev/null || cd /\n' "$(q "$PWD")"
    printf 'exec'; for a in "$@"; do printf ' %s' "$(q "$a")"; done; printf '\n'
} > "$W/cmd.sh"

shares=() i=0
: > "$W/shares"
for d in "${RW[@]}"; do
    shares+=(-virtfs "local,path=$d,security_model=none,mount_tag=rw$i")
    echo "rw$i $d" >> "$W/shares"; i=$((i + 1))
done

case "$TCG_THREAD" in single|multi) ;; *) echo "run.sh: --tcg-thread $TCG_THREAD: use single or multi" >&2; exit 126 ;; esac

append="console=ttyS0 panic=-1 rdinit=/init${UBLK_VM_APPEND:+ $UBLK_VM_APPEND}"   # UBLK_VM_APPEND: extra kernel arguments
[ "$VERBOSE" = 1 ] || append="$append quiet"
mkfifo "$W/console"
t0=$EPOCHREALTIME
boot_once() { # one qemu run; sets qrc, t_cmd; files in $W: started, timed-out, boot-hung, exit-code
    rm -f "$W/started" "$W/timed-out" "$W/boot-hung" "$W/exit-code"
    qemu-system-x86_64 -accel tcg,thread="$TCG_THREAD" -cpu max -m "$MEM" -smp "$SMP" \
        -nodefaults -no-user-config -nographic -no-reboot -serial stdio -monitor none \
        -M q35 -bios /usr/share/qemu/qboot.rom \
        -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio.gz" -append "$append" \
        -virtfs local,path=/,security_model=none,readonly=on,multidevs=remap,mount_tag=hostroot \
        -virtfs "local,path=$W,security_model=none,mount_tag=work" \
        "${shares[@]}" \
        </dev/null >"$W/console" 2>&1 &
    QPID=$!
    # Watchdog: polls once a second so it ends soon after qemu; kills qemu by PID when the
    # command has not started within BOOT_TIMEOUT, or on TIMEOUT.
    (
        start=$SECONDS
        while kill -0 "$QPID" 2>/dev/null; do
            reason=
            [ $((SECONDS - start)) -ge "$TIMEOUT" ] && reason=timed-out
            [ ! -f "$W/started" ] && [ $((SECONDS - start)) -ge "$BOOT_TIMEOUT" ] && reason=boot-hung
            if [ -n "$reason" ]; then
                touch "$W/$reason"; kill "$QPID" 2>/dev/null; sleep 2; kill -9 "$QPID" 2>/dev/null; exit 0
            fi
            sleep 1
        done
    ) &
    WPID=$!
    t_cmd=
    while IFS= read -r line || [ -n "$line" ]; do
        line=${line%$'\r'}
        case "$line" in *"vm-init: exec guest command"*) t_cmd=$EPOCHREALTIME; touch "$W/started" ;; esac
        printf '%s\n' "$line"
    done < "$W/console"
    wait "$QPID"; qrc=$?
    QPID=
    wait "$WPID" 2>/dev/null; WPID=
}
# A guest that dies before COMMAND starts (seen once: an int3 Oops while the kernel patched its
# text under TCG with 2 vCPUs; a hung boot) is booted again: COMMAND has not run, so it is safe.
attempt=1
while :; do
    boot_once
    [ -f "$W/started" ] || [ -f "$W/timed-out" ] || [ $attempt -gt "$BOOT_RETRIES" ] && break
    attempt=$((attempt + 1))
    echo "run.sh: VM failed before the command started$([ -f "$W/boot-hung" ] && echo " (no start within ${BOOT_TIMEOUT}s)"); booting again (attempt $attempt)" >&2
    t0=$EPOCHREALTIME
done
t1=$EPOCHREALTIME

boot=$( [ -n "$t_cmd" ] && awk -v a="$t0" -v b="$t_cmd" 'BEGIN{printf "%.1fs", b-a}' || echo "n/a")
total=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1fs", b-a}')
if [ -f "$W/timed-out" ]; then
    echo "run.sh: TIMEOUT after ${TIMEOUT}s: qemu killed (qemu start to command: $boot)" >&2
    exit 124
fi
if [ ! -f "$W/exit-code" ]; then
    if [ -n "$t_cmd" ]; then
        echo "run.sh: VM FAILED: the guest died while the command ran (qemu status $qrc): see the console above" >&2
    else
        echo "run.sh: VM FAILED: no boot after $attempt attempt(s) (qemu status $qrc); rerun with --verbose for kernel messages" >&2
    fi
    exit 125
fi
rc=$(cat "$W/exit-code")
echo "run.sh: guest command exit $rc; qemu start to command $boot, total $total" >&2
exit "$rc"
