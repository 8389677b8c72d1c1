#!/bin/sh
# Runs the store suite (tests/unit/test_store) against a throwaway PostgreSQL server on loopback.
# "pg.sh ARGS" passes ARGS to the suite; "pg.sh --run CMD ARGS" runs CMD instead, with
# QRXFER_TEST_PG_URL exported (benchmarks and end-to-end tests use it).
set -u

builddir=${top_builddir:-.}
suite=$builddir/tests/unit/test_store
pgbin=${PGBIN:-}
if [ -z "$pgbin" ]; then
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/initdb" ] && pgbin=$d
	done
fi
if [ -z "$pgbin" ] || [ ! -x "$pgbin/initdb" ] || [ ! -x "$pgbin/pg_ctl" ]; then
	echo "FAIL: PostgreSQL server binaries (initdb, pg_ctl) not found under /usr/lib/postgresql/*/bin: install the Debian package postgresql" >&2
	exit 1
fi
alone=1
if [ "${1:-}" = --run ]; then
	alone=
	shift
	suite=$1
	shift
elif [ ! -x "$suite" ]; then
	echo "FAIL: $suite not built" >&2
	exit 1
fi

tmp=$(mktemp -d /tmp/qrxfer-pg-XXXXXX) || exit 1
data=$tmp/data
started=

# The server refuses to run as root: run it as postgres, which must own the directory.
as_pg() {
	if [ "$(id -u)" = 0 ]; then
		runuser -u postgres -- "$@"
	else
		"$@"
	fi
}

cleanup() {
	if [ -n "$started" ]; then
		# A suite that died while it had the server stopped (SIGSTOP) must not leave it so.
		pm=$(head -n 1 "$data/postmaster.pid" 2>/dev/null)
		if [ -n "$pm" ]; then
			kill -CONT "$pm" 2>/dev/null
			pkill -CONT -P "$pm" 2>/dev/null
		fi
		as_pg "$pgbin/pg_ctl" -D "$data" -m immediate -w stop >/dev/null 2>&1
	fi
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

if [ "$(id -u)" = 0 ]; then
	chown postgres "$tmp" || exit 1
fi
chmod 700 "$tmp"
if ! as_pg "$pgbin/initdb" -D "$data" -U postgres -A trust --no-sync >"$tmp/initdb.log" 2>&1; then
	echo "FAIL: initdb failed:" >&2
	cat "$tmp/initdb.log" >&2
	exit 1
fi

# A few random loopback ports, in case one is taken.
for try in 1 2 3 4 5; do
	port=$((20000 + $(od -An -N2 -tu2 /dev/urandom) % 30000))
	if as_pg "$pgbin/pg_ctl" -D "$data" -l "$tmp/server.log" -w -t 30 \
		-o "-k $tmp -c listen_addresses=127.0.0.1 -p $port -c fsync=off -c max_connections=200" \
		start >/dev/null 2>&1; then
		started=1
		break
	fi
done
if [ -z "$started" ]; then
	echo "FAIL: could not start PostgreSQL:" >&2
	cat "$tmp/server.log" >&2
	exit 1
fi

QRXFER_TEST_PG_URL=postgresql://postgres@127.0.0.1:$port/postgres
# Where the server's postmaster.pid is, for tests that stop the server (SIGSTOP).
QRXFER_TEST_PG_DATA=$data
export QRXFER_TEST_PG_URL QRXFER_TEST_PG_DATA
"$suite" "$@"
rc=$?
# The test of a store that goes away stops the server: it runs alone, after the others (which
# skip it), and is told how to stop the server and start it again.
if [ $rc = 0 ] && [ -n "$alone" ]; then
	pgas=
	[ "$(id -u)" = 0 ] && pgas="runuser -u postgres --"
	QRXFER_TEST_PG_STOP="$pgas $pgbin/pg_ctl -D $data -m fast -w stop"
	QRXFER_TEST_PG_START="$pgas $pgbin/pg_ctl -D $data -l $tmp/server.log -w -t 30 -o '-k $tmp -c listen_addresses=127.0.0.1 -p $port -c fsync=off -c max_connections=200' start"
	export QRXFER_TEST_PG_STOP QRXFER_TEST_PG_START
	"$suite" --filter 'store/batched_writes_survive_an_outage' -j1
	rc=$?
fi
if [ $rc != 0 ]; then
	echo "pg.sh: suite failed ($rc) against $QRXFER_TEST_PG_URL; server log:" >&2
	tail -n 30 "$tmp/server.log" >&2
fi
exit $rc
