#!/bin/bash
# make demo: a scripted move with SIPp agents. A calls C through qrxferd, asks for a move,
# the QR is printed here in the terminal, B dials the code, and the move's timeline follows.
set -u
top_srcdir=${top_srcdir:-$(cd "$(dirname "$0")/../.." && pwd)}
top_builddir=${top_builddir:-$top_srcdir}
SIPP=${SIPP:-$(command -v sipp)}
export top_srcdir top_builddir SIPP
. "$top_srcdir/tests/lib.sh"
lib_init demo
[ -n "$SIPP" ] || lib_fail "sipp not found (Debian package sip-tester)"

lib_pick_ports 27500 8
sip=$LIB_PORT far=$((LIB_PORT + 1)) http=$((LIB_PORT + 2)) a=$((LIB_PORT + 3)) b=$((LIB_PORT + 4))
lib_write_conf "$LIB_TMP/qrxfer.conf" "$sip" "$far" "$http" mod_qrxfer.so warn
sed -i "/^\[http\]/a public_url = http://127.0.0.1:$http" "$LIB_TMP/qrxfer.conf"
lib_start_qrxferd "$LIB_TMP/qrxfer.conf"
ctl() { "$top_builddir/ctl/qrxferctl" -u "http://127.0.0.1:$http" -t "$LIB_TMP/admin.token" "$@"; }
mv="$top_srcdir/tests/move"
say() { printf '\n\033[1m%s\033[0m\n' "$*"; }

say "1. A (sip:alice, SIPp on :$a) calls C (the PBX, SIPp on :$far) through qrxferd (:$sip)"
"$SIPP" -sf "$mv/far-uas.xml" -i 127.0.0.1 -p "$far" -nostdin -m 1 -timeout 30 \
	>"$LIB_TMP/far.out" 2>&1 &
cpid=$!
lib_track $cpid
lib_wait_udp "$far" 10 || lib_fail "C does not listen"
"$SIPP" -sf "$mv/near-uac.xml" "127.0.0.1:$sip" -s carol -i 127.0.0.1 -p "$a" -nostdin -m 1 \
	-timeout 30 >"$LIB_TMP/near.out" 2>&1 &
apid=$!
lib_track $apid
call=
for _ in $(seq 50); do
	call=$(ctl calls 2>/dev/null | awk 'NR > 1 && /answered/ {print $1; exit}')
	[ -n "$call" ] && break
	sleep 0.1
done
[ -n "$call" ] || lib_fail "the call did not come up"
ctl calls

say "2. A asks to move the call (here by the admin API; a phone uses REFER, MESSAGE or *8)"
ctl move "$call" | tee "$LIB_TMP/move.txt"
move=$(awk '$1 == "id:" {print $2}' "$LIB_TMP/move.txt")
[ -n "$move" ] || lib_fail "no move id in: $(cat "$LIB_TMP/move.txt")"

say "3. The code A is shown (scan it with a softphone, or dial *88 and the digits):"
ctl code show "$move"
uri=$(curl -s -H "Authorization: Bearer $(cat "$LIB_TMP/admin.token")" \
	"http://127.0.0.1:$http/v1/moves/$move" | python3 -c 'import json,sys; print(json.load(sys.stdin)["qr_uri"])')
user=${uri#sip:}
user=${user%@*}

say "4. B (sip:bob, SIPp on :$b) dials $uri"
"$SIPP" -sf "$mv/new-uac.xml" "127.0.0.1:$sip" -s "$user" -i 127.0.0.1 -p "$b" -nostdin -m 1 \
	-timeout 20 >"$LIB_TMP/new.out" 2>&1
brc=$?
lib_wait_pid $cpid 20
crc=$LIB_RC
lib_wait_pid $apid 20
arc=$LIB_RC

say "5. The move's timeline (from the store)"
curl -s -H "Authorization: Bearer $(cat "$LIB_TMP/admin.token")" \
	"http://127.0.0.1:$http/v1/moves/$move" | python3 -c '
import json, sys
m = json.load(sys.stdin)
print("move %s: %s, taken by %s" % (m["id"], m["state"], m.get("taken_by")))
for e in m.get("events", []):
    print("  %+7d ms  %-10s %s" % (e["ms"], e["step"], e["detail"]))
'
say "Result: B $([ $brc = 0 ] && echo took the call || echo FAILED), C $([ $crc = 0 ] && echo kept its dialog and got B\'s media || echo FAILED), A $([ $arc = 0 ] && echo was hung up with \"Call moved\" || echo FAILED)"
lib_stop_qrxferd
[ $brc = 0 ] && [ $crc = 0 ] && [ $arc = 0 ]
