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

/* A copy of a From or To header without its tag, for the other leg's fresh dialog. */
sip_addr_t *invite_addr_untagged(su_home_t *home, const sip_addr_t *a)
{
	sip_addr_t *copy = (sip_addr_t *)msg_header_dup(home, (const msg_header_t *)a);

	if (copy && copy->a_tag)
		msg_header_remove_param(copy->a_common, "tag");
	return copy;
}

static void refuse(nua_handle_t *nh, int status, const char *phrase, const char *why)
{
	LOG_INFO("invite", "refused %d %s: %s", status, phrase, why);
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	nua_respond(nh, status, phrase, TAG_END());
	nua_handle_destroy(nh);
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

void invite_new(struct sip *s, nua_handle_t *nh, const sip_t *sip)
{
	msg_t *req = nua_current_request(s->nua);
	int from_up = route_from_upstream(s, req);
	const url_t *target = sip->sip_request->rq_url;
	unsigned mf = sip->sip_max_forwards ? sip->sip_max_forwards->mf_count : 70;

	if (s->shutting_down) {
		refuse(nh, SIP_503_SERVICE_UNAVAILABLE, "shutting down");
		return;
	}
	if (mf == 0) {
		refuse(nh, SIP_483_TOO_MANY_HOPS, "Max-Forwards is 0");
		return;
	}
	/* A device presenting a code asks for a call: that is not a new call. */
	if (hook_invite(s, nh, sip, req))
		return;
	if (from_up && route_is_self(s, target)) {
		refuse(nh, SIP_482_LOOP_DETECTED, "upstream sent a call addressed to us");
		return;
	}
	invite_bridge(s, nh, sip, from_up, target, !from_up);
}

/*
 * Bridge an INVITE to target as a new call: near is the side that is not the upstream.
 * via_upstream routes the new leg through the upstream (a loose Route), else straight there.
 */
void invite_bridge(struct sip *s, nua_handle_t *nh, const sip_t *sip, int from_up,
                   const url_t *target, int via_upstream)
{
	unsigned mf = sip->sip_max_forwards ? sip->sip_max_forwards->mf_count : 70;
	char mfbuf[16];
	struct call *c;
	struct leg *in, *out;
	sip_addr_t *from, *to;
	sip_payload_t *pl;

	if (call_alloc(&c, s)) {
		refuse(nh, SIP_500_INTERNAL_SERVER_ERROR, "out of memory");
		return;
	}
	in = call_leg_new(c, !from_up, 1);
	out = call_leg_new(c, from_up, 0);
	if (!in || !out) {
		refuse(nh, SIP_500_INTERNAL_SERVER_ERROR, "out of memory");
		call_leg_terminated(in ? in : out);
		return;
	}
	c->near = from_up ? out : in;
	c->far = from_up ? in : out;
	c->in = in;
	c->out = out;
	in->nh = nh;
	nua_handle_bind(nh, &in->b);
	in->call_id = su_strdup(c->home, sip->sip_call_id->i_id);
	in->uri = url_as_string(c->home, sip->sip_from->a_url);
	/* Escaped headers in a Request-URI never become headers (RFC 4475 section 3.1.2.11). */
	if (target->url_headers) {
		url_t *clean = url_hdup(c->home, target);
		clean->url_headers = NULL;
		target = clean;
	}
	out->uri = url_as_string(c->home, target);
	invite_note_near_sdp(in, sip);

	from = invite_addr_untagged(c->home, sip->sip_from);
	to = invite_addr_untagged(c->home, sip->sip_to);
	out->nh =
	    nua_handle(s->nua, &out->b, NUTAG_URL(target), SIPTAG_TO(to), SIPTAG_FROM(from),
	               TAG_IF(via_upstream, NUTAG_INITIAL_ROUTE_STR(s->upstream_route)), TAG_END());
	if (!out->nh) {
		LOG_ERR("invite", "%s: cannot create the %s leg", c->id, call_side(out));
		nua_respond(nh, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		in->ending = 1;
		call_leg_terminated(out);
		return;
	}
	snprintf(mfbuf, sizeof(mfbuf), "%u", mf ? mf - 1 : 0);
	if (s->conf.max_call_secs) {
		c->max_timer = su_timer_create(su_root_task(s->root), 0);
		su_timer_set_interval(c->max_timer, max_call_expired, c,
		                      (su_duration_t)s->conf.max_call_secs * 1000);
	}
	LOG_INFO("call", "%s: %s leg %s from %s to %s", c->id, call_side(in), in->call_id, in->uri,
	         out->uri);
	pl = body_for(out, sip);
	out->pending++;
	nua_invite(out->nh, SIPTAG_MAX_FORWARDS_STR(mfbuf),
	           TAG_IF(sip->sip_subject, SIPTAG_SUBJECT(sip->sip_subject)),
	           TAG_IF(sip->sip_authorization, SIPTAG_AUTHORIZATION(sip->sip_authorization)),
	           TAG_IF(sip->sip_proxy_authorization,
	                  SIPTAG_PROXY_AUTHORIZATION(sip->sip_proxy_authorization)),
	           BODY_TAGS_PL(sip, pl), TAG_END());
}

/* The answer to the other leg for a failed initial INVITE, with why. */
static void relay_failure(struct call *c, int status, const char *phrase, const sip_t *sip)
{
	char reason[96];
	int code = status;

	if (status >= 300 && status < 400)
		code = 480; /* we do not follow redirects for the caller */
	else if (!sip && status >= 500)
		code = 502; /* no response from the far side: our transport failed */
	else if (status >= 700)
		code = 500;
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"", status, phrase ? phrase : "");
	for (char *p = reason; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	nua_respond(c->in->nh, code, call_copy_phrase(c, code, code == status ? phrase : NULL),
	            SIPTAG_REASON_STR(reason),
	            TAG_IF(sip && sip->sip_www_authenticate,
	                   SIPTAG_WWW_AUTHENTICATE(sip ? sip->sip_www_authenticate : NULL)),
	            TAG_IF(sip && sip->sip_proxy_authenticate,
	                   SIPTAG_PROXY_AUTHENTICATE(sip ? sip->sip_proxy_authenticate : NULL)),
	            TAG_END());
}

static void initial_response(struct leg *out, int status, const char *phrase, const sip_t *sip)
{
	struct call *c = out->call;
	sip_payload_t *pl;

	if (status < 101)
		return;
	if (c->state == SIP_CALL_ENDING) {
		/* The caller left while the far side answered: take the answer and hang up. */
		if (status >= 200 && status < 300) {
			nua_ack(out->nh, TAG_END());
			out->answered = 1;
			nua_bye(out->nh, TAG_END());
		}
		return;
	}
	invite_note_near_sdp(out, sip);
	pl = body_for(c->in, sip);
	/* The far dialog's Call-ID is known from its first response: /v1/calls shows it ringing. */
	if (!out->call_id && sip && sip->sip_call_id)
		out->call_id = su_strdup(c->home, sip->sip_call_id->i_id);
	if (status < 200) {
		nua_respond(c->in->nh, status, call_copy_phrase(c, status, phrase),
		            BODY_TAGS_PL(sip, pl), TAG_END());
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
		nua_respond(c->in->nh, status, call_copy_phrase(c, status, phrase),
		            BODY_TAGS_PL(sip, pl), TAG_END());
		return;
	}
	LOG_INFO("call", "%s: %s leg failed: %d %s", c->id, call_side(out), status,
	         phrase ? phrase : "");
	metric_inc(METRIC_CALLS_FAILED_TOTAL);
	c->state = SIP_CALL_ENDING;
	relay_failure(c, status, phrase, sip);
}

void invite_response(struct leg *leg, int status, const char *phrase, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *from = c->reinvite_from;
	sip_payload_t *pl;

	if (hook_invite_response(c, leg, status, phrase, sip))
		return;
	if (leg == c->out && !leg->answered) {
		initial_response(leg, status, phrase, sip);
		return;
	}
	if (leg != c->near && leg != c->far && !leg->incoming && status >= 200 && status < 300) {
		/* A leg dialled for a move that let go of it (its CANCEL crossed the answer). */
		nua_ack(leg->nh, TAG_END());
		leg->answered = 1;
		leg->ending = 0;
		call_leg_end(leg, "SIP;cause=487;text=\"Move abandoned\"");
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
			nua_respond(from->nh, status, call_copy_phrase(c, status, phrase),
			            TAG_END());
			call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
			return;
		}
	}
	invite_note_near_sdp(leg, sip);
	pl = body_for(from, sip);
	nua_respond(from->nh, status, call_copy_phrase(c, status, phrase), BODY_TAGS_PL(sip, pl),
	            TAG_END());
}

/* A re-INVITE on an established leg: pass it on, unless another offer is in flight. */
void invite_again(struct leg *leg, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);
	sip_payload_t *pl;

	if (!other || c->state != SIP_CALL_ANSWERED || !other->nh || other->terminated ||
	    c->ack_pending) {
		nua_respond(leg->nh, SIP_491_REQUEST_PENDING, TAG_END());
		return;
	}
	if (c->offer_busy) {
		LOG_DEBUG("call", "%s: re-INVITE from %s meets one in flight: 491", c->id,
		          call_side(leg));
		nua_respond(leg->nh, SIP_491_REQUEST_PENDING, TAG_END());
		return;
	}
	c->offer_busy = 1;
	c->reinvite_from = leg;
	LOG_DEBUG("call", "%s: re-INVITE from %s", c->id, call_side(leg));
	invite_note_near_sdp(leg, sip);
	pl = body_for(other, sip);
	other->pending++;
	nua_invite(other->nh, BODY_TAGS_PL(sip, pl), TAG_END());
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
		pl = body_for(other, sip);
		nua_ack(other->nh, BODY_TAGS_PL(sip, pl), TAG_END());
		return;
	}
	if (c->reinvite_ack && leg == c->reinvite_from) {
		c->reinvite_ack = 0;
		c->offer_busy = 0;
		c->reinvite_from = NULL;
		invite_note_near_sdp(leg, sip);
		pl = body_for(other, sip);
		nua_ack(other->nh, BODY_TAGS_PL(sip, pl), TAG_END());
	}
}

void invite_cancel(struct leg *leg)
{
	struct call *c = leg->call;

	leg->ending = 1; /* the stack answered 487 itself */
	if (hook_leg_left(c, leg))
		return;
	LOG_INFO("call", "%s: cancelled by %s", c->id, call_side(leg));
	call_end(c, 487, "SIP;cause=487;text=\"Request Terminated\"");
}

void invite_bye(struct leg *leg)
{
	struct call *c = leg->call;

	leg->ending = 1; /* the stack answered 200 itself */
	if (hook_leg_left(c, leg))
		return;
	if (leg != c->near && leg != c->far)
		return; /* a leg that already left in a move */
	LOG_INFO("call", "%s: hung up by %s", c->id, call_side(leg));
	call_end(c, 200, NULL);
}
