/*
 * Everything that is not ours passes through. In a call's dialog, any request (known method or
 * not) goes to the other leg and its answer comes back. Outside our dialogs a request is passed
 * on statefully, like a proxy (RFC 3261 16): REGISTER to the registrar with our Path (RFC 3327);
 * SUBSCRIBE and REFER with our Record-Route, so that their dialogs (NOTIFYs both ways,
 * refreshes, expiry, 481) run end to end through us with no state here to lose; PUBLISH,
 * NOTIFY, MESSAGE, OPTIONS to where they are addressed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <sofia-sip/msg_addr.h>

#include "sip/b2bua.h"

/* Requests whose Contact names the sender's target: ours replaces it on the other leg. */
static int carries_target(sip_method_t m)
{
	return m == sip_method_update || m == sip_method_refer || m == sip_method_notify ||
	       m == sip_method_subscribe;
}

/*
 * The Event of a NOTIFY for a REFER we relayed, naming that REFER by the CSeq its sender gave
 * it (RFC 3515 2.4.6), or NULL to keep the Event as it came.
 */
static char *refer_event(struct leg *from, const sip_t *sip)
{
	struct call *c = from->call;
	const sip_event_t *ev = sip->sip_event;
	const char *id = ev ? msg_params_find(ev->o_params, "id=") : NULL;
	unsigned long n;
	char *end;

	if (!ev || !ev->o_type || strcasecmp(ev->o_type, "refer"))
		return NULL;
	n = id ? strtoul(id, &end, 10) : 0;
	for (unsigned i = 0; i < 4; i++)
		if (c->refers[i].to == from && (!id || c->refers[i].out == n))
			return su_sprintf(c->home, "refer;id=%u", c->refers[i].in);
	return NULL;
}

void relay_in_dialog(struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);
	sip_method_t method = sip->sip_request->rq_method;
	struct sip *s = c->sip;
	sip_payload_t *pl;
	int offer = method == sip_method_update && body_pl(sip);

	/* A leg that left or is joining in a move has nobody to relay to. */
	if (!other || !other->dlg || other->terminated || other->ending ||
	    c->state == SIP_CALL_ENDING) {
		sip_reply(irq, SIP_481_NO_TRANSACTION, TAG_END());
		return;
	}
	if (offer) {
		if (c->offer_busy) {
			sip_reply(irq, SIP_491_REQUEST_PENDING, TAG_END());
			return;
		}
		c->offer_busy = 1;
		invite_note_near_sdp(leg, sip);
	}
	if (method == sip_method_update && sip->sip_contact)
		nta_leg_server_route(leg->dlg, NULL, sip->sip_contact);
	sdp_note(leg, other, sip, offer);
	pl = body_for(other, sip);
	{
		char *event = method == sip_method_notify ? refer_event(leg, sip) : NULL;
		tagi_t tags[] = {
		    {TAG_IF(carries_target(method) || sip->sip_contact,
		            SIPTAG_CONTACT(b2bua_contact(s, other->secure, other->tcp)))},
		    {TAG_IF(event, SIPTAG_EVENT_STR(event))},
		    {TAG_END()},
		};
		struct ctx *x = leg_forward(other, leg, irq, sip, pl, tags);

		su_free(c->home, event);
		if (x && method == sip_method_refer) {
			unsigned i = c->refer_next++ % 4;

			c->refers[i].to = other;
			c->refers[i].out = nta_outgoing_cseq(x->orq);
			c->refers[i].in = sip->sip_cseq->cs_seq;
		}
		if (x) {
			x->offer = offer;
		} else {
			if (offer)
				c->offer_busy = 0;
			sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		}
	}
}

