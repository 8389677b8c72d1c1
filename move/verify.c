/*
 * Anchored moves, make-before-break: once rtpengine sends the near side's media to B, A is put
 * on hold (a=inactive) rather than hung up, and the move is done only when rtpengine's
 * counters show media both ways on B within [media] verify_timeout; else the call goes back to
 * A and B gets a BYE. For [move] undo_secs after that, A's resume (a re-INVITE sendrecv) takes
 * the call back; then A gets its BYE.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "media/bencode.h"
#include "move/move_int.h"

#define VERIFY_POLL_MS 200
#define VERIFY_PACKETS 5 /* RTP packets each way that count as media flowing */

/* Whether an SDP asks to send and receive (no direction attribute means sendrecv). */
static int sdp_sendrecv(const char *body, size_t len)
{
	char *s = strndup(body, len);
	int yes = s && !strstr(s, "a=sendonly") && !strstr(s, "a=recvonly") &&
	          !strstr(s, "a=inactive") && !strstr(s, "c=IN IP4 0.0.0.0");

	free(s);
	return yes;
}

/* A stream's packets in a query's reply: tags.<tag>.medias[0].streams[idx].stats.packets. */
static long long packets(const struct benc *reply, const char *tag, int idx)
{
	const struct benc *t = benc_get(benc_get(reply, "tags"), tag);
	const struct benc *md = benc_get(t, "medias"), *st;

	if (!md || md->type != BENC_LIST || !md->child)
		return -1;
	st = benc_get(md->child, "streams");
	if (!st || st->type != BENC_LIST)
		return -1;
	st = st->child;
	for (int i = 0; st && i < idx; i++)
		st = st->next;
	st = benc_get(benc_get(st, "stats"), "packets");
	return st && st->type == BENC_INT ? st->i : -1;
}

static long long int_at(const struct benc *d, const char *key)
{
	const struct benc *v = benc_get(d, key);

	return v && v->type == BENC_INT ? v->i : -1;
}

/*
 * What B's RTCP receiver reports say of the far party's stream, as rtpengine's query has them
 * (its "SSRC" stats, made from the RRs it relayed): the far stream's SSRC is
 * tags.far.medias[0].streams[0].SSRC; its reports, SSRC.<ssrc>."average MOS".
 */
static void rr_report(const struct benc *reply, char *out, size_t len)
{
	const struct benc *md = benc_get(benc_get(benc_get(reply, "tags"), "far"), "medias");
	const struct benc *st =
	    md && md->type == BENC_LIST && md->child ? benc_get(md->child, "streams") : NULL;
	const struct benc *mos;
	long long ssrc = st && st->type == BENC_LIST && st->child ? int_at(st->child, "SSRC") : -1;
	char key[24];

	if (ssrc < 0) {
		snprintf(out, len, "rtpengine names no SSRC for far's stream");
		return;
	}
	snprintf(key, sizeof(key), "%lld", ssrc);
	mos = benc_get(benc_get(benc_get(reply, "SSRC"), key), "average MOS");
	if (!mos || int_at(mos, "MOS") <= 0) {
		snprintf(out, len,
		         "no RTCP receiver report from it on far's stream (SSRC %lld) yet", ssrc);
		return;
	}
	snprintf(out, len,
	         "its RTCP receiver reports on far's stream (SSRC %lld): MOS %lld.%lld, packet "
	         "loss %lld%%, jitter %lld, round trip %lld us",
	         ssrc, int_at(mos, "MOS") / 10, int_at(mos, "MOS") % 10, int_at(mos, "packet loss"),
	         int_at(mos, "jitter"), int_at(mos, "round-trip time"));
}

static void end_held(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;
	struct leg *a = m->held;

	if (m->undoing)
		return; /* A's resume came first: it wins, the window's end waits for it */
	m->held = NULL;
	if (a && !a->terminated) {
		call_leg_end(a, "SIP;cause=200;text=\"Call moved\"");
		if (a->terminated)
			call_leg_terminated(a);
	}
	if (m->call)
		move_detach(m);
}

