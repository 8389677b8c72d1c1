#include <stdio.h>
#include <string.h>

#include <openssl/rand.h>

#include "sip/b2bua.h"

static void leg_init(struct leg *leg, struct call *c, int near)
{
	leg->b.kind = BOUND_LEG;
	leg->call = c;
	leg->near = near;
	leg->relays_tail = &leg->relays;
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
	leg_init(&c->near, c, 1);
	leg_init(&c->far, c, 0);
	c->created = time(NULL);
	c->prev = s->calls_tail;
	if (s->calls_tail)
		s->calls_tail->next = c;
	else
		s->calls = c;
	s->calls_tail = c;
	s->stats.calls_total++;
	s->stats.calls_active++;
	*cp = c;
	return 0;
}

struct leg *call_other(struct leg *leg)
{
	struct call *c = leg->call;

	return leg == &c->near ? &c->far : &c->near;
}

const char *call_side(const struct leg *leg)
{
	return leg->near ? "near" : "far";
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

	while ((r = leg->relays)) {
		leg->relays = r->next;
		nua_destroy_event(r->saved);
		su_free(leg->call->home, r);
	}
	leg->relays_tail = &leg->relays;
}

/* End one leg by the means its state allows. */
static void leg_end(struct leg *leg, const char *reason)
{
	if (!leg->nh || leg->terminated || leg->ending)
		return;
	leg->ending = 1;
	if (leg->answered || (leg == leg->call->in && leg->call->state == SIP_CALL_ANSWERED))
		nua_bye(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else if (leg == leg->call->out)
		nua_cancel(leg->nh, TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
	else
		nua_respond(leg->nh, SIP_480_TEMPORARILY_UNAVAILABLE,
			    TAG_IF(reason, SIPTAG_REASON_STR(reason)), TAG_END());
}

void call_end(struct call *c, int status, const char *reason)
{
	if (c->state != SIP_CALL_ENDING) {
		LOG_INFO("call", "%s: ending (%d%s%s)", c->id, status, reason ? ": " : "",
			 reason ? reason : "");
		c->state = SIP_CALL_ENDING;
	}
	if (c->max_timer) {
		su_timer_destroy(c->max_timer);
		c->max_timer = NULL;
	}
	leg_end(&c->near, reason);
	leg_end(&c->far, reason);
}

static void call_free(struct call *c)
{
	struct sip *s = c->sip;

	if (c->prev)
		c->prev->next = c->next;
	else
		s->calls = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		s->calls_tail = c->prev;
	s->stats.calls_active--;
	if (c->max_timer)
		su_timer_destroy(c->max_timer);
	leg_drop_relays(&c->near);
	leg_drop_relays(&c->far);
	if (c->near.nh) {
		nua_handle_bind(c->near.nh, NULL);
		nua_handle_destroy(c->near.nh);
	}
	if (c->far.nh) {
		nua_handle_bind(c->far.nh, NULL);
		nua_handle_destroy(c->far.nh);
	}
	LOG_INFO("call", "%s: ended", c->id);
	su_home_unref(c->home);
	if (s->shutting_down && !s->calls && !s->txns)
		b2bua_stop(s);
}

/* The stack has let go of one dialog; the call goes when both have. */
void call_leg_terminated(struct leg *leg)
{
	struct call *c = leg->call;
	struct leg *other = call_other(leg);

	leg->terminated = 1;
	leg_drop_relays(leg);
	if (!other->nh || other->terminated) {
		call_free(c);
		return;
	}
	call_end(c, 0, NULL);
}
