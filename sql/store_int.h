/* Inside the store: what a backend provides (one small table of operations). */
#ifndef QRXFER_SQL_STORE_INT_H
#define QRXFER_SQL_STORE_INT_H

#include <stddef.h>
#include <stdint.h>

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

#endif
