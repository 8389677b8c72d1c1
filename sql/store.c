/* The store's operations, written once over a backend's small table, and its worker thread. */
#include <errno.h>
#include <pthread.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql/store.h"
#include "sql/store_int.h"
#include "util/log.h"
#include "util/queue.h"

/* A queued job and where its completion goes. Owner: the queue, then node_work or node_done. */
struct node {
	struct store *s;
	store_done_h *done;
	void *arg;
	struct store_job job;
};

struct store {
	const struct store_ops *ops;
	struct store_conn *conn;
	pthread_mutex_t lock; /* one user of conn at a time: the worker, the loop or a CLI */
	struct store_limits lim;
	struct queue *q; /* the worker, once attached */
};

static const char *const call_states[] = {"setup", "early", "active", "ended"};
static const char *const move_states[] = {"offered", "redeemed", "confirming",
                                          "moving",  "done",     "failed"};

#define NCALL_STATES (int)(sizeof(call_states) / sizeof(call_states[0]))
#define NMOVE_STATES (int)(sizeof(move_states) / sizeof(move_states[0]))

static const struct store_limits default_limits = {
    .max_failures = 5,
    .window_ms = 600000,
    .slow_base_ms = 60000,
    .slow_max_ms = 900000,
    .numeric_budget = 30,
    .budget_window_ms = 60000,
};

#define CALL_COLS                                                                                  \
	"call_id, near_call_id, near_from_tag, near_to_tag, near_uri, far_call_id, far_from_tag, " \
	"far_to_tag, far_uri, state, created_at, answered_at, ended_at"
#define MOVE_COLS                                                                                  \
	"move_id, call_id, token_hash, code_hash, state, created_at, expires_at, redeemed_at, "    \
	"updated_at, finished_at, redeemed_by, reason, failures, locked"

static struct store_val t(const char *text)
{
	struct store_val v = {STORE_TEXT, text, 0};

	return v;
}

static struct store_val i64(int64_t i)
{
	struct store_val v = {STORE_INT, NULL, i};

	return v;
}

static struct store_val null(void)
{
	struct store_val v = {STORE_NULL, NULL, 0};

	return v;
}

static void copy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strlen(src) : 0;

	if (len >= n)
		len = n - 1;
	memcpy(dst, src ? src : "", len);
	dst[len] = '\0';
}

static int64_t num(const char *text)
{
	return text ? strtoll(text, NULL, 10) : 0;
}

/* A caller's fixed buffer holds a terminated string. */
static int bounded(const char *text, size_t n)
{
	return text && strnlen(text, n) < n;
}

static void hex_encode(char out[2 * STORE_HASH_LEN + 1], const uint8_t in[STORE_HASH_LEN])
{
	static const char digits[] = "0123456789abcdef";
	int i;

	for (i = 0; i < STORE_HASH_LEN; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * STORE_HASH_LEN] = '\0';
}

static int nibble(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return 0;
}

static void hex_decode(uint8_t out[STORE_HASH_LEN], const char *in)
{
	int i;

	memset(out, 0, STORE_HASH_LEN);
	if (!in || strlen(in) != 2 * STORE_HASH_LEN)
		return;
	for (i = 0; i < STORE_HASH_LEN; i++)
		out[i] = (uint8_t)(nibble(in[2 * i]) << 4 | nibble(in[2 * i + 1]));
}

static int call_state_parse(const char *name)
{
	int i;

	for (i = 0; name && i < NCALL_STATES; i++) {
		if (strcmp(name, call_states[i]) == 0)
			return i;
	}
	return STORE_CALL_ENDED;
}

static int move_state_parse(const char *name)
{
	int i;

	for (i = 0; name && i < NMOVE_STATES; i++) {
		if (strcmp(name, move_states[i]) == 0)
			return i;
	}
	return STORE_MOVE_FAILED;
}

const char *store_call_state_name(enum store_call_state st)
{
	return (int)st >= 0 && (int)st < NCALL_STATES ? call_states[st] : "unknown";
}

const char *store_move_state_name(enum store_move_state st)
{
	return (int)st >= 0 && (int)st < NMOVE_STATES ? move_states[st] : "unknown";
}

int64_t store_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *store_backend(const struct store *s)
{
	return s->ops->name;
}

static int query(struct store *s, const char *sql, const struct store_val *p, int n,
                 store_row_h *row, void *arg, int *changesp)
{
	return s->ops->query(s->conn, sql, p, n, row, arg, changesp);
}

/* Ends a transaction: commit if all went well, else roll back and keep the first error. */
static int tx_end(struct store *s, int e)
{
	if (e) {
		s->ops->rollback(s->conn);
		return e;
	}
	e = s->ops->commit(s->conn);
	if (e)
		s->ops->rollback(s->conn);
	return e;
}

static int row_int(const char *const *cols, int ncols, void *arg)
{
	*(int64_t *)arg = ncols > 0 ? num(cols[0]) : 0;
	return 1;
}

static int row_flag(const char *const *cols, int ncols, void *arg)
{
	*(int *)arg = 1;
	return 1;
}

/* Migrations */

static int migrate(struct store *s, char *err, size_t errlen)
{
	static const char create[] = "CREATE TABLE IF NOT EXISTS store_schema ("
	                             "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
	                             "applied_at BIGINT NOT NULL)";
	static const char get[] = "SELECT COALESCE(MAX(version), 0) FROM store_schema";
	static const char add[] =
	    "INSERT INTO store_schema (version, name, applied_at) VALUES ($1, $2, $3)";
	int64_t version = 0;
	size_t i;
	int e;

	for (i = 1; i < store_nmigrations; i++) {
		if (store_migrations[i].version <= store_migrations[i - 1].version) {
			snprintf(err, errlen, "migrations out of order at %03d_%s",
			         store_migrations[i].version, store_migrations[i].name);
			return EINVAL;
		}
	}
	e = s->ops->begin(s->conn);
	if (e) {
		snprintf(err, errlen, "migrate: cannot begin a transaction");
		return e;
	}
	e = s->ops->migrate_lock(s->conn);
	if (!e)
		e = s->ops->exec(s->conn, create);
	if (!e)
		e = query(s, get, NULL, 0, row_int, &version, NULL);
	if (e) {
		snprintf(err, errlen, "migrate: cannot read the schema version");
		goto out;
	}
	if (store_nmigrations && version > store_migrations[store_nmigrations - 1].version)
		LOG_WARN("store", "migrate: database schema %d is newer than ours (%d)",
		         (int)version, store_migrations[store_nmigrations - 1].version);
	for (i = 0; i < store_nmigrations; i++) {
		const struct store_migration *m = &store_migrations[i];
		struct store_val p[] = {i64(m->version), t(m->name), i64(store_now())};

		if (m->version <= version)
			continue;
		e = s->ops->exec(s->conn, m->sql);
		if (!e)
			e = query(s, add, p, 3, NULL, NULL, NULL);
		if (e) {
			snprintf(err, errlen, "migration %03d_%s failed", m->version, m->name);
			goto out;
		}
	}
out:
	e = tx_end(s, e);
	if (e && !*err)
		snprintf(err, errlen, "migrate: cannot commit");
	return e;
}

