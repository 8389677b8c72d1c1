/*
 * The media anchor: with [media] rtpengine set, rtpengine relays every call's media (ng offer,
 * answer and delete under the call's id, the near side tagged "near" and the far side "far"),
 * so that a move re-points only the near side and the far party gets no re-INVITE. rtpengine
 * down or slow never holds a call: the SDP goes on as it came and the call stays unanchored.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/anchor_int.h"
#include "util/soon.h"

struct anchor *anchor_the; /* one stack a process; NULL without [media] rtpengine */

static void op_free(struct anchor_op *op)
{
	free(op->body);
	free(op);
}

static void ac_free(struct anchor_call *ac)
{
	struct anchor_op *op;

	while ((op = STAILQ_FIRST(&ac->ops))) {
		STAILQ_REMOVE_HEAD(&ac->ops, link);
		sip_sdp_drop(op->w);
		op_free(op);
	}
	ng_cancel(ac->req);
	su_timer_destroy(ac->quiet);
	LIST_REMOVE(ac, link);
	free(ac->far_raw);
	free(ac->to_near);
	free(ac);
}

struct anchor_call *anchor_call_of(struct call *c, int make)
{
	struct anchor *a = anchor_the;
	struct anchor_call *ac;

	if (!a || a->slot < 0)
		return NULL;
	ac = c->slot[a->slot];
	if (ac || !make)
		return ac;
	ac = calloc(1, sizeof(*ac));
	if (!ac)
		return NULL;
	ac->a = a;
	ac->c = c;
	snprintf(ac->id, sizeof(ac->id), "%s", c->id);
	STAILQ_INIT(&ac->ops);
	LIST_INSERT_HEAD(&a->calls, ac, link);
	c->slot[a->slot] = ac;
	return ac;
}

static void put_sdp_command(struct buf *b, const char *command, const char *call_id,
                            const char *from_tag, const char *to_tag, const char *sdp, size_t len)
{
	benc_put_dict(b);
	benc_put_kv(b, "command", command);
	benc_put_kv(b, "call-id", call_id);
	if (from_tag)
		benc_put_kv(b, "from-tag", from_tag);
	if (to_tag)
		benc_put_kv(b, "to-tag", to_tag);
	if (sdp) {
		benc_put_str(b, "sdp");
		benc_put_mem(b, sdp, len);
	}
	if (!strcmp(command, "delete")) {
		benc_put_str(b, "delete-delay");
		benc_put_int(b, 0);
	}
	benc_put_end(b);
}

/* rtpengine lets go of the call's session (fire and forget: an unknown call is no harm). */
void anchor_send_delete(struct anchor *a, const char *call_id)
{
	struct buf b = {0};

	put_sdp_command(&b, "delete", call_id, NULL, NULL, NULL, 0);
	if (!b.failed)
		ng_send(a->ng, b.data, b.len, NULL, NULL, NULL);
	buf_release(&b);
}

static void ac_next(struct anchor_call *ac);

/*
 * rtpengine gave up on this call (or never took it): its SDPs go on as they came. A call is
 * anchored both ways or not at all: a side whose last SDP was rtpengine's gets the other's own
 * in a re-INVITE once the offer in flight is over (unanchor_start).
 */
static void ac_off(struct anchor_call *ac, const char *why)
{
	struct anchor_op *op;

	if (ac->state != ANCHOR_OFF) {
		log_limited(&ac->a->lim, LOG_LEVEL_WARN, "media",
		            "rtpengine %s: %s: call %s goes on unanchored", ac->a->addr, why,
		            ac->id);
		metric_inc(METRIC_MEDIA_UNANCHORED_TOTAL);
	}
	ac->state = ANCHOR_OFF;
	/* A request still with rtpengine has no message to go with any more: its answer is
	 * not waited for (the session it may make is deleted at the call's end). */
	ng_cancel(ac->req);
	ac->req = NULL;
	ac->in_reply = 1;
	while (!ac->gone && (op = STAILQ_FIRST(&ac->ops))) {
		STAILQ_REMOVE_HEAD(&ac->ops, link);
		if (op->w) {
			anchor_mark_side(ac, op->w->to, 0);
			sip_sdp_resume(op->w, NULL, 0);
		} else if (op->cb) {
			op->cb(op->arg, EHOSTUNREACH, NULL, 0, NULL);
		}
		op_free(op);
	}
	ac->in_reply = 0;
	if (ac->gone) {
		ac_free(ac);
		return;
	}
	if (ac->to_near_anchored || ac->to_far_anchored)
		anchor_unanchor_start(ac);
}

