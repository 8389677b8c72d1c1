/* The PostgreSQL backend: libpq, blocking, only ever on the store's worker or a CLI thread. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "sql/store_int.h"

#define MAXPARAMS 16

struct store_conn {
	PGconn *pg;
	int in_tx;
};

/* Keeps server notices (such as "relation already exists, skipping") off stderr. */
static void quiet(void *arg, const char *message)
{
}

static int pg_open(struct store_conn **cp, const char *url, char *err, size_t errlen)
{
	struct store_conn *c;

	if (strncmp(url, "postgresql://", 13) != 0 && strncmp(url, "postgres://", 11) != 0) {
		snprintf(err, errlen, "not a postgresql URL: %s", url);
		return EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	c->pg = PQconnectdb(url);
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK) {
		snprintf(err, errlen, "%s", c->pg ? PQerrorMessage(c->pg) : "out of memory");
		err[strcspn(err, "\n")] = '\0';
		PQfinish(c->pg);
		free(c);
		return ECONNREFUSED;
	}
	PQsetNoticeProcessor(c->pg, quiet, NULL);
	*cp = c;
	return 0;
}

static void pg_close(struct store_conn *c)
{
	if (!c)
		return;
	PQfinish(c->pg);
	free(c);
}

/* Reconnects a dropped connection, unless a transaction was open (it is lost: the caller fails). */
static void revive(struct store_conn *c)
{
	if (PQstatus(c->pg) == CONNECTION_BAD && !c->in_tx)
		PQreset(c->pg);
}

static int pg_err(struct store_conn *c, PGresult *res, const char *what)
{
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	const char *msg = res ? PQresultErrorMessage(res) : PQerrorMessage(c->pg);

	if (state && strcmp(state, "23505") == 0)
		return EEXIST;
	if (state && strcmp(state, "23503") == 0)
		return ENOENT; /* the call or move it names does not exist */
	if (state && strncmp(state, "23", 2) == 0)
		return EINVAL;
	fprintf(stderr, "qrxfer: store: %s: %.*s\n", what, (int)strcspn(msg, "\n"), msg);
	if (PQstatus(c->pg) == CONNECTION_BAD)
		return ECONNRESET;
	if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
		return EBUSY;
	return EIO;
}

static int pg_exec(struct store_conn *c, const char *sql)
{
	PGresult *res;
	int e = 0;

	revive(c);
	res = PQexec(c->pg, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
		e = pg_err(c, res, "exec");
	PQclear(res);
	return e;
}

static int pg_query(struct store_conn *c, const char *sql, const struct store_val *params,
                    int nparams, store_row_h *row, void *arg, int *changesp)
{
	char nums[MAXPARAMS][24];
	const char *values[MAXPARAMS];
	const char *cols[32];
	PGresult *res = NULL;
	int i, j, n, rows, e = 0;

	if (nparams > MAXPARAMS)
		return EINVAL;
	for (i = 0; i < nparams; i++) {
		switch (params[i].type) {
		case STORE_NULL:
			values[i] = NULL;
			break;
		case STORE_TEXT:
			values[i] = params[i].text;
			break;
		default:
			snprintf(nums[i], sizeof(nums[i]), "%" PRId64, params[i].i);
			values[i] = nums[i];
			break;
		}
	}
	revive(c);
	res = PQexecParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0);
	switch (PQresultStatus(res)) {
	case PGRES_COMMAND_OK:
	case PGRES_TUPLES_OK:
		break;
	default:
		e = pg_err(c, res, "query");
		goto out;
	}
	rows = PQntuples(res);
	n = PQnfields(res);
	if (n > 32)
		n = 32;
	for (i = 0; row && i < rows; i++) {
		for (j = 0; j < n; j++)
			cols[j] = PQgetisnull(res, i, j) ? NULL : PQgetvalue(res, i, j);
		if (row(cols, n, arg))
			break;
	}
	if (changesp)
		*changesp = atoi(PQcmdTuples(res));
out:
	PQclear(res);
	return e;
}

static int pg_begin(struct store_conn *c)
{
	int e = pg_exec(c, "BEGIN");

	if (!e)
		c->in_tx = 1;
	return e;
}

static int pg_commit(struct store_conn *c)
{
	int e = pg_exec(c, "COMMIT");

	c->in_tx = 0;
	return e;
}

static void pg_rollback(struct store_conn *c)
{
	PGresult *res;

	if (!c->in_tx)
		return;
	c->in_tx = 0;
	if (PQstatus(c->pg) != CONNECTION_OK)
		return;
	res = PQexec(c->pg, "ROLLBACK");
	PQclear(res);
}

/* A transaction-scoped advisory lock: daemons starting together migrate one at a time. */
static int pg_migrate_lock(struct store_conn *c)
{
	return pg_exec(c, "SELECT pg_advisory_xact_lock(7142031)");
}

const struct store_ops store_pg_ops = {
    .name = "postgresql",
    .open = pg_open,
    .close = pg_close,
    .exec = pg_exec,
    .query = pg_query,
    .begin = pg_begin,
    .commit = pg_commit,
    .rollback = pg_rollback,
    .migrate_lock = pg_migrate_lock,
};
