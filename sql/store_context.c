/* A call's context (far identity, start, notes), its page's secret hash, and resume codes. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/store_int.h"

static int all_zero(const uint8_t *h)
{
	for (size_t i = 0; i < STORE_HASH_LEN; i++)
		if (h[i])
			return 0;
	return 1;
}

int store_context_put(struct store *s, const struct store_context *ctx,
                      const uint8_t hash[STORE_HASH_LEN])
{
	/* One statement both databases know: insert, or update all but an empty secret. */
	static const char sql[] =
	    "INSERT INTO contexts (call_id, secret_hash, far_identity, far_uri, near_uri, "
	    "started_at, ended_at, resumed_from) VALUES ($1, $2, $3, $4, $5, $6, 0, $7) "
	    "ON CONFLICT (call_id) DO UPDATE SET secret_hash = CASE WHEN $2 = '' THEN "
	    "contexts.secret_hash ELSE $2 END, far_identity = $3, far_uri = $4, near_uri = $5, "
	    "resumed_from = CASE WHEN $7 = '' THEN contexts.resumed_from ELSE $7 END";
	char hex[2 * STORE_HASH_LEN + 1] = "";
	struct store_val p[7];
	int e;

	if (!ctx || !store_bounded(ctx->call_id, sizeof(ctx->call_id)) || !ctx->call_id[0])
		return EINVAL;
	if (hash && !all_zero(hash))
		store_hex_encode(hex, hash);
	p[0] = t(ctx->call_id);
	p[1] = t(hex);
	p[2] = t(ctx->far_identity);
	p[3] = t(ctx->far_uri);
	p[4] = t(ctx->near_uri);
	p[5] = i64(ctx->started_at);
	p[6] = t(ctx->resumed_from);
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 7, NULL, NULL, NULL);
	pthread_mutex_unlock(&s->lock);
	return e;
}

static size_t utf8_seq(const unsigned char *p, size_t n)
{
	size_t want, i;

	if (p[0] < 0x80)
		return 1;
	if ((p[0] & 0xe0) == 0xc0 && p[0] >= 0xc2)
		want = 2;
	else if ((p[0] & 0xf0) == 0xe0)
		want = 3;
	else if ((p[0] & 0xf8) == 0xf0 && p[0] <= 0xf4)
		want = 4;
	else
		return 0;
	if (n < want)
		return 0;
	for (i = 1; i < want; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	/* Overlong three-byte forms and UTF-16 surrogates are no text. */
	if (want == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
		return 0;
	if (want == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90)))
		return 0;
	return want;
}

int store_note_clean(const char *text, size_t n, char *out, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	size_t o = 0, k;

	if (!text || !out || len < 2)
		return EINVAL;
	while (n && isspace(*p))
		p++, n--;
	while (n && isspace(p[n - 1]))
		n--;
	if (!n)
		return EINVAL;
	if (n > (STORE_NOTE_MAX - 1) || n >= len)
		return EMSGSIZE;
	while (n) {
		k = utf8_seq(p, n);
		if (!k)
			return EINVAL;
		if (k == 1 && (*p < 0x20 || *p == 0x7f))
			out[o++] = ' ';
		else
			memcpy(out + o, p, k), o += k;
		p += k;
		n -= k;
	}
	out[o] = '\0';
	return 0;
}

