/*
 * The media moves: the re-INVITE of C with B's media (or RFC 3725: dialling B without an
 * offer), the 200 to B, the BYE to A, 491 back-off, and the rollback when C took B's media but
 * the move cannot finish.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "move/move_int.h"

static void reinvite_far(struct move *m);
static void anchor_switch(struct move *m);
static void reinvite_silent(su_root_magic_t *rm, su_timer_t *t, void *arg);

/* C took B's media but the move cannot finish: give C the near device's media back. */
void move_rollback(struct move *m)
{
	struct call *c = m->call;
	sip_payload_t *pl = NULL;

	if (!c || !c->far || !c->near_sdp || c->far->terminated) {
		move_detach(m);
		return;
	}
	if (move_anchored(c)) {
		/* rtpengine sends the far party's media to A again; nothing goes to far */
		move_event(m, "rollback", "rtpengine re-points the near side to the near device");
		move_anchor_repoint(c, c->near_sdp, NULL, NULL);
		move_detach(m);
		return;
	}
	move_to(m, MOVE_ROLLING_BACK, "far has the new device's media");
	c->offer_busy = 1;
	move_event(m, "rollback", "re-INVITE to far with the near device's media");
	pl = sip_payload_create(c->home, c->near_sdp, (isize_t)strlen(c->near_sdp));
	pl = sdp_to_far(c, pl);
	if (leg_invite(c->far, NULL, pl, TAG_END())) {
		c->offer_busy = 0;
		move_to(m, MOVE_FAILED, "cannot send the rollback");
		move_detach(m);
		return;
	}
	su_timer_set_interval(m->timer, reinvite_silent, m, MOVE_SILENT_MS);
}

void move_new_device_headers(struct call *c, char *out, size_t len)
{
	struct move_stack *ms = move_stack(c->sip);
	size_t n;

	out[0] = '\0';
	for (unsigned i = 0; ms && i < ms->nobservers; i++) {
		if (!ms->observers[i].o->new_device_headers)
			continue;
		n = strlen(out);
		if (n && n + 2 < len)
			memcpy(out + n, "\r\n", 3), n += 2;
		ms->observers[i].o->new_device_headers(ms->observers[i].arg, c, out + n, len - n);
		if (strlen(out) == n && n >= 2)
			out[n - 2] = '\0'; /* it added nothing: no empty line */
	}
}

static void observers_moved(struct call *c, struct leg *leg)
{
	struct move_stack *ms = move_stack(c->sip);

	for (unsigned i = 0; ms && i < ms->nobservers; i++)
		if (ms->observers[i].o->moved)
			ms->observers[i].o->moved(ms->observers[i].arg, c, leg);
}

static void complete(struct move *m)
{
	struct call *c = m->call;
	struct leg *old = c->near, *b = m->b;

	c->near = b;
	b->near = 1;
	if (c->in == old)
		c->in = b;
	if (c->out == old)
		c->out = b;
	c->offer_busy = 0;
	if (!move_anchored(c)) { /* for a rollback after verify_xr's hold */
		free(m->a_sdp);
		m->a_sdp = c->near_sdp ? strdup(c->near_sdp) : NULL;
	}
	su_free(c->home, c->near_sdp);
	c->near_sdp = m->b_sdp ? su_strdup(c->home, m->b_sdp) : NULL;
	free(m->taken_by);
	m->taken_by = b->uri ? strdup(b->uri) : NULL;
	if (move_anchored(c) && m->a_sdp && !m->a_gone && !old->terminated && !old->ending) {
		/* Make-before-break: A waits on hold until B's media is seen (verify.c). */
		su_timer_reset(m->timer);
		move_event(
		    m, "moved", "near leg moved to %s; redeem to switch %lld us, to answer %lld us",
		    b->uri ? b->uri : "?", m->t_reinvite - m->t_redeem, m->t_answer - m->t_redeem);
		call_touch(c, 1);
		move_verify_start(m, old);
		return;
	}
	if (move_xr_start(m, old)) {
		/* Make-before-break without the anchor: B's RTCP-XR report decides (xr.c). */
		move_event(m, "moved",
		           "near leg moved to %s; redeem to re-INVITE %lld us, to answer %lld us",
		           b->uri ? b->uri : "?", m->t_reinvite - m->t_redeem,
		           m->t_answer - m->t_redeem);
		call_touch(c, 1);
		return;
	}
	m->b = NULL;
	metric_inc(METRIC_MOVES_COMPLETED_TOTAL);
	move_event(m, "moved",
	           "near leg moved to %s; redeem to re-INVITE %lld us, to answer %lld us",
	           b->uri ? b->uri : "?", m->t_reinvite - m->t_redeem, m->t_answer - m->t_redeem);
	move_to(m, MOVE_DONE, "the near leg moved");
	su_timer_reset(m->timer);
	move_notify_refer(m, 200, "OK", 1);
	move_reply(m, 0);
	if (old->terminated || old->ending) {
		/* A hung up during the move; the stack has let go of it, or will. */
	}
	call_leg_end(old, "SIP;cause=200;text=\"Call moved\"");
	if (old->terminated)
		call_leg_terminated(old);
	move_record_near(c);
	/* The near dialog is B's now: a restart must find B, not A. */
	call_touch(c, 1);
	move_detach(m);
	observers_moved(c, b);
}

