/*
 * DTMF feature codes in a call: the move's ([move] feature_code) and those the features beside
 * it add (move_dtmf_add). Digits come as SIP INFO (application/dtmf-relay or application/dtmf)
 * on either leg. A code that is the start of a longer one ("*8" and "*81") waits up to
 * DTMF_WAIT_MS for the next digit before it counts.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "move/move_int.h"
#include "util/log.h"

#define DTMF_WAIT_MS 1500
#define DTMF_GAP_US  3000000LL /* digits further apart do not make one code */

struct dtmf_code {
	char code[12];
	unsigned sides; /* MOVE_DTMF_NEAR | MOVE_DTMF_FAR */
	move_dtmf_h *fn;
	void *arg;
};

/* A code heard that a longer one starts with: it counts when no further digit comes. */
struct dtmf_wait {
	LIST_ENTRY(dtmf_wait) link;
	struct move_stack *ms;
	char call_id[33];
	int near; /* which leg of the call */
	int code; /* index in ms->dtmf, or -1 for the move's feature code */
	char source[STORE_SOURCE_MAX];
	su_timer_t *timer;
};

int move_dtmf_add(struct sip *s, const char *code, unsigned sides, move_dtmf_h *fn, void *arg)
{
	struct move_stack *ms = move_stack(s);
	struct dtmf_code *t;

	if (!ms || !code || !*code || strlen(code) >= sizeof(t->code) || !fn || !sides)
		return EINVAL;
	if (strspn(code, "0123456789*#ABCDabcd") != strlen(code))
		return EINVAL;
	for (unsigned i = 0; i < ms->ndtmf; i++)
		if (!strcmp(ms->dtmf[i].code, code) && (ms->dtmf[i].sides & sides))
			return EEXIST;
	t = realloc(ms->dtmf, (ms->ndtmf + 1) * sizeof(*t));
	if (!t)
		return ENOMEM;
	ms->dtmf = t;
	t += ms->ndtmf++;
	memset(t, 0, sizeof(*t));
	strcpy(t->code, code);
	t->sides = sides;
	t->fn = fn;
	t->arg = arg;
	return 0;
}

/* The move's own code: a move asked by the near device. */
static void feature_heard(struct leg *leg, const char *source)
{
	/* The core calls this once the INFO is answered: our code MESSAGE never meets it still
	 * open (a phone answers that 491). */
	if (move_start_on(leg->call, source, NULL, NULL))
		LOG_INFO("move", "call %s: feature code %s, but the call cannot move now",
		         leg->call->id, leg->call->sip->conf.move_feature);
}

static const char *code_text(struct move_stack *ms, struct sip *s, int i)
{
	return i < 0 ? s->conf.move_feature : ms->dtmf[i].code;
}

static int code_on(struct move_stack *ms, struct sip *s, int i, int near)
{
	if (i < 0)
		return near && s->conf.move_feature && *s->conf.move_feature;
	return (ms->dtmf[i].sides & (near ? MOVE_DTMF_NEAR : MOVE_DTMF_FAR)) != 0;
}

static void fire(struct move_stack *ms, struct leg *leg, int i, const char *source)
{
	leg->dtmf_len = 0;
	leg->dtmf[0] = 0;
	if (i < 0)
		feature_heard(leg, source);
	else
		ms->dtmf[i].fn(ms->dtmf[i].arg, leg, ms->dtmf[i].code, source);
}

static void wait_free(struct dtmf_wait *w)
{
	LIST_REMOVE(w, link);
	su_timer_destroy(w->timer);
	free(w);
}

static struct dtmf_wait *wait_of(struct move_stack *ms, const struct leg *leg)
{
	struct dtmf_wait *w;

	LIST_FOREACH(w, &ms->dtmf_waits, link)
	if (w->near == (leg == leg->call->near) && !strcmp(w->call_id, leg->call->id))
		return w;
	return NULL;
}

static void wait_over(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	struct dtmf_wait *w = arg;
	struct move_stack *ms = w->ms;
	struct call *c = call_find(ms->sip, w->call_id);
	struct leg *leg = c ? (w->near ? c->near : c->far) : NULL;
	int i = w->code;
	char source[STORE_SOURCE_MAX];

	memcpy(source, w->source, sizeof(source));
	wait_free(w);
	if (leg && i < (int)ms->ndtmf)
		fire(ms, leg, i, source);
}

/* 1 if some code for this side is longer than the digits' tail tail and starts with it. */
static int longer_starts_with(struct move_stack *ms, struct sip *s, int near, const char *tail)
{
	size_t n = strlen(tail);

	for (int i = -1; i < (int)ms->ndtmf; i++) {
		const char *k = code_text(ms, s, i);
		if (code_on(ms, s, i, near) && strlen(k) > n && !strncmp(k, tail, n))
			return 1;
	}
	return 0;
}

