/*
 * Unanchored moves proved by the new device's own voice quality reports (RFC 6035), when
 * [media] verify_xr is on: qrxferd is then the collector of every out-of-dialog PUBLISH with
 * Event: vq-rtcpxr (they are no longer relayed). Once C took B's media, A is put on hold
 * (a=inactive) rather than hung up; a report from B's own flow on B's dialog's Call-ID that
 * says packets arrived (LocalMetrics NLR under 100%) makes the move done. A report saying
 * nothing arrived, or none within [media] verify_timeout from a flow that sent one before,
 * rolls back: C is re-INVITEd with A's media, B gets a BYE, A is taken off hold with C's
 * answer. A device never heard to publish gets the old behaviour at the deadline.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "move/move_int.h"
#include "move/xr.h"

#define XR_FLOWS 256 /* flows remembered as sending reports during a move */

/* Per call (its slot): our own re-INVITEs to A (hold, off hold), whose answers we ACK. */
struct xr_call {
	struct leg *reinvited;
};

struct xr {
	struct sip *sip;
	int slot;
	unsigned on : 1;
	unsigned verify_ms;
	char flows[XR_FLOWS][80]; /* a ring of flows that published during a move */
	unsigned nflows;
};

static struct xr *xr_the;

static int flow_known(const char *flow)
{
	for (unsigned i = 0; xr_the && i < XR_FLOWS && i < xr_the->nflows; i++)
		if (!strcmp(xr_the->flows[i], flow))
			return 1;
	return 0;
}

static void flow_remember(const char *flow)
{
	if (!xr_the || flow_known(flow))
		return;
	snprintf(xr_the->flows[xr_the->nflows % XR_FLOWS], sizeof(xr_the->flows[0]), "%s", flow);
	xr_the->nflows++;
}

static struct xr_call *xr_call_of(struct call *c)
{
	struct xr_call *xc;

	if (!xr_the || xr_the->slot < 0)
		return NULL;
	xc = c->slot[xr_the->slot];
	if (!xc) {
		xc = su_zalloc(c->home, sizeof(*xc)); /* goes with the call's home */
		c->slot[xr_the->slot] = xc;
	}
	return xc;
}

/* A re-INVITE of A with sdp (C's media) in direction dir; its answer is ACKed by our hook. */
static int reinvite_a(struct move *m, struct leg *a, const char *sdp, const char *dir)
{
	struct call *c = m->call;
	struct xr_call *xc = c ? xr_call_of(c) : NULL;
	char *body = sdp ? move_sdp_with(sdp, dir) : NULL;
	sip_payload_t *pl;
	int err = EIO;

	if (!xc || !body || !a || a->terminated || a->ending || a->oinv) {
		free(body);
		return EBUSY;
	}
	pl = sip_payload_create(c->home, body, (isize_t)strlen(body));
	if (pl && !leg_invite(a, NULL, pl, TAG_END())) {
		xc->reinvited = a;
		err = 0;
	}
	free(body);
	return err;
}

/* The move is done: B keeps the call, A (held) gets its BYE. */
static void done(struct move *m, const char *step, const char *what)
{
	struct call *c = m->call;
	struct leg *a = m->held;

	su_timer_reset(m->timer);
	m->t_verified = move_now_us();
	m->held = NULL;
	m->xr = 0;
	metric_inc(METRIC_MOVES_COMPLETED_TOTAL);
	move_event(m, step, "%s %lld ms after its answer", what,
	           (m->t_verified - m->t_answer) / 1000);
	m->b = NULL;
	move_to(m, MOVE_DONE, what);
	move_notify_refer(m, 200, "OK", 1);
	move_reply(m, 0);
	move_record_near(c);
	call_touch(c, 1);
	if (a && !a->terminated) {
		call_leg_end(a, "SIP;cause=200;text=\"Call moved\"");
		if (a->terminated)
			call_leg_terminated(a);
	}
	move_detach(m);
}

/* The call goes back to A: C gets A's media again (move_rollback, once the move failed), B its
 * BYE, and A is taken off hold when C answered (move_xr_rolled_back). */