static void complete(struct move *m);

static sip_payload_t *payload_of(struct call *c, const char *sdp, size_t len)
{
	return sdp ? sip_payload_create(c->home, sdp, (isize_t)len) : NULL;
}

/* rtpengine's SDP for the new device, with the origin it is to see from us (RFC 3264 8). */
static sip_payload_t *near_payload(struct call *c, struct leg *leg, const char *sdp, size_t len)
{
	size_t n = 0;
	char *mine = sdp ? move_anchor_for_near(c, leg, sdp, len, &n) : NULL;
	sip_payload_t *pl = mine ? payload_of(c, mine, n) : payload_of(c, sdp, len);

	free(mine);
	return pl;
}

/* Anchored: rtpengine sends the near side's media to B now; B gets rtpengine's SDP. */
static void anchor_switched(void *arg, int err, const char *sdp, size_t len,
                            const struct benc *reply)
{
	struct move *m = arg;
	struct call *c = m->call;
	sip_payload_t *pl;

	if (!c || m->phase != MOVE_REINVITING)
		return;
	m->t_answer = move_now_us();
	if (err || !sdp) {
		move_fail(m, 500, "rtpengine could not re-point the near side: %s",
		          err ? strerror(err) : "no SDP");
		move_anchor_repoint(c, c->near_sdp, NULL, NULL);
		return;
	}
	if (m->b_gone || !m->b) {
		move_fail(m, 487, "the new device left during the move");
		move_anchor_repoint(c, c->near_sdp, NULL, NULL);
		return;
	}
	pl = near_payload(c, m->b, sdp, len);
	move_to(m, MOVE_ANSWERING, "rtpengine took the new device's media");
	if (m->third_party) {
		leg_ack(m->b, NULL, pl);
		complete(m);
		return;
	}
	if (!m->b_offered) {
		/* B answered our offer in its ACK (move_ack): that was the switch. */
		complete(m);
		return;
	}
	m->b->answered = 1;
	leg_answer(m->b, SIP_200_OK, NULL, pl, TAG_END());
}

/* Anchored: the far party keeps its media and its dialog untouched, no re-INVITE. */
static void anchor_switch(struct move *m)
{
	struct call *c = m->call;
	const char *near = move_anchor_near_sdp(c);
	int err;

	m->t_reinvite = move_now_us();
	/* What A has and what A got, to put A on hold and to take the call back to it. */
	free(m->a_sdp);
	free(m->a_sdp_out);
	m->a_sdp = c->near_sdp ? strdup(c->near_sdp) : NULL;
	m->a_sdp_out = near ? strdup(near) : NULL;
	if (!m->b_sdp) {
		/* B came without an offer: rtpengine's near-side SDP is ours; B answers in ACK. */
		if (!near) {
			move_fail(m, 500, "no anchored SDP to offer the new device");
			return;
		}
		move_to(m, MOVE_REINVITING, "the far leg is free");
		move_to(m, MOVE_ANSWERING, "the new device gets the anchor's offer");
		move_event(m, "anchor", "offer rtpengine's near-side media to the new device");
		m->b->answered = 1;
		leg_answer(m->b, SIP_200_OK, NULL, near_payload(c, m->b, near, strlen(near)),
		           TAG_END());
		return;
	}
	move_to(m, MOVE_REINVITING, "the far leg is free");
	err = move_anchor_repoint(c, m->b_sdp, anchor_switched, m);
	if (err) {
		move_fail(m, 500, "rtpengine: cannot re-point the near side: %s", strerror(err));
		return;
	}
	move_event(m, "anchor", "rtpengine re-points the near side to %s; no re-INVITE to far",
	           m->b && m->b->uri ? m->b->uri : "the new device");
}

