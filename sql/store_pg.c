/*
 * The PostgreSQL backend: libpq, only ever on the store's worker or a CLI thread. Statements go
 * out asynchronously and are waited for with poll() until a deadline, so that a server that
 * stops answering fails the operation with ETIMEDOUT instead of holding the worker for ever.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>

#include "sql/store_int.h"
#include "util/log.h"

#define MAXPARAMS 16

struct store_conn {
	PGconn *pg; /* NULL after a timeout: the next operation connects again */
	char *url;
	int timeout_ms; /* for connecting and for each statement; 0: no deadline */
	int in_tx;
};

/* Keeps server notices (such as "relation already exists, skipping") off stderr. */
static void quiet(void *arg, const char *message)
{
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t deadline_of(const struct store_conn *c)
{
	return c->timeout_ms > 0 ? mono_ms() + c->timeout_ms : INT64_MAX;
}

/* Waits until pg's socket is readable (or writable): 0, ETIMEDOUT at the deadline, or errno. */
static int wait_socket(PGconn *pg, int writing, int64_t deadline)
{
	struct pollfd p = {.fd = PQsocket(pg), .events = writing ? POLLOUT : POLLIN};
	int64_t left;
	int n;

	if (p.fd < 0)
		return ECONNRESET;
	for (;;) {
		left = deadline - mono_ms();
		if (left <= 0)
			return ETIMEDOUT;
		n = poll(&p, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (n > 0)
			return 0;
		if (n < 0 && errno != EINTR)
			return errno;
	}
}

/* (Re)connects c->pg before the deadline: 0, or ETIMEDOUT, ECONNREFUSED... with why in err. */
static int pg_connect(struct store_conn *c, char *err, size_t errlen)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t deadline = deadline_of(c);
	int e;

	PQfinish(c->pg);
	c->pg = PQconnectStart(c->url);
	if (!c->pg) {
		snprintf(err, errlen, "out of memory");
		return ENOMEM;
	}
	while (st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED || PQstatus(c->pg) == CONNECTION_BAD) {
			snprintf(err, errlen, "%s", PQerrorMessage(c->pg));
			err[strcspn(err, "\n")] = '\0';
			e = ECONNREFUSED;
			goto fail;
		}
		e = wait_socket(c->pg, st == PGRES_POLLING_WRITING, deadline);
		if (e == ETIMEDOUT) {
			snprintf(err, errlen, "connect: timed out: no answer within %d ms",
			         c->timeout_ms);
			goto fail;
		}
		if (e) {
			snprintf(err, errlen, "connect: %s", strerror(e));
			goto fail;
		}
		st = PQconnectPoll(c->pg);
	}
	PQsetNoticeProcessor(c->pg, quiet, NULL);
	/* so that sending never blocks either */
	if (PQsetnonblocking(c->pg, 1)) {
		snprintf(err, errlen, "%s", PQerrorMessage(c->pg));
		err[strcspn(err, "\n")] = '\0';
		e = EIO;
		goto fail;
	}
	return 0;
fail:
	PQfinish(c->pg);
	c->pg = NULL;
	return e;
}

static void pg_close(struct store_conn *c)
{
	if (!c)
		return;
	PQfinish(c->pg);
	free(c->url);
	free(c);
}

static int pg_open(struct store_conn **cp, const char *url, int timeout_ms, char *err,
                   size_t errlen)
{
	struct store_conn *c;
	int e;

	if (strncmp(url, "postgresql://", 13) != 0 && strncmp(url, "postgres://", 11) != 0) {
		snprintf(err, errlen, "not a postgresql URL: %s", url);
		return EINVAL;
	}
	c = calloc(1, sizeof(*c));
	if (!c || !(c->url = strdup(url))) {
		free(c);
		return ENOMEM;
	}
	c->timeout_ms = timeout_ms;
	e = pg_connect(c, err, errlen);
	if (e) {
		pg_close(c);
		return e == ETIMEDOUT || e == ENOMEM ? e : ECONNREFUSED;
	}
	*cp = c;
	return 0;
}

