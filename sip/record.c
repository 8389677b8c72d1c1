/* Calls into the store: fire and forget through its worker, in order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql/store.h"
#include "sip/b2bua.h"

static void copy(char *dst, size_t len, const char *src)
{
	snprintf(dst, len, "%s", src ? src : "");
}

/* A leg's dialog as the store keeps it: From and To tags as on the wire of that dialog. */
void call_leg_dialog(const struct leg *leg, struct store_dialog *d)
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
	err = store_submit(s->conf.store, job, NULL, NULL);
	if (err)
		LOG_ERR("store", "queue %d: %s", (int)job->op, strerror(err));
}

/* The call's row is written once both dialogs are known: when answered, or when it ends. */
static void call_insert(struct call *c, enum store_call_state st)
{
	struct store_job *job = calloc(1, sizeof(*job));

	if (!job)
		return;
	job->op = STORE_OP_CALL_INSERT;
	copy(job->call.id, sizeof(job->call.id), c->id);
	if (c->near)
		call_leg_dialog(c->near, &job->call.near);
	if (c->far)
		call_leg_dialog(c->far, &job->call.far);
	job->call.state = st;
	job->call.created_at = (int64_t)c->created * 1000;
	job->call.answered_at = c->answered ? (int64_t)c->answered * 1000 : 0;
	job->call.ended_at = st == STORE_CALL_ENDED ? store_now() : 0;
	copy(job->call.node, sizeof(job->call.node), c->sip->node);
	submit(c->sip, job);
	free(job);
	c->recorded = 1;
}

void call_record_state(struct call *c, int state)
{
	struct store_job job = {0};

	if (!c->recorded) {
		call_insert(c, (enum store_call_state)state);
		return;
	}
	job.op = STORE_OP_CALL_STATE;
	copy(job.id, sizeof(job.id), c->id);
	job.call_state = (enum store_call_state)state;
	job.at = store_now();
	submit(c->sip, &job);
}

void call_record_near(struct call *c)
{
	struct store_job *job;

	if (!c->recorded || !c->near)
		return;
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->op = STORE_OP_CALL_NEAR;
	copy(job->id, sizeof(job->id), c->id);
	call_leg_dialog(c->near, &job->call.near);
	submit(c->sip, job);
	free(job);
}