int store_schema_version(struct store *s, int *versionp)
{
	int64_t version = 0;
	int e;

	pthread_mutex_lock(&s->lock);
	e = query(s, "SELECT COALESCE(MAX(version), 0) FROM store_schema", NULL, 0, row_int,
	          &version, NULL);
	pthread_mutex_unlock(&s->lock);
	if (!e)
		*versionp = (int)version;
	return e;
}

/* Life */

int store_open(struct store **sp, const char *url, char *err, size_t errlen)
{
	return store_open_timeout(sp, url, STORE_TIMEOUT_MS, err, errlen);
}

int store_open_timeout(struct store **sp, const char *url, int timeout_ms, char *err, size_t errlen)
{
	struct store *s = NULL;
	int e;

	if (errlen)
		err[0] = '\0';
	if (!url) {
		snprintf(err, errlen, "no store URL");
		return EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	s->lim = default_limits;
	if (strncmp(url, "sqlite:", 7) == 0) {
		s->ops = &store_sqlite_ops;
	} else if (strncmp(url, "postgresql:", 11) == 0 || strncmp(url, "postgres:", 9) == 0) {
		s->ops = &store_pg_ops;
	} else {
		snprintf(err, errlen, "unknown store URL scheme: %s", url);
		e = EINVAL;
		goto out;
	}
	e = s->ops->open(&s->conn, url, timeout_ms > 0 ? timeout_ms : 0, err, errlen);
	if (e)
		goto out;
	e = migrate(s, err, errlen);
	if (e)
		goto out;
	*sp = s;
	s = NULL;
out:
	if (s) {
		if (s->conn)
			s->ops->close(s->conn);
		pthread_mutex_destroy(&s->lock);
		free(s);
	}
	return e;
}

void store_limits_set(struct store *s, const struct store_limits *lim)
{
	pthread_mutex_lock(&s->lock);
	s->lim.max_failures =
	    lim->max_failures > 0 ? lim->max_failures : default_limits.max_failures;
	s->lim.window_ms = lim->window_ms > 0 ? lim->window_ms : default_limits.window_ms;
	s->lim.slow_base_ms =
	    lim->slow_base_ms > 0 ? lim->slow_base_ms : default_limits.slow_base_ms;
	s->lim.slow_max_ms = lim->slow_max_ms > 0 ? lim->slow_max_ms : default_limits.slow_max_ms;
	s->lim.numeric_budget =
	    lim->numeric_budget > 0 ? lim->numeric_budget : default_limits.numeric_budget;
	s->lim.budget_window_ms =
	    lim->budget_window_ms > 0 ? lim->budget_window_ms : default_limits.budget_window_ms;
	pthread_mutex_unlock(&s->lock);
}

/* Calls */

struct call_rows {
	store_call_h *each;
	void *arg;
};

static void call_from_row(struct store_call *c, const char *const *cols)
{
	memset(c, 0, sizeof(*c));
	copy(c->id, sizeof(c->id), cols[0]);
	copy(c->near.call_id, sizeof(c->near.call_id), cols[1]);
	copy(c->near.from_tag, sizeof(c->near.from_tag), cols[2]);
	copy(c->near.to_tag, sizeof(c->near.to_tag), cols[3]);
	copy(c->near.uri, sizeof(c->near.uri), cols[4]);
	copy(c->far.call_id, sizeof(c->far.call_id), cols[5]);
	copy(c->far.from_tag, sizeof(c->far.from_tag), cols[6]);
	copy(c->far.to_tag, sizeof(c->far.to_tag), cols[7]);
	copy(c->far.uri, sizeof(c->far.uri), cols[8]);
	c->state = call_state_parse(cols[9]);
	c->created_at = num(cols[10]);
	c->answered_at = num(cols[11]);
	c->ended_at = num(cols[12]);
}

static int call_row(const char *const *cols, int ncols, void *arg)
{
	struct call_rows *r = arg;
	struct store_call c;

	if (ncols < 13)
		return 1;
	call_from_row(&c, cols);
	return r->each(&c, r->arg);
}

static int dialog_ok(const struct store_dialog *d)
{
	return bounded(d->call_id, sizeof(d->call_id)) &&
	       bounded(d->from_tag, sizeof(d->from_tag)) && bounded(d->to_tag, sizeof(d->to_tag)) &&
	       bounded(d->uri, sizeof(d->uri));
}

int store_call_insert(struct store *s, const struct store_call *c)
{
	static const char sql[] = "INSERT INTO calls (" CALL_COLS ", node) VALUES "
	                          "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
	struct store_val p[14];
	int e;

	if (!bounded(c->id, sizeof(c->id)) || !c->id[0] || !dialog_ok(&c->near) ||
	    !dialog_ok(&c->far) || (int)c->state < 0 || (int)c->state >= NCALL_STATES)
		return EINVAL;
	p[0] = t(c->id);
	p[1] = t(c->near.call_id);
	p[2] = t(c->near.from_tag);
	p[3] = t(c->near.to_tag);
	p[4] = t(c->near.uri);
	p[5] = t(c->far.call_id);
	p[6] = t(c->far.from_tag);
	p[7] = t(c->far.to_tag);
	p[8] = t(c->far.uri);
	p[9] = t(call_states[c->state]);
	p[10] = i64(c->created_at);
	p[11] = c->answered_at ? i64(c->answered_at) : null();
	p[12] = c->ended_at ? i64(c->ended_at) : null();
	p[13] = t(bounded(c->node, sizeof(c->node)) ? c->node : "");
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 14, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* Tells a missing row (ENOENT) from one in a state that refused the change (EALREADY). */
static int why_unchanged(struct store *s, const char *sql, const char *id)
{
	struct store_val p[] = {t(id)};
	int found = 0;
	int e = query(s, sql, p, 1, row_flag, &found, NULL);

	return e ? e : found ? EALREADY : ENOENT;
}

int store_call_state_set(struct store *s, const char *id, enum store_call_state st, int64_t at)
{
	static const char active[] =
	    "UPDATE calls SET state = $2, answered_at = COALESCE(answered_at, "
	    "$3) WHERE call_id = $1 AND state <> 'ended'";
	static const char ended[] =
	    "UPDATE calls SET state = $2, ended_at = COALESCE(ended_at, $3) "
	    "WHERE call_id = $1 AND state <> 'ended'";
	static const char other[] = "UPDATE calls SET state = $2 WHERE call_id = $1 AND state <> "
	                            "'ended'";
	const char *sql = st == STORE_CALL_ACTIVE ? active : st == STORE_CALL_ENDED ? ended : other;
	struct store_val p[] = {t(id), t(store_call_state_name(st)), i64(at)};
	int changes = 0, e;

	if (!id || (int)st < 0 || (int)st >= NCALL_STATES)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, sql == other ? 2 : 3, NULL, NULL, &changes);
	if (!e && !changes)
		e = why_unchanged(s, "SELECT 1 FROM calls WHERE call_id = $1", id);
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_call_near_set(struct store *s, const char *id, const struct store_dialog *near)
{
	static const char sql[] = "UPDATE calls SET near_call_id = $2, near_from_tag = $3, "
	                          "near_to_tag = $4, near_uri = $5 WHERE call_id = $1";
	struct store_val p[5];
	int changes = 0, e;

	if (!id || !dialog_ok(near))
		return EINVAL;
	p[0] = t(id);
	p[1] = t(near->call_id);
	p[2] = t(near->from_tag);
	p[3] = t(near->to_tag);
	p[4] = t(near->uri);
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 5, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

static int call_copy(const struct store_call *c, void *arg)
{
	*(struct store_call *)arg = *c;
	return 1;
}

int store_call_get(struct store *s, const char *id, struct store_call *c)
{
	static const char sql[] = "SELECT " CALL_COLS " FROM calls WHERE call_id = $1";
	struct store_val p[] = {t(id)};
	struct call_rows r = {call_copy, c};
	int e;

	if (!id)
		return EINVAL;
	c->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 1, call_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e ? e : c->id[0] ? 0 : ENOENT;
}

int store_call_find(struct store *s, const char *sip_call_id, struct store_call *c)
{
	static const char sql[] = "SELECT " CALL_COLS " FROM calls WHERE near_call_id = $1 OR "
	                          "far_call_id = $1 ORDER BY created_at DESC LIMIT 1";
	struct store_val p[] = {t(sip_call_id)};
	struct call_rows r = {call_copy, c};
	int e;

	if (!sip_call_id)
		return EINVAL;
	c->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 1, call_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e ? e : c->id[0] ? 0 : ENOENT;
}

int store_call_list_live(struct store *s, store_call_h *each, void *arg)
{
	static const char sql[] =
	    "SELECT " CALL_COLS " FROM calls WHERE state <> 'ended' ORDER BY created_at, call_id";
	struct call_rows r = {each, arg};
	int e;

	pthread_mutex_lock(&s->lock);
	e = query(s, sql, NULL, 0, call_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_purge(struct store *s, int64_t now, int64_t retention_ms, int *ncallsp)
{
	static const char events[] =
	    "DELETE FROM move_events WHERE move_id IN (SELECT move_id FROM "
	    "moves WHERE call_id IN (SELECT call_id FROM calls WHERE state "
	    "= 'ended' AND ended_at < $1))";
	static const char moves[] = "DELETE FROM moves WHERE call_id IN (SELECT call_id FROM calls "
	                            "WHERE state = 'ended' AND ended_at < $1)";
	static const char calls[] = "DELETE FROM calls WHERE state = 'ended' AND ended_at < $1";
	static const char failures[] = "DELETE FROM failures WHERE at < $1";
	struct store_val before[] = {i64(now - retention_ms)};
	struct store_val forgotten[1];
	int n = 0, e;

	pthread_mutex_lock(&s->lock);
	/* The source window is the longer one: the budget's rows are forgotten by then too. */
	forgotten[0] =
	    i64(now - (s->lim.window_ms > s->lim.budget_window_ms ? s->lim.window_ms
	                                                          : s->lim.budget_window_ms));
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	/* retention_ms <= 0 keeps ended calls for ever; forgotten failures go all the same. */
	if (retention_ms > 0) {
		e = query(s, events, before, 1, NULL, NULL, NULL);
		if (!e)
			e = query(s, moves, before, 1, NULL, NULL, NULL);
		if (!e)
			e = query(s, calls, before, 1, NULL, NULL, &n);
	}
	if (!e)
		e = query(s, failures, forgotten, 1, NULL, NULL, NULL);
	e = tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	if (!e && ncallsp)
		*ncallsp = n;
	return e;
}

/* The hashes a numeric code may be stored under, as text parameters from p[at] on. */
static void hash_params(const uint8_t *first, const uint8_t (*alt)[STORE_HASH_LEN], unsigned nalt,
                        char (*text)[2 * STORE_HASH_LEN + 1], struct store_val *p, int at)
{
	for (unsigned i = 0; i <= nalt && i < STORE_HASHES_MAX; i++) {
		hex_encode(text[i], i ? alt[i - 1] : first);
		p[at + (int)i] = t(text[i]);
	}
}

/*
 * Statements that look a numeric code up under 1..STORE_HASHES_MAX hashes ("code_hash IN ($k,
 * ...)"). Made once: the backends cache prepared statements by the SQL's address.
 */
enum hash_sql { SQL_TAKEN, SQL_REDEEM, SQL_NODE, SQL_NHASH };

static const char *const hash_sql_fmt[SQL_NHASH] = {
    [SQL_TAKEN] = "SELECT COUNT(*) FROM moves WHERE code_hash IN (%s) AND state = 'offered' AND "
                  "expires_at > $1",
    [SQL_REDEEM] =
        "UPDATE moves SET state = 'redeemed', redeemed_at = $1, redeemed_by = $2, "
        "updated_at = $1 WHERE move_id = (SELECT move_id FROM moves WHERE code_hash IN (%s) "
        "AND state = 'offered' AND expires_at > $1 AND locked = 0 ORDER BY created_at DESC "
        "LIMIT 1) AND state = 'offered' AND expires_at > $1 AND locked = 0 "
        "RETURNING move_id, call_id",
    [SQL_NODE] = "SELECT m.move_id, c.node FROM moves m JOIN calls c ON c.call_id = m.call_id "
                 "WHERE m.code_hash IN (%s) AND m.state = 'offered' AND m.expires_at > $1 AND "
                 "m.locked = 0 ORDER BY m.created_at DESC LIMIT 1",
};
static const int hash_sql_first[SQL_NHASH] = {[SQL_TAKEN] = 2, [SQL_REDEEM] = 3, [SQL_NODE] = 2};
static char hash_sql_text[SQL_NHASH][STORE_HASHES_MAX][640];
static pthread_once_t hash_sql_once = PTHREAD_ONCE_INIT;

static void hash_sql_make(void)
{
	for (int k = 0; k < SQL_NHASH; k++)
		for (int n = 0; n < STORE_HASHES_MAX; n++) {
			char list[STORE_HASHES_MAX * 6];
			size_t len = 0;
			for (int i = 0; i <= n; i++)
				len += (size_t)snprintf(list + len, sizeof(list) - len, "%s$%d",
				                        i ? ", " : "", hash_sql_first[k] + i);
			snprintf(hash_sql_text[k][n], sizeof(hash_sql_text[k][n]), hash_sql_fmt[k],
			         list);
		}
}

/* The statement of kind k for the first hash and nalt more. */
static const char *hash_sql(enum hash_sql k, unsigned nalt)
{
	pthread_once(&hash_sql_once, hash_sql_make);
	return hash_sql_text[k][nalt < STORE_HASHES_MAX ? nalt : STORE_HASHES_MAX - 1];
}

int store_node_reset(struct store *s, const char *node, int64_t now, int *np)
{
	static const char moves[] =
	    "UPDATE moves SET state = 'failed', updated_at = $2, finished_at = $2, reason = "
	    "'the node restarted' WHERE state IN ('offered', 'redeemed', 'confirming', 'moving') "
	    "AND call_id IN (SELECT call_id FROM calls WHERE node = $1 AND state <> 'ended')";
	static const char calls[] =
	    "UPDATE calls SET state = 'ended', ended_at = $2 WHERE node = $1 "
	    "AND state <> 'ended'";
	struct store_val p[] = {t(node), i64(now)};
	int n = 0, e;

	if (!node)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (!e) {
		e = query(s, moves, p, 2, NULL, NULL, NULL);
		if (!e)
			e = query(s, calls, p, 2, NULL, NULL, &n);
		e = tx_end(s, e);
	}
	pthread_mutex_unlock(&s->lock);
	if (!e && np)
		*np = n;
	return e;
}

int store_source_key(const struct sockaddr *sa, char *out, size_t len)
{
	char host[INET6_ADDRSTRLEN];

	if (!sa || !len)
		return EINVAL;
	out[0] = '\0';
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(out, len, "ip:%s", host);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		struct in6_addr net = a->sin6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&net)) {
			inet_ntop(AF_INET, &net.s6_addr[12], host, sizeof(host));
			snprintf(out, len, "ip:%s", host);
			return 0;
		}
		/* One /64 is one subscriber: a host picks any address in it at will. */
		memset(&net.s6_addr[8], 0, 8);
		inet_ntop(AF_INET6, &net, host, sizeof(host));
		snprintf(out, len, "ip:%s/64", host);
		return 0;
	}
	return EAFNOSUPPORT;
}

/* Moves */

/* Appends an event to a move whose row this transaction already changed (that orders seq). */
static int event_add_locked(struct store *s, const char *id, int64_t at, const char *step,
                            const char *detail)
{
	static const char sql[] = "INSERT INTO move_events (move_id, seq, at, step, detail) "
	                          "SELECT CAST($1 AS TEXT), COALESCE(MAX(seq), 0) + 1, "
	                          "CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT) "
	                          "FROM move_events WHERE move_id = $1";
	struct store_val p[] = {t(id), i64(at), t(step), t(detail ? detail : "")};

	return query(s, sql, p, 4, NULL, NULL, NULL);
}

int store_move_insert(struct store *s, const struct store_move *m)
{
	static const char ins[] = "INSERT INTO moves (move_id, call_id, token_hash, code_hash, "
	                          "state, created_at, expires_at, updated_at) "
	                          "VALUES ($1, $2, $3, $4, 'offered', $5, $6, $5)";
	char token[2 * STORE_HASH_LEN + 1], code[2 * STORE_HASH_LEN + 1];
	char hash[STORE_HASHES_MAX][2 * STORE_HASH_LEN + 1];
	struct store_val p[6], q[1 + STORE_HASHES_MAX];
	unsigned nalt = m->ncode_alt < STORE_HASHES_MAX ? m->ncode_alt : STORE_HASHES_MAX - 1;
	int64_t same = 0;
	int e;

	if (!bounded(m->id, sizeof(m->id)) || !m->id[0] || !bounded(m->call_id, sizeof(m->call_id)))
		return EINVAL;
	hex_encode(token, m->token_hash);
	hex_encode(code, m->code_hash);
	/* Under every key the digits may have been hashed with. */
	q[0] = i64(m->created_at);
	hash_params(m->code_hash, m->code_alt, nalt, hash, q, 1);
	p[0] = t(m->id);
	p[1] = t(m->call_id);
	p[2] = t(token);
	p[3] = t(code);
	p[4] = i64(m->created_at);
	p[5] = i64(m->expires_at);
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = query(s, hash_sql(SQL_TAKEN, nalt), q, 2 + (int)nalt, row_int, &same, NULL);
	if (!e && same > 0)
		e = EEXIST; /* the caller makes another code */
	if (!e)
		e = query(s, ins, p, 6, NULL, NULL, NULL);
	if (!e)
		e = event_add_locked(s, m->id, m->created_at, "offered", "");
	e = tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* How long a source that failed n times, last at last, must still wait at now. */
static int64_t penalty(const struct store_limits *lim, int64_t n, int64_t last, int64_t now)
{
	int64_t wait = lim->slow_base_ms;
	int64_t k;

	if (n < lim->max_failures)
		return 0;
	for (k = lim->max_failures; k < n && wait < lim->slow_max_ms; k++)
		wait *= 2;
	if (wait > lim->slow_max_ms)
		wait = lim->slow_max_ms;
	wait = last + wait - now;
	return wait > 0 ? wait : 0;
}

struct source_row {
	int64_t n;
	int64_t last;
};

static int source_row(const char *const *cols, int ncols, void *arg)
{
	struct source_row *r = arg;

	if (ncols >= 2) {
		r->n = num(cols[0]);
		r->last = num(cols[1]);
	}
	return 1;
}

static int source_check_locked(struct store *s, const char *source, int64_t now,
                               struct store_failure *f)
{
	static const char sql[] = "SELECT COUNT(*), MAX(at) FROM failures WHERE source = $1 AND "
	                          "at > $2";
	struct store_val p[] = {t(source), i64(now - s->lim.window_ms)};
	struct source_row r = {0, 0};
	int e = query(s, sql, p, 2, source_row, &r, NULL);

	if (e)
		return e;
	f->source_failures = (int)r.n;
	f->wait_ms = penalty(&s->lim, r.n, r.last, now);
	return 0;
}

/* Whether the node-wide budget of wrong numeric codes is spent, and until when. */
static int budget_check_locked(struct store *s, int64_t now, struct store_failure *f)
{
	static const char sql[] =
	    "SELECT COUNT(*), MIN(at) FROM failures WHERE kind = 1 AND at > $1";
	struct store_val p[] = {i64(now - s->lim.budget_window_ms)};
	struct source_row r = {0, 0};
	int e = query(s, sql, p, 1, source_row, &r, NULL);

	if (e)
		return e;
	f->numeric_failures = (int)r.n;
	f->budget_wait_ms = 0;
	if (r.n >= s->lim.numeric_budget) {
		/* Refused until the oldest wrong code in the window is forgotten. */
		f->budget_wait_ms = r.last + s->lim.budget_window_ms - now;
		if (f->budget_wait_ms < 1000)
			f->budget_wait_ms = 1000;
	}
	return 0;
}

int store_source_check(struct store *s, const char *source, int64_t now, struct store_failure *f)
{
	return store_guess_check(s, source, STORE_KEY_TOKEN, now, f);
}

int store_guess_check(struct store *s, const char *source, enum store_key kind, int64_t now,
                      struct store_failure *f)
{
	int e;

	if (!source)
		return EINVAL;
	memset(f, 0, sizeof(*f));
	f->move_failures = -1;
	pthread_mutex_lock(&s->lock);
	e = source_check_locked(s, source, now, f);
	if (!e && kind == STORE_KEY_CODE)
		e = budget_check_locked(s, now, f);
	pthread_mutex_unlock(&s->lock);
	return e;
}

struct move_count {
	int found;
	int failures;
	int locked;
};

static int count_row(const char *const *cols, int ncols, void *arg)
{
	struct move_count *r = arg;

	if (ncols >= 2) {
		r->found = 1;
		r->failures = (int)num(cols[0]);
		r->locked = (int)num(cols[1]);
	}
	return 1;
}

/* Counts a failure inside the caller's transaction. */
static int failure_add_locked(struct store *s, const char *move_id, const char *source,
                              enum store_key kind, int64_t now, struct store_failure *f)
{
	static const char bump[] = "UPDATE moves SET failures = failures + 1, locked = CASE WHEN "
	                           "failures + 1 >= $2 THEN 1 ELSE locked END, updated_at = $3 "
	                           "WHERE move_id = $1 RETURNING failures, locked";
	static const char add[] =
	    "INSERT INTO failures (source, move_id, at, kind) VALUES ($1, $2, $3, $4)";
	struct store_val pb[] = {t(move_id), i64(s->lim.max_failures), i64(now)};
	struct move_count r = {0, 0, 0};
	int e = 0;

	f->move_failures = -1;
	f->move_locked = 0;
	if (move_id) {
		e = query(s, bump, pb, 3, count_row, &r, NULL);
		if (e)
			return e;
	}
	if (r.found) {
		f->move_failures = r.failures;
		f->move_locked = r.locked;
		e = event_add_locked(s, move_id, now, "failure", source);
		if (!e && r.locked && r.failures == s->lim.max_failures)
			e = event_add_locked(s, move_id, now, "locked", source);
		if (e)
			return e;
	}
	{
		struct store_val pa[] = {t(source), r.found ? t(move_id) : null(), i64(now),
		                         i64(kind == STORE_KEY_CODE)};

		return query(s, add, pa, 4, NULL, NULL, NULL);
	}
}

int store_failure_add(struct store *s, const char *move_id, const char *source, int64_t now,
                      struct store_failure *fp)
{
	return store_guess_failed(s, move_id, source, STORE_KEY_TOKEN, now, fp);
}

int store_guess_failed(struct store *s, const char *move_id, const char *source,
                       enum store_key kind, int64_t now, struct store_failure *fp)
{
	struct store_failure f;
	int e;

	if (!source)
		return EINVAL;
	memset(&f, 0, sizeof(f));
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = failure_add_locked(s, move_id, source, kind, now, &f);
	e = tx_end(s, e);
	if (!e)
		e = source_check_locked(s, source, now, &f);
	if (!e && kind == STORE_KEY_CODE)
		e = budget_check_locked(s, now, &f);
out:
	pthread_mutex_unlock(&s->lock);
	if (!e && fp)
		*fp = f;
	return e;
}

struct won {
	int found;
	char *move_id;
	char *call_id;
};

static int won_row(const char *const *cols, int ncols, void *arg)
{
	struct won *w = arg;

	if (ncols >= 2) {
		w->found = 1;
		copy(w->move_id, STORE_ID_MAX, cols[0]);
		copy(w->call_id, STORE_ID_MAX, cols[1]);
	}
	return 1;
}

/* Source lock and, for numeric codes, the node-wide budget: EAGAIN or EBUSY with r->wait_ms. */
static int redeem_allowed_locked(struct store *s, struct store_redeem *r)
{
	struct store_failure f;
	int e;

	memset(&f, 0, sizeof(f));
	e = source_check_locked(s, r->by, r->now, &f);
	if (!e && f.wait_ms > 0) {
		r->wait_ms = f.wait_ms;
		return EAGAIN;
	}
	if (!e && r->key == STORE_KEY_CODE)
		e = budget_check_locked(s, r->now, &f);
	if (!e && f.budget_wait_ms > 0) {
		r->wait_ms = f.budget_wait_ms;
		return EBUSY;
	}
	return e;
}

int store_move_redeem(struct store *s, struct store_redeem *r)
{
	/* One statement decides the winner: a row leaves 'offered' only once. */
	static const char by_token[] =
	    "UPDATE moves SET state = 'redeemed', redeemed_at = $1, redeemed_by = $2, "
	    "updated_at = $1 WHERE token_hash = $3 AND state = 'offered' AND expires_at > $1 "
	    "AND locked = 0 RETURNING move_id, call_id";
	/* Numeric codes are unique on offer (store_move_insert), under any key: SQL_REDEEM picks
	 * the row, then re-checks it. */
	char hash[STORE_HASHES_MAX][2 * STORE_HASH_LEN + 1];
	struct store_val p[2 + STORE_HASHES_MAX];
	struct store_failure f;
	struct won w = {0, r->move_id, r->call_id};
	unsigned nalt = r->key == STORE_KEY_CODE ? r->nalt : 0;
	int e;

	if (!bounded(r->by, sizeof(r->by)) || !bounded(r->named, sizeof(r->named)))
		return EINVAL;
	if (nalt > STORE_HASHES_MAX - 1)
		nalt = STORE_HASHES_MAX - 1;
	r->move_id[0] = r->call_id[0] = '\0';
	r->wait_ms = 0;
	p[0] = i64(r->now);
	p[1] = t(r->by);
	hash_params(r->hash, r->alt, nalt, hash, p, 2);
	memset(&f, 0, sizeof(f));
	pthread_mutex_lock(&s->lock);
	e = redeem_allowed_locked(s, r);
	if (e)
		goto out;
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = query(s, r->key == STORE_KEY_CODE ? hash_sql(SQL_REDEEM, nalt) : by_token, p,
	          3 + (int)nalt, won_row, &w, NULL);
	if (!e && w.found)
		e = event_add_locked(s, r->move_id, r->now, "redeemed", r->by);
	else if (!e)
		e = failure_add_locked(s, r->named[0] ? r->named : NULL, r->by, r->key, r->now, &f);
	e = tx_end(s, e);
	if (!e && !w.found)
		e = ENOENT;
out:
	pthread_mutex_unlock(&s->lock);
	if (e)
		r->move_id[0] = r->call_id[0] = '\0';
	return e;
}

struct node_row {
	int found;
	char *move_id, *node;
	size_t len;
};

static int node_row(const char *const *cols, int ncols, void *arg)
{
	struct node_row *w = arg;

	if (ncols >= 2) {
		w->found = 1;
		copy(w->move_id, STORE_ID_MAX, cols[0]);
		snprintf(w->node, w->len, "%s", cols[1] ? cols[1] : "");
	}
	return 1;
}

int store_move_node(struct store *s, struct store_redeem *r, char *node, size_t len)
{
	static const char by_token[] =
	    "SELECT m.move_id, c.node FROM moves m JOIN calls c ON c.call_id = m.call_id "
	    "WHERE m.token_hash = $2 AND m.state = 'offered' AND m.expires_at > $1 AND m.locked = "
	    "0";
	char hash[STORE_HASHES_MAX][2 * STORE_HASH_LEN + 1];
	struct node_row w = {0, r->move_id, node, len};
	struct store_val p[1 + STORE_HASHES_MAX];
	unsigned nalt = r->key == STORE_KEY_CODE ? r->nalt : 0;
	int e;

	if (!bounded(r->by, sizeof(r->by)))
		return EINVAL;
	if (nalt > STORE_HASHES_MAX - 1)
		nalt = STORE_HASHES_MAX - 1;
	r->move_id[0] = '\0';
	r->wait_ms = 0;
	p[0] = i64(r->now);
	hash_params(r->hash, r->alt, nalt, hash, p, 1);
	pthread_mutex_lock(&s->lock);
	node[0] = '\0';
	/* A source that must wait learns nothing, not even where a code lives. */
	e = r->by[0] ? redeem_allowed_locked(s, r) : 0;
	if (!e)
		e = query(s, r->key == STORE_KEY_CODE ? hash_sql(SQL_NODE, nalt) : by_token, p,
		          2 + (int)nalt, node_row, &w, NULL);
	pthread_mutex_unlock(&s->lock);
	return !e && !w.found ? ENOENT : e;
}

int store_move_state_set(struct store *s, const char *id, enum store_move_state st, int64_t at,
                         const char *reason)
{
	static const char confirming[] =
	    "UPDATE moves SET state = $2, updated_at = $3 WHERE move_id "
	    "= $1 AND state = 'redeemed'";
	static const char moving[] =
	    "UPDATE moves SET state = $2, updated_at = $3 WHERE move_id = $1 "
	    "AND state IN ('redeemed', 'confirming')";
	static const char done[] =
	    "UPDATE moves SET state = $2, updated_at = $3, finished_at = $3, "
	    "reason = $4 WHERE move_id = $1 AND state = 'moving'";
	static const char failed[] =
	    "UPDATE moves SET state = $2, updated_at = $3, finished_at = $3, "
	    "reason = $4 WHERE move_id = $1 AND state IN ('offered', "
	    "'redeemed', 'confirming', 'moving')";
	const char *sql;
	struct store_val p[] = {t(id), t(store_move_state_name(st)), i64(at),
	                        reason ? t(reason) : null()};
	int changes = 0, e;

	switch (st) {
	case STORE_MOVE_CONFIRMING:
		sql = confirming;
		break;
	case STORE_MOVE_MOVING:
		sql = moving;
		break;
	case STORE_MOVE_DONE:
		sql = done;
		break;
	case STORE_MOVE_FAILED:
		sql = failed;
		break;
	default:
		return EINVAL; /* offered is made by insert, redeemed only by redeem */
	}
	if (!id || (reason && strlen(reason) >= STORE_TEXT_MAX))
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = query(s, sql, p, sql == done || sql == failed ? 4 : 3, NULL, NULL, &changes);
	if (!e && changes)
		e = event_add_locked(s, id, at, store_move_state_name(st), reason);
	else if (!e)
		e = why_unchanged(s, "SELECT 1 FROM moves WHERE move_id = $1", id);
	e = tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_move_event_add(struct store *s, const char *id, int64_t at, const char *step,
                         const char *detail)
{
	/* Touching the row first takes its lock, so concurrent events get distinct seq. */
	static const char touch[] = "UPDATE moves SET updated_at = $2 WHERE move_id = $1";
	struct store_val p[] = {t(id), i64(at)};
	int changes = 0, e;

	if (!id || !step || strlen(step) >= sizeof(((struct store_move_event *)0)->step) ||
	    (detail && strlen(detail) >= STORE_TEXT_MAX))
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = query(s, touch, p, 2, NULL, NULL, &changes);
	if (!e && !changes)
		e = ENOENT;
	if (!e)
		e = event_add_locked(s, id, at, step, detail);
	e = tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

struct move_rows {
	store_move_h *each;
	void *arg;
};

static int move_row(const char *const *cols, int ncols, void *arg)
{
	struct move_rows *r = arg;
	struct store_move m;

	if (ncols < 14)
		return 1;
	memset(&m, 0, sizeof(m));
	copy(m.id, sizeof(m.id), cols[0]);
	copy(m.call_id, sizeof(m.call_id), cols[1]);
	hex_decode(m.token_hash, cols[2]);
	hex_decode(m.code_hash, cols[3]);
	m.state = move_state_parse(cols[4]);
	m.created_at = num(cols[5]);
	m.expires_at = num(cols[6]);
	m.redeemed_at = num(cols[7]);
	m.updated_at = num(cols[8]);
	m.finished_at = num(cols[9]);
	copy(m.redeemed_by, sizeof(m.redeemed_by), cols[10]);
	copy(m.reason, sizeof(m.reason), cols[11]);
	m.failures = (int)num(cols[12]);
	m.locked = (int)num(cols[13]);
	return r->each(&m, r->arg);
}

static int move_copy(const struct store_move *m, void *arg)
{
	*(struct store_move *)arg = *m;
	return 1;
}

int store_move_get(struct store *s, const char *id, struct store_move *m)
{
	static const char sql[] = "SELECT " MOVE_COLS " FROM moves WHERE move_id = $1";
	struct store_val p[] = {t(id)};
	struct move_rows r = {move_copy, m};
	int e;

	if (!id)
		return EINVAL;
	m->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 1, move_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e ? e : m->id[0] ? 0 : ENOENT;
}

int store_move_show_set(struct store *s, const char *id, const uint8_t hash[STORE_HASH_LEN])
{
	static const char sql[] = "UPDATE moves SET show_hash = $2 WHERE move_id = $1";
	char hex[2 * STORE_HASH_LEN + 1];
	struct store_val p[2];
	int changes = 0, e;

	if (!id || !hash)
		return EINVAL;
	hex_encode(hex, hash);
	p[0] = t(id);
	p[1] = t(hex);
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 2, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

int store_move_by_show(struct store *s, const uint8_t hash[STORE_HASH_LEN], struct store_move *m)
{
	static const char sql[] = "SELECT " MOVE_COLS " FROM moves WHERE show_hash = $1";
	char hex[2 * STORE_HASH_LEN + 1];
	struct store_val p[1];
	struct move_rows r = {move_copy, m};
	int e;

	if (!hash)
		return EINVAL;
	hex_encode(hex, hash);
	p[0] = t(hex);
	m->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 1, move_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e ? e : m->id[0] ? 0 : ENOENT;
}

int store_move_list(struct store *s, const char *call_id, store_move_h *each, void *arg)
{
	static const char one[] =
	    "SELECT " MOVE_COLS " FROM moves WHERE call_id = $1 ORDER BY created_at, move_id";
	static const char all[] = "SELECT " MOVE_COLS " FROM moves ORDER BY created_at, move_id";
	struct store_val p[] = {t(call_id)};
	struct move_rows r = {each, arg};
	int e;

	pthread_mutex_lock(&s->lock);
	e = call_id ? query(s, one, p, 1, move_row, &r, NULL)
	            : query(s, all, NULL, 0, move_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

struct event_rows {
	store_event_h *each;
	void *arg;
};

static int event_row(const char *const *cols, int ncols, void *arg)
{
	struct event_rows *r = arg;
	struct store_move_event ev;

	if (ncols < 5)
		return 1;
	memset(&ev, 0, sizeof(ev));
	copy(ev.move_id, sizeof(ev.move_id), cols[0]);
	ev.seq = (int)num(cols[1]);
	ev.at = num(cols[2]);
	copy(ev.step, sizeof(ev.step), cols[3]);
	copy(ev.detail, sizeof(ev.detail), cols[4]);
	return r->each(&ev, r->arg);
}

int store_move_events(struct store *s, const char *id, store_event_h *each, void *arg)
{
	static const char sql[] = "SELECT move_id, seq, at, step, detail FROM move_events WHERE "
	                          "move_id = $1 ORDER BY seq";
	struct store_val p[] = {t(id)};
	struct event_rows r = {each, arg};
	int e;

	if (!id)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = query(s, sql, p, 1, event_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* The worker */

/* Grows a job's result array by one element of size sz; the store frees it after the callback. */
static int append(void **arrayp, size_t *np, const void *item, size_t sz)
{
	void *grown;

	if ((*np & (*np - 1)) == 0) {
		grown = realloc(*arrayp, (*np ? *np * 2 : 1) * sz);
		if (!grown)
			return 1;
		*arrayp = grown;
	}
	memcpy((char *)*arrayp + *np * sz, item, sz);
	(*np)++;
	return 0;
}

static int collect_call(const struct store_call *c, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->calls, &job->n, c, sizeof(*c)))
		job->err = ENOMEM;
	return job->err;
}

static int collect_move(const struct store_move *m, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->moves, &job->n, m, sizeof(*m)))
		job->err = ENOMEM;
	return job->err;
}

static int collect_event(const struct store_move_event *ev, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->events, &job->n, ev, sizeof(*ev)))
		job->err = ENOMEM;
	return job->err;
}

static void job_run(struct store *s, struct store_job *job)
{
	int n = 0, e;

	job->err = 0;
	switch (job->op) {
	case STORE_OP_CALL_INSERT:
		e = store_call_insert(s, &job->call);
		break;
	case STORE_OP_CALL_STATE:
		e = store_call_state_set(s, job->id, job->call_state, job->at);
		break;
	case STORE_OP_CALL_NEAR:
		e = store_call_near_set(s, job->id, &job->call.near);
		break;
	case STORE_OP_CALL_GET:
		e = store_call_get(s, job->id, &job->call);
		break;
	case STORE_OP_CALL_FIND:
		e = store_call_find(s, job->text, &job->call);
		break;
	case STORE_OP_CALL_LIST_LIVE:
		e = store_call_list_live(s, collect_call, job);
		break;
	case STORE_OP_PURGE:
		e = store_purge(s, job->at, job->retention_ms, &n);
		job->n = (size_t)n;
		break;
	case STORE_OP_MOVE_INSERT:
		e = store_move_insert(s, &job->move);
		break;
	case STORE_OP_MOVE_REDEEM:
		e = store_move_redeem(s, &job->redeem);
		break;
	case STORE_OP_MOVE_STATE:
		e = store_move_state_set(s, job->id, job->move_state, job->at,
		                         job->text[0] ? job->text : NULL);
		break;
	case STORE_OP_MOVE_EVENT:
		e = store_move_event_add(s, job->id, job->at, job->step, job->text);
		break;
	case STORE_OP_MOVE_GET:
		e = store_move_get(s, job->id, &job->move);
		break;
	case STORE_OP_MOVE_LIST:
		e = store_move_list(s, job->id[0] ? job->id : NULL, collect_move, job);
		break;
	case STORE_OP_MOVE_EVENTS:
		e = store_move_events(s, job->id, collect_event, job);
		break;
	case STORE_OP_FAILURE_ADD:
		e = store_guess_failed(s, job->id[0] ? job->id : NULL, job->source, job->redeem.key,
		                       job->at, &job->failure);
		break;
	case STORE_OP_SOURCE_CHECK:
		e = store_guess_check(s, job->source, job->redeem.key, job->at, &job->failure);
		break;
	case STORE_OP_MOVE_NODE:
		e = store_move_node(s, &job->redeem, job->text, sizeof(job->text));
		break;
	case STORE_OP_NODE_RESET: {
		int n = 0;
		e = store_node_reset(s, job->text, job->at, &n);
		job->n = (size_t)n;
		break;
	}
	case STORE_OP_MOVE_SHOW_SET:
		e = store_move_show_set(s, job->id, job->hash);
		break;
	case STORE_OP_MOVE_BY_SHOW:
		e = store_move_by_show(s, job->hash, &job->move);
		break;
	default:
		e = EINVAL;
		break;
	}
	if (!job->err)
		job->err = e;
}

static const char *op_name(enum store_op op)
{
	static const char *const names[] = {
	    [STORE_OP_CALL_INSERT] = "insert call",
	    [STORE_OP_CALL_STATE] = "set call state",
	    [STORE_OP_CALL_NEAR] = "set near leg",
	    [STORE_OP_CALL_GET] = "get call",
	    [STORE_OP_CALL_FIND] = "find call",
	    [STORE_OP_CALL_LIST_LIVE] = "list calls",
	    [STORE_OP_PURGE] = "purge",
	    [STORE_OP_MOVE_INSERT] = "insert move",
	    [STORE_OP_MOVE_REDEEM] = "redeem",
	    [STORE_OP_MOVE_STATE] = "set move state",
	    [STORE_OP_MOVE_EVENT] = "add move event",
	    [STORE_OP_MOVE_GET] = "get move",
	    [STORE_OP_MOVE_LIST] = "list moves",
	    [STORE_OP_MOVE_EVENTS] = "list move events",
	    [STORE_OP_FAILURE_ADD] = "count failure",
	    [STORE_OP_SOURCE_CHECK] = "check source",
	    [STORE_OP_MOVE_NODE] = "find a code's node",
	    [STORE_OP_NODE_RESET] = "reset the node's calls",
	    [STORE_OP_MOVE_SHOW_SET] = "set show secret",
	    [STORE_OP_MOVE_BY_SHOW] = "find a move by its show secret",
	};

	return (unsigned)op < sizeof(names) / sizeof(names[0]) && names[op] ? names[op] : "job";
}

static void node_free(struct node *n)
{
	free(n->job.calls);
	free(n->job.moves);
	free(n->job.events);
	free(n);
}

/* On the worker. A job nobody waits for is logged if it failed, and let go of here. */
static void node_work(void *arg)
{
	struct node *n = arg;

	job_run(n->s, &n->job);
	if (n->done)
		return;
	if (n->job.err)
		LOG_ERR("store", "%s %s: %s", op_name(n->job.op), n->job.id, strerror(n->job.err));
	node_free(n);
}

/* On the loop thread. */
static void node_done(void *arg)
{
	struct node *n = arg;

	n->done(&n->job, n->arg);
	node_free(n);
}

int store_attach(struct store *s, struct su_root_s *root)
{
	if (s->q)
		return EALREADY;
	/* One worker: the store has one connection, and jobs run in order. */
	return queue_alloc(&s->q, root, 1, 0);
}

int store_submit(struct store *s, const struct store_job *job, store_done_h *done, void *arg)
{
	struct node *n;
	unsigned flags = 0;
	int e;

	if (!s->q)
		return ENOTCONN;
	n = malloc(sizeof(*n));
	if (!n)
		return ENOMEM;
	n->s = s;
	n->done = done;
	n->arg = arg;
	n->job = *job;
	n->job.err = 0;
	n->job.n = 0;
	n->job.calls = NULL;
	n->job.moves = NULL;
	n->job.events = NULL;
	/* A device waits on a redeem; it needs only the move's row, whose insert has finished. */
	if (job->op == STORE_OP_MOVE_REDEEM || job->op == STORE_OP_MOVE_NODE)
		flags = QUEUE_URGENT;
	e = queue_submit(s->q, flags, node_work, done ? node_done : NULL, n);
	if (e)
		free(n);
	return e;
}

void store_close(struct store *s)
{
	if (!s)
		return;
	queue_free(s->q); /* runs what is queued and delivers its completions */
	s->ops->close(s->conn);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
