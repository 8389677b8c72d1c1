/*
 * A meeting's conference bridge ([meet] conference_uri), RFC 3725 flow I: qrxfer dials the
 * bridge twice without an offer (one leg per party, one after the other), and only once both
 * legs are answered re-INVITEs the near party, then the far party, each with its own bridge leg's
 * offer, and ACKs that leg with the party's answer. The call's dialogs with A and C stay as they
 * are: only their media go to the bridge. If the bridge refuses either leg (488 or anything else),
 * the other is let go of and the call stays exactly as it was. Once the parties are on the
 * bridge, its legs' dialogs are kept with the call's context (contexts.bridge): a restart
 * serves them again, so that the call's end still ends them.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "move/context_int.h"

static void bridge_fail(struct call *c, struct cctx *x, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void bridge_fail(struct call *c, struct cctx *x, const char *fmt, ...)
{
	char why[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	LOG_INFO("meet", "%s: bridge: %s: the call stays as it was", c->id, why);
	for (int i = 0; i < 2; i++) {
		struct leg *k = x->bridge_leg[i];

		if (k && !k->terminated && !k->ending) {
			if (k->answered) {
				leg_ack(k, NULL, NULL);
				call_leg_end(k, "SIP;cause=487;text=\"Meeting abandoned\"");
			} else {
				call_leg_end(k, NULL);
			}
		}
		x->bridge_leg[i] = NULL;
		free(x->bridge_offer[i]);
		x->bridge_offer[i] = NULL;
	}
	if (x->bridge == BRIDGE_REINVITE_NEAR || x->bridge == BRIDGE_REINVITE_FAR)
		c->offer_busy = 0;
	x->bridge = BRIDGE_FAILED;
}

static int dial(struct call *c, struct cctx *x, int i, const char *uri)
{
	struct sip *s = c->sip;
	char from[300];
	sip_addr_t *fr, *to;
	url_t *u;
	struct leg *k;

	snprintf(from, sizeof(from), "<sip:meet@%s>", s->conf.domain);
	u = url_make(c->home, uri);
	to = sip_to_make(c->home, uri);
	fr = sip_from_make(c->home, from);
	/* The bridge is the administrator's own address: called directly, not through the PBX. */
	k = u && to && fr ? leg_dial(c, 0, u, fr, to, 0) : NULL;
	if (!k)
		return ENOMEM;
	k->uri = su_strdup(c->home, uri);
	x->bridge_leg[i] = k;
	return leg_invite(k, NULL, NULL, TAG_END()) ? EIO : 0;
}

int context_bridge_start(struct context_stack *cs, struct call *c, struct cctx *x, const char *uri)
{
	if (x->bridge == BRIDGE_DIALING || x->bridge == BRIDGE_REINVITE_NEAR ||
	    x->bridge == BRIDGE_REINVITE_FAR || x->bridge == BRIDGE_DONE)
		return EALREADY;
	if (call_move(c) || c->offer_busy || c->ack_pending || c->reinvite_ack) {
		LOG_INFO("meet",
		         "%s: bridge: the call is busy (a move or an offer under way): "
		         "links only",
		         c->id);
		return EBUSY;
	}
	x->bridge = BRIDGE_DIALING;
	snprintf(x->bridge_uri, sizeof(x->bridge_uri), "%s", uri);
	/* One leg after the other: a refusal of the first costs the bridge nothing more. */
	if (dial(c, x, 0, uri)) {
		bridge_fail(c, x, "cannot call %s", uri);
		return EIO;
	}
	LOG_INFO("meet", "%s: bridge: calling %s, one leg per party", c->id, uri);
	return 0;
}

static int reinvite(struct call *c, struct leg *party, const char *offer)
{
	sip_payload_t *pl = sip_payload_create(c->home, offer, (isize_t)strlen(offer));

	if (party == c->far)
		pl = sdp_to_far(c, pl);
	c->offer_busy = 1;
	return pl ? leg_invite(party, NULL, pl, TAG_END()) : ENOMEM;
}

static char *body_dup(const sip_t *sip)
{
	const sip_payload_t *pl = body_pl(sip);

	return pl && pl->pl_len ? strndup(pl->pl_data, pl->pl_len) : NULL;
}

/* The party answered its re-INVITE: ACK it, and ACK its bridge leg with the party's answer. */
static void ack_both(struct call *c, struct leg *party, struct leg *bridge_leg, const sip_t *sip)
{
	const sip_payload_t *answer = body_pl(sip);
	sip_payload_t *pl = answer && answer->pl_len
	                        ? sip_payload_create(c->home, answer->pl_data, answer->pl_len)
	                        : NULL;

	leg_ack(party, NULL, NULL);
	leg_ack(bridge_leg, NULL, pl);
}

