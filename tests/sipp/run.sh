#!/bin/bash
# tests/sipp/run.sh [--asan] [--base PORT] [SCENARIO...]: run the SIPp behaviour scenarios,
# in series, against one qrxferd started with a generated config. Prints "PASS name" or
# "FAIL name: why" per scenario, then "N passed, N failed"; exits non-zero on any failure.
#
# Roles (daemon contract): "far" is the upstream/PBX side, a sipp bound to UPPORT (requests
# from it are routed to their Request-URI); "near" is a phone on another port (its requests
# go to the upstream).
#
# The relay scenarios (what qrxferd does not own must pass through it unchanged: REFER,
# PRACK, Replaces, SUBSCRIBE/NOTIFY, PUBLISH, unknown methods) run only with QRXFER_RELAY=1
# or when named on the command line: they join the default run with the nta core.
set -u
srcdir=$(cd "$(dirname "$0")" && pwd)
. "$srcdir/../lib.sh"

flavour=normal
base=25100
while [ $# -gt 0 ]; do
	case $1 in
	--asan) flavour=asan ;;
	--base) base=$2; shift ;;
	*) break ;;
	esac
	shift
done
only="$*"

[ -n "$SIPP" ] && [ -x "$SIPP" ] || lib_skip "sipp not found"
[ -n "$PYTHON" ] || lib_skip "python3 not found"
lib_init "sipp-$flavour"

# Port block: 0 SIP, 1 HTTP, 2 far (UPPORT), 3 near, 4 near2; media 10..21; control 22..24.
lib_pick_ports "$base" 25
P=$LIB_PORT
HTTP=$((P + 1))
UP=$((P + 2))
NEAR=$((P + 3))
declare -A SIDE_PORT=([far]=$UP [near]=$NEAR [near2]=$((P + 4)))
declare -A SIDE_MP=([far]=$((P + 10)) [near]=$((P + 14)) [near2]=$((P + 18)))
declare -A SIDE_CP=([far]=$((P + 22)) [near]=$((P + 23)) [near2]=$((P + 24)))

module=mod_qrxfer.so
[ "$flavour" = asan ] && module=mod_qrxfer_asan.so
lib_write_conf "$LIB_TMP/qrxfer.conf" "$P" "$UP" "$HTTP" "$module" info
sed -i "/^\[sip\]/a register_timeout = 2" "$LIB_TMP/qrxfer.conf" # register-timeout-408
if [ "${RELAY_PEER:-qrxferd}" = kamailio ]; then
	# A transparent Kamailio proxy (tests/kamailio-relay.cfg, UDP and TCP) in qrxferd's place:
	# the relay scenarios that pass there have their peers' side right (message-to-move,
	# which qrxfer owns, fails there by design; the NUA-era scenarios are not for it).
	sed -e "s/@PORT@/$P/g" -e "s/@UP@/$UP/g" -e "/^disable_tcp/d" \
		-e "s/^listen=udp:\(.*\)/listen=udp:\1\nlisten=tcp:\1/" \
		"$srcdir/../kamailio-relay.cfg" >"$LIB_TMP/kamailio.cfg"
	mkdir -p "$LIB_TMP/kamrun"
	kamailio -f "$LIB_TMP/kamailio.cfg" -Y "$LIB_TMP/kamrun" -DD -E >"$LIB_TMP/kamailio.err" 2>&1 &
	QRXFERD_PID=$!
	QRXFERD_ERR=$LIB_TMP/kamailio.err
	lib_track "$QRXFERD_PID"
	lib_wait_udp "$P" 10 || lib_fail "kamailio does not listen on 127.0.0.1:$P"
else
	lib_start_qrxferd "$LIB_TMP/qrxfer.conf" "$([ "$flavour" = asan ] && echo asan)"
fi

SIPP_TIMEOUT=12 # seconds a scenario may take; each normally takes well under 2 s
passed=0
failed=0
failures=""
CUR=""
PIDS=()
ROLES=()

