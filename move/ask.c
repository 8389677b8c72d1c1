/* What the phones send: asking for a move (REFER, MESSAGE), answers, images. */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sofia-sip/msg_addr.h>

#include "move/move_int.h"

static int is_image(const sip_t *sip)
{
	const char *t = sip->sip_content_type ? sip->sip_content_type->c_type : NULL;

	return t && body_pl(sip) && (!strcasecmp(t, "image/png") || !strcasecmp(t, "image/jpeg"));
}

const char *move_body_word(const sip_t *sip, const char *word, size_t *restp)
{
	const sip_payload_t *pl = body_pl(sip);
	const char *p;
	size_t len, n = strlen(word);

	if (!pl)
		return NULL;
	p = pl->pl_data;
	len = pl->pl_len;
	while (len && isspace((unsigned char)*p))
		p++, len--;
	while (len && isspace((unsigned char)p[len - 1]))
		len--;
	if (len < n || strncasecmp(p, word, n) || (len > n && !isspace((unsigned char)p[n])))
		return NULL;
	for (p += n, len -= n; len && isspace((unsigned char)*p); p++, len--)
		;
	*restp = len;
	return p;
}

int move_body_is(const sip_t *sip, const char *word)
{
	size_t n;

	return move_body_word(sip, word, &n) && !n;
}

/* A move asked on the near leg that move_start_on() refused for now (EAGAIN): 0 when it waits
 * for the caller's ACK, else why it cannot. */
static int ask_or_wait(struct leg *leg, nta_incoming_t *irq, const char *source, int refer,
                       const char *event)
{
	struct call *c = leg->call;
	struct move_stack *ms = move_stack(c->sip);
	struct early_ask *e;

	if (!c->ack_pending || c->state != SIP_CALL_ANSWERED)
		return EAGAIN;
	LIST_FOREACH(e, &ms->early, link)
	if (e->call == c)
		return EBUSY; /* one is waiting already */
	e = calloc(1, sizeof(*e));
	if (!e)
		return ENOMEM;
	e->call = c;
	e->leg = leg;
	e->irq = irq;
	e->refer = refer;
	snprintf(e->event, sizeof(e->event), "%s", event ? event : "");
	snprintf(e->source, sizeof(e->source), "%s", source);
	LIST_INSERT_HEAD(&ms->early, e, link);
	LOG_INFO("move", "%s: move asked before the caller's ACK: waiting for it", c->id);
	return 0;
}

static void refer_answer(struct leg *leg, nta_incoming_t *irq, int err, const char *event)
{
	if (err) {
		sip_reply(irq, err == EBUSY ? 491 : 488,
		          err == EBUSY ? "A Move Is Under Way" : "Call Cannot Move Now", TAG_END());
		return;
	}
	sip_reply(irq, SIP_202_ACCEPTED, TAG_END());
	if (call_move(leg->call)) {
		call_move(leg->call)->refer_leg = leg;
		free(call_move(leg->call)->refer_event);
		call_move(leg->call)->refer_event = strdup(event);
	}
}

/*
 * The call of the moves asked early is up (up: the ACK came) or gone (every one then gets 488;
 * c NULL: the stack is going, every one of every call gets 503).
 */
