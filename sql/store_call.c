/* Calls: one row per B2BUA call, its two dialogs and its state. */
#include <errno.h>
#include <string.h>

#include "sql/store.h"
#include "sql/store_int.h"

static const char *const call_states[] = {"setup", "early", "active", "ended"};

#define NCALL_STATES (int)(sizeof(call_states) / sizeof(call_states[0]))

static int call_state_parse(const char *name)
{
	int i;

	for (i = 0; name && i < NCALL_STATES; i++) {
		if (strcmp(name, call_states[i]) == 0)
			return i;
	}
	return STORE_CALL_ENDED;
}

const char *store_call_state_name(enum store_call_state st)
{
	return (int)st >= 0 && (int)st < NCALL_STATES ? call_states[st] : "unknown";
}

struct call_rows {
	store_call_h *each;
	void *arg;
};

void store_call_from_row(struct store_call *c, const char *const *cols)
{
	memset(c, 0, sizeof(*c));
	store_copy(c->id, sizeof(c->id), cols[0]);
	store_copy(c->near.call_id, sizeof(c->near.call_id), cols[1]);
	store_copy(c->near.from_tag, sizeof(c->near.from_tag), cols[2]);
	store_copy(c->near.to_tag, sizeof(c->near.to_tag), cols[3]);
	store_copy(c->near.uri, sizeof(c->near.uri), cols[4]);
	store_copy(c->far.call_id, sizeof(c->far.call_id), cols[5]);
	store_copy(c->far.from_tag, sizeof(c->far.from_tag), cols[6]);
	store_copy(c->far.to_tag, sizeof(c->far.to_tag), cols[7]);
	store_copy(c->far.uri, sizeof(c->far.uri), cols[8]);
	c->state = call_state_parse(cols[9]);
	c->created_at = store_num(cols[10]);
	c->answered_at = store_num(cols[11]);
	c->ended_at = store_num(cols[12]);
}

static int call_row(const char *const *cols, int ncols, void *arg)
{
	struct call_rows *r = arg;
	struct store_call c;

	if (ncols < 13)
		return 1;
	store_call_from_row(&c, cols);
	return r->each(&c, r->arg);
}

static int dialog_ok(const struct store_dialog *d)
{
	return store_bounded(d->call_id, sizeof(d->call_id)) &&
	       store_bounded(d->from_tag, sizeof(d->from_tag)) &&
	       store_bounded(d->to_tag, sizeof(d->to_tag)) && store_bounded(d->uri, sizeof(d->uri));
}

int store_call_insert(struct store *s, const struct store_call *c)
{
	static const char sql[] = "INSERT INTO calls (" STORE_CALL_COLS ", node) VALUES "
	                          "($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)";
	struct store_val p[14];
	int e;

	if (!store_bounded(c->id, sizeof(c->id)) || !c->id[0] || !dialog_ok(&c->near) ||
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
	p[13] = t(store_bounded(c->node, sizeof(c->node)) ? c->node : "");
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 14, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
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
	e = store_query(s, sql, p, sql == other ? 2 : 3, NULL, NULL, &changes);
	if (!e && !changes)
		e = store_why_unchanged(s, "SELECT 1 FROM calls WHERE call_id = $1", id);
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
	e = store_query(s, sql, p, 5, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

static int call_copy(const struct store_call *c, void *arg)
{
	*(struct store_call *)arg = *c;
	return 1;
}

/* The newest call the one-parameter SELECT finds for key (sql is static: the backends cache
 * statements by its address). */
static int call_select(struct store *s, const char *sql, const char *key, struct store_call *c)
{
	struct store_val p[] = {t(key)};
	struct call_rows r = {call_copy, c};
	int e;

	if (!key)
		return EINVAL;
	c->id[0] = '\0';
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 1, call_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e ? e : c->id[0] ? 0 : ENOENT;
}

int store_call_get(struct store *s, const char *id, struct store_call *c)
{
	static const char sql[] = "SELECT " STORE_CALL_COLS " FROM calls WHERE call_id = $1";

	return call_select(s, sql, id, c);
}

int store_call_find(struct store *s, const char *sip_call_id, struct store_call *c)
{
	static const char sql[] =
	    "SELECT " STORE_CALL_COLS " FROM calls WHERE near_call_id = $1 OR "
	    "far_call_id = $1 ORDER BY created_at DESC LIMIT 1";

	return call_select(s, sql, sip_call_id, c);
}

int store_call_list_live(struct store *s, store_call_h *each, void *arg)
{
	static const char sql[] = "SELECT " STORE_CALL_COLS
	                          " FROM calls WHERE state <> 'ended' ORDER BY created_at, call_id";
	struct call_rows r = {each, arg};
	int e;

	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, NULL, 0, call_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}
