/* The tables of hooks that features registered, and the core's calls into them. */
#include "sip/b2bua.h"

int sip_call_hooks_add(struct sip *s, const struct sip_call_hooks *h, void *arg)
{
	if (s->nhooks >= SIP_HOOKS_MAX)
		return ENOSPC;
	s->hooks[s->nhooks].h = h;
	s->hooks[s->nhooks].arg = arg;
	s->nhooks++;
	return 0;
}

void *sip_call_hooks_arg(struct sip *s, const struct sip_call_hooks *h)
{
	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h == h)
			return s->hooks[i].arg;
	return NULL;
}

int sip_call_slot_new(struct sip *s)
{
	if (s->nslots >= SIP_CALL_SLOTS)
		return -1;
	return (int)s->nslots++;
}

int hook_invite(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->invite && h->invite(s->hooks[i].arg, s, irq, sip, req))
			return 1;
	}
	return 0;
}

int hook_invite_response(struct call *c, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->invite_response &&
		    h->invite_response(s->hooks[i].arg, c, leg, status, phrase, sip))
			return 1;
	}
	return 0;
}

int hook_ack(struct call *c, struct leg *leg, const sip_t *sip)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->ack && h->ack(s->hooks[i].arg, c, leg, sip))
			return 1;
	}
	return 0;
}

int hook_leg_left(struct call *c, struct leg *leg)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->leg_left && h->leg_left(s->hooks[i].arg, c, leg))
			return 1;
	}
	return 0;
}

int hook_leg_terminated(struct call *c, struct leg *leg)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->leg_terminated && h->leg_terminated(s->hooks[i].arg, c, leg))
			return 1;
	}
	return 0;
}

void hook_call_active(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->call_active)
			h->call_active(s->hooks[i].arg, c);
	}
}

void hook_call_ending(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->call_ending)
			h->call_ending(s->hooks[i].arg, c);
	}
}

void hook_call_gone(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->call_gone)
			h->call_gone(s->hooks[i].arg, c);
	}
}

int hook_refer(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->refer && h->refer(s->hooks[i].arg, s, leg, irq, sip, req))
			return 1;
	}
	return 0;
}

int hook_message(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->message && h->message(s->hooks[i].arg, s, leg, irq, sip, req))
			return 1;
	}
	return 0;
}

int hook_info(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->info && h->info(s->hooks[i].arg, s, leg, irq, sip, req))
			return 1;
	}
	return 0;
}

void hook_stop(struct sip *s)
{
	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h->stop)
			s->hooks[i].h->stop(s->hooks[i].arg, s);
	s->nhooks = 0;
}

void hook_call_changed(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h->call_changed)
			s->hooks[i].h->call_changed(s->hooks[i].arg, c);
}

int hook_unknown_dialog(struct sip *s, nta_incoming_t *irq, const sip_t *sip)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->unknown_dialog && h->unknown_dialog(s->hooks[i].arg, s, irq, sip))
			return 1;
	}
	return 0;
}

int hook_call_answering(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->call_answering && h->call_answering(s->hooks[i].arg, c))
			return 1;
	}
	return 0;
}

void hook_call_restored(struct call *c)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h->call_restored)
			s->hooks[i].h->call_restored(s->hooks[i].arg, c);
}

int hook_sdp(struct call *c, struct leg *from, struct leg *to, int offer, const char *body,
             size_t len, struct sip_sdp_wait *w)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->sdp && h->sdp(s->hooks[i].arg, c, from, to, offer, body, len, w))
			return 1;
	}
	return 0;
}

int hook_has_sdp(struct sip *s)
{
	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h->sdp)
			return 1;
	return 0;
}

int hook_reinvite(struct call *c, struct leg *leg, nta_incoming_t *irq, const sip_t *sip)
{
	struct sip *s = c->sip;

	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->reinvite && h->reinvite(s->hooks[i].arg, c, leg, irq, sip))
			return 1;
	}
	return 0;
}

void hook_registered(struct sip *s, const sip_t *req, const sip_t *resp, const char *flow)
{
	for (unsigned i = 0; i < s->nhooks; i++)
		if (s->hooks[i].h->registered)
			s->hooks[i].h->registered(s->hooks[i].arg, s, req, resp, flow);
}

int hook_publish(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	for (unsigned i = 0; i < s->nhooks; i++) {
		const struct sip_call_hooks *h = s->hooks[i].h;

		if (h->publish && h->publish(s->hooks[i].arg, s, irq, sip, req))
			return 1;
	}
	return 0;
}
