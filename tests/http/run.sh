#!/bin/bash
# tests/http/run.sh [--asan] [--base PORT]: the HTTP faces under slow and many connections,
# against qrxferd (or qrxferd-asan + mod_qrxfer_asan.so): the admin face apart from the public
# one, [http] per_ip_limit, header_timeout, body_timeout, and their config errors; and
# [http] admin_loopback_only against a real non-loopback peer (in a private network namespace:
# run.sh --peer, started under unshare -n).
set -u
. "$top_srcdir/tests/lib.sh"
flavour=plain base=29100 peer=
while [ $# -gt 0 ]; do
	case $1 in
	--asan) flavour=asan ;;
	--peer) peer=1 ;;
	--base)
		base=$2
		shift
		;;
	*) lib_fail "unknown argument $1" ;;
	esac
	shift
done
lib_init "http-$flavour${peer:+-peer}"
[ -n "$PYTHON" ] || lib_skip "python3 not found"
command -v curl >/dev/null || lib_skip "curl not found"
lib_pick_ports "$base" 12
d=$LIB_TMP
module=mod_qrxfer.so bin=$top_builddir/qrxferd asan=
if [ $flavour = asan ]; then
	module=mod_qrxfer_asan.so bin=$top_builddir/qrxferd-asan asan=asan
