# shellcheck shell=bash
# tests/lib.sh: bash helpers for the daemon tests; source it, then call lib_init.
#
#   lib_init NAME                 temp dir in $LIB_TMP, cleanup trap (kills tracked pids)
#   lib_track PID                 kill PID (TERM, then KILL) when the test exits
#   lib_pick_ports BASE COUNT     sets LIB_PORT: first port of COUNT free loopback ports
#   lib_write_conf FILE SIP UP HTTP MODULE [LEVEL]   config as in the daemon contract
#   lib_start_qrxferd CONF [asan] start qrxferd (or qrxferd-asan), wait until it listens
#   lib_qrxferd_alive             0 if the daemon is still running
#   lib_stop_qrxferd              SIGTERM, wait, fail unless it exited 0
#   lib_check_sanitizers FILE [asan]  fail if FILE holds an ASan/UBSan/LSan report; with asan
#                                 also if FILE is not the stderr of qrxferd-asan (a plain
#                                 daemon's stderr is silent whatever happens)
#   lib_qrxferd_bin [asan]        the daemon binary of that flavour
#   lib_note_bin ERRFILE BIN      record which binary writes ERRFILE (lib_start_qrxferd does)
#   lib_wait_pid PID SECS         wait with a deadline; sets LIB_RC (124 on timeout)
#   lib_wait_udp/lib_wait_tcp PORT SECS   wait until something listens on 127.0.0.1:PORT
#
# Every wait has a deadline; everything binds 127.0.0.1 only.

: "${top_builddir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${top_srcdir:=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
: "${SIPP:=$(command -v sipp || true)}"
: "${PYTHON:=$(command -v python3 || true)}"
: "${ASAN_OPTIONS:=detect_leaks=1:abort_on_error=0:halt_on_error=1:fast_unwind_on_malloc=0}"
: "${UBSAN_OPTIONS:=print_stacktrace=1:halt_on_error=1}"
: "${LSAN_OPTIONS:=suppressions=$top_srcdir/tests/lsan.supp:print_suppressions=0}"
export top_builddir top_srcdir SIPP ASAN_OPTIONS UBSAN_OPTIONS LSAN_OPTIONS

LIB_PIDS=""
LIB_TMP=""
QRXFERD_PID=""
QRXFERD_ERR=""

lib_log() { echo "$LIB_NAME: $*" >&2; }

# Exit status 77 tells automake the test was skipped (missing tool, not a failure).
# In CI (CI=true) nothing may be skipped: what a skip would hide fails the run instead.
lib_skip() {
	if [ "${CI:-}" = true ]; then
		echo "FAIL: would skip in CI: $*" >&2
		exit 1
	fi
	echo "SKIP: $*" >&2
	exit 77
}

lib_fail() {
	echo "FAIL: $*" >&2
	exit 1
}

lib_cleanup() {
	local rc=$? p
	trap - EXIT INT TERM
	for p in $LIB_PIDS; do
		kill -TERM "$p" 2>/dev/null
	done
	for p in $LIB_PIDS; do
		lib_wait_pid "$p" 3 || true
		kill -KILL "$p" 2>/dev/null
	done
	# Keep the evidence of a failed run; KEEP_TMP=1 keeps it always.
	if [ -n "$LIB_TMP" ] && [ -d "$LIB_TMP" ]; then
		if [ "$rc" -eq 0 ] && [ -z "${KEEP_TMP:-}" ]; then
			rm -rf "$LIB_TMP"
		else
			echo "$LIB_NAME: logs kept in $LIB_TMP" >&2
		fi
	fi
	exit "$rc"
}

lib_init() {
	LIB_NAME=$1
	LIB_TMP=$(mktemp -d "${TMPDIR:-/tmp}/qrxfer-$LIB_NAME.XXXXXX") || exit 99
	trap lib_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
}

lib_track() { LIB_PIDS="$LIB_PIDS $1"; }

