/*
 * The media anchor: with [media] rtpengine set, rtpengine relays every call's media (ng offer,
 * answer and delete under the call's id, the near side tagged "near" and the far side "far"),
 * so that a move re-points only the near side and the far party gets no re-INVITE. rtpengine
 * down or slow never holds a call: the SDP goes on as it came and the call stays unanchored.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "media/ng.h"
#include "move/move_int.h"

#define ANCHOR_TIMEOUT_MS 300 /* a try; with the retries below ~1.2 s before a call goes on */
#define ANCHOR_RETRIES    3
#define ANCHOR_PING_MS    2000

static const char TAG_NEAR[] = "near", TAG_FAR[] = "far";

enum anchor_state { ANCHOR_NONE, ANCHOR_ON, ANCHOR_OFF };

/* One ng request of a call: for a held SIP message (w), or the move's own (cb). */
struct anchor_op {
	STAILQ_ENTRY(anchor_op) link;
	struct sip_sdp_wait *w;
	const char *command; /* offer, answer, query */
	const char *from_tag, *to_tag;
	char *body; /* the SDP, or NULL */
	size_t len;
	move_anchor_h *cb;
	void *arg;
	unsigned paired : 1; /* a re-point's offer: its answer is the next op */
};

/* A call's anchor. Owned by the call's slot; freed at its call_gone (or after the reply being
 * handled when the call went during it). */
struct anchor_call {
	struct anchor *a;
	struct call *c;
	LIST_ENTRY(anchor_call) link;
	enum anchor_state state;
	char *far_raw;                /* the far party's last SDP, as it came */
	char *to_near;                /* rtpengine's last SDP for the near device */
	const char *offerer;          /* the tag whose offer waits for its answer */
	STAILQ_HEAD(, anchor_op) ops; /* the first is in flight */
	struct leg *reinvited[2];     /* legs we re-INVITEd ourselves: we ACK their 2xx */
	struct ng_req *req;
	unsigned in_reply : 1, gone : 1;
};

struct anchor {
	struct sip *s;
	struct ng *ng;
	char *addr;
	int slot;
	unsigned verify_ms, undo_secs;
	LIST_HEAD(, anchor_call) calls;
	su_timer_t *ping;
	struct ng_req *ping_req;
	unsigned down : 1;
	struct log_limit lim;
};

static struct anchor *the_anchor; /* one stack a process; NULL without [media] rtpengine */

/* sdp with its direction set to dir (NULL: kept) and its o= version raised by bump (RFC 3264
 * 8); free() it. */
char *move_sdp_with(const char *sdp, const char *dir, unsigned bump)
{
	struct buf b = {0};
	const char *p = sdp;
	int had_dir = 0;

	while (p && *p) {
		size_t n = strcspn(p, "\r\n"), e = n;
		char user[64], sess[32], rest[200];
		unsigned long long ver;

		while (p[e] == '\r' || p[e] == '\n')
			e++;
		if (!strncmp(p, "a=sendrecv", n) || !strncmp(p, "a=sendonly", n) ||
		    !strncmp(p, "a=recvonly", n) || !strncmp(p, "a=inactive", n)) {
			if (n == 10 && dir) {
				buf_printf(&b, "a=%s\r\n", dir);
				had_dir = 1;
				p += e;
				continue;
			}
		}
		if (!strncmp(p, "o=", 2) && n < 300) {
			char line[300];

			snprintf(line, sizeof(line), "%.*s", (int)n, p);
			if (sscanf(line, "o=%63s %31s %llu %199[^\r\n]", user, sess, &ver, rest) ==
			    4) {
				buf_printf(&b, "o=%s %s %llu %s\r\n", user, sess, ver + bump, rest);
				p += e;
				continue;
			}
		}
		buf_printf(&b, "%.*s\r\n", (int)n, p);
		p += e;
	}
	if (!had_dir && dir)
		buf_printf(&b, "a=%s\r\n", dir);
	return buf_take(&b, NULL);
}

static int reinvite_with(struct anchor_call *ac, struct leg *leg, const char *sdp);

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
	LIST_REMOVE(ac, link);
	free(ac->far_raw);
	free(ac->to_near);
	free(ac);
}

