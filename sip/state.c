/*
 * A leg's whole dialog, written out and read back: Call-ID, both tags, both CSeqs, route set,
 * remote target, both addresses, transport. What a restart or another node needs to take the
 * dialog over (RFC 3261 12: the dialog state is exactly this).
 */
#include <stdio.h>
#include <string.h>

#include <jansson.h>

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

/*
 * A call as the store keeps it: both legs' dialogs and what the far party last saw of the
 * session (its o= line and version, the body), in JSON. A restart, or another node, reads it
 * back with call_state_load.
 */
#define STATE_VERSION 1

/* On a restart our CSeqs go on this far past the last one written: requests sent after the
 * last write (at most a second of them) must not be numbered again (RFC 3261 12.2.2 lets a
 * CSeq jump). */
#define CSEQ_GAP 100

static json_t *leg_json(struct leg *leg)
{
	struct leg_state st;

	if (!leg || leg->terminated || leg_state_get(leg, &st))
		return NULL;
	leg->lseq_saved = st.lseq;
	return json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:b, s:b, s:I}",
	                 "call_id", st.call_id, "ltag", st.ltag, "rtag", st.rtag, "lseq",
	                 (json_int_t)st.lseq, "rseq", (json_int_t)st.rseq, "local", st.local,
	                 "remote", st.remote, "route", st.route, "target", st.target, "uri",
	                 leg->uri ? leg->uri : "", "secure", st.secure, "tcp", st.tcp, "incoming",
	                 st.incoming, "acked", (json_int_t)leg->acked_cseq);
}

static int set_str(json_t *o, const char *key, const char *val)
{
	return val ? json_object_set_new(o, key, json_string(val)) : 0;
}

char *call_state_dump(struct call *c)
{
	json_t *o, *near, *far;
	char *out = NULL;

	if (!c->near || !c->far || c->state != SIP_CALL_ANSWERED)
		return NULL;
	near = leg_json(c->near);
	far = leg_json(c->far);
	if (!near || !far) {
		json_decref(near);
		json_decref(far);
		return NULL;
	}
	/* ack_cseq: written before the caller's ACK came (call_answering), the CSeq of our
	 * INVITE whose 2xx that ACK is to be passed on for; 0 once it came. */
	o = json_pack("{s:i, s:I, s:I, s:o, s:o, s:s, s:I, s:b, s:I}", "v", STATE_VERSION,
	              "created", (json_int_t)c->created, "answered", (json_int_t)c->answered,
	              "near", near, "far", far, "in", c->in == c->far ? "far" : "near",
	              "far_version", (json_int_t)c->far_version, "feature", c->feature != NULL,
	              "ack_cseq", (json_int_t)(c->ack_pending && c->out ? c->out->ack_cseq : 0));
	if (o && !set_str(o, "far_origin", c->far_origin) &&
	    !set_str(o, "far_origin_tail", c->far_origin_tail) &&
	    !set_str(o, "far_body", c->far_body) && !set_str(o, "near_sdp", c->near_sdp))
		out = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	return out;
}

static int leg_state_from(json_t *j, struct leg_state *st, const char **uri, json_int_t *acked,
                          char *why, size_t len)
{
	const char *cid, *lt, *rt, *local, *remote, *route, *target;
	json_int_t lseq, rseq;
	int secure, tcp, incoming;
	json_error_t e;

	memset(st, 0, sizeof(*st));
	if (json_unpack_ex(j, &e, 0,
	                   "{s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:b, "
	                   "s:b, s:I}",
	                   "call_id", &cid, "ltag", &lt, "rtag", &rt, "lseq", &lseq, "rseq", &rseq,
	                   "local", &local, "remote", &remote, "route", &route, "target", &target,
	                   "uri", uri, "secure", &secure, "tcp", &tcp, "incoming", &incoming,
	                   "acked", acked)) {
		snprintf(why, len, "%s", e.text);
		return EINVAL;
	}
	if (put(st->call_id, sizeof(st->call_id), cid) || put(st->ltag, sizeof(st->ltag), lt) ||
	    put(st->rtag, sizeof(st->rtag), rt) || put(st->local, sizeof(st->local), local) ||
	    put(st->remote, sizeof(st->remote), remote) ||
	    put(st->route, sizeof(st->route), route) ||
	    put(st->target, sizeof(st->target), target) || !st->ltag[0] || !st->rtag[0] ||
	    lseq < 0 || lseq > 0x7fffffff - CSEQ_GAP || rseq < 0 || rseq > 0x7fffffff) {
		snprintf(why, len, "a dialog field is missing, too long or out of range");
		return EINVAL;
	}
	/* No request of ours yet in that dialog: nta numbers the first from the clock, past any
	 * number it gave before; else ours go on past the gap. */
	st->lseq = lseq ? (uint32_t)lseq + CSEQ_GAP : 0;
	st->rseq = (uint32_t)rseq;
	st->secure = !!secure;
	st->tcp = !!tcp;
	st->incoming = !!incoming;
	st->answered = 1;
	return 0;
}

