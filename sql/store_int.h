/* Inside the store: what a backend provides (one small table of operations), and what the
 * store's files (store.c, store_call.c, store_node.c, store_move.c, store_guess.c,
 * store_purge.c, store_job.c) share. */
#ifndef QRXFER_SQL_STORE_INT_H
#define QRXFER_SQL_STORE_INT_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "sql/store.h"

enum store_val_type {
	STORE_NULL,
	STORE_TEXT,
	STORE_INT,
};

/* One statement parameter, $1 ... $n in the SQL. */
struct store_val {
	enum store_val_type type;
	const char *text;
	int64_t i;
};

/* Receives one result row as text columns (NULL for SQL NULL). */
typedef int(store_row_h)(const char *const *cols, int ncols, void *arg);

struct store_conn;

/* A backend. SQL is written once with $n parameters; the SQLite backend rewrites them as ?n. */
struct store_ops {
	const char *name;
	/* timeout_ms bounds connecting and each statement where the backend waits on a server
	 * (then ETIMEDOUT); 0: no bound. */
	int (*open)(struct store_conn **cp, const char *url, int timeout_ms, char *err,
	            size_t errlen);
	void (*close)(struct store_conn *c);
	/* Runs several statements without parameters (a migration). */
	int (*exec)(struct store_conn *c, const char *sql);
	/* Runs one statement; row (may be NULL) sees each row; *changesp gets the rows changed. */
	int (*query)(struct store_conn *c, const char *sql, const struct store_val *params,
	             int nparams, store_row_h *row, void *arg, int *changesp);
	/* Starts a transaction that will write (SQLite takes the write lock at once). */
	int (*begin)(struct store_conn *c);
	int (*commit)(struct store_conn *c);
	void (*rollback)(struct store_conn *c);
	/* Serialises migrations between processes sharing the database (until commit). */
	int (*migrate_lock)(struct store_conn *c);
};

extern const struct store_ops store_sqlite_ops;
extern const struct store_ops store_pg_ops;

/* One embedded migration: sql/migrations/NNN_name.sql. */
struct store_migration {
	int version;
	const char *name;
	const char *sql;
};

/* Generated at build time from sql/migrations/ (sql/embed.sh). */
extern const struct store_migration store_migrations[];
extern const size_t store_nmigrations;

struct store {
	const struct store_ops *ops;
	struct store_conn *conn;
	pthread_mutex_t lock; /* one user of conn at a time: the worker, the loop or a CLI */
	struct store_limits lim;
	struct queue *q; /* the worker, once attached */
	/* Fire-and-forget writes waiting to go to the worker as one job, one transaction. */
	struct store_job *batch;
	size_t nbatch, batch_cap;
	/* batches' arrays the worker is done with (BATCH_MAX jobs each), for the loop's next
	 * batches: no fresh pages to fault in, no growing; each place exchanged atomically */
	struct store_job *batch_spare[4];
	struct su_timer_s *batch_timer;
	/* Batched writes an unreachable or locked store could not take, oldest first from
	 * kept_head: the worker's, retried before any later job runs (store_job.c). */
	struct store_job *kept;
	size_t kept_head, nkept, kept_cap;
	int kept_err;       /* why the last try failed */
	int64_t retry_at;   /* monotonic ms: the next try, not before */
	int64_t backoff_ms; /* the wait after the next failed try */
	/* what the loop thread reads of it (atomic): how many are kept, and when to nudge */
	size_t kept_shared;
	int64_t delay_shared;
	struct su_timer_s *retry_timer; /* the loop's nudge: an empty batch, once due */
};

static inline struct store_val t(const char *text)
{
	struct store_val v = {STORE_TEXT, text, 0};

	return v;
}

static inline struct store_val i64(int64_t i)
{
	struct store_val v = {STORE_INT, NULL, i};

	return v;
}

static inline struct store_val null(void)
{
	struct store_val v = {STORE_NULL, NULL, 0};

	return v;
}

/* store.c. Functions ending in _locked expect s->lock held. */

/* Copies src (NULL: "") into dst, cut to n - 1 characters. */
void store_copy(char *dst, size_t n, const char *src);
/* A hash as the store keeps it: lowercase hex, NUL-terminated. */
void store_hex_encode(char out[2 * STORE_HASH_LEN + 1], const uint8_t in[STORE_HASH_LEN]);

/* Reads a column as a number (NULL: 0). */
int64_t store_num(const char *text);

/* Tells whether a caller's fixed buffer of n holds a terminated string. */
int store_bounded(const char *text, size_t n);

/* Runs one statement on the backend (see store_ops.query). */
int store_query(struct store *s, const char *sql, const struct store_val *p, int n,
                store_row_h *row, void *arg, int *changesp);

/* Ends a transaction: commit if e is 0, else roll back; returns the first error. */
int store_tx_end(struct store *s, int e);

/* A row callback storing the first column as an int64_t into arg. */
int store_row_int(const char *const *cols, int ncols, void *arg);

/* Tells a missing row (ENOENT) from one in a state that refused the change (EALREADY). */
int store_why_unchanged(struct store *s, const char *sql, const char *id);

/* store_call.c: a call's columns, in the order store_call_from_row reads them. */
#define STORE_CALL_COLS                                                                            \
	"call_id, near_call_id, near_from_tag, near_to_tag, near_uri, far_call_id, far_from_tag, " \
	"far_to_tag, far_uri, state, created_at, answered_at, ended_at"

/* store_call.c: fills c from the 13 columns of STORE_CALL_COLS (node and dialogs left empty). */
void store_call_from_row(struct store_call *c, const char *const *cols);

/* store_job.c: once the worker stopped, a last try at the kept writes; the rest are dropped. */
void store_kept_close(struct store *s);

/* store_move.c: appends an event to a move this transaction already changed. */
int store_event_add_locked(struct store *s, const char *id, int64_t at, const char *step,
                           const char *detail);

/* store_guess.c: counts a failure inside the caller's transaction. */
int store_failure_add_locked(struct store *s, const char *move_id, const char *source,
                             enum store_key kind, int64_t now, struct store_failure *f);

/* store_guess.c: the source lock and, for numeric codes, the node-wide budget: EAGAIN or EBUSY
 * with r->wait_ms. */
int store_redeem_allowed_locked(struct store *s, struct store_redeem *r);

/* A job's operation as words for a log line ("job" for one without a name). */
const char *store_op_name(enum store_op op);

#endif
