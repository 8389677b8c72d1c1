/*
 * Survival: a live call's dialog state, the nodes' leases, and which node serves a call once
 * the node that served it died. Exactly-once rests on the rows themselves: an adopter claims the
 * dead node's row in nodes before it moves its calls, and every move of a call is a
 * compare-and-set on calls.node (on PostgreSQL, an UPDATE waits for a concurrent one and checks
 * its WHERE again against the row it committed).
 *
 * A node with live calls and no row in nodes (calls written before migration 5, or a node that
 * never beat) counts as dead, unless it is me: it renews no lease, so nothing says it lives.
 * Calls with no node ('') are nobody's to adopt; store_call_take takes them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sql/store.h"
#include "sql/store_int.h"

#define NODE_COLS  STORE_CALL_COLS ", node, dialogs"
#define TAKE_TRIES 3 /* a take that keeps losing its compare-and-set answers EBUSY */

/* Fills c from NODE_COLS; c->dialogs points into the row (NULL when the call has no state). */
static int call_full(struct store_call *c, const char *const *cols, int ncols)
{
	if (ncols < 15)
		return EIO;
	store_call_from_row(c, cols);
	store_copy(c->node, sizeof(c->node), cols[13]);
	c->dialogs = cols[14] && cols[14][0] ? (char *)cols[14] : NULL;
	return 0;
}

