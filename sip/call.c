#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "sip/b2bua.h"
#include "util/hash.h"

static unsigned call_bucket(const char *id)
{
	return hash_str(id) % CALL_BUCKETS;
}

struct call *call_find(struct sip *s, const char *id)
{
	struct call *c;

	for (c = s->call_table[call_bucket(id)]; c; c = c->hnext)
		if (!strcmp(c->id, id))
			return c;
	return NULL;
}

int call_alloc(struct call **cp, struct sip *s)
{
	unsigned char raw[16];
	char id[33];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return EIO;
	for (int i = 0; i < 16; i++)
		snprintf(id + 2 * i, 3, "%02x", raw[i]);
	return call_alloc_id(cp, s, id);
}

/* A call under a given id: one read back from the store. */
int call_alloc_id(struct call **cp, struct sip *s, const char *id)
{
	struct call *c;

	if (strlen(id) >= sizeof(c->id))
		return EINVAL;
	c = su_home_new(sizeof(*c));
	if (!c)
		return ENOMEM;
	snprintf(c->id, sizeof(c->id), "%s", id);
	c->sip = s;
	c->created = time(NULL);
	SLIST_INIT(&c->legs);
	LIST_INIT(&c->ctxs);
	TAILQ_INSERT_TAIL(&s->calls, c, link);
	c->hnext = s->call_table[call_bucket(c->id)];
	s->call_table[call_bucket(c->id)] = c;
	metric_inc(METRIC_CALLS_TOTAL);
	metric_inc(METRIC_CALLS_ACTIVE);
	*cp = c;
	return 0;
}

struct leg *call_leg_new(struct call *c, int near, int incoming)
{
	struct leg *leg = su_zalloc(c->home, sizeof(*leg));

	if (!leg)
		return NULL;
	leg->call = c;
	leg->near = near;
	leg->incoming = incoming;
	SLIST_INSERT_HEAD(&c->legs, leg, link);
	return leg;
}

struct ctx *ctx_new(struct call *c, struct leg *to, int kind)
{
	struct ctx *x = calloc(1, sizeof(*x));

	if (!x)
		return NULL;
	x->to = to;
	x->kind = kind;
	LIST_INSERT_HEAD(&c->ctxs, x, link);
	return x;
}

/* An INVITE of a call that is gone: its final answer is ACKed by nta (non-2xx), then let go. */
static int orphan_answer(void *arg, nta_outgoing_t *orq, const sip_t *sip)
{
	int status = sip && sip->sip_status ? sip->sip_status->st_status : nta_outgoing_status(orq);

	if (status >= 200)
		nta_outgoing_destroy(orq);
	return 0;
}

/* A transaction the call no longer waits for: its answer, if any comes, goes nowhere. */
void ctx_free(struct ctx *x)
{
	LIST_REMOVE(x, link);
	/* An INVITE still open is left to finish: destroyed now, nta would not ACK the final
	 * answer that still comes (RFC 3261 17.1.1.3), and its sender would wait for it. */
	if (x->orq && nta_outgoing_method(x->orq) == sip_method_invite &&
	    nta_outgoing_status(x->orq) < 200)
		nta_outgoing_bind(x->orq, orphan_answer, NULL);
	else if (x->orq)
		nta_outgoing_destroy(x->orq);
	if (x->irq)
		sip_reply(x->irq, SIP_481_NO_TRANSACTION, TAG_END());
	free(x);
}

/* The leg bridged to this one: NULL for a leg joining or leaving in a move. */
struct leg *call_other(struct leg *leg)
{
	struct call *c = leg->call;

	if (leg == c->near)
		return c->far;
	if (leg == c->far)
		return c->near;
	return NULL;
}

const char *call_side(const struct leg *leg)
{
	const struct call *c = leg->call;

	if (leg == c->near)
		return "near";
	if (leg == c->far)
		return "far";
	return leg->near ? "new near" : "old near";
}

/*
 * Note a dialog's tags from a message that confirms it: the 2xx we got (we sent the INVITE)
 * or the ACK we got (we answered it). Our tag is From's or To's accordingly.
 */
void call_leg_tags(struct leg *leg, const sip_t *sip)
{
	const char *from = sip && sip->sip_from ? sip->sip_from->a_tag : NULL;
	const char *to = sip && sip->sip_to ? sip->sip_to->a_tag : NULL;

	if (leg->ltag || !from || !to)
		return;
	leg->ltag = su_strdup(leg->call->home, leg->incoming ? to : from);
	leg->rtag = su_strdup(leg->call->home, leg->incoming ? from : to);
}

