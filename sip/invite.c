/* INVITE: new calls, re-INVITE relay, ACK, CANCEL and BYE between the legs. */
#include <stdio.h>
#include <string.h>

#include "sip/b2bua.h"

static void max_call_expired(su_root_magic_t *magic, su_timer_t *t, void *arg)
{
	struct call *c = arg;

	LOG_INFO("call", "%s: maximum duration reached", c->id);
	call_end(c, 0, "SIP;cause=200;text=\"Maximum call duration\"");
}

/* [sip] max_call_duration counts from the call's start, also for a call read back. */
void invite_max_timer(struct call *c)
{
	struct sip *s = c->sip;
	long long left = (long long)c->created + s->conf.max_call_secs - (long long)time(NULL);

	if (!s->conf.max_call_secs || c->max_timer)
		return;
	c->max_timer = su_timer_create(su_root_task(s->root), 0);
	su_timer_set_interval(c->max_timer, max_call_expired, c,
	                      (su_duration_t)(left > 0 ? left : 1) * 1000);
}

/* A copy of a From or To header without its tag, for the other leg's fresh dialog. */
sip_addr_t *invite_addr_untagged(su_home_t *home, const sip_addr_t *a)
{
	sip_addr_t *copy = (sip_addr_t *)msg_header_dup(home, (const msg_header_t *)a);

	if (copy && copy->a_tag)
		msg_header_remove_param(copy->a_common, "tag");
	return copy;
}

static void refuse(nta_incoming_t *irq, int status, const char *phrase, const char *why)
{
	LOG_INFO("invite", "refused %d %s: %s", status, phrase, why);
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	sip_reply(irq, status, phrase, TAG_END());
}

/* Remember what the near device offered or answered, to restore it after a failed move. */
void invite_note_near_sdp(struct leg *from, const sip_t *sip)
{
	struct call *c = from->call;
	const sip_payload_t *pl = body_pl(sip);

	if (from != c->near || !pl || !sip->sip_content_type ||
	    strcasecmp(sip->sip_content_type->c_type, "application/sdp"))
		return;
	su_free(c->home, c->near_sdp);
	c->near_sdp = su_strndup(c->home, pl->pl_data, pl->pl_len);
}

void invite_new(struct sip *s, nta_incoming_t *irq, const sip_t *sip)
{
	msg_t *req = nta_incoming_getrequest(irq);
	int from_up = route_from_upstream(s, req);
	const url_t *target = sip->sip_request->rq_url;
	unsigned mf = sip->sip_max_forwards ? sip->sip_max_forwards->mf_count : 70;

	if (s->shutting_down)
		refuse(irq, SIP_503_SERVICE_UNAVAILABLE, "shutting down");
	else if (mf == 0)
		refuse(irq, SIP_483_TOO_MANY_HOPS, "Max-Forwards is 0");
	/* A device presenting a code asks for a call: that is not a new call. */
	else if (hook_invite(s, irq, sip, req))
		;
	else if (s->draining)
		refuse(irq, SIP_503_SERVICE_UNAVAILABLE, "draining: new calls go elsewhere");
	else if (from_up && route_is_self(s, target))
		refuse(irq, SIP_482_LOOP_DETECTED, "upstream sent a call addressed to us");
	else
		invite_bridge(s, irq, sip, from_up, target, !from_up);
	msg_destroy(req);
}

/*
 * An INVITE with Replaces naming a dialog through us (attended transfer, RFC 3891): the same
 * header, naming the matching dialog on the other side, goes out with the new call.
 */
static sip_replaces_t *replaces_mapped(struct call *c, const sip_replaces_t *rp)
{
	struct leg *leg, *other;
	sip_replaces_t *out;

	if (!rp)
		return NULL;
	/* to-tag is the tag of the UA that receives the Replaces: ours in that dialog. */
	leg = leg_by_dialog(c->sip, rp->rp_call_id, rp->rp_to_tag, rp->rp_from_tag);
	other = leg ? call_other(leg) : NULL;
	if (!other || !other->dlg)
		return NULL;
	out = nta_leg_make_replaces(other->dlg, c->home, rp->rp_early_only);
	LOG_INFO("call", "%s: Replaces %s maps to %s dialog %s of call %s", c->id, rp->rp_call_id,
	         call_side(other), other->call_id, leg->call->id);
	return out;
}

