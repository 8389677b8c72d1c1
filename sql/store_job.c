/* The asynchronous side: store jobs run in order on one util/queue worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sql/store.h"
#include "sql/store_int.h"
#include "util/log.h"
#include "util/queue.h"

#include <sofia-sip/su_wait.h>

#define BATCH_MAX 256 /* writes in one batch at most */
#define BATCH_MS  50  /* how long the first of a batch waits for others */

/* A queued job and where its completion goes. Owner: the queue, then node_work or node_done. */
struct node {
	struct store *s;
	store_done_h *done;
	void *arg;
	struct store_job job;
};

/* Grows a job's result array by one element of size sz; the store frees it after the callback. */
static int append(void **arrayp, size_t *np, const void *item, size_t sz)
{
	void *grown;

	if ((*np & (*np - 1)) == 0) {
		grown = realloc(*arrayp, (*np ? *np * 2 : 1) * sz);
		if (!grown)
			return 1;
		*arrayp = grown;
	}
	memcpy((char *)*arrayp + *np * sz, item, sz);
	(*np)++;
	return 0;
}

static int collect_call(const struct store_call *c, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->calls, &job->n, c, sizeof(*c)))
		job->err = ENOMEM;
	return job->err;
}

static int collect_move(const struct store_move *m, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->moves, &job->n, m, sizeof(*m)))
		job->err = ENOMEM;
	return job->err;
}

static int collect_event(const struct store_move_event *ev, void *arg)
{
	struct store_job *job = arg;

	if (append((void **)&job->events, &job->n, ev, sizeof(*ev)))
		job->err = ENOMEM;
	return job->err;
}

static void job_run(struct store *s, struct store_job *job);
static const char *op_name(enum store_op op);

/* Writes that wait for no answer, in one transaction; one that fails is logged, not the rest. */
static int batch_run(struct store *s, struct store_job *job)
{
	int e;

	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	for (size_t i = 0; i < job->n; i++) {
		struct store_job *one = &job->jobs[i];

		job_run(s, one);
		if (one->err)
			LOG_ERR("store", "%s %s: %s", op_name(one->op), one->id,
			        strerror(one->err));
	}
	if (!e)
		e = store_tx_end(s, 0);
	pthread_mutex_unlock(&s->lock);
	free(job->jobs);
	job->jobs = NULL;
	job->n = 0;
	return e;
}

static void job_run(struct store *s, struct store_job *job)
{
	int n = 0, e;

	job->err = 0;
	switch (job->op) {
	case STORE_OP_CALL_INSERT:
		e = store_call_insert(s, &job->call);
		break;
	case STORE_OP_CALL_STATE:
		e = store_call_state_set(s, job->id, job->call_state, job->at);
		break;
	case STORE_OP_CALL_NEAR:
		e = store_call_near_set(s, job->id, &job->call.near);
		break;
	case STORE_OP_CALL_GET:
		e = store_call_get(s, job->id, &job->call);
		break;
	case STORE_OP_CALL_FIND:
		e = store_call_find(s, job->text, &job->call);
		break;
	case STORE_OP_CALL_LIST_LIVE:
		e = store_call_list_live(s, collect_call, job);
		break;
	case STORE_OP_PURGE:
		e = store_purge(s, job->at, job->retention_ms, &n);
		job->n = (size_t)n;
		break;
	case STORE_OP_MOVE_INSERT:
		e = store_move_insert(s, &job->move);
		break;
	case STORE_OP_MOVE_REDEEM:
		e = store_move_redeem(s, &job->redeem);
		break;
	case STORE_OP_MOVE_STATE:
		e = store_move_state_set(s, job->id, job->move_state, job->at,
		                         job->text[0] ? job->text : NULL);
		break;
	case STORE_OP_MOVE_EVENT:
		e = store_move_event_add(s, job->id, job->at, job->step, job->text);
		break;
	case STORE_OP_MOVE_GET:
		e = store_move_get(s, job->id, &job->move);
		break;
	case STORE_OP_MOVE_LIST:
		e = store_move_list(s, job->id[0] ? job->id : NULL, collect_move, job);
		break;
	case STORE_OP_MOVE_EVENTS:
		e = store_move_events(s, job->id, collect_event, job);
		break;
	case STORE_OP_FAILURE_ADD:
		e = store_guess_failed(s, job->id[0] ? job->id : NULL, job->source, job->redeem.key,
		                       job->at, &job->failure);
		break;
	case STORE_OP_SOURCE_CHECK:
		e = store_guess_check(s, job->source, job->redeem.key, job->at, &job->failure);
		break;
	case STORE_OP_MOVE_NODE:
		e = store_move_node(s, &job->redeem, job->text, sizeof(job->text));
		break;
	case STORE_OP_NODE_RESET: {
		int n = 0;
		e = store_node_reset(s, job->text, job->at, &n);
		job->n = (size_t)n;
		break;
	}
	case STORE_OP_MOVE_SHOW_SET:
		e = store_move_show_set(s, job->id, job->hash);
		break;
	case STORE_OP_MOVE_BY_SHOW:
		e = store_move_by_show(s, job->hash, &job->move);
		break;
	case STORE_OP_BATCH:
		e = batch_run(s, job);
		break;
	default:
		e = EINVAL;
		break;
	}
	if (!job->err)
		job->err = e;
}

