#!/bin/sh
# make bench (SIP part): SIPp -> qrxferd -> SIPp and the same through Kamailio; see bench/README.md.
# The figures are printed and also kept in $top_builddir/bench-sip.txt.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$(pwd)}
export top_srcdir top_builddir
# 10,000 held calls through SIPp: give it every descriptor allowed
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null
out=$top_builddir/bench-sip.txt
{
	python3 "$here/bench.py"
	echo $? >"$out.rc"
} 2>&1 | tee "$out"
rc=$(cat "$out.rc" 2>/dev/null || echo 1)
rm -f "$out.rc"
exit "$rc"
