/*
 * A leg on its nta dialog: the dispatch of the requests that arrive in it, and the narrow API
 * the call and the features above work a leg with (dial, accept, INVITE, ACK, answer, send).
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/rand.h>

#include "sip/b2bua.h"

void sip_reply(nta_incoming_t *irq, int status, const char *phrase, tag_type_t tag,
               tag_value_t value, ...)
{
	ta_list ta;

	if (!irq)
		return;
	ta_start(ta, tag, value);
	nta_incoming_treply(irq, status, phrase, ta_tags(ta));
	(void)ta_end(ta);
	/* A 2xx to an INVITE waits for its ACK: the leg lets go of it then. */
	if (status >= 200 && (status >= 300 || nta_incoming_method(irq) != sip_method_invite))
		nta_incoming_destroy(irq);
}

static void refused(nta_incoming_t *irq, int status, const char *phrase)
{
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	sip_reply(irq, status, phrase, TAG_END());
}

int leg_request_cb(void *arg, nta_leg_t *dlg, nta_incoming_t *irq, const sip_t *sip)
{
	metric_inc(METRIC_SIP_REQUESTS_TOTAL);
	leg_dispatch(arg, irq, sip);
	return 0;
}

/* A request in leg's dialog (counted already): to the feature that takes it, or relayed. */
void leg_dispatch(struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct sip *s = leg->call->sip;
	sip_method_t method = sip->sip_request->rq_method;
	msg_t *req;
	int taken = 0;

	if (method == sip_method_ack) {
		/* An ACK whose INVITE transaction is gone already: nothing waits for it, unless
		 * the call was read back while its answer waited for this ACK (call_state_load). */
		if (leg->call->ack_pending && leg == leg->call->in && !leg->inv)
			invite_ack(leg, sip);
		nta_incoming_destroy(irq);
		return;
	}
	if (leg->terminated || leg->call->freeing) {
		refused(irq, SIP_481_NO_TRANSACTION);
		return;
	}
	/* The peer's CSeq, maybe its target: written with the others within a second. */
	call_touch(leg->call, 0);
	switch (method) {
	case sip_method_invite:
		invite_again(leg, irq, sip);
		return;
	case sip_method_bye:
		invite_bye(leg, irq);
		return;
	case sip_method_refer:
	case sip_method_message:
		req = nta_incoming_getrequest(irq);
		if (method == sip_method_refer)
			taken = hook_refer(s, leg, irq, sip, req);
		else
			taken = hook_message(s, leg, irq, sip, req);
		msg_destroy(req);
		if (taken)
			return;
		break;
	default:
		break;
	}
	relay_in_dialog(leg, irq, sip);
}

static int on_invite_ackcancel(void *arg, nta_incoming_t *irq, const sip_t *sip)
{
	struct leg *leg = arg;

	if (!sip) {
		/* No ACK came for our 2xx (RFC 3261 13.3.1.4): the dialog is over. */
		if (leg->inv == irq) {
			nta_incoming_destroy(irq);
			leg->inv = NULL;
		}
		LOG_INFO("call", "%s: no ACK from %s", leg->call->id, call_side(leg));
		call_end(leg->call, 408, "SIP;cause=408;text=\"No ACK\"");
		return 0;
	}
	if (sip->sip_request->rq_method == sip_method_cancel) {
		metric_inc(METRIC_SIP_REQUESTS_TOTAL);
		/* nta answered the CANCEL 200; the INVITE gets its 487 from invite_cancel. */
		if (!leg->answered && !leg->terminated)
			invite_cancel(leg);
		return 0;
	}
	if (sip->sip_request->rq_method == sip_method_ack) {
		metric_inc(METRIC_SIP_REQUESTS_TOTAL);
		if (leg->inv == irq) {
			leg->inv = NULL;
			nta_incoming_destroy(irq);
		}
		invite_ack(leg, sip);
	}
	return 0;
}

/* The peer's INVITE on leg (its first or a re-INVITE): ours to answer; its ACK or CANCEL
 * come to the leg. */
void leg_take_invite(struct leg *leg, nta_incoming_t *irq)
{
	nta_incoming_tag(irq, nta_leg_get_tag(leg->dlg));
	nta_incoming_bind(irq, on_invite_ackcancel, leg);
	leg->inv = irq;
}

/* Whether an Allow header lists method (RFC 3261 20.5): what a peer says it takes. */
static int items_hold(msg_param_t const *p, const char *method)
{
	for (; p && *p; p++)
		if (!strcasecmp(*p, method))
			return 1;
	return 0;
}