int store_note_add(struct store *s, const char *call_id, int64_t at, const char *text, size_t max)
{
	static const char has[] = "SELECT COUNT(*) FROM contexts WHERE call_id = $1";
	static const char add[] =
	    "INSERT INTO context_notes (call_id, seq, at, text) VALUES ($1, $2, $3, $4)";
	char cut[STORE_NOTE_MAX];
	size_t len = text ? strlen(text) : 0;
	int64_t n = 0;
	struct {
		int64_t n, last;
	} c = {0, 0};
	int e;

	if (!call_id || !text)
		return EINVAL;
	e = store_note_clean(text, len, cut, sizeof(cut));
	if (e)
		return e;
	struct store_val p1[] = {t(call_id)};
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = store_query(s, has, p1, 1, store_row_int, &n, NULL);
	if (!e && !n)
		e = ENOENT;
	if (!e) {
		static const char sn[] = "SELECT COUNT(*) FROM context_notes WHERE call_id = $1";
		static const char sl[] =
		    "SELECT COALESCE(MAX(seq), 0) FROM context_notes WHERE call_id = $1";
		e = store_query(s, sn, p1, 1, store_row_int, &c.n, NULL);
		if (!e)
			e = store_query(s, sl, p1, 1, store_row_int, &c.last, NULL);
	}
	if (!e && (size_t)c.n >= max)
		e = ENOSPC;
	if (!e) {
		struct store_val p[] = {t(call_id), i64(c.last + 1), i64(at), t(cut)};
		e = store_query(s, add, p, 4, NULL, NULL, NULL);
	}
	e = store_tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_context_end(struct store *s, const char *call_id, int64_t at)
{
	static const char sql[] = "UPDATE contexts SET ended_at = $2 WHERE call_id = $1";
	struct store_val p[] = {t(call_id), i64(at)};
	int changes = 0, e;

	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

static int context_row(const char *const *cols, int ncols, void *arg)
{
	struct store_context *c = arg;

	if (ncols < 7)
		return EINVAL;
	store_copy(c->call_id, sizeof(c->call_id), cols[0]);
	store_copy(c->far_identity, sizeof(c->far_identity), cols[1]);
	store_copy(c->far_uri, sizeof(c->far_uri), cols[2]);
	store_copy(c->near_uri, sizeof(c->near_uri), cols[3]);
	c->started_at = store_num(cols[4]);
	c->ended_at = store_num(cols[5]);
	store_copy(c->resumed_from, sizeof(c->resumed_from), cols[6]);
	return 0;
}

static int note_row(const char *const *cols, int ncols, void *arg)
{
	struct store_context *c = arg;
	struct store_note *n;

	if (ncols < 3 || c->nnotes >= STORE_NOTES_MAX)
		return 0;
	n = &c->notes[c->nnotes++];
	n->seq = (int)store_num(cols[0]);
	n->at = store_num(cols[1]);
	store_copy(n->text, sizeof(n->text), cols[2]);
	return 0;
}

static int move_seen(const struct store_move *m, void *arg)
{
	struct store_context *c = arg;

	if (c->nmoves >= STORE_CTX_MOVES)
		return 1;
	c->moves[c->nmoves++] = *m;
	return 0;
}

int store_context_get(struct store *s, const char *call_id, const uint8_t *hash,
                      struct store_context *ctx)
{
#define CONTEXT_COLS                                                                               \
	"SELECT call_id, far_identity, far_uri, near_uri, started_at, ended_at, resumed_from "     \
	"FROM contexts WHERE "
	/* Statements are prepared once per text's address: one constant each. */
	static const char by_id[] = CONTEXT_COLS "call_id = $1";
	static const char by_secret[] = CONTEXT_COLS "secret_hash = $1";
	static const char notes[] =
	    "SELECT seq, at, text FROM context_notes WHERE call_id = $1 ORDER BY seq";
	char hex[2 * STORE_HASH_LEN + 1];
	struct store_val p[1];
	int e;

	if (!ctx || (!call_id && !hash))
		return EINVAL;
	memset(ctx, 0, sizeof(*ctx));
	if (hash) {
		if (all_zero(hash))
			return ENOENT;
		store_hex_encode(hex, hash);
		p[0] = t(hex);
	} else {
		p[0] = t(call_id);
	}
	pthread_mutex_lock(&s->lock);
	e = store_query(s, hash ? by_secret : by_id, p, 1, context_row, ctx, NULL);
	if (!e && !ctx->call_id[0])
		e = ENOENT;
	if (!e) {
		struct store_val q[] = {t(ctx->call_id)};
		e = store_query(s, notes, q, 1, note_row, ctx, NULL);
	}
	pthread_mutex_unlock(&s->lock);
	if (!e)
		e = store_move_list(s, ctx->call_id, move_seen, ctx);
	return e;
}

int store_resume_keep(struct store *s, const uint8_t token[STORE_HASH_LEN], const uint8_t *digits,
                      const char *call_id, const char *far_uri, const char *device, int64_t expires,
                      int *digits_kept)
{
	static const char sql[] =
	    "INSERT INTO resumes (token_hash, call_id, far_uri, expires_at, device) "
	    "VALUES ($1, $2, $3, $4, $5)";
	/* The digits' row is kept only when no other code has its hash: a collision (10^-16 per
	 * pair) leaves the code without its digits rather than two codes with one hash. */
	static const char alt[] =
	    "INSERT INTO resumes (token_hash, call_id, far_uri, expires_at, device) "
	    "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (token_hash) DO NOTHING";
	char hex[2 * STORE_HASH_LEN + 1];
	int e, changes = 0;

	if (digits_kept)
		*digits_kept = 0;
	if (!token || !call_id || !far_uri)
		return EINVAL;
	if (!device)
		device = "";
	store_hex_encode(hex, token);
	struct store_val p[] = {t(hex), t(call_id), t(far_uri), i64(expires), t(device)};
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = store_query(s, sql, p, 5, NULL, NULL, NULL);
	if (!e && digits) {
		store_hex_encode(hex, digits);
		e = store_query(s, alt, p, 5, NULL, NULL, &changes);
	}
	e = store_tx_end(s, e);
	if (!e && digits_kept)
		*digits_kept = changes > 0;
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_resume_insert(struct store *s, const uint8_t hash[STORE_HASH_LEN], const char *call_id,
                        const char *far_uri, int64_t expires)
{
	return store_resume_keep(s, hash, NULL, call_id, far_uri, "", expires, NULL);
}

struct resume_row {
	char *call_id, *far_uri, *device;
	int found;
};

static int resume_row(const char *const *cols, int ncols, void *arg)
{
	struct resume_row *r = arg;

	if (ncols < 3)
		return EINVAL;
	store_copy(r->call_id, STORE_ID_MAX, cols[0]);
	store_copy(r->far_uri, STORE_URI_MAX, cols[1]);
	if (r->device)
		store_copy(r->device, STORE_URI_MAX, cols[2]);
	r->found = 1;
	return 0;
}

int store_resume_use(struct store *s, const uint8_t (*hashes)[STORE_HASH_LEN], unsigned n,
                     enum store_key kind, int peek, const char *source, int64_t now, char *call_id,
                     char *far_uri, char *device, int64_t *wait_ms)
{
	/* Exactly one taker: the row changes from unused to used in one statement; its sibling
	 * (the same code's other form) is used with it. */
	static const char take[] =
	    "UPDATE resumes SET used_at = $2 WHERE token_hash = $1 AND used_at = 0 AND "
	    "expires_at > $2 RETURNING call_id, far_uri, device";
	static const char look[] = "SELECT call_id, far_uri, device FROM resumes WHERE "
	                           "token_hash = $1 AND used_at = 0 AND expires_at > $2";
	static const char both[] =
	    "UPDATE resumes SET used_at = $2 WHERE call_id = $1 AND used_at = 0";
	struct store_redeem r;
	struct store_failure f;
	struct resume_row row = {call_id, far_uri, device, 0};
	char hex[2 * STORE_HASH_LEN + 1];
	int e;

	if (!hashes || !n || !source || !call_id || !far_uri)
		return EINVAL;
	memset(&r, 0, sizeof(r));
	r.key = kind;
	r.now = now;
	store_copy(r.by, sizeof(r.by), source);
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	e = store_redeem_allowed_locked(s, &r);
	if ((e == EAGAIN || e == EBUSY) && wait_ms)
		*wait_ms = r.wait_ms;
	for (unsigned i = 0; !e && !row.found && i < n; i++) {
		store_hex_encode(hex, hashes[i]);
		struct store_val p[] = {t(hex), i64(now)};
		e = store_query(s, peek ? look : take, p, 2, resume_row, &row, NULL);
	}
	if (!e && row.found && !peek) {
		struct store_val p[] = {t(call_id), i64(now)};
		e = store_query(s, both, p, 2, NULL, NULL, NULL);
	}
	if (!e && !row.found) {
		memset(&f, 0, sizeof(f));
		e = store_failure_add_locked(s, NULL, source, kind, now, &f);
		/* The failure is counted: keep it. */
		e = store_tx_end(s, e);
		if (!e)
			e = ENOENT;
		goto out;
	}
	e = store_tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	return e;
}

int store_resume_take(struct store *s, const uint8_t hash[STORE_HASH_LEN], const char *source,
                      int64_t now, char *call_id, char *far_uri, int64_t *wait_ms)
{
	return store_resume_use(s, (const uint8_t(*)[STORE_HASH_LEN])hash, 1, STORE_KEY_TOKEN, 0,
	                        source, now, call_id, far_uri, NULL, wait_ms);
}

int store_context_bridge_set(struct store *s, const char *call_id, const char *text)
{
	static const char sql[] = "UPDATE contexts SET bridge = $2 WHERE call_id = $1";
	int changes = 0, e;

	if (!call_id || !text)
		return EINVAL;
	struct store_val p[] = {t(call_id), t(text)};
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 2, NULL, NULL, &changes);
	pthread_mutex_unlock(&s->lock);
	return e ? e : changes ? 0 : ENOENT;
}

struct text_row {
	char *text;
	int found;
};

static int text_row(const char *const *cols, int ncols, void *arg)
{
	struct text_row *r = arg;

	if (ncols < 1 || r->found)
		return ncols < 1 ? EINVAL : 0;
	r->found = 1;
	r->text = strdup(cols[0] ? cols[0] : "");
	return r->text ? 0 : ENOMEM;
}

int store_context_bridge_get(struct store *s, const char *call_id, char **text)
{
	static const char sql[] = "SELECT bridge FROM contexts WHERE call_id = $1";
	struct text_row r = {NULL, 0};
	int e;

	if (!call_id || !text)
		return EINVAL;
	*text = NULL;
	struct store_val p[] = {t(call_id)};
	pthread_mutex_lock(&s->lock);
	e = store_query(s, sql, p, 1, text_row, &r, NULL);
	pthread_mutex_unlock(&s->lock);
	if (!e && !r.found)
		e = ENOENT;
	if (e) {
		free(r.text);
		return e;
	}
	*text = r.text;
	return 0;
}