static struct anchor_call *ac_of(struct call *c, int make)
{
	struct anchor *a = the_anchor;
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

static void ac_next(struct anchor_call *ac);

/* rtpengine gave up on this call (or never took it): its SDPs go on as they came. */
static void ac_off(struct anchor_call *ac, const char *why)
{
	struct anchor_op *op;

	if (ac->state != ANCHOR_OFF) {
		log_limited(&ac->a->lim, LOG_LEVEL_WARN, "media",
		            "rtpengine %s: %s: call %s goes on unanchored", ac->a->addr, why,
		            ac->c->id);
		metric_inc(METRIC_MEDIA_UNANCHORED_TOTAL);
	}
	ac->state = ANCHOR_OFF;
	ac->in_reply = 1;
	while (!ac->gone && (op = STAILQ_FIRST(&ac->ops))) {
		STAILQ_REMOVE_HEAD(&ac->ops, link);
		if (op->w)
			sip_sdp_resume(op->w, NULL, 0);
		else if (op->cb)
			op->cb(op->arg, EHOSTUNREACH, NULL, 0, NULL);
		op_free(op);
	}
	ac->in_reply = 0;
	if (ac->gone)
		ac_free(ac);
}

static void on_reply(void *arg, int err, const struct benc *reply)
{
	struct anchor_call *ac = arg;
	struct anchor_op *op = STAILQ_FIRST(&ac->ops);
	const struct benc *sdp = benc_get(reply, "sdp");
	char why[160];

	ac->req = NULL;
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
			LOG_WARN("media", "rtpengine %s: call %s: %s", ac->a->addr, ac->c->id, why);
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
			LOG_INFO("media", "%s: media anchored at rtpengine %s", ac->c->id,
			         ac->a->addr);
		}
		if (op->w->to == ac->c->near) {
			free(ac->to_near);
			ac->to_near = strndup(sdp->s, sdp->len);
		}
		sip_sdp_resume(op->w, sdp->s, sdp->len);
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

/* Send the first op if none is in flight. */
static void ac_next(struct anchor_call *ac)
{
	struct anchor_op *op = STAILQ_FIRST(&ac->ops);
	struct buf b = {0};
	int err;

	if (!op || ac->req || ac->gone)
		return;
	put_sdp_command(&b, op->command, ac->c->id, op->from_tag, op->to_tag, op->body, op->len);
	err = b.failed ? ENOMEM : ng_send(ac->a->ng, b.data, b.len, on_reply, ac, &ac->req);
	buf_release(&b);
	if (err) {
		ac->req = NULL;
		on_reply(ac, err, NULL);
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
	/* Sent from the loop's next turn at the earliest: the hook never resumes within itself. */
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
	ac = ac_of(c, 1);
	if (!ac || ac->state == ANCHOR_OFF)
		return 0;
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
	if (from == c->far) {
		free(ac->far_raw);
		ac->far_raw = strndup(body, len);
	}
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

/* The answer to a re-INVITE we sent ourselves (a hold, a resume): ACK it. */
static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	struct anchor_call *ac = ac_of(c, 0);
	unsigned i;

	if (!ac)
		return 0;
	for (i = 0; i < 2 && ac->reinvited[i] != leg; i++)
		;
	if (i == 2 || !leg)
		return 0;
	if (status < 200)
		return 1;
	ac->reinvited[i] = NULL;
	if (status < 300)
		leg_ack(leg, NULL, NULL);
	else
		LOG_INFO("media", "%s: %s answered %d %s to our re-INVITE", c->id, call_side(leg),
		         status, phrase ? phrase : "");
	return 1;
}

int move_anchor_reinvite(struct call *c, struct leg *leg, const char *sdp)
{
	struct anchor_call *ac = ac_of(c, 0);

	return ac ? reinvite_with(ac, leg, sdp) : ENOENT;
}

static int reinvite_with(struct anchor_call *ac, struct leg *leg, const char *sdp)
{
	struct call *c = ac->c;
	sip_payload_t *pl;
	unsigned i;

	if (!leg || leg->terminated || leg->oinv || !sdp)
		return EBUSY;
	for (i = 0; i < 2 && ac->reinvited[i] && ac->reinvited[i] != leg; i++)
		;
	if (i == 2)
		return EBUSY;
	pl = sip_payload_create(c->home, sdp, (isize_t)strlen(sdp));
	if (leg == c->far)
		pl = sdp_to_far(c, pl);
	if (leg_invite(leg, NULL, pl, TAG_END()))
		return EIO;
	ac->reinvited[i] = leg;
	return 0;
}

unsigned move_anchor_verify_ms(void)
{
	return the_anchor ? the_anchor->verify_ms : 5000;
}

unsigned move_anchor_undo_secs(void)
{
	return the_anchor ? the_anchor->undo_secs : 0;
}

static void on_call_gone(void *arg, struct call *c)
{
	struct anchor *a = arg;
	struct anchor_call *ac = ac_of(c, 0);
	struct buf b = {0};

	if (!ac)
		return;
	c->slot[a->slot] = NULL;
	if (ac->state == ANCHOR_ON && !a->down) {
		put_sdp_command(&b, "delete", c->id, NULL, NULL, NULL, 0);
		if (!b.failed)
			ng_send(a->ng, b.data, b.len, NULL, NULL, NULL);
		buf_release(&b);
	}
	if (ac->in_reply) {
		ac->gone = 1;
		return;
	}
	ac_free(ac);
}

/* rtpengine is gone: each side gets the other's own media again, in a re-INVITE. */
static int ac_unanchor(struct anchor_call *ac)
{
	struct call *c = ac->c;
	char *to_near;
	int sent = 0;

	ac->state = ANCHOR_OFF;
	metric_inc(METRIC_MEDIA_UNANCHORED_TOTAL);
	if (c->state != SIP_CALL_ANSWERED || !c->near || !c->far || !c->near_sdp || !ac->far_raw)
		return 0;
	to_near = move_sdp_with(ac->far_raw, NULL, 1);
	sent = !reinvite_with(ac, c->far, c->near_sdp) && to_near &&
	       !reinvite_with(ac, c->near, to_near);
	free(to_near);
	return sent;
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
		if (ac->state == ANCHOR_ON) {
			n++;
			moved += ac_unanchor(ac);
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

		ac->c->slot[a->slot] = NULL;
		ac_free(ac);
	}
	su_timer_destroy(a->ping);
	ng_cancel(a->ping_req);
	ng_free(a->ng);
	free(a->addr);
	if (the_anchor == a)
		the_anchor = NULL;
	free(a);
}

static const struct sip_call_hooks anchor_hooks = {
    .invite_response = on_invite_response,
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
	if (!err) {
		a->ping = su_timer_create(su_root_task(s->root), ANCHOR_PING_MS);
		err = a->ping ? sip_call_hooks_add(s, &anchor_hooks, a) : ENOMEM;
	}
	if (err) {
		su_timer_destroy(a->ping);
		ng_free(a->ng);
		free(a->addr);
		free(a);
		return err;
	}
	the_anchor = a;
	su_timer_set_for_ever(a->ping, ping_tick, a);
	ping_tick(NULL, NULL, a);
	LOG_INFO("media", "media anchored at rtpengine %s", rtpengine);
	return 0;
}

int move_anchored(struct call *c)
{
	struct anchor_call *ac = ac_of(c, 0);

	return ac && ac->state == ANCHOR_ON;
}

const char *move_anchor_near_sdp(struct call *c)
{
	struct anchor_call *ac = ac_of(c, 0);

	return ac ? ac->to_near : NULL;
}

/* The near side's media goes to sdp (a new device's, or A's back): an offer from near with
 * it, then the far party's SDP as the answer again; cb gets the SDP for the near device. */
int move_anchor_repoint(struct call *c, const char *sdp, move_anchor_h *cb, void *arg)
{
	struct anchor_call *ac = ac_of(c, 0);
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
	struct anchor_call *ac = ac_of(c, 0);

	if (!ac || ac->state != ANCHOR_ON)
		return ENOENT;
	return ac_push(ac, NULL, "query", NULL, NULL, NULL, 0, cb, arg);
}