int store_call_dialogs_set(struct store *s, const char *id, const char *dialogs, int64_t at)
{
	static const char sql[] =
	    "UPDATE calls SET dialogs = $2 WHERE call_id = $1 AND state <> 'ended'";
	struct store_val p[] = {t(id), t(dialogs)};
	int changes = 0, e;

	(void)at; /* writes land in the order they were made: the last one wins */
	if (!id || !dialogs)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

int store_node_beat(struct store *s, const char *node, int64_t now, int64_t lease_ms, int draining)
{
	static const char sql[] =
	    "INSERT INTO nodes (node, lease_until, draining) VALUES ($1, $2, $3) "
	    "ON CONFLICT (node) DO UPDATE SET lease_until = excluded.lease_until, "
	    "draining = excluded.draining";
	struct store_val p[] = {t(node), i64(now + lease_ms), i64(draining ? 1 : 0)};
	int e;

	if (!node || !node[0] || lease_ms < 0)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 3, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* Live calls read back: rows of STATE_COLS appended, dialogs copied to malloc. */
#define STATE_COLS "call_id, created_at, dialogs"

struct states {
	struct store_live *v;
	size_t n, cap;
	int err;
};

static int state_row(const char *const *cols, int ncols, void *arg)
{
	struct states *st = arg;
	struct store_live *cs;

	if (ncols < 3 || !cols[0]) {
		st->err = EIO;
		return 1;
	}
	if (st->n == st->cap) {
		size_t cap = st->cap ? st->cap * 2 : 64;
		struct store_live *grown = realloc(st->v, cap * sizeof(*grown));

		if (!grown) {
			st->err = ENOMEM;
			return 1;
		}
		st->v = grown;
		st->cap = cap;
	}
	cs = &st->v[st->n];
	store_copy(cs->id, sizeof(cs->id), cols[0]);
	cs->created_at = store_num(cols[1]);
	cs->dialogs = NULL;
	if (cols[2] && cols[2][0] && !(cs->dialogs = strdup(cols[2]))) {
		st->err = ENOMEM;
		return 1;
	}
	st->n++;
	return 0;
}

void store_live_free(struct store_live *v, size_t n)
{
	for (size_t i = 0; v && i < n; i++)
		free(v[i].dialogs);
	free(v);
}

/* Hands the list over on success, frees it otherwise. */
static int states_out(struct states *st, int e, struct store_live **vp, size_t *np)
{
	if (!e)
		e = st->err;
	if (e) {
		store_live_free(st->v, st->n);
		return e;
	}
	*vp = st->v;
	*np = st->n;
	return 0;
}

int store_call_list_node(struct store *s, const char *node, int64_t after_at, const char *after_id,
                         size_t limit, struct store_live **vp, size_t *np)
{
	/* the partial index calls_node_live (migration 6) serves it in this order: a page costs
	 * its rows, not the node's whole history of ended calls */
	static const char sql[] = "SELECT " STATE_COLS " FROM calls WHERE node = $1 AND state <> "
	                          "'ended' AND dialogs <> '' AND (created_at, call_id) > ($2, $3) "
	                          "ORDER BY created_at, call_id LIMIT $4";
	struct store_val p[] = {t(node), i64(after_id && after_id[0] ? after_at : INT64_MIN),
	                        t(after_id ? after_id : ""),
	                        i64(limit && limit < INT64_MAX ? (int64_t)limit : INT64_MAX)};
	struct states st = {0};
	int e;

	if (!node || !vp || !np)
		return EINVAL;
	*vp = NULL;
	*np = 0;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 4, state_row, &st, NULL);
	pthread_mutex_unlock(&s->lock);
	return states_out(&st, e, vp, np);
}

static int older(const void *a, const void *b)
{
	const struct store_live *x = a, *y = b;

	if (x->created_at != y->created_at)
		return x->created_at < y->created_at ? -1 : 1;
	return strcmp(x->id, y->id);
}

static int row_text(const char *const *cols, int ncols, void *arg)
{
	store_copy(arg, STORE_URI_MAX, ncols > 0 ? cols[0] : NULL);
	return 1;
}

int store_node_adopt(struct store *s, const char *me, int64_t now, char *dead, size_t len,
                     struct store_live **vp, size_t *np)
{
	/* the dead node whose oldest live call is the oldest; every node asks every second, so
	 * the live states are named (the calls_state index), not "<> 'ended'" (every call kept) */
	static const char pick[] =
	    "SELECT c.node FROM calls c LEFT JOIN nodes n ON n.node = c.node "
	    "WHERE c.state IN ('setup', 'early', 'active') AND c.node <> '' AND c.node <> $1 "
	    "AND (n.node IS NULL OR n.lease_until < $2) ORDER BY c.created_at, c.call_id LIMIT 1";
	/* a node without a row gets one, expired, so that the claim below locks something */
	static const char row[] =
	    "INSERT INTO nodes (node, lease_until) VALUES ($1, -1) ON CONFLICT (node) DO NOTHING";
	/* 0 rows: the node renewed its lease meanwhile (PostgreSQL re-checks after its commit) */
	static const char claim[] =
	    "UPDATE nodes SET lease_until = -1 WHERE node = $1 AND lease_until < $2";
	static const char move[] = "UPDATE calls SET node = $2 WHERE node = $1 AND state <> "
	                           "'ended' RETURNING " STATE_COLS;
	struct store_val pp[] = {t(me), i64(now)};
	struct store_val px[2];
	struct states st = {0};
	char x[STORE_URI_MAX] = "";
	int changes = 0, e;

	if (!me || !me[0] || !vp || !np)
		return EINVAL;
	*vp = NULL;
	*np = 0;
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = store_query(s, pick, pp, 2, row_text, x, NULL);
	if (!e && !x[0])
		e = ENOENT;
	px[0] = t(x);
	px[1] = i64(now);
	if (!e)
		e = store_query(s, row, px, 1, NULL, NULL, NULL);
	if (!e)
		e = store_query(s, claim, px, 2, NULL, NULL, &changes);
	if (!e && !changes)
		e = ENOENT;
	px[1] = t(me);
	if (!e)
		e = store_query(s, move, px, 2, state_row, &st, NULL);
	if (!e)
		e = st.err;
	if (!e && !st.n)
		e = ENOENT; /* another adopter took them first */
	e = store_tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	if (!e) {
		if (dead && len)
			store_copy(dead, len, x);
		qsort(st.v, st.n, sizeof(*st.v), older);
	}
	return states_out(&st, e, vp, np);
}

/* The call a take found, with its dialogs from malloc and its node's lease if it has a row. */
struct found {
	struct store_call *c;
	int n;
	int leased;
	int64_t lease_until;
	int err;
};

static int found_row(const char *const *cols, int ncols, void *arg)
{
	struct found *f = arg;

	if (ncols < 16 || call_full(f->c, cols, ncols)) {
		f->err = EIO;
		return 1;
	}
	if (f->c->dialogs && !(f->c->dialogs = strdup(f->c->dialogs)))
		f->err = ENOMEM;
	f->leased = cols[15] != NULL;
	f->lease_until = store_num(cols[15]);
	f->n = 1;
	return 1;
}

int store_call_take(struct store *s, const char *sip_call_id, const char *me, int64_t now,
                    struct store_call *call)
{
	static const char find[] =
	    "SELECT " STORE_CALL_COLS ", c.node, c.dialogs, n.lease_until FROM calls c "
	    "LEFT JOIN nodes n ON n.node = c.node "
	    "WHERE (c.near_call_id = $1 OR c.far_call_id = $1) AND c.state <> 'ended' "
	    "ORDER BY c.created_at DESC LIMIT 1";
	/* holds the owner's row, so that its renewal waits for this take, or wins before it */
	static const char hold[] =
	    "UPDATE nodes SET lease_until = lease_until WHERE node = $1 AND lease_until < $2";
	static const char cas[] =
	    "UPDATE calls SET node = $3 WHERE call_id = $1 AND node = $2 AND state <> 'ended'";
	struct store_val pf[] = {t(sip_call_id)};
	struct store_val p[3];
	struct found f = {call};
	char owner[STORE_URI_MAX];
	int changes, again = 1, e = 0;

	if (!call)
		return EINVAL;
	call->dialogs = NULL;
	if (!sip_call_id || !me || !me[0])
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	for (int try = 0; again && try < TAKE_TRIES; try++) {
		again = 0;
		free(call->dialogs);
		call->dialogs = NULL;
		f.n = 0;
		f.err = 0;
		e = s->ops->begin(s->conn);
		if (e)
			break;
		e = store_query(s, find, pf, 1, found_row, &f, NULL);
		if (!e)
			e = f.err ? f.err : f.n ? 0 : ENOENT;
		call->lease_until = f.leased ? f.lease_until : 0;
		if (e || strcmp(call->node, me) == 0)
			goto end; /* none, or me serves it already */
		if (f.leased && f.lease_until >= now) {
			e = EBUSY;
			goto end;
		}
		store_copy(owner, sizeof(owner), call->node);
		p[0] = t(owner);
		p[1] = i64(now);
		changes = 1;
		if (f.leased)
			e = store_query(s, hold, p, 2, NULL, NULL, &changes);
		if (!e && !changes)
			e = EBUSY; /* it renewed its lease meanwhile */
		if (e)
			goto end;
		p[0] = t(call->id);
		p[1] = t(owner);
		p[2] = t(me);
		e = store_query(s, cas, p, 3, NULL, NULL, &changes);
		if (!e && !changes)
			again = 1; /* another node took it, or it ended: look again */
		if (!e && changes)
			store_copy(call->node, sizeof(call->node), me);
	end:
		e = store_tx_end(s, again ? EAGAIN : e);
		if (again)
			e = EBUSY;
	}
	pthread_mutex_unlock(&s->lock);
	if (e) {
		free(call->dialogs);
		call->dialogs = NULL;
	}
	return e;
}