/* The other leg's answer to a relayed request (or a relayed PRACK): the sender's answer. */
void relay_answer(struct ctx *x, int status, const char *phrase, const sip_t *sip,
                  nta_outgoing_t *orq)
{
	struct leg *from = x->from;
	nta_incoming_t *irq = x->irq;
	struct call *c = x->to->call;
	msg_t *resp, *msg;
	sip_t *out;
	const sip_payload_t *pl;

	if (status < 200 || !irq)
		return; /* a provisional answer to a non-INVITE says nothing the sender needs */
	x->irq = NULL;
	if (x->offer)
		c->offer_busy = 0;
	resp = sip ? nta_outgoing_getresponse(orq) : NULL;
	msg = nta_incoming_create_response(irq, 0, NULL);
	out = msg ? sip_object(msg) : NULL;
	if (sip && from && status < 300)
		sdp_note(x->to, from, sip, 0);
	pl = sip && from ? body_for(from, sip) : NULL;
	if (!out || (resp && copy_e2e(msg, out, resp, x->to == c->near)) ||
	    (sip && copy_body(msg, out, sip, pl)) ||
	    (sip && sip->sip_contact && status < 300 &&
	     sip_add_tl(msg, out,
	                SIPTAG_CONTACT(
	                    b2bua_contact(c->sip, from ? from->secure : 0, from ? from->tcp : 0)),
	                TAG_END()) < 0) ||
	    nta_incoming_complete_response(irq, msg, status, phrase, TAG_END()) < 0 ||
	    nta_incoming_mreply(irq, msg) < 0) {
		if (out)
			msg_destroy(msg);
		nta_incoming_treply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
	}
	/* DTMF is the features' once the sender has its answer: a feature code's MESSAGE must
	 * not meet the phone's INFO still open (it would answer 491). */
	if (nta_incoming_method(irq) == sip_method_info && from && !from->terminated) {
		msg_t *req = nta_incoming_getrequest(irq);

		if (req)
			hook_info(c->sip, from, NULL, sip_object(req), req);
		msg_destroy(req);
	}
	nta_incoming_destroy(irq);
	msg_destroy(resp);
	/* RFC 5057: a 481 or a timeout ends the usage the request belongs to. For INFO and
	 * UPDATE that is the call; for NOTIFY, REFER or SUBSCRIBE only that subscription. */
	if ((status == 408 || status == 481) && x->kind == CTX_RELAY &&
	    (x->method == sip_method_info || x->method == sip_method_update) &&
	    c->state != SIP_CALL_ENDING)
		call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
}

struct txn *txn_new(struct sip *s, nta_incoming_t *irq)
{
	struct txn *t = su_zalloc(s->home, sizeof(*t));

	if (!t)
		return NULL;
	t->sip = s;
	t->irq = irq;
	LIST_INSERT_HEAD(&s->txns, t, link);
	return t;
}