static void verified(struct move *m, long long from_b, long long from_c, long long rtcp,
                     const char *rr)
{
	struct call *c = m->call;
	unsigned undo = move_anchor_undo_secs();

	m->t_verified = move_now_us();
	metric_inc(METRIC_MOVES_COMPLETED_TOTAL);
	move_event(m, "verified",
	           "media both ways on the new device %lld ms after its answer: %lld RTP packets "
	           "from it, %lld from far towards it, %lld RTCP from it; %s",
	           (m->t_verified - m->t_answer) / 1000, from_b, from_c, rtcp, rr);
	m->b = NULL;
	move_to(m, MOVE_DONE, "the new device's media is verified");
	move_notify_refer(m, 200, "OK", 1);
	move_reply(m, 0);
	move_record_near(c);
	call_touch(c, 1);
	if (!undo) {
		end_held(NULL, NULL, m);
		return;
	}
	move_event(m, "undo", "the near device may take the call back for %u s", undo);
	su_timer_set_interval(m->timer, end_held, m, undo * 1000);
}

/* The call is A's again (or rtpengine could not give it back: then without rtpengine); the
 * move fails with why, B gets its BYE. */
static void back_done(struct move *m)
{
	struct call *c = m->call;

	m->held = NULL;
	m->taking_back = 0;
	move_fail(m, m->back_status, "%s", m->back_why); /* B's BYE; the move lets go */
	if (c)
		call_touch(c, 1);
}

static void back_to_a(void *arg, int err, const char *sdp, size_t len, const struct benc *reply)
{
	struct move *m = arg;
	struct call *c = m->call;
	char *s;

	if (!c || !m->held || !m->taking_back)
		return;
	if (err || !sdp) {
		/* A must not stay on hold: the call goes on without rtpengine, each side gets the
		 * other's own media (A off hold). */
		LOG_WARN("move", "%s: rtpengine did not take the near device back: %s", m->id,
		         err ? strerror(err) : "no SDP");
		move_event(m, "unanchored",
		           "rtpengine did not take the near device back: the "
		           "call goes on without it");
		move_anchor_unanchor(c, "the near device could not be taken back");
		back_done(m);
		return;
	}
	s = strndup(sdp, len);
	free(m->a_sdp_out);
	m->a_sdp_out = s ? move_sdp_with(s, "sendrecv") : NULL;
	free(s);
	if (!m->a_sdp_out || move_anchor_reinvite(c, m->held, m->a_sdp_out))
		move_anchor_unanchor(c, "the near device could not be re-INVITEd off hold");
	back_done(m);
}

/* The call goes back to A: rtpengine points the near side at A again, A is taken off hold,
 * then the move fails (B gets its BYE). */
static void take_back(struct move *m, int status, const char *why)
{
	struct call *c = m->call;
	struct leg *a = m->held, *b = c->near;

	if (!a || a->terminated || a->ending) {
		/* A hung up while held (move_leg_terminated cleared m->held): nobody to go back to
		 */
		su_timer_reset(m->timer);
		if (!b || b->terminated || b->ending) {
			move_fail(m, status, "%s, and the near device had left", why);
			call_end(c, 487, "SIP;cause=487;text=\"Both devices left\"");
			return;
		}
		move_event(m, "unverified",
		           "%s, but the near device left while held: the call stays", why);
		m->b = NULL;
		move_to(m, MOVE_DONE, "the near device left while held");
		move_notify_refer(m, 200, "OK", 1);
		move_reply(m, 0);
		move_record_near(c);
		call_touch(c, 1);
		move_detach(m);
		return;
	}
	move_swap_near(c, a, b);
	su_free(c->home, c->near_sdp);
	c->near_sdp = m->a_sdp ? su_strdup(c->home, m->a_sdp) : NULL;
	m->b = b;
	m->back_status = status;
	snprintf(m->back_why, sizeof(m->back_why), "%s", why);
	m->taking_back = 1;
	su_timer_reset(m->timer);
	call_touch(c, 1);
	if (!m->a_sdp || move_anchor_repoint(c, m->a_sdp, back_to_a, m))
		back_to_a(m, ENOENT, NULL, 0, NULL);
}

