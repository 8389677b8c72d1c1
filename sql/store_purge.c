/* Housekeeping: forgetting old calls and failures, and ending what a stopped node left live. */
#include <errno.h>

#include "sql/store.h"
#include "sql/store_int.h"

int store_purge(struct store *s, int64_t now, int64_t retention_ms, int *ncallsp)
{
	static const char events[] =
	    "DELETE FROM move_events WHERE move_id IN (SELECT move_id FROM "
	    "moves WHERE call_id IN (SELECT call_id FROM calls WHERE state "
	    "= 'ended' AND ended_at < $1))";
	static const char moves[] = "DELETE FROM moves WHERE call_id IN (SELECT call_id FROM calls "
	                            "WHERE state = 'ended' AND ended_at < $1)";
	static const char calls[] = "DELETE FROM calls WHERE state = 'ended' AND ended_at < $1";
	static const char failures[] = "DELETE FROM failures WHERE at < $1";
	/* Contexts go with their calls' retention; resume codes once they expired. */
	static const char notes[] = "DELETE FROM context_notes WHERE call_id IN (SELECT call_id "
	                            "FROM contexts WHERE ended_at > 0 AND ended_at < $1)";
	static const char contexts[] = "DELETE FROM contexts WHERE ended_at > 0 AND ended_at < $1";
	static const char resumes[] = "DELETE FROM resumes WHERE expires_at < $1";
	struct store_val at_now[] = {i64(now)};
	static const char bindings[] = "DELETE FROM bindings WHERE expires_at <= $1";
	static const char hints[] = "DELETE FROM near_hints WHERE expires_at <= $1";
	struct store_val now_v[] = {i64(now)};
	struct store_val before[] = {i64(now - retention_ms)};
	struct store_val forgotten[1];
	int n = 0, e;

	pthread_mutex_lock(&s->lock);
	/* The source window is the longer one: the budget's rows are forgotten by then too. */
	forgotten[0] =
	    i64(now - (s->lim.window_ms > s->lim.budget_window_ms ? s->lim.window_ms
	                                                          : s->lim.budget_window_ms));
	e = s->ops->begin(s->conn);
	if (e)
		goto out;
	/* retention_ms <= 0 keeps ended calls for ever; forgotten failures go all the same. */
	if (retention_ms > 0) {
		e = store_query(s, events, before, 1, NULL, NULL, NULL);
		if (!e)
			e = store_query(s, moves, before, 1, NULL, NULL, NULL);
		if (!e)
			e = store_query(s, calls, before, 1, NULL, NULL, &n);
		if (!e)
			e = store_query(s, notes, before, 1, NULL, NULL, NULL);
		if (!e)
			e = store_query(s, contexts, before, 1, NULL, NULL, NULL);
	}
	if (!e)
		e = store_query(s, resumes, at_now, 1, NULL, NULL, NULL);
	if (!e)
		e = store_query(s, failures, forgotten, 1, NULL, NULL, NULL);
	if (!e)
		e = store_query(s, bindings, now_v, 1, NULL, NULL, NULL);
	if (!e)
		e = store_query(s, hints, now_v, 1, NULL, NULL, NULL);
	e = store_tx_end(s, e);
out:
	pthread_mutex_unlock(&s->lock);
	if (!e && ncallsp)
		*ncallsp = n;
	return e;
}

int store_node_reset(struct store *s, const char *node, int64_t now, int *np)
{
	static const char moves[] =
	    "UPDATE moves SET state = 'failed', updated_at = $2, finished_at = $2, reason = "
	    "'the node restarted' WHERE state IN ('offered', 'redeemed', 'confirming', 'moving') "
	    "AND call_id IN (SELECT call_id FROM calls WHERE node = $1 AND state <> 'ended' AND "
	    "dialogs = '' AND created_at < $2)";
	/* calls with a dialog state are the restart's to read back (store_call_list_node); calls
	 * made since now are this run's (in set-up: no state yet) */
	static const char calls[] =
	    "UPDATE calls SET state = 'ended', ended_at = $2 WHERE node = $1 "
	    "AND state <> 'ended' AND dialogs = '' AND created_at < $2";
	struct store_val p[] = {t(node), i64(now)};
	int n = 0, e;

	if (!node)
		return EINVAL;
	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	if (!e) {
		e = store_query(s, moves, p, 2, NULL, NULL, NULL);
		if (!e)
			e = store_query(s, calls, p, 2, NULL, NULL, &n);
		e = store_tx_end(s, e);
	}
	pthread_mutex_unlock(&s->lock);
	if (!e && np)
		*np = n;
	return e;
}
