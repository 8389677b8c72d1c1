/* The asynchronous side: store jobs run in order on one util/queue worker. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sql/store.h"
#include "sql/store_int.h"
#include "util/log.h"
#include "util/queue.h"

#include <sofia-sip/su_wait.h>

#define BATCH_MAX 256 /* writes in one batch at most */
#define BATCH_MS  50  /* how long the first of a batch waits for others */

/* Batched writes kept while the store is unreachable: about 5 KiB each, 100 MiB at most. */
#define KEPT_MAX     20000
#define RETRY_MIN_MS 200 /* the first wait before trying them again, doubling */
#define RETRY_MAX_MS 5000

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

/* Copies a call, and its dialogs (freed with the job). */
static int collect_call(const struct store_call *c, void *arg)
{
	struct store_job *job = arg;
	struct store_call copy = *c;

	if (c->dialogs && !(copy.dialogs = strdup(c->dialogs))) {
		job->err = ENOMEM;
		return 1;
	}
	if (append((void **)&job->calls, &job->n, &copy, sizeof(copy))) {
		free(copy.dialogs);
		job->err = ENOMEM;
	}
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

/* Frees what a job owns, not the job itself. */
static void job_release(struct store_job *job)
{
	for (size_t i = 0; i < job->n; i++) {
		if (job->jobs)
			job_release(&job->jobs[i]);
		else if (job->calls)
			free(job->calls[i].dialogs);
	}
	store_live_free(job->states, job->states ? job->n : 0);
	free(job->jobs);
	free(job->calls);
	free(job->moves);
	free(job->events);
	free(job->call.dialogs);
	free(job->blob);
	free(job->context);
	job->context = NULL;
	free(job->bindings);
	job->bindings = NULL;
	free(job->hints);
	job->hints = NULL;
	job->nhints = 0;
	job->jobs = NULL;
	job->calls = NULL;
	job->states = NULL;
	job->moves = NULL;
	job->events = NULL;
	job->call.dialogs = NULL;
	job->blob = NULL;
	job->n = 0;
}

static void job_run(struct store *s, struct store_job *job)
{
	int node_ok = store_bounded(job->node, sizeof(job->node));
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
	case STORE_OP_CALL_DIALOGS:
		e = store_call_dialogs_set(s, job->id, job->blob, job->at);
		break;
	case STORE_OP_NODE_BEAT:
		e = node_ok ? store_node_beat(s, job->node, job->at, job->lease_ms, job->draining)
		            : EINVAL;
		break;
	case STORE_OP_CALL_LIST_NODE:
		e = node_ok ? store_call_list_node(s, job->node, job->at, job->id, job->limit,
		                                   &job->states, &job->n)
		            : EINVAL;
		break;
	case STORE_OP_NODE_ADOPT:
		e = node_ok ? store_node_adopt(s, job->node, job->at, job->text, sizeof(job->text),
		                               &job->states, &job->n)
		            : EINVAL;
		break;
	case STORE_OP_NOOP:
		e = 0;
		break;
	case STORE_OP_BINDING_PUT:
		e = store_binding_put(s, &job->binding, job->at);
		break;
	case STORE_OP_BINDING_FLOW:
		e = store_binding_by_flow(s, job->text, job->at, &job->binding);
		break;
	case STORE_OP_BINDING_LIST:
		e = store_binding_list(s, job->binding.aor, job->at, &job->bindings, &job->n);
		if (!e)
			e = store_hint_list(s, job->binding.aor, job->at, &job->hints,
			                    &job->nhints);
		break;
	case STORE_OP_CALL_AOR:
		e = store_call_aor_set(s, job->id, job->binding.aor);
		break;
	case STORE_OP_PULL_FIND: {
		/* one round trip: the flow's bindings, then where their AOR's newest call is (when
		 * they name one AOR: own_binding_pick's rule; several others are refused) */
		size_t i = 1;

		memset(&job->call, 0, sizeof(job->call));
		e = store_binding_on_flow(s, job->binding.flow, job->binding.aor, job->at,
		                          &job->bindings, &job->n);
		while (!e && i < job->n && !strcmp(job->bindings[i].aor, job->bindings[0].aor))
			i++;
		if (!e && job->n && i >= job->n &&
		    store_call_by_aor(s, job->bindings[0].aor, node_ok ? job->node : "", job->at,
		                      &job->call))
			memset(&job->call, 0, sizeof(job->call));
		break;
	}
	case STORE_OP_HINT_PUT: {
		struct store_hint h;

		store_copy(h.aor, sizeof(h.aor), job->binding.aor);
		store_copy(h.device, sizeof(h.device), job->binding.contact);
		h.seen_at = job->binding.updated_at;
		h.expires_at = job->binding.expires_at;
		e = store_hint_put(s, &h);
		break;
	}
	case STORE_OP_BINDING_ON_FLOW:
		e = store_binding_on_flow(s, job->binding.flow, job->binding.aor, job->at,
		                          &job->bindings, &job->n);
		break;
	case STORE_OP_BINDING_SYNC:
		e = store_binding_sync(s, job->binding.aor,
		                       job->binding.flow[0] ? job->binding.flow : NULL, job->blob,
		                       &job->n);
		break;
	case STORE_OP_CALL_TAKE:
		e = node_ok ? store_call_take(s, job->text, job->node, job->at, &job->call)
		            : EINVAL;
		break;
	case STORE_OP_CONTEXT_PUT:
		e = job->context ? store_context_put(s, job->context, job->hash) : EINVAL;
		break;
	case STORE_OP_NOTE_ADD:
		e = store_note_add(s, job->id, job->at, job->blob ? job->blob : "", job->limit);
		break;
	case STORE_OP_CONTEXT_END:
		e = store_context_end(s, job->id, job->at);
		break;
	case STORE_OP_CONTEXT_GET:
		job->context = calloc(1, sizeof(*job->context));
		e = !job->context ? ENOMEM
		                  : store_context_get(s, *job->id ? job->id : NULL,
		                                      *job->id ? NULL : job->hash, job->context);
		break;
	case STORE_OP_RESUME_INSERT: {
		int kept = 0;

		e = store_resume_keep(
		    s, job->hash, job->redeem.key == STORE_KEY_CODE ? job->redeem.hash : NULL,
		    job->id, job->call.far.uri, job->call.near.uri, job->at, &kept);
		job->n = (size_t)kept;
		break;
	}
	case STORE_OP_CONTEXT_BRIDGE_SET:
		e = store_context_bridge_set(s, job->id, job->blob);
		break;
	case STORE_OP_CONTEXT_BRIDGE_GET:
		free(job->blob);
		job->blob = NULL;
		e = store_context_bridge_get(s, job->id, &job->blob);
		break;
	case STORE_OP_RESUME_TAKE: {
		uint8_t h[STORE_HASHES_MAX][STORE_HASH_LEN];
		unsigned n = 1;

		memcpy(h[0], job->hash, STORE_HASH_LEN);
		for (unsigned i = 0; i < job->redeem.nalt && n < STORE_HASHES_MAX; i++)
			memcpy(h[n++], job->redeem.alt[i], STORE_HASH_LEN);
		e = store_resume_use(s, (const uint8_t(*)[STORE_HASH_LEN])h, n, job->redeem.key,
		                     job->limit == 1, job->source, job->at, job->id,
		                     job->call.far.uri, job->call.near.uri, &job->redeem.wait_ms);
		break;
	}
	default:
		e = EINVAL;
		break;
	}
	if (!job->err)
		job->err = e;
}

