/* The SQLite backend: one connection in WAL mode, prepared statements kept per SQL text. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

#include "sql/store_int.h"
#include "util/log.h"

#define BUSY_TIMEOUT_MS 5000
#define NCACHE          48

struct cached {
	const char *sql; /* the caller's static text: compared by address */
	sqlite3_stmt *stmt;
};

struct store_conn {
	sqlite3 *db;
	struct cached cache[NCACHE];
	int ncache;
};

static int sqlite_err(sqlite3 *db, int rc, const char *what)
{
	int ext = sqlite3_extended_errcode(db);

	if (rc == SQLITE_CONSTRAINT &&
	    (ext == SQLITE_CONSTRAINT_PRIMARYKEY || ext == SQLITE_CONSTRAINT_UNIQUE))
		return EEXIST;
	if (rc == SQLITE_CONSTRAINT && ext == SQLITE_CONSTRAINT_FOREIGNKEY)
		return ENOENT; /* the call or move it names does not exist */
	if (rc == SQLITE_CONSTRAINT)
		return EINVAL;
	LOG_ERR("store", "%s: %s", what, sqlite3_errmsg(db));
	if (rc == SQLITE_BUSY || rc == SQLITE_LOCKED)
		return EBUSY;
	if (rc == SQLITE_NOMEM)
		return ENOMEM;
	return EIO;
}

/* Accepts sqlite:///abs/path, sqlite://relative/path, sqlite:path and sqlite::memory:. */
static const char *url_path(const char *url)
{
	if (strncmp(url, "sqlite:", 7) != 0)
		return NULL;
	url += 7;
	if (strncmp(url, "//", 2) == 0)
		url += 2;
	return *url ? url : NULL;
}

/* timeout_ms is for servers; SQLite's waits are its busy timeout. */
static int sqlite_open(struct store_conn **cp, const char *url, int timeout_ms, char *err,
                       size_t errlen)
{
	static const char setup[] = "PRAGMA busy_timeout = 5000;"
	                            "PRAGMA journal_mode = WAL;"
	                            "PRAGMA synchronous = NORMAL;"
	                            "PRAGMA foreign_keys = ON;"
	                            "PRAGMA cache_size = -16384;";
	struct store_conn *c = NULL;
	const char *path = url_path(url);
	char *msg = NULL;
	int rc, e = 0;

	if (!path) {
		snprintf(err, errlen, "not a sqlite URL: %s", url);
		return EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	rc = sqlite3_open_v2(path, &c->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path,
		         c->db ? sqlite3_errmsg(c->db) : "out of memory");
		e = rc == SQLITE_NOMEM ? ENOMEM : EIO;
		goto out;
	}
	sqlite3_busy_timeout(c->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_exec(c->db, setup, NULL, NULL, &msg);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "%s: %s", path, msg ? msg : sqlite3_errstr(rc));
		e = EIO;
		goto out;
	}
	*cp = c;
	c = NULL;
out:
	sqlite3_free(msg);
	if (c) {
		sqlite3_close(c->db);
		free(c);
	}
	return e;
}

static void sqlite_close(struct store_conn *c)
{
	int i;

	if (!c)
		return;
	for (i = 0; i < c->ncache; i++)
		sqlite3_finalize(c->cache[i].stmt);
	sqlite3_close(c->db);
	free(c);
}

static int sqlite_exec(struct store_conn *c, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(c->db, sql, NULL, NULL, &msg);

	if (rc != SQLITE_OK) {
		LOG_ERR("store", "exec: %s", msg ? msg : sqlite3_errstr(rc));
		sqlite3_free(msg);
		return rc == SQLITE_BUSY ? EBUSY : EIO;
	}
	return 0;
}

/* Rewrites $n as ?n outside quotes: SQLite's ?n binds to index n exactly. */
static char *rewrite(const char *sql)
{
	char *out = strdup(sql), *p;
	char quote = 0;

	if (!out)
		return NULL;
	for (p = out; *p; p++) {
		if (quote) {
			if (*p == quote)
				quote = 0;
		} else if (*p == '\'' || *p == '"') {
			quote = *p;
		} else if (*p == '$' && p[1] >= '0' && p[1] <= '9') {
			*p = '?';
		}
	}
	return out;
}