static void poll_query(su_root_magic_t *rm, su_timer_t *t, void *arg);

static void on_counters(void *arg, int err, const char *sdp, size_t len, const struct benc *reply)
{
	struct move *m = arg;
	long long b, fc, rtcp;

	if (!m->call || m->phase != MOVE_VERIFYING || m->taking_back)
		return;
	b = err ? -1 : packets(reply, "near", 0);
	fc = err ? -1 : packets(reply, "far", 0);
	rtcp = err ? -1 : packets(reply, "near", 1);
	if (!m->counted && b >= 0 && fc >= 0) {
		m->counted = 1;
		m->base_b = b;
		m->base_c = fc;
		m->base_rtcp = rtcp > 0 ? rtcp : 0;
	} else if (m->counted && b - m->base_b >= VERIFY_PACKETS &&
	           fc - m->base_c >= VERIFY_PACKETS) {
		char rr[200];

		rr_report(reply, rr, sizeof(rr));
		verified(m, b - m->base_b, fc - m->base_c, rtcp > 0 ? rtcp - m->base_rtcp : 0, rr);
		return;
	}
	if (move_now_us() - m->t_answer >= (long long)move_anchor_verify_ms() * 1000) {
		char why[128];

		snprintf(why, sizeof(why), "no media from the new device");
		move_event(
		    m, "unverified",
		    "in %u ms: %lld RTP packets from the new device, %lld from far towards it "
		    "(%d each way needed)%s",
		    move_anchor_verify_ms(), m->counted ? b - m->base_b : -1,
		    m->counted ? fc - m->base_c : -1, VERIFY_PACKETS,
		    err ? ": rtpengine did not answer the query" : "");
		take_back(m, 480, why);
		return;
	}
	su_timer_set_interval(m->timer, poll_query, m, VERIFY_POLL_MS);
}

static void poll_query(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;

	if (m->call && move_anchor_query(m->call, on_counters, m))
		on_counters(m, ENOENT, NULL, 0, NULL);
}

void move_verify_start(struct move *m, struct leg *a)
{
	struct call *c = m->call;
	const char *out = m->a_sdp_out;

	m->held = a;
	m->counted = 0;
	move_to(m, MOVE_VERIFYING, "the new device holds the near leg");
	if (out && !a->terminated && !a->ending) {
		char *hold = move_sdp_with(out, "inactive");

		if (hold)
			move_anchor_reinvite(c, a, hold);
		free(hold);
		move_event(m, "hold", "the near device is put on hold (a=inactive), not hung up");
	}
	poll_query(NULL, NULL, m);
}

/* The new device left before its media was verified: A takes the call back. */
int move_verify_b_left(struct move *m, struct leg *leg)
{
	if (leg && leg == m->redial)
		return 1; /* A's new dialog gave up: redial_answered sees it */
	if (m->xr)
		return move_xr_b_left(m, leg);
	if (m->taking_back && leg == m->b && leg) {
		m->b = NULL; /* gone already: the call is on its way back to A */
		return 1;
	}
	if (m->phase != MOVE_VERIFYING || !m->call || leg != m->call->near || !m->held ||
	    m->taking_back)
		return 0;
	take_back(m, 487, "the new device left before its media was verified");
	return 1;
}

/* sdp (len bytes) as a payload for A: the origin it is to see from us (RFC 3264 8). */
static sip_payload_t *a_payload(struct call *c, struct leg *a, const char *sdp, size_t len)
{
	size_t n = 0;
	char *mine = move_anchor_for_near(c, a, sdp, len, &n);
	sip_payload_t *pl =
	    sip_payload_create(c->home, mine ? mine : sdp, (isize_t)(mine ? n : len));

	free(mine);
	return pl;
}

