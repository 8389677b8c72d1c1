/* The store against SQLite, or against PostgreSQL when QRXFER_TEST_PG_URL names a server. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sanitizer/lsan_interface.h>
#include <sofia-sip/su_wait.h>

#include "sql/store.h"
#include "sql/store_int.h"

static char dir[256];    /* SQLite: a fresh directory per test */
static char dbname[64];  /* PostgreSQL: a fresh database per test */
static char url[512];    /* what store_open gets */
static char admin[512];  /* PostgreSQL: the server's maintenance database */
static struct store *st; /* the fixture's store */

static const char *pg_url(void)
{
	const char *u = getenv("QRXFER_TEST_PG_URL");

	return u && *u ? u : NULL;
}

static void pg_admin(const char *sql)
{
	PGconn *pg = PQconnectdb(admin);
	PGresult *res;

	cr_assert(PQstatus(pg) == CONNECTION_OK, "connect %s: %s", admin, PQerrorMessage(pg));
	res = PQexec(pg, sql);
	cr_assert(PQresultStatus(res) == PGRES_COMMAND_OK, "%s: %s", sql, PQerrorMessage(pg));
	PQclear(res);
	PQfinish(pg);
}

/* Makes url name an empty database of the backend under test. */
static void fresh_db(void)
{
	const char *pg = pg_url();
	char sql[128];

	if (pg) {
		const char *slash = strrchr(pg, '/');

		cr_assert(slash && slash > pg + 13, "QRXFER_TEST_PG_URL needs a /database: %s", pg);
		snprintf(admin, sizeof(admin), "%s", pg);
		snprintf(dbname, sizeof(dbname), "qrxfer_t%ld", (long)getpid());
		snprintf(url, sizeof(url), "%.*s/%s", (int)(slash - pg), pg, dbname);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", dbname);
		pg_admin(sql);
		return;
	}
	snprintf(dir, sizeof(dir), "/tmp/qrxfer-store-XXXXXX");
	cr_assert(mkdtemp(dir), "mkdtemp: %s", strerror(errno));
	snprintf(url, sizeof(url), "sqlite://%s/store.db", dir);
}

static void drop_db(void)
{
	char sql[128], path[300];

	if (pg_url()) {
		snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", dbname);
		pg_admin(sql);
		return;
	}
	snprintf(path, sizeof(path), "%s/store.db", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/store.db-wal", dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/store.db-shm", dir);
	unlink(path);
	cr_assert_eq(rmdir(dir), 0, "rmdir %s: %s", dir, strerror(errno));
}

static void setup(void)
{
	char err[256];
	int e;

	fresh_db();
	e = store_open(&st, url, err, sizeof(err));
	cr_assert_eq(e, 0, "store_open %s: %s (%s)", url, strerror(e), err);
}

static int dropped;

/* Ends a test: Criterion ignores leaks found at exit and failures in .fini, so check here. */
static void finish(void)
{
	store_close(st);
	st = NULL;
	drop_db();
	dropped = 1;
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "memory leaked (see the report above)");
}

/* Cleans up after a test that stopped early. */
static void teardown(void)
{
	store_close(st);
	st = NULL;
	if (!dropped)
		drop_db();
}

/* A distinct stand-in for a SHA-256 per seed (splitmix64). */
static void hash_of(uint8_t h[STORE_HASH_LEN], unsigned seed)
{
	uint64_t x = seed;
	int i;

	for (i = 0; i < STORE_HASH_LEN; i++) {
		if (i % 8 == 0) {
			x += 0x9e3779b97f4a7c15ULL;
			x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
			x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
			x ^= x >> 31;
		}
		h[i] = (uint8_t)(x >> (8 * (i % 8)));
	}
}

static void make_call(struct store_call *c, const char *id, int64_t now)
{
	memset(c, 0, sizeof(*c));
	snprintf(c->id, sizeof(c->id), "%s", id);
	snprintf(c->near.call_id, sizeof(c->near.call_id), "near-%s@127.0.0.1", id);
	snprintf(c->near.from_tag, sizeof(c->near.from_tag), "nf-%s", id);
	snprintf(c->near.to_tag, sizeof(c->near.to_tag), "nt-%s", id);
	snprintf(c->near.uri, sizeof(c->near.uri), "sip:alice@127.0.0.1:5062");
	snprintf(c->far.call_id, sizeof(c->far.call_id), "far-%s@127.0.0.1", id);
	snprintf(c->far.from_tag, sizeof(c->far.from_tag), "ff-%s", id);
	snprintf(c->far.to_tag, sizeof(c->far.to_tag), "ft-%s", id);
	snprintf(c->far.uri, sizeof(c->far.uri), "sip:carol@127.0.0.1:5070");
	c->state = STORE_CALL_SETUP;
	c->created_at = now;
}

static void make_move(struct store_move *m, const char *id, const char *call_id, unsigned seed,
                      int64_t now, int64_t ttl)
{
	memset(m, 0, sizeof(*m));
	snprintf(m->id, sizeof(m->id), "%s", id);
	snprintf(m->call_id, sizeof(m->call_id), "%s", call_id);
	hash_of(m->token_hash, seed);
	hash_of(m->code_hash, seed + 100000);
	m->created_at = now;
	m->expires_at = now + ttl;
}

static void add_call(const char *id, int64_t now)
{
	struct store_call c;

	make_call(&c, id, now);
	cr_assert_eq(store_call_insert(st, &c), 0);
}

static void add_move(const char *id, const char *call_id, unsigned seed, int64_t now, int64_t ttl)
{
	struct store_move m;

	make_move(&m, id, call_id, seed, now, ttl);
	cr_assert_eq(store_move_insert(st, &m), 0);
}

static int redeem(enum store_key key, unsigned seed, int64_t now, const char *by,
                  struct store_redeem *r)
{
	memset(r, 0, sizeof(*r));
	r->key = key;
	hash_of(r->hash, key == STORE_KEY_CODE ? seed + 100000 : seed);
	r->now = now;
	snprintf(r->by, sizeof(r->by), "%s", by);
	return store_move_redeem(st, r);
}

TestSuite(store, .init = setup, .fini = teardown, .timeout = 120);

Test(store, migrations_apply_once_and_record_the_version)
{
	const struct store_migration *last = &store_migrations[store_nmigrations - 1];
	struct store *again = NULL;
	struct store_call c;
	char err[256];
	int version = -1;

	cr_assert_gt(store_nmigrations, 0);
	cr_assert_str_eq(store_backend(st), pg_url() ? "postgresql" : "sqlite");
	cr_assert_eq(store_schema_version(st, &version), 0);
	cr_assert_eq(version, last->version);
	add_call("c-keep", 1000);
	store_close(st);
	st = NULL;

	/* Reopening must not re-run a migration: CREATE TABLE would fail, and data would go. */
	cr_assert_eq(store_open(&again, url, err, sizeof(err)), 0, "reopen: %s", err);
	st = again;
	version = -1;
	cr_assert_eq(store_schema_version(st, &version), 0);
	cr_assert_eq(version, last->version);
	cr_assert_eq(store_call_get(st, "c-keep", &c), 0);
	cr_assert_eq(c.created_at, 1000);
	finish();
}

static void *open_and_close(void *arg)
{
	struct store *s = NULL;
	char err[256];
	int *e = arg;

	*e = store_open(&s, url, err, sizeof(err));
	if (*e)
		fprintf(stderr, "concurrent open: %s\n", err);
	store_close(s);
	return NULL;
}

