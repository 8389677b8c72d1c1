/*
 * Calls that outlive the process and the node: each answered call's dialog state goes to the
 * store at each change; a start reads this node's calls back; every second the node renews its
 * lease and takes over the calls of a node whose lease ran out; a request in a dialog nobody
 * here knows is held while the store says whose call it is, and served once it is ours.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/move_int.h"
#include "move/lookups.h"
#include "util/soon.h"

#define HELD_MAX      1000 /* requests waiting for the store to say whose call it is */
#define HELD_RETRY_MS 500  /* the call's node still holds its lease: ask again this soon */
#define BEAT_MS       1000
#define FRESH_MS      2500 /* a node that renewed its lease this recently is alive */
#define SLICE         200  /* calls read back per turn of the loop: it serves the rest between */
/* calls a start asks the store for at once: it reads the next page while the loop serves this */
#define PAGE 1000
/* A call's answer waits for its state to be in the store (call_answering): the answers of
 * [store] answer_group_ms go in one transaction, a group; a group the store has not taken
 * within the guard goes to the callers anyway (the store is slow or gone: calls go on,
 * unwritten, as in an outage). */
#define GROUP_MAX      64
#define GROUP_GUARD_MS 500

/* A request in an unknown dialog, until the store answers. */
struct held {
	LIST_ENTRY(held) link;
	struct survive *sv;
	nta_incoming_t *irq;
	su_timer_t *timer;
	long long since;       /* ms */
	unsigned asking : 1;   /* a store job will call back with it */
	unsigned orphaned : 1; /* the stack is going: the job's callback only frees it */
	unsigned found : 1;    /* the store knows its call: its token went back */
	char call_id[STORE_CALLID_MAX];
	char source[STORE_SOURCE_MAX]; /* who sent it (store_source_key): its budget */
};

/* Answers held until their calls' states are in the store: one transaction for them all. */
struct group {
	struct group *next; /* in sv's list of groups out */
	struct survive *sv;
	su_timer_t *guard;
	size_t n;
	char ids[GROUP_MAX][STORE_ID_MAX];
};

/* Calls read back from the store (a page of this node's own, or a dead node's), a slice per
 * turn of the loop. */
struct batch {
	struct batch *next;
	char what[STORE_URI_MAX + 32]; /* "dead node X"; "" for a page of this node's own */
	size_t n, done, served;
	long long t0;             /* ms: when the store's answer came */
	unsigned last;            /* the last page of this node's own */
	struct store_live *calls; /* taken from the store's job */
};

struct survive {
	struct sip *sip;
	struct batch *batches; /* waiting to be read back, oldest first */
	struct soon *slice;    /* the next slice, on the loop's next turn */
	su_timer_t *beat;
	LIST_HEAD(, held) held;
	unsigned nheld;
	unsigned beating : 1, adopting : 1; /* a job of that kind is out */
	unsigned loaded : 1;                /* this node's calls were read back */
	unsigned stopped : 1;
	struct group *gathering;  /* answers held for the next group, or NULL */
	struct group *groups;     /* groups whose transaction is out */
	su_timer_t *gather;       /* the gathering group goes at [store] answer_group_ms */
	struct lookups *lookups;  /* their budget (move/lookups.c) */
	size_t own_n, own_served; /* this node's own calls read back so far */
	long long own_t0;         /* ms: when the start asked for them */
	unsigned jobs;            /* store jobs that will call back with sv */
};

static void survive_free(struct survive *sv)
{
	lookups_free(sv->lookups);
	free(sv);
}

static struct store *store_of(struct sip *s)
{
	return s->detached ? NULL : s->conf.store;
}

/* The call's state, written with the other rows of the next batch (one transaction). */
static void write_state(struct call *c)
{
	struct store *st = store_of(c->sip);
	struct store_job job = {.op = STORE_OP_CALL_DIALOGS};
	int err;

	if (!st || c->sip->conf.no_call_state)
		return;
	job.blob = call_state_dump(c);
	if (!job.blob)
		return;
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	job.at = store_now();
	err = store_submit_later(st, &job); /* the store owns job.blob from here */
	if (err)
		LOG_ERR("store", "%s: cannot queue its state: %s", c->id, strerror(err));
}