static int prepare(struct store_conn *c, const char *sql, sqlite3_stmt **stmtp)
{
	sqlite3_stmt *stmt = NULL;
	char *text = NULL;
	int i, rc, e = 0;

	for (i = 0; i < c->ncache; i++) {
		if (c->cache[i].sql == sql) {
			*stmtp = c->cache[i].stmt;
			return 0;
		}
	}
	text = rewrite(sql);
	if (!text)
		return ENOMEM;
	rc = sqlite3_prepare_v3(c->db, text, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL);
	if (rc != SQLITE_OK) {
		e = sqlite_err(c->db, rc, "prepare");
		goto out;
	}
	if (c->ncache < NCACHE) {
		c->cache[c->ncache].sql = sql;
		c->cache[c->ncache].stmt = stmt;
		c->ncache++;
	}
	*stmtp = stmt;
out:
	free(text);
	return e;
}

static void release(struct store_conn *c, sqlite3_stmt *stmt)
{
	int i;

	sqlite3_reset(stmt);
	sqlite3_clear_bindings(stmt);
	for (i = 0; i < c->ncache; i++) {
		if (c->cache[i].stmt == stmt)
			return;
	}
	sqlite3_finalize(stmt);
}

static int sqlite_query(struct store_conn *c, const char *sql, const struct store_val *params,
                        int nparams, store_row_h *row, void *arg, int *changesp)
{
	const char *cols[32];
	sqlite3_stmt *stmt = NULL;
	int i, n, rc, stop = 0, e;

	e = prepare(c, sql, &stmt);
	if (e)
		return e;
	for (i = 0; i < nparams; i++) {
		switch (params[i].type) {
		case STORE_NULL:
			rc = sqlite3_bind_null(stmt, i + 1);
			break;
		case STORE_TEXT:
			rc = sqlite3_bind_text(stmt, i + 1, params[i].text, -1, SQLITE_STATIC);
			break;
		default:
			rc = sqlite3_bind_int64(stmt, i + 1, params[i].i);
			break;
		}
		if (rc != SQLITE_OK) {
			e = sqlite_err(c->db, rc, "bind");
			goto out;
		}
	}
	while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
		if (!row || stop)
			continue;
		n = sqlite3_column_count(stmt);
		if (n > 32)
			n = 32;
		for (i = 0; i < n; i++)
			cols[i] = (const char *)sqlite3_column_text(stmt, i);
		stop = row(cols, n, arg);
	}
	if (rc != SQLITE_DONE) {
		e = sqlite_err(c->db, rc, "step");
		goto out;
	}
	if (changesp)
		*changesp = sqlite3_changes(c->db);
out:
	release(c, stmt);
	return e;
}

static int sqlite_begin(struct store_conn *c)
{
	int rc = sqlite3_exec(c->db, "BEGIN IMMEDIATE", NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sqlite_err(c->db, rc, "begin");
}

static int sqlite_commit(struct store_conn *c)
{
	int rc = sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);

	return rc == SQLITE_OK ? 0 : sqlite_err(c->db, rc, "commit");
}

static void sqlite_rollback(struct store_conn *c)
{
	if (!sqlite3_get_autocommit(c->db))
		sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
}

/* BEGIN IMMEDIATE already excludes every other writer. */
static int sqlite_migrate_lock(struct store_conn *c)
{
	return 0;
}

const struct store_ops store_sqlite_ops = {
    .name = "sqlite",
    .open = sqlite_open,
    .close = sqlite_close,
    .exec = sqlite_exec,
    .query = sqlite_query,
    .begin = sqlite_begin,
    .commit = sqlite_commit,
    .rollback = sqlite_rollback,
    .migrate_lock = sqlite_migrate_lock,
};
