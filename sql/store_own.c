/* Own devices: the bindings (AOR -> contact, with the flow the REGISTER came on). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sql/store.h"
#include "sql/store_int.h"

#define BINDING_COLS "aor, contact, flow, expires_at, updated_at"
#define BINDINGS_MAX 64 /* contacts of one AOR listed at most (the LIMIT below) */

static void binding_from_row(struct store_binding *b, const char *const *cols)
{
	store_copy(b->aor, sizeof(b->aor), cols[0]);
	store_copy(b->contact, sizeof(b->contact), cols[1]);
	store_copy(b->flow, sizeof(b->flow), cols[2]);
	b->expires_at = store_num(cols[3]);
	b->updated_at = store_num(cols[4]);
}

int store_binding_put(struct store *s, const struct store_binding *b, int64_t now)
{
	static const char put[] =
	    "INSERT INTO bindings (" BINDING_COLS ") VALUES ($1, $2, $3, $4, $5) "
	    "ON CONFLICT (aor, contact) DO UPDATE SET flow = excluded.flow, "
	    "expires_at = excluded.expires_at, updated_at = excluded.updated_at";
	static const char del[] = "DELETE FROM bindings WHERE aor = $1 AND contact = $2";
	struct store_val p[] = {t(b->aor), t(b->contact), t(b->flow), i64(b->expires_at),
	                        i64(b->updated_at ? b->updated_at : now)};
	int e;

	if (!store_bounded(b->aor, sizeof(b->aor)) || !b->aor[0] ||
	    !store_bounded(b->contact, sizeof(b->contact)) || !b->contact[0] ||
	    !store_bounded(b->flow, sizeof(b->flow)))
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = b->expires_at > now ? store_query(s, put, p, 5, NULL, NULL, NULL)
	                        : store_query(s, del, p, 2, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

static int one_row(const char *const *cols, int ncols, void *arg)
{
	if (ncols < 5)
		return EIO;
	binding_from_row(arg, cols);
	return 1;
}

int store_binding_by_flow(struct store *s, const char *flow, int64_t now, struct store_binding *b)
{
	static const char sql[] = "SELECT " BINDING_COLS " FROM bindings WHERE flow = $1 AND "
	                          "expires_at > $2 ORDER BY updated_at DESC LIMIT 1";
	struct store_val p[] = {t(flow), i64(now)};
	int e;

	if (!flow || !b)
		return EINVAL;
	memset(b, 0, sizeof(*b));
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, one_row, b, NULL);
	pthread_mutex_unlock(&s->lock);
	if (e == 1)
		e = 0;
	return e ? e : b->aor[0] ? 0 : ENOENT;
}

struct binding_rows {
	struct store_binding *v;
	size_t n;
};

static int list_row(const char *const *cols, int ncols, void *arg)
{
	struct binding_rows *r = arg;

	if (ncols < 5)
		return EIO;
	if (r->n >= BINDINGS_MAX)
		return 1;
	binding_from_row(&r->v[r->n++], cols);
	return 0;
}

int store_binding_list(struct store *s, const char *aor, int64_t now, struct store_binding **vp,
                       size_t *np)
{
	static const char sql[] = "SELECT " BINDING_COLS " FROM bindings WHERE aor = $1 AND "
	                          "expires_at > $2 ORDER BY updated_at DESC LIMIT 64";
	struct store_val p[] = {t(aor), i64(now)};
	struct binding_rows r = {calloc(BINDINGS_MAX, sizeof(struct store_binding)), 0};
	int e;

	*vp = NULL;
	*np = 0;
	if (!r.v)
		return ENOMEM;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, list_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	if (e == 1)
		e = 0;
	if (e || !r.n) {
		free(r.v);
		return e;
	}
	*vp = r.v;
	*np = r.n;
	return 0;
}

/* ---- across nodes: a call's near AOR, and the proximity hints ---- */

int store_call_aor_set(struct store *s, const char *id, const char *aor)
{
	static const char sql[] = "UPDATE calls SET near_aor = $2 WHERE call_id = $1";
	struct store_val p[] = {t(id), t(aor)};
	int n = 0, e;

	if (!id || !id[0] || !aor || strlen(aor) >= STORE_URI_MAX)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, NULL, NULL, &n);
	pthread_mutex_unlock(&s->lock);
	return e ? e : n ? 0 : ENOENT;
}