static void take_back(struct move *m, int status, const char *why, int b_gone)
{
	struct call *c = m->call;
	struct leg *a = m->held, *b = c->near;

	su_timer_reset(m->timer);
	if (!a || a->terminated || a->ending) {
		/* A left while held: nobody to go back to, the call stays with B. */
		move_event(m, "unverified", "%s, but the near device left: the call stays", why);
		done(m, "moved", "the near device left while held");
		return;
	}
	move_swap_near(c, a, b);
	su_free(c->home, c->near_sdp);
	c->near_sdp = m->a_sdp ? su_strdup(c->home, m->a_sdp) : NULL;
	m->b = b_gone ? NULL : b;
	move_fail(m, status, "%s", why); /* B's BYE; VERIFYING unanchored: C's rollback */
}

static void deadline(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;

	if (!m->call || m->phase != MOVE_VERIFYING || !m->xr)
		return;
	if (flow_known(m->b_flow)) {
		move_event(m, "unverified",
		           "no RTCP-XR report from the new device (%s) in %u ms, though it sent "
		           "some before",
		           m->b_flow, xr_the->verify_ms);
		take_back(m, 480, "no media from the new device", 0);
		return;
	}
	done(m, "moved",
	     "the new device never sent an RTCP-XR report: the move is done as without "
	     "verify_xr");
}

int move_xr_start(struct move *m, struct leg *a)
{
	struct call *c = m->call;

	if (!xr_the || !xr_the->on || !c || move_anchored(c) || !m->b_flow[0] || !m->a_sdp ||
	    !m->a_sdp_out || !a || a->terminated || a->ending || m->a_gone)
		return 0;
	m->held = a;
	m->xr = 1;
	move_to(m, MOVE_VERIFYING, "the new device holds the near leg");
	if (reinvite_a(m, a, m->a_sdp_out, "inactive"))
		LOG_WARN("move", "%s: cannot put the near device on hold", m->id);
	else
		move_event(m, "hold", "the near device is put on hold (a=inactive), not hung up");
	su_timer_set_interval(m->timer, deadline, m, xr_the->verify_ms);
	return 1;
}

int move_xr_b_left(struct move *m, struct leg *leg)
{
	if (m->phase != MOVE_VERIFYING || !m->call || leg != m->call->near || !m->held)
		return 0;
	take_back(m, 487, "the new device left before its media was verified", 1);
	return 1;
}

void move_xr_rolled_back(struct move *m, const sip_t *sip)
{
	const sip_payload_t *pl = sip ? sip->sip_payload : NULL;
	struct leg *a = m->call ? m->call->near : NULL;
	char *sdp;

	if (!m->xr)
		return; /* a rollback of a move that held nobody */
	sdp = pl && pl->pl_len ? strndup(pl->pl_data, pl->pl_len) : NULL;
	m->xr = 0;
	m->held = NULL;
	if (reinvite_a(m, a, sdp ? sdp : m->a_sdp_out, "sendrecv"))
		LOG_WARN("move", "%s: cannot take the near device off hold", m->id);
	else
		move_event(m, "unhold", "the near device is taken off hold with far's media");
	free(sdp);
}

static struct move *move_of_b(struct sip *s, const char *call_id)
{
	struct move_stack *ms = move_stack(s);
	struct move *m;

	LIST_FOREACH(m, &ms->moves, link)
	if (m->xr && m->call && m->phase == MOVE_VERIFYING && m->call->near &&
	    m->call->near->call_id && !strcmp(m->call->near->call_id, call_id))
		return m;
	return NULL;
}

static void reply_ok(nta_incoming_t *irq)
{
	unsigned char r[8];
	char etag[17];

	RAND_bytes(r, sizeof(r));
	for (int i = 0; i < 8; i++)
		snprintf(etag + 2 * i, 3, "%02x", r[i]);
	sip_reply(irq, SIP_200_OK, SIPTAG_ETAG_STR(etag), SIPTAG_EXPIRES_STR("0"), TAG_END());
}