void move_early_asks_run(struct sip *s, struct call *c, int up)
{
	struct move_stack *ms = move_stack(s);
	struct early_ask *e, *next;

	if (!ms)
		return;
	for (e = LIST_FIRST(&ms->early); e; e = next) {
		next = LIST_NEXT(e, link);
		if (c && e->call != c)
			continue;
		LIST_REMOVE(e, link);
		if (!c)
			sip_reply(e->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		else if (!up || e->leg != c->near || e->leg->terminated)
			sip_reply(e->irq, 488, "Call Cannot Move Now", TAG_END());
		else if (e->refer)
			refer_answer(e->leg, e->irq, move_start_on(c, e->source, NULL, NULL),
			             e->event);
		else {
			int err = move_start_on(c, e->source, NULL, NULL);

			sip_reply(e->irq, err ? 488 : 200, err ? "Call Cannot Move Now" : "OK",
			          TAG_END());
		}
		free(e);
	}
}

int move_refer_ours(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip,
                    msg_t *req, const char *user, char source[STORE_SOURCE_MAX], char event[40])
{
	const sip_refer_to_t *rt = sip->sip_refer_to;

	if (!rt || !rt->r_url->url_user || strcasecmp(rt->r_url->url_user, user) ||
	    !move_for_us(s, rt->r_url))
		return 0;
	if (!leg || leg != leg->call->near) {
		/* Our URI: never passed on (there is no call of the sender's to move). */
		sip_reply(irq, 403, "No Call To Move Here", TAG_END());
		return -1;
	}
	/* RFC 3515 2.4.6: NOTIFYs for a REFER after the first carry its CSeq as id. */
	snprintf(event, 40, "refer;id=%u", sip->sip_cseq->cs_seq);
	move_source_of(req, source, STORE_SOURCE_MAX);
	return 1;
}

/*
 * A REFER to sip:move@ in a call: the near device asks for a move; the REFER's implicit
 * subscription (RFC 3515) hears how it goes. Any other REFER is relayed: the PBX transfers.
 */
int move_refer(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	char source[STORE_SOURCE_MAX], event[40];
	int err, ours = move_refer_ours(s, leg, irq, sip, req, "move", source, event);

	if (ours <= 0)
		return ours != 0;
	err = move_start_on(leg->call, source, NULL, NULL);
	if (err == EAGAIN && leg->call->ack_pending) {
		err = ask_or_wait(leg, irq, source, 1, event);
		if (!err)
			return 1; /* answered once the ACK came */
	}
	refer_answer(leg, irq, err, event);
	return 1;
}

static void scan_answered(int err, const struct sip_move_info *info, void *arg)
{
	/* The MESSAGE was answered already; the log line says what the image held. */
}

int move_message(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	struct call *c = leg ? leg->call : NULL;
	char source[STORE_SOURCE_MAX];
	const sip_payload_t *pl = body_pl(sip);
	const url_t *ru = sip->sip_request->rq_url;

	move_source_of(req, source, sizeof(source));
	if (leg && (leg == c->near || leg == c->far) && call_move(c) && pl &&
	    move_answer(call_move(c), leg == c->near, pl->pl_data, pl->pl_len, 1)) {
		sip_reply(irq, SIP_200_OK, TAG_END());
		return 1;
	}
	if (leg && leg == c->near && move_body_is(sip, "move")) {
		int err = move_start_on(c, source, NULL, NULL);

		if (err == EAGAIN && c->ack_pending) {
			err = ask_or_wait(leg, irq, source, 0, NULL);
			if (!err)
				return 1; /* answered once the ACK came */
		}
		sip_reply(irq, err ? 488 : 200, err ? "Call Cannot Move Now" : "OK", TAG_END());
		return 1;
	}
	if (is_image(sip) && (leg ? leg == c->near : move_for_us(s, ru))) {
		su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;
		char *from = leg ? NULL : url_as_string(NULL, sip->sip_from->a_url);
		int err = move_scan_submit(s, pl->pl_data, pl->pl_len, leg ? "near" : "new", from,
		                           leg ? c->id : NULL, NULL, ai ? ai->ai_addr : NULL, irq,
		                           scan_answered, NULL);
		free(from);
		if (err) {
			/* Refused before decoding: nothing to scan, too fast, too big, or busy. */
			int st = err == ENOENT                    ? 480
			         : err == EAGAIN || err == ENOSPC ? 503
			         : err == CODE_ETOOLARGE          ? 413
			         : err == ENOTSUP                 ? 501
			         : err == ENOMEM                  ? 500
			                                          : 415;
			const char *ph = err == ENOENT           ? "No Code On Offer"
			                 : err == EAGAIN         ? "Too Many Images"
			                 : err == ENOSPC         ? "Busy Decoding Images"
			                 : err == CODE_ETOOLARGE ? "Image Too Large"
			                 : err == ENOTSUP        ? "Cannot Read Images Here"
			                 : err == ENOMEM         ? "Out Of Memory"
			                                         : "Not A PNG Or JPEG Image";
			sip_reply(irq, st, ph, TAG_IF(st == 503, SIPTAG_RETRY_AFTER_STR("1")),
			          TAG_END());
		}
		return 1;
	}
	if (!leg && pl) {
		/* An answer from a phone that replies out of dialog: its From names the party, and
		 * only the question's nonce shows it is that party. */
		char *from = url_as_string(NULL, sip->sip_from->a_url);
		int taken = 0;
		for (struct move *m = LIST_FIRST(&move_stack(s)->moves); m && from && !taken;
		     m = LIST_NEXT(m, link)) {
			struct call *mc = m->call;
			if (!mc || m->phase != MOVE_CONFIRMING)
				continue;
			if (mc->near && mc->near->uri && !strcmp(mc->near->uri, from))
				taken = move_answer(m, 1, pl->pl_data, pl->pl_len, 0);
			else if (mc->far && mc->far->uri && !strcmp(mc->far->uri, from))
				taken = move_answer(m, 0, pl->pl_data, pl->pl_len, 0);
			else
				continue;
			if (!taken)
				LOG_INFO("move",
				         "%s: MESSAGE out of dialog from %s (%s) not taken as an "
				         "answer: no nonce, a wrong one, or not asked",
				         m->id, from, source);
		}
		free(from);
		if (taken) {
			sip_reply(irq, SIP_200_OK, TAG_END());
			return 1;
		}
	}
	/* Our own URIs are never passed on: there is nothing behind them (issue 10). */
	if (!leg && ru->url_user && move_for_us(s, ru) &&
	    (!strcasecmp(ru->url_user, "move") || !strncasecmp(ru->url_user, "m.", 2) ||
	     !strncmp(ru->url_user, "*88", 3))) {
		LOG_INFO("move", "MESSAGE out of dialog to %s from %s: not a call of ours",
		         ru->url_user, source);
		sip_reply(irq, 404, "No Call Here: Send move In Your Call", TAG_END());
		return 1;
	}
	return 0;
}