Test(store, daemons_starting_together_migrate_once)
{
	const struct store_migration *last = &store_migrations[store_nmigrations - 1];
	pthread_t th[8];
	int errs[8], i, version = -1;
	char err[256];

	/* Start from a database nobody has migrated yet. */
	store_close(st);
	st = NULL;
	drop_db();
	fresh_db();
	for (i = 0; i < 8; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, open_and_close, &errs[i]), 0);
	for (i = 0; i < 8; i++)
		pthread_join(th[i], NULL);
	for (i = 0; i < 8; i++)
		cr_assert_eq(errs[i], 0, "opener %d: %s", i, strerror(errs[i]));
	cr_assert_eq(store_open(&st, url, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(store_schema_version(st, &version), 0);
	cr_assert_eq(version, last->version);
	finish();
}

Test(store, sqlite_file_is_in_wal_mode)
{
	struct store *other = NULL;
	char err[256], wal[300];

	if (pg_url())
		cr_skip_test("SQLite only");
	add_call("c-wal", 1);
	snprintf(wal, sizeof(wal), "%s/store.db-wal", dir);
	/* A WAL database keeps a -wal file beside it while a connection is open. */
	cr_assert_eq(access(wal, F_OK), 0, "no %s: not in WAL mode", wal);
	cr_assert_eq(store_open(&other, url, err, sizeof(err)), 0, "second connection: %s", err);
	store_close(other);

	/* sqlite://name is relative to the working directory. */
	cr_assert_eq(chdir(dir), 0);
	other = NULL;
	cr_assert_eq(store_open(&other, "sqlite://rel.db", err, sizeof(err)), 0, "%s", err);
	store_close(other);
	snprintf(wal, sizeof(wal), "%s/rel.db", dir);
	cr_assert_eq(access(wal, F_OK), 0, "sqlite://rel.db did not make %s", wal);
	unlink(wal);
	finish();
}

Test(store, bad_urls_are_refused_with_a_reason)
{
	struct store *s = NULL;
	char err[256];

	cr_assert_eq(store_open(&s, "mysql://x", err, sizeof(err)), EINVAL);
	cr_assert_null(s);
	cr_assert(strstr(err, "mysql://x"), "err: %s", err);
	cr_assert_neq(store_open(&s, "sqlite:///nonexistent-dir/x/y.db", err, sizeof(err)), 0);
	cr_assert_null(s);
	cr_assert(err[0]);
	finish();
}

Test(store, memory_database_opens)
{
	struct store *s = NULL;
	struct store_call c;
	char err[256];

	cr_assert_eq(store_open(&s, "sqlite::memory:", err, sizeof(err)), 0, "%s", err);
	make_call(&c, "m1", 5);
	cr_assert_eq(store_call_insert(s, &c), 0);
	cr_assert_eq(store_call_get(s, "m1", &c), 0);
	store_close(s);
	finish();
}

struct ids {
	int n;
	char id[8][STORE_ID_MAX];
};

static int collect_ids(const struct store_call *c, void *arg)
{
	struct ids *ids = arg;

	if (ids->n < 8)
		snprintf(ids->id[ids->n++], STORE_ID_MAX, "%s", c->id);
	return 0;
}

Test(store, calls_insert_update_list_get_purge)
{
	struct store_call c, got;
	struct store_dialog b;
	struct ids live = {0};
	int n = -1;

	make_call(&c, "c1", 1000);
	cr_assert_eq(store_call_insert(st, &c), 0);
	cr_assert_eq(store_call_insert(st, &c), EEXIST);
	add_call("c2", 2000);
	add_call("c3", 3000);

	cr_assert_eq(store_call_get(st, "c1", &got), 0);
	cr_assert_str_eq(got.near.call_id, "near-c1@127.0.0.1");
	cr_assert_str_eq(got.far.to_tag, "ft-c1");
	cr_assert_str_eq(got.far.uri, "sip:carol@127.0.0.1:5070");
	cr_assert_eq(got.state, STORE_CALL_SETUP);
	cr_assert_eq(got.answered_at, 0);
	cr_assert_eq(store_call_get(st, "nope", &got), ENOENT);
	cr_assert_eq(store_call_find(st, "far-c2@127.0.0.1", &got), 0);
	cr_assert_str_eq(got.id, "c2");
	cr_assert_eq(store_call_find(st, "near-c3@127.0.0.1", &got), 0);
	cr_assert_str_eq(got.id, "c3");
	cr_assert_eq(store_call_find(st, "nobody@127.0.0.1", &got), ENOENT);

	cr_assert_eq(store_call_state_set(st, "c1", STORE_CALL_ACTIVE, 1500), 0);
	cr_assert_eq(store_call_state_set(st, "c1", STORE_CALL_ACTIVE, 1600), 0);
	cr_assert_eq(store_call_get(st, "c1", &got), 0);
	cr_assert_eq(got.state, STORE_CALL_ACTIVE);
	cr_assert_eq(got.answered_at, 1500, "answered_at is set once");
	cr_assert_eq(store_call_state_set(st, "nope", STORE_CALL_ACTIVE, 1), ENOENT);

	memset(&b, 0, sizeof(b));
	snprintf(b.call_id, sizeof(b.call_id), "bob-leg@127.0.0.1");
	snprintf(b.from_tag, sizeof(b.from_tag), "bf");
	snprintf(b.to_tag, sizeof(b.to_tag), "bt");
	snprintf(b.uri, sizeof(b.uri), "sip:bob@127.0.0.1:5064");
	cr_assert_eq(store_call_near_set(st, "c1", &b), 0);
	cr_assert_eq(store_call_get(st, "c1", &got), 0);
	cr_assert_str_eq(got.near.call_id, "bob-leg@127.0.0.1");
	cr_assert_str_eq(got.far.call_id, "far-c1@127.0.0.1", "the far leg never changes");

	cr_assert_eq(store_call_state_set(st, "c1", STORE_CALL_ENDED, 10000), 0);
	cr_assert_eq(store_call_state_set(st, "c2", STORE_CALL_ENDED, 50000), 0);
	cr_assert_eq(store_call_state_set(st, "c1", STORE_CALL_ACTIVE, 10001), EALREADY,
	             "an ended call stays ended");
	cr_assert_eq(store_call_get(st, "c1", &got), 0);
	cr_assert_eq(got.ended_at, 10000);

	cr_assert_eq(store_call_list_live(st, collect_ids, &live), 0);
	cr_assert_eq(live.n, 1);
	cr_assert_str_eq(live.id[0], "c3");

	/* Retention 20 s at t=40 s: c1 (ended at 10 s) goes, c2 (50 s) and live c3 stay. */
	add_move("m-c1", "c1", 1, 2000, 120000);
	cr_assert_eq(store_purge(st, 40000, 20000, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(store_call_get(st, "c1", &got), ENOENT);
	cr_assert_eq(store_move_get(st, "m-c1", &(struct store_move){0}), ENOENT);
	cr_assert_eq(store_call_get(st, "c2", &got), 0);
	cr_assert_eq(store_call_get(st, "c3", &got), 0);
	finish();
}

struct steps {
	int n;
	char step[16][32];
	int seq[16];
};

static int collect_steps(const struct store_move_event *ev, void *arg)
{
	struct steps *s = arg;

	if (s->n < 16) {
		s->seq[s->n] = ev->seq;
		snprintf(s->step[s->n++], 32, "%s", ev->step);
	}
	return 0;
}

static int count_moves(const struct store_move *m, void *arg)
{
	(*(int *)arg)++;
	return 0;
}

Test(store, moves_insert_get_transitions_and_events)
{
	struct store_move m, got;
	struct store_redeem r;
	struct steps ev = {0};
	int n = 0, i;

	add_call("c1", 1000);
	make_move(&m, "m1", "c1", 7, 1000, 120000);
	cr_assert_eq(store_move_insert(st, &m), 0);
	cr_assert_eq(store_move_insert(st, &m), EEXIST);
	make_move(&m, "m-orphan", "no-such-call", 8, 1000, 120000);
	cr_assert_eq(store_move_insert(st, &m), ENOENT, "a move belongs to an existing call");

	cr_assert_eq(store_move_get(st, "m1", &got), 0);
	cr_assert_str_eq(got.call_id, "c1");
	cr_assert_eq(got.state, STORE_MOVE_OFFERED);
	cr_assert_eq(got.expires_at, 121000);
	make_move(&m, "m1", "c1", 7, 1000, 120000);
	cr_assert_eq(memcmp(got.token_hash, m.token_hash, STORE_HASH_LEN), 0);
	cr_assert_eq(memcmp(got.code_hash, m.code_hash, STORE_HASH_LEN), 0);
	cr_assert_eq(store_move_get(st, "nope", &got), ENOENT);

	cr_assert_eq(store_move_state_set(st, "m1", STORE_MOVE_MOVING, 1100, NULL), EALREADY,
	             "an offered move cannot start moving before it is redeemed");
	cr_assert_eq(store_move_state_set(st, "nope", STORE_MOVE_MOVING, 1100, NULL), ENOENT);
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 7, 2000, "udp:127.0.0.1:5064", &r), 0);
	cr_assert_eq(store_move_state_set(st, "m1", STORE_MOVE_CONFIRMING, 2100, NULL), 0);
	cr_assert_eq(store_move_event_add(st, "m1", 2200, "confirm", "near yes"), 0);
	cr_assert_eq(store_move_state_set(st, "m1", STORE_MOVE_MOVING, 2300, NULL), 0);
	cr_assert_eq(store_move_state_set(st, "m1", STORE_MOVE_DONE, 2400, NULL), 0);
	cr_assert_eq(store_move_state_set(st, "m1", STORE_MOVE_FAILED, 2500, "late"), EALREADY);
	cr_assert_eq(store_move_event_add(st, "nope", 1, "x", ""), ENOENT);

	cr_assert_eq(store_move_get(st, "m1", &got), 0);
	cr_assert_eq(got.state, STORE_MOVE_DONE);
	cr_assert_eq(got.redeemed_at, 2000);
	cr_assert_str_eq(got.redeemed_by, "udp:127.0.0.1:5064");
	cr_assert_eq(got.finished_at, 2400);

	cr_assert_eq(store_move_events(st, "m1", collect_steps, &ev), 0);
	{
		static const char *const want[] = {"offered", "redeemed", "confirming",
		                                   "confirm", "moving",   "done"};

		cr_assert_eq(ev.n, 6);
		for (i = 0; i < 6; i++) {
			cr_assert_str_eq(ev.step[i], want[i]);
			cr_assert_eq(ev.seq[i], i + 1);
		}
	}

	add_move("m2", "c1", 9, 3000, 120000);
	cr_assert_eq(store_move_state_set(st, "m2", STORE_MOVE_FAILED, 3100, "far refused: 488"),
	             0);
	cr_assert_eq(store_move_get(st, "m2", &got), 0);
	cr_assert_eq(got.state, STORE_MOVE_FAILED);
	cr_assert_str_eq(got.reason, "far refused: 488");
	cr_assert_eq(store_move_list(st, "c1", count_moves, &n), 0);
	cr_assert_eq(n, 2);
	n = 0;
	cr_assert_eq(store_move_list(st, "c-other", count_moves, &n), 0);
	cr_assert_eq(n, 0);
	finish();
}

Test(store, redeem_refuses_expired_wrong_and_reused_codes)
{
	struct store_redeem r;
	struct store_move got;

	add_call("c1", 1000);
	add_move("m-exp", "c1", 1, 1000, 120000);
	add_move("m-ok", "c1", 2, 1000, 120000);

	cr_assert_eq(redeem(STORE_KEY_TOKEN, 1, 121000, "src-a", &r), ENOENT, "expired");
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 1, 200000, "src-a", &r), ENOENT, "expired");
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 99, 5000, "src-b", &r), ENOENT, "wrong hash");
	cr_assert_eq(r.move_id[0], '\0');

	cr_assert_eq(redeem(STORE_KEY_TOKEN, 2, 5000, "src-c", &r), 0);
	cr_assert_str_eq(r.move_id, "m-ok");
	cr_assert_str_eq(r.call_id, "c1");
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 2, 5001, "src-d", &r), ENOENT, "works once");
	cr_assert_eq(store_move_get(st, "m-ok", &got), 0);
	cr_assert_str_eq(got.redeemed_by, "src-c");
	cr_assert_eq(store_move_get(st, "m-exp", &got), 0);
	cr_assert_eq(got.state, STORE_MOVE_OFFERED);

	/* The numeric code of a third move, by its own hash. */
	add_move("m-code", "c1", 3, 6000, 120000);
	cr_assert_eq(redeem(STORE_KEY_CODE, 4, 7000, "src-e", &r), ENOENT, "wrong code");
	cr_assert_eq(redeem(STORE_KEY_CODE, 3, 7000, "src-e", &r), 0);
	cr_assert_str_eq(r.move_id, "m-code");
	cr_assert_eq(redeem(STORE_KEY_CODE, 3, 7001, "src-f", &r), ENOENT, "code used");
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 3, 7002, "src-f", &r), ENOENT, "token of used code");
	finish();
}

Test(store, move_locks_after_five_failures)
{
	struct store_failure f;
	struct store_redeem r;
	struct store_move got;
	struct steps ev = {0};
	int i;

	add_call("c1", 1000);
	add_move("m1", "c1", 1, 1000, 120000);
	for (i = 1; i <= 4; i++) {
		cr_assert_eq(store_failure_add(st, "m1", "src-x", 2000 + i, &f), 0);
		cr_assert_eq(f.move_failures, i);
		cr_assert_eq(f.move_locked, 0);
	}
	cr_assert_eq(store_move_get(st, "m1", &got), 0);
	cr_assert_eq(got.locked, 0);
	cr_assert_eq(store_failure_add(st, "m1", "src-y", 2010, &f), 0);
	cr_assert_eq(f.move_failures, 5);
	cr_assert_eq(f.move_locked, 1);
	cr_assert_eq(f.source_failures, 1, "src-y failed once");
	cr_assert_eq(store_move_get(st, "m1", &got), 0);
	cr_assert_eq(got.locked, 1);
	cr_assert_eq(got.failures, 5);

	/* Even the right code no longer works. */
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 1, 3000, "src-z", &r), ENOENT);
	cr_assert_eq(store_move_events(st, "m1", collect_steps, &ev), 0);
	cr_assert_str_eq(ev.step[ev.n - 1], "locked");

	/* A failure against an unknown move still counts for the source. */
	cr_assert_eq(store_failure_add(st, "nope", "src-y", 2020, &f), 0);
	cr_assert_eq(f.move_failures, -1);
	cr_assert_eq(f.source_failures, 2);
	finish();
}

Test(store, source_is_slowed_down_after_five_failures)
{
	struct store_limits lim = {
	    .max_failures = 5, .window_ms = 60000, .slow_base_ms = 1000, .slow_max_ms = 8000};
	struct store_failure f;
	struct store_redeem r;
	int64_t now = 100000;
	int i;

	store_limits_set(st, &lim);
	add_call("c1", 1000);
	add_move("m1", "c1", 1, now, 120000);
	for (i = 0; i < 4; i++) {
		cr_assert_eq(redeem(STORE_KEY_CODE, 900 + i, now + i, "udp:127.0.0.1:9", &r),
		             ENOENT);
		cr_assert_eq(store_source_check(st, "udp:127.0.0.1:9", now + i, &f), 0);
		cr_assert_eq(f.source_failures, i + 1);
		cr_assert_eq(f.wait_ms, 0);
	}
	cr_assert_eq(redeem(STORE_KEY_CODE, 950, now + 4, "udp:127.0.0.1:9", &r), ENOENT);
	cr_assert_eq(store_source_check(st, "udp:127.0.0.1:9", now + 4, &f), 0);
	cr_assert_eq(f.source_failures, 5);
	cr_assert_eq(f.wait_ms, 1000);

	/* Blocked: even the right code is refused with EAGAIN and how long to wait. */
	cr_assert_eq(redeem(STORE_KEY_CODE, 1, now + 500, "udp:127.0.0.1:9", &r), EAGAIN);
	cr_assert_eq(r.wait_ms, 504);
	/* Another source is not affected. */
	cr_assert_eq(store_source_check(st, "udp:127.0.0.1:10", now + 500, &f), 0);
	cr_assert_eq(f.wait_ms, 0);

	/* After the wait one more wrong try doubles it, then the cap holds. */
	cr_assert_eq(redeem(STORE_KEY_CODE, 960, now + 1004, "udp:127.0.0.1:9", &r), ENOENT);
	cr_assert_eq(store_source_check(st, "udp:127.0.0.1:9", now + 1004, &f), 0);
	cr_assert_eq(f.wait_ms, 2000);
	for (i = 0; i < 6; i++)
		cr_assert_eq(store_failure_add(st, NULL, "udp:127.0.0.1:9", now + 1005, &f), 0);
	cr_assert_eq(f.wait_ms, 8000);

	/* The window forgets: a minute later the source may try again, and wins. */
	cr_assert_eq(redeem(STORE_KEY_CODE, 1, now + 61006, "udp:127.0.0.1:9", &r), 0);
	cr_assert_str_eq(r.move_id, "m1");
	finish();
}

#define RACERS 8
#define ROUNDS 50

struct race {
	pthread_barrier_t start;
	pthread_barrier_t end;
	int round;
	int results[RACERS];
	char winner[RACERS][STORE_ID_MAX];
};

struct racer {
	struct race *race;
	int index;
};

static void *racer(void *arg)
{
	struct racer *me = arg;
	struct race *race = me->race;
	struct store *s = NULL;
	char err[256];
	int round, e;

	e = store_open(&s, url, err, sizeof(err));
	for (round = 0; round < ROUNDS; round++) {
		struct store_redeem r = {.key = STORE_KEY_TOKEN};

		pthread_barrier_wait(&race->start);
		hash_of(r.hash, 1000 + round);
		r.now = 5000;
		/* A source per round, so losing does not slow a racer down. */
		snprintf(r.by, sizeof(r.by), "udp:127.0.0.%d:%d", me->index + 1, round);
		race->results[me->index] = e ? e : store_move_redeem(s, &r);
		snprintf(race->winner[me->index], STORE_ID_MAX, "%s", r.move_id);
		pthread_barrier_wait(&race->end);
	}
	store_close(s);
	return NULL;
}

Test(store, raced_by_eight_connections_exactly_one_wins)
{
	struct race race;
	struct racer racers[RACERS];
	pthread_t th[RACERS];
	int round, i;

	add_call("c1", 1000);
	pthread_barrier_init(&race.start, NULL, RACERS + 1);
	pthread_barrier_init(&race.end, NULL, RACERS + 1);
	for (i = 0; i < RACERS; i++) {
		racers[i].race = &race;
		racers[i].index = i;
		cr_assert_eq(pthread_create(&th[i], NULL, racer, &racers[i]), 0);
	}
	for (round = 0; round < ROUNDS; round++) {
		char id[32];
		int wins = 0, losses = 0;

		snprintf(id, sizeof(id), "m%d", round);
		add_move(id, "c1", 1000 + round, 1000, 120000);
		pthread_barrier_wait(&race.start);
		pthread_barrier_wait(&race.end);
		for (i = 0; i < RACERS; i++) {
			if (race.results[i] == 0) {
				wins++;
				cr_assert_str_eq(race.winner[i], id);
			} else if (race.results[i] == ENOENT) {
				losses++;
			}
		}
		cr_assert_eq(wins, 1, "round %d: %d winners", round, wins);
		cr_assert_eq(losses, RACERS - 1, "round %d: %d lost, others failed", round, losses);
	}
	for (i = 0; i < RACERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&race.start);
	pthread_barrier_destroy(&race.end);
	finish();
}

