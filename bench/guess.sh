#!/bin/sh
# make bench-guess: how many numeric codes a stranger can check per minute against the guess
# limits, from many loopback addresses and ports (bench/guess.py; see bench/README.md).
# The figures are also kept in $top_builddir/bench-guess.txt.
here=$(cd "$(dirname "$0")" && pwd)
top_srcdir=${top_srcdir:-$(dirname "$here")}
top_builddir=${top_builddir:-$(pwd)}
export top_srcdir top_builddir
ulimit -n "$(ulimit -Hn)" 2>/dev/null || ulimit -n 65536 2>/dev/null
s=${BENCH_GUESS_S:-60}
s=${s%.*}
runs=${BENCH_GUESS_RUNS:-1}
# the whole run is bounded: per run the guessing, the setup and the drain, then everything
# it started is stopped
bound=$(( (${s:-60} + 180) * ${runs:-1} + 60 ))
out=$top_builddir/bench-guess.txt
{
	timeout -k 10 "$bound" python3 "$here/guess.py"
	echo $? >"$out.rc"
} 2>&1 | tee "$out"
rc=$(cat "$out.rc" 2>/dev/null || echo 1)
rm -f "$out.rc"
exit "$rc"
