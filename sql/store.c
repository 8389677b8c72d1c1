/* The store's life (open, migrate, close) and what its operations share. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql/store.h"
#include "sql/store_int.h"

#include <sofia-sip/su_wait.h>
#include "util/log.h"
#include "util/queue.h"

static const struct store_limits default_limits = {
    .max_failures = 5,
    .window_ms = 600000,
    .slow_base_ms = 60000,
    .slow_max_ms = 900000,
    .numeric_budget = 30,
    .budget_window_ms = 60000,
};

void store_copy(char *dst, size_t n, const char *src)
{
	size_t len = src ? strlen(src) : 0;

	if (len >= n)
		len = n - 1;
	memcpy(dst, src ? src : "", len);
	dst[len] = '\0';
}

int64_t store_num(const char *text)
{
	return text ? strtoll(text, NULL, 10) : 0;
}

/* A caller's fixed buffer holds a terminated string. */
int store_bounded(const char *text, size_t n)
{
	return text && strnlen(text, n) < n;
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

int store_query(struct store *s, const char *sql, const struct store_val *p, int n,
                store_row_h *row, void *arg, int *changesp)
{
	return s->ops->query(s->conn, sql, p, n, row, arg, changesp);
}

/* Ends a transaction: commit if all went well, else roll back and keep the first error. */
int store_tx_end(struct store *s, int e)
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

int store_row_int(const char *const *cols, int ncols, void *arg)
{
	*(int64_t *)arg = ncols > 0 ? store_num(cols[0]) : 0;
	return 1;
}

static int row_flag(const char *const *cols, int ncols, void *arg)
{
	*(int *)arg = 1;
	return 1;
}

/* Tells a missing row (ENOENT) from one in a state that refused the change (EALREADY). */
int store_why_unchanged(struct store *s, const char *sql, const char *id)
{
	struct store_val p[] = {t(id)};
	int found = 0;
	int e = store_query(s, sql, p, 1, row_flag, &found, NULL);

	return e ? e : found ? EALREADY : ENOENT;
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
		e = store_query(s, get, NULL, 0, store_row_int, &version, NULL);
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
			e = store_query(s, add, p, 3, NULL, NULL, NULL);
		if (e) {
			snprintf(err, errlen, "migration %03d_%s failed", m->version, m->name);
			goto out;
		}
	}
out:
	e = store_tx_end(s, e);
	if (e && !*err)
		snprintf(err, errlen, "migrate: cannot commit");
	return e;
}

int store_schema_version(struct store *s, int *versionp)
{
	int64_t version = 0;
	int e;

	pthread_mutex_lock(&s->lock);
	e = store_query(s, "SELECT COALESCE(MAX(version), 0) FROM store_schema", NULL, 0,
	                store_row_int, &version, NULL);
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
	{
		/* Recursive: a batch holds it across its transaction while each job takes it. */
		pthread_mutexattr_t a;

		pthread_mutexattr_init(&a);
		pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
		pthread_mutex_init(&s->lock, &a);
		pthread_mutexattr_destroy(&a);
	}
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

void store_close(struct store *s)
{
	if (!s)
		return;
	store_flush(s);   /* writes still waiting to go in a batch */
	queue_free(s->q); /* runs what is queued and delivers its completions */
	if (s->batch_timer)
		su_timer_destroy(s->batch_timer);
	store_kept_close(s);
	s->ops->close(s->conn);
	pthread_mutex_destroy(&s->lock);
	free(s);
}