# sipp_start SIDE server|client XML [sipp args...]: start one sipp for the current scenario.
# A server is started first and waited for until its port is bound.
sipp_start() {
	local side=$1 kind=$2 xml=$3 port=${SIDE_PORT[$1]}
	shift 3
	local tag="$CUR-$side"
	local args=(-sf "$srcdir/$xml" -i 127.0.0.1 -p "$port" -mp "${SIDE_MP[$side]}"
		-cp "${SIDE_CP[$side]}" -m 1 -nostdin -timeout "${SIPP_TIMEOUT}s" -timeout_error
		-trace_err -error_file "$LIB_TMP/$tag.err"
		-trace_msg -message_file "$LIB_TMP/$tag.msg")
	[ "$kind" = client ] && args+=("127.0.0.1:$P")
	(cd "$LIB_TMP" && exec timeout -k 2 $((SIPP_TIMEOUT + 5)) "$SIPP" "${args[@]}" "$@" \
		</dev/null >"$LIB_TMP/$tag.out" 2>&1) &
	local pid=$!
	lib_track "$pid"
	PIDS+=("$pid")
	ROLES+=("$side($xml)")
	if [ "$kind" = server ] && ! lib_wait_udp "$port" 5; then
		return 1
	fi
	return 0
}

# scenario_end: wait for every sipp of the scenario; all must exit 0 and qrxferd must live.
scenario_end() {
	local i why=$BIND_FAIL$SC_WHY
	for i in "${!PIDS[@]}"; do
		lib_wait_pid "${PIDS[$i]}" $((SIPP_TIMEOUT + 10)) || true
		lib_untrack "${PIDS[$i]}"
		if [ "$LIB_RC" -ne 0 ]; then
			why="$why ${ROLES[$i]} exit $LIB_RC"
			why="$why$(first_error "${ROLES[$i]%%(*}")"
		fi
	done
	if ! lib_qrxferd_alive; then
		why="$why qrxferd died"
	fi
	verdict "$why"
	PIDS=()
	ROLES=()
}

# verdict [WHY]: PASS $CUR when WHY is empty, else FAIL $CUR with it; counts either way.
verdict() {
	if [ -z "$1" ]; then
		echo "PASS $CUR"
		passed=$((passed + 1))
	else
		echo "FAIL $CUR:$1"
		failed=$((failed + 1))
		failures="$failures $CUR"
	fi
}

# selected NAME: true unless scenarios were named on the command line and NAME is not one.
selected() { [ -z "$only" ] || [[ " $only " == *" $1 "* ]]; }

# The first line of sipp's error log that says what went wrong, if any.
first_error() {
	local f=$LIB_TMP/$CUR-$1.err line
	[ -s "$f" ] || return 0
	line=$(grep -v -e '^The following events occurred' -e '^$' "$f" | head -n 1 | cut -c1-160)
	[ -n "$line" ] && printf ' [%s]' "$(echo "$line" | sed 's/^[0-9-]*\t[0-9:.]*\t[0-9.]*: //')"
}

# run NAME FUNCTION: one scenario, skipped unless selected on the command line.
run() {
	CUR=$1
	selected "$1" || return 0
	if ! lib_qrxferd_alive; then
		verdict " qrxferd is not running"
		return 0
	fi
	BIND_FAIL=""
	SC_WHY="" # a scenario function's own finding, reported with the sipps' verdicts
	"$2" || BIND_FAIL=" a sipp server did not bind its port in 5 s;"
	scenario_end
}

# relay NAME FUNCTION: a relay scenario, run with QRXFER_RELAY=1 or when named.
relay() {
	if [ "${QRXFER_RELAY:-}" = 1 ] || { [ -n "$only" ] && selected "$1"; }; then
		run "$1" "$2"
	fi
}

# metric NAME: the value qrxferd's admin GET /metrics shows for the series NAME now.
metric() {
	"$PYTHON" - "$HTTP" "$LIB_TMP/admin.token" "$1" <<'PY'
import sys, urllib.request
port, token, name = sys.argv[1], open(sys.argv[2]).read().strip(), sys.argv[3]
req = urllib.request.Request("http://127.0.0.1:%s/metrics" % port,
                             headers={"Authorization": "Bearer " + token})
for line in urllib.request.urlopen(req, timeout=5).read().decode().splitlines():
    if line.split(" ")[0] == name:
        print(line.split(" ")[1])
        break
else:
    print("missing")
PY
}

# counted NAME FUNCTION SERIES DELTA: run the scenario, then SERIES on /metrics must have
# grown by exactly DELTA (the counter moves where the event happens, not on a timer).
counted() {
	local before after
	selected "$1" || return 0
	before=$(metric "$3")
	run "$1" "$2"
	after=$(metric "$3")
	CUR="$1-metric"
	if [ "$before" != missing ] && [ "$after" != missing ] && [ $((after - before)) = "$4" ]; then
		verdict ""
	else
		verdict " $3 went from $before to $after, not +$4"
	fi
}

ruri_far="sip:far@127.0.0.1:$UP"
ruri_near="sip:near@127.0.0.1:$NEAR"

sc_call_near_far() {
	sipp_start far server callee-recvbye.xml &&
		sipp_start near client caller-bye.xml -key ruri "$ruri_far"
}
sc_call_far_near() {
	sipp_start near server callee-recvbye.xml &&
		sipp_start far client caller-bye.xml -key ruri "$ruri_near"
}
sc_call_near_far_tcp() {
	sipp_start far server callee-recvbye.xml &&
		sipp_start near client caller-bye.xml -t t1 -key ruri "$ruri_far"
}
sc_hangup_far_near_far() {
	sipp_start far server callee-bye.xml &&
		sipp_start near client caller-recvbye.xml -key ruri "$ruri_far"
}
sc_hangup_near_far_near() {
	sipp_start near server callee-bye.xml &&
		sipp_start far client caller-recvbye.xml -key ruri "$ruri_near"
}
sc_late_offer() {
	sipp_start far server callee-late.xml &&
		sipp_start near client caller-late.xml -key ruri "$ruri_far"
}
sc_cancel() {
	sipp_start far server callee-cancel.xml &&
		sipp_start near client caller-cancel.xml -key ruri "$ruri_far"
}
sc_busy() {
	sipp_start far server callee-busy.xml &&
		sipp_start near client caller-busy.xml -key ruri "$ruri_far"
}
sc_early_media() {
	sipp_start far server callee-early.xml &&
		sipp_start near client caller-early.xml -key ruri "$ruri_far"
}
sc_hold_near() {
	sipp_start far server callee-hold-recv.xml &&
		sipp_start near client caller-hold.xml -key ruri "$ruri_far"
}
# An o= line full of printf directives must come out as text (sip/sdp.c).
sc_hold_hostile_origin() {
	sipp_start far server callee-hold-recv.xml &&
		sipp_start near client caller-hold-hostile.xml -key ruri "$ruri_far"
}
sc_hold_far() {
	sipp_start far server callee-hold.xml &&
		sipp_start near client caller-hold-recv.xml -key ruri "$ruri_far"
}
sc_update_near() {
	sipp_start far server callee-update-recv.xml &&
		sipp_start near client caller-update.xml -key ruri "$ruri_far"
}
sc_glare() {
	sipp_start far server callee-glare.xml &&
		sipp_start near client caller-glare.xml -key ruri "$ruri_far"
}
sc_message_info() {
	sipp_start far server callee-msg.xml &&
		sipp_start near client caller-msg.xml -key ruri "$ruri_far"
}
sc_late_offer_far() {
	sipp_start near server callee-late.xml &&
		sipp_start far client caller-late.xml -key ruri "$ruri_near"
}
sc_cancel_far() {
	sipp_start near server callee-cancel.xml &&
		sipp_start far client caller-cancel.xml -key ruri "$ruri_near"
}
sc_busy_far() {
	sipp_start near server callee-busy.xml &&
		sipp_start far client caller-busy.xml -key ruri "$ruri_near"
}
sc_redirect() {
	sipp_start far server callee-redirect.xml &&
		sipp_start near client caller-redirected.xml -key ruri "$ruri_far"
}
sc_unknown_method() {
	sipp_start far server pbx-foo.xml &&
		sipp_start near client req-foo.xml -key ruri "$ruri_far"
}
sc_options() {
	sipp_start near client req-options.xml -key ruri "sip:127.0.0.1:$P"
}
sc_register() {
	sipp_start far server registrar.xml &&
		sipp_start near client phone-register.xml
}
sc_register_timeout() {
	sipp_start far server registrar-silent.xml &&
		sipp_start near client phone-register-timeout.xml
}
sc_max_forwards() {
	sipp_start near client req-maxfwd.xml -key ruri "$ruri_far"
}

# Relay scenarios (see the header): the far sipp checks that each in-dialog request
# arrives in its own dialog (the Call-ID and tags of the INVITE it got), not the phone's.
sc_refer_blind() {
	sipp_start far server callee-refer-recv.xml &&
		sipp_start near client caller-refer.xml -key ruri "$ruri_far"
}
sc_refer_blind_from_pbx() {
	sipp_start far server callee-refer.xml &&
		sipp_start near client caller-refer-recv.xml -key ruri "$ruri_far"
}
sc_method_unknown_in_dialog() {
	sipp_start far server callee-foo-dialog.xml &&
		sipp_start near client caller-foo-dialog.xml -key ruri "$ruri_far"
}
sc_session_timer() {
	sipp_start far server callee-session-timer.xml &&
		sipp_start near client caller-session-timer.xml -key ruri "$ruri_far"
}
sc_prack() {
	sipp_start far server callee-100rel.xml &&
		sipp_start near client caller-100rel.xml -key ruri "$ruri_far"
}
# Call 1 near -> far; once it is up, near2 INVITEs an ordinary target with Replaces naming
# call 1's near dialog (written by the near sipp to replaces.dlg); the far sipp (two calls)
# must see Replaces naming its own dialog of call 1, and ends call 1 with BYE.
sc_replaces_attended() {
	local i cid="" tt="" ft=""
	rm -f "$LIB_TMP/replaces.dlg"
	sipp_start far server callee-replaces.xml -m 2 || return 1
	sipp_start near client caller-replaced.xml -key ruri "$ruri_far"
	for i in $(seq 1 100); do
		[ -s "$LIB_TMP/replaces.dlg" ] && break
		sleep 0.05
	done
	read -r cid tt ft <"$LIB_TMP/replaces.dlg" 2>/dev/null
	if [ -z "$ft" ]; then
		SC_WHY=" call 1 never came up (no replaces.dlg after 5 s);"
		return 0
	fi
	sipp_start near2 client caller-replaces.xml -key ruri "$ruri_far" \
		-key dlgcid "$cid" -key dlgtag "$tt" -key dlgftag "$ft"
}
sc_subscribe_mwi() {
	sipp_start far server pbx-mwi.xml &&
		sipp_start near client phone-subscribe-mwi.xml
}
sc_notify_unsolicited() {
	sipp_start far server registrar-notify.xml &&
		sipp_start near client phone-register-notify.xml
}
sc_publish_presence() {
	sipp_start far server pbx-publish.xml &&
		sipp_start near client phone-publish.xml
}
sc_subscribe_blf() {
	sipp_start far server pbx-blf.xml &&
		sipp_start near client phone-subscribe-blf.xml
}
sc_message_to_move() {
	sipp_start far server far-marker.xml &&
		sipp_start near client req-message-move.xml -key ruri "sip:marker@127.0.0.1:$UP"
}
# RFC 5626 3.5.1 keep-alives: a double CRLF on UDP (ignored) and on TCP (answered with one
# CRLF), nothing about them in the log; then a call over TCP still goes through.
sc_crlf_keepalive() {
	local before why
	before=$(wc -c <"$QRXFERD_ERR")
	why=$("$PYTHON" "$srcdir/crlf-ping.py" "$P")
	sleep 0.3
	if tail -c +$((before + 1)) "$QRXFERD_ERR" | grep -Eiq 'garbage|error'; then
		why="$why qrxferd logged: $(tail -c +$((before + 1)) "$QRXFERD_ERR" |
			grep -Ei 'garbage|error' | head -n 1 | cut -c1-120);"
	fi
	SC_WHY=$why
	sipp_start far server callee-recvbye.xml &&
		sipp_start near client caller-bye.xml -t t1 -key ruri "$ruri_far"
}