static int allow_lists(const sip_allow_t *allow, const char *method)
{
	if (!allow)
		return 0;
	if (items_hold(allow->k_items, method))
		return 1;
	for (const msg_list_t *k = allow->k_next; k; k = k->k_next)
		if (items_hold(k->k_items, method))
			return 1;
	return 0;
}

/* A server leg for an INVITE the peer sent outside any dialog. */
struct leg *leg_accept(struct call *c, int near, nta_incoming_t *irq, const sip_t *sip)
{
	struct sip *s = c->sip;
	struct leg *leg = call_leg_new(c, near, 1);

	if (!leg)
		return NULL;
	leg->dlg = nta_leg_tcreate(s->nta, leg_request_cb, leg, SIPTAG_CALL_ID(sip->sip_call_id),
	                           SIPTAG_FROM(sip->sip_to), SIPTAG_TO(sip->sip_from),
	                           NTATAG_REMOTE_CSEQ(sip->sip_cseq->cs_seq), TAG_END());
	if (!leg->dlg || !nta_leg_tag(leg->dlg, NULL)) {
		call_leg_terminated(leg);
		return NULL;
	}
	nta_leg_server_route(leg->dlg, sip->sip_record_route, sip->sip_contact);
	leg_take_invite(leg, irq);
	leg->call_id = su_strdup(c->home, sip->sip_call_id->i_id);
	leg->uri = url_as_string(c->home, sip->sip_from->a_url);
	leg->local = sip_header_as_string(c->home, (const sip_header_t *)sip->sip_to);
	leg->remote = sip_header_as_string(c->home, (const sip_header_t *)sip->sip_from);
	leg->takes_message = allow_lists(sip->sip_allow, "MESSAGE");
	{
		int secure = 0, tcp = 0;

		char flow[128];
		msg_t *req = nta_incoming_getrequest(irq);

		b2bua_transport_of(s, irq, &secure, &tcp);
		leg->secure = secure;
		leg->tcp = tcp;
		if (!sip_flow_of(req, secure, tcp, flow, sizeof(flow)))
			leg->flow = su_strdup(c->home, flow);
		msg_destroy(req);
	}
	return leg;
}

/* A client leg toward target: From and To as given (untagged), through the upstream or not. */
struct leg *leg_dial(struct call *c, int near, const url_t *target, const sip_addr_t *from,
                     const sip_addr_t *to, int via_upstream)
{
	struct sip *s = c->sip;
	struct leg *leg = call_leg_new(c, near, 0);
	const url_t *next = via_upstream ? s->upstream : target;
	char tp[16], cid[40];
	unsigned char raw[16];

	if (!leg)
		return NULL;
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		call_leg_terminated(leg);
		return NULL;
	}
	for (int i = 0; i < 16; i++)
		snprintf(cid + 2 * i, 3, "%02x", raw[i]);
	leg->call_id = su_strdup(c->home, cid);
	leg->dlg = nta_leg_tcreate(s->nta, leg_request_cb, leg, SIPTAG_CALL_ID_STR(leg->call_id),
	                           SIPTAG_FROM(from), SIPTAG_TO(to), TAG_END());
	if (!leg->dlg || !nta_leg_tag(leg->dlg, NULL)) {
		call_leg_terminated(leg);
		return NULL;
	}
	/* The Request-URI is the target; the upstream is a loose Route before it. */
	nta_leg_client_route(leg->dlg, via_upstream ? (sip_record_route_t *)s->upstream_rt : NULL,
	                     sip_contact_create(c->home, (url_string_t *)target, NULL));
	leg->uri = url_as_string(c->home, target);
	leg->local = sip_header_as_string(c->home, (const sip_header_t *)from);
	leg->remote = sip_header_as_string(c->home, (const sip_header_t *)to);
	leg->secure = next->url_type == url_sips;
	if (next->url_params && url_param(next->url_params, "transport", tp, sizeof(tp))) {
		if (!strcasecmp(tp, "tls"))
			leg->secure = 1;
		else if (!strcasecmp(tp, "tcp"))
			leg->tcp = 1;
	}
	return leg;
}

/*
 * An answer to a transaction of a call. A final one takes the context out of the call first:
 * what it sets off may free the call, and the context is freed here afterwards.
 */