static const char *op_name(enum store_op op)
{
	static const char *const names[] = {
	    [STORE_OP_CALL_INSERT] = "insert call",
	    [STORE_OP_CALL_STATE] = "set call state",
	    [STORE_OP_CALL_NEAR] = "set near leg",
	    [STORE_OP_CALL_GET] = "get call",
	    [STORE_OP_CALL_FIND] = "find call",
	    [STORE_OP_CALL_LIST_LIVE] = "list calls",
	    [STORE_OP_PURGE] = "purge",
	    [STORE_OP_MOVE_INSERT] = "insert move",
	    [STORE_OP_MOVE_REDEEM] = "redeem",
	    [STORE_OP_MOVE_STATE] = "set move state",
	    [STORE_OP_MOVE_EVENT] = "add move event",
	    [STORE_OP_MOVE_GET] = "get move",
	    [STORE_OP_MOVE_LIST] = "list moves",
	    [STORE_OP_MOVE_EVENTS] = "list move events",
	    [STORE_OP_FAILURE_ADD] = "count failure",
	    [STORE_OP_SOURCE_CHECK] = "check source",
	    [STORE_OP_MOVE_NODE] = "find a code's node",
	    [STORE_OP_NODE_RESET] = "reset the node's calls",
	    [STORE_OP_MOVE_SHOW_SET] = "set show secret",
	    [STORE_OP_MOVE_BY_SHOW] = "find a move by its show secret",
	};

	return (unsigned)op < sizeof(names) / sizeof(names[0]) && names[op] ? names[op] : "job";
}

static void node_free(struct node *n)
{
	free(n->job.calls);
	free(n->job.moves);
	free(n->job.events);
	free(n->job.jobs);
	free(n);
}

/* On the worker. A job nobody waits for is logged if it failed, and let go of here. */
static void node_work(void *arg)
{
	struct node *n = arg;

	job_run(n->s, &n->job);
	if (n->done)
		return;
	if (n->job.err)
		LOG_ERR("store", "%s %s: %s", op_name(n->job.op), n->job.id, strerror(n->job.err));
	node_free(n);
}

/* On the loop thread. */
static void node_done(void *arg)
{
	struct node *n = arg;

	n->done(&n->job, n->arg);
	node_free(n);
}

int store_attach(struct store *s, struct su_root_s *root)
{
	if (s->q)
		return EALREADY;
	/* One worker: the store has one connection, and jobs run in order. */
	s->batch_timer = su_timer_create(su_root_task(root), BATCH_MS);
	return queue_alloc(&s->q, root, 1, 0);
}

static int submit_node(struct store *s, const struct store_job *job, store_done_h *done, void *arg,
                       struct store_job *jobs, size_t njobs);

void store_flush(struct store *s)
{
	struct store_job job = {.op = STORE_OP_BATCH};
	size_t n = s->nbatch;

	if (!n)
		return;
	if (s->batch_timer)
		su_timer_reset(s->batch_timer);
	s->nbatch = 0;
	if (submit_node(s, &job, NULL, NULL, s->batch, n)) {
		LOG_ERR("store", "cannot queue %zu writes", n);
		free(s->batch);
	}
	s->batch = NULL;
	s->batch_cap = 0;
}

static void batch_due(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	store_flush(arg);
}

int store_submit_later(struct store *s, const struct store_job *job)
{
	if (!s->q)
		return ENOTCONN;
	if (s->nbatch == s->batch_cap) {
		size_t cap = s->batch_cap ? s->batch_cap * 2 : 16;
		struct store_job *grown = realloc(s->batch, cap * sizeof(*grown));

		if (!grown)
			return ENOMEM;
		s->batch = grown;
		s->batch_cap = cap;
	}
	s->batch[s->nbatch] = *job;
	s->batch[s->nbatch].err = 0;
	if (++s->nbatch >= BATCH_MAX || !s->batch_timer)
		store_flush(s);
	else if (s->nbatch == 1)
		su_timer_set_interval(s->batch_timer, batch_due, s, BATCH_MS);
	return 0;
}

int store_submit(struct store *s, const struct store_job *job, store_done_h *done, void *arg)
{
	/* What waits in a batch was asked for first: it goes first. */
	store_flush(s);
	return submit_node(s, job, done, arg, NULL, 0);
}

static int submit_node(struct store *s, const struct store_job *job, store_done_h *done, void *arg,
                       struct store_job *jobs, size_t njobs)
{
	struct node *n;
	unsigned flags = 0;
	int e;

	if (!s->q)
		return ENOTCONN;
	n = malloc(sizeof(*n));
	if (!n)
		return ENOMEM;
	n->s = s;
	n->done = done;
	n->arg = arg;
	n->job = *job;
	n->job.err = 0;
	n->job.n = 0;
	n->job.calls = NULL;
	n->job.moves = NULL;
	n->job.events = NULL;
	n->job.jobs = jobs;
	n->job.n = njobs;
	/* A device waits on a redeem; it needs only the move's row, whose insert has finished. */
	if (job->op == STORE_OP_MOVE_REDEEM || job->op == STORE_OP_MOVE_NODE)
		flags = QUEUE_URGENT;
	e = queue_submit(s->q, flags, node_work, done ? node_done : NULL, n);
	if (e)
		free(n);
	return e;
}
