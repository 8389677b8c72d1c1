/* What the move writes to the store: its states, its events, wrong guesses. */
#include <stdio.h>
#include <string.h>

#include <sofia-sip/msg_addr.h>

#include "move/move_int.h"

enum store_move_state move_store_state(enum sip_move_state st)
{
	switch (st) {
	case SIP_MOVE_REDEEMED:
		return STORE_MOVE_REDEEMED;
	case SIP_MOVE_CONFIRMING:
		return STORE_MOVE_CONFIRMING;
	case SIP_MOVE_MOVING:
		return STORE_MOVE_MOVING;
	case SIP_MOVE_DONE:
		return STORE_MOVE_DONE;
	case SIP_MOVE_FAILED:
		return STORE_MOVE_FAILED;
	default:
		return STORE_MOVE_OFFERED;
	}
}

void move_store_job(struct move *m, struct store_job *job)
{
	if (m->sip->conf.store && store_submit(m->sip->conf.store, job, NULL, NULL))
		LOG_ERR("move", "%s: store: cannot queue", m->id);
}

/* Who sent req, as guesses are counted: its address, never its port (store_source_key). */
void move_source_of(msg_t *req, char *out, size_t len)
{
	su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;

	if (!ai || !ai->ai_addr || store_source_key(ai->ai_addr, out, len))
		snprintf(out, len, "ip:?");
}

/* Counts a wrong guess of kind from source (against the move named, if any), on the worker. */
void move_guess_failed(struct sip *s, const char *source, enum store_key kind, const char *named)
{
	struct store_job job = {.op = STORE_OP_FAILURE_ADD, .at = store_now()};

	if (!s->conf.store)
		return;
	snprintf(job.source, sizeof(job.source), "%s", source);
	snprintf(job.id, sizeof(job.id), "%s", named ? named : "");
	job.redeem.key = kind;
	store_submit(s->conf.store, &job, NULL, NULL);
}