static void node_free(struct node *n)
{
	job_release(&n->job);
	free(n);
}

/* The store, not one write, failed: try again later. */
static int unreachable(int e)
{
	return e == ECONNRESET || e == ECONNREFUSED || e == ETIMEDOUT || e == EBUSY ||
	       e == EAGAIN || e == ENOTCONN || e == EPIPE || e == EHOSTUNREACH || e == ENETUNREACH;
}

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs writes in one transaction: 0 once committed, else why it rolled back. */
static int batch_try(struct store *s, struct store_job *jobs, size_t n)
{
	int e;

	pthread_mutex_lock(&s->lock);
	e = s->ops->begin(s->conn);
	for (size_t i = 0; !e && i < n; i++) {
		job_run(s, &jobs[i]);
		/* a write refused for its own reason (no such call, ended) left the transaction
		 * usable; anything else may have spoilt it (PostgreSQL aborts it) */
		if (jobs[i].err != ENOENT && jobs[i].err != EALREADY)
			e = jobs[i].err;
	}
	e = store_tx_end(s, e);
	pthread_mutex_unlock(&s->lock);
	return e;
}

/* What a job is about, for a log line. */
static const char *job_names(const struct store_job *job)
{
	if (job->op == STORE_OP_CALL_INSERT)
		return job->call.id;
	if (job->op == STORE_OP_MOVE_INSERT)
		return job->move.id;
	return job->id;
}

