/* Confirming: the yes/no question to A and/or C by MESSAGE or SMS, and their answers. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include "move/move_int.h"

static int confirmed(const struct move *m)
{
	return (!m->need_near || m->yes_near) && (!m->need_far || m->yes_far) &&
	       (!m->need_scans || (m->scan_near && m->scan_new));
}

static void ask(struct move *m, struct leg *leg, int sms, const char *number)
{
	struct sip_hooks *h = m->sip->conf.hooks;
	char text[512], who[200] = "", claim[80], *p;
	const char *from = m->taken_from;

	/* What the new device says of itself is its own choice: show it as a claim, with the
	 * address it came from, and nothing that could pass for another instruction. */
	if (m->taken_by) {
		snprintf(claim, sizeof(claim), "%s", m->taken_by);
		for (p = claim; *p; p++)
			if (!isprint((unsigned char)*p))
				*p = '?';
		if (!strncmp(from, "ip:", 3))
			from += 3;
		snprintf(who, sizeof(who), " (it says it is %s%s%.60s)", claim,
		         *from ? ", from " : "", from);
	}
	if (sms)
		snprintf(text, sizeof(text), "Move this call to a new device%s? Reply yes or no.",
		         who);
	else
		snprintf(
		    text, sizeof(text),
		    "Move this call to a new device%s? Reply yes or no (in a new chat: yes %s or "
		    "no %s).",
		    who, m->nonce, m->nonce);
	if (sms) {
		if (!h || !h->sms_send || !number[0] ||
		    h->sms_send(h->arg, number, text, ++move_stack(m->sip)->sms_seq)) {
			move_fail(m, 480, "cannot send the confirmation SMS to %s",
			          number[0] ? number : "(no number)");
			return;
		}
		m->sms_ref[leg == m->call->far] = move_stack(m->sip)->sms_seq;
		move_event(m, "ask", "SMS to %s", number);
		return;
	}
	move_leg_message(leg, "text/plain;charset=utf-8", text, strlen(text));
	move_event(m, "ask", "MESSAGE to %s", leg->uri ? leg->uri : call_side(leg));
}

void move_after_redeem(struct move *m)
{
	struct sip *s = m->sip;
	struct call *c = m->call;

	m->need_near = s->conf.confirm == SIP_CONFIRM_NEAR || s->conf.confirm == SIP_CONFIRM_BOTH;
	m->need_far = s->conf.confirm == SIP_CONFIRM_FAR || s->conf.confirm == SIP_CONFIRM_BOTH;
	m->need_scans = s->conf.scans_both;
	if (confirmed(m)) {
		move_go(m);
		return;
	}
	move_to(m, MOVE_CONFIRMING, "the policy asks for answers or images");
	su_timer_set_interval(m->timer, move_offer_expired, m,
	                      (su_duration_t)s->conf.confirm_timeout * 1000);
	if (m->need_near && !m->yes_near)
		ask(m, c->near, s->conf.confirm_sms_near, m->near_number);
	if (m->phase == MOVE_CONFIRMING && m->need_far && !m->yes_far)
		ask(m, c->far, s->conf.confirm_sms_far, m->far_number);
	if (m->need_scans && !(m->scan_near && m->scan_new))
		move_event(m, "scans", "waiting for images from %s%s%s", m->scan_near ? "" : "near",
		           !m->scan_near && !m->scan_new ? " and " : "", m->scan_new ? "" : "new");
}

void move_check_confirmed(struct move *m)
{
	if (m->phase == MOVE_CONFIRMING && confirmed(m)) {
		su_timer_reset(m->timer);
		move_go(m);
	}
}

/* Splits "yes", "no 12345678", ... into the word (lower case) and what follows it (trimmed). */
static int answer_words(const char *body, size_t len, char word[8], char rest[16])
{
	size_t n = 0, r = 0;

	while (len && isspace((unsigned char)*body))
		body++, len--;
	while (len && isspace((unsigned char)body[len - 1]))
		len--;
	for (; n < len && !isspace((unsigned char)body[n]); n++) {
		if (n + 1 >= 8)
			return -1;
		word[n] = (char)tolower((unsigned char)body[n]);
	}
	word[n] = 0;
	while (n < len && isspace((unsigned char)body[n]))
		n++;
	for (; n < len; n++) {
		if (r + 1 >= 16)
			return -1;
		rest[r++] = body[n];
	}
	rest[r] = 0;
	return 0;
}

