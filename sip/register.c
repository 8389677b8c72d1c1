/* REGISTER: passed to the upstream registrar with our Path (RFC 3327), its answer relayed. */
#include <string.h>

#include <sofia-sip/msg_header.h>

#include "sip/b2bua.h"

int register_init(struct sip *s)
{
	const url_t *self = s->self;
	char url[256];

	/* A client-only agent: the NUA agent of 1.12.11 cannot forward a request. */
	snprintf(url, sizeof(url), "sip:%s:*", self->url_host); /* [v6] keeps its brackets */
	/* [sip] register_timeout bounds the wait for the registrar: its transactions time out
	 * then (timer F, RFC 3261 17.1.2.2) and the phone gets the 408 nta makes. */
	s->nta = nta_agent_create(
	    s->root, URL_STRING_MAKE(url), NULL, NULL,
	    NTATAG_SIP_T1X64(s->conf.register_timeout ? s->conf.register_timeout * 1000 : 32000),
	    TAG_END());
	if (!s->nta) {
		LOG_ERR("register", "cannot create the forwarding agent on %s: %s", url,
		        strerror(errno));
		return errno ? errno : EIO;
	}
	return 0;
}

static int register_answer(struct txn *t, nta_outgoing_t *orq, const sip_t *sip)
{
	int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);
	const sip_contact_t *m = sip ? sip->sip_contact : NULL;
	const sip_path_t *path = sip ? sip->sip_path : NULL;
	const sip_service_route_t *sr = sip ? sip->sip_service_route : NULL;
	const sip_www_authenticate_t *wa = sip ? sip->sip_www_authenticate : NULL;
	const sip_proxy_authenticate_t *pa = sip ? sip->sip_proxy_authenticate : NULL;
	const sip_expires_t *ex = sip ? sip->sip_expires : NULL;
	const sip_min_expires_t *mex = sip ? sip->sip_min_expires : NULL;
	const char *phrase;

	if (status < 200)
		return 0;
	if (!sip && status >= 500)
		status = 504; /* no answer from the registrar */
	phrase = sip_status_phrase(status) ? sip_status_phrase(status) : "Registrar Answer";
	LOG_INFO("register", "registrar answered %d", status);
	nua_respond(t->in_nh, status, phrase, TAG_IF(m, SIPTAG_CONTACT(m)),
	            TAG_IF(path, SIPTAG_PATH(path)), TAG_IF(sr, SIPTAG_SERVICE_ROUTE(sr)),
	            TAG_IF(wa, SIPTAG_WWW_AUTHENTICATE(wa)),
	            TAG_IF(pa, SIPTAG_PROXY_AUTHENTICATE(pa)), TAG_IF(ex, SIPTAG_EXPIRES(ex)),
	            TAG_IF(mex, SIPTAG_MIN_EXPIRES(mex)), NUTAG_WITH_SAVED(t->saved), TAG_END());
	t->orq = NULL;
	nta_outgoing_destroy(orq);
	txn_free(t);
	return 0;
}

static void refuse(struct sip *s, nua_handle_t *nh, int status, const char *phrase)
{
	nua_respond(nh, status, phrase, NUTAG_WITH_THIS(s->nua), TAG_END());
	nua_handle_destroy(nh);
}

void register_request(struct sip *s, nua_handle_t *nh, const sip_t *sip)
{
	msg_t *req = nua_current_request(s->nua), *m;
	sip_t *out;
	sip_path_t *path;
	struct txn *t;

	metric_inc(METRIC_REGISTERS_TOTAL);
	if (s->shutting_down) {
		refuse(s, nh, SIP_503_SERVICE_UNAVAILABLE);
		return;
	}
	if (sip->sip_max_forwards && sip->sip_max_forwards->mf_count == 0) {
		refuse(s, nh, SIP_483_TOO_MANY_HOPS);
		return;
	}
	m = req ? msg_copy(req) : NULL;
	out = m ? sip_object(m) : NULL;
	t = out ? txn_new(s, nh) : NULL;
	if (!t) {
		msg_destroy(m);
		refuse(s, nh, SIP_500_INTERNAL_SERVER_ERROR);
		return;
	}
	/* Headers in the Request-URI are not relayed (RFC 3261 19.1.1: not allowed there). */
	if (out->sip_request && out->sip_request->rq_url->url_headers) {
		out->sip_request->rq_url->url_headers = NULL;
		msg_fragment_clear(out->sip_request->rq_common);
	}
	/* The Route that brought it to us is used up; the rest is the registrar's. */
	while (out->sip_route)
		sip_header_remove(m, out, (sip_header_t *)out->sip_route);
	if (out->sip_max_forwards)
		out->sip_max_forwards->mf_count--;
	path = sip_path_make(msg_home(m), s->path);
	if (path)
		msg_header_insert(m, (msg_pub_t *)out, (msg_header_t *)path);
	if (!out->sip_supported)
		sip_add_tl(m, out, SIPTAG_SUPPORTED_STR("path"), TAG_END());

	t->orq = nta_outgoing_mcreate(s->nta, register_answer, t, (url_string_t *)s->upstream, m,
	                              TAG_END());
	if (!t->orq) {
		LOG_ERR("register", "cannot send to the registrar %s", s->conf.upstream);
		msg_destroy(m);
		nua_respond(nh, SIP_502_BAD_GATEWAY, NUTAG_WITH_SAVED(t->saved), TAG_END());
		txn_free(t);
	}
}