/* The new call's INVITE goes out (its SDP perhaps rewritten by a hook, sdp_hold). */
static void bridge_go(struct sip_sdp_wait *w)
{
	struct call *c = w->c;
	struct leg *in = w->from, *out = w->to;
	const sip_t *sip = sip_object(w->msg);
	sip_payload_t *pl;
	int err;

	if (c->state == SIP_CALL_ENDING || in->terminated || in->ending) {
		call_leg_terminated(out); /* the caller left while its offer was held */
		return;
	}
	pl = body_for(out, sip);
	err = leg_invite(out, w->msg, NULL, SIPTAG_MAX_FORWARDS_STR(w->mf),
	                 TAG_IF(w->rp, SIPTAG_REPLACES(w->rp)), BODY_TAGS_PL(sip, pl), TAG_END());
	if (err) {
		leg_answer(in, SIP_503_SERVICE_UNAVAILABLE, NULL, NULL, TAG_END());
		call_leg_terminated(in);
		call_leg_terminated(out);
	}
}

/*
 * Bridge an INVITE to target as a new call: near is the side that is not the upstream.
 * via_upstream routes the new leg through the upstream (a loose Route), else straight there.
 */
void invite_bridge(struct sip *s, nta_incoming_t *irq, const sip_t *sip, int from_up,
                   const url_t *target, int via_upstream)
{
	unsigned mf = sip->sip_max_forwards ? sip->sip_max_forwards->mf_count : 70;
	char mfbuf[16];
	struct call *c;
	struct leg *in, *out;
	sip_addr_t *from, *to;
	sip_replaces_t *rp = NULL;
	msg_t *req;

	if (call_alloc(&c, s)) {
		refuse(irq, SIP_500_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	in = leg_accept(c, !from_up, irq, sip);
	if (!in) {
		refuse(irq, SIP_500_INTERNAL_SERVER_ERROR, "cannot make the dialog");
		return;
	}
	/* Escaped headers in a Request-URI never become headers (RFC 4475 section 3.1.2.11). */
	if (target->url_headers) {
		url_t *clean = url_hdup(c->home, target);
		clean->url_headers = NULL;
		target = clean;
	}
	if (sip->sip_replaces) {
		rp = replaces_mapped(c, sip->sip_replaces);
		if (!rp) {
			/* Not one of ours: the next hop judges it as it came. */
			rp = sip_replaces_dup(c->home, sip->sip_replaces);
		}
	}
	from = invite_addr_untagged(c->home, sip->sip_from);
	to = invite_addr_untagged(c->home, sip->sip_to);
	out = leg_dial(c, from_up, target, from, to, via_upstream);
	c->in = in;
	c->out = out;
	c->near = from_up ? out : in;
	c->far = from_up ? in : out;
	if (!out) {
		LOG_ERR("invite", "%s: cannot create the outgoing leg", c->id);
		leg_answer(in, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
		in->ending = 1;
		call_leg_terminated(in);
		return;
	}
	invite_note_near_sdp(in, sip);
	snprintf(mfbuf, sizeof(mfbuf), "%u", mf ? mf - 1 : 0);
	invite_max_timer(c);
	LOG_INFO("call", "%s: %s leg %s from %s to %s", c->id, call_side(in), in->call_id, in->uri,
	         out->uri);
	/* The caller hears that we are on it, whatever the far side takes (RFC 3261 8.2.6.1). */
	nta_incoming_treply(irq, SIP_100_TRYING, TAG_END());
	req = nta_incoming_getrequest(irq);
	{
		struct sip_sdp_wait w = {
		    .c = c, .from = in, .to = out, .msg = req, .go = bridge_go, .rp = rp};

		snprintf(w.mf, sizeof(w.mf), "%s", mfbuf);
		if (!sdp_hold(&w, sip, 1))
			bridge_go(&w);
	}
	msg_destroy(req);
}
/* The answer to the other leg for a failed initial INVITE, with why. */
static void relay_failure(struct call *c, int status, const char *phrase, const sip_t *sip,
                          msg_t *resp)
{
	char reason[128], text[64];
	int code = status;

	if (status >= 300 && status < 400)
		code = 480; /* we do not follow redirects for the caller */
	else if (!sip && status >= 500)
		code = 502; /* no response from the far side: our transport failed */
	else if (status >= 700)
		code = 500;
	snprintf(text, sizeof(text), "%s", phrase ? phrase : "");
	for (char *p = text; *p; p++)
		if (*p == '\r' || *p == '\n' || *p == '"' || *p == '\\')
			*p = ' ';
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"", status, text);
	leg_answer(c->in, code, code == status ? phrase : NULL, code == status ? resp : NULL, NULL,
	           TAG_IF(!sip || !sip->sip_reason, SIPTAG_REASON_STR(reason)), TAG_END());
	call_leg_terminated(c->in);
}

/* Whether a provisional answer asks to be PRACKed, and the caller can (RFC 3262). */
static int wants_prack(struct call *c, const sip_t *sip)
{
	nta_incoming_t *irq = c->in->inv;
	msg_t *req;
	const sip_t *rq;
	int ok;

	if (!sip || !sip->sip_rseq || !sip->sip_require ||
	    !sip_has_feature(sip->sip_require, "100rel") || !irq)
		return 0;
	req = nta_incoming_getrequest(irq);
	rq = req ? sip_object(req) : NULL;
	ok = rq && ((rq->sip_supported && sip_has_feature(rq->sip_supported, "100rel")) ||
	            (rq->sip_require && sip_has_feature(rq->sip_require, "100rel")));
	msg_destroy(req);
	return ok;
}

static void initial_response(struct leg *out, int status, const char *phrase, const sip_t *sip,
                             msg_t *resp);

static void initial_go(struct sip_sdp_wait *w)
{
	initial_response(w->from, w->status, w->phrase, sip_object(w->msg), w->msg);
}

/* Whether the caller's INVITE carried an offer (then the called side's SDP answers it). */
static int initial_offered(struct call *c)
{
	msg_t *req = c->in && c->in->inv ? nta_incoming_getrequest(c->in->inv) : NULL;
	const sip_t *rq = req ? sip_object(req) : NULL;
	int offered = rq && rq->sip_payload && rq->sip_payload->pl_len;

	msg_destroy(req);
	return offered;
}

static void initial_response(struct leg *out, int status, const char *phrase, const sip_t *sip,
                             msg_t *resp)
{
	struct call *c = out->call;
	sip_payload_t *pl;
	int reliable;

	if (status < 101)
		return;
	if (c->state == SIP_CALL_ENDING) {
		/* The caller left while the far side answered: take the answer and hang up. */
		if (status >= 200 && status < 300) {
			out->answered = 1;
			leg_ack(out, NULL, NULL);
			out->ending = 0;
			call_leg_end(out, NULL);
		} else if (status >= 300) {
			call_leg_terminated(out);
		}
		return;
	}
	{
		struct sip_sdp_wait w = {.c = c,
		                         .from = out,
		                         .to = c->in,
		                         .msg = resp,
		                         .status = status,
		                         .go = initial_go};

		snprintf(w.phrase, sizeof(w.phrase), "%s", phrase ? phrase : "");
		if (hook_has_sdp(c->sip) && sdp_hold(&w, sip, !initial_offered(c)))
			return;
	}
	invite_note_near_sdp(out, sip);
	pl = body_for(c->in, sip);
	if (status < 200) {
		reliable = wants_prack(c, sip);
		if (reliable) {
			msg_destroy(out->rel_resp);
			out->rel_resp = msg_ref_create(resp);
		}
		leg_answer_as(c->in, status, phrase, resp, NULL, reliable,
		              (tagi_t[]){BODY_TAGI(sip, pl), {TAG_END()}});
		return;
	}
	if (status < 300) {
		call_leg_tags(out, sip);
		out->answered = 1;
		c->in->answered = 1;
		c->ack_pending = 1;
		c->state = SIP_CALL_ANSWERED;
		c->answered = time(NULL);
		metric_inc(METRIC_CALLS_ANSWERED_TOTAL);
		LOG_INFO("call", "%s: answered by %s", c->id, call_side(out));
		if (hook_call_answering(c)) {
			/* To the caller once its state is written (sip_call_answer_release). Until
			 * then its leg is not answered: a CANCEL or the call's end gets its INVITE
			 * a failure, not a BYE. */
			c->in->answered = 0;
			c->held_answer = msg_ref_create(resp);
			/* A body the media anchor rewrote lives only while it goes on
			 * (sip_sdp_resume): the held answer keeps its own copy. */
			c->held_pl = pl == c->sdp_pl ? sip_payload_dup(c->home, pl) : pl;
			return;
		}
		leg_answer_as(c->in, status, phrase, resp, NULL, 0,
		              (tagi_t[]){BODY_TAGI(sip, pl), {TAG_END()}});
		return;
	}
	LOG_INFO("call", "%s: %s leg failed: %d %s", c->id, call_side(out), status,
	         phrase ? phrase : "");
	metric_inc(METRIC_CALLS_FAILED_TOTAL);
	c->state = SIP_CALL_ENDING;
	call_leg_terminated(out);
	if (!c->in->terminated)
		relay_failure(c, status, phrase, sip, resp);
}

void sip_call_answer_release(struct call *c)
{
	msg_t *resp = c->held_answer;
	const sip_t *sip = resp ? sip_object(resp) : NULL;

	c->held_answer = NULL;
	if (sip && sip->sip_status && c->state == SIP_CALL_ANSWERED && c->ack_pending && c->in &&
	    c->in->inv && !c->in->terminated && !c->in->ending) {
		c->in->answered = 1;
		leg_answer_as(c->in, sip->sip_status->st_status, sip->sip_status->st_phrase, resp,
		              NULL, 0, (tagi_t[]){BODY_TAGI(sip, c->held_pl), {TAG_END()}});
	}
	c->held_pl = NULL;
	msg_destroy(resp);
}

static void reinvite_answer(struct leg *leg, struct leg *from, int status, const char *phrase,
                            const sip_t *sip, msg_t *resp);

void invite_response(struct leg *leg, int status, const char *phrase, const sip_t *sip, msg_t *resp)
{
	struct call *c = leg->call;
	struct leg *from = c->reinvite_from;

	if (hook_invite_response(c, leg, status, phrase, sip))
		return;
	if (leg == c->out && !leg->answered) {
		initial_response(leg, status, phrase, sip, resp);
		return;
	}
	if (leg != c->near && leg != c->far && !leg->incoming) {
		if (status >= 200 && status < 300) {
			/* A leg dialled for a move that let go of it (its CANCEL crossed the
			 * answer). */
			leg->answered = 1;
			leg_ack(leg, NULL, NULL);
			leg->ending = 0;
			call_leg_end(leg, "SIP;cause=487;text=\"Move abandoned\"");
		} else if (status >= 300 && !leg->answered) {
			call_leg_terminated(leg);
		}
		return;
	}
	if (!leg->answered && status >= 300) {
		call_leg_terminated(leg);
		return;
	}
	if (status < 200 || !from || from == leg)
		return;
	/* The answer to a relayed re-INVITE. */
	if (status < 300) {
		c->reinvite_ack = 1;
	} else {
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		if (status == 408 || status == 481) {
			leg_answer(from, status, phrase, NULL, NULL, TAG_END());
			call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
			return;
		}
	}
	reinvite_answer(leg, from, status, phrase, sip, resp);
}

static void reinvite_answer_go(struct sip_sdp_wait *w)
{
	reinvite_answer(w->from, w->to, w->status, w->phrase, sip_object(w->msg), w->msg);
}

/* The answer to a re-INVITE relayed from leg from, to it (its SDP perhaps held first). */
static void reinvite_answer(struct leg *leg, struct leg *from, int status, const char *phrase,
                            const sip_t *sip, msg_t *resp)
{
	struct call *c = leg->call;
	struct sip_sdp_wait w = {.c = c,
	                         .from = leg,
	                         .to = from,
	                         .msg = resp,
	                         .status = status,
	                         .go = reinvite_answer_go};
	sip_payload_t *pl;

	snprintf(w.phrase, sizeof(w.phrase), "%s", phrase ? phrase : "");
	if (status < 300 && sdp_hold(&w, sip, !c->reinvite_offered))
		return;
	if (c->sdp_msg == sip && (from->terminated || !from->inv)) {
		/* Its sender left while the answer was held: the answerer's 2xx still gets its
		 * ACK, and the call may offer again. */
		if (status < 300 && c->reinvite_ack) {
			leg_ack(leg, NULL, NULL);
			c->reinvite_ack = 0;
		}
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		return;
	}
	invite_note_near_sdp(leg, sip);
	pl = body_for(from, sip);
	leg_answer_as(from, status, phrase, resp, NULL, 0,
	              (tagi_t[]){BODY_TAGI(sip, pl), {TAG_END()}});
}

/* A re-INVITE goes on to the other leg (its SDP perhaps rewritten by a hook, sdp_hold). */
static void reinvite_go(struct sip_sdp_wait *w)
{
	struct call *c = w->c;
	struct leg *leg = w->from, *other = w->to;
	const sip_t *sip = sip_object(w->msg);
	sip_payload_t *pl;

	if (c->state != SIP_CALL_ANSWERED || other->terminated || leg->terminated) {
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		if (leg->inv && !leg->terminated)
			leg_answer(leg, SIP_481_NO_TRANSACTION, NULL, NULL, TAG_END());
		return;
	}
	pl = body_for(other, sip);
	if (leg_invite(other, w->msg, NULL, BODY_TAGS_PL(sip, pl), TAG_END())) {
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		leg_answer(leg, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
	}
}

/* A re-INVITE on an established leg: pass it on, unless another offer is in flight. */
void invite_again(struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);
	msg_t *req;

	if (leg->inv) {
		/* RFC 3261 14.2: an INVITE while ours from this peer is still open. */
		sip_reply(irq, 500, "Previous INVITE Unfinished", SIPTAG_RETRY_AFTER_STR("1"),
		          TAG_END());
		return;
	}
	if (!other && c->state == SIP_CALL_ANSWERED && hook_reinvite(c, leg, irq, sip))
		return;
	if (!other || c->state != SIP_CALL_ANSWERED || !other->dlg || other->terminated ||
	    c->ack_pending || c->offer_busy || other->oinv) {
		LOG_DEBUG("call", "%s: re-INVITE from %s meets one in flight: 491", c->id,
		          call_side(leg));
		sip_reply(irq, SIP_491_REQUEST_PENDING, TAG_END());
		return;
	}
	/* The peer's target may change (RFC 3261 12.2.2): its Contact is the new one. */
	if (sip->sip_contact)
		nta_leg_server_route(leg->dlg, NULL, sip->sip_contact);
	leg_take_invite(leg, irq);
	c->offer_busy = 1;
	c->reinvite_from = leg;
	c->reinvite_offered = body_pl(sip) && body_pl(sip)->pl_len;
	LOG_DEBUG("call", "%s: re-INVITE from %s", c->id, call_side(leg));
	invite_note_near_sdp(leg, sip);
	req = nta_incoming_getrequest(irq);
	{
		struct sip_sdp_wait w = {
		    .c = c, .from = leg, .to = other, .msg = req, .go = reinvite_go};

		if (!sdp_hold(&w, sip, 1))
			reinvite_go(&w);
	}
	msg_destroy(req);
}

void invite_ack(struct leg *leg, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);
	sip_payload_t *pl;

	if (leg->incoming)
		call_leg_tags(leg, sip);
	if (hook_ack(c, leg, sip))
		return;
	if (!other)
		return;
	if (c->ack_pending && leg == c->in) {
		c->ack_pending = 0;
		hook_call_active(c);
		invite_note_near_sdp(leg, sip);
		sdp_note(leg, other, sip, 0);
		pl = body_for(other, sip);
		leg_ack(other, NULL, pl);
		return;
	}
	if (c->reinvite_ack && leg == c->reinvite_from) {
		c->reinvite_ack = 0;
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		invite_note_near_sdp(leg, sip);
		sdp_note(leg, other, sip, 0);
		pl = body_for(other, sip);
		leg_ack(other, NULL, pl);
	}
}

void invite_cancel(struct leg *leg)
{
	struct call *c = leg->call;

	/* nta answers the INVITE 487 itself once we return. */
	leg->ending = 1;
	if (hook_leg_left(c, leg)) {
		if (leg->inv)
			leg_answer(leg, SIP_487_REQUEST_TERMINATED, NULL, NULL, TAG_END());
		call_leg_terminated(leg);
		return;
	}
	LOG_INFO("call", "%s: cancelled by %s", c->id, call_side(leg));
	if (leg->inv)
		leg_answer(leg, SIP_487_REQUEST_TERMINATED, NULL, NULL, TAG_END());
	/* The caller's leg may be the call's last (the far INVITE not sent yet, its offer held
	 * by the media anchor): then the call goes with it. */
	su_home_ref(c->home);
	call_leg_terminated(leg);
	if (!c->freeing)
		call_end(c, 487, "SIP;cause=487;text=\"Request Terminated\"");
	su_home_unref(c->home);
}

void invite_bye(struct leg *leg, nta_incoming_t *irq)
{
	struct call *c = leg->call;

	sip_reply(irq, SIP_200_OK, TAG_END());
	leg->ending = 1;
	if (hook_leg_left(c, leg)) {
		call_leg_terminated(leg);
		return;
	}
	if (leg != c->near && leg != c->far) {
		call_leg_terminated(leg);
		return; /* a leg that already left in a move */
	}
	LOG_INFO("call", "%s: hung up by %s", c->id, call_side(leg));
	su_home_ref(c->home);
	call_end(c, 200, NULL);
	call_leg_terminated(leg);
	su_home_unref(c->home);
}

/* A PRACK for a reliable provisional we relayed: PRACK the far side's, answer with its answer. */
void invite_prack(struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct leg *other = call_other(leg);
	const sip_t *rs = other && other->rel_resp ? sip_object(other->rel_resp) : NULL;
	sip_rack_t rack[1];

	if (!rs || !rs->sip_rseq || !rs->sip_cseq || !other->dlg || other->terminated) {
		sip_reply(irq, SIP_481_NO_TRANSACTION, TAG_END());
		return;
	}
	/* RFC 3262 7.2: RAck names the provisional the far side sent, by its RSeq and CSeq. */
	sip_rack_init(rack);
	rack->ra_response = rs->sip_rseq->rs_response;
	rack->ra_cseq = rs->sip_cseq->cs_seq;
	rack->ra_method = rs->sip_cseq->cs_method;
	rack->ra_method_name = rs->sip_cseq->cs_method_name;
	if (!leg_forward(other, leg, irq, sip, body_for(other, sip),
	                 (tagi_t[]){{SIPTAG_RACK(rack)}, {TAG_END()}}))
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
}
