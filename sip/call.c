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
	struct call *c;
	int i;

	c = su_home_new(sizeof(*c));
	if (!c)
		return ENOMEM;
	if (RAND_bytes(raw, sizeof(raw)) != 1) {
		su_home_unref(c->home);
		return EIO;
	}
	for (i = 0; i < 16; i++)
		snprintf(c->id + 2 * i, 3, "%02x", raw[i]);
	c->sip = s;
	c->created = time(NULL);
	SLIST_INIT(&c->legs);
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
	leg->b.kind = BOUND_LEG;
	leg->call = c;
	leg->near = near;
	leg->incoming = incoming;
	STAILQ_INIT(&leg->relays);
	SLIST_INSERT_HEAD(&c->legs, leg, link);
	return leg;
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

/* nua_respond() keeps the phrase pointer, so the phrase must live as long as the call. */
char *call_copy_phrase(struct call *c, int status, const char *phrase)
{
	const char *std = sip_status_phrase(status);

	if (std)
		return (char *)std;
	return su_strdup(c->home, phrase && *phrase ? phrase : "Unknown");
}

static void leg_drop_relays(struct leg *leg)
{
	struct relay *r;

	while ((r = STAILQ_FIRST(&leg->relays))) {
		STAILQ_REMOVE_HEAD(&leg->relays, link);
		if (r->from_nh)
			nua_destroy_event(r->saved);
		su_free(leg->call->home, r);
	}
}

/* End one leg by the means its state allows. */
void call_leg_end(struct leg *leg, const char *reason)
{
	if (!leg || !leg->nh || leg->terminated || leg->ending)
		return;
	leg->ending = 1;
	if (leg->answered)
		nua_bye(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else if (!leg->incoming)
		nua_cancel(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else
		nua_respond(leg->nh, SIP_480_TEMPORARILY_UNAVAILABLE,
		            TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
}

void call_end(struct call *c, int status, const char *reason)
{
	struct leg *leg;

	if (c->state != SIP_CALL_ENDING) {
		LOG_INFO("call", "%s: ending (%d%s%s)", c->id, status, reason ? ": " : "",
		         reason ? reason : "");
		c->state = SIP_CALL_ENDING;
	}
	if (c->max_timer) {
		su_timer_destroy(c->max_timer);
		c->max_timer = NULL;
	}
	hook_call_ending(c);
	SLIST_FOREACH(leg, &c->legs, link)
	call_leg_end(leg, reason);
}

/*
 * A handle whose call has ended but that still has a request of ours without a final answer.
 * 1.12.11 leaks such a request if the handle is destroyed: wait for the answers.
 */
struct zombie {
	struct bound b;
	LIST_ENTRY(zombie) link;
	struct sip *sip;
	nua_handle_t *nh;
	unsigned pending;
	su_timer_t *timer;
};

static void zombie_free(struct zombie *z)
{
	struct sip *s = z->sip;

	LIST_REMOVE(z, link);
	if (z->timer)
		su_timer_destroy(z->timer);
	if (z->nh) {
		nua_handle_bind(z->nh, NULL);
		nua_handle_destroy(z->nh);
	}
	free(z);
	if (s->shutting_down && b2bua_idle(s))
		b2bua_stop(s);
}

static void zombie_expired(su_root_magic_t *m, su_timer_t *t, void *arg)
{
	zombie_free(arg);
}

void call_zombie_event(struct sip *s, nua_event_t ev, int status, nua_handle_t *nh, struct bound *b)
{
	struct zombie *z = (struct zombie *)b;

	switch (ev) {
	case nua_r_invite:
		if (status >= 200 && status < 300)
			nua_ack(nh, TAG_END());
		/* fall through */
	case nua_r_update:
	case nua_r_info:
	case nua_r_message:
	case nua_r_notify:
	case nua_r_refer:
		if (status >= 200 && z->pending && !--z->pending)
			zombie_free(z);
		break;
	case nua_i_invite:
	case nua_i_message:
	case nua_i_info:
	case nua_i_update:
	case nua_i_refer:
		nua_respond(nh, SIP_481_NO_TRANSACTION, NUTAG_WITH_THIS(s->nua), TAG_END());
		break;
	default:
		break;
	}
}

/* Shutting down, out of patience: answers still awaited (a re-INVITE or BYE to a peer that is
 * gone) must not hold the stack's shutdown up for their transactions' 32 s. */
void call_zombies_drop(struct sip *s)
{
	while (!LIST_EMPTY(&s->zombies))
		zombie_free(LIST_FIRST(&s->zombies));
}

/* After the stack stopped: its handles are gone, forget ours. */
void call_zombies_forget(struct sip *s)
{
	struct zombie *z;

	while ((z = LIST_FIRST(&s->zombies))) {
		LIST_REMOVE(z, link);
		if (z->timer)
			su_timer_destroy(z->timer);
		free(z);
	}
}

static void leg_release(struct leg *leg)
{
	struct sip *s = leg->call->sip;
	struct zombie *z;

	leg_drop_relays(leg);
	if (!leg->nh)
		return;
	z = leg->pending ? calloc(1, sizeof(*z)) : NULL;
	if (z) {
		z->b.kind = BOUND_ZOMBIE;
		z->sip = s;
		z->nh = leg->nh;
		z->pending = leg->pending;
		/* Every transaction is over by 64*T1; then let go regardless. */
		z->timer = su_timer_create(su_root_task(s->root), 0);
		if (z->timer)
			su_timer_set_interval(z->timer, zombie_expired, z, 40000);
		LIST_INSERT_HEAD(&s->zombies, z, link);
		nua_handle_bind(leg->nh, &z->b);
		LOG_DEBUG("call", "%s: %s leg waits for %u answer(s) before it goes", leg->call->id,
		          call_side(leg), leg->pending);
	} else {
		nua_handle_bind(leg->nh, NULL);
		nua_handle_destroy(leg->nh);
	}
	leg->nh = NULL;
}

static void call_free(struct call *c)
{
	struct sip *s = c->sip;
	struct leg *leg;

	hook_call_gone(c);
	TAILQ_REMOVE(&s->calls, c, link);
	for (struct call **cp = &s->call_table[call_bucket(c->id)]; *cp; cp = &(*cp)->hnext)
		if (*cp == c) {
			*cp = c->hnext;
			break;
		}
	metric_dec(METRIC_CALLS_ACTIVE);
	if (c->max_timer)
		su_timer_destroy(c->max_timer);
	SLIST_FOREACH(leg, &c->legs, link)
	leg_release(leg);
	LOG_INFO("call", "%s: ended", c->id);
	su_home_unref(c->home);
	if (s->shutting_down && b2bua_idle(s))
		b2bua_stop(s);
}

static int leg_alive(const struct leg *leg)
{
	return leg && leg->nh && !leg->terminated;
}

/* The stack has let go of one dialog; the call goes when nothing is left of it. */
void call_leg_terminated(struct leg *leg)
{
	struct call *c = leg->call;
	struct leg *l;

	leg->terminated = 1;
	leg_drop_relays(leg);
	if (hook_leg_terminated(c, leg))
		return;
	if (leg == c->near || leg == c->far) {
		if (c->state != SIP_CALL_ENDING)
			call_end(c, 0, NULL);
	} else {
		leg_release(leg); /* a leg that left in a move, or never joined */
	}
	SLIST_FOREACH(l, &c->legs, link)
	if (leg_alive(l))
		return;
	call_free(c);
}