/* The asynchronous path, through a real su_root. */

struct loop {
	su_root_t *root;
	pthread_t thread;
	int done;
	int off_thread; /* callbacks that ran elsewhere than the loop thread */
	int errs[16];
	int order[16]; /* when each slot completed: 0, 1, ... */
	int64_t n[16];
	char text[16][STORE_ID_MAX];
};

struct tag {
	struct loop *loop;
	int slot;
};

static void on_done(struct store_job *job, void *arg)
{
	struct tag *tag = arg;
	struct loop *l = tag->loop;

	if (!pthread_equal(pthread_self(), l->thread))
		l->off_thread++;
	l->errs[tag->slot] = job->err;
	l->n[tag->slot] = (int64_t)job->n;
	switch (job->op) {
	case STORE_OP_CALL_GET:
		snprintf(l->text[tag->slot], STORE_ID_MAX, "%.60s", job->call.far.to_tag);
		break;
	case STORE_OP_MOVE_REDEEM:
		snprintf(l->text[tag->slot], STORE_ID_MAX, "%s", job->redeem.move_id);
		break;
	case STORE_OP_CALL_LIST_LIVE:
		if (job->n)
			snprintf(l->text[tag->slot], STORE_ID_MAX, "%s", job->calls[0].id);
		break;
	case STORE_OP_MOVE_EVENTS:
		if (job->n)
			snprintf(l->text[tag->slot], STORE_ID_MAX, "%s",
			         job->events[job->n - 1].step);
		break;
	case STORE_OP_CALL_LIST_NODE:
	case STORE_OP_NODE_ADOPT:
		if (job->n)
			snprintf(l->text[tag->slot], STORE_ID_MAX, "%.24s|%.16s|%.16s", job->text,
			         job->states[job->n - 1].id,
			         job->states[job->n - 1].dialogs ? job->states[job->n - 1].dialogs
			                                         : "-");
		break;
	case STORE_OP_CALL_TAKE:
		snprintf(l->text[tag->slot], STORE_ID_MAX, "%.16s|%.16s", job->call.id,
		         job->call.dialogs ? job->call.dialogs : "-");
		break;
	default:
		break;
	}
	l->order[tag->slot] = l->done;
	l->done++;
}

/* A root on this thread with n tags pointing at it. */
static void loop_init(struct loop *l, struct tag *tags, int n)
{
	memset(l, 0, sizeof(*l));
	cr_assert_eq(su_init(), 0);
	l->root = su_root_create(NULL);
	cr_assert_not_null(l->root);
	l->thread = pthread_self();
	for (int i = 0; i < n; i++) {
		tags[i].loop = l;
		tags[i].slot = i;
	}
}

/* Runs the root until n completions have arrived, or about 10 s. */
static void loop_wait(struct loop *l, int n)
{
	for (int spins = 0; l->done < n && spins < 1000; spins++)
		su_root_step(l->root, 10);
}

static void loop_fini(struct loop *l)
{
	su_root_destroy(l->root);
	su_deinit();
}

Test(store, async_jobs_complete_on_the_loop_thread_in_order)
{
	struct loop l;
	struct tag tags[8];
	struct store_job job;
	struct store_call got;

	loop_init(&l, tags, 8);
	memset(&job, 0, sizeof(job));
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), ENOTCONN, "not attached yet");
	cr_assert_eq(store_attach(st, l.root), 0);

	/* Fire and forget, then read back: the queue keeps order. */
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_INSERT;
	make_call(&job.call, "c-async", 1000);
	cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_STATE;
	snprintf(job.id, sizeof(job.id), "c-async");
	job.call_state = STORE_CALL_ACTIVE;
	job.at = 1100;
	cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_GET;
	snprintf(job.id, sizeof(job.id), "c-async");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_INSERT;
	make_move(&job.move, "m-async", "c-async", 42, 1000, 120000);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[1]), 0);
	/* Redeems overtake queued jobs, so they go in once the move's insert is done. */
	loop_wait(&l, 2);
	cr_assert_eq(l.done, 2, "the insert did not complete");

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_REDEEM;
	job.redeem.key = STORE_KEY_TOKEN;
	hash_of(job.redeem.hash, 42);
	job.redeem.now = 2000;
	snprintf(job.redeem.by, sizeof(job.redeem.by), "udp:127.0.0.1:5064");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[2]), 0);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[3]), 0);

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_LIST_LIVE;
	cr_assert_eq(store_submit(st, &job, on_done, &tags[4]), 0);

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_EVENTS;
	snprintf(job.id, sizeof(job.id), "m-async");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[5]), 0);

	loop_wait(&l, 6);
	cr_assert_eq(l.done, 6, "only %d of 6 completions arrived", l.done);
	cr_assert_eq(l.off_thread, 0, "a callback ran off the loop thread");
	cr_assert_eq(l.errs[0], 0);
	cr_assert_str_eq(l.text[0], "ft-c-async");
	cr_assert_eq(l.errs[1], 0);
	cr_assert_eq(l.errs[2], 0);
	cr_assert_str_eq(l.text[2], "m-async");
	cr_assert_eq(l.errs[3], ENOENT, "the second redemption loses");
	cr_assert_eq(l.errs[4], 0);
	cr_assert_eq(l.n[4], 1);
	cr_assert_str_eq(l.text[4], "c-async");
	cr_assert_eq(l.n[5], 2);
	cr_assert_str_eq(l.text[5], "redeemed");

	/* A job still queued at close completes, and the fire-and-forget write lands. */
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_STATE;
	snprintf(job.id, sizeof(job.id), "c-async");
	job.call_state = STORE_CALL_ENDED;
	job.at = 3000;
	cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_SOURCE_CHECK;
	snprintf(job.source, sizeof(job.source), "udp:127.0.0.1:5064");
	job.at = 3000;
	cr_assert_eq(store_submit(st, &job, on_done, &tags[6]), 0);
	store_close(st);
	st = NULL;
	cr_assert_eq(l.done, 7);
	cr_assert_eq(l.errs[6], 0);
	{
		char err[256];

		cr_assert_eq(store_open(&st, url, err, sizeof(err)), 0, "%s", err);
		cr_assert_eq(store_call_get(st, "c-async", &got), 0);
		cr_assert_eq(got.state, STORE_CALL_ENDED);
		cr_assert_eq(got.answered_at, 1100);
	}
	loop_fini(&l);
	finish();
}

/* A device waiting on its code is not kept behind a backlog of event lines and state writes. */
Test(store, a_redeem_overtakes_queued_writes)
{
	struct loop l;
	struct tag tags[3];
	struct store_job job;
	int i;

	loop_init(&l, tags, 3);
	cr_assert_eq(store_attach(st, l.root), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_INSERT;
	make_call(&job.call, "c-hot", 1000);
	cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_INSERT;
	make_move(&job.move, "m-hot", "c-hot", 77, 1000, 120000);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);
	loop_wait(&l, 1);
	cr_assert_eq(l.errs[0], 0);

	/* A backlog of writes, a read queued behind it, then the redeem. */
	for (i = 0; i < 400; i++) {
		memset(&job, 0, sizeof(job));
		job.op = STORE_OP_MOVE_EVENT;
		snprintf(job.id, sizeof(job.id), "m-hot");
		snprintf(job.step, sizeof(job.step), "filler");
		job.at = 1500 + i;
		cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	}
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_GET;
	snprintf(job.id, sizeof(job.id), "c-hot");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[1]), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_REDEEM;
	job.redeem.key = STORE_KEY_TOKEN;
	hash_of(job.redeem.hash, 77);
	job.redeem.now = 2000;
	snprintf(job.redeem.by, sizeof(job.redeem.by), "udp:127.0.0.1:5066");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[2]), 0);
	loop_wait(&l, 3);
	cr_assert_eq(l.done, 3, "only %d of 3 completions arrived", l.done);
	cr_assert_eq(l.errs[2], 0, "the redeem failed: %d", l.errs[2]);
	cr_assert_str_eq(l.text[2], "m-hot");
	cr_assert_lt(l.order[2], l.order[1], "the redeem waited behind the queued writes");
	store_close(st);
	st = NULL;
	loop_fini(&l);
	finish();
}

/* ---- the guessing budget (issue: harden what faces the network) ---- */

Test(store, source_key_is_the_address_and_an_ipv6_64)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(5062)};
	struct sockaddr_in b = {.sin_family = AF_INET, .sin_port = htons(40000)};
	struct sockaddr_in6 c = {.sin6_family = AF_INET6, .sin6_port = htons(1)};
	struct sockaddr_in6 d = {.sin6_family = AF_INET6, .sin6_port = htons(2)};
	struct sockaddr_in6 e = {.sin6_family = AF_INET6};
	struct sockaddr_in6 mapped = {.sin6_family = AF_INET6};
	struct sockaddr un = {.sa_family = AF_UNIX};
	char ka[STORE_SOURCE_MAX], kb[STORE_SOURCE_MAX], kc[STORE_SOURCE_MAX], kd[STORE_SOURCE_MAX];
	char ke[STORE_SOURCE_MAX], km[STORE_SOURCE_MAX];

	inet_pton(AF_INET, "192.0.2.7", &a.sin_addr);
	inet_pton(AF_INET, "192.0.2.7", &b.sin_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:aaaa::1", &c.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:2:bbbb:cccc:dddd:eeee", &d.sin6_addr);
	inet_pton(AF_INET6, "2001:db8:1:3::1", &e.sin6_addr);
	inet_pton(AF_INET6, "::ffff:192.0.2.7", &mapped.sin6_addr);
	cr_assert_eq(store_source_key((struct sockaddr *)&a, ka, sizeof(ka)), 0);
	cr_assert_eq(store_source_key((struct sockaddr *)&b, kb, sizeof(kb)), 0);
	cr_assert_str_eq(ka, "ip:192.0.2.7");
	cr_assert_str_eq(ka, kb, "a new port is the same source");
	cr_assert_eq(store_source_key((struct sockaddr *)&c, kc, sizeof(kc)), 0);
	cr_assert_eq(store_source_key((struct sockaddr *)&d, kd, sizeof(kd)), 0);
	cr_assert_eq(store_source_key((struct sockaddr *)&e, ke, sizeof(ke)), 0);
	cr_assert_str_eq(kc, "ip:2001:db8:1:2::/64");
	cr_assert_str_eq(kc, kd, "one /64 is one source");
	cr_assert_str_neq(kc, ke, "another /64 is another source");
	cr_assert_eq(store_source_key((struct sockaddr *)&mapped, km, sizeof(km)), 0);
	cr_assert_str_eq(km, ka, "an IPv4-mapped address is the IPv4 source");
	cr_assert_eq(store_source_key(&un, ka, sizeof(ka)), EAFNOSUPPORT);
	finish();
}

Test(store, numeric_code_is_unique_among_codes_on_offer)
{
	struct store_move m;

	add_call("c1", 1000);
	add_move("m1", "c1", 1, 1000, 120000);
	/* Same digits (same code hash), another move: refused while m1 is on offer. */
	make_move(&m, "m2", "c1", 2, 2000, 120000);
	hash_of(m.code_hash, 1 + 100000);
	cr_assert_eq(store_move_insert(st, &m), EEXIST);
	/* The same digits hashed with an older key (after a rotation) count as the same code. */
	make_move(&m, "m3", "c1", 3, 2000, 120000);
	hash_of(m.code_alt[0], 1 + 100000);
	m.ncode_alt = 1;
	cr_assert_eq(store_move_insert(st, &m), EEXIST);
	/* Other digits are fine; once m1 has expired its digits are free again. */
	make_move(&m, "m4", "c1", 4, 2000, 120000);
	cr_assert_eq(store_move_insert(st, &m), 0);
	make_move(&m, "m5", "c1", 5, 200000, 120000);
	hash_of(m.code_hash, 1 + 100000);
	cr_assert_eq(store_move_insert(st, &m), 0);
	finish();
}

Test(store, numeric_code_redeems_under_an_older_key)
{
	struct store_redeem r;

	add_call("c1", 1000);
	add_move("m1", "c1", 1, 1000, 120000);
	memset(&r, 0, sizeof(r));
	r.key = STORE_KEY_CODE;
	hash_of(r.hash, 777);          /* the digits under the new key: not stored */
	hash_of(r.alt[0], 1 + 100000); /* under the key the move was made with */
	r.nalt = 1;
	r.now = 2000;
	snprintf(r.by, sizeof(r.by), "ip:127.0.0.1");
	cr_assert_eq(store_move_redeem(st, &r), 0);
	cr_assert_str_eq(r.move_id, "m1");
	finish();
}