/*
 * yes or no from one side; 1 if it was an answer this move waited for. Each side answers
 * once. An answer that did not come on the asked party's own dialog (a MESSAGE out of dialog,
 * whose From anyone can write) counts only with the question's nonce.
 */
int move_answer(struct move *m, int near, const char *body, size_t len, int in_dialog)
{
	char word[8], rest[16];
	int yes;

	if (answer_words(body, len, word, rest))
		return 0;
	if (!strcmp(word, "yes") || !strcmp(word, "y"))
		yes = 1;
	else if (!strcmp(word, "no") || !strcmp(word, "n"))
		yes = 0;
	else
		return 0;
	if (m->phase != MOVE_CONFIRMING || !(near ? m->need_near : m->need_far) ||
	    (near ? m->answered_near : m->answered_far))
		return 0;
	if (rest[0] &&
	    (strlen(rest) != MOVE_NONCE_LEN || CRYPTO_memcmp(rest, m->nonce, MOVE_NONCE_LEN)))
		return 0;
	if (!in_dialog && !rest[0])
		return 0;
	if (near)
		m->answered_near = 1;
	else
		m->answered_far = 1;
	metric_inc(METRIC_CONFIRMS_TOTAL);
	move_event(m, "answer", "%s said %s", near ? "near" : "far", yes ? "yes" : "no");
	if (!yes) {
		move_fail(m, 603, "%s declined", near ? "the near party" : "the far party");
		return 1;
	}
	if (near)
		m->yes_near = 1;
	else
		m->yes_far = 1;
	move_check_confirmed(m);
	return 1;
}

/* Numbers compare as their digits: "+1 555-0100" is "15550100". */
static int same_number(const char *a, const char *b)
{
	for (;;) {
		while (*a && !isdigit((unsigned char)*a))
			a++;
		while (*b && !isdigit((unsigned char)*b))
			b++;
		if (*a != *b)
			return 0;
		if (!*a)
			return 1;
		a++, b++;
	}
}

int sip_sms_reply(struct sip *s, const char *number, const char *body, const char *message_id)
{
	struct move_stack *ms = move_stack(s);
	char want[32];

	if (!number || !body)
		return EINVAL;
	if (message_id && *message_id) {
		/* A gateway may deliver a message twice; a replay must not answer again. */
		for (unsigned i = 0; i < sizeof(ms->sms_seen) / sizeof(ms->sms_seen[0]); i++)
			if (!strncmp(ms->sms_seen[i], message_id, sizeof(ms->sms_seen[i]) - 1))
				return EALREADY;
		snprintf(ms->sms_seen[ms->sms_seen_next], sizeof(ms->sms_seen[0]), "%s",
		         message_id);
		ms->sms_seen_next =
		    (ms->sms_seen_next + 1) % (sizeof(ms->sms_seen) / sizeof(ms->sms_seen[0]));
	}
	size_t n = 0;
	for (const char *p = number; *p && n + 1 < sizeof(want); p++)
		if (isdigit((unsigned char)*p))
			want[n++] = *p;
	want[n] = 0;
	if (!n)
		return EINVAL;
	for (struct move *m = LIST_FIRST(&ms->moves); m; m = LIST_NEXT(m, link)) {
		if (m->phase != MOVE_CONFIRMING)
			continue;
		if (m->need_near && s->conf.confirm_sms_near && same_number(m->near_number, want))
			return move_answer(m, 1, body, strlen(body), 1) ? 0 : EINVAL;
		if (m->need_far && s->conf.confirm_sms_far && same_number(m->far_number, want))
			return move_answer(m, 0, body, strlen(body), 1) ? 0 : EINVAL;
	}
	return ENOENT;
}

void sip_sms_result(struct sip *s, unsigned long ref, int ok)
{
	for (struct move *m = LIST_FIRST(&move_stack(s)->moves); m; m = LIST_NEXT(m, link))
		if (m->sms_ref[0] == ref || m->sms_ref[1] == ref) {
			if (ok)
				move_event(m, "sms", "the gateway took the SMS");
			else if (m->phase == MOVE_CONFIRMING)
				move_fail(m, 480,
				          "the SMS gateway did not take the confirmation SMS");
			return;
		}
}