# Requests in made-up dialogs (a stranger's Call-IDs): each would cost a store lookup; the
# lookups that find nothing are budgeted per source and in all (dialog-flood.py). Then a call
# from the flooded source still goes through: its own dialogs need no lookup.
sc_unknown_dialog_flood() {
	SC_WHY=$("$PYTHON" "$srcdir/dialog-flood.py" "$P" "$HTTP" "$LIB_TMP/admin.token" 2>&1)
	sipp_start far server callee-recvbye.xml &&
		sipp_start near client caller-bye.xml -key ruri "$ruri_far"
}

counted call-near-far sc_call_near_far qrxfer_calls_answered_total 1
run call-far-near sc_call_far_near
run call-near-far-tcp sc_call_near_far_tcp
run hangup-by-far sc_hangup_far_near_far
run hangup-by-near-far-call sc_hangup_near_far_near
run late-offer sc_late_offer
run cancel sc_cancel
counted busy-486 sc_busy qrxfer_calls_failed_total 1
run early-media-183 sc_early_media
run late-offer-far-near sc_late_offer_far
run cancel-far-near sc_cancel_far
run busy-486-far-near sc_busy_far
run redirect-302-as-480 sc_redirect
run hold-resume-near sc_hold_near
run hold-resume-far sc_hold_far
run hold-hostile-origin sc_hold_hostile_origin
run update-near sc_update_near
run glare-491 sc_glare
run message-info sc_message_info
run unknown-method-relayed sc_unknown_method
run options-200 sc_options
counted register-path sc_register qrxfer_registers_total 1
run register-timeout-408 sc_register_timeout
counted max-forwards-483 sc_max_forwards qrxfer_sip_requests_rejected_total 1
relay refer-blind sc_refer_blind
relay refer-blind-from-pbx sc_refer_blind_from_pbx
relay method-unknown-in-dialog sc_method_unknown_in_dialog
relay prack sc_prack
relay session-timer sc_session_timer
relay replaces-attended sc_replaces_attended
relay subscribe-mwi sc_subscribe_mwi
relay notify-unsolicited sc_notify_unsolicited
relay publish-presence sc_publish_presence
relay subscribe-blf sc_subscribe_blf
relay message-to-move sc_message_to_move
relay crlf-keepalive sc_crlf_keepalive
run unknown-dialog-flood sc_unknown_dialog_flood

stop_ok=1
lib_stop_qrxferd || stop_ok=0
if [ "$stop_ok" = 1 ]; then
	echo "PASS qrxferd-exit-0"
	passed=$((passed + 1))
else
	echo "FAIL qrxferd-exit-0: qrxferd did not exit 0 after SIGTERM"
	failed=$((failed + 1))
fi
if [ "$flavour" = asan ]; then
	if lib_check_sanitizers "$QRXFERD_ERR" asan; then
		echo "PASS sanitizers-clean"
		passed=$((passed + 1))
	else
		echo "FAIL sanitizers-clean: ASan/UBSan/LSan report in qrxferd's stderr"
		failed=$((failed + 1))
	fi
fi
echo "$passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then
	echo "qrxferd stderr (last 40 lines):" >&2
	tail -n 40 "$QRXFERD_ERR" >&2
	exit 1
fi
exit 0
