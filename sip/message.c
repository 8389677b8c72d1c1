/* MESSAGE, INFO and UPDATE: relayed to the other leg, or out of dialog to its target. */
#include <string.h>

#include "sip/b2bua.h"

static int send_on(nua_event_t ev, nua_handle_t *nh, const sip_t *sip, sip_payload_t *pl)
{
	switch (ev) {
	case nua_i_message:
		nua_message(nh, BODY_TAGS_PL(sip, pl), TAG_END());
		return 0;
	case nua_i_info:
		nua_info(nh, BODY_TAGS_PL(sip, pl), TAG_END());
		return 0;
	case nua_i_update:
		nua_update(nh, BODY_TAGS_PL(sip, pl), TAG_END());
		return 0;
	default:
		return EINVAL;
	}
}

static nua_event_t request_of(nua_event_t r)
{
	switch (r) {
	case nua_r_message:
		return nua_i_message;
	case nua_r_info:
		return nua_i_info;
	case nua_r_update:
		return nua_i_update;
	default:
		return nua_i_error;
	}
}

static void relay_in_dialog(struct leg *leg, nua_event_t ev, nua_t *nua, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);
	struct relay *r;

	/* A leg that left or is joining in a move has nobody to relay to. */
	if (!other || !other->nh || other->terminated || other->ending ||
	    c->state == SIP_CALL_ENDING) {
		nua_respond(leg->nh, SIP_481_NO_TRANSACTION, NUTAG_WITH_THIS(nua), TAG_END());
		return;
	}
	if (ev == nua_i_update && sip->sip_payload) {
		if (c->offer_busy) {
			nua_respond(leg->nh, SIP_491_REQUEST_PENDING, NUTAG_WITH_THIS(nua),
			            TAG_END());
			return;
		}
		c->offer_busy = 1;
	}
	r = su_zalloc(c->home, sizeof(*r));
	if (!r) {
		nua_respond(leg->nh, SIP_500_INTERNAL_SERVER_ERROR, NUTAG_WITH_THIS(nua),
		            TAG_END());
		return;
	}
	r->method = ev;
	r->from_nh = leg->nh;
	nua_save_event(nua, r->saved);
	STAILQ_INSERT_TAIL(&other->relays, r, link);
	if (ev == nua_i_update)
		invite_note_near_sdp(leg, sip);
	other->pending++;
	send_on(ev, other->nh, sip, body_for(other, sip));
}

static void relay_in_dialog_response(struct leg *leg, nua_event_t r_ev, int status,
                                     const char *phrase, const sip_t *sip)
{
	struct call *c = leg->call;
	nua_event_t method = request_of(r_ev);
	struct relay *r;

	if (status < 200)
		return;
	/* Answers come in request order on one handle: the first of that method is ours. */
	STAILQ_FOREACH(r, &leg->relays, link)
	if (r->method == method)
		break;
	if (!r)
		return;
	STAILQ_REMOVE(&leg->relays, r, relay, link);
	if (method == nua_i_update)
		c->offer_busy = 0;
	if (r->from_nh) {
		sip_payload_t *pl = body_for(call_other(leg) ? call_other(leg) : NULL, sip);
		nua_respond(r->from_nh, status, call_copy_phrase(c, status, phrase),
		            NUTAG_WITH_SAVED(r->saved), BODY_TAGS_PL(sip, pl), TAG_END());
		nua_destroy_event(r->saved);
	}
	su_free(c->home, r);
	if (status == 408 || status == 481)
		call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
}

/* A relay of the request being handled on nh (it is saved to be answered later). */
struct txn *txn_new(struct sip *s, nua_handle_t *nh)
{
	struct txn *t = su_zalloc(s->home, sizeof(*t));

	if (!t)
		return NULL;
	t->b.kind = BOUND_TXN;
	t->sip = s;
	t->in_nh = nh;
	nua_save_event(s->nua, t->saved);
	LIST_INSERT_HEAD(&s->txns, t, link);
	return t;
}