Test(store, node_wide_budget_pauses_numeric_codes_not_tokens)
{
	struct store_limits lim = {
	    .max_failures = 5, .numeric_budget = 10, .budget_window_ms = 60000};
	struct store_failure f;
	struct store_redeem r;
	char src[32];
	int64_t now = 100000;
	int i;

	store_limits_set(st, &lim);
	add_call("c1", 1000);
	add_move("m1", "c1", 1, now, 600000);
	add_move("m2", "c1", 2, now, 600000);
	/* Ten wrong numeric codes from ten addresses: none of them is locked out itself. */
	for (i = 0; i < 10; i++) {
		snprintf(src, sizeof(src), "ip:127.0.1.%d", i);
		cr_assert_eq(redeem(STORE_KEY_CODE, 500 + i, now + i, src, &r), ENOENT);
	}
	/* Wrong tokens do not spend the numeric budget. */
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 600, now + 10, "ip:127.0.2.1", &r), ENOENT);
	cr_assert_eq(store_guess_check(st, "ip:127.0.3.1", STORE_KEY_CODE, now + 20, &f), 0);
	cr_assert_eq(f.numeric_failures, 10);
	cr_assert_eq(f.budget_wait_ms, 60000 - 20, "until the oldest wrong code is forgotten");
	cr_assert_eq(f.wait_ms, 0, "the new source itself is not locked");
	/* Spent: even the right numeric code from a fresh address waits (EBUSY) ... */
	cr_assert_eq(redeem(STORE_KEY_CODE, 1, now + 30, "ip:127.0.3.1", &r), EBUSY);
	cr_assert_eq(r.wait_ms, 60000 - 30);
	/* ... and counts nothing more; a token still works. */
	cr_assert_eq(store_guess_check(st, "ip:127.0.3.1", STORE_KEY_CODE, now + 31, &f), 0);
	cr_assert_eq(f.numeric_failures, 10);
	cr_assert_eq(f.source_failures, 0);
	cr_assert_eq(redeem(STORE_KEY_TOKEN, 2, now + 40, "ip:127.0.3.1", &r), 0);
	cr_assert_str_eq(r.move_id, "m2");
	/* The window passes: numeric codes work again. */
	cr_assert_eq(redeem(STORE_KEY_CODE, 1, now + 60001, "ip:127.0.3.1", &r), 0);
	cr_assert_str_eq(r.move_id, "m1");
	finish();
}

Test(store, token_miss_counts_against_the_move_it_names)
{
	struct store_redeem r;
	struct store_move got;

	add_call("c1", 1000);
	add_move("m1", "c1", 1, 1000, 120000);
	memset(&r, 0, sizeof(r));
	r.key = STORE_KEY_TOKEN;
	hash_of(r.hash, 999);
	r.now = 2000;
	snprintf(r.by, sizeof(r.by), "ip:127.0.0.1");
	snprintf(r.named, sizeof(r.named), "m1");
	cr_assert_eq(store_move_redeem(st, &r), ENOENT);
	cr_assert_eq(store_move_get(st, "m1", &got), 0);
	cr_assert_eq(got.failures, 1);
	finish();
}

Test(store, purge_prunes_failures_even_when_calls_are_kept)
{
	struct store_failure f;
	struct store_call c;
	int n = -1;

	add_call("c1", 1000);
	cr_assert_eq(store_call_state_set(st, "c1", STORE_CALL_ENDED, 2000), 0);
	cr_assert_eq(store_failure_add(st, NULL, "ip:127.0.0.9", 2000, &f), 0);
	cr_assert_eq(f.source_failures, 1);
	/* retention 0: ended calls stay for ever, but a day later the failure is forgotten. */
	cr_assert_eq(store_purge(st, 2000 + 86400000, 0, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(store_call_get(st, "c1", &c), 0, "the ended call is kept");
	cr_assert_eq(store_source_check(st, "ip:127.0.0.9", 2000, &f), 0);
	cr_assert_eq(f.source_failures, 0, "the failure row is gone");
	finish();
}

Test(store, node_reset_ends_the_calls_a_dead_process_left)
{
	struct store_call c;
	struct store_move m;
	int n = 0;

	make_call(&c, "c1", 1000);
	snprintf(c.node, sizeof(c.node), "sip:127.0.0.1:5060");
	cr_assert_eq(store_call_insert(st, &c), 0);
	make_call(&c, "c2", 1000);
	snprintf(c.node, sizeof(c.node), "sip:127.0.0.1:5062");
	cr_assert_eq(store_call_insert(st, &c), 0);
	make_call(&c, "c3", 1000);
	snprintf(c.node, sizeof(c.node), "sip:127.0.0.1:5060");
	cr_assert_eq(store_call_insert(st, &c), 0);
	cr_assert_eq(store_call_dialogs_set(st, "c3", "{\"near\":1}", 1500), 0);
	make_call(&c, "c4", 5000); /* this run's, in set-up: no state yet */
	snprintf(c.node, sizeof(c.node), "sip:127.0.0.1:5060");
	cr_assert_eq(store_call_insert(st, &c), 0);
	add_move("m1", "c1", 1, 1000, 120000);
	add_move("m3", "c3", 3, 1000, 120000);
	add_move("m4", "c4", 4, 5000, 120000);
	cr_assert_eq(store_node_reset(st, "sip:127.0.0.1:5060", 5000, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_eq(store_call_get(st, "c4", &c), 0);
	cr_assert_neq(c.state, STORE_CALL_ENDED, "a call made since the start is this run's");
	cr_assert_eq(store_move_get(st, "m4", &m), 0);
	cr_assert_eq(m.state, STORE_MOVE_OFFERED, "and so is its move");
	cr_assert_eq(store_call_get(st, "c1", &c), 0);
	cr_assert_eq(c.state, STORE_CALL_ENDED);
	cr_assert_eq(store_call_get(st, "c2", &c), 0);
	cr_assert_neq(c.state, STORE_CALL_ENDED, "another node's call is left alone");
	cr_assert_eq(store_call_get(st, "c3", &c), 0);
	cr_assert_neq(c.state, STORE_CALL_ENDED, "a call with a dialog state is the restart's");
	cr_assert_eq(store_move_get(st, "m1", &m), 0);
	cr_assert_eq(m.state, STORE_MOVE_FAILED);
	cr_assert_eq(store_move_get(st, "m3", &m), 0);
	cr_assert_eq(m.state, STORE_MOVE_OFFERED, "the kept call's move is left alone");
	finish();
}

/* The server's processes (postmaster first, then its children) while it is frozen. */
static pid_t frozen[512];
static int nfrozen;

static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *p;
	int ppid = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return 0;
	/* pid (comm) state ppid: comm may hold anything, so read after its last ')' */
	if (fgets(buf, sizeof(buf), f) && (p = strrchr(buf, ')')))
		sscanf(p + 1, " %*c %d", &ppid);
	fclose(f);
	return (pid_t)ppid;
}

/* Stops the server under test (SIGSTOP): it keeps its sockets but answers nothing. */
static void freeze(void)
{
	PGconn *pg = PQconnectdb(admin);
	PGresult *res;
	pid_t postmaster;
	struct dirent *de;
	DIR *d;

	cr_assert(PQstatus(pg) == CONNECTION_OK, "connect %s: %s", admin, PQerrorMessage(pg));
	res = PQexec(pg, "SELECT pg_backend_pid()");
	cr_assert(PQresultStatus(res) == PGRES_TUPLES_OK, "%s", PQerrorMessage(pg));
	postmaster = parent_of((pid_t)atoi(PQgetvalue(res, 0, 0)));
	PQclear(res);
	PQfinish(pg);
	cr_assert_gt(postmaster, 1);
	/* the postmaster first, so that it forks nothing while its children are stopped */
	cr_assert_eq(kill(postmaster, SIGSTOP), 0, "SIGSTOP %d: %s", (int)postmaster,
	             strerror(errno));
	frozen[nfrozen++] = postmaster;
	d = opendir("/proc");
	cr_assert_not_null(d);
	while ((de = readdir(d)) && nfrozen < (int)(sizeof(frozen) / sizeof(frozen[0]))) {
		pid_t pid = (pid_t)atoi(de->d_name);

		if (pid > 0 && parent_of(pid) == postmaster && kill(pid, SIGSTOP) == 0)
			frozen[nfrozen++] = pid;
	}
	closedir(d);
}

static void thaw(void)
{
	while (nfrozen > 0)
		kill(frozen[--nfrozen], SIGCONT);
}

static void thaw_and_teardown(void)
{
	thaw();
	teardown();
}

/* A server that stops answering fails each operation by its deadline instead of holding the
 * worker for ever; once it answers again, the next operation reconnects and works. */
Test(store, a_stopped_server_times_out_and_the_store_recovers, .fini = thaw_and_teardown)
{
	struct store *other = NULL;
	struct store_call c;
	struct store_job job;
	struct tag tags[2];
	struct loop l;
	char err[256], text[2048];
	int saved;
	size_t n;
	FILE *log;

	if (!pg_url())
		cr_skip_test("PostgreSQL only");
	store_close(st);
	st = NULL;
	cr_assert_eq(store_open_timeout(&st, url, 1000, err, sizeof(err)), 0, "%s", err);
	add_call("c-frozen", 1000);
	loop_init(&l, tags, 2);
	cr_assert_eq(store_attach(st, l.root), 0);

	/* what the store logs goes to a file, to be read back */
	fflush(stderr);
	saved = dup(2);
	log = tmpfile();
	cr_assert(saved >= 0 && log);
	dup2(fileno(log), 2);
	freeze();
	cr_assert_eq(store_call_get(st, "c-frozen", &c), ETIMEDOUT, "a statement");
	cr_assert_eq(store_open_timeout(&other, url, 1000, err, sizeof(err)), ETIMEDOUT,
	             "connecting: %s", err);
	cr_assert_null(other);
	/* on the worker, where it matters: the job completes, with the error */
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_GET;
	snprintf(job.id, sizeof(job.id), "c-frozen");
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);
	loop_wait(&l, 1);
	cr_assert_eq(l.done, 1, "the worker is stuck");
	cr_assert_eq(l.errs[0], ETIMEDOUT, "the worker's job: %d", l.errs[0]);
	thaw();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(log);
	n = fread(text, 1, sizeof(text) - 1, log);
	text[n] = '\0';
	fclose(log);
	cr_assert(strstr(text, "qrxfer: store: query: timed out: no answer from the server within "
	                       "1000 ms"),
	          "the log says: %s", text);

	cr_assert_eq(store_submit(st, &job, on_done, &tags[1]), 0);
	loop_wait(&l, 2);
	cr_assert_eq(l.done, 2);
	cr_assert_eq(l.errs[1], 0, "after the server came back: %s", strerror(l.errs[1]));
	cr_assert_str_eq(l.text[1], "ft-c-frozen");
	cr_assert_eq(store_call_get(st, "c-frozen", &c), 0);
	store_close(st);
	st = NULL;
	loop_fini(&l);
	finish();
}

/* The show page's secret is stored only as its hash, and a move is found by that hash. */
Test(store, move_found_by_its_show_hash)
{
	uint8_t h1[STORE_HASH_LEN], h2[STORE_HASH_LEN];
	struct store_move got;

	add_call("c1", 1000);
	add_move("m1", "c1", 7, 1000, 120000);
	add_move("m2", "c1", 8, 1000, 120000);
	hash_of(h1, 501);
	hash_of(h2, 502);
	cr_assert_eq(store_move_by_show(st, h1, &got), ENOENT, "no move has a show hash yet");
	cr_assert_eq(store_move_show_set(st, "m1", h1), 0);
	cr_assert_eq(store_move_show_set(st, "m2", h2), 0);
	cr_assert_eq(store_move_show_set(st, "nope", h2), ENOENT);
	cr_assert_eq(store_move_by_show(st, h1, &got), 0);
	cr_assert_str_eq(got.id, "m1");
	cr_assert_eq(store_move_by_show(st, h2, &got), 0);
	cr_assert_str_eq(got.id, "m2");
	/* A new secret replaces the old one: the old link finds nothing. */
	hash_of(h1, 503);
	cr_assert_eq(store_move_show_set(st, "m2", h1), 0);
	cr_assert_eq(store_move_by_show(st, h2, &got), ENOENT);
	cr_assert_eq(store_move_by_show(st, h1, &got), 0);
	cr_assert_str_eq(got.id, "m2");
	finish();
}

/* ---- survival: dialog states, leases, adopting and taking calls over ---- */

#define NODE_ME   "sip:10.0.0.1:5060"
#define NODE_DEAD "sip:10.0.0.2:5060"
#define NODE_LIVE "sip:10.0.0.3:5060"

static void add_node_call(const char *id, const char *node, int64_t created, const char *dialogs)
{
	struct store_call c;

	make_call(&c, id, created);
	snprintf(c.node, sizeof(c.node), "%s", node);
	cr_assert_eq(store_call_insert(st, &c), 0);
	if (dialogs)
		cr_assert_eq(store_call_dialogs_set(st, id, dialogs, created), 0);
}

#define SEEN_MAX 256

struct seen {
	int n;
	char ids[SEEN_MAX][STORE_ID_MAX];
	char dialogs[SEEN_MAX][64]; /* "(none)" for NULL */
};

/* Adds the calls read back to seen, and frees them. */
static void see_all(struct seen *s, struct store_live *v, size_t n)
{
	for (size_t i = 0; i < n && s->n < SEEN_MAX; i++, s->n++) {
		snprintf(s->ids[s->n], STORE_ID_MAX, "%s", v[i].id);
		snprintf(s->dialogs[s->n], 64, "%s", v[i].dialogs ? v[i].dialogs : "(none)");
	}
	store_live_free(v, n);
}

/* A node's calls read back, all at once. */
static int list_node(const char *node, struct seen *seen)
{
	struct store_live *v = (struct store_live *)1;
	size_t n = 1;
	int e = store_call_list_node(st, node, 0, "", 0, &v, &n);

	if (e) {
		cr_assert_null(v, "nothing handed over on an error");
		cr_assert_eq(n, 0);
		return e;
	}
	see_all(seen, v, n);
	return 0;
}

static int adopt(struct store *s, const char *me, int64_t now, char *dead, struct seen *seen)
{
	struct store_live *v = NULL;
	size_t n = 0;
	int e = store_node_adopt(s, me, now, dead, STORE_URI_MAX, &v, &n);

	if (e) {
		cr_assert_null(v, "nothing handed over on an error");
		return e;
	}
	see_all(seen, v, n);
	return 0;
}

static int row_text(const char *const *cols, int ncols, void *arg)
{
	snprintf(arg, STORE_URI_MAX, "%s", ncols > 0 && cols[0] ? cols[0] : "(null)");
	return 1;
}

/* calls.node of a call, read with SQL (store_call_get does not read it). */
static const char *node_of(const char *id)
{
	static const char sql[] = "SELECT node FROM calls WHERE call_id = $1";
	static char node[STORE_URI_MAX];
	struct store_val p[] = {t(id)};

	snprintf(node, sizeof(node), "(no row)");
	cr_assert_eq(store_query(st, sql, p, 1, row_text, node, NULL), 0);
	return node;
}

static int64_t lease_of(const char *node)
{
	static const char sql[] = "SELECT lease_until FROM nodes WHERE node = $1";
	struct store_val p[] = {t(node)};
	int64_t v = INT64_MIN;

	cr_assert_eq(store_query(st, sql, p, 1, store_row_int, &v, NULL), 0);
	return v;
}

Test(store, dialogs_are_written_and_read_back_by_node)
{
	struct seen seen = {0};
	struct store_call c;

	add_node_call("c1", NODE_ME, 1000, "{\"v\":1}");
	add_node_call("c2", NODE_ME, 900, "{\"v\":2}");
	add_node_call("c3", NODE_ME, 800, NULL);   /* no state: not listed */
	add_node_call("c4", NODE_LIVE, 700, "{}"); /* another node's */
	add_node_call("c5", NODE_ME, 600, "{\"v\":5}");
	cr_assert_eq(store_call_dialogs_set(st, "c1", "{\"v\":11}", 1100), 0,
	             "the last write wins");
	cr_assert_eq(store_call_state_set(st, "c5", STORE_CALL_ENDED, 1200), 0);
	cr_assert_eq(store_call_dialogs_set(st, "c5", "{}", 1300), ENOENT, "an ended call");
	cr_assert_eq(store_call_dialogs_set(st, "nope", "{}", 1300), ENOENT, "no such call");
	cr_assert_eq(list_node(NODE_ME, &seen), 0);
	cr_assert_eq(seen.n, 2);
	cr_assert_str_eq(seen.ids[0], "c2", "oldest first");
	cr_assert_str_eq(seen.dialogs[0], "{\"v\":2}");
	cr_assert_str_eq(seen.ids[1], "c1");
	cr_assert_str_eq(seen.dialogs[1], "{\"v\":11}");
	cr_assert_str_eq(node_of("c1"), NODE_ME);
	memset(&seen, 0, sizeof(seen));
	cr_assert_eq(list_node("sip:nobody", &seen), 0);
	cr_assert_eq(seen.n, 0);
	/* the other reads are as they were: no dialogs */
	cr_assert_eq(store_call_get(st, "c1", &c), 0);
	cr_assert_null(c.dialogs);
	finish();
}

/* A start reads its calls back a page at a time: every call once, oldest first, ties by id. */
Test(store, list_node_pages_through_every_live_call_once)
{
	static const char *const want[] = {"p1", "p2a", "p2b", "p3", "p5"};
	struct store_live *v = NULL;
	char after[STORE_ID_MAX] = "";
	int64_t at = 0;
	size_t n = 0, got = 0, pages = 0;

	add_node_call("p3", NODE_ME, 3000, "{\"p\":3}");
	add_node_call("p2b", NODE_ME, 2000, "{\"p\":22}");
	add_node_call("p1", NODE_ME, 1000, "{\"p\":1}");
	add_node_call("p2a", NODE_ME, 2000, "{\"p\":21}");
	add_node_call("p4", NODE_ME, 4000, "{\"p\":4}");
	add_node_call("p5", NODE_ME, 5000, "{\"p\":5}");
	add_node_call("q1", NODE_LIVE, 1500, "{}");
	cr_assert_eq(store_call_state_set(st, "p4", STORE_CALL_ENDED, 4500), 0);
	do {
		cr_assert_eq(store_call_list_node(st, NODE_ME, at, after, 2, &v, &n), 0);
		cr_assert_leq(n, 2, "a page holds at most its limit");
		for (size_t i = 0; i < n; i++, got++) {
			cr_assert_lt(got, 5, "a call listed twice");
			cr_assert_str_eq(v[i].id, want[got], "page %zu", pages);
			cr_assert_not_null(v[i].dialogs);
		}
		if (n) {
			at = v[n - 1].created_at;
			snprintf(after, sizeof(after), "%s", v[n - 1].id);
		}
		store_live_free(v, n);
		pages++;
	} while (n == 2 && pages < 10);
	cr_assert_eq(got, 5, "%zu of 5 calls listed", got);
	cr_assert_eq(pages, 3);
	cr_assert_eq(store_call_list_node(st, NODE_ME, 0, NULL, 0, NULL, &n), EINVAL);
	finish();
}

Test(store, beat_creates_and_renews_a_lease)
{
	cr_assert_eq(lease_of(NODE_ME), INT64_MIN, "no row yet");
	cr_assert_eq(store_node_beat(st, NODE_ME, 1000, 3000, 0), 0);
	cr_assert_eq(lease_of(NODE_ME), 4000);
	cr_assert_eq(store_node_beat(st, NODE_ME, 2000, 3000, 1), 0);
	cr_assert_eq(lease_of(NODE_ME), 5000);
	cr_assert_eq(store_node_beat(st, "", 2000, 3000, 0), EINVAL);
	finish();
}

Test(store, adopt_takes_only_an_expired_nodes_live_calls)
{
	struct seen seen = {0};
	char dead[STORE_URI_MAX] = "";

	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), ENOENT, "nothing to adopt");
	cr_assert_eq(store_node_beat(st, NODE_ME, 1000, 1000, 0), 0); /* me expired: not adopted */
	cr_assert_eq(store_node_beat(st, NODE_DEAD, 1000, 1000, 0), 0);
	cr_assert_eq(store_node_beat(st, NODE_LIVE, 1000, 10000, 0), 0);
	add_node_call("m1", NODE_ME, 1000, "{\"m\":1}");
	add_node_call("d1", NODE_DEAD, 1200, "{\"d\":1}");
	add_node_call("d2", NODE_DEAD, 1100, NULL); /* no state: taken, visited without */
	add_node_call("d3", NODE_DEAD, 1000, "{\"d\":3}");
	cr_assert_eq(store_call_state_set(st, "d3", STORE_CALL_ENDED, 1500), 0);
	add_node_call("l1", NODE_LIVE, 1000, "{\"l\":1}");

	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), 0);
	cr_assert_str_eq(dead, NODE_DEAD);
	cr_assert_eq(seen.n, 2);
	cr_assert_str_eq(seen.ids[0], "d2", "oldest first");
	cr_assert_str_eq(seen.dialogs[0], "(none)");
	cr_assert_str_eq(seen.ids[1], "d1");
	cr_assert_str_eq(seen.dialogs[1], "{\"d\":1}");
	cr_assert_str_eq(node_of("d1"), NODE_ME);
	cr_assert_str_eq(node_of("d2"), NODE_ME);
	cr_assert_str_eq(node_of("d3"), NODE_DEAD, "an ended call stays");
	cr_assert_str_eq(node_of("l1"), NODE_LIVE, "a live node keeps its calls");
	cr_assert_str_eq(node_of("m1"), NODE_ME);
	cr_assert_eq(lease_of(NODE_DEAD), -1, "claimed");
	memset(&seen, 0, sizeof(seen));
	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), ENOENT);
	cr_assert_eq(seen.n, 0);
	/* another node adopting finds nothing of mine while I am alive, and no call twice */
	cr_assert_eq(store_node_beat(st, NODE_ME, 5000, 1000, 0), 0);
	cr_assert_eq(adopt(st, NODE_LIVE, 5000, dead, &seen), ENOENT);

	/* the dead node comes back: it renews, and lists only what it still serves */
	add_node_call("d4", NODE_DEAD, 6000, "{\"d\":4}");
	cr_assert_eq(store_node_beat(st, NODE_DEAD, 6000, 1000, 0), 0);
	cr_assert_eq(lease_of(NODE_DEAD), 7000);
	cr_assert_eq(list_node(NODE_DEAD, &seen), 0);
	cr_assert_eq(seen.n, 1);
	cr_assert_str_eq(seen.ids[0], "d4");
	finish();
}