static char *get_str(su_home_t *home, json_t *o, const char *key)
{
	const char *v = json_string_value(json_object_get(o, key));

	return v ? su_strdup(home, v) : NULL;
}

int call_state_load(struct sip *s, const char *id, const char *text, struct call **cp, char *why,
                    size_t len)
{
	struct leg_state nst, fst;
	const char *nuri = NULL, *furi = NULL, *in = NULL;
	json_int_t nacked = 0, facked = 0, created = 0, answered = 0, version = 0, ack_cseq = 0;
	json_error_t e;
	json_t *o;
	struct call *c;
	int v = 0, err;

	*cp = NULL;
	if (call_find(s, id)) {
		snprintf(why, len, "already served here");
		return EEXIST;
	}
	o = json_loads(text, 0, &e);
	if (!o) {
		snprintf(why, len, "not JSON: %s", e.text);
		return EINVAL;
	}
	if (json_unpack_ex(o, &e, 0, "{s:i, s:I, s:I, s:s, s:I, s?I}", "v", &v, "created", &created,
	                   "answered", &answered, "in", &in, "far_version", &version, "ack_cseq",
	                   &ack_cseq) ||
	    v != STATE_VERSION) {
		snprintf(why, len, "%s", v && v != STATE_VERSION ? "unknown version" : e.text);
		json_decref(o);
		return EINVAL;
	}
	if (ack_cseq < 0 || ack_cseq > 0x7fffffff) {
		snprintf(why, len, "ack_cseq out of range");
		json_decref(o);
		return EINVAL;
	}
	err = leg_state_from(json_object_get(o, "near"), &nst, &nuri, &nacked, why, len);
	if (!err)
		err = leg_state_from(json_object_get(o, "far"), &fst, &furi, &facked, why, len);
	if (!err && nacked >= 0 && facked >= 0)
		err = call_alloc_id(&c, s, id);
	if (err) {
		json_decref(o);
		return err;
	}
	nst.near = 1;
	c->created = (time_t)created;
	c->answered = (time_t)answered;
	c->state = SIP_CALL_ANSWERED;
	c->recorded = 1;
	c->far_version = (unsigned long long)version;
	c->far_origin = get_str(c->home, o, "far_origin");
	c->far_origin_tail = get_str(c->home, o, "far_origin_tail");
	c->far_body = get_str(c->home, o, "far_body");
	c->near_sdp = get_str(c->home, o, "near_sdp");
	c->had_feature = json_is_true(json_object_get(o, "feature"));
	/* A leg that cannot be rebuilt frees the call once no other is alive: hold it. */
	su_home_ref(c->home);
	c->far = leg_restore(c, &fst);
	c->near = c->far ? leg_restore(c, &nst) : NULL;
	if (!c->near || !c->far) {
		snprintf(why, len, "nta refused a dialog");
		json_decref(o);
		/* The leg that was rebuilt is told the call is over. */
		if (!c->freeing)
			call_end(c, 500, "SIP;cause=500;text=\"Call state unreadable\"");
		su_home_unref(c->home);
		return EINVAL;
	}
	su_home_unref(c->home);
	c->near->uri = su_strdup(c->home, nuri);
	c->far->uri = su_strdup(c->home, furi);
	c->near->acked_cseq = (uint32_t)nacked;
	c->far->acked_cseq = (uint32_t)facked;
	c->in = strcmp(in, "far") ? c->near : c->far;
	c->out = c->in == c->near ? c->far : c->near;
	if (ack_cseq) {
		/* Read back before the caller's ACK came: passed on when it comes, on a
		 * transaction of its own (the INVITE died with the previous run). */
		c->ack_pending = 1;
		c->out->ack_cseq = (uint32_t)ack_cseq;
		c->out->ack_own_branch = 1;
	}
	json_decref(o);
	invite_max_timer(c);
	LOG_DEBUG("call", "%s: served again: near leg %s (%s), far leg %s (%s)", c->id,
	          c->near->call_id, c->near->uri, c->far->call_id, c->far->uri);
	*cp = c;
	hook_call_restored(c);
	return 0;
}