void txn_free(struct txn *t)
{
	struct sip *s = t->sip;

	LIST_REMOVE(t, link);
	nua_destroy_event(t->saved);
	if (t->orq)
		nta_outgoing_destroy(t->orq);
	if (t->out_nh) {
		nua_handle_bind(t->out_nh, NULL);
		nua_handle_destroy(t->out_nh);
	}
	if (t->in_nh)
		nua_handle_destroy(t->in_nh);
	su_free(s->home, t);
	if (s->shutting_down && b2bua_idle(s))
		b2bua_stop(s);
}

/* An out-of-dialog MESSAGE goes where an INVITE from the same source would. */
static void relay_out_of_dialog(struct sip *s, nua_handle_t *nh, const sip_t *sip)
{
	msg_t *req = nua_current_request(s->nua);
	int from_up = route_from_upstream(s, req);
	const url_t *target = sip->sip_request->rq_url;
	url_t *clean = NULL;
	struct txn *t;
	sip_addr_t *from, *to;

	if (s->shutting_down || (from_up && route_is_self(s, target))) {
		nua_respond(nh, SIP_404_NOT_FOUND, NUTAG_WITH_THIS(s->nua), TAG_END());
		nua_handle_destroy(nh);
		return;
	}
	/* Headers in the Request-URI would become headers of our request (RFC 3261 19.1.5): a
	 * client could add P-Asserted-Identity toward the PBX. They are not relayed. */
	if (target->url_headers) {
		clean = url_hdup(s->home, target);
		if (clean)
			clean->url_headers = NULL;
		target = clean;
	}
	t = target ? txn_new(s, nh) : NULL;
	if (!t) {
		su_free(s->home, clean);
		nua_respond(nh, SIP_500_INTERNAL_SERVER_ERROR, NUTAG_WITH_THIS(s->nua), TAG_END());
		nua_handle_destroy(nh);
		return;
	}
	from = (sip_addr_t *)msg_header_dup(s->home, (const msg_header_t *)sip->sip_from);
	to = (sip_addr_t *)msg_header_dup(s->home, (const msg_header_t *)sip->sip_to);
	if (from && from->a_tag)
		msg_header_remove_param(from->a_common, "tag");
	t->out_nh =
	    nua_handle(s->nua, &t->b, NUTAG_URL(target), SIPTAG_TO(to), SIPTAG_FROM(from),
	               TAG_IF(!from_up, NUTAG_INITIAL_ROUTE_STR(s->upstream_route)), TAG_END());
	su_free(s->home, from);
	su_free(s->home, to);
	su_free(s->home, clean);
	nua_message(t->out_nh, BODY_TAGS(sip), TAG_END());
}

void message_request(struct sip *s, nua_event_t ev, nua_handle_t *nh, struct bound *b,
                     const sip_t *sip)
{
	struct leg *leg = b && b->kind == BOUND_LEG ? (struct leg *)b : NULL;

	if (ev == nua_i_message && (leg || !b) && hook_message(s, leg, nh, sip))
		return;
	if (ev == nua_i_info && leg)
		hook_info(s, leg, sip);
	if (leg) {
		relay_in_dialog(leg, ev, s->nua, sip);
		return;
	}
	if (ev == nua_i_message && !b) {
		relay_out_of_dialog(s, nh, sip);
		return;
	}
	nua_respond(nh, SIP_481_NO_TRANSACTION, NUTAG_WITH_THIS(s->nua), TAG_END());
	if (!b)
		nua_handle_destroy(nh);
}

void message_response(struct sip *s, nua_event_t ev, struct bound *b, int status,
                      const char *phrase, const sip_t *sip)
{
	struct txn *t;

	if (!b)
		return;
	if (b->kind == BOUND_LEG) {
		relay_in_dialog_response((struct leg *)b, ev, status, phrase, sip);
		return;
	}
	t = (struct txn *)b;
	if (status < 200)
		return;
	nua_respond(t->in_nh, status,
	            sip_status_phrase(status) ? sip_status_phrase(status) : "Relayed",
	            NUTAG_WITH_SAVED(t->saved), TAG_END());
	txn_free(t);
}