Test(store, adopt_leaves_a_node_that_renewed_and_treats_no_row_as_dead)
{
	struct seen seen = {0};
	char dead[STORE_URI_MAX] = "";

	cr_assert_eq(store_node_beat(st, NODE_DEAD, 1000, 1000, 0), 0);
	add_node_call("d1", NODE_DEAD, 1000, "{}");
	/* it renews before anyone adopts it */
	cr_assert_eq(store_node_beat(st, NODE_DEAD, 4900, 1000, 0), 0);
	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), ENOENT);
	cr_assert_str_eq(node_of("d1"), NODE_DEAD);

	/* a node that never beat (calls from before leases) is dead, unless it is me */
	add_node_call("o1", "sip:10.0.0.9:5060", 1000, "{\"o\":1}");
	add_node_call("o2", NODE_ME, 1000, "{\"o\":2}");
	add_node_call("o3", "", 1000, "{\"o\":3}"); /* nobody's */
	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), 0);
	cr_assert_str_eq(dead, "sip:10.0.0.9:5060");
	cr_assert_eq(seen.n, 1);
	cr_assert_str_eq(seen.ids[0], "o1");
	cr_assert_eq(adopt(st, NODE_ME, 5000, dead, &seen), ENOENT);
	cr_assert_str_eq(node_of("o3"), "");
	finish();
}

/* Two nodes adopting at once, each with its own connection: every call goes to one of them. */
#define ADOPT_NODES 6
#define ADOPT_CALLS 20

struct adopter {
	pthread_barrier_t *start;
	char me[STORE_URI_MAX];
	struct seen seen;
	int err;
};

static void *adopter(void *arg)
{
	struct adopter *a = arg;
	struct store *s = NULL;
	char err[256], dead[STORE_URI_MAX];
	int e, misses = 0;

	e = store_open(&s, url, err, sizeof(err));
	/* an adopter holds a lease: without one, its calls would look dead to the other */
	if (!e)
		e = store_node_beat(s, a->me, 10000, 100000, 0);
	pthread_barrier_wait(a->start);
	/* the other may win a node this one picked: ENOENT, and try again a few times */
	while (!e && misses < 3) {
		e = adopt(s, a->me, 10000, dead, &a->seen);
		if (e == ENOENT) {
			misses++;
			e = 0;
		}
	}
	a->err = e;
	store_close(s);
	return NULL;
}

Test(store, two_adopters_at_once_take_each_call_exactly_once)
{
	static struct adopter ad[2];
	pthread_barrier_t start;
	pthread_t th[2];
	struct seen rest = {0};
	char dead[STORE_URI_MAX], node[64], id[32];
	int i, j, total;

	for (i = 0; i < ADOPT_NODES; i++) {
		snprintf(node, sizeof(node), "sip:10.0.1.%d:5060", i);
		cr_assert_eq(store_node_beat(st, node, 1000, 1000, 0), 0);
		for (j = 0; j < ADOPT_CALLS; j++) {
			snprintf(id, sizeof(id), "n%dc%d", i, j);
			add_node_call(id, node, 1000 + j, "{}");
		}
	}
	pthread_barrier_init(&start, NULL, 3);
	for (i = 0; i < 2; i++) {
		memset(&ad[i], 0, sizeof(ad[i]));
		ad[i].start = &start;
		snprintf(ad[i].me, sizeof(ad[i].me), "sip:10.0.2.%d:5060", i);
		cr_assert_eq(pthread_create(&th[i], NULL, adopter, &ad[i]), 0);
	}
	pthread_barrier_wait(&start);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	cr_assert_eq(ad[0].err, 0, "%s", strerror(ad[0].err));
	cr_assert_eq(ad[1].err, 0, "%s", strerror(ad[1].err));
	/* what both left, if they gave up early */
	cr_assert_eq(store_node_beat(st, "sip:10.0.2.9:5060", 10000, 100000, 0), 0);
	while (adopt(st, "sip:10.0.2.9:5060", 10000, dead, &rest) == 0)
		;
	total = ad[0].seen.n + ad[1].seen.n + rest.n;
	cr_assert_eq(total, ADOPT_NODES * ADOPT_CALLS, "%d + %d + %d calls adopted", ad[0].seen.n,
	             ad[1].seen.n, rest.n);
	for (i = 0; i < 2; i++) {
		for (j = 0; j < ad[i].seen.n; j++) {
			const char *cid = ad[i].seen.ids[j];

			cr_assert_str_eq(node_of(cid), ad[i].me, "%s", cid);
			for (int k = 0; k < ad[!i].seen.n; k++)
				cr_assert_str_neq(cid, ad[!i].seen.ids[k], "%s adopted twice", cid);
		}
	}
	finish();
}