/* body for the near-side party to (rtpengine's, with our origin toward it), then on. */
static void resume_anchored(struct anchor_call *ac, struct sip_sdp_wait *w, const char *body,
                            size_t len)
{
	struct call *c = ac->c;
	size_t n = 0;
	char *mine = w->to != c->far ? anchor_for_near(ac, w->to, body, len, &n) : NULL;
	char *copy = mine ? strndup(mine, n) : NULL;

	/* The call's home may go with the message sent on: our copy lives outside it. */
	su_free(c->home, mine);
	anchor_mark_side(ac, w->to, 1);
	sip_sdp_resume(w, copy ? copy : body, copy ? n : len);
	free(copy);
}

static void on_reply(void *arg, int err, const struct benc *reply)
{
	struct anchor_call *ac = arg;
	struct anchor_op *op = STAILQ_FIRST(&ac->ops);
	const struct benc *sdp = benc_get(reply, "sdp");
	char why[160];

	ac->req = NULL;
	if (ac->gone) {
		/* Its call ended while rtpengine had the request: what it made goes (the answer
		 * may have come after our delete at call_gone). */
		anchor_send_delete(ac->a, ac->id);
		ac_free(ac);
		return;
	}
	if (!op)
		return;
	if (!err && !benc_is(benc_get(reply, "result"), "ok")) {
		char reason[100] = "";

		benc_get_str(reply, "error-reason", reason, sizeof(reason));
		snprintf(why, sizeof(why), "%s refused: %s", op->command, reason);
		err = EPROTO;
	} else if (err) {
		snprintf(why, sizeof(why), "%s: %s", op->command,
		         err == ETIMEDOUT ? "no answer" : strerror(err));
	} else if (op->w && (!sdp || sdp->type != BENC_STR)) {
		snprintf(why, sizeof(why), "%s: answer without SDP", op->command);
		err = EPROTO;
	}
	if (err) {
		if (!op->w && (err == EPROTO || op->cb || op->paired)) {
			/* The move's own request was refused (or it waits for the answer): the move
			 * decides; the call stays anchored. A refused re-point's answer goes too.
			 */
			struct anchor_op *next = op->paired ? STAILQ_NEXT(op, link) : NULL;

			STAILQ_REMOVE_HEAD(&ac->ops, link);
			LOG_WARN("media", "rtpengine %s: call %s: %s", ac->a->addr, ac->id, why);
			if (next) {
				STAILQ_REMOVE_HEAD(&ac->ops, link);
				op_free(op);
				op = next;
			}
			ac->in_reply = 1;
			if (op->cb)
				op->cb(op->arg, err, NULL, 0, NULL);
			ac->in_reply = 0;
			op_free(op);
			if (ac->gone) {
				ac_free(ac);
				return;
			}
			ac_next(ac);
			return;
		}
		ac_off(ac, why);
		return;
	}
	STAILQ_REMOVE_HEAD(&ac->ops, link);
	ac->in_reply = 1;
	if (op->w) {
		if (ac->state == ANCHOR_NONE) {
			ac->state = ANCHOR_ON;
			metric_inc(METRIC_MEDIA_ANCHORED_TOTAL);
			LOG_INFO("media", "%s: media anchored at rtpengine %s", ac->id,
			         ac->a->addr);
		}
		if (op->w->to == ac->c->near) {
			free(ac->to_near);
			ac->to_near = strndup(sdp->s, sdp->len);
		}
		resume_anchored(ac, op->w, sdp->s, sdp->len);
	} else if (op->cb) {
		if (sdp && sdp->type == BENC_STR && !strcmp(op->command, "answer") &&
		    !strcmp(op->from_tag, TAG_NEAR)) {
			free(ac->to_near);
			ac->to_near = strndup(sdp->s, sdp->len);
		}
		op->cb(op->arg, 0, sdp && sdp->type == BENC_STR ? sdp->s : NULL,
		       sdp && sdp->type == BENC_STR ? sdp->len : 0, reply);
	}
	op_free(op);
	ac->in_reply = 0;
	if (ac->gone) {
		ac_free(ac);
		return;
	}
	ac_next(ac);
}