lib_untrack() {
	local p out=""
	for p in $LIB_PIDS; do
		[ "$p" = "$1" ] || out="$out $p"
	done
	LIB_PIDS=$out
}

# lib_wait_pid PID SECS: wait for a child with a deadline. LIB_RC is its exit status,
# or 124 if it was still running at the deadline (it is then left running).
lib_wait_pid() {
	local pid=$1 deadline=$((SECONDS + $2))
	while kill -0 "$pid" 2>/dev/null; do
		if [ "$SECONDS" -ge "$deadline" ]; then
			LIB_RC=124
			return 1
		fi
		sleep 0.05
	done
	wait "$pid" 2>/dev/null
	LIB_RC=$?
	return 0
}

# lib_ports_free PORT COUNT: 0 if PORT..PORT+COUNT-1 can all be bound on 127.0.0.1 (UDP and TCP).
lib_ports_free() {
	"$PYTHON" - "$1" "$2" <<'EOF'
import socket, sys
base, n = int(sys.argv[1]), int(sys.argv[2])
for port in range(base, base + n):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        s = socket.socket(socket.AF_INET, kind)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            sys.exit(1)
        finally:
            s.close()
EOF
}

# lib_hold_ports FIRST COUNT: takes a lock on each port of the block (files under
# /tmp/qrxfer-ports, flock), held until this shell and its children exit, so that two tests of
# one make -j check never pick the same ports; 1 if another test holds one of them.
lib_hold_ports() {
	local p fd fds=()
	mkdir -p /tmp/qrxfer-ports
	for p in $(seq "$1" $(($1 + $2 - 1))); do
		exec {fd}>>"/tmp/qrxfer-ports/$p"
		if ! flock -n "$fd"; then
			exec {fd}>&-
			for fd in "${fds[@]}"; do exec {fd}>&-; done
			return 1
		fi
		fds+=("$fd")
	done
}

lib_pick_ports() {
	local base=$1 count=$2 i
	for i in $(seq 0 40); do
		LIB_PORT=$((base + i * count))
		[ "$((LIB_PORT + count))" -lt 65000 ] || break
		# Held against our other tests, then probed against anything else.
		lib_hold_ports "$LIB_PORT" "$count" || continue
		if lib_ports_free "$LIB_PORT" "$count"; then
			return 0
		fi
	done
	lib_fail "no $count free loopback ports from $base"
}

lib_listening() {
	# $1 = -u or -t
	[ -n "$(ss -Hln "$1" "sport = :$2" 2>/dev/null)" ]
}