static int on_publish(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	struct xr *x = arg;
	const sip_payload_t *pl = sip->sip_payload;
	struct xr_report rep;
	char why[160], phrase[200], flow[80];
	struct move *m;

	if (!x->on || !sip->sip_event || !sip->sip_event->o_type ||
	    strcasecmp(sip->sip_event->o_type, "vq-rtcpxr"))
		return 0; /* not ours: relayed as before */
	if (!sip->sip_content_type || !sip->sip_content_type->c_type ||
	    strcasecmp(sip->sip_content_type->c_type, "application/vq-rtcpxr")) {
		sip_reply(irq, SIP_415_UNSUPPORTED_MEDIA,
		          SIPTAG_ACCEPT_STR("application/vq-rtcpxr"), TAG_END());
		return 1;
	}
	if (xr_parse(pl ? pl->pl_data : NULL, pl ? pl->pl_len : 0, &rep, why, sizeof(why))) {
		snprintf(phrase, sizeof(phrase), "Bad vq-rtcpxr report: %s", why);
		LOG_INFO("move", "vq-rtcpxr PUBLISH refused: %s", why);
		sip_reply(irq, 400, phrase, TAG_END());
		return 1;
	}
	m = move_of_b(s, rep.call_id);
	if (!m) {
		reply_ok(irq); /* a report of a call not being verified: taken, nothing to do */
		return 1;
	}
	if (sip_flow_key(s, irq, req, flow, sizeof(flow)) || strcmp(flow, m->b_flow)) {
		LOG_WARN("move",
		         "%s: a vq-rtcpxr report on the new device's Call-ID from %s, not "
		         "from its flow %s: ignored",
		         m->id, flow, m->b_flow);
		sip_reply(irq, 403, "Not the new device's flow", TAG_END());
		return 1;
	}
	reply_ok(irq);
	flow_remember(flow);
	if (rep.local_nlr >= 1000 || rep.remote_nlr >= 1000) {
		move_event(m, "unverified",
		           "the new device's %s says %s: local NLR %d.%d%%, remote NLR %s",
		           rep.kind,
		           rep.local_nlr >= 1000 ? "nothing arrived from far"
		                                 : "nothing of its media arrived at far",
		           rep.local_nlr / 10, rep.local_nlr % 10,
		           rep.remote_nlr < 0       ? "not said"
		           : rep.remote_nlr >= 1000 ? "100%"
		                                    : "<100%");
		take_back(m, 480, "no media from the new device", 0);
		return 1;
	}
	snprintf(why, sizeof(why), "media verified by the new device's %s (local NLR %d.%d%%)",
	         rep.kind, rep.local_nlr / 10, rep.local_nlr % 10);
	done(m, "verified", why);
	return 1;
}

static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	struct xr *x = arg;
	struct xr_call *xc = x->slot >= 0 ? c->slot[x->slot] : NULL;

	if (!xc || !leg || xc->reinvited != leg)
		return 0;
	if (status < 200)
		return 1;
	xc->reinvited = NULL;
	if (status < 300)
		leg_ack(leg, NULL, NULL);
	else
		LOG_INFO("move", "%s: the near device answered %d %s to our re-INVITE", c->id,
		         status, phrase ? phrase : "");
	return 1;
}

static void on_call_gone(void *arg, struct call *c)
{
	struct xr *x = arg;

	if (x->slot >= 0)
		c->slot[x->slot] = NULL; /* in the call's home: goes with it */
}

static void on_stop(void *arg, struct sip *s)
{
	if (xr_the == arg)
		xr_the = NULL;
	free(arg);
}

static const struct sip_call_hooks xr_hooks = {
    .invite_response = on_invite_response,
    .call_gone = on_call_gone,
    .stop = on_stop,
    .publish = on_publish,
};

int move_xr_init(struct sip *s, int on, unsigned verify_secs)
{
	struct xr *x = calloc(1, sizeof(*x));
	int err;

	if (!x)
		return ENOMEM;
	x->sip = s;
	x->on = !!on;
	x->verify_ms = (verify_secs ? verify_secs : 5) * 1000;
	x->slot = sip_call_slot_new(s);
	if (x->slot < 0) {
		free(x);
		return ENOSPC;
	}
	err = sip_call_hooks_add(s, &xr_hooks, x);
	if (err) {
		free(x);
		return err;
	}
	xr_the = x;
	return 0;
}