/* Keeps the bridge legs' dialogs where a restart finds them (the call's own state holds its
 * two parties' legs only). */
static void bridge_save(struct call *c, struct cctx *x)
{
	struct store *st = c->sip->conf.store;
	struct store_job job = {.op = STORE_OP_CONTEXT_BRIDGE_SET};
	json_t *a = json_array();
	struct leg_state ls;

	if (!st || !a)
		goto out;
	for (int i = 0; i < 2; i++) {
		struct leg *k = x->bridge_leg[i];

		if (!k || k->terminated || k->ending || leg_state_get(k, &ls))
			continue;
		json_array_append_new(
		    a,
		    json_pack("{s:i, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:b}",
		              "party", i, "call_id", ls.call_id, "ltag", ls.ltag, "rtag", ls.rtag,
		              "lseq", (json_int_t)ls.lseq, "rseq", (json_int_t)ls.rseq, "local",
		              ls.local, "remote", ls.remote, "route", ls.route, "target", ls.target,
		              "uri", k->uri ? k->uri : "", "secure", ls.secure, "tcp", ls.tcp));
	}
	job.blob = json_dumps(a, JSON_COMPACT);
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	if (!job.blob || store_submit(st, &job, NULL, NULL))
		LOG_ERR("meet", "%s: bridge: store: cannot keep the bridge legs", c->id);
out:
	json_decref(a);
}

/* The store read back a restored call's bridge legs. */
struct bridge_read {
	struct context_stack *cs;
	char call_id[33];
};

/* On a restart our CSeqs go this far past the last written (the legs' requests since). */
#define BRIDGE_CSEQ_SKIP 100

static void bridge_read(struct store_job *job, void *arg)
{
	struct bridge_read *r = arg;
	struct context_stack *cs = r->cs;
	struct call *c = cs->stopped ? NULL : call_find(cs->sip, r->call_id);
	struct cctx *x = c ? context_of(c, 1) : NULL;
	json_t *a = job->err || !job->blob || !*job->blob ? NULL : json_loads(job->blob, 0, NULL);
	size_t i, n = 0;
	json_t *e;

	if (a && (!c || c->state != SIP_CALL_ANSWERED))
		LOG_WARN("meet",
		         "%s: bridge: the call ended before its bridge legs were read back: "
		         "the bridge is not told",
		         r->call_id);
	json_array_foreach(c && x && c->state == SIP_CALL_ANSWERED ? a : NULL, i, e)
	{
		struct leg_state ls;
		const char *cid, *lt, *rt, *lo, *re, *ro, *ta, *uri;
		json_int_t party, lseq, rseq;
		int secure, tcp;
		struct leg *k;

		memset(&ls, 0, sizeof(ls));
		if (json_unpack(e,
		                "{s:I, s:s, s:s, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:s, s:b, s:b}",
		                "party", &party, "call_id", &cid, "ltag", &lt, "rtag", &rt, "lseq",
		                &lseq, "rseq", &rseq, "local", &lo, "remote", &re, "route", &ro,
		                "target", &ta, "uri", &uri, "secure", &secure, "tcp", &tcp) ||
		    party < 0 || party > 1 || x->bridge_leg[party]) {
			LOG_ERR("meet", "%s: bridge: a bridge leg's state is unreadable",
			        r->call_id);
			continue;
		}
		snprintf(ls.call_id, sizeof(ls.call_id), "%s", cid);
		snprintf(ls.ltag, sizeof(ls.ltag), "%s", lt);
		snprintf(ls.rtag, sizeof(ls.rtag), "%s", rt);
		snprintf(ls.local, sizeof(ls.local), "%s", lo);
		snprintf(ls.remote, sizeof(ls.remote), "%s", re);
		snprintf(ls.route, sizeof(ls.route), "%s", ro);
		snprintf(ls.target, sizeof(ls.target), "%s", ta);
		ls.lseq = (uint32_t)lseq + BRIDGE_CSEQ_SKIP;
		ls.rseq = (uint32_t)rseq;
		ls.secure = secure;
		ls.tcp = tcp;
		ls.answered = 1;
		k = leg_restore(c, &ls);
		if (!k) {
			LOG_ERR("meet", "%s: bridge: nta refused a bridge leg's dialog",
			        r->call_id);
			continue;
		}
		k->uri = su_strdup(c->home, uri);
		x->bridge_leg[party] = k;
		n++;
	}
	if (n) {
		x->bridge = BRIDGE_DONE;
		LOG_INFO("meet", "%s: bridge: %zu bridge leg%s served again", r->call_id, n,
		         n == 1 ? "" : "s");
	}
	json_decref(a);
	free(r);
	context_pending_done(cs);
}