int leg_on_answer(void *arg, nta_outgoing_t *orq, const sip_t *sip)
{
	struct ctx *x = arg;
	struct leg *to = x->to;
	int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
	const char *phrase = sip && sip->sip_status ? sip->sip_status->st_phrase : NULL;
	int final = status >= 200;
	msg_t *resp = NULL;

	if (sip)
		metric_inc(METRIC_SIP_RESPONSES_TOTAL);
	/* Our CSeq went on, the peer's target may have: written within a second; at once for the
	 * first request of ours in the dialog (nta numbered it from the clock: no gap covers that).
	 */
	if (final)
		call_touch(to->call, to->dlg && !to->lseq_saved && nta_leg_get_seq(to->dlg));
	if (!phrase)
		phrase = sip_status_phrase(status) ? sip_status_phrase(status) : "Local Error";
	if (final) {
		x->orq = NULL;
		if (to->pending)
			to->pending--;
		LIST_REMOVE(x, link);
	}
	switch (x->kind) {
	case CTX_INVITE:
		if (final && to->oinv == orq)
			to->oinv = NULL;
		if (final && status < 300)
			to->ack_cseq = nta_outgoing_cseq(orq);
		if (sip && status > 100 && status < 300 && sip->sip_to && sip->sip_to->a_tag) {
			nta_leg_rtag(to->dlg, sip->sip_to->a_tag);
			nta_leg_client_reroute(to->dlg, sip->sip_record_route, sip->sip_contact,
			                       !to->answered);
			if (sip->sip_allow)
				to->takes_message = allow_lists(sip->sip_allow, "MESSAGE");
		}
		if (sip)
			resp = nta_outgoing_getresponse(orq);
		if (resp && status >= 200 && status < 300 && !to->incoming && !to->flow) {
			char flow[128];

			if (!sip_flow_of(resp, to->secure, to->tcp, flow, sizeof(flow)))
				to->flow = su_strdup(to->call->home, flow);
		}
		invite_response(to, status, phrase, sip, resp);
		break;
	case CTX_RELAY:
		relay_answer(x, status, phrase, sip, orq);
		break;
	case CTX_BYE:
		if (final)
			call_leg_terminated(to);
		break;
	case CTX_OWN:
		if (final && x->cb)
			x->cb(x->arg, to, status, phrase, sip);
		break;
	}
	msg_destroy(resp);
	if (final) {
		free(x);
		nta_outgoing_destroy(orq);
	}
	return 0;
}

/* A new request on leg: extra headers from tags, the end-to-end ones of like (if any). */
static nta_outgoing_t *leg_out(struct ctx *x, sip_method_t method, const char *name, msg_t *like,
                               const sip_t *body_from, const sip_payload_t *pl, tagi_t *tags)
{
	struct leg *leg = x->to;
	struct sip *s = leg->call->sip;
	msg_t *msg = nta_msg_create(s->nta, 0);
	sip_t *sip = sip_object(msg);
	nta_outgoing_t *orq = NULL;

	if (!msg)
		return NULL;
	/* Our own headers first: what is copied from like does not replace them. */
	if ((tags && sip_add_tagis(msg, sip, (tagi_t const **)&tags) < 0) ||
	    (body_from && copy_body(msg, sip, body_from, pl)) ||
	    (like && copy_e2e(msg, sip, like, leg != leg->call->near)) ||
	    nta_msg_request_complete(msg, leg->dlg, method, name, NULL) < 0)
		goto out;
	orq = nta_outgoing_mcreate(s->nta, leg_on_answer, x, (url_string_t *)leg->next_hop, msg,
	                           TAG_END());
out:
	if (!orq)
		msg_destroy(msg);
	return orq;
}

static int send_on(struct leg *leg, int kind, sip_method_t method, const char *name, msg_t *like,
                   const sip_t *body_from, const sip_payload_t *pl, tagi_t *tags, struct ctx **xp)
{
	struct ctx *x;

	if (!leg->dlg || leg->terminated)
		return ENOTCONN;
	x = ctx_new(leg->call, leg, kind);
	if (!x)
		return ENOMEM;
	x->orq = leg_out(x, method, name, like, body_from, pl, tags);
	if (!x->orq) {
		LOG_WARN("call", "%s: cannot send %s on the %s leg", leg->call->id, name,
		         call_side(leg));
		ctx_free(x);
		return EIO;
	}
	leg->pending++;
	if (xp)
		*xp = x;
	return 0;
}