/* The group's calls get their answers (those still waiting: a call may have ended). */
static void group_release(struct survive *sv, struct group *g)
{
	struct call *c;

	for (size_t i = 0; i < g->n; i++)
		if ((c = call_find(sv->sip, g->ids[i])))
			sip_call_answer_release(c);
	g->n = 0;
}

static void group_free(struct group *g)
{
	if (g->guard)
		su_timer_destroy(g->guard);
	free(g);
}

static void group_unlink(struct survive *sv, struct group *g)
{
	for (struct group **gp = &sv->groups; *gp; gp = &(*gp)->next)
		if (*gp == g) {
			*gp = g->next;
			break;
		}
}

/* The group's states are in the store (or it cannot take them now): the answers go. */
static void on_group_written(struct store_job *job, void *arg)
{
	struct group *g = arg;
	struct survive *sv = g->sv;

	sv->jobs--;
	if (sv->stopped) {
		group_free(g); /* on_stop released it and took it off the list */
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err && g->n)
		LOG_WARN("store", "%zu answered calls go on with their state unwritten: %s", g->n,
		         strerror(job->err));
	group_release(sv, g);
	group_unlink(sv, g);
	group_free(g);
}

/* The store is slow: the answers go without waiting any longer. */
static void on_group_guard(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct group *g = arg;

	if (g->n)
		LOG_WARN("store",
		         "%zu answered calls go on before the store took their state "
		         "(%d ms)",
		         g->n, GROUP_GUARD_MS);
	group_release(g->sv, g);
}

/* The gathering group's states go in one transaction; its answers once it committed. */
static void group_send(struct survive *sv)
{
	struct group *g = sv->gathering;
	struct store_job job = {.op = STORE_OP_NOOP};
	struct store *st = store_of(sv->sip);

	sv->gathering = NULL;
	if (sv->gather)
		su_timer_reset(sv->gather);
	if (!g)
		return;
	if (!st || store_submit(st, &job, on_group_written, g)) {
		group_release(sv, g);
		group_free(g);
		return;
	}
	sv->jobs++;
	g->next = sv->groups;
	sv->groups = g;
	g->guard = su_timer_create(su_root_task(sv->sip->root), GROUP_GUARD_MS);
	if (g->guard)
		su_timer_set(g->guard, on_group_guard, g);
}

static void on_gather(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	group_send(arg);
}

/* The called side answered: its state is written before the caller hears of it. */
static int on_call_answering(void *arg, struct call *c)
{
	struct survive *sv = arg;
	struct store *st = store_of(c->sip);
	struct group *g;

	if (!st || c->sip->conf.no_call_state || !c->sip->conf.hold_answer || sv->stopped ||
	    !sv->gather)
		return 0;
	if (!sv->gathering && !(sv->gathering = calloc(1, sizeof(*sv->gathering))))
		return 0;
	g = sv->gathering;
	g->sv = sv;
	write_state(c); /* with the next batch: store_submit() below flushes it first */
	snprintf(g->ids[g->n++], sizeof(g->ids[0]), "%s", c->id);
	if (g->n == GROUP_MAX || !c->sip->conf.answer_group_ms)
		group_send(sv);
	else if (g->n == 1)
		su_timer_set_interval(sv->gather, on_gather, sv,
		                      (su_duration_t)c->sip->conf.answer_group_ms);
	return 1;
}

static void on_call_active(void *arg, struct call *c)
{
	/* Held answers: written when it was answered (on_call_answering); now that the
	 * caller's ACK came, with the next batch. Otherwise at once, not with the next batch: a
	 * crash in the batch's 50 ms would lose an answered call. */
	write_state(c);
	if (store_of(c->sip) && !c->sip->conf.no_call_state && !c->sip->conf.hold_answer)
		store_flush(c->sip->conf.store);
}