void txn_free(struct txn *t)
{
	struct sip *s = t->sip;

	LIST_REMOVE(t, link);
	if (t->timer)
		su_timer_destroy(t->timer);
	su_free(s->home, t->node);
	if (t->orq)
		nta_outgoing_destroy(t->orq);
	if (t->irq) {
		if (nta_incoming_status(t->irq) < 200)
			nta_incoming_treply(t->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		nta_incoming_destroy(t->irq);
	}
	su_free(s->home, t);
	b2bua_check_done(s);
}

static void ack_to_node(struct sip *s, msg_t *m, const char *node);

/* Where the ACK of an INVITE passed on to another node goes. */
struct node_ack {
	struct sip *sip;
	char node[];
};

/* The ACK for the 2xx of an INVITE passed on to another node: it goes there too. */
static int node_ack(void *arg, nta_incoming_t *irq, const sip_t *sip)
{
	struct node_ack *na = arg;
	msg_t *ack;

	if (sip && sip->sip_request->rq_method == sip_method_cancel)
		return 0; /* nta answered it; the INVITE was answered already */
	ack = sip ? nta_incoming_getrequest_ackcancel(irq) : NULL;
	if (ack) {
		ack_to_node(na->sip, msg_copy(ack), na->node);
		msg_destroy(ack);
	}
	nta_incoming_destroy(irq);
	free(na);
	return 0;
}

int sip_flow_of(msg_t *msg, int secure, int tcp, char *out, size_t len)
{
	su_addrinfo_t *ai = msg ? msg_addrinfo(msg) : NULL;
	const struct sockaddr *sa = ai ? (const struct sockaddr *)ai->ai_addr : NULL;
	char host[INET6_ADDRSTRLEN];
	const char *proto = secure ? "tls" : tcp ? "tcp" : "udp";

	if (!sa)
		return EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
		snprintf(out, len, "%s:%s:%u", proto, host, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
		snprintf(out, len, "%s:[%s]:%u", proto, host, ntohs(in6->sin6_port));
	} else {
		return EINVAL;
	}
	return 0;
}

int sip_flow_key(struct sip *s, nta_incoming_t *irq, msg_t *req, char *out, size_t len)
{
	int secure = 0, tcp = 0;

	if (!req || !msg_addrinfo(req))
		return EINVAL;
	b2bua_transport_of(s, irq, &secure, &tcp);
	return sip_flow_of(req, secure, tcp, out, len);
}

/* A 2xx from the registrar to a REGISTER we relayed: the features keep its bindings. Only the
 * upstream's answer counts. */
static void registered(struct txn *t, const sip_t *sip, msg_t *resp)
{
	msg_t *req = nta_incoming_getrequest(t->irq);
	char flow[128];

	if (req && route_from_upstream(t->sip, resp) &&
	    !sip_flow_key(t->sip, t->irq, req, flow, sizeof(flow)))
		hook_registered(t->sip, sip_object(req), sip, flow);
	else if (req)
		LOG_WARN("register",
		         "a 2xx to a REGISTER not from the upstream: bindings not kept");
	msg_destroy(req);
}

/* The answer to a request we passed on: back to its sender without our Via. */
static int txn_answer(void *arg, nta_outgoing_t *orq, const sip_t *sip)
{
	struct txn *t = arg;
	int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
	msg_t *resp = sip ? nta_outgoing_getresponse(orq) : NULL, *copy = NULL;
	sip_t *out;

	if (sip)
		metric_inc(METRIC_SIP_RESPONSES_TOTAL);
	if (status <= 100) {
		msg_destroy(resp);
		return 0;
	}
	/* a line per REGISTER (a write each) was a tenth of qrxferd's cost at 2,000/s: the
	 * registrar's 2xx is routine, its refusals are not */
	if (t->registering && status >= 300)
		LOG_INFO("register", "registrar answered %d", status);
	else if (t->registering && status >= 200)
		LOG_DEBUG("register", "registrar answered %d", status);
	if (t->registering && status >= 200 && status < 300 && sip && resp && t->irq)
		registered(t, sip, resp);
	if (resp) {
		copy = msg_copy(resp);
		out = copy ? sip_object(copy) : NULL;
		if (out && out->sip_via)
			sip_header_remove(copy, out, (sip_header_t *)out->sip_via);
		if (!out || nta_incoming_mreply(t->irq, copy) < 0) {
			msg_destroy(copy);
			nta_incoming_treply(t->irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		}
	} else {
		/* No answer at all (timeout, transport): ours says where it failed. */
		if (status == 408 && t->registering)
			status = 504;
		nta_incoming_treply(t->irq, status >= 500 && status != 503 ? 502 : status,
		                    status == 408   ? "Request Timeout"
		                    : status == 504 ? "Server Time-out"
		                                    : "Bad Gateway",
		                    TAG_END());
	}
	msg_destroy(resp);
	if (status >= 200 && status < 300 && t->node &&
	    nta_incoming_method(t->irq) == sip_method_invite) {
		/* The 2xx's ACK is a request of its own (RFC 3261 17.1.1.3): it comes to the INVITE
		 * nta keeps for us, and goes on to the node. */
		size_t n = strlen(t->node) + 1;
		struct node_ack *na = malloc(sizeof(*na) + n);

		if (na) {
			na->sip = t->sip;
			memcpy(na->node, t->node, n);
			nta_incoming_bind(t->irq, node_ack, (void *)na);
			t->irq = NULL;
		}
	}
	if (status >= 200) {
		if (t->irq)
			nta_incoming_destroy(t->irq);
		t->irq = NULL;
		t->orq = NULL;
		nta_outgoing_destroy(orq);
		txn_free(t);
	}
	return 0;
}

/* [sip] register_timeout passed without a final answer from the registrar. */
static void register_timeout(su_root_magic_t *m, su_timer_t *timer, void *arg)
{
	struct txn *t = arg;

	LOG_INFO("register", "the registrar did not answer in %u s", t->sip->conf.register_timeout);
	nta_incoming_treply(t->irq, SIP_408_REQUEST_TIMEOUT, TAG_END());
	nta_incoming_destroy(t->irq);
	t->irq = NULL;
	txn_free(t);
}

/* Whether a URI names us, on our SIP or our TLS address. */
static int uri_is_us(struct sip *s, const url_t *u)
{
	return route_is_self(s, u) || (s->self_tls && u->url_host && s->self_tls->url_host &&
	                               !strcasecmp(u->url_host, s->self_tls->url_host) &&
	                               !strcmp(url_port(u), url_port(s->self_tls)));
}

static int route_is_us(struct sip *s, const sip_route_t *r)
{
	return r && uri_is_us(s, r->r_url);
}

int relay_routed_us(struct sip *s, const sip_t *sip)
{
	return route_is_us(s, sip->sip_route);
}

/* A request outside our dialogs that is addressed to us (no user we serve): answered here. */
static void answer_locally(struct sip *s, nta_incoming_t *irq, const sip_t *sip)
{
	if (sip->sip_request->rq_method == sip_method_options && s->draining) {
		/* A load balancer's probe: this node takes no new calls. */
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, SIPTAG_RETRY_AFTER_STR("60"),
		          TAG_END());
		return;
	}
	if (sip->sip_request->rq_method == sip_method_options) {
		sip_reply(
		    irq, SIP_200_OK,
		    SIPTAG_ALLOW_STR("INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, "
		                     "PRACK, REFER, NOTIFY, SUBSCRIBE, PUBLISH, REGISTER"),
		    SIPTAG_ACCEPT_STR("application/sdp, text/plain, image/png, image/jpeg"),
		    SIPTAG_SUPPORTED_STR("path, replaces, 100rel, timer"), TAG_END());
		return;
	}
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	sip_reply(irq, SIP_404_NOT_FOUND, TAG_END());
}

void relay_out_of_dialog(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	sip_method_t method = sip->sip_request->rq_method;
	int from_up = route_from_upstream(s, req);
	int registering = method == sip_method_register;
	msg_t *m = NULL;
	sip_t *out;
	struct txn *t;
	const url_string_t *next = NULL;

	if (s->shutting_down) {
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		return;
	}
	if (sip->sip_max_forwards && sip->sip_max_forwards->mf_count == 0) {
		sip_reply(irq, SIP_483_TOO_MANY_HOPS, TAG_END());
		return;
	}
	/* RFC 3261 16.3: a scheme we cannot route, an extension a proxy must know. */
	if (sip->sip_request->rq_url->url_type != url_sip &&
	    sip->sip_request->rq_url->url_type != url_sips &&
	    sip->sip_request->rq_url->url_type != url_tel) {
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		sip_reply(irq, SIP_416_UNSUPPORTED_URI, TAG_END());
		return;
	}
	if (sip->sip_proxy_require) {
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		char *what =
		    sip_header_as_string(s->home, (const sip_header_t *)sip->sip_proxy_require);

		sip_reply(irq, SIP_420_BAD_EXTENSION, TAG_IF(what, SIPTAG_UNSUPPORTED_STR(what)),
		          TAG_END());
		su_free(s->home, what);
		return;
	}
	/* A request in a dialog that is not ours and was not routed through us. */
	if (sip->sip_to->a_tag && !route_is_us(s, sip->sip_route)) {
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		sip_reply(irq, SIP_481_NO_TRANSACTION, TAG_END());
		return;
	}
	m = msg_copy(req);
	out = m ? sip_object(m) : NULL;
	t = out ? txn_new(s, irq) : NULL;
	if (!t) {
		msg_destroy(m);
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return;
	}
	/* Headers in the Request-URI would become headers of our request (RFC 3261 19.1.5): a
	 * client could add P-Asserted-Identity toward the PBX. They are not relayed. */
	if (out->sip_request->rq_url->url_headers) {
		out->sip_request->rq_url->url_headers = NULL;
		msg_fragment_clear(out->sip_request->rq_common);
	}
	/* The Route that brought it to us is used up (RFC 3261 16.4). */
	while (out->sip_route && route_is_us(s, out->sip_route)) {
		sip_header_remove(m, out, (sip_header_t *)out->sip_route);
	}
	if (registering) {
		sip_path_t *path;

		/* The rest is the registrar's: it is reached through the upstream. */
		while (out->sip_route)
			sip_header_remove(m, out, (sip_header_t *)out->sip_route);
		path = sip_path_make(msg_home(m), s->path);
		if (path)
			msg_header_insert(m, (msg_pub_t *)out, (msg_header_t *)path);
		if (!out->sip_supported)
			sip_add_tl(m, out, SIPTAG_SUPPORTED_STR("path"), TAG_END());
		next = (url_string_t *)s->upstream;
		metric_inc(METRIC_REGISTERS_TOTAL);
	} else if (!out->sip_route && uri_is_us(s, out->sip_request->rq_url)) {
		t->irq = NULL;
		txn_free(t);
		msg_destroy(m);
		answer_locally(s, irq, sip);
		return;
	} else if (from_up) {
		next = NULL; /* the Route left leads, else the Request-URI: a phone's contact */
	} else {
		/* A phone's request goes to the upstream whatever its Route says: we are no open
		 * relay. The rest of its route set is the upstream's to follow. */
		next = (url_string_t *)s->upstream;
	}
	if (out->sip_max_forwards)
		out->sip_max_forwards->mf_count--;
	/* Dialogs these make run through us (RFC 3261 16.6 step 4). */
	if ((method == sip_method_subscribe || method == sip_method_refer) && !out->sip_to->a_tag)
		sip_add_tl(m, out, SIPTAG_RECORD_ROUTE_STR(s->path), TAG_END());
	t->registering = registering;
	t->orq = nta_outgoing_mcreate(s->nta, txn_answer, t, next, m, TAG_END());
	if (!t->orq) {
		LOG_WARN("sip", "cannot pass %s on", sip->sip_request->rq_method_name);
		msg_destroy(m);
		nta_incoming_treply(irq, SIP_502_BAD_GATEWAY, TAG_END());
		nta_incoming_destroy(irq);
		t->irq = NULL;
		txn_free(t);
		return;
	}
	if (registering && s->conf.register_timeout) {
		t->timer = su_timer_create(su_root_task(s->root), 0);
		if (t->timer)
			su_timer_set_interval(t->timer, register_timeout, t,
			                      (su_duration_t)s->conf.register_timeout * 1000);
	}
}

/*
 * A request in the dialog of a call another live node serves (a load balancer's failover sent
 * it here, or a node took the call over while another got its requests): passed on to that
 * node as a proxy would (RFC 3261 16.6), its answer back. An ACK goes on by itself.
 */
void relay_to_node(struct sip *s, nta_incoming_t *irq, const char *node)
{
	msg_t *req = nta_incoming_getrequest(irq);
	msg_t *m = req ? msg_copy(req) : NULL;
	sip_t *out = m ? sip_object(m) : NULL;
	url_t *next = m ? url_hdup(msg_home(m), URL_STRING_MAKE(node)->us_url) : NULL;
	struct txn *t = NULL;

	msg_destroy(req);
	if (out && out->sip_request->rq_method == sip_method_ack) {
		ack_to_node(s, m, node);
		nta_incoming_destroy(irq);
		return;
	}
	if (!out || !next || route_is_self(s, next)) {
		msg_destroy(m);
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return;
	}
	if (out->sip_max_forwards && out->sip_max_forwards->mf_count == 0) {
		msg_destroy(m);
		sip_reply(irq, SIP_483_TOO_MANY_HOPS, TAG_END());
		return;
	}
	if (out->sip_max_forwards)
		out->sip_max_forwards->mf_count--;
	t = txn_new(s, irq);
	if (t)
		t->node = su_strdup(s->home, node);
	if (t)
		t->orq =
		    nta_outgoing_mcreate(s->nta, txn_answer, t, (url_string_t *)next, m, TAG_END());
	if (!t || !t->orq) {
		msg_destroy(m);
		if (t) {
			t->irq = NULL;
			txn_free(t);
		}
		sip_reply(irq, SIP_502_BAD_GATEWAY, TAG_END());
	}
}

/* An ACK (m, ours to send or free) on to node: no INVITE of ours to take a branch from, so one
 * of its own. */
static void ack_to_node(struct sip *s, msg_t *m, const char *node)
{
	sip_t *out = m ? sip_object(m) : NULL;
	url_t *next = m ? url_hdup(msg_home(m), URL_STRING_MAKE(node)->us_url) : NULL;
	char branch[40];
	nta_outgoing_t *orq = NULL;

	if (out && next && !route_is_self(s, next) && !leg_branch(branch, sizeof(branch)) &&
	    (!out->sip_max_forwards || out->sip_max_forwards->mf_count)) {
		if (out->sip_max_forwards)
			out->sip_max_forwards->mf_count--;
		orq = nta_outgoing_mcreate(s->nta, NULL, NULL, (url_string_t *)next, m,
		                           NTATAG_ACK_BRANCH(branch), TAG_END());
	}
	if (orq)
		nta_outgoing_destroy(orq);
	else
		msg_destroy(m);
}