static int call_node_row(const char *const *cols, int ncols, void *arg)
{
	struct store_call *c = arg;

	if (ncols < 2)
		return EIO;
	store_copy(c->id, sizeof(c->id), cols[0]);
	store_copy(c->node, sizeof(c->node), cols[1]);
	return 1;
}

int store_call_by_aor(struct store *s, const char *aor, const char *me, int64_t now,
                      struct store_call *call)
{
	/* calls_aor_live serves it: the AOR's live calls, newest first, until one whose node
	 * lives (a dead node's calls wait for their take-over) */
	static const char sql[] =
	    "SELECT c.call_id, c.node FROM calls c LEFT JOIN nodes n ON n.node = c.node "
	    "WHERE c.near_aor = $1 AND c.state <> 'ended' AND (c.node = $2 OR n.node IS NULL OR "
	    "n.lease_until > $3) ORDER BY c.created_at DESC LIMIT 1";
	struct store_val p[] = {t(aor), t(me ? me : ""), i64(now)};
	int e;

	if (!aor || !aor[0] || !call)
		return EINVAL;
	memset(call, 0, sizeof(*call));
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 3, call_node_row, call, NULL);
	pthread_mutex_unlock(&s->lock);
	if (e == 1)
		e = 0;
	return e ? e : call->id[0] ? 0 : ENOENT;
}

