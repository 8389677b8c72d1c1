/*
 * A leg's whole dialog, written out and read back: Call-ID, both tags, both CSeqs, route set,
 * remote target, both addresses, transport. What a restart or another node needs to take the
 * dialog over (RFC 3261 12: the dialog state is exactly this).
 */
#include <stdio.h>
#include <string.h>

#include "sip/b2bua.h"

static int put(char *dst, size_t len, const char *src)
{
	if (!src) {
		dst[0] = 0;
		return 0;
	}
	return (size_t)snprintf(dst, len, "%s", src) < len ? 0 : ENOSPC;
}

int leg_state_get(const struct leg *leg, struct leg_state *st)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	const sip_route_t *route = NULL;
	const sip_contact_t *target = NULL;
	size_t n = 0;
	int err = 0;

	memset(st, 0, sizeof(*st));
	if (!leg->dlg || !leg->call_id || !leg->local || !leg->remote)
		return ENOTCONN;
	nta_leg_get_route(leg->dlg, &route, &target);
	err = put(st->call_id, sizeof(st->call_id), leg->call_id);
	err = err ? err : put(st->ltag, sizeof(st->ltag), nta_leg_get_tag(leg->dlg));
	err = err ? err : put(st->rtag, sizeof(st->rtag), nta_leg_get_rtag(leg->dlg));
	err = err ? err : put(st->local, sizeof(st->local), leg->local);
	err = err ? err : put(st->remote, sizeof(st->remote), leg->remote);
	if (!err && target)
		err = put(st->target, sizeof(st->target), url_as_string(home, target->m_url));
	for (const sip_route_t *r = route; r && !err; r = r->r_next) {
		char *one = sip_header_as_string(home, (const sip_header_t *)r);
		int w = snprintf(st->route + n, sizeof(st->route) - n, "%s%s", n ? ", " : "",
		                 one ? one : "");

		if (!one || w < 0 || (size_t)w >= sizeof(st->route) - n)
			err = ENOSPC;
		else
			n += (size_t)w;
	}
	st->lseq = nta_leg_get_seq(leg->dlg);
	st->rseq = nta_leg_get_rseq(leg->dlg);
	st->secure = leg->secure;
	st->tcp = leg->tcp;
	st->incoming = leg->incoming;
	st->near = leg->near;
	st->answered = leg->answered;
	su_home_deinit(home);
	return err;
}

/* A leg of c rebuilt from st: requests in its dialog reach it as they reached the old one. */
struct leg *leg_restore(struct call *c, const struct leg_state *st)
{
	struct sip *s = c->sip;
	struct leg *leg = call_leg_new(c, st->near, st->incoming);
	sip_contact_t *target = st->target[0] ? sip_contact_make(c->home, st->target) : NULL;
	sip_route_t *route = st->route[0] ? sip_route_make(c->home, st->route) : NULL;
	sip_cseq_t *cseq = sip_cseq_create(c->home, st->lseq, SIP_METHOD_INVITE);

	if (!leg)
		return NULL;
	leg->call_id = su_strdup(c->home, st->call_id);
	leg->local = su_strdup(c->home, st->local);
	leg->remote = su_strdup(c->home, st->remote);
	leg->secure = st->secure;
	leg->tcp = st->tcp;
	leg->answered = st->answered;
	leg->dlg =
	    nta_leg_tcreate(s->nta, leg_request_cb, leg, SIPTAG_CALL_ID_STR(st->call_id),
	                    SIPTAG_FROM_STR(st->local), SIPTAG_TO_STR(st->remote),
	                    TAG_IF(route, SIPTAG_ROUTE(route)), TAG_IF(cseq, SIPTAG_CSEQ(cseq)),
	                    NTATAG_REMOTE_CSEQ(st->rseq), TAG_END());
	if (!leg->dlg || (st->ltag[0] && !nta_leg_tag(leg->dlg, st->ltag)) ||
	    (st->rtag[0] && !nta_leg_rtag(leg->dlg, st->rtag))) {
		call_leg_terminated(leg);
		return NULL;
	}
	/* The route set as it was (loose or strict by its first entry), then the target. */
	nta_leg_client_route(leg->dlg, NULL, target);
	return leg;
}