void context_bridge_restore(struct context_stack *cs, struct call *c)
{
	struct store_job job = {.op = STORE_OP_CONTEXT_BRIDGE_GET};
	struct bridge_read *r;

	if (!c->sip->conf.store || !(r = calloc(1, sizeof(*r))))
		return;
	r->cs = cs;
	snprintf(r->call_id, sizeof(r->call_id), "%s", c->id);
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	cs->pending++;
	if (store_submit(c->sip->conf.store, &job, bridge_read, r)) {
		free(r);
		context_pending_done(cs);
	}
}

/* A response to one of our INVITEs on c: 1 when it was the bridge's business. */
int context_bridge_response(struct call *c, struct leg *leg, int status, const sip_t *sip)
{
	struct cctx *x = context_of(c, 0);
	int i;

	if (!x || x->bridge == BRIDGE_NONE || x->bridge == BRIDGE_FAILED)
		return 0;
	for (i = 0; i < 2 && leg != x->bridge_leg[i]; i++)
		;
	if (i < 2 && x->bridge == BRIDGE_DIALING && !leg->answered) {
		if (status < 200)
			return 1;
		if (status >= 300) {
			x->bridge_leg[i] = NULL; /* the stack lets go of a refused leg */
			call_leg_terminated(leg);
			bridge_fail(c, x, "%s answered %d", x->bridge_uri, status);
			return 1;
		}
		leg->answered = 1;
		call_leg_tags(leg, sip);
		x->bridge_offer[i] = body_dup(sip);
		if (!x->bridge_offer[i]) {
			bridge_fail(c, x, "%s answered %d without an offer", x->bridge_uri, status);
			return 1;
		}
		if (i == 0) {
			if (dial(c, x, 1, x->bridge_uri))
				bridge_fail(c, x, "cannot call %s again", x->bridge_uri);
			return 1;
		}
		if (c->state != SIP_CALL_ANSWERED || call_move(c) || c->offer_busy) {
			bridge_fail(c, x, "%s answered, but the call is busy now", x->bridge_uri);
			return 1;
		}
		x->bridge = BRIDGE_REINVITE_NEAR;
		if (reinvite(c, c->near, x->bridge_offer[0]))
			bridge_fail(c, x, "cannot re-INVITE the near party");
		return 1;
	}
	if (i < 2)
		return 1; /* a 2xx sent again: the stack ACKs it */
	if (x->bridge == BRIDGE_REINVITE_NEAR && leg == c->near) {
		if (status < 200)
			return 1;
		if (status >= 300) {
			bridge_fail(c, x, "the near party answered %d", status);
			return 1;
		}
		ack_both(c, c->near, x->bridge_leg[0], sip);
		x->bridge = BRIDGE_REINVITE_FAR;
		if (reinvite(c, c->far, x->bridge_offer[1]))
			LOG_ERR("meet", "%s: bridge: cannot re-INVITE the far party", c->id);
		return 1;
	}
	if (x->bridge == BRIDGE_REINVITE_FAR && leg == c->far) {
		if (status < 200)
			return 1;
		c->offer_busy = 0;
		if (status >= 300) {
			/* The near party is on the bridge already: it stays there, alone. */
			LOG_WARN("meet",
			         "%s: bridge: the far party answered %d: only the near party "
			         "is in the meeting",
			         c->id, status);
			x->bridge = BRIDGE_DONE;
			return 1;
		}
		ack_both(c, c->far, x->bridge_leg[1], sip);
		x->bridge = BRIDGE_DONE;
		LOG_INFO("meet", "%s: bridge: both parties are on %s", c->id, x->bridge_uri);
		bridge_save(c, x);
		return 1;
	}
	return 0;
}

/* A bridge leg hung up or went: the call goes on with its parties. */
int context_bridge_leg_gone(struct call *c, struct leg *leg)
{
	struct cctx *x = context_of(c, 0);

	if (!x)
		return 0;
	for (int i = 0; i < 2; i++)
		if (leg == x->bridge_leg[i]) {
			x->bridge_leg[i] = NULL;
			if (c->state != SIP_CALL_ENDING)
				LOG_INFO("meet", "%s: bridge: the bridge left the %s party's leg",
				         c->id, i ? "far" : "near");
			return 1;
		}
	return 0;
}

void context_bridge_free(struct cctx *x)
{
	for (int i = 0; i < 2; i++)
		free(x->bridge_offer[i]);
}