lib_wait_udp() {
	local deadline=$((SECONDS + $2))
	until lib_listening -u "$1"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

lib_wait_tcp() {
	local deadline=$((SECONDS + $2))
	until lib_listening -t "$1"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# lib_write_conf FILE SIPPORT UPPORT HTTPPORT MODULE [LEVEL]
lib_write_conf() {
	local file=$1 dir
	dir=$(dirname "$file")
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/admin.token"
	cat >"$file" <<EOF
[module]
load = $5
[log]
level = ${6:-info}
[sip]
listen = sip:127.0.0.1:$2
domain = qrxfer.test
upstream = sip:127.0.0.1:$3
[http]
listen = 127.0.0.1:$4
admin_token_file = $dir/admin.token
[store]
url = sqlite:///$dir/qrxfer.db
[codes]
hmac_key_file = $dir/hmac.key
EOF
}

lib_qrxferd_bin() {
	if [ "${1:-}" = asan ]; then
		echo "$top_builddir/qrxferd-asan"
	else
		echo "$top_builddir/qrxferd"
	fi
}

# lib_note_bin ERRFILE BIN: ERRFILE.bin names the binary whose stderr ERRFILE is, so that
# lib_check_sanitizers can refuse to vouch for a file no sanitizer wrote to.
lib_note_bin() { echo "$2" >"$1.bin"; }

# lib_start_qrxferd CONF [asan]: QRXFERD_PID, QRXFERD_ERR (its stderr) are set; QRXFERD_ENV
# (NAME=VALUE words, no spaces inside) is added to the daemon's environment alone.
lib_start_qrxferd() {
	local conf=$1 bin port
	bin=$(lib_qrxferd_bin "${2:-}")
	[ -x "$bin" ] || lib_fail "$bin not built"
	port=$(sed -n 's/^listen *= *sip:127\.0\.0\.1:\([0-9]*\).*/\1/p' "$conf")
	QRXFERD_ERR=$LIB_TMP/qrxferd.$$.$RANDOM.err
	lib_note_bin "$QRXFERD_ERR" "$bin"
	# QRXFERD_ENV: NAME=VALUE words for the daemon's environment only (spin.test's preload).
	env ${QRXFERD_ENV:-} "$bin" -c "$conf" -M "$top_builddir/.libs" </dev/null \
		>"$QRXFERD_ERR.out" 2>"$QRXFERD_ERR" &
	QRXFERD_PID=$!
	lib_track "$QRXFERD_PID"
	local deadline=$((SECONDS + 20))
	until lib_listening -u "$port" && lib_listening -t "$port"; do
		if ! kill -0 "$QRXFERD_PID" 2>/dev/null; then
			wait "$QRXFERD_PID"
			echo "qrxferd exited with status $? before listening; its stderr:" >&2
			tail -n 30 "$QRXFERD_ERR" >&2
			lib_fail "qrxferd did not start"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 30 "$QRXFERD_ERR" >&2
			lib_fail "qrxferd does not listen on 127.0.0.1:$port (UDP and TCP) after 20 s"
		fi
		sleep 0.05
	done
}

lib_qrxferd_alive() { [ -n "$QRXFERD_PID" ] && kill -0 "$QRXFERD_PID" 2>/dev/null; }

# lib_stop_qrxferd: SIGTERM; returns non-zero (with a message) unless it exits 0 within 20 s.
lib_stop_qrxferd() {
	[ -n "$QRXFERD_PID" ] || return 0
	local pid=$QRXFERD_PID
	QRXFERD_PID=""
	if ! kill -0 "$pid" 2>/dev/null; then
		wait "$pid"
		lib_log "qrxferd had already exited (status $?) before SIGTERM"
		lib_untrack "$pid"
		return 1
	fi
	kill -TERM "$pid"
	if ! lib_wait_pid "$pid" 20; then
		lib_log "qrxferd still running 20 s after SIGTERM"
		return 1
	fi
	lib_untrack "$pid"
	if [ "$LIB_RC" -ne 0 ]; then
		lib_log "qrxferd exited with status $LIB_RC after SIGTERM"
		return 1
	fi
	return 0
}

# lib_check_sanitizers FILE [asan]: non-zero (and the report on stderr) if a sanitizer spoke;
# with asan also when FILE is not the stderr of qrxferd-asan (lib_note_bin): silence from a
# daemon without sanitizers proves nothing. LeakSanitizer speaks at exit: stop the daemon first.
lib_check_sanitizers() {
	local pat='ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: AddressSanitizer|runtime error:|SUMMARY: [A-Za-z]*Sanitizer|ERROR: UndefinedBehaviorSanitizer|[A-Za-z]*Sanitizer:DEADLYSIGNAL'
	local bin
	if [ ! -r "$1" ]; then
		lib_log "sanitizer check: no stderr file $1"
		return 1
	fi
	bin=$(cat "$1.bin" 2>/dev/null)
	case ${2:-}:$bin in
	asan:*/qrxferd-asan | :*) ;;
	*)
		lib_log "sanitizer check: $1 is the stderr of ${bin:-an unknown binary}, not of qrxferd-asan"
		return 1
		;;
	esac
	if grep -Eq "$pat" "$1"; then
		lib_log "sanitizer report in $1:"
		grep -E -A25 "$pat" "$1" | head -n 80 >&2
		return 1
	fi
	return 0
}