/* Logs a write that failed for its own reason and lets it go. */
static void write_done(struct store_job *job)
{
	if (job->err)
		LOG_ERR("store", "%s %s: %s", store_op_name(job->op), job_names(job),
		        strerror(job->err));
	job_release(job);
}

/*
 * Runs writes in order, in one transaction, or one by one when one of them spoilt it (so that
 * the good ones land). Returns how many are done with; *ep says why it stopped before the rest:
 * the store is unreachable, and they are to be tried again.
 */
static size_t writes_run(struct store *s, struct store_job *jobs, size_t n, int *ep)
{
	size_t i;
	int e = batch_try(s, jobs, n);

	*ep = 0;
	if (!e || unreachable(e)) {
		*ep = e;
		for (i = 0; !e && i < n; i++)
			write_done(&jobs[i]);
		return e ? 0 : n;
	}
	for (i = 0; i < n; i++) {
		job_run(s, &jobs[i]);
		if (unreachable(jobs[i].err)) {
			*ep = jobs[i].err;
			break;
		}
		write_done(&jobs[i]);
	}
	return i;
}

static size_t kept_len(const struct store *s)
{
	return s->nkept - s->kept_head;
}

/* Tells the loop thread how many writes are kept and when to nudge the worker. */
static void kept_publish(struct store *s, int64_t delay_ms)
{
	__atomic_store_n(&s->delay_shared, delay_ms, __ATOMIC_RELAXED);
	__atomic_store_n(&s->kept_shared, kept_len(s), __ATOMIC_RELEASE);
}

static void kept_drop(struct store *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		job_release(&s->kept[s->kept_head + i]);
	s->kept_head += n;
}

/* Keeps writes after those kept already (it owns them from then on), the oldest dropped past
 * KEPT_MAX. */
static void kept_add(struct store *s, struct store_job *jobs, size_t n)
{
	size_t len = kept_len(s);

	if (!n)
		return;
	if (len + n > KEPT_MAX) {
		size_t drop = len + n - KEPT_MAX > len ? len : len + n - KEPT_MAX;

		kept_drop(s, drop);
		len -= drop;
		LOG_ERR("store", "still unreachable: dropped the %zu oldest writes kept for it",
		        drop);
	}
	if (s->kept_head && (s->kept_head >= len || s->nkept + n > s->kept_cap)) {
		memmove(s->kept, s->kept + s->kept_head, len * sizeof(*s->kept));
		s->kept_head = 0;
		s->nkept = len;
	}
	if (s->nkept + n > s->kept_cap) {
		size_t cap = s->kept_cap ? s->kept_cap : BATCH_MAX;
		struct store_job *grown;

		while (cap < s->nkept + n)
			cap *= 2;
		grown = realloc(s->kept, cap * sizeof(*grown));
		if (!grown) {
			LOG_ERR("store",
			        "dropped %zu writes for an unreachable store: out of memory", n);
			for (size_t i = 0; i < n; i++)
				job_release(&jobs[i]);
			return;
		}
		s->kept = grown;
		s->kept_cap = cap;
	}
	memcpy(s->kept + s->nkept, jobs, n * sizeof(*jobs));
	s->nkept += n;
}

/* Runs the kept writes, oldest first, if their try is due (or now): 0 once none is kept. */
static int kept_run(struct store *s, int now)
{
	size_t n;
	int e = 0;

	if (!kept_len(s))
		return 0;
	if (!now && mono_ms() < s->retry_at)
		return s->kept_err;
	while (!e && kept_len(s)) {
		n = kept_len(s) < BATCH_MAX ? kept_len(s) : BATCH_MAX;
		s->kept_head += writes_run(s, s->kept + s->kept_head, n, &e);
	}
	if (e) {
		s->kept_err = e;
		s->retry_at = mono_ms() + s->backoff_ms;
		kept_publish(s, s->backoff_ms);
		s->backoff_ms = s->backoff_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : s->backoff_ms * 2;
		return e;
	}
	LOG_INFO("store", "the store is back: the writes kept for it landed");
	s->kept_head = s->nkept = 0;
	kept_publish(s, 0);
	return 0;
}