/* The undo did not happen: the window goes on from where it was (or ends now). */
static void undo_failed(struct move *m)
{
	long long left =
	    m->t_verified + (long long)move_anchor_undo_secs() * 1000000 - move_now_us();

	m->undoing = 0;
	if (left <= 0)
		end_held(NULL, NULL, m);
	else
		su_timer_set_interval(m->timer, end_held, m, (su_duration_t)(left / 1000) + 1);
}

/*
 * rtpengine points the near side at a (A's held leg, or its new dialog when it dialled the code
 * again): a gets the call and sdp, B a BYE, and old (A's held dialog, or NULL) a BYE too.
 */
static void undo_done(struct move *m, struct leg *a, const char *sdp, size_t len, struct leg *old,
                      const char *how, const char *event)
{
	struct call *c = m->call;
	struct leg *b = c->near;

	m->undoing = 0;
	leg_answer(a, SIP_200_OK, NULL, a_payload(c, a, sdp, len), TAG_END());
	move_swap_near(c, a, b);
	su_free(c->home, c->near_sdp);
	c->near_sdp = m->a_sdp ? su_strdup(c->home, m->a_sdp) : NULL;
	m->held = NULL;
	snprintf(m->reason, sizeof(m->reason), "undone: the near device %s", how);
	move_to(m, MOVE_UNDONE, "the near device took the call back");
	move_event(m, "undone", "%s", event);
	call_leg_end(b, "SIP;cause=200;text=\"Move undone\"");
	if (old)
		call_leg_end(old, "SIP;cause=200;text=\"Call taken back\"");
	move_record_near(c);
	call_touch(c, 1);
	move_detach(m);
}