/* Reconnects a lost or dropped connection, unless a transaction was open on it (it is lost: the
 * caller fails). */
static int revive(struct store_conn *c, const char *what)
{
	char why[256];
	int e;

	if (c->pg && PQstatus(c->pg) == CONNECTION_OK)
		return 0;
	if (c->in_tx) {
		LOG_ERR("store", "%s: connection lost inside a transaction", what);
		return ECONNRESET;
	}
	e = pg_connect(c, why, sizeof(why));
	if (e)
		LOG_ERR("store", "%s: reconnect: %s", what, why);
	return e;
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
	LOG_ERR("store", "%s: %.*s", what, (int)strcspn(msg, "\n"), msg);
	if (PQstatus(c->pg) == CONNECTION_BAD)
		return ECONNRESET;
	if (state && (strcmp(state, "40001") == 0 || strcmp(state, "40P01") == 0))
		return EBUSY;
	return EIO;
}

/*
 * Sends sql (with params unless nparams < 0) and collects its last result before the deadline.
 * NULL with *ep set if it could not: ETIMEDOUT drops the connection (a stopped server may never
 * answer a cancel either), and the next operation connects again.
 */
static PGresult *run(struct store_conn *c, const char *what, const char *sql, int nparams,
                     const char *const *values, int *ep)
{
	PGresult *res, *last = NULL;
	int64_t deadline = deadline_of(c);
	int sent, f, e = 0;

	*ep = revive(c, what);
	if (*ep)
		return NULL;
	sent = nparams < 0 ? PQsendQuery(c->pg, sql)
	                   : PQsendQueryParams(c->pg, sql, nparams, NULL, values, NULL, NULL, 0);
	if (!sent)
		goto failed;
	while ((f = PQflush(c->pg)) == 1) {
		e = wait_socket(c->pg, 1, deadline);
		if (e)
			goto waited;
	}
	if (f < 0)
		goto failed;
	for (;;) {
		while (PQisBusy(c->pg)) {
			e = wait_socket(c->pg, 0, deadline);
			if (e)
				goto waited;
			if (!PQconsumeInput(c->pg))
				goto failed;
		}
		res = PQgetResult(c->pg);
		if (!res)
			break;
		/* like PQexec: the last result, but an error is never hidden by a later one */
		if (last && PQresultStatus(last) == PGRES_FATAL_ERROR) {
			PQclear(res);
		} else {
			PQclear(last);
			last = res;
		}
	}
	if (last)
		return last;
failed:
	PQclear(last);
	*ep = pg_err(c, NULL, what);
	return NULL;
waited:
	PQclear(last);
	if (e == ETIMEDOUT)
		LOG_ERR("store",
		        "%s: timed out: no answer from the server within %d ms; "
		        "connection dropped (the next operation reconnects)",
		        what, c->timeout_ms);
	else
		LOG_ERR("store", "%s: %s", what, strerror(e));
	PQfinish(c->pg);
	c->pg = NULL;
	*ep = e;
	return NULL;
}

static int pg_exec(struct store_conn *c, const char *sql)
{
	PGresult *res;
	int e = 0;

	res = run(c, "exec", sql, -1, NULL, &e);
	if (!res)
		return e;
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
	res = run(c, "query", sql, nparams, values, &e);
	if (!res)
		return e;
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

/* A transaction a statement failed in commits as a ROLLBACK, without an error: say so. */
static int pg_commit(struct store_conn *c)
{
	PGresult *res;
	int e = 0;

	res = run(c, "commit", "COMMIT", -1, NULL, &e);
	c->in_tx = 0;
	if (!res)
		return e;
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		e = pg_err(c, res, "commit");
	else if (strcmp(PQcmdStatus(res), "ROLLBACK") == 0)
		e = EIO;
	PQclear(res);
	return e;
}

static void pg_rollback(struct store_conn *c)
{
	PGresult *res;
	int e;

	if (!c->in_tx)
		return;
	c->in_tx = 0;
	if (!c->pg || PQstatus(c->pg) != CONNECTION_OK)
		return;
	res = run(c, "rollback", "ROLLBACK", -1, NULL, &e);
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