static void on_call_changed(void *arg, struct call *c)
{
	write_state(c);
}

/* A call read back; a state that cannot be served is ended in the store, not read again. */
static struct call *load(struct sip *s, const char *id, const char *text, const char *why_here)
{
	struct call *c = NULL;
	char why[160] = "";
	int err;

	if (!text || !text[0])
		return NULL;
	err = call_state_load(s, id, text, &c, why, sizeof(why));
	if (err == EEXIST)
		return call_find(s, id);
	if (err) {
		struct store_job job = {.op = STORE_OP_CALL_STATE, .call_state = STORE_CALL_ENDED};

		LOG_ERR("call", "%s: cannot serve it again (%s): %s", id, why_here, why);
		snprintf(job.id, sizeof(job.id), "%s", id);
		job.at = store_now();
		if (store_of(s))
			store_submit_later(s->conf.store, &job);
		return NULL;
	}
	return c;
}

static void held_free(struct held *h)
{
	if (h->timer)
		su_timer_destroy(h->timer);
	if (!h->orphaned) {
		LIST_REMOVE(h, link);
		h->sv->nheld--;
	}
	free(h);
}

static void held_ask(struct held *h);

static void held_retry(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	held_ask(arg);
}

/* The request goes to the node serving its call (alive: it renewed its lease just now). */
static void pass_on(struct survive *sv, struct held *h, const char *node)
{
	/* An INVITE's ACK follows it there (relay.c keeps the INVITE for it). */
	LOG_INFO("call", "request in call %s of live node %s: passed on there", h->call_id, node);
	relay_to_node(sv->sip, h->irq, node);
	h->irq = NULL;
}

