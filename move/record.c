/*
 * The calls' rows in the store, hooked on the core's call events: fire and forget through the
 * store's worker, in order, batched (store_submit_later).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/move_int.h"

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* A leg's dialog as the store keeps it: From and To tags as on the wire of that dialog. */
static void leg_dialog(const struct leg *leg, struct store_dialog *d)
{
	const char *lt = leg->ltag, *rt = leg->rtag;

	memset(d, 0, sizeof(*d));
	copy(d->call_id, sizeof(d->call_id), leg->call_id);
	copy(d->from_tag, sizeof(d->from_tag), leg->incoming ? rt : lt);
	copy(d->to_tag, sizeof(d->to_tag), leg->incoming ? lt : rt);
	copy(d->uri, sizeof(d->uri), leg->uri);
}

static void submit(struct sip *s, const struct store_job *job)
{
	int err;

	if (!s->conf.store)
		return;
	/* Batched: one worker wake-up and one transaction for the rows of many calls. */
	err = store_submit_later(s->conf.store, job);
	if (err)
		LOG_ERR("store", "queue %d: %s", (int)job->op, strerror(err));
}

/* The call's row is written once both dialogs are known: when answered (before the caller
 * hears of it), or when it ends. */
static void call_insert(struct call *c, enum store_call_state st)
{
	struct store_job *job = calloc(1, sizeof(*job));

	if (!job)
		return;
	job->op = STORE_OP_CALL_INSERT;
	copy(job->call.id, sizeof(job->call.id), c->id);
	if (c->near)
		leg_dialog(c->near, &job->call.near);
	if (c->far)
		leg_dialog(c->far, &job->call.far);
	job->call.state = st;
	job->call.created_at = (int64_t)c->created * 1000;
	job->call.answered_at = c->answered ? (int64_t)c->answered * 1000 : 0;
	job->call.ended_at = st == STORE_CALL_ENDED ? store_now() : 0;
	copy(job->call.node, sizeof(job->call.node), c->sip->node);
	submit(c->sip, job);
	free(job);
	c->recorded = 1;
}

static void record_state(struct call *c, enum store_call_state state)
{
	struct store_job job = {0};

	if (!c->recorded) {
		call_insert(c, state);
		return;
	}
	job.op = STORE_OP_CALL_STATE;
	copy(job.id, sizeof(job.id), c->id);
	job.call_state = state;
	job.at = store_now();
	submit(c->sip, &job);
}

void move_record_near(struct call *c)
{
	struct store_job *job;

	if (!c->recorded || !c->near)
		return;
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->op = STORE_OP_CALL_NEAR;
	copy(job->id, sizeof(job->id), c->id);
	leg_dialog(c->near, &job->call.near);
	submit(c->sip, job);
	free(job);
}

/* Answered: the row goes in before the state that survive.c writes then (hooks run in order);
 * the answer is not held here. */
static int on_call_answering(void *arg, struct call *c)
{
	if (!c->recorded)
		call_insert(c, STORE_CALL_ACTIVE);
	return 0;
}

static void on_call_active(void *arg, struct call *c)
{
	if (!c->recorded)
		call_insert(c, STORE_CALL_ACTIVE); /* no store then, or an answer not held */
}

static void on_call_gone(void *arg, struct call *c)
{
	record_state(c, STORE_CALL_ENDED);
}

static const struct sip_call_hooks record_hooks = {
    .call_answering = on_call_answering,
    .call_active = on_call_active,
    .call_gone = on_call_gone,
};

int move_record_init(struct sip *s)
{
	/* The calls a previous run left: read back, or ended (survive.c). */
	return sip_call_hooks_add(s, &record_hooks, NULL);
}