/* End one leg by the means its state allows. */
void call_leg_end(struct leg *leg, const char *reason)
{
	if (!leg || !leg->dlg || leg->terminated || leg->ending)
		return;
	leg->ending = 1;
	if (leg->answered) {
		leg_bye(leg, reason);
	} else if (!leg->incoming) {
		if (leg->oinv && !leg->cancel_sent) {
			leg->cancel_sent = 1;
			nta_outgoing_tcancel(leg->oinv, NULL, NULL,
			                     TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
		} else if (!leg->oinv) {
			call_leg_terminated(leg);
		}
	} else {
		tagi_t tags[] = {{TAG_IF(reason, SIPTAG_REASON_STR(reason))}, {TAG_END()}};

		if (leg->inv)
			leg_answer_as(leg, SIP_480_TEMPORARILY_UNAVAILABLE, NULL, NULL, 0, tags);
		call_leg_terminated(leg);
	}
}

void call_end(struct call *c, int status, const char *reason)
{
	struct leg *leg, *next;

	if (c->state != SIP_CALL_ENDING) {
		LOG_INFO("call", "%s: ending (%d%s%s)", c->id, status, reason ? ": " : "",
		         reason ? reason : "");
		c->state = SIP_CALL_ENDING;
	}
	if (c->max_timer) {
		su_timer_destroy(c->max_timer);
		c->max_timer = NULL;
	}
	/* Ending a leg may free the call once it is the last (a call_ending hook too, sending on
	 * what it held): hold it until the loop is done. */
	su_home_ref(c->home);
	hook_call_ending(c);
	for (leg = SLIST_FIRST(&c->legs); leg; leg = next) {
		next = SLIST_NEXT(leg, link);
		call_leg_end(leg, reason);
	}
	su_home_unref(c->home);
}

/* A leg of a live call found by its dialog's Call-ID and tags (ours, the peer's): nta's hash. */
struct leg *leg_by_dialog(struct sip *s, const char *call_id, const char *ltag, const char *rtag)
{
	sip_call_id_t id[1];
	nta_leg_t *dlg;
	struct leg *leg;

	if (!call_id)
		return NULL;
	sip_call_id_init(id);
	id->i_id = call_id;
	id->i_hash = msg_hash_string(call_id);
	dlg = nta_leg_by_dialog(s->nta, NULL, id, rtag ? rtag : "", NULL, ltag ? ltag : "", NULL);
	leg = dlg ? nta_leg_magic(dlg, leg_request_cb) : NULL;
	return leg && !leg->terminated && !leg->call->freeing ? leg : NULL;
}

/*
 * The call's dialogs changed: its state is written now (now: the session the far party saw
 * changed) or with the others within a second (a CSeq, a target).
 */
void call_touch(struct call *c, int now)
{
	struct sip *s = c->sip;

	if (now && c->dirty) {
		TAILQ_REMOVE(&s->dirty, c, dirty_link);
		c->dirty = 0;
	}
	if (c->state != SIP_CALL_ANSWERED || c->freeing || !c->recorded)
		return;
	if (now)
		hook_call_changed(c);
	else if (!c->dirty) {
		c->dirty = 1;
		TAILQ_INSERT_TAIL(&s->dirty, c, dirty_link);
	}
}

static void call_free(struct call *c)
{
	struct sip *s = c->sip;
	struct leg *leg;

	c->freeing = 1;
	if (c->dirty)
		TAILQ_REMOVE(&s->dirty, c, dirty_link);
	c->dirty = 0;
	hook_call_gone(c);
	TAILQ_REMOVE(&s->calls, c, link);
	for (struct call **cp = &s->call_table[call_bucket(c->id)]; *cp; cp = &(*cp)->hnext)
		if (*cp == c) {
			*cp = c->hnext;
			break;
		}
	metric_dec(METRIC_CALLS_ACTIVE);
	msg_destroy(c->held_answer);
	c->held_answer = NULL;
	if (c->max_timer)
		su_timer_destroy(c->max_timer);
	while (!LIST_EMPTY(&c->ctxs))
		ctx_free(LIST_FIRST(&c->ctxs));
	SLIST_FOREACH(leg, &c->legs, link)
	leg_release(leg);
	LOG_INFO("call", "%s: ended", c->id);
	su_home_unref(c->home);
	b2bua_check_done(s);
}

static int leg_alive(const struct leg *leg)
{
	return leg && leg->dlg && !leg->terminated;
}

/* Requests relayed from a leg whose dialog is over: their senders get 481 now. */
static void leg_drop_relays(struct leg *leg)
{
	struct ctx *x;

	LIST_FOREACH(x, &leg->call->ctxs, link)
	if (x->from == leg && x->irq) {
		sip_reply(x->irq, SIP_481_NO_TRANSACTION, TAG_END());
		x->irq = NULL;
	}
}

/* The dialog of one leg is over; the call goes when nothing is left of it. */
void call_leg_terminated(struct leg *leg)
{
	struct call *c = leg->call;
	struct leg *l;

	if (leg->terminated || c->freeing)
		return;
	leg->terminated = 1;
	leg_drop_relays(leg);
	if (hook_leg_terminated(c, leg))
		return;
	su_home_ref(c->home);
	if (leg == c->near || leg == c->far) {
		if (c->state != SIP_CALL_ENDING)
			call_end(c, 0, NULL);
	}
	SLIST_FOREACH(l, &c->legs, link)
	if (leg_alive(l)) {
		su_home_unref(c->home);
		return;
	}
	if (!c->freeing)
		call_free(c);
	su_home_unref(c->home);
}