/* Send the first op if none is in flight. A failure to send is answered on the loop's next
 * turn (on_soon): the hook that queued it never sees its message resumed within itself. */
static void ac_next(struct anchor_call *ac)
{
	struct anchor_op *op = STAILQ_FIRST(&ac->ops);
	struct buf b = {0};
	int err;

	if (!op || ac->req || ac->gone || ac->send_err)
		return;
	put_sdp_command(&b, op->command, ac->id, op->from_tag, op->to_tag, op->body, op->len);
	err = b.failed ? ENOMEM : ng_send(ac->a->ng, b.data, b.len, on_reply, ac, &ac->req);
	buf_release(&b);
	if (err) {
		ac->req = NULL;
		ac->send_err = err;
		soon_run(ac->a->soon);
		return;
	}
	if (!strcmp(op->command, "offer"))
		ac->sent = 1;
}

static void on_soon(void *arg)
{
	struct anchor *a = arg;
	struct anchor_call *ac;
	int found = 1;

	while (found) {
		found = 0;
		LIST_FOREACH(ac, &a->calls, link)
		if (ac->send_err) {
			int err = ac->send_err;

			ac->send_err = 0;
			found = 1;
			on_reply(ac, err, NULL); /* may free ac: the list is walked again */
			break;
		}
	}
}

static int ac_push(struct anchor_call *ac, struct sip_sdp_wait *w, const char *command,
                   const char *from_tag, const char *to_tag, const char *body, size_t len,
                   move_anchor_h *cb, void *arg)
{
	struct anchor_op *op = calloc(1, sizeof(*op));

	if (!op)
		return ENOMEM;
	op->w = w;
	op->command = command;
	op->from_tag = from_tag;
	op->to_tag = to_tag;
	op->cb = cb;
	op->arg = arg;
	if (body) {
		op->body = strndup(body, len);
		op->len = len;
		if (!op->body) {
			free(op);
			return ENOMEM;
		}
	}
	STAILQ_INSERT_TAIL(&ac->ops, op, link);
	if (!ac->req && STAILQ_FIRST(&ac->ops) == op && !ac->in_reply)
		ac_next(ac);
	return 0;
}

static int on_sdp(void *arg, struct call *c, struct leg *from, struct leg *to, int offer,
                  const char *body, size_t len, struct sip_sdp_wait *w)
{
	struct anchor *a = arg;
	struct anchor_call *ac;
	const char *tag, *other;

	if ((from != c->near && from != c->far) || (to != c->near && to != c->far))
		return 0; /* a move's new device: the move asks for itself */
	ac = anchor_call_of(c, w != NULL);
	if (!ac)
		return 0;
	if (from == c->far) {
		free(ac->far_raw);
		ac->far_raw = strndup(body, len);
	}
	if (!w) {
		/* An UPDATE, a PRACK, an answer in an ACK: it goes as it came, so the call goes
		 * on unanchored (each side gets the other's own SDP). */
		anchor_mark_side(ac, to, 0);
		if (ac->state != ANCHOR_OFF) {
			LOG_INFO("media",
			         "%s: an SDP %s from %s outside an INVITE's offer and answer "
			         "is not anchored",
			         c->id, offer ? "offer" : "answer", call_side(from));
			ac_off(ac, "an SDP it cannot hold (UPDATE, PRACK or ACK)");
		}
		return 0;
	}
	if (ac->state == ANCHOR_OFF) {
		anchor_mark_side(ac, to, 0);
		return 0;
	}
	if (ac->state == ANCHOR_NONE && STAILQ_EMPTY(&ac->ops) && (!offer || from != c->in)) {
		/* A late offer (the answer comes in an ACK): not anchored. */
		ac->state = ANCHOR_OFF;
		LOG_INFO("media", "%s: the call's first offer is not the caller's: unanchored",
		         c->id);
		return 0;
	}
	if (a->down && ac->state == ANCHOR_NONE) {
		ac_off(ac, "down at the last ping");
		return 0;
	}
	tag = from == c->near ? TAG_NEAR : TAG_FAR;
	other = from == c->near ? TAG_FAR : TAG_NEAR;
	if (offer) {
		ac->offerer = tag;
		return !ac_push(ac, w, "offer", tag, ac->state == ANCHOR_NONE ? NULL : other, body,
		                len, NULL, NULL);
	}
	if (!ac->offerer)
		return 0;
	return !ac_push(ac, w, "answer", ac->offerer, ac->offerer == tag ? other : tag, body, len,
	                NULL, NULL);
}