/* Anchored, B answered our offer in its ACK: point the near side at B, then done. */
static void anchor_acked(void *arg, int err, const char *sdp, size_t len, const struct benc *reply)
{
	struct move *m = arg;

	if (!m->call || m->phase != MOVE_ANSWERING)
		return;
	m->t_answer = move_now_us();
	if (err) {
		move_fail(m, 500, "rtpengine could not re-point the near side: %s", strerror(err));
		return;
	}
	complete(m);
}

static void retry_reinvite(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	reinvite_far(arg);
}

/*
 * C has not answered the re-INVITE at all (RFC 3261 14.1: the dialog ends). sofia's NUA would
 * drop C's session without a BYE at the transaction timeout (32 s), leaving C with a dead call:
 * end it ourselves first, while the BYE can still be sent.
 */
static void reinvite_silent(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;
	struct call *c = m->call;

	if (!c || (m->phase != MOVE_REINVITING && m->phase != MOVE_ROLLING_BACK))
		return;
	move_fail(m, 488,
	          "the far party refused the new media: 408 no answer to the re-INVITE in %d s",
	          MOVE_SILENT_MS / 1000);
	call_end(c, 408, "SIP;cause=408;text=\"No answer to a re-INVITE\"");
}

static void reinvite_far(struct move *m)
{
	struct call *c = m->call;
	sip_payload_t *pl = NULL;

	if (!c || !c->far || c->far->terminated || c->state != SIP_CALL_ANSWERED) {
		move_fail(m, 480, "the far leg is gone");
		return;
	}
	if (move_anchored(c)) {
		anchor_switch(m);
		return;
	}
	/* Requests on one leg are serialised: wait for what is in flight. */
	if (c->offer_busy || c->ack_pending || c->reinvite_ack || c->far->oinv) {
		if (++m->tries > MOVE_RETRY_MAX) {
			move_fail(m, 491, "the far leg stayed busy");
			return;
		}
		su_timer_set_interval(m->timer, retry_reinvite, m, MOVE_RETRY_MS);
		return;
	}
	move_to(m, MOVE_REINVITING, "the far leg is free");
	c->offer_busy = 1;
	m->t_reinvite = move_now_us();
	if (m->b_sdp) {
		pl = sip_payload_create(c->home, m->b_sdp, (isize_t)strlen(m->b_sdp));
		pl = sdp_to_far(c, pl);
	}
	if (leg_invite(c->far, NULL, pl, TAG_END())) {
		c->offer_busy = 0;
		move_fail(m, 500, "cannot send the re-INVITE to far");
		return;
	}
	su_timer_set_interval(m->timer, reinvite_silent, m, MOVE_SILENT_MS);
	move_event(m, "reinvite", "re-INVITE to far %s %s", c->far->uri ? c->far->uri : "",
	           pl ? "with the new device's offer" : "without an offer");
}