/* The longest code for this side the digits end with, -2 if none. */
static int longest_match(struct move_stack *ms, struct sip *s, int near, const char *digits)
{
	size_t dl = strlen(digits), best_len = 0;
	int best = -2;

	for (int i = -1; i < (int)ms->ndtmf; i++) {
		const char *k = code_text(ms, s, i);
		size_t kl = strlen(k);
		if (code_on(ms, s, i, near) && kl && kl <= dl && kl > best_len &&
		    !strcmp(digits + dl - kl, k)) {
			best = i;
			best_len = kl;
		}
	}
	return best;
}

/* The digit an INFO carries, or 0. */
static char info_digit(const sip_t *sip)
{
	const sip_payload_t *pl = sip->sip_payload;
	const char *t = sip->sip_content_type ? sip->sip_content_type->c_type : "";
	char digit = 0;
	size_t n;

	if (!pl || !pl->pl_data)
		return 0;
	if (!strcasecmp(t, "application/dtmf-relay")) {
		const char *p = memmem(pl->pl_data, pl->pl_len, "Signal", 6);
		const char *end = pl->pl_data + pl->pl_len;
		if (!p)
			return 0;
		for (p += 6; p < end && (*p == ' ' || *p == '='); p++)
			;
		digit = p < end ? *p : 0;
	} else if (!strcasecmp(t, "application/dtmf")) {
		for (n = 0; n < pl->pl_len && isspace((unsigned char)pl->pl_data[n]); n++)
			;
		digit = n < pl->pl_len ? pl->pl_data[n] : 0;
		if (isdigit((unsigned char)digit) && n + 1 < pl->pl_len &&
		    isdigit((unsigned char)pl->pl_data[n + 1])) {
			/* RFC 2833 event numbers: 10 is '*', 11 is '#'. */
			int ev = atoi(pl->pl_data + n);
			digit = ev == 10 ? '*' : ev == 11 ? '#' : (char)('0' + ev % 10);
		}
	}
	return digit && strchr("0123456789*#ABCDabcd", digit) ? digit : 0;
}

/* DTMF as SIP INFO, relayed and answered (irq NULL): 1 if it completed a code. */
int move_info(struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	struct move_stack *ms = move_stack(s);
	struct dtmf_wait *w;
	char digit = info_digit(sip);
	char source[STORE_SOURCE_MAX];
	long long now = move_now_us();
	int near, i;

	if (!ms || !leg || !leg->call || (leg != leg->call->near && leg != leg->call->far) ||
	    !digit)
		return 0;
	near = leg == leg->call->near;
	if (now - leg->dtmf_at > DTMF_GAP_US)
		leg->dtmf_len = 0;
	leg->dtmf_at = now;
	if (leg->dtmf_len + 1 >= sizeof(leg->dtmf)) {
		memmove(leg->dtmf, leg->dtmf + 1, sizeof(leg->dtmf) - 2);
		leg->dtmf_len--;
	}
	leg->dtmf[leg->dtmf_len++] = digit;
	leg->dtmf[leg->dtmf_len] = 0;
	move_source_of(req, source, sizeof(source));

	w = wait_of(ms, leg);
	i = longest_match(ms, s, near, leg->dtmf);
	if (w && i == -2) {
		/* A code was heard and a longer one may still come: wait while the digits since
		 * then still start one. */
		const char *k = code_text(ms, s, w->code);
		const char *p = strstr(leg->dtmf, k);
		if (p && longer_starts_with(ms, s, near, p))
			return 0;
		i = w->code;
		wait_free(w);
		fire(ms, leg, i, source);
		return 1;
	}
	if (w)
		wait_free(w);
	if (i == -2)
		return 0;
	if (longer_starts_with(ms, s, near, code_text(ms, s, i))) {
		w = calloc(1, sizeof(*w));
		if (w) {
			w->ms = ms;
			w->near = near;
			w->code = i;
			strcpy(w->call_id, leg->call->id);
			memcpy(w->source, source, sizeof(source));
			w->timer = su_timer_create(su_root_task(s->root), DTMF_WAIT_MS);
			if (w->timer && !su_timer_set(w->timer, wait_over, w)) {
				LIST_INSERT_HEAD(&ms->dtmf_waits, w, link);
				return 0;
			}
			su_timer_destroy(w->timer);
			free(w);
		}
	}
	fire(ms, leg, i, source);
	return 1;
}

void move_dtmf_free(struct move_stack *ms)
{
	while (!LIST_EMPTY(&ms->dtmf_waits))
		wait_free(LIST_FIRST(&ms->dtmf_waits));
	free(ms->dtmf);
	ms->dtmf = NULL;
	ms->ndtmf = 0;
}