unsigned move_anchor_verify_ms(void)
{
	return anchor_the ? anchor_the->verify_ms : 5000;
}

unsigned move_anchor_undo_secs(void)
{
	return anchor_the ? anchor_the->undo_secs : 0;
}

static void on_call_ending(void *arg, struct call *c)
{
	struct anchor_call *ac = anchor_call_of(c, 0);
	struct anchor_op *op, *next;
	unsigned was;

	if (!ac)
		return;
	/*
	 * Answers held for rtpengine go on at once as they came: the core finishes each for an
	 * ending call (a 2xx gets its ACK and BYE). Dropped at call_gone, they would get neither.
	 * Held requests stay until call_gone: sending one on now could end the call's last leg
	 * under the caller of call_end (an INVITE's leg no longer wanted is simply ended).
	 */
	was = ac->in_reply;
	ac->in_reply = 1;
	for (op = STAILQ_FIRST(&ac->ops); op && !ac->gone; op = next) {
		struct sip_sdp_wait *w = op->w;

		next = STAILQ_NEXT(op, link);
		if (!w || sip_object(w->msg)->sip_request)
			continue;
		op->w = NULL;
		if (op != STAILQ_FIRST(&ac->ops) || !ac->req) {
			STAILQ_REMOVE(&ac->ops, op, anchor_op, link);
			op_free(op);
		}
		anchor_mark_side(ac, w->to, 0);
		sip_sdp_resume(w, NULL, 0);
	}
	ac->in_reply = was;
	if (ac->gone && !was)
		ac_free(ac);
}

static void on_call_gone(void *arg, struct call *c)
{
	struct anchor *a = arg;
	struct anchor_call *ac = anchor_call_of(c, 0);
	struct anchor_op *op;

	if (!ac)
		return;
	c->slot[a->slot] = NULL;
	if (ac->sent)
		anchor_send_delete(a, ac->id);
	ac->c = NULL;
	if (ac->in_reply) {
		ac->gone = 1;
		return;
	}
	if (ac->req) {
		/* rtpengine may answer after our delete: the answer deletes again (on_reply). */
		ac->gone = 1;
		while ((op = STAILQ_FIRST(&ac->ops))) {
			STAILQ_REMOVE_HEAD(&ac->ops, link);
			sip_sdp_drop(op->w);
			op_free(op);
		}
		return;
	}
	ac_free(ac);
}

static void on_ping(void *arg, int err, const struct benc *reply)
{
	struct anchor *a = arg;
	int down = err || !benc_is(benc_get(reply, "result"), "pong");
	struct anchor_call *ac;
	unsigned n = 0, moved = 0;

	a->ping_req = NULL;
	if (down && !a->down) {
		LIST_FOREACH(ac, &a->calls, link)
		if (ac->state == ANCHOR_ON && !ac->gone) {
			n++;
			moved += anchor_unanchor(ac);
		}
		LOG_ERR("media",
		        "rtpengine %s does not answer (%s): new calls go unanchored; %u anchored "
		        "calls go on unanchored (%u re-INVITEd with each other's media)",
		        a->addr, err ? strerror(err) : "no pong", n, moved);
	} else if (!down && a->down)
		LOG_INFO("media", "rtpengine %s answers again: new calls are anchored", a->addr);
	a->down = down;
}

static void ping_tick(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	struct anchor *a = arg;
	static const char ping[] = "d7:command4:pinge";

	if (!a->ping_req)
		ng_send(a->ng, ping, sizeof(ping) - 1, on_ping, a, &a->ping_req);
}

static void on_stop(void *arg, struct sip *s)
{
	struct anchor *a = arg;

	while (!LIST_EMPTY(&a->calls)) {
		struct anchor_call *ac = LIST_FIRST(&a->calls);

		if (ac->c)
			ac->c->slot[a->slot] = NULL;
		ac_free(ac);
	}
	su_timer_destroy(a->ping);
	ng_cancel(a->ping_req);
	ng_free(a->ng);
	soon_free(a->soon);
	free(a->addr);
	if (anchor_the == a)
		anchor_the = NULL;
	free(a);
}