fi
slow() { "$PYTHON" "$top_srcdir/tests/http/slow.py" "$@"; }
pass=0 fail=0
ok() { echo "PASS $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }

# conf FILE N [KEY = VALUE]...: instance N's ports (4 from LIB_PORT + 4N), [http] lines added.
conf() {
	local file=$1 p=$((LIB_PORT + 4 * $2)) kv
	shift 2
	lib_write_conf "$file" "$p" $((p + 1)) $((p + 2)) "$module"
	echo "[http]" >>"$file"
	for kv in "$@"; do
		echo "$kv" >>"$file"
	done
	PUB=$((p + 2)) ADM=$((p + 3))
}

# get SRC PORT PATH [MAXTIME]: prints the status (000: no answer); the body is in $d/body.
get() {
	curl -s -o "$d/body" -w '%{http_code}' --max-time "${4:-5}" --interface "$1" \
		-H "Authorization: Bearer $(cat "$d/admin.token")" "http://127.0.0.1:$2$3"
}

# said: the start of the last body, on one line.
said() { tr '\n' ' ' <"$d/body" | head -c 160; }

start() {
	lib_start_qrxferd "$1" $asan
	lib_wait_tcp "$PUB" 10 || lib_fail "nothing listens on the public face $PUB"
	if grep -q '^admin_listen = .' "$1"; then
		lib_wait_tcp "$ADM" 10 || lib_fail "nothing listens on the admin face $ADM"
	fi
}

stop() {
	lib_stop_qrxferd || bad "qrxferd did not stop cleanly"
	if [ $flavour = asan ]; then
		lib_check_sanitizers "$QRXFERD_ERR" || bad "sanitizer report"
	fi
}

# wait_file FILE SECS: 0 once FILE exists.
wait_file() {
	local deadline=$((SECONDS + $2))
	until [ -e "$1" ]; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# wait_log PATTERN SECS: 0 once qrxferd's stderr has a line matching PATTERN (grep -E).
wait_log() {
	local deadline=$((SECONDS + $2))
	until grep -Eq "$1" "$QRXFERD_ERR"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.05
	done
}

# flood TAG SRC PORT COUNT CLOSED: start slow.py flood in the background (FLOOD_PID), wait
# until it is ready; FLOOD_STATE is its ready line.
flood() {
	rm -f "$d/$1.ready" "$d/$1.stop"
	slow flood "$3" "$2" "$4" "$5" "$d/$1.ready" "$d/$1.stop" >"$d/$1.out" 2>&1 &
	FLOOD_PID=$!
	lib_track $FLOOD_PID
	wait_file "$d/$1.ready" 40 || lib_fail "flood $1 not ready in 40 s: $(cat "$d/$1.out")"
	FLOOD_STATE=$(cat "$d/$1.ready")
}

# flood_end TAG: tell the flood to let go; FLOOD_STATE is its last line.
flood_end() {
	touch "$d/$1.stop"
	lib_wait_pid $FLOOD_PID 20 || lib_fail "flood $1 did not end"
	lib_untrack $FLOOD_PID
	FLOOD_STATE=$(tail -n 1 "$d/$1.out")
}

# 5 (run.sh --peer, alone in its own network namespace): a request from a source address
# outside 127/8 (198.51.100.7, a documentation address put on this namespace's lo, so that
# nothing leaves the machine) to the admin API with the right bearer token is 403 under
# admin_loopback_only = yes (the default), while the same request from 127.0.0.1 is 200; with
# admin_loopback_only = no it is 200 from that address too.
if [ -n "$peer" ]; then
	ip link set lo up && ip addr add 198.51.100.7/32 dev lo ||
		lib_fail "cannot set up the namespace's addresses"
	conf "$d/peer.conf" 0
	start "$d/peer.conf"
	code=$(get 127.0.0.1 "$PUB" /metrics)
	code2=$(get 198.51.100.7 "$PUB" /metrics)
	if [ "$code" = 200 ] && [ "$code2" = 403 ] && grep -q "loopback-only" "$d/body"; then
		ok "admin_loopback_only: the admin API from 198.51.100.7 is 403, from 127.0.0.1 200"
	else
		bad "admin_loopback_only: GET /metrics from 127.0.0.1 $code, from 198.51.100.7 $code2 $(said)"
	fi
	stop
	conf "$d/peer-off.conf" 1 "admin_loopback_only = no"
	start "$d/peer-off.conf"
	code=$(get 198.51.100.7 "$PUB" /metrics)
	if [ "$code" = 200 ]; then
		ok "admin_loopback_only = no: the admin API from 198.51.100.7 is 200"
	else
		bad "admin_loopback_only = no: GET /metrics from 198.51.100.7 $code $(said)"
	fi
	stop
	echo "$pass passed, $fail failed"
	[ $fail = 0 ]
	exit
fi

# 1. Two faces, per_ip_limit at its default (16), 600 slow connections from one address.
conf "$d/one.conf" 0 "admin_listen = 127.0.0.1:$((LIB_PORT + 3))" "header_timeout = 120"
start "$d/one.conf"
code=$(get 127.0.0.1 "$PUB" /metrics)
if [ "$code" = 404 ] && grep -q "no such resource" "$d/body"; then
	ok "the public face does not serve the admin routes (404)"
else
	bad "GET /metrics on the public face: $code $(said)"
fi
code=$(get 127.0.0.1 "$ADM" /m/x/state)
code2=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$ADM/metrics")
if [ "$code" = 404 ] && grep -q "no such resource" "$d/body" && [ "$code2" = 401 ]; then
	ok "the admin face serves no public route (404) and wants the bearer token (401)"
else
	bad "admin face: GET /m/x/state $code $(said), /metrics without token $code2"
fi
flood one 127.0.0.1 "$PUB" 600 584
if [ "$FLOOD_STATE" = "ready closed=584 open=16" ]; then
	ok "600 connections from one address: 584 over per_ip_limit 16 closed at once"
else
	bad "600 connections from one address: $FLOOD_STATE (want 584 closed, 16 open)"
fi
code=$(get 127.0.0.2 "$PUB" /m/x/state)
if [ "$code" != 000 ] && ! grep -q "no such resource" "$d/body"; then
	ok "meanwhile the public face answers another address ($code)"
else
	bad "public face from 127.0.0.2 during the flood: $code $(said)"
fi
code=$(get 127.0.0.1 "$ADM" /metrics)
if [ "$code" = 200 ] && grep -q "^qrxfer_http_connections_refused_total 584$" "$d/body"; then
	ok "meanwhile GET /metrics on the admin face is 200 and counts 584 refused"
else
	bad "admin /metrics during the flood: $code $(grep refused "$d/body")"
fi
flood_end one
if [ "$FLOOD_STATE" = "closed=584 open=16" ]; then
	ok "the 16 connections within the limit stayed open throughout"
else
	bad "the flood's connections at its end: $FLOOD_STATE"
fi
deadline=$((SECONDS + 10))
until code=$(get 127.0.0.1 "$PUB" /m/x/state 2) && [ "$code" != 000 ]; do
	[ "$SECONDS" -lt "$deadline" ] || break
done
if [ "$code" != 000 ]; then
	ok "once they are gone the address is served again ($code)"
else
	bad "127.0.0.1 not served after its connections closed"
fi
stop

# 2. Deadlines: header_timeout 2, body_timeout 3, on both faces.
conf "$d/two.conf" 1 "admin_listen = 127.0.0.1:$((LIB_PORT + 7))" "header_timeout = 2" \
	"body_timeout = 3"
start "$d/two.conf"
slow header "$PUB" 127.0.0.1 >"$d/h1.out" 2>&1 &
h1=$!
slow header "$ADM" 127.0.0.3 >"$d/h2.out" 2>&1 &
h2=$!
slow body "$PUB" 127.0.0.4 "/v1/scans?who=new" >"$d/b1.out" 2>&1 &
b1=$!
lib_track "$h1"
lib_track "$h2"
lib_track "$b1"
# at_least OUT SECS: the trickler's output is a number of seconds >= SECS
at_least() { "$PYTHON" -c 'import sys; sys.exit(float(sys.argv[1]) < float(sys.argv[2]))' \
	"$(cat "$1")" "$2" 2>/dev/null; }
lib_wait_pid "$h1" 30
if [ "$LIB_RC" = 0 ] && at_least "$d/h1.out" 1.5 &&
	wait_log "qrxfer: http: 127\.0\.0\.1: public face: no complete request headers 2 s after connecting: connection closed" 5; then
	ok "a client trickling header bytes to the public face is cut after header_timeout ($(cat "$d/h1.out") s), logged with its address"
else
	bad "header trickle on the public face: rc $LIB_RC after $(cat "$d/h1.out")"
fi
lib_wait_pid "$h2" 30
if [ "$LIB_RC" = 0 ] && at_least "$d/h2.out" 1.5 &&
	wait_log "127\.0\.0\.3: admin face: no complete request headers" 5; then
	ok "the same on the admin face ($(cat "$d/h2.out") s)"
else
	bad "header trickle on the admin face: rc $LIB_RC after $(cat "$d/h2.out")"
fi
lib_wait_pid "$b1" 30
if [ "$LIB_RC" = 0 ] && at_least "$d/b1.out" 2.5 &&
	wait_log "127\.0\.0\.4: public face: request body not complete 3 s after its headers: connection closed" 5; then
	ok "a client trickling its body is cut after body_timeout ($(cat "$d/b1.out") s), logged"
else
	bad "body trickle: rc $LIB_RC after $(cat "$d/b1.out")"
fi
lib_untrack "$h1"
lib_untrack "$h2"
lib_untrack "$b1"
code=$(get 127.0.0.1 "$ADM" /metrics)
if [ "$code" = 200 ] && grep -q "^qrxfer_http_connections_cut_total 3$" "$d/body"; then
	ok "a prompt client is served; qrxfer_http_connections_cut_total is 3"
else
	bad "admin /metrics after the trickles: $code $(grep cut_total "$d/body")"
fi
stop

# 3. per_ip_limit 0: 600 slow connections from one address fill the public face (512
# connections), and the admin face still answers.
conf "$d/three.conf" 2 "admin_listen = 127.0.0.1:$((LIB_PORT + 11))" "per_ip_limit = 0" \
	"header_timeout = 120"
start "$d/three.conf"
flood three 127.0.0.1 "$PUB" 600 0
code=$(get 127.0.0.2 "$PUB" /m/x/state 2)
if [ "$FLOOD_STATE" = "ready closed=0 open=600" ] && [ "$code" = 000 ]; then
	ok "per_ip_limit 0: 600 connections from one address all held, the public face is full"
else
	bad "per_ip_limit 0 flood: $FLOOD_STATE, public face answered 127.0.0.2 with $code"
fi
code=$(get 127.0.0.1 "$ADM" /metrics)
if [ "$code" = 200 ]; then
	ok "with the public face full, GET /metrics on the admin face is 200"
else
	bad "admin /metrics with the public face full: $code"
fi
flood_end three
stop

# 4. Config errors name file, line and key; a bad admin_listen stops the start.
conf "$d/base.conf" 0
n=$(($(wc -l <"$d/base.conf") + 1))
for kv in "per_ip_limit = -1|-1 is outside 0..100000" "header_timeout = 0|0 is outside 1..3600" \
	"body_timeout = 30s|'30s' is not a whole number"; do
	cp "$d/base.conf" "$d/bad.conf"
	echo "${kv%%|*}" >>"$d/bad.conf"
	key=${kv%% *}
	out=$("$bin" -t -c "$d/bad.conf" -M "$top_builddir/.libs" 2>&1)
	rc=$?
	if [ $rc -ne 0 ] && echo "$out" | grep -qF "bad.conf:$n: [http] $key: ${kv#*|}"; then
		ok "$key: a bad value is refused naming file, line and key"
	else
		bad "$key: rc=$rc, said: $out"
	fi
done
for kv in "localhost:1|want IP:PORT" "127.0.0.1:$((LIB_PORT + 2))|must not take the port of listen"; do
	cp "$d/base.conf" "$d/bad.conf"
	echo "admin_listen = ${kv%%|*}" >>"$d/bad.conf"
	timeout 30 "$bin" -c "$d/bad.conf" -M "$top_builddir/.libs" >"$d/bad.out" 2>&1
	rc=$?
	if [ $rc = 1 ] && grep -qF "admin_listen: ${kv#*|}" "$d/bad.out" &&
		grep -qF "[http] admin_listen ${kv%%|*}" "$d/bad.out"; then
		ok "admin_listen = ${kv%%|*}: the daemon does not start and says why"
	else
		bad "admin_listen = ${kv%%|*}: rc=$rc, said: $(tail -n 3 "$d/bad.out")"
	fi
	if [ $flavour = asan ]; then
		lib_check_sanitizers "$d/bad.out" || bad "sanitizer report (admin_listen = ${kv%%|*})"
	fi
done

# 5. admin_loopback_only with a real non-loopback peer, in a private network namespace.
if unshare -n true 2>/dev/null; then
	unshare -n "$top_srcdir/tests/http/run.sh" ${asan:+--asan} --base "$base" --peer >"$d/peer.out" 2>&1
	while read -r line; do
		case $line in
		PASS\ *) ok "${line#PASS }" ;;
		FAIL\ *) bad "${line#FAIL }" ;;
		esac
	done <"$d/peer.out"
	grep -q '^2 passed, 0 failed$' "$d/peer.out" ||
		bad "the namespace run: $(grep -v '^PASS' "$d/peer.out" | tail -n 3 | tr '\n' ' ')"
else
	echo "SKIP admin_loopback_only with a non-loopback peer: unshare -n is not permitted here"
fi

echo "$pass passed, $fail failed"
[ $fail = 0 ]