/* Pass the request irq that came on from to the leg to; irq gets the answer. */
struct ctx *leg_forward(struct leg *to, struct leg *from, nta_incoming_t *irq, const sip_t *sip,
                        const sip_payload_t *pl, tagi_t *tags)
{
	msg_t *req = nta_incoming_getrequest(irq);
	struct ctx *x = NULL;
	int err;

	err = send_on(to, CTX_RELAY, sip->sip_request->rq_method, sip->sip_request->rq_method_name,
	              req, sip, pl, tags, &x);
	msg_destroy(req);
	if (err)
		return NULL;
	x->from = from;
	x->irq = irq;
	x->method = sip->sip_request->rq_method;
	return x;
}

/* An INVITE on leg (its first, or a re-INVITE) with SDP pl, headers like like's. */
int leg_invite(struct leg *leg, msg_t *like, const sip_payload_t *pl, tag_type_t tag,
               tag_value_t value, ...)
{
	struct sip *s = leg->call->sip;
	struct ctx *x;
	ta_list ta;
	int err;

	if (leg->oinv)
		return EBUSY;
	ta_start(ta, tag, value);
	{
		tagi_t extra[] = {
		    {SIPTAG_CONTACT(b2bua_contact(s, leg->secure, leg->tcp))},
		    {TAG_IF(pl, SIPTAG_CONTENT_TYPE_STR("application/sdp"))},
		    {TAG_IF(pl, SIPTAG_PAYLOAD(pl))},
		    {TAG_NEXT(ta_args(ta))},
		};
		err = send_on(leg, CTX_INVITE, SIP_METHOD_INVITE, like, NULL, NULL, extra, &x);
	}
	(void)ta_end(ta);
	if (!err)
		leg->oinv = x->orq;
	return err;
}