/*
 * A batch's array, BATCH_MAX jobs (6.5 KiB each): the one the worker last gave back, else a new
 * one. A REGISTER's binding (or a call's row) is copied into it, so an array grown by realloc
 * and unmapped after each batch cost more than the write itself (page faults, copies).
 */
static struct store_job *batch_array(struct store *s)
{
	struct store_job *v;

	for (size_t i = 0; i < sizeof(s->batch_spare) / sizeof(s->batch_spare[0]); i++) {
		v = __atomic_exchange_n(&s->batch_spare[i], NULL, __ATOMIC_ACQ_REL);
		if (v)
			return v;
	}
	return malloc(BATCH_MAX * sizeof(*v));
}

/* On the worker: the array of a batch that ran goes back for the next ones (a few batches
 * may be on their way to the worker at once), or is freed. */
static void batch_array_back(struct store *s, struct store_job *v)
{
	for (size_t i = 0; v && i < sizeof(s->batch_spare) / sizeof(s->batch_spare[0]); i++) {
		struct store_job *none = NULL;

		if (__atomic_compare_exchange_n(&s->batch_spare[i], &none, v, 0, __ATOMIC_ACQ_REL,
		                                __ATOMIC_ACQUIRE))
			return;
	}
	free(v);
}

/* A batch: after what is kept, and kept itself if the store cannot take it now. */
static void batch_work(struct store *s, struct store_job *job)
{
	size_t done;
	int e = 0;

	if (kept_len(s)) {
		kept_add(s, job->jobs, job->n);
		e = kept_run(s, 0);
	} else if (job->n) {
		done = writes_run(s, job->jobs, job->n, &e);
		if (e) {
			LOG_ERR("store", "unreachable (%s): keeping %zu writes to try again",
			        strerror(e), job->n - done);
			kept_add(s, job->jobs + done, job->n - done);
			s->kept_err = e;
			s->backoff_ms = RETRY_MIN_MS;
			s->retry_at = mono_ms() + s->backoff_ms;
			kept_publish(s, s->backoff_ms);
			s->backoff_ms *= 2;
		}
	}
	batch_array_back(s, job->jobs); /* its jobs were let go of, or kept */
	job->jobs = NULL;
	job->n = 0;
	job->err = e;
}

/*
 * On the worker. Nothing runs before the writes kept for an unreachable store: while they wait
 * for their next try, a job fails at once with the store's error. A job nobody waits for is
 * logged if it failed, and let go of here.
 */
static void node_work(void *arg)
{
	struct node *n = arg;
	int e;

	if (n->job.op == STORE_OP_BATCH) {
		batch_work(n->s, &n->job);
	} else {
		e = kept_run(n->s, 0);
		if (e)
			n->job.err = e;
		else
			job_run(n->s, &n->job);
	}
	if (n->done)
		return;
	if (n->job.err)
		LOG_ERR("store", "%s %s: %s", store_op_name(n->job.op), n->job.id,
		        strerror(n->job.err));
	node_free(n);
}

void store_kept_close(struct store *s)
{
	if (s->retry_timer)
		su_timer_destroy(s->retry_timer);
	s->retry_timer = NULL;
	if (kept_len(s) && kept_run(s, 1)) {
		LOG_ERR("store", "closing: dropped %zu writes the store could not take",
		        kept_len(s));
		kept_drop(s, kept_len(s));
	}
	free(s->kept);
	s->kept = NULL;
	s->kept_head = s->nkept = s->kept_cap = 0;
	for (size_t i = 0; i < sizeof(s->batch_spare) / sizeof(s->batch_spare[0]); i++)
		free(__atomic_exchange_n(&s->batch_spare[i], NULL, __ATOMIC_ACQ_REL));
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
	s->retry_timer = su_timer_create(su_root_task(root), RETRY_MIN_MS);
	return queue_alloc(&s->q, root, 1, 0);
}

static int submit_node(struct store *s, const struct store_job *job, store_done_h *done, void *arg,
                       struct store_job *jobs, size_t njobs);

static void retry_due(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg);

/* On the loop: while writes are kept, the worker is nudged when their next try is due. */
static void batch_done(struct store_job *job, void *arg)
{
	struct store *s = arg;
	int64_t delay = __atomic_load_n(&s->delay_shared, __ATOMIC_RELAXED);

	if (__atomic_load_n(&s->kept_shared, __ATOMIC_ACQUIRE) && s->retry_timer)
		su_timer_set_interval(s->retry_timer, retry_due, s, delay > 0 ? delay : 1);
}