Test(store, take_answers_mine_busy_taken_or_none)
{
	struct store_call c;

	add_node_call("c1", NODE_ME, 1000, "{\"c\":1}");
	add_node_call("c2", NODE_LIVE, 1000, "{\"c\":2}");
	add_node_call("c3", NODE_DEAD, 1000, "{\"c\":3}");
	add_node_call("c4", "sip:10.0.0.9:5060", 1000, NULL); /* no lease row */
	add_node_call("c5", NODE_DEAD, 900, "{}");
	cr_assert_eq(store_call_state_set(st, "c5", STORE_CALL_ENDED, 1000), 0);
	cr_assert_eq(store_node_beat(st, NODE_LIVE, 1000, 10000, 0), 0);
	cr_assert_eq(store_node_beat(st, NODE_DEAD, 1000, 1000, 0), 0);

	cr_assert_eq(store_call_take(st, "near-c1@127.0.0.1", NODE_ME, 5000, &c), 0,
	             "mine, though I have no lease row");
	cr_assert_str_eq(c.id, "c1");
	cr_assert_str_eq(c.dialogs, "{\"c\":1}");
	free(c.dialogs);

	cr_assert_eq(store_call_take(st, "far-c2@127.0.0.1", NODE_ME, 5000, &c), EBUSY);
	cr_assert_str_eq(c.node, NODE_LIVE);
	cr_assert_null(c.dialogs);
	cr_assert_str_eq(node_of("c2"), NODE_LIVE);

	cr_assert_eq(store_call_take(st, "far-c3@127.0.0.1", NODE_ME, 5000, &c), 0);
	cr_assert_str_eq(c.id, "c3");
	cr_assert_str_eq(c.node, NODE_ME);
	cr_assert_str_eq(c.dialogs, "{\"c\":3}");
	free(c.dialogs);
	cr_assert_str_eq(node_of("c3"), NODE_ME);
	/* the node it was taken from, asking for it: it is mine now */
	cr_assert_eq(store_node_beat(st, NODE_ME, 5000, 10000, 0), 0);
	cr_assert_eq(store_call_take(st, "far-c3@127.0.0.1", NODE_DEAD, 5000, &c), EBUSY);
	cr_assert_str_eq(c.node, NODE_ME);

	cr_assert_eq(store_call_take(st, "near-c4@127.0.0.1", NODE_ME, 5000, &c), 0,
	             "no lease row: not alive");
	cr_assert_null(c.dialogs);
	cr_assert_str_eq(node_of("c4"), NODE_ME);

	cr_assert_eq(store_call_take(st, "near-c5@127.0.0.1", NODE_ME, 5000, &c), ENOENT, "ended");
	cr_assert_eq(store_call_take(st, "nope@127.0.0.1", NODE_ME, 5000, &c), ENOENT);
	cr_assert_null(c.dialogs);
	finish();
}

/* The five survival operations through the worker; the store owns and frees the blobs. */
Test(store, survival_jobs_through_the_worker)
{
	struct store_job job;
	struct tag tags[6];
	struct loop l;

	loop_init(&l, tags, 6);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_DIALOGS;
	job.blob = strdup("{}");
	cr_assert_eq(store_submit(st, &job, NULL, NULL), ENOTCONN,
	             "its blob is freed all the same");
	job.blob = strdup("{}");
	cr_assert_eq(store_submit_later(st, &job), ENOTCONN);
	cr_assert_eq(store_attach(st, l.root), 0);

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_INSERT;
	make_call(&job.call, "c1", 1000);
	snprintf(job.call.node, sizeof(job.call.node), NODE_ME);
	job.call.dialogs = (char *)"not the store's to free"; /* out only: ignored */
	cr_assert_eq(store_submit_later(st, &job), 0);
	make_call(&job.call, "c2", 1000);
	snprintf(job.call.node, sizeof(job.call.node), NODE_DEAD);
	cr_assert_eq(store_submit_later(st, &job), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_DIALOGS;
	snprintf(job.id, sizeof(job.id), "c1");
	job.blob = strdup("{\"a\":1}");
	cr_assert_eq(store_submit_later(st, &job), 0);
	snprintf(job.id, sizeof(job.id), "c2");
	job.blob = strdup("{\"a\":2}");
	cr_assert_eq(store_submit_later(st, &job), 0);
	snprintf(job.id, sizeof(job.id), "nope"); /* fails alone, logged; the others land */
	job.blob = strdup("{}");
	cr_assert_eq(store_submit_later(st, &job), 0);

	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_NODE_BEAT;
	snprintf(job.node, sizeof(job.node), NODE_DEAD);
	job.at = 1000;
	job.lease_ms = 1000;
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);
	snprintf(job.node, sizeof(job.node), NODE_ME);
	job.lease_ms = 100000;
	cr_assert_eq(store_submit(st, &job, NULL, NULL), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_LIST_NODE;
	snprintf(job.node, sizeof(job.node), NODE_ME);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[1]), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_NODE_ADOPT;
	snprintf(job.node, sizeof(job.node), NODE_ME);
	job.at = 5000;
	cr_assert_eq(store_submit(st, &job, on_done, &tags[2]), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_TAKE;
	snprintf(job.text, sizeof(job.text), "far-c2@127.0.0.1");
	snprintf(job.node, sizeof(job.node), NODE_ME);
	job.at = 5000;
	cr_assert_eq(store_submit(st, &job, on_done, &tags[3]), 0);
	snprintf(job.node, sizeof(job.node), NODE_DEAD);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[4]), 0);
	loop_wait(&l, 5);
	cr_assert_eq(l.done, 5, "only %d of 5 completions arrived", l.done);
	cr_assert_eq(l.errs[0], 0);
	cr_assert_eq(l.errs[1], 0);
	cr_assert_eq(l.n[1], 1);
	cr_assert_str_eq(l.text[1], "|c1|{\"a\":1}");
	cr_assert_eq(l.errs[2], 0);
	cr_assert_eq(l.n[2], 1);
	cr_assert_str_eq(l.text[2], NODE_DEAD "|c2|{\"a\":2}");
	cr_assert_eq(l.errs[3], 0);
	cr_assert_str_eq(l.text[3], "c2|{\"a\":2}");
	cr_assert_eq(l.errs[4], EBUSY, "the dead node asks for a call I took over");
	store_close(st);
	st = NULL;
	loop_fini(&l);
	finish();
}

/* Writes batched while the store cannot take them land once it can: all of them, in order. */

static sqlite3 *locker; /* SQLite: a second connection holding the write lock */
static int pg_stopped;

static void outage_writes(int from, int to)
{
	struct store_job job;
	char text[32];

	for (int i = from; i < to; i++) {
		memset(&job, 0, sizeof(job));
		job.op = STORE_OP_CALL_INSERT;
		snprintf(text, sizeof(text), "o%d", i);
		make_call(&job.call, text, 1000 + i);
		snprintf(job.call.node, sizeof(job.call.node), NODE_ME);
		cr_assert_eq(store_submit_later(st, &job), 0);
		memset(&job, 0, sizeof(job));
		job.op = STORE_OP_CALL_DIALOGS;
		snprintf(job.id, sizeof(job.id), "o%d", i);
		snprintf(text, sizeof(text), "d%d-1", i);
		job.blob = strdup(text);
		cr_assert_eq(store_submit_later(st, &job), 0);
		snprintf(text, sizeof(text), "d%d-2", i);
		job.blob = strdup(text);
		cr_assert_eq(store_submit_later(st, &job), 0);
		memset(&job, 0, sizeof(job));
		job.op = STORE_OP_CALL_STATE;
		snprintf(job.id, sizeof(job.id), "o%d", i);
		job.call_state = STORE_CALL_ACTIVE;
		job.at = 2000 + i;
		cr_assert_eq(store_submit_later(st, &job), 0);
	}
}

static void pump(struct loop *l, int ms)
{
	for (int i = 0; i < ms / 10; i++)
		su_root_step(l->root, 10);
}

/* Runs the command pg.sh put in the environment variable name, quietly. */
static int pg_ctl(const char *name)
{
	char cmd[2048];

	snprintf(cmd, sizeof(cmd), "%s >/dev/null 2>&1", getenv(name));
	return system(cmd);
}

static void outage_end(void)
{
	if (locker) {
		sqlite3_exec(locker, "ROLLBACK", NULL, NULL, NULL);
		sqlite3_close(locker);
		locker = NULL;
	}
	if (pg_stopped) {
		pg_stopped = pg_ctl("QRXFER_TEST_PG_START") != 0;
		cr_assert_eq(pg_stopped, 0, "cannot start PostgreSQL again");
	}
}

static void outage_fini(void)
{
	outage_end();
	teardown();
}

/* The calls whose rows and states all landed: active, answered at 2000 + i, state "dI-2". */
static int count_landed(void)
{
	struct store_live *v = NULL;
	struct store_call c;
	size_t n = 0;
	int landed = 0;

	cr_assert_eq(store_call_list_node(st, NODE_ME, 0, "", 0, &v, &n), 0);
	for (size_t k = 0; k < n; k++) {
		int i = atoi(v[k].id + 1);
		char want[32];

		snprintf(want, sizeof(want), "d%d-2", i);
		if (v[k].dialogs && strcmp(v[k].dialogs, want) == 0 &&
		    store_call_get(st, v[k].id, &c) == 0 && c.state == STORE_CALL_ACTIVE &&
		    c.answered_at == 2000 + i)
			landed++;
	}
	store_live_free(v, n);
	return landed;
}

#define OUTAGE_CALLS 450