/* ACK the 2xx to our last INVITE on leg, with SDP pl in late-offer calls. */
static int ack_send(struct leg *leg, msg_t *like, const sip_payload_t *pl, const char *branch)
{
	struct sip *s = leg->call->sip;
	sip_cseq_t cseq[1];
	msg_t *msg;
	sip_t *sip;
	nta_outgoing_t *orq = NULL;

	if (!leg->dlg || !leg->ack_cseq)
		return ENOTCONN;
	msg = nta_msg_create(s->nta, 0);
	sip = sip_object(msg);
	if (!msg)
		return ENOMEM;
	sip_cseq_init(cseq);
	cseq->cs_seq = leg->ack_cseq;
	cseq->cs_method = sip_method_ack;
	cseq->cs_method_name = "ACK";
	if ((like && copy_e2e(msg, sip, like, leg != leg->call->near)) ||
	    sip_add_tl(msg, sip, SIPTAG_CSEQ(cseq),
	               TAG_IF(pl, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
	               TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_END()) < 0 ||
	    nta_msg_request_complete(msg, leg->dlg, SIP_METHOD_ACK, NULL) < 0 ||
	    !(orq = nta_outgoing_mcreate(s->nta, NULL, NULL, (url_string_t *)leg->next_hop, msg,
	                                 TAG_IF(branch, NTATAG_ACK_BRANCH(branch)), TAG_END()))) {
		msg_destroy(msg);
		return EIO;
	}
	/* Not kept: a 2xx sent again (our ACK lost) finds no transaction and comes to the stray
	 * handler, which ACKs it again (RFC 3261 13.2.2.4). */
	nta_outgoing_destroy(orq);
	leg->acked_cseq = leg->ack_cseq;
	leg->ack_cseq = 0;
	return 0;
}

int leg_ack(struct leg *leg, msg_t *like, const sip_payload_t *pl)
{
	char branch[40];

	if (!leg->ack_own_branch)
		return ack_send(leg, like, pl, NULL);
	/* Its INVITE was a previous run's (a call read back before its ACK came). */
	leg->ack_own_branch = 0;
	if (leg_branch(branch, sizeof(branch)))
		return EIO;
	return ack_send(leg, like, pl, branch);
}

/* A fresh Via branch (RFC 3261 8.1.1.7), for an ACK nta has no INVITE to take one from. */
int leg_branch(char *buf, size_t len)
{
	unsigned char raw[8];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return EIO;
	snprintf(buf, len, "z9hG4bK%02x%02x%02x%02x%02x%02x%02x%02x", raw[0], raw[1], raw[2],
	         raw[3], raw[4], raw[5], raw[6], raw[7]);
	return 0;
}

/*
 * The ACK for a 2xx that came again with no INVITE transaction left (ours lingered out, or died
 * with a previous run): a transaction of its own (RFC 3261 17.1.1.3), its own branch, as nta
 * has no INVITE to take one from.
 */
int leg_ack_again(struct leg *leg, uint32_t cseq)
{
	char branch[40];
	uint32_t ours = leg->ack_cseq, acked = leg->acked_cseq;
	int err;

	if (leg_branch(branch, sizeof(branch)))
		return EIO;
	leg->ack_cseq = cseq;
	err = ack_send(leg, NULL, NULL, branch);
	/* An INVITE of ours may be out meanwhile: its ACK's CSeq stays its own. */
	leg->ack_cseq = ours;
	if (acked > leg->acked_cseq)
		leg->acked_cseq = acked;
	return err;
}

static int on_prack(struct leg *leg, nta_reliable_t *rel, nta_incoming_t *prack, const sip_t *sip)
{
	metric_inc(METRIC_SIP_REQUESTS_TOTAL);
	invite_prack(leg, prack, sip);
	return 0;
}

/* Answer the peer's INVITE on leg (its first or a re-INVITE); reliably (RFC 3262) if asked. */
int leg_answer_as(struct leg *leg, int status, const char *phrase, msg_t *like,
                  const sip_payload_t *pl, int reliable, tagi_t *tags)
{
	struct sip *s = leg->call->sip;
	nta_incoming_t *irq = leg->inv;
	msg_t *msg;
	sip_t *sip;
	int rc;

	if (!irq)
		return ENOTCONN;
	msg = nta_incoming_create_response(irq, 0, NULL);
	sip = msg ? sip_object(msg) : NULL;
	if (!sip)
		return ENOMEM;
	rc = (like && copy_e2e(msg, sip, like, leg != leg->call->near)) ||
	     sip_add_tl(msg, sip,
	                TAG_IF(status < 300 && status > 100,
	                       SIPTAG_CONTACT(b2bua_contact(s, leg->secure, leg->tcp))),
	                TAG_IF(pl, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
	                TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_NEXT(tags)) < 0 ||
	     nta_incoming_complete_response(irq, msg, status, phrase, TAG_END()) < 0;
	if (rc) {
		msg_destroy(msg);
		return EIO;
	}
	if (status < 200 && reliable)
		rc = nta_reliable_mreply(irq, on_prack, leg, msg) ? 0 : -1;
	else
		rc = nta_incoming_mreply(irq, msg);
	if (status >= 300) {
		nta_incoming_destroy(irq);
		leg->inv = NULL;
	}
	return rc < 0 ? EIO : 0;
}

int leg_answer(struct leg *leg, int status, const char *phrase, msg_t *like,
               const sip_payload_t *pl, tag_type_t tag, tag_value_t value, ...)
{
	ta_list ta;
	int err;

	ta_start(ta, tag, value);
	err = leg_answer_as(leg, status, phrase, like, pl, 0, ta_args(ta));
	(void)ta_end(ta);
	return err;
}

/* Our own request in leg's dialog (MESSAGE, NOTIFY, ...); cb gets its final answer. */
int leg_send(struct leg *leg, sip_method_t method, const char *name, leg_answer_h *cb, void *arg,
             tag_type_t tag, tag_value_t value, ...)
{
	struct ctx *x = NULL;
	ta_list ta;
	int err;

	if (leg->ending)
		return ENOTCONN;
	ta_start(ta, tag, value);
	err = send_on(leg, CTX_OWN, method, name, NULL, NULL, NULL, ta_args(ta), &x);
	(void)ta_end(ta);
	if (!err) {
		x->cb = cb;
		x->arg = arg;
	}
	return err;
}

/* BYE on an answered leg; the leg is over when it is answered. */
void leg_bye(struct leg *leg, const char *reason)
{
	tagi_t tags[] = {{TAG_IF(reason, SIPTAG_REASON_STR(reason))}, {TAG_END()}};

	if (send_on(leg, CTX_BYE, SIP_METHOD_BYE, NULL, NULL, NULL, tags, NULL))
		call_leg_terminated(leg); /* nothing to wait for */
}

/* Let go of everything nta holds for the leg: the call is done with it. */
void leg_release(struct leg *leg)
{
	if (leg->inv) {
		/* Never left unanswered: the peer would wait for its timers. */
		if (nta_incoming_status(leg->inv) < 200)
			nta_incoming_treply(leg->inv, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		nta_incoming_bind(leg->inv, NULL, NULL);
		nta_incoming_destroy(leg->inv);
		leg->inv = NULL;
	}
	if (leg->rel_resp) {
		msg_destroy(leg->rel_resp);
		leg->rel_resp = NULL;
	}
	if (leg->dlg) {
		nta_leg_destroy(leg->dlg);
		leg->dlg = NULL;
	}
}