static void retry_due(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	struct store *s = arg;
	struct store_job job = {.op = STORE_OP_BATCH};

	if (__atomic_load_n(&s->kept_shared, __ATOMIC_ACQUIRE))
		submit_node(s, &job, batch_done, s, NULL, 0);
}

void store_flush(struct store *s)
{
	struct store_job job = {.op = STORE_OP_BATCH};
	size_t n = s->nbatch;

	if (!n)
		return;
	if (s->batch_timer)
		su_timer_reset(s->batch_timer);
	s->nbatch = 0;
	if (submit_node(s, &job, batch_done, s, s->batch, n)) {
		LOG_ERR("store", "cannot queue %zu writes", n);
		job.jobs = s->batch;
		job.n = n;
		job_release(&job);
	}
	s->batch = NULL;
	s->batch_cap = 0;
}

static void batch_due(su_root_magic_t *m, su_timer_t *t, su_timer_arg_t *arg)
{
	store_flush(arg);
}

/* A copy of a submitted job: the outputs are the store's to fill, the blob is the store's. */
static void job_copy(struct store_job *to, const struct store_job *job)
{
	*to = *job;
	to->err = 0;
	to->n = 0;
	to->calls = NULL;
	to->states = NULL;
	to->moves = NULL;
	to->events = NULL;
	to->jobs = NULL;
	to->call.dialogs = NULL;
	to->bindings = NULL;
	to->hints = NULL;
	to->nhints = 0;
}

/* Writes of one statement each: those run inside a batch's transaction (the others open their
 * own, and PostgreSQL would end the batch's with it). */
static int batchable(enum store_op op)
{
	return op == STORE_OP_CALL_INSERT || op == STORE_OP_CALL_STATE ||
	       op == STORE_OP_CALL_NEAR || op == STORE_OP_CALL_DIALOGS ||
	       op == STORE_OP_NODE_BEAT || op == STORE_OP_CONTEXT_PUT ||
	       op == STORE_OP_CONTEXT_END || op == STORE_OP_BINDING_PUT ||
	       op == STORE_OP_BINDING_SYNC || /* statements, no transaction of its own */
	       op == STORE_OP_CALL_AOR;
}

int store_submit_later(struct store *s, const struct store_job *job)
{
	if (!s || !s->q || !batchable(job->op)) {
		free(job->blob);
		free(job->context);
		return s && s->q ? EINVAL : ENOTCONN;
	}
	if (!s->batch) {
		s->batch = batch_array(s);
		if (!s->batch) {
			free(job->blob);
			free(job->context);
			return ENOMEM;
		}
		s->batch_cap = BATCH_MAX;
	}
	job_copy(&s->batch[s->nbatch], job);
	if (++s->nbatch >= BATCH_MAX || !s->batch_timer)
		store_flush(s);
	else if (s->nbatch == 1)
		su_timer_set_interval(s->batch_timer, batch_due, s, BATCH_MS);
	return 0;
}

int store_submit_read(struct store *s, const struct store_job *job, store_done_h *done, void *arg)
{
	if (!s)
		return EINVAL;
	return submit_node(s, job, done, arg, NULL, 0); /* the batch stays to fill */
}

int store_submit(struct store *s, const struct store_job *job, store_done_h *done, void *arg)
{
	/* No store (none configured, or closing: a callback run by store_close submits again). */
	if (!s)
		return EINVAL;
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

	if (!s->q) {
		free(job->blob);
		free(job->context);
		return ENOTCONN;
	}
	n = malloc(sizeof(*n));
	if (!n) {
		free(job->blob);
		free(job->context);
		return ENOMEM;
	}
	n->s = s;
	n->done = done;
	n->arg = arg;
	job_copy(&n->job, job);
	n->job.jobs = jobs;
	n->job.n = njobs;
	/* A device waits on a redeem; it needs only the move's row, whose insert has finished. */
	if (job->op == STORE_OP_MOVE_REDEEM || job->op == STORE_OP_MOVE_NODE)
		flags = QUEUE_URGENT;
	e = queue_submit(s->q, flags, node_work, done ? node_done : NULL, n);
	if (e) {
		n->job.jobs = NULL; /* the caller's still */
		n->job.n = 0;
		node_free(n);
	}
	return e;
}
