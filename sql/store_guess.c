/* Wrong guesses: counted per source and per move, a source's lockout, the node-wide budget. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include "sql/store.h"
#include "sql/store_int.h"

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
		r->n = store_num(cols[0]);
		r->last = store_num(cols[1]);
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
	int e = store_query(s, sql, p, 2, source_row, &r, NULL);

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
	int e = store_query(s, sql, p, 1, source_row, &r, NULL);

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
		r->failures = (int)store_num(cols[0]);
		r->locked = (int)store_num(cols[1]);
	}
	return 1;
}

/* Counts a failure inside the caller's transaction. */
int store_failure_add_locked(struct store *s, const char *move_id, const char *source,
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
		e = store_query(s, bump, pb, 3, count_row, &r, NULL);
		if (e)
			return e;
	}
	if (r.found) {
		f->move_failures = r.failures;
		f->move_locked = r.locked;
		e = store_event_add_locked(s, move_id, now, "failure", source);
		if (!e && r.locked && r.failures == s->lim.max_failures)
			e = store_event_add_locked(s, move_id, now, "locked", source);
		if (e)
			return e;
	}
	{
		struct store_val pa[] = {t(source), r.found ? t(move_id) : null(), i64(now),
		                         i64(kind == STORE_KEY_CODE)};

		return store_query(s, add, pa, 4, NULL, NULL, NULL);
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
	e = store_failure_add_locked(s, move_id, source, kind, now, &f);
	e = store_tx_end(s, e);
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

/* Source lock and, for numeric codes, the node-wide budget: EAGAIN or EBUSY with r->wait_ms. */
int store_redeem_allowed_locked(struct store *s, struct store_redeem *r)
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