static void dial_b(struct move *m)
{
	struct call *c = m->call;
	struct sip *s = m->sip;
	struct leg *b;
	sip_addr_t *to, *fr;
	url_t *tu;

	/* B sees the moving user calling (RFC 3725 flow I: an INVITE without an offer). Only a
	 * domain of [move] dial_domains is called directly; our users are the PBX's to reach. */
	char target[320], from[300];
	int direct = 0;
	if (move_dial_target(s, m->target, target, sizeof(target), &direct)) {
		move_fail(m, 403, "the target %s is not one we may call", m->target);
		return;
	}
	url_t *nu = c->near && c->near->uri ? url_make(c->home, c->near->uri) : NULL;
	snprintf(from, sizeof(from), "<sip:%s@%s>",
	         nu && nu->url_user && !strpbrk(nu->url_user, "<>\"@ ") ? nu->url_user : "move",
	         s->conf.domain);
	su_free(c->home, nu);
	tu = url_make(c->home, target);
	to = sip_to_make(c->home, target);
	fr = sip_from_make(c->home, from);
	b = tu && to && fr ? leg_dial(c, 1, tu, fr, to, !direct) : NULL;
	if (!b) {
		move_fail(m, 500, "cannot make a leg for %s", m->target);
		return;
	}
	b->uri = su_strdup(c->home, m->target);
	m->b = b;
	move_to(m, MOVE_DIALING, "the new device is to be called");
	move_event(m, "dial", "INVITE without an offer to %s", m->target);
	char extra[1024];
	move_new_device_headers(c, extra, sizeof(extra));
	if (leg_invite(b, NULL, NULL, TAG_IF(extra[0], SIPTAG_HEADER_STR(extra)), TAG_END()))
		move_fail(m, 500, "cannot send the INVITE to %s", m->target);
}

void move_go(struct move *m)
{
	if (m->third_party && !m->b)
		dial_b(m);
	else
		reinvite_far(m);
}

static void copy_payload(char **dst, const sip_t *sip)
{
	const sip_payload_t *pl = body_pl(sip);

	free(*dst);
	*dst = pl && pl->pl_len ? strndup(pl->pl_data, pl->pl_len) : NULL;
}

static void backoff_491(struct move *m)
{
	struct call *c = m->call;
	unsigned r = 0, ms;

	RAND_bytes((unsigned char *)&r, sizeof(r));
	/* RFC 3261 section 14.1: the Call-ID's owner waits 2.1-4 s, the other 0-2 s. */
	if (!c->far->incoming)
		ms = 2100 + (r % 191) * 10;
	else
		ms = (r % 201) * 10;
	move_to(m, MOVE_GLARE, "491 from far");
	move_event(m, "glare", "491 from far: retry in %u ms", ms);
	m->tries = 0;
	su_timer_set_interval(m->timer, retry_reinvite, m, ms);
}

int move_invite_response(struct move *m, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip)
{
	struct call *c = m->call;
	sip_payload_t *pl;

	if (leg == m->b && m->phase == MOVE_DIALING && !leg->answered) {
		if (status < 200)
			return 1;
		if (status >= 300) {
			move_fail(m, status, "the new device answered %d", status);
			return 1;
		}
		leg->answered = 1;
		call_leg_tags(leg, sip);
		copy_payload(&m->b_sdp, sip);
		m->t_redeem = move_now_us();
		if (!m->b_sdp) {
			move_fail(m, 488, "the new device answered without an offer");
			return 1;
		}
		move_event(m, "answered", "the new device answered with its offer");
		reinvite_far(m);
		return 1;
	}
	if (leg != c->far || (m->phase != MOVE_REINVITING && m->phase != MOVE_ROLLING_BACK))
		return 0;
	su_timer_reset(m->timer); /* C answered: it is there */
	if (status < 200)
		return 1;
	if (status >= 300) {
		c->offer_busy = 0;
		if (m->phase == MOVE_ROLLING_BACK) {
			move_event(m, "rollback", "far answered %d to the rollback", status);
			move_xr_rolled_back(m, NULL);
			move_to(m, MOVE_FAILED, "far refused the rollback");
			move_detach(m);
			return 1;
		}
		if (status == 491 && m->b && ++m->glare_tries <= MOVE_491_TRIES && !m->b_gone) {
			backoff_491(m);
			return 1;
		}
		move_fail(m, status == 491 ? 491 : 488,
		          "the far party refused the new media: %d %s", status,
		          phrase ? phrase : "");
		if (status == 408 || status == 481)
			call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
		return 1;
	}
	m->t_answer = move_now_us();
	if (m->phase == MOVE_ROLLING_BACK) {
		leg_ack(c->far, NULL, NULL);
		c->offer_busy = 0;
		move_event(m, "rollback", "far has the near device's media again");
		move_xr_rolled_back(m, sip);
		move_to(m, MOVE_FAILED, "rolled back");
		move_detach(m);
		return 1;
	}
	move_to(m, MOVE_ANSWERING, "far took the new device's media");
	if (m->b_gone || !m->b) {
		leg_ack(c->far, NULL, NULL);
		c->offer_busy = 0;
		move_fail(m, 487, "the new device left during the move");
		return 1;
	}
	if (m->third_party) {
		leg_ack(c->far, NULL, NULL);
		leg_ack(m->b, NULL, body_pl(sip));
		complete(m);
		return 1;
	}
	if (!move_anchored(c)) { /* what A is to get, held (xr.c): C's media */
		const sip_payload_t *cp = body_pl(sip);

		free(m->a_sdp_out);
		m->a_sdp_out = cp && cp->pl_len ? strndup(cp->pl_data, cp->pl_len) : NULL;
	}
	/* When C offered, its ACK waits for B's answer, in B's ACK (move_ack). */
	if (m->b_offered)
		leg_ack(c->far, NULL, NULL);
	pl = body_pl(sip);
	m->b->answered = 1;
	char extra[1024];
	move_new_device_headers(c, extra, sizeof(extra));
	leg_answer(m->b, SIP_200_OK, NULL, pl, TAG_IF(extra[0], SIPTAG_HEADER_STR(extra)),
	           TAG_END());
	return 1;
}

