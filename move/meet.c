/*
 * A call becomes a meeting (*9, MESSAGE "meet", POST /v1/calls/{id}/meeting): both parties are
 * sent a join link made from [meet] url_template with a room of 128 random bits, by MESSAGE in
 * their dialog or, with [meet] channel = sms, by SMS to a party whose URI holds a number.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/context_int.h"

/* The template with every {room} replaced. */
static int link_of(const char *tpl, const char *room, char *out, size_t len)
{
	size_t o = 0, rl = strlen(room);

	for (const char *p = tpl; *p; p++) {
		if (!strncmp(p, "{room}", 6)) {
			if (o + rl >= len)
				return ENAMETOOLONG;
			memcpy(out + o, room, rl);
			o += rl;
			p += 5;
			continue;
		}
		if (o + 1 >= len)
			return ENAMETOOLONG;
		out[o++] = *p;
	}
	out[o] = '\0';
	return 0;
}

static void tell(struct context_stack *cs, struct call *c, struct leg *leg, const char *link)
{
	struct sip *s = cs->sip;
	const struct sip_hooks *h = s->conf.hooks;
	char number[32], text[700];

	if (!leg || leg->terminated || leg->ending)
		return;
	snprintf(text, sizeof(text), "Join the meeting: %s", link);
	move_uri_number(leg->uri, number, sizeof(number));
	if (cs->meet_sms && number[0] && h && h->sms_send &&
	    !h->sms_send(h->arg, number, text, ++move_stack(s)->sms_seq)) {
		LOG_INFO("meet", "%s: join link to the %s party by SMS to %s", c->id,
		         leg == c->near ? "near" : "far", number);
		return;
	}
	move_leg_message(leg, "text/plain", text, strlen(text));
	LOG_INFO("meet", "%s: join link to the %s party by MESSAGE", c->id,
	         leg == c->near ? "near" : "far");
}

int move_meet(struct sip *s, const char *call_id, char *link, size_t len)
{
	struct context_stack *cs = context_stack_of(s);
	struct call *c = call_id ? call_find(s, call_id) : NULL;
	struct cctx *x;
	int again, err;

	if (!cs || !c || c->state != SIP_CALL_ANSWERED || !c->near || !c->far)
		return ENOENT;
	if (!cs->url_template)
		return ENOTSUP;
	x = context_of(c, 1);
	if (!x)
		return ENOMEM;
	again = x->room[0] != '\0';
	if (!again && code_secret_make(x->room, sizeof(x->room)))
		return ENOMEM;
	err = link_of(cs->url_template, x->room, link, len);
	if (err)
		return err;
	/* Asked again: the same room, the links sent again. */
	tell(cs, c, c->near, link);
	tell(cs, c, c->far, link);
	/* The link holds the room's secret: not for the log. */
	LOG_INFO("meet", "%s: %s: join links sent", c->id,
	         again ? "meeting asked again" : "a meeting");
	if (cs->conference_uri) {
		char uri[256];

		/* The bridge's address may name the room too. */
		if (!link_of(cs->conference_uri, x->room, uri, sizeof(uri)))
			context_bridge_start(cs, c, x, uri);
	}
	return again ? EALREADY : 0;
}