Test(store, batched_writes_survive_an_outage, .fini = outage_fini)
{
	struct store_job job;
	struct tag tags[2];
	struct loop l;
	char err[256], path[300], text[4096];
	int landed = 0, saved, i;
	size_t n;
	FILE *log;

	if (pg_url() && (!getenv("QRXFER_TEST_PG_STOP") || !getenv("QRXFER_TEST_PG_START")))
		cr_skip_test("stops the server: pg.sh runs it alone, after the others");
	store_close(st);
	st = NULL;
	cr_assert_eq(store_open_timeout(&st, url, 1000, err, sizeof(err)), 0, "%s", err);
	loop_init(&l, tags, 2);
	cr_assert_eq(store_attach(st, l.root), 0);
	outage_writes(0, 10);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_LIST_NODE;
	snprintf(job.node, sizeof(job.node), NODE_ME);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);
	loop_wait(&l, 1);
	cr_assert_eq(l.n[0], 10, "before the outage");

	fflush(stderr);
	saved = dup(2);
	log = tmpfile(); /* a sanitizer's report goes there too: a silent FAIL (0.00s) is one */
	cr_assert(saved >= 0 && log);
	dup2(fileno(log), 2);
	if (pg_url()) {
		cr_assert_eq(pg_ctl("QRXFER_TEST_PG_STOP"), 0, "cannot stop PostgreSQL");
		pg_stopped = 1;
	} else {
		snprintf(path, sizeof(path), "%s/store.db", dir);
		cr_assert_eq(sqlite3_open(path, &locker), SQLITE_OK);
		cr_assert_eq(sqlite3_exec(locker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	}
	outage_writes(10, 400);
	store_flush(st);
	/* SQLite waits out its busy timeout (5 s) before it gives up on a batch */
	pump(&l, pg_url() ? 1500 : 6500);
	outage_writes(400, OUTAGE_CALLS); /* behind what is kept */
	store_flush(st);
	pump(&l, 300);
	/* a later job never overtakes them: it fails at once, or runs after all landed */
	cr_assert_eq(store_submit(st, &job, on_done, &tags[1]), 0);
	pump(&l, 300);
	outage_end();
	for (i = 0; i < 300 && (l.done < 2 || landed < OUTAGE_CALLS); i++) {
		pump(&l, 100);
		if (l.done >= 2)
			landed = count_landed();
	}
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	rewind(log);
	n = fread(text, 1, sizeof(text) - 1, log);
	text[n] = '\0';
	fclose(log);
	cr_assert(strstr(text, "unreachable ("), "the log says: %s", text);
	cr_assert_eq(landed, OUTAGE_CALLS, "%d of %d calls landed whole; the log says: %s", landed,
	             OUTAGE_CALLS, text);
	cr_assert(l.errs[1] != 0 || l.n[1] == OUTAGE_CALLS, "a later job overtook them: %d, %zu",
	          l.errs[1], (size_t)l.n[1]);
	store_close(st);
	st = NULL;
	loop_fini(&l);
	finish();
}

/* A batch with a bad row: the good rows land all the same (PostgreSQL aborts the whole
 * transaction on the bad one, and commits it as a rollback). */
Test(store, a_bad_row_in_a_batch_does_not_sink_the_others)
{
	struct store_job job;
	struct store_call c;
	struct tag tags[1];
	struct loop l;

	loop_init(&l, tags, 1);
	cr_assert_eq(store_attach(st, l.root), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_INSERT;
	make_call(&job.call, "c1", 1000);
	cr_assert_eq(store_submit_later(st, &job), 0);
	cr_assert_eq(store_submit_later(st, &job), 0); /* EEXIST */
	make_call(&job.call, "c2", 1000);
	snprintf(job.call.node, sizeof(job.call.node), NODE_ME);
	cr_assert_eq(store_submit_later(st, &job), 0);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_DIALOGS;
	snprintf(job.id, sizeof(job.id), "c2");
	job.blob = strdup("{\"c\":2}");
	cr_assert_eq(store_submit_later(st, &job), 0);
	store_flush(st);
	/* a second batch whose last row is the bad one */
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_INSERT;
	make_call(&job.call, "c3", 1000);
	cr_assert_eq(store_submit_later(st, &job), 0);
	make_call(&job.call, "c1", 1000);
	cr_assert_eq(store_submit_later(st, &job), 0);
	store_flush(st);
	/* only single-statement row writes go in batches: a move insert has its own transaction */
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_MOVE_INSERT;
	make_move(&job.move, "m1", "c1", 9, 1000, 120000);
	cr_assert_eq(store_submit_later(st, &job), EINVAL);
	memset(&job, 0, sizeof(job));
	job.op = STORE_OP_CALL_LIST_NODE;
	snprintf(job.node, sizeof(job.node), NODE_ME);
	cr_assert_eq(store_submit(st, &job, on_done, &tags[0]), 0);
	loop_wait(&l, 1);
	cr_assert_eq(l.errs[0], 0);
	cr_assert_eq(l.n[0], 1, "c2 with its dialogs");
	cr_assert_str_eq(l.text[0], "|c2|{\"c\":2}");
	cr_assert_eq(store_call_get(st, "c1", &c), 0);
	cr_assert_eq(store_call_get(st, "c3", &c), 0);
	store_close(st);
	st = NULL;
	loop_fini(&l);
	finish();
}

/* A transaction a statement failed in does not report a commit it did not make. */
Test(store, a_spoilt_transaction_does_not_claim_it_committed)
{
	struct store_call c;
	int e;

	add_call("c1", 1000);
	cr_assert_eq(st->ops->begin(st->conn), 0);
	make_call(&c, "c2", 1000);
	cr_assert_eq(store_call_insert(st, &c), 0);
	make_call(&c, "c1", 1000);
	cr_assert_eq(store_call_insert(st, &c), EEXIST);
	e = store_tx_end(st, 0);
	if (pg_url())
		cr_assert_neq(e, 0, "PostgreSQL rolled it back");
	cr_assert_eq(store_call_get(st, "c2", &c), e ? ENOENT : 0, "commit said %d", e);
	finish();
}

Test(store, context_notes_secret_and_resume_codes)
{
	struct store_context *ctx = calloc(1, sizeof(*ctx)), *got = calloc(1, sizeof(*got));
	uint8_t secret[STORE_HASH_LEN], other[STORE_HASH_LEN], tok[STORE_HASH_LEN], zero[32] = {0};
	char call_id[STORE_ID_MAX], far[STORE_URI_MAX], longnote[600];
	int64_t wait = 0;

	hash_of(secret, 71);
	hash_of(other, 72);
	hash_of(tok, 73);
	add_call("c-ctx", 1000);
	add_move("m-ctx", "c-ctx", 74, 1000, 120000);
	snprintf(ctx->call_id, sizeof(ctx->call_id), "c-ctx");
	snprintf(ctx->far_identity, sizeof(ctx->far_identity), "\"Carol\" <sip:carol@x>");
	snprintf(ctx->far_uri, sizeof(ctx->far_uri), "sip:carol@x");
	ctx->started_at = 1000;
	cr_assert_eq(store_note_add(st, "c-ctx", 1, "before", 4), ENOENT);
	cr_assert_eq(store_context_put(st, ctx, secret), 0);
	/* Written again without a secret: the page's secret stays. */
	cr_assert_eq(store_context_put(st, ctx, zero), 0);
	memset(longnote, 'n', sizeof(longnote) - 1);
	longnote[sizeof(longnote) - 1] = '\0';
	cr_assert_eq(store_note_add(st, "c-ctx", 1100, "<b>one</b>", 2), 0);
	cr_assert_eq(store_note_add(st, "c-ctx", 1150, longnote, 2), EMSGSIZE);
	longnote[STORE_NOTE_MAX - 1] = '\0';
	cr_assert_eq(store_note_add(st, "c-ctx", 1160, "  \r\n ", 2), EINVAL);
	cr_assert_eq(store_note_add(st, "c-ctx", 1170, "bad \xc0\xaf utf-8", 2), EINVAL);
	cr_assert_eq(store_note_add(st, "c-ctx", 1200, longnote, 2), 0);
	cr_assert_eq(store_note_add(st, "c-ctx", 1300, "three", 2), ENOSPC);
	cr_assert_eq(store_context_get(st, NULL, other, got), ENOENT);
	cr_assert_eq(store_context_get(st, NULL, zero, got), ENOENT);
	cr_assert_eq(store_context_get(st, NULL, secret, got), 0);
	cr_assert_str_eq(got->call_id, "c-ctx");
	cr_assert_str_eq(got->far_identity, "\"Carol\" <sip:carol@x>");
	cr_assert_eq(got->nnotes, 2);
	cr_assert_str_eq(got->notes[0].text, "<b>one</b>");
	{
		char clean[STORE_NOTE_MAX];
		cr_assert_eq(store_note_clean(" a\tb\x01"
		                              "c ",
		                              7, clean, sizeof(clean)),
		             0);
		cr_assert_str_eq(clean, "a b c");
		cr_assert_eq(store_note_clean("caf\xc3\xa9", 5, clean, sizeof(clean)), 0);
		cr_assert_str_eq(clean, "caf\xc3\xa9");
	}
	cr_assert_eq(strlen(got->notes[1].text), STORE_NOTE_MAX - 1);
	cr_assert_eq(got->nmoves, 1);
	cr_assert_str_eq(got->moves[0].id, "m-ctx");
	cr_assert_eq(store_context_end(st, "c-ctx", 5000), 0);
	int ge = store_context_get(st, "c-ctx", NULL, got);
	cr_assert_eq(ge, 0, "get by id: %d", ge);
	cr_assert_eq(got->ended_at, 5000);

	cr_assert_eq(store_resume_insert(st, tok, "c-ctx", "sip:carol@x", 10000), 0);
	cr_assert_eq(store_resume_take(st, tok, "ip:192.0.2.1", 10001, call_id, far, &wait), ENOENT,
	             "expired");
	hash_of(tok, 75);
	cr_assert_eq(store_resume_insert(st, tok, "c-ctx", "sip:carol@x", 20000), 0);
	cr_assert_eq(store_resume_take(st, tok, "ip:192.0.2.2", 10001, call_id, far, &wait), 0);
	cr_assert_str_eq(call_id, "c-ctx");
	cr_assert_str_eq(far, "sip:carol@x");
	cr_assert_eq(store_resume_take(st, tok, "ip:192.0.2.2", 10002, call_id, far, &wait), ENOENT,
	             "reused");
	/* Wrong codes count as guesses: after max_failures the source waits, right code or not. */
	for (int i = 0; i < 5; i++)
		cr_assert_eq(
		    store_resume_take(st, other, "ip:192.0.2.3", 10010 + i, call_id, far, &wait),
		    ENOENT);
	hash_of(tok, 76);
	cr_assert_eq(store_resume_insert(st, tok, "c-ctx", "sip:carol@x", 90000), 0);
	cr_assert_eq(store_resume_take(st, tok, "ip:192.0.2.3", 10020, call_id, far, &wait),
	             EAGAIN);
	cr_assert_gt(wait, 0);

	/* The purge: an ended context (and its notes) after the retention, expired codes at once.
	 */
	cr_assert_eq(store_purge(st, 6000, 10000, NULL), 0);
	cr_assert_eq(store_context_get(st, "c-ctx", NULL, got), 0, "kept within the retention");
	cr_assert_eq(store_purge(st, 100000, 10000, NULL), 0);
	cr_assert_eq(store_context_get(st, "c-ctx", NULL, got), ENOENT);
	/* Asked as of before it expired, it would work: it is gone. */
	cr_assert_eq(store_resume_take(st, tok, "ip:192.0.2.9", 10030, call_id, far, &wait), ENOENT,
	             "purged once expired");
	free(ctx);
	free(got);
}

static struct store_binding binding(const char *aor, const char *contact, const char *flow,
                                    int64_t updated, int64_t expires)
{
	struct store_binding b;

	memset(&b, 0, sizeof(b));
	snprintf(b.aor, sizeof(b.aor), "%s", aor);
	snprintf(b.contact, sizeof(b.contact), "%s", contact);
	snprintf(b.flow, sizeof(b.flow), "%s", flow);
	b.updated_at = updated;
	b.expires_at = expires;
	return b;
}

/* Own devices: a binding is found by its flow while live, listed newest first, refreshed in
 * place, removed by an expiry in the past, and purged once expired. */
Test(store, bindings_found_by_flow_listed_refreshed_removed_and_purged)
{
	const int64_t now = 1700000000000LL;
	struct store_binding b1 = binding("alice@example.net", "sip:alice@192.0.2.1:5060",
	                                  "udp:192.0.2.1:5060", now, now + 60000);
	struct store_binding b2 = binding("alice@example.net", "sip:alice@192.0.2.2:5060",
	                                  "udp:192.0.2.2:5060", now + 1, now + 1000);
	struct store_binding got, *v = NULL, bad = binding("", "sip:x@h", "udp:h:1", now, now + 1);
	size_t n = 0;

	cr_assert_eq(store_binding_put(st, &b1, now), 0);
	cr_assert_eq(store_binding_put(st, &b2, now), 0);
	cr_assert_eq(store_binding_put(st, &bad, now), EINVAL, "an empty AOR");
	cr_assert_eq(store_binding_by_flow(st, "udp:192.0.2.1:5060", now, &got), 0);
	cr_assert_str_eq(got.aor, "alice@example.net");
	cr_assert_str_eq(got.contact, "sip:alice@192.0.2.1:5060");
	cr_assert_eq(got.expires_at, now + 60000);
	cr_assert_eq(store_binding_by_flow(st, "udp:192.0.2.1:5061", now, &got), ENOENT,
	             "another port is another flow");
	cr_assert_eq(store_binding_list(st, "alice@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[0].contact, "sip:alice@192.0.2.2:5060", "newest first");
	free(v);
	/* b2 expired: not found, not listed */
	cr_assert_eq(store_binding_by_flow(st, "udp:192.0.2.2:5060", now + 2000, &got), ENOENT);
	cr_assert_eq(store_binding_list(st, "alice@example.net", now + 2000, &v, &n), 0);
	cr_assert_eq(n, 1);
	free(v);
	/* a refresh from another flow replaces the flow */
	b1.updated_at = now + 10;
	snprintf(b1.flow, sizeof(b1.flow), "tcp:192.0.2.1:40312");
	cr_assert_eq(store_binding_put(st, &b1, now + 10), 0);
	cr_assert_eq(store_binding_by_flow(st, "udp:192.0.2.1:5060", now + 10, &got), ENOENT);
	cr_assert_eq(store_binding_by_flow(st, "tcp:192.0.2.1:40312", now + 10, &got), 0);
	/* an expiry in the past removes it (a REGISTER with Expires: 0) */
	b1.expires_at = 0;
	cr_assert_eq(store_binding_put(st, &b1, now + 20), 0);
	cr_assert_eq(store_binding_by_flow(st, "tcp:192.0.2.1:40312", now, &got), ENOENT);
	/* the purge drops the expired b2: at `now` it would still be live */
	cr_assert_eq(store_purge(st, now + 2000, 0, NULL), 0);
	cr_assert_eq(store_binding_list(st, "alice@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_null(v);
	finish();
}

Test(store, resume_code_digits_link_and_device)
{
	uint8_t tok[STORE_HASH_LEN], dig[2][STORE_HASH_LEN], wrong[1][STORE_HASH_LEN];
	char call_id[STORE_ID_MAX], far[STORE_URI_MAX], device[STORE_URI_MAX];
	int64_t wait = 0;
	int kept = 0;

	hash_of(tok, 81);
	hash_of(dig[0], 82); /* under an older key: not this one */
	hash_of(dig[1], 83); /* the digits' HMAC under the key that made them */
	hash_of(wrong[0], 84);
	cr_assert_eq(store_resume_keep(st, tok, dig[1], "c-r", "sip:carol@x", "sip:bob@192.0.2.5",
	                               50000, &kept),
	             0);
	cr_assert_eq(kept, 1);
	/* A peek (the link's page) reads the code and names the device, using nothing. */
	cr_assert_eq(store_resume_use(st, (const uint8_t(*)[STORE_HASH_LEN]) & tok, 1,
	                              STORE_KEY_TOKEN, 1, "ip:192.0.2.1", 1000, call_id, far,
	                              device, &wait),
	             0);
	cr_assert_str_eq(device, "sip:bob@192.0.2.5");
	/* By its digits (tried under every key): the code is used, in both forms. */
	cr_assert_eq(store_resume_use(st, dig, 2, STORE_KEY_CODE, 0, "ip:192.0.2.1", 1001, call_id,
	                              far, device, &wait),
	             0);
	cr_assert_str_eq(call_id, "c-r");
	cr_assert_str_eq(far, "sip:carol@x");
	cr_assert_eq(store_resume_use(st, (const uint8_t(*)[STORE_HASH_LEN]) & tok, 1,
	                              STORE_KEY_TOKEN, 0, "ip:192.0.2.1", 1002, call_id, far,
	                              device, &wait),
	             ENOENT, "its token was used with its digits");
	/* Two codes cannot share the digits' hash: the second keeps its token only. */
	hash_of(tok, 85);
	cr_assert_eq(store_resume_keep(st, tok, dig[1], "c-r2", "sip:dave@x", "", 50000, &kept), 0);
	cr_assert_eq(kept, 0);
	/* Wrong digits are wrong numeric codes: they spend the node-wide budget. */
	struct store_limits lim = {
	    .max_failures = 5, .numeric_budget = 3, .budget_window_ms = 60000};
	const char *from[] = {"ip:192.0.2.7", "ip:192.0.2.8", "ip:192.0.2.9", "ip:192.0.2.10"};

	store_limits_set(st, &lim);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(store_resume_use(st, wrong, 1, STORE_KEY_CODE, 0, from[i], 2000 + i,
		                              call_id, far, NULL, &wait),
		             i < 3 ? ENOENT : EBUSY, "wrong digits %d", i);
	cr_assert_gt(wait, 0);
}

Test(store, context_bridge_legs_kept)
{
	struct store_context *ctx = calloc(1, sizeof(*ctx));
	char *text = NULL;

	cr_assert_eq(store_context_bridge_set(st, "c-none", "[]"), ENOENT);
	snprintf(ctx->call_id, sizeof(ctx->call_id), "%s", "c-br");
	cr_assert_eq(store_context_put(st, ctx, NULL), 0);
	cr_assert_eq(store_context_bridge_get(st, "c-br", &text), 0);
	cr_assert_str_eq(text, "", "no bridge legs yet");
	free(text);
	cr_assert_eq(store_context_bridge_set(st, "c-br", "[{\"party\":0}]"), 0);
	/* The context written again (a restart's new page secret) keeps the legs. */
	cr_assert_eq(store_context_put(st, ctx, NULL), 0);
	cr_assert_eq(store_context_bridge_get(st, "c-br", &text), 0);
	cr_assert_str_eq(text, "[{\"party\":0}]");
	free(text);
	cr_assert_eq(store_context_bridge_get(st, "c-none", &text), ENOENT);
	free(ctx);
}

static void add_call_at(const char *id, const char *node, const char *aor, int64_t created)
{
	struct store_call c;

	make_call(&c, id, created);
	c.state = STORE_CALL_ACTIVE;
	snprintf(c.node, sizeof(c.node), "%s", node);
	cr_assert_eq(store_call_insert(st, &c), 0);
	if (aor)
		cr_assert_eq(store_call_aor_set(st, id, aor), 0);
}

/* Own devices across nodes: a pull finds its AOR's newest live call and the node serving it;
 * ended calls, other AORs and calls of a node whose lease ran out do not count. */
Test(store, newest_live_call_of_an_aor_and_its_node)
{
	struct store_call got;

	cr_assert_eq(store_node_beat(st, "sip:127.0.0.1:5061", 1000, 100000, 0), 0);
	cr_assert_eq(store_node_beat(st, "sip:127.0.0.1:5062", 1000, 1000, 0),
	             0); /* dies at 2000 */
	add_call_at("c-old", "sip:127.0.0.1:5060", "alice@example.net", 100);
	add_call_at("c-new", "sip:127.0.0.1:5061", "alice@example.net", 200);
	add_call_at("c-bob", "sip:127.0.0.1:5061", "bob@example.net", 300);
	add_call_at("c-dead", "sip:127.0.0.1:5062", "alice@example.net", 400);
	add_call_at("c-none", "sip:127.0.0.1:5061", NULL, 500);
	cr_assert_eq(store_call_aor_set(st, "c-nosuch", "alice@example.net"), ENOENT);
	cr_assert_eq(store_call_by_aor(st, "alice@example.net", "sip:127.0.0.1:5060", 1500, &got),
	             0);
	cr_assert_str_eq(got.id, "c-dead", "newest, its node's lease still holds at 1500");
	cr_assert_eq(store_call_by_aor(st, "alice@example.net", "sip:127.0.0.1:5060", 5000, &got),
	             0);
	cr_assert_str_eq(got.id, "c-new", "a dead node's call is passed over");
	cr_assert_str_eq(got.node, "sip:127.0.0.1:5061");
	cr_assert_eq(store_call_state_set(st, "c-new", STORE_CALL_ENDED, 6000), 0);
	cr_assert_eq(store_call_by_aor(st, "alice@example.net", "sip:127.0.0.1:5060", 7000, &got),
	             0);
	cr_assert_str_eq(got.id, "c-old", "an ended call is passed over; me has no lease row");
	cr_assert_str_eq(got.node, "sip:127.0.0.1:5060");
	cr_assert_eq(store_call_by_aor(st, "carol@example.net", "sip:127.0.0.1:5060", 7000, &got),
	             ENOENT);
	cr_assert_eq(store_call_by_aor(st, "", "sip:127.0.0.1:5060", 7000, &got), EINVAL);
	/* a call whose near party changed (a move) is the new AOR's */
	cr_assert_eq(store_call_aor_set(st, "c-old", "bob@example.net"), 0);
	cr_assert_eq(store_call_by_aor(st, "alice@example.net", "sip:127.0.0.1:5060", 7000, &got),
	             ENOENT);
	finish();
}

static struct store_hint hint(const char *aor, const char *device, int64_t seen_s,
                              int64_t expires_ms)
{
	struct store_hint h;

	memset(&h, 0, sizeof(h));
	snprintf(h.aor, sizeof(h.aor), "%s", aor);
	snprintf(h.device, sizeof(h.device), "%s", device);
	h.seen_at = seen_s;
	h.expires_at = expires_ms;
	return h;
}

/* Proximity hints in the store: listed newest first per AOR while they count, a newer one for
 * the same device replaces it, bad ones are refused, expired ones purged. */
Test(store, hints_listed_while_they_count_replaced_and_purged)
{
	struct store_hint h1 = hint("alice@example.net", "sip:alice@192.0.2.1:5060", 1000, 1300000);
	struct store_hint h2 = hint("alice@example.net", "udp:192.0.2.2:5060", 1100, 1400000);
	struct store_hint h3 = hint("bob@example.net", "udp:192.0.2.3:5060", 1200, 1500000);
	struct store_hint bad = hint("", "udp:192.0.2.3:5060", 1200, 1500000), *v = NULL;
	size_t n = 0;

	cr_assert_eq(store_hint_put(st, &h1), 0);
	cr_assert_eq(store_hint_put(st, &h2), 0);
	cr_assert_eq(store_hint_put(st, &h3), 0);
	cr_assert_eq(store_hint_put(st, &bad), EINVAL, "an empty AOR");
	bad = hint("alice@example.net", "", 1200, 1500000);
	cr_assert_eq(store_hint_put(st, &bad), EINVAL, "an empty device");
	cr_assert_eq(store_hint_list(st, "alice@example.net", 1200000, &v, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[0].device, "udp:192.0.2.2:5060", "newest first");
	cr_assert_eq(v[0].seen_at, 1100);
	cr_assert_eq(v[1].expires_at, 1300000);
	free(v);
	/* seen again: the newer one replaces it */
	h1.seen_at = 1250;
	h1.expires_at = 1550000;
	cr_assert_eq(store_hint_put(st, &h1), 0);
	cr_assert_eq(store_hint_list(st, "alice@example.net", 1450000, &v, &n), 0);
	cr_assert_eq(n, 1, "h2 expired at 1400000; h1 counts again");
	cr_assert_eq(v[0].seen_at, 1250);
	free(v);
	/* the purge drops what expired: asked as of before, they would count */
	cr_assert_eq(store_purge(st, 1510000, 0, NULL), 0);
	cr_assert_eq(store_hint_list(st, "alice@example.net", 0, &v, &n), 0);
	cr_assert_eq(n, 1, "h2 purged, h1 (1550000) kept");
	free(v);
	cr_assert_eq(store_hint_list(st, "bob@example.net", 0, &v, &n), 0);
	cr_assert_eq(n, 0, "h3 purged");
	cr_assert_null(v);
	finish();
}

/* Who owns a call: every live AOR on a flow (a phone with two accounts), newest first; an
 * unknown flow is ENOENT. */
Test(store, bindings_on_flow_lists_every_aor_of_the_flow)
{
	const int64_t now = 1700000000000LL;
	struct store_binding a = binding("alice@example.net", "sip:alice@192.0.2.1:5060",
	                                 "udp:192.0.2.1:5060", now, now + 60000);
	struct store_binding b = binding("bob@example.net", "sip:bob@192.0.2.1:5060",
	                                 "udp:192.0.2.1:5060", now + 1, now + 60000);
	struct store_binding c = binding("carol@example.net", "sip:carol@192.0.2.2:5060",
	                                 "udp:192.0.2.2:5060", now, now + 60000);
	struct store_binding *v = NULL;
	size_t n = 0;

	cr_assert_eq(store_binding_put(st, &a, now), 0);
	cr_assert_eq(store_binding_put(st, &b, now), 0);
	cr_assert_eq(store_binding_put(st, &c, now), 0);
	cr_assert_eq(store_binding_on_flow(st, "udp:192.0.2.1:5060", NULL, now, &v, &n), 0);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(v[0].aor, "bob@example.net", "newest first");
	cr_assert_str_eq(v[1].aor, "alice@example.net");
	free(v);
	/* the AOR claimed: its binding alone, though not the newest */
	cr_assert_eq(
	    store_binding_on_flow(st, "udp:192.0.2.1:5060", "alice@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(v[0].aor, "alice@example.net");
	free(v);
	/* an AOR with no binding there: every AOR of the flow, to pick from */
	cr_assert_eq(
	    store_binding_on_flow(st, "udp:192.0.2.1:5060", "carol@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 2);
	free(v);
	cr_assert_eq(
	    store_binding_on_flow(st, "udp:192.0.2.9:5060", "alice@example.net", now, &v, &n),
	    ENOENT);
	cr_assert_null(v);
	cr_assert_eq(store_binding_on_flow(st, "udp:192.0.2.1:5060", "", now + 60000, &v, &n),
	             ENOENT, "expired bindings own nothing");
	cr_assert_eq(store_binding_on_flow(st, "", NULL, now, &v, &n), EINVAL);
	finish();
}

/* A registrar's 2xx lists what remains: the AOR's bindings on that flow it does not list go
 * (per-contact expires=0), those on other flows stay; with no flow ("Contact: *") every
 * binding of the AOR not listed goes, and other AORs are untouched. */
Test(store, bindings_sync_removes_what_the_registrar_no_longer_lists)
{
	const int64_t now = 1700000000000LL;
	struct store_binding c1 = binding("frank@example.net", "sip:frank@192.0.2.1:5060;line=1",
	                                  "udp:192.0.2.1:5060", now, now + 60000);
	struct store_binding c2 = binding("frank@example.net", "sip:frank@192.0.2.1:5060;line=2",
	                                  "udp:192.0.2.1:5060", now, now + 60000);
	struct store_binding g = binding("frank@example.net", "sip:frank@192.0.2.2:5060",
	                                 "udp:192.0.2.2:5060", now, now + 60000);
	struct store_binding other = binding("alice@example.net", "sip:alice@192.0.2.1:5060",
	                                     "udp:192.0.2.1:5060", now, now + 60000);
	struct store_binding *v = NULL;
	size_t n = 0, removed = 9;

	cr_assert_eq(store_binding_put(st, &c1, now), 0);
	cr_assert_eq(store_binding_put(st, &c2, now), 0);
	cr_assert_eq(store_binding_put(st, &g, now), 0);
	cr_assert_eq(store_binding_put(st, &other, now), 0);
	/* the 2xx to c1;expires=0 lists c2 and g */
	cr_assert_eq(store_binding_sync(
	                 st, "frank@example.net", "udp:192.0.2.1:5060",
	                 "sip:frank@192.0.2.1:5060;line=2\nsip:frank@192.0.2.2:5060\n", &removed),
	             0);
	cr_assert_eq(removed, 1);
	cr_assert_eq(store_binding_list(st, "frank@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 2);
	for (size_t i = 0; i < n; i++)
		cr_assert_str_neq(v[i].contact, "sip:frank@192.0.2.1:5060;line=1");
	free(v);
	/* a 2xx listing nothing, for one flow, leaves the other flow's binding */
	cr_assert_eq(
	    store_binding_sync(st, "frank@example.net", "udp:192.0.2.1:5060", NULL, &removed), 0);
	cr_assert_eq(removed, 1);
	cr_assert_eq(store_binding_list(st, "frank@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 1);
	cr_assert_str_eq(v[0].contact, "sip:frank@192.0.2.2:5060");
	free(v);
	/* "Contact: *": every flow of the AOR; alice's binding on the same flow stays */
	cr_assert_eq(store_binding_sync(st, "frank@example.net", NULL, "", &removed), 0);
	cr_assert_eq(removed, 1);
	cr_assert_eq(store_binding_list(st, "frank@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(store_binding_list(st, "alice@example.net", now, &v, &n), 0);
	cr_assert_eq(n, 1);
	free(v);
	cr_assert_eq(store_binding_sync(st, "", NULL, NULL, &removed), EINVAL);
	finish();
}
