#!/bin/sh
# make bench-move: complete moves per second with many calls up, and the latency a move adds
# (bench/move.py; see bench/README.md). The figures are also kept in $top_builddir/bench-move.txt.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$(pwd)}
export top_srcdir top_builddir
# 10,000 calls through SIPp: give it every descriptor allowed
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null
out=$top_builddir/bench-move.txt
{
	# the whole run is bounded: 15 minutes, then everything it started is stopped
	timeout -k 10 900 python3 "$here/move.py"
	echo $? >"$out.rc"
} 2>&1 | tee "$out"
rc=$(cat "$out.rc" 2>/dev/null || echo 1)
rm -f "$out.rc"
exit "$rc"