int store_hint_put(struct store *s, const struct store_hint *h)
{
	static const char sql[] =
	    "INSERT INTO near_hints (aor, device, seen_at, expires_at) VALUES ($1, $2, $3, $4) "
	    "ON CONFLICT (aor, device) DO UPDATE SET seen_at = excluded.seen_at, "
	    "expires_at = excluded.expires_at";
	struct store_val p[] = {t(h->aor), t(h->device), i64(h->seen_at), i64(h->expires_at)};
	int e;

	if (!store_bounded(h->aor, sizeof(h->aor)) || !h->aor[0] ||
	    !store_bounded(h->device, sizeof(h->device)) || !h->device[0])
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 4, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

struct hint_rows {
	struct store_hint *v;
	size_t n;
};

static int hint_row(const char *const *cols, int ncols, void *arg)
{
	struct hint_rows *r = arg;
	struct store_hint *h;

	if (ncols < 4)
		return EIO;
	if (r->n >= BINDINGS_MAX)
		return 1;
	h = &r->v[r->n++];
	store_copy(h->aor, sizeof(h->aor), cols[0]);
	store_copy(h->device, sizeof(h->device), cols[1]);
	h->seen_at = store_num(cols[2]);
	h->expires_at = store_num(cols[3]);
	return 0;
}

int store_hint_list(struct store *s, const char *aor, int64_t now, struct store_hint **vp,
                    size_t *np)
{
	static const char sql[] = "SELECT aor, device, seen_at, expires_at FROM near_hints WHERE "
	                          "aor = $1 AND expires_at > $2 ORDER BY seen_at DESC LIMIT 64";
	struct store_val p[] = {t(aor), i64(now)};
	struct hint_rows r = {NULL, 0};
	int e;

	*vp = NULL;
	*np = 0;
	if (!aor)
		return EINVAL;
	r.v = calloc(BINDINGS_MAX, sizeof(*r.v));
	if (!r.v)
		return ENOMEM;
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, hint_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	if (e == 1)
		e = 0;
	if (e || !r.n) {
		free(r.v);
		return e;
	}
	*vp = r.v;
	*np = r.n;
	return 0;
}

int store_binding_on_flow(struct store *s, const char *flow, const char *aor, int64_t now,
                          struct store_binding **vp, size_t *np)
{
	static const char sql[] = "SELECT " BINDING_COLS " FROM bindings WHERE flow = $1 AND "
	                          "expires_at > $2 ORDER BY updated_at DESC LIMIT 64";
	/* By the AOR alone (the primary key; the flow is compared here): a flow may carry
	 * thousands of AORs, and a planner choosing the flow's index would read them all. */
	static const char of_aor[] = "SELECT " BINDING_COLS " FROM bindings WHERE aor = $1 AND "
	                             "expires_at > $2 ORDER BY updated_at DESC LIMIT 64";
	struct store_val p[] = {t(flow), i64(now)}, pa[] = {t(aor ? aor : ""), i64(now)};
	struct binding_rows r = {NULL, 0};
	int e = 0;

	*vp = NULL;
	*np = 0;
	if (!flow || !flow[0])
		return EINVAL;
	r.v = calloc(BINDINGS_MAX, sizeof(struct store_binding));
	if (!r.v)
		return ENOMEM;
	pthread_mutex_lock(&s->lock);
	/* The AOR claimed first: a flow may carry more AORs than one page (a gateway's). */
	if (aor && aor[0]) {
		size_t k = 0;

		e = store_query(s, of_aor, pa, 2, list_row, &r, NULL);
		for (size_t i = 0; !e && i < r.n; i++)
			if (!strcmp(r.v[i].flow, flow))
				r.v[k++] = r.v[i];
		r.n = e ? 0 : k ? 1 : 0; /* the newest of that AOR on the flow */
		if (e == 1)
			e = 0;
	}
	if (!e && !r.n)
		e = store_query(s, sql, p, 2, list_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	if (e == 1)
		e = 0;
	if (e || !r.n) {
		free(r.v);
		return e ? e : ENOENT;
	}
	*vp = r.v;
	*np = r.n;
	return 0;
}

/* Whether contact is one of the lines of keep. */
static int kept(const char *keep, const char *contact)
{
	size_t n = strlen(contact);

	for (const char *p = keep; p && *p;) {
		const char *e = strchr(p, '\n');
		size_t len = e ? (size_t)(e - p) : strlen(p);

		if (len == n && !memcmp(p, contact, n))
			return 1;
		p = e ? e + 1 : p + len;
	}
	return 0;
}

struct sync_rows {
	char (*contact)[STORE_URI_MAX];
	size_t n;
	const char *flow; /* only the rows on this flow; NULL: all */
};

static int sync_row(const char *const *cols, int ncols, void *arg)
{
	struct sync_rows *r = arg;

	if (ncols < 2)
		return EIO;
	if (r->n >= BINDINGS_MAX)
		return 1;
	if (!r->flow || (cols[1] && !strcmp(cols[1], r->flow)))
		store_copy(r->contact[r->n++], STORE_URI_MAX, cols[0]);
	return 0;
}

int store_binding_sync(struct store *s, const char *aor, const char *flow, const char *keep,
                       size_t *removed)
{
	/* By the AOR alone (the primary key), the flow compared here: see store_binding_on_flow */
	static const char every[] = "SELECT contact, flow FROM bindings WHERE aor = $1 LIMIT 64";
	static const char del[] = "DELETE FROM bindings WHERE aor = $1 AND contact = $2";
	struct store_val p[] = {t(aor)};
	struct sync_rows r = {calloc(BINDINGS_MAX, STORE_URI_MAX), 0, flow};
	int e;

	*removed = 0;
	if (!r.contact)
		return ENOMEM;
	if (!aor || !aor[0]) {
		free(r.contact);
		return EINVAL;
	}
	pthread_mutex_lock(&s->lock);
	e = store_query(s, every, p, 1, sync_row, &r, NULL);
	if (e == 1)
		e = 0;
	for (size_t i = 0; !e && i < r.n; i++) {
		struct store_val d[] = {t(aor), t(r.contact[i])};

		if (kept(keep, r.contact[i]))
			continue;
		e = store_query(s, del, d, 2, NULL, NULL, NULL);
		if (!e)
			++*removed;
	}
	pthread_mutex_unlock(&s->lock);
	free(r.contact);
	return e;
}
