/* Moves and their codes: offering, redeeming once, the state machine and its events. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "sql/store.h"
#include "sql/store_int.h"

static const char *const move_states[] = {"offered", "redeemed", "confirming",
                                          "moving",  "done",     "failed"};

#define NMOVE_STATES (int)(sizeof(move_states) / sizeof(move_states[0]))

#define MOVE_COLS                                                                                  \
	"move_id, call_id, token_hash, code_hash, state, created_at, expires_at, redeemed_at, "    \
	"updated_at, finished_at, redeemed_by, reason, failures, locked"

void store_hex_encode(char out[2 * STORE_HASH_LEN + 1], const uint8_t in[STORE_HASH_LEN])
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

static int move_state_parse(const char *name)
{
	int i;

	for (i = 0; name && i < NMOVE_STATES; i++) {
		if (strcmp(name, move_states[i]) == 0)
			return i;
	}
	return STORE_MOVE_FAILED;
}

const char *store_move_state_name(enum store_move_state st)
{
	return (int)st >= 0 && (int)st < NMOVE_STATES ? move_states[st] : "unknown";
}

/* The hashes a numeric code may be stored under, as text parameters from p[at] on. */
static void hash_params(const uint8_t *first, const uint8_t (*alt)[STORE_HASH_LEN], unsigned nalt,
                        char (*text)[2 * STORE_HASH_LEN + 1], struct store_val *p, int at)
{
	for (unsigned i = 0; i <= nalt && i < STORE_HASHES_MAX; i++) {
		store_hex_encode(text[i], i ? alt[i - 1] : first);
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

/* Appends an event to a move whose row this transaction already changed (that orders seq). */
int store_event_add_locked(struct store *s, const char *id, int64_t at, const char *step,
                           const char *detail)
{
	static const char sql[] = "INSERT INTO move_events (move_id, seq, at, step, detail) "
	                          "SELECT CAST($1 AS TEXT), COALESCE(MAX(seq), 0) + 1, "
	                          "CAST($2 AS BIGINT), CAST($3 AS TEXT), CAST($4 AS TEXT) "
	                          "FROM move_events WHERE move_id = $1";
	struct store_val p[] = {t(id), i64(at), t(step), t(detail ? detail : "")};

	return store_query(s, sql, p, 4, NULL, NULL, NULL);
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

	if (!store_bounded(m->id, sizeof(m->id)) || !m->id[0] ||
	    !store_bounded(m->call_id, sizeof(m->call_id)))
		return EINVAL;
	store_hex_encode(token, m->token_hash);
	store_hex_encode(code, m->code_hash);
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
	e = store_query(s, hash_sql(SQL_TAKEN, nalt), q, 2 + (int)nalt, store_row_int, &same, NULL);
	if (!e && same > 0)
		e = EEXIST; /* the caller makes another code */
	if (!e)
		e = store_query(s, ins, p, 6, NULL, NULL, NULL);
	if (!e)
		e = store_event_add_locked(s, m->id, m->created_at, "offered", "");
	if (!e && m->state == STORE_MOVE_REDEEMED) {
		/* A move with no code to present (own devices): taken at once by who asked. */
		static const char taken[] =
		    "UPDATE moves SET state = 'redeemed', redeemed_at = $2, "
		    "redeemed_by = $3, updated_at = $2 WHERE move_id = $1";
		struct store_val r[] = {t(m->id), i64(m->created_at), t(m->redeemed_by)};

		e = store_bounded(m->redeemed_by, sizeof(m->redeemed_by))
		        ? store_query(s, taken, r, 3, NULL, NULL, NULL)
		        : EINVAL;
		if (!e)
			e = store_event_add_locked(s, m->id, m->created_at, "redeemed",
			                           m->redeemed_by);
	}
	e = store_tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
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
		store_copy(w->move_id, STORE_ID_MAX, cols[0]);
		store_copy(w->call_id, STORE_ID_MAX, cols[1]);
	}
	return 1;
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

	if (!store_bounded(r->by, sizeof(r->by)) || !store_bounded(r->named, sizeof(r->named)))
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
	e = store_redeem_allowed_locked(s, r);
	if (e)
		goto out;
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = store_query(s, r->key == STORE_KEY_CODE ? hash_sql(SQL_REDEEM, nalt) : by_token, p,
	                3 + (int)nalt, won_row, &w, NULL);
	if (!e && w.found)
		e = store_event_add_locked(s, r->move_id, r->now, "redeemed", r->by);
	else if (!e)
		e = store_failure_add_locked(s, r->named[0] ? r->named : NULL, r->by, r->key,
		                             r->now, &f);
	e = store_tx_end(s, e);
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
		store_copy(w->move_id, STORE_ID_MAX, cols[0]);
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

	if (!store_bounded(r->by, sizeof(r->by)))
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
	e = r->by[0] ? store_redeem_allowed_locked(s, r) : 0;
	if (!e)
		e = store_query(s, r->key == STORE_KEY_CODE ? hash_sql(SQL_NODE, nalt) : by_token,
		                p, 2 + (int)nalt, node_row, &w, NULL);
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
	e = store_query(s, sql, p, sql == done || sql == failed ? 4 : 3, NULL, NULL, &changes);
	if (!e && changes)
		e = store_event_add_locked(s, id, at, store_move_state_name(st), reason);
	else if (!e)
		e = store_why_unchanged(s, "SELECT 1 FROM moves WHERE move_id = $1", id);
	e = store_tx_end(s, e);
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
	e = store_query(s, touch, p, 2, NULL, NULL, &changes);
	if (!e && !changes)
		e = ENOENT;
	if (!e)
		e = store_event_add_locked(s, id, at, step, detail);
	e = store_tx_end(s, e);
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
	store_copy(m.id, sizeof(m.id), cols[0]);
	store_copy(m.call_id, sizeof(m.call_id), cols[1]);
	hex_decode(m.token_hash, cols[2]);
	hex_decode(m.code_hash, cols[3]);
	m.state = move_state_parse(cols[4]);
	m.created_at = store_num(cols[5]);
	m.expires_at = store_num(cols[6]);
	m.redeemed_at = store_num(cols[7]);
	m.updated_at = store_num(cols[8]);
	m.finished_at = store_num(cols[9]);
	store_copy(m.redeemed_by, sizeof(m.redeemed_by), cols[10]);
	store_copy(m.reason, sizeof(m.reason), cols[11]);
	m.failures = (int)store_num(cols[12]);
	m.locked = (int)store_num(cols[13]);
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
	e = store_query(s, sql, p, 1, move_row, &r, NULL);
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
	store_hex_encode(hex, hash);
	p[0] = t(id);
	p[1] = t(hex);
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, NULL, NULL, &changes);
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
	store_hex_encode(hex, hash);
	p[0] = t(hex);
	m->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 1, move_row, &r, NULL);
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
	e = call_id ? store_query(s, one, p, 1, move_row, &r, NULL)
	            : store_query(s, all, NULL, 0, move_row, &r, NULL);
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
	store_copy(ev.move_id, sizeof(ev.move_id), cols[0]);
	ev.seq = (int)store_num(cols[1]);
	ev.at = store_num(cols[2]);
	store_copy(ev.step, sizeof(ev.step), cols[3]);
	store_copy(ev.detail, sizeof(ev.detail), cols[4]);
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
	e = store_query(s, sql, p, 1, event_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}