static void undone(void *arg, int err, const char *sdp, size_t len, const struct benc *reply)
{
	struct move *m = arg;
	struct call *c = m->call;
	struct leg *a = m->held;

	if (!c || !m->undoing)
		return;
	if (!a || a->terminated || !a->inv) {
		/* A left while rtpengine was being pointed at it: the media goes back to B. */
		if (!err && c->near_sdp)
			move_anchor_repoint(c, c->near_sdp, NULL, NULL);
		undo_failed(m);
		return;
	}
	if (err || !sdp) {
		leg_answer(a, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
		undo_failed(m);
		return;
	}
	undo_done(m, a, sdp, len, NULL, "took the call back",
	          "the near device resumed within the undo window: it has the call again, the new "
	          "device gets a BYE");
}

/* A re-INVITE from the held near device: a resume in the undo window takes the call back;
 * anything else is answered with the hold. */
int move_verify_reinvite(struct move *m, struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct call *c = m->call;
	const sip_payload_t *pl = sip->sip_payload;

	if (!c || leg != m->held)
		return 0;
	leg_take_invite(leg, irq);
	if (m->phase == MOVE_DONE && !m->undoing && pl && pl->pl_len &&
	    sdp_sendrecv(pl->pl_data, pl->pl_len)) {
		free(m->a_sdp);
		m->a_sdp = strndup(pl->pl_data, pl->pl_len);
		move_event(m, "undo", "the near device resumed: it takes the call back");
		/* One winner: the window's end (end_held) waits for this to be done. */
		m->undoing = 1;
		if (!m->a_sdp || move_anchor_repoint(c, m->a_sdp, undone, m)) {
			leg_answer(leg, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
			undo_failed(m);
		}
		return 1;
	}
	if (m->a_sdp_out) {
		char *hold = move_sdp_with(m->a_sdp_out, "inactive");

		leg_answer(leg, SIP_200_OK, NULL,
		           hold ? a_payload(c, leg, hold, strlen(hold)) : NULL, TAG_END());
		free(hold);
	} else {
		leg_answer(leg, SIP_488_NOT_ACCEPTABLE, NULL, NULL, TAG_END());
	}
	return 1;
}

/* rtpengine points the near side at A's new dialog: it gets the call, B and A's held dialog
 * get their BYEs. */
static void redial_answered(void *arg, int err, const char *sdp, size_t len,
                            const struct benc *reply)
{
	struct move *m = arg;
	struct call *c = m->call;
	struct leg *a2 = m->redial, *a = m->held;

	m->redial = NULL;
	if (!c || !m->undoing || !a2)
		return;
	if (a2->terminated || !a2->inv) {
		if (!err && c->near_sdp)
			move_anchor_repoint(c, c->near_sdp, NULL, NULL); /* back to B */
		undo_failed(m);
		return;
	}
	if (err || !sdp) {
		a2->ending = 1;
		leg_answer(a2, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
		call_leg_terminated(a2);
		undo_failed(m);
		return;
	}
	a2->answered = 1;
	undo_done(m, a2, sdp, len, a && !a->terminated ? a : NULL, "dialled the code again",
	          "the near device dialled the code again within the undo window: it has the call "
	          "on its new dialog, the new device and its held dialog get a BYE");
}

/* Whether the From of sip names the peer of leg (its user and host). */
static int same_party(const struct leg *leg, const sip_t *sip)
{
	const url_t *u = sip->sip_from ? sip->sip_from->a_url : NULL;
	char want[256];
	const char *p;
	size_t n;

	if (!u || !u->url_user || !u->url_host || !leg->remote)
		return 0;
	n = (size_t)snprintf(want, sizeof(want), ":%s@%s", u->url_user, u->url_host);
	if (n >= sizeof(want))
		return 0;
	for (p = strstr(leg->remote, want); p; p = strstr(p + 1, want))
		if (strchr(">;:", p[n]) || !p[n])
			return 1;
	return 0;
}

static struct move *in_undo_window(struct sip *s, uint64_t id64, const char *digits)
{
	struct move_stack *ms = move_stack(s);
	struct move *m = NULL;

	if (!digits) {
		m = move_by_id64(s, id64);
	} else {
		size_t n = strlen(digits);

		for (m = ms->code_table[move_code_bucket(digits)]; m; m = m->cnext)
			if (m->phase == MOVE_DONE && m->held && strlen(m->code) == n &&
			    !CRYPTO_memcmp(m->code, digits, n))
				break;
	}
	return m && m->phase == MOVE_DONE && m->held && m->call && !m->undoing ? m : NULL;
}

int move_verify_redial(struct sip *s, nta_incoming_t *irq, const sip_t *sip, uint64_t id64,
                       const char *digits)
{
	struct move *m = in_undo_window(s, id64, digits);
	const sip_payload_t *pl = sip->sip_payload;
	struct call *c = m ? m->call : NULL;
	struct leg *a2;

	if (!m || !same_party(m->held, sip))
		return 0; /* not in a window, or not the held device: the code is used */
	if (!pl || !pl->pl_len) {
		sip_reply(irq, SIP_488_NOT_ACCEPTABLE,
		          SIPTAG_REASON_STR("SIP;cause=488;text=\"Taking the call back needs an "
		                            "offer\""),
		          TAG_END());
		return 1;
	}
	a2 = leg_accept(c, 1, irq, sip);
	if (!a2) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	nta_incoming_treply(irq, SIP_100_TRYING, TAG_END());
	free(m->a_sdp);
	m->a_sdp = strndup(pl->pl_data, pl->pl_len);
	m->undoing = 1; /* one winner: the window's end waits for this */
	m->redial = a2;
	move_event(m, "undo", "the near device dialled the code again: it takes the call back");
	if (!m->a_sdp || move_anchor_repoint(c, m->a_sdp, redial_answered, m))
		redial_answered(m, EIO, NULL, 0, NULL);
	return 1;
}