/*
 * A call read back after a restart: rtpengine may still relay it under the call's id (the tags
 * are always near and far), but what it last offered each side is gone with the old process.
 * The call goes on unanchored from its next offer; the session is deleted when it ends.
 */
static void on_call_restored(void *arg, struct call *c)
{
	struct anchor_call *ac = anchor_call_of(c, 1);

	if (!ac)
		return;
	ac->state = ANCHOR_OFF;
	ac->sent = 1;
	LOG_INFO("media",
	         "%s: read back: unanchored from its next offer; rtpengine's session of it "
	         "(if any) is deleted when it ends",
	         c->id);
}

static const struct sip_call_hooks anchor_hooks = {
    .call_restored = on_call_restored,
    .invite_response = anchor_on_invite_response,
    .leg_terminated = anchor_on_leg_terminated,
    .call_ending = on_call_ending,
    .call_gone = on_call_gone,
    .stop = on_stop,
    .sdp = on_sdp,
};

int move_anchor_init(struct sip *s, const char *rtpengine, unsigned verify_secs, unsigned undo_secs)
{
	struct anchor *a;
	int err;

	if (!rtpengine || !*rtpengine)
		return 0;
	a = calloc(1, sizeof(*a));
	if (!a)
		return ENOMEM;
	a->s = s;
	a->verify_ms = verify_secs * 1000;
	a->undo_secs = undo_secs;
	a->lim.per_second = 10;
	LIST_INIT(&a->calls);
	a->addr = strdup(rtpengine);
	a->slot = sip_call_slot_new(s);
	err = !a->addr ? ENOMEM : a->slot < 0 ? ENOSPC : 0;
	if (!err)
		err = ng_alloc(&a->ng, s->root, rtpengine, ANCHOR_TIMEOUT_MS, ANCHOR_RETRIES);
	if (!err)
		err = soon_alloc(&a->soon, s->root, on_soon, a);
	if (!err) {
		a->ping = su_timer_create(su_root_task(s->root), ANCHOR_PING_MS);
		err = a->ping ? sip_call_hooks_add(s, &anchor_hooks, a) : ENOMEM;
	}
	if (err) {
		su_timer_destroy(a->ping);
		soon_free(a->soon);
		ng_free(a->ng);
		free(a->addr);
		free(a);
		return err;
	}
	anchor_the = a;
	su_timer_set_for_ever(a->ping, ping_tick, a);
	ping_tick(NULL, NULL, a);
	LOG_INFO("media", "media anchored at rtpengine %s", rtpengine);
	return 0;
}

int move_anchored(struct call *c)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	return ac && ac->state == ANCHOR_ON;
}

const char *move_anchor_near_sdp(struct call *c)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	return ac ? ac->to_near : NULL;
}

/* The near side's media goes to sdp (a new device's, or A's back): an offer from near with
 * it, then the far party's SDP as the answer again; cb gets the SDP for the near device. */
int move_anchor_repoint(struct call *c, const char *sdp, move_anchor_h *cb, void *arg)
{
	struct anchor_call *ac = anchor_call_of(c, 0);
	int err;

	if (!ac || ac->state != ANCHOR_ON || !ac->far_raw || !sdp)
		return ENOENT;
	err = ac_push(ac, NULL, "offer", TAG_NEAR, TAG_FAR, sdp, strlen(sdp), NULL, NULL);
	if (!err) {
		struct anchor_op *op, *last = NULL;

		STAILQ_FOREACH(op, &ac->ops, link)
		last = op;
		last->paired = 1;
	}
	if (!err)
		err = ac_push(ac, NULL, "answer", TAG_NEAR, TAG_FAR, ac->far_raw,
		              strlen(ac->far_raw), cb, arg);
	return err;
}

/* rtpengine's counters of the call (ng query); cb gets the reply. */
int move_anchor_query(struct call *c, move_anchor_h *cb, void *arg)
{
	struct anchor_call *ac = anchor_call_of(c, 0);

	if (!ac || ac->state != ANCHOR_ON)
		return ENOENT;
	return ac_push(ac, NULL, "query", NULL, NULL, NULL, 0, cb, arg);
}