int move_ack(struct move *m, struct leg *leg, const sip_t *sip)
{
	struct call *c = m->call;
	sip_payload_t *pl;

	if (leg != m->b)
		return 0;
	if (m->phase != MOVE_ANSWERING || m->third_party)
		return 1;
	if (move_anchored(c)) {
		if (m->b_offered) {
			complete(m);
			return 1;
		}
		copy_payload(&m->b_sdp, sip);
		if (!m->b_sdp || move_anchor_repoint(c, m->b_sdp, anchor_acked, m))
			move_fail(m, 488, "the new device answered without SDP in its ACK");
		return 1;
	}
	if (!m->b_offered) {
		copy_payload(&m->b_sdp, sip);
		pl = m->b_sdp ? sip_payload_create(c->home, m->b_sdp, (isize_t)strlen(m->b_sdp))
		              : NULL;
		pl = pl ? sdp_to_far(c, pl) : NULL;
		leg_ack(c->far, NULL, pl);
	}
	complete(m);
	return 1;
}

int move_leg_left(struct move *m, struct leg *leg)
{
	struct call *c = m->call;

	if (!c)
		return 0;
	if (move_verify_b_left(m, leg))
		return 1;
	if (leg == m->b) {
		if (m->phase == MOVE_REINVITING) {
			m->b_gone = 1; /* finish with C first, then give it A's media back */
			return 1;
		}
		move_fail(m, 487, "the new device left");
		return 1;
	}
	if (leg == c->near && m->b &&
	    (move_state(m) == SIP_MOVE_MOVING || (m->phase == MOVE_CONFIRMING && !m->need_near) ||
	     m->phase == MOVE_REDEEMED)) {
		/* A hung up, but B is on its way in: the call goes on for B. */
		m->a_gone = 1;
		move_event(m, "near-left", "the near device hung up; the move goes on");
		return 1;
	}
	return 0;
}

int move_leg_terminated(struct move *m, struct leg *leg)
{
	struct call *c = m->call;

	if (!c)
		return 0;
	if (leg == m->held) {
		m->held = NULL; /* A hung up while held: the move goes on without it */
		return 1;
	}
	if (move_verify_b_left(m, leg))
		return 1;
	if (leg == m->b && m->phase != MOVE_DONE) {
		if (m->phase == MOVE_REINVITING)
			m->b_gone = 1;
		else
			move_fail(m, 487, "the new device left");
		return 0;
	}
	return leg == c->near && m->a_gone;
}

void move_swap_near(struct call *c, struct leg *to, struct leg *from)
{
	c->near = to;
	to->near = 1;
	from->near = 0;
	if (c->in == from)
		c->in = to;
	if (c->out == from)
		c->out = to;
}