static void on_take(struct store_job *job, void *arg)
{
	struct held *h = arg;
	struct survive *sv = h->sv;
	struct sip *s = sv->sip;
	long long waited = store_now() - h->since;

	h->asking = 0;
	if (h->orphaned || s->detached) {
		if (!h->orphaned && h->irq)
			sip_reply(h->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		held_free(h);
		return;
	}
	if ((!job->err || job->err == EBUSY) && !h->found) {
		lookup_found(sv->lookups, h->source);
		h->found = 1; /* asked again while its node's lease runs: one token back */
	}
	if (!job->err) {
		/* Ours now (or ours all along): served here from this request on. */
		load(s, job->call.id, job->call.dialogs, "taken over");
		sip_dialog_resume(s, h->irq);
		h->irq = NULL;
		held_free(h);
		return;
	}
	if (job->err == EBUSY && job->call.node[0] && strcmp(job->call.node, s->node) &&
	    job->call.lease_until > store_now() + (long long)s->conf.lease_secs * 1000 - FRESH_MS) {
		pass_on(sv, h, job->call.node);
		held_free(h);
		return;
	}
	if (job->err == EBUSY && waited < (long long)s->conf.lease_secs * 1000 + 2000 && h->timer) {
		/* Its node may be dead with a lease still running: ask again until it ran out. */
		su_timer_set_interval(h->timer, held_retry, h, HELD_RETRY_MS);
		return;
	}
	if (job->err == EBUSY)
		LOG_INFO("call", "request for call %s of live node %s: not ours", job->call.id,
		         job->call.node);
	else if (job->err != ENOENT)
		LOG_WARN("store", "whose call is %s: %s", h->call_id, strerror(job->err));
	sip_dialog_resume(s, h->irq);
	h->irq = NULL;
	held_free(h);
}

static void held_ask(struct held *h)
{
	struct sip *s = h->sv->sip;
	struct store *st = store_of(s);
	struct store_job job = {.op = STORE_OP_CALL_TAKE};

	snprintf(job.text, sizeof(job.text), "%s", h->call_id);
	snprintf(job.node, sizeof(job.node), "%s", s->node);
	job.at = store_now();
	if (!st || store_submit(st, &job, on_take, h)) {
		sip_dialog_resume(s, h->irq);
		h->irq = NULL;
		held_free(h);
		return;
	}
	h->asking = 1;
}

static int on_unknown_dialog(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip)
{
	struct survive *sv = arg;
	char source[STORE_SOURCE_MAX];
	struct held *h;
	msg_t *req;

	if (!store_of(s) || sv->stopped || !sip->sip_call_id || sv->nheld >= HELD_MAX ||
	    strlen(sip->sip_call_id->i_id) >= sizeof(h->call_id))
		return 0;
	req = nta_incoming_getrequest(irq);
	move_source_of(req, source, sizeof(source));
	msg_destroy(req);
	if (!lookup_allowed(sv->lookups, source))
		return 0;
	h = calloc(1, sizeof(*h));
	if (!h)
		return 0;
	snprintf(h->source, sizeof(h->source), "%s", source);
	h->sv = sv;
	h->irq = irq;
	h->since = store_now();
	h->timer = su_timer_create(su_root_task(s->root), 0);
	snprintf(h->call_id, sizeof(h->call_id), "%s", sip->sip_call_id->i_id);
	LIST_INSERT_HEAD(&sv->held, h, link);
	sv->nheld++;
	held_ask(h);
	return 1;
}

static void on_moves(struct store_job *job, void *arg)
{
	struct survive *sv = arg;
	struct call *c;

	sv->jobs--;
	if (sv->stopped) {
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err || !(c = call_find(sv->sip, job->id)))
		return;
	for (size_t i = 0; i < job->n; i++)
		if (!call_move(c) && job->moves[i].state != STORE_MOVE_DONE &&
		    job->moves[i].state != STORE_MOVE_FAILED)
			move_revive(c, &job->moves[i]);
}

/* A call served again: the moves it had under way are read back too. */
static void on_call_restored(void *arg, struct call *c)
{
	struct survive *sv = arg;
	struct store *st = store_of(c->sip);
	struct store_job job = {.op = STORE_OP_MOVE_LIST};

	if (!st || !c->had_feature)
		return; /* no move was under way: nothing to read */
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	if (!store_submit(st, &job, on_moves, sv))
		sv->jobs++;
}

static void batch_free(struct batch *b)
{
	store_live_free(b->calls, b->n);
	free(b);
}

/* One slice of the oldest batch read back; the loop comes back for the next. */
static void read_slice(void *arg)
{
	struct survive *sv = arg;
	struct batch *b = sv->batches;

	for (unsigned k = 0; b && k < SLICE && b->done < b->n; k++, b->done++)
		if (load(sv->sip, b->calls[b->done].id, b->calls[b->done].dialogs,
		         b->what[0] ? b->what : "the previous run"))
			b->served++;
	if (b && b->done == b->n) {
		if (b->what[0]) {
			LOG_INFO("sip",
			         "%zu of %zu calls of %s served again (read back in %lld ms)",
			         b->served, b->n, b->what, store_now() - b->t0);
		} else {
			sv->own_n += b->n;
			sv->own_served += b->served;
			if (b->last)
				LOG_INFO(
				    "sip",
				    "%zu of %zu calls of the previous run served again (read back "
				    "in %lld ms)",
				    sv->own_served, sv->own_n, store_now() - sv->own_t0);
		}
		sv->batches = b->next;
		batch_free(b);
	}
	if (sv->batches)
		soon_run(sv->slice);
}

/* The calls of a job kept to be read back a slice at a time: they are taken from the job. */
static void batch_add(struct survive *sv, struct store_job *job, const char *what, int last)
{
	struct batch *b = calloc(1, sizeof(*b)), **bp;

	if (!b) {
		LOG_ERR("sip", "no memory to read %zu calls of %s back", job->n,
		        what[0] ? what : "the previous run");
		return;
	}
	snprintf(b->what, sizeof(b->what), "%s", what);
	b->t0 = store_now();
	b->last = last;
	b->calls = job->states;
	b->n = job->n;
	job->states = NULL;
	job->n = 0;
	for (bp = &sv->batches; *bp; bp = &(*bp)->next)
		;
	*bp = b;
	if (sv->slice)
		soon_run(sv->slice);
	else
		while (sv->batches)
			read_slice(sv);
}

/* Asks the store for the page of this node's calls after (at, id) ("": the first page). */
static int list_page(struct survive *sv, int64_t at, const char *id);

static void on_reset(struct store_job *job, void *arg)
{
	struct survive *sv = arg;

	sv->jobs--;
	if (sv->stopped) {
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err)
		LOG_WARN("sip", "store: cannot end the calls a previous run left: %s",
		         strerror(job->err));
	else if (job->n)
		LOG_INFO("sip", "store: %zu calls of a previous run without a state marked ended",
		         job->n);
}

/* This node's calls read back, those of the previous run without a state (in set-up when it
 * stopped: they cannot be served again) are ended, and their moves failed. After the read-back,
 * not before: it visits every live call of the node, and nothing else waits for it. */
static void reset_stateless(struct survive *sv)
{
	struct store_job job = {.op = STORE_OP_NODE_RESET, .at = sv->own_t0};

	snprintf(job.text, sizeof(job.text), "%s", sv->sip->node);
	if (!store_submit(store_of(sv->sip), &job, on_reset, sv))
		sv->jobs++;
}

static void on_listed(struct store_job *job, void *arg)
{
	struct survive *sv = arg;
	size_t n;
	int more;

	sv->jobs--;
	if (sv->stopped) {
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err) {
		sv->loaded = 1;
		LOG_ERR("store", "cannot read this node's calls back: %s", strerror(job->err));
		reset_stateless(sv);
		return;
	}
	/* Calls this run made since its start are in the store too, newest last: not ours to
	 * read back, and no page after them. */
	n = job->n;
	while (job->n && job->states[job->n - 1].created_at >= sv->own_t0) {
		job->n--;
		free(job->states[job->n].dialogs);
	}
	/* The next page is read on the worker while the loop serves this one. */
	more = n == PAGE && job->n == n &&
	       !list_page(sv, job->states[n - 1].created_at, job->states[n - 1].id);
	if (!more) {
		sv->loaded = 1;
		reset_stateless(sv);
	}
	if (job->n || sv->own_n)
		batch_add(sv, job, "", !more);
}

static int list_page(struct survive *sv, int64_t at, const char *id)
{
	struct store_job job = {.op = STORE_OP_CALL_LIST_NODE, .at = at, .limit = PAGE};
	int err;

	snprintf(job.node, sizeof(job.node), "%s", sv->sip->node);
	snprintf(job.id, sizeof(job.id), "%s", id);
	err = store_submit(sv->sip->conf.store, &job, on_listed, sv);
	if (err)
		LOG_ERR("store", "cannot read this node's calls back: %s", strerror(err));
	else
		sv->jobs++;
	return err;
}

static void on_adopted(struct store_job *job, void *arg)
{
	struct survive *sv = arg;
	char what[sizeof(job->text) + 16];

	sv->jobs--;
	sv->adopting = 0;
	if (sv->stopped) {
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err) {
		if (job->err != ENOENT)
			LOG_WARN("store", "taking over a dead node's calls: %s",
			         strerror(job->err));
		return;
	}
	LOG_INFO("sip", "node %s is dead: its %zu calls are served here from now", job->text,
	         job->n);
	snprintf(what, sizeof(what), "dead node %s", job->text);
	batch_add(sv, job, what, 0);
}

static void on_beat(struct store_job *job, void *arg)
{
	struct survive *sv = arg;

	sv->jobs--;
	sv->beating = 0;
	if (sv->stopped) {
		if (!sv->jobs)
			survive_free(sv);
		return;
	}
	if (job->err)
		LOG_WARN("store", "cannot renew this node's lease: %s", strerror(job->err));
}

/* Once a second: our lease renewed, a dead node's calls taken over. */
static void beat(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct survive *sv = arg;
	struct sip *s = sv->sip;
	struct store *st = store_of(s);
	struct store_job job = {.op = STORE_OP_NODE_BEAT};

	if (!st || s->shutting_down)
		return;
	snprintf(job.node, sizeof(job.node), "%s", s->node);
	job.at = store_now();
	job.lease_ms = (int64_t)s->conf.lease_secs * 1000;
	job.draining = sip_draining(s);
	if (!sv->beating && !store_submit(st, &job, on_beat, sv)) {
		sv->beating = 1;
		sv->jobs++;
	}
	/* A draining node is on its way out: the load balancer sends it nothing new, so a dead
	 * node's calls are better off on a node it does send to. */
	if (!sv->loaded || sv->adopting || sip_draining(s))
		return;
	job.op = STORE_OP_NODE_ADOPT;
	if (!store_submit(st, &job, on_adopted, sv)) {
		sv->adopting = 1;
		sv->jobs++;
	}
}

static void on_stop(void *arg, struct sip *s)
{
	struct survive *sv = arg;
	struct held *h;

	sv->stopped = 1;
	/* Held answers go to their callers: the calls are kept or ended as on_stop says. */
	if (sv->gathering) {
		group_release(sv, sv->gathering);
		group_free(sv->gathering);
		sv->gathering = NULL;
	}
	for (struct group *g = sv->groups; g; g = g->next) {
		group_release(sv, g);
		if (g->guard)
			su_timer_destroy(g->guard);
		g->guard = NULL;
	}
	sv->groups = NULL; /* each is freed by its job's callback */
	if (sv->gather)
		su_timer_destroy(sv->gather);
	sv->gather = NULL;
	if (sv->beat)
		su_timer_destroy(sv->beat);
	sv->beat = NULL;
	soon_free(sv->slice);
	sv->slice = NULL;
	while (sv->batches) {
		struct batch *b = sv->batches;

		sv->batches = b->next;
		batch_free(b);
	}
	while ((h = LIST_FIRST(&sv->held))) {
		LIST_REMOVE(h, link);
		sv->nheld--;
		if (h->irq)
			nta_incoming_destroy(h->irq);
		h->irq = NULL;
		if (h->asking) {
			h->orphaned = 1; /* the store's callback frees it */
			if (h->timer)
				su_timer_destroy(h->timer);
			h->timer = NULL;
		} else {
			h->orphaned = 1;
			held_free(h);
		}
	}
	if (!sv->jobs)
		survive_free(sv);
}

static const struct sip_call_hooks survive_hooks = {
    .call_answering = on_call_answering,
    .call_active = on_call_active,
    .call_changed = on_call_changed,
    .unknown_dialog = on_unknown_dialog,
    .call_restored = on_call_restored,
    .stop = on_stop,
};

int move_survive_init(struct sip *s)
{
	struct survive *sv;
	struct store_job job = {.op = STORE_OP_NODE_BEAT};
	int err;

	if (!s->conf.store)
		return 0;
	sv = calloc(1, sizeof(*sv));
	if (!sv)
		return ENOMEM;
	sv->sip = s;
	LIST_INIT(&sv->held);
	if (lookups_alloc(&sv->lookups))
		sv->lookups = NULL; /* then no budget */
	err = sip_call_hooks_add(s, &survive_hooks, sv);
	if (err) {
		survive_free(sv);
		return err;
	}
	/* Our lease first, then our calls: a node adopting them meanwhile sees us alive. */
	snprintf(job.node, sizeof(job.node), "%s", s->node);
	job.at = store_now();
	job.lease_ms = (int64_t)s->conf.lease_secs * 1000;
	if (!store_submit(s->conf.store, &job, on_beat, sv)) {
		sv->beating = 1;
		sv->jobs++;
	}
	sv->own_t0 = store_now();
	if (list_page(sv, 0, "")) {
		sv->loaded = 1;
		reset_stateless(sv);
	}
	sv->gather = su_timer_create(su_root_task(s->root), 0);
	if (soon_alloc(&sv->slice, s->root, read_slice, sv))
		sv->slice = NULL; /* then each batch is read back in one go */
	sv->beat = su_timer_create(su_root_task(s->root), BEAT_MS);
	if (sv->beat)
		su_timer_run(sv->beat, beat, sv);
	return 0;
}
