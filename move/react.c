/*
 * Reactions (issue 14): a party sends an emoji at a position, as a MESSAGE of REACT_CTYPE or a
 * DTMF code of [react] dtmf; the other party (the current near device after a move) gets it
 * as that JSON if it is known to take it, else as a short text, and the call's watch page
 * shows it. And "share <https URL>": the watch page (watch.c) and its link to both parties.
 *
 * Who takes the JSON: a party that sent a reaction MESSAGE itself in this call, or whose
 * INVITE or 2xx answer setting up its dialog listed REACT_CTYPE in Accept. Anyone else (a
 * desk phone) gets text/plain.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <sofia-sip/msg_addr.h>

#include "move/move.h"
#include "move/move_int.h"
#include "move/react_int.h"
#include "util/hash.h"

/* ---- the calls ---- */

static const struct sip_call_hooks react_hooks;

struct react_stack *react_stack(struct sip *s)
{
	return sip_call_hooks_arg(s, &react_hooks);
}

static struct react_call *call_react(struct react_stack *rs, struct call *c, int make)
{
	struct react_call *rc = c->slot[rs->slot];

	if (!rc && make) {
		rc = calloc(1, sizeof(*rc));
		if (!rc)
			return NULL;
		rc->tokens[0] = rc->tokens[1] = rs->conf.burst;
		LIST_INIT(&rc->sent);
		c->slot[rs->slot] = rc;
	}
	return rc;
}

static uint32_t dialog_key(const char *call_id, const char *peer_tag)
{
	return hash_str(call_id ? call_id : "") * 31 + hash_str(peer_tag ? peer_tag : "");
}

static uint32_t leg_key(const struct leg *leg)
{
	return dialog_key(leg->call_id, leg->rtag);
}

static void json_leg_add(struct react_call *rc, uint32_t key)
{
	for (unsigned i = 0; i < rc->njson; i++)
		if (rc->json_legs[i] == key)
			return;
	rc->json_legs[rc->njson++ % REACT_JSON_LEGS] = key;
	if (rc->njson > REACT_JSON_LEGS)
		rc->njson = REACT_JSON_LEGS;
}

static void json_leg_drop(struct react_call *rc, uint32_t key)
{
	for (unsigned i = 0; i < rc->njson; i++)
		if (rc->json_legs[i] == key)
			rc->json_legs[i] = rc->json_legs[--rc->njson];
}

static void send_text(struct leg *to, const char *emoji)
{
	char body[REACT_EMOJI_MAX + 32];

	snprintf(body, sizeof(body), "%s (reaction)", emoji);
	move_leg_message(to, "text/plain;charset=utf-8", body, strlen(body));
}

/*
 * The answer to a JSON reaction: a party that says it takes no such body (415, 488, 606)
 * gets this reaction again as text, and text from then on. Runs only while the call (so rc)
 * lives: the call's end drops the transaction and frees what is left of rc->sent.
 */
static void json_answered(void *arg, struct leg *leg, int status, const char *phrase,
                          const sip_t *sip)
{
	struct react_sent *sent = arg;

	LIST_REMOVE(sent, link);
	if (status == 415 || status == 488 || status == 606) {
		json_leg_drop(sent->rc, leg_key(leg));
		if (leg->dlg && !leg->terminated && !leg->ending)
			send_text(leg, sent->emoji);
		LOG_INFO("react", "call %s: %s answered %d to a reaction's JSON: text from now on",
		         leg->call->id, leg->uri ? leg->uri : "a party", status);
	}
	free(sent);
}

/* A JSON reaction to leg, its emoji kept with the transaction for a late refusal. */
static void send_json(struct react_call *rc, struct leg *to, const char *emoji, double x, double y)
{
	struct react_sent *sent = calloc(1, sizeof(*sent));
	char body[REACT_BODY_MAX + 64];

	if (!sent) {
		send_text(to, emoji);
		return;
	}
	sent->rc = rc;
	snprintf(sent->emoji, sizeof(sent->emoji), "%s", emoji);
	snprintf(body, sizeof(body), "{\"emoji\":\"%s\",\"x\":%.4g,\"y\":%.4g}", emoji, x, y);
	LIST_INSERT_HEAD(&rc->sent, sent, link);
	if (leg_send(to, SIP_METHOD_MESSAGE, json_answered, sent,
	             SIPTAG_CONTENT_TYPE_STR(REACT_CTYPE), SIPTAG_PAYLOAD_STR(body), TAG_END())) {
		LIST_REMOVE(sent, link);
		free(sent);
	}
}

static int takes_json(struct react_call *rc, const struct leg *leg)
{
	uint32_t key = leg_key(leg);

	for (unsigned i = 0; i < rc->njson; i++)
		if (rc->json_legs[i] == key)
			return 1;
	return 0;
}

static int accepts_ours(const sip_t *sip)
{
	for (const sip_accept_t *a = sip ? sip->sip_accept : NULL; a; a = a->ac_next)
		if (a->ac_type && !strcasecmp(a->ac_type, REACT_CTYPE))
			return 1;
	return 0;
}

/* A token from the side's bucket (near 0, far 1); 0 when it is empty. */
static int rate_take(struct react_stack *rs, struct react_call *rc, int side)
{
	long long now = move_now_us();
	double t = rc->tokens[side] + (double)(now - rc->stamp_us[side]) / 1e6 * rs->conf.rate;

	rc->stamp_us[side] = now;
	rc->tokens[side] = t > rs->conf.burst ? rs->conf.burst : t;
	if (rc->tokens[side] < 1)
		return 0;
	rc->tokens[side] -= 1;
	return 1;
}

/*
 * Whether leg may send c a reaction (or a share) now, charging its side's rate first, before
 * anything it sent is parsed: 0 with *rcp; EPERM leg is not one of the call's two sides now,
 * EAGAIN the side is over its rate (logged, limited), ENOMEM.
 */
static int react_admit(struct react_stack *rs, struct call *c, struct leg *from,
                       struct react_call **rcp)
{
	struct react_call *rc;
	int side;

	if (from != c->near && from != c->far)
		return EPERM;
	rc = call_react(rs, c, 1);
	if (!rc)
		return ENOMEM;
	side = from == c->far;
	if (!rate_take(rs, rc, side)) {
		log_limited(
		    &rs->limited, LOG_LEVEL_INFO, "react",
		    "call %s: reaction or share from the %s side over [react] rate: dropped", c->id,
		    side ? "far" : "near");
		return EAGAIN;
	}
	*rcp = rc;
	return 0;
}

/*
 * A reaction from leg (admitted by react_admit): to the other side of c (the current near
 * device, or the far party) and to the call's watch page.
 */
static void react_send(struct call *c, struct react_call *rc, struct leg *from, const char *emoji,
                       double x, double y, const char *how)
{
	int side = from == c->far;
	struct leg *to = side ? c->near : c->far;
	int json = to && takes_json(rc, to);

	if (to && to->dlg && !to->terminated && !to->ending && c->state == SIP_CALL_ANSWERED) {
		if (json)
			send_json(rc, to, emoji, x, y);
		else
			send_text(to, emoji);
	}
	if (rc->watch)
		watch_reaction(rc->watch, emoji, x, y);
	LOG_INFO("react", "call %s: %s from the %s side by %s, to %s as %s", c->id, emoji,
	         side ? "far" : "near", how, to && to->uri ? to->uri : "nobody",
	         json ? "JSON" : "text");
}

/* Both sides get the watch page's link (or only what now plays, for a URL changed). */
static void share_tell(struct call *c, const char *link, const char *url)
{
	char text[REACT_URL_MAX + 512];
	struct leg *legs[2] = {c->near, c->far};

	if (link)
		snprintf(text, sizeof(text), "Watch together: %s", link);
	else
		snprintf(text, sizeof(text), "Watch together now plays %s (same link)", url);
	for (int i = 0; i < 2; i++)
		if (legs[i] && legs[i]->dlg && !legs[i]->terminated && !legs[i]->ending)
			leg_send(legs[i], SIP_METHOD_MESSAGE, NULL, NULL,
			         SIPTAG_CONTENT_TYPE_STR("text/plain;charset=utf-8"),
			         SIPTAG_PAYLOAD_STR(text), TAG_END());
}

static int share_on(struct react_stack *rs, struct call *c, const char *url, char *link,
                    size_t linklen, char *why, size_t whylen)
{
	struct react_call *rc;
	char secret[CODE_SECRET_LEN + 1];
	const char *base = rs->sip->conf.public_url ? rs->sip->conf.public_url : "";
	int err = react_url_ok(url, why, whylen);

	if (err)
		return err;
	if (c->state != SIP_CALL_ANSWERED) {
		snprintf(why, whylen, "the call is not answered");
		return ENOTCONN;
	}
	rc = call_react(rs, c, 1);
	if (!rc)
		return ENOMEM;
	if (rc->watch) {
		watch_url(rc->watch, url);
		share_tell(c, NULL, url);
		if (link && linklen)
			link[0] = '\0';
		LOG_INFO("react", "call %s: watch page now plays %s", c->id, url);
		return 0;
	}
	err = watch_new(rs, rc, url, secret, sizeof(secret));
	if (err) {
		snprintf(why, whylen, "cannot make a watch page: %s", strerror(err));
		return err;
	}
	{
		char full[sizeof(secret) + 512];

		snprintf(full, sizeof(full), "%s/w/%s", base, secret);
		share_tell(c, full, url);
		if (link)
			snprintf(link, linklen, "%s", full);
	}
	OPENSSL_cleanse(secret, sizeof(secret));
	LOG_INFO("react", "call %s: watch page made for %s", c->id, url);
	return 0;
}

int react_share(struct sip *s, const char *call_id, const char *url, char *link, size_t linklen,
                char *why, size_t whylen)
{
	struct react_stack *rs = react_stack(s);
	struct call *c = rs ? call_find(s, call_id) : NULL;

	if (!c) {
		snprintf(why, whylen, "no call %s", call_id);
		return ENOENT;
	}
	return share_on(rs, c, url, link, linklen, why, whylen);
}

/* ---- the hooks ---- */

/* The answer to a reaction or share that react_admit() refused. */
static void admit_refused(nta_incoming_t *irq, int err)
{
	if (err == EAGAIN)
		sip_reply(irq, 503, "Too Many Reactions", SIPTAG_RETRY_AFTER_STR("1"), TAG_END());
	else if (err == EPERM)
		sip_reply(irq, 403, "Not A Party Of The Call", TAG_END());
	else
		sip_reply(irq, 500, "Out Of Memory", TAG_END());
}

/*
 * MESSAGEs of REACT_CTYPE, and "share <URL>". What a party sends is parsed only after its
 * side's rate took it: a flood of bad ones costs a table lookup each, not a JSON parse.
 */
static int on_message(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                      const sip_t *sip, msg_t *req)
{
	struct react_stack *rs = arg;
	const sip_content_type_t *ct = body_ct(sip);
	const sip_payload_t *pl = body_pl(sip);
	struct call *c = leg ? leg->call : NULL;
	struct react_call *rc = NULL;
	char emoji[REACT_EMOJI_MAX + 1], why[160];
	double x, y;
	const char *url;
	size_t len;
	int err;

	if (ct && ct->c_type && !strcasecmp(ct->c_type, REACT_CTYPE)) {
		if (!c) {
			sip_reply(irq, 404, "No Call Here: React In Your Call", TAG_END());
			return 1;
		}
		err = react_admit(rs, c, leg, &rc);
		if (err) {
			admit_refused(irq, err);
			return 1;
		}
		err = react_parse(pl ? pl->pl_data : "", pl ? pl->pl_len : 0, emoji, &x, &y, why,
		                  sizeof(why));
		if (err) {
			LOG_INFO("react", "call %s: bad reaction: %s", c->id, why);
			sip_reply(irq, 400, why, TAG_END());
			return 1;
		}
		json_leg_add(rc, leg_key(leg));
		react_send(c, rc, leg, emoji, x, y, "MESSAGE");
		sip_reply(irq, 200, "OK", TAG_END());
		return 1;
	}
	if (!c || (ct && ct->c_type && strncasecmp(ct->c_type, "text/plain", 10)) ||
	    !(url = move_body_word(sip, "share", &len)) || !len)
		return 0;
	for (size_t i = 0; i < len; i++)
		if (isspace((unsigned char)url[i]))
			return 0; /* "share" and more words: a chat message, passed on */
	err = react_admit(rs, c, leg, &rc);
	if (err) {
		admit_refused(irq, err);
		return 1;
	}
	{
		char u[REACT_URL_MAX + 2];

		if (len > REACT_URL_MAX) {
			sip_reply(irq, 400, "URL over 1024 bytes", TAG_END());
			return 1;
		}
		memcpy(u, url, len);
		u[len] = '\0';
		err = share_on(rs, c, u, NULL, 0, why, sizeof(why));
	}
	if (err)
		LOG_INFO("react", "call %s: share refused: %s", c->id, why);
	sip_reply(irq,
	          !err              ? 200
	          : err == EINVAL   ? 400
	          : err == ENOTCONN ? 488
	                            : 500,
	          !err ? "OK" : why, TAG_END());
	return 1;
}

static int on_invite(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	struct react_stack *rs = arg;

	if (accepts_ours(sip) && sip->sip_call_id && sip->sip_from)
		rs->accepts[rs->next_accept++ % REACT_ACCEPTS] =
		    dialog_key(sip->sip_call_id->i_id, sip->sip_from->a_tag);
	return 0;
}

static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	struct react_stack *rs = arg;
	struct react_call *rc;

	if (status >= 200 && status < 300 && accepts_ours(sip) && (rc = call_react(rs, c, 1)) &&
	    sip->sip_to)
		json_leg_add(rc, dialog_key(leg->call_id, sip->sip_to->a_tag));
	return 0;
}

static void on_call_active(void *arg, struct call *c)
{
	struct react_stack *rs = arg;
	struct react_call *rc;
	uint32_t key;

	if (!c->in)
		return;
	key = leg_key(c->in);
	for (unsigned i = 0; i < REACT_ACCEPTS; i++)
		if (rs->accepts[i] == key && key && (rc = call_react(rs, c, 1))) {
			json_leg_add(rc, key);
			rs->accepts[i] = 0;
		}
}

static void on_call_gone(void *arg, struct call *c)
{
	struct react_stack *rs = arg;
	struct react_call *rc = c->slot[rs->slot];

	if (!rc)
		return;
	if (rc->watch)
		watch_end(rc->watch);
	while (!LIST_EMPTY(&rc->sent)) {
		struct react_sent *sent = LIST_FIRST(&rc->sent);

		LIST_REMOVE(sent, link);
		free(sent);
	}
	free(rc);
	c->slot[rs->slot] = NULL;
}

static void on_stop(void *arg, struct sip *s)
{
	struct react_stack *rs = arg;

	/* Calls the stop leaves up ([sip] on_stop = keep, or not yet over) are let go of without
	 * call_gone: their reactions' part goes here. */
	for (struct call *c = TAILQ_FIRST(&s->calls); c; c = TAILQ_NEXT(c, link))
		on_call_gone(rs, c);
	while (!LIST_EMPTY(&rs->watches))
		watch_end(LIST_FIRST(&rs->watches));
	free(rs);
}

static const struct sip_call_hooks react_hooks = {
    .invite = on_invite,
    .invite_response = on_invite_response,
    .call_active = on_call_active,
    .call_gone = on_call_gone,
    .message = on_message,
    .stop = on_stop,
};

/* ---- DTMF ---- */

static void dtmf_heard(void *arg, struct leg *leg, const char *code, const char *source)
{
	struct react_dtmf *d = arg;
	struct react_call *rc;

	if (leg && leg->call && !react_admit(d->rs, leg->call, leg, &rc))
		react_send(leg->call, rc, leg, d->emoji, 0.5, 0.5, code);
}

/* "*1=👍,*2=👏" into rs->dtmf; EINVAL naming the entry. */
static int dtmf_parse(struct react_stack *rs, const char *map)
{
	const char *p = map ? map : "";

	while (*p) {
		size_t n = strcspn(p, ","), eq;
		struct react_dtmf *d = &rs->dtmf[rs->ndtmf];
		const char *e;

		while (n && isspace((unsigned char)*p))
			p++, n--;
		eq = strcspn(p, "=");
		if (eq >= n || !eq || eq >= sizeof(d->code) || rs->ndtmf >= REACT_DTMF_MAX) {
			LOG_ERR("conf", "%s: [react] dtmf: \"%.*s\" is not CODE=EMOJI (at most %d)",
			        rs->conf.conf_path, (int)n, p, REACT_DTMF_MAX);
			return EINVAL;
		}
		memcpy(d->code, p, eq);
		d->code[eq] = '\0';
		e = p + eq + 1;
		{
			size_t el = n - eq - 1;

			while (el && isspace((unsigned char)e[el - 1]))
				el--;
			if (!react_emoji_ok(e, el)) {
				LOG_ERR("conf", "%s: [react] dtmf: \"%.*s\": not one emoji",
				        rs->conf.conf_path, (int)n, p);
				return EINVAL;
			}
			memcpy(d->emoji, e, el);
			d->emoji[el] = '\0';
		}
		d->rs = rs;
		rs->ndtmf++;
		p += n;
		if (*p == ',')
			p++;
	}
	return 0;
}

int react_conf_check(const struct react_conf *conf, const char *move_feature)
{
	struct react_stack *rs = calloc(1, sizeof(*rs));
	int err;

	if (!rs)
		return ENOMEM;
	rs->conf = *conf;
	err = dtmf_parse(rs, conf->dtmf);
	for (unsigned i = 0; !err && i < rs->ndtmf; i++) {
		for (unsigned j = 0; j < i; j++)
			if (!strcmp(rs->dtmf[i].code, rs->dtmf[j].code))
				err = EEXIST;
		if (move_feature && !strcmp(rs->dtmf[i].code, move_feature))
			err = EEXIST;
		if (strspn(rs->dtmf[i].code, "0123456789*#ABCDabcd") != strlen(rs->dtmf[i].code))
			err = EINVAL;
		if (err)
			LOG_ERR("conf", "%s: [react] dtmf: code %s: %s", conf->conf_path,
			        rs->dtmf[i].code,
			        err == EEXIST ? "given twice, or the move's [move] feature_code"
			                      : "not DTMF digits");
	}
	free(rs);
	return err ? EINVAL : 0;
}

int react_init(struct sip *s, const struct react_conf *conf)
{
	struct react_stack *rs = calloc(1, sizeof(*rs));
	int err;

	if (!rs)
		return ENOMEM;
	rs->sip = s;
	rs->conf = *conf;
	rs->conf.dtmf = NULL; /* not kept: parsed below */
	rs->limited.per_second = 5;
	rs->slot = sip_call_slot_new(s);
	err = rs->slot < 0 ? ENOSPC : dtmf_parse(rs, conf->dtmf);
	if (err) {
		free(rs);
		return err;
	}
	err = sip_call_hooks_add(s, &react_hooks, rs);
	if (err) {
		free(rs);
		return err;
	}
	for (unsigned i = 0; i < rs->ndtmf; i++) {
		err = move_dtmf_add(s, rs->dtmf[i].code, MOVE_DTMF_NEAR | MOVE_DTMF_FAR, dtmf_heard,
		                    &rs->dtmf[i]);
		if (err) {
			LOG_ERR("conf", "%s: [react] dtmf: code %s: %s", rs->conf.conf_path,
			        rs->dtmf[i].code,
			        err == EEXIST ? "taken by another feature" : "not a DTMF code");
			return EINVAL; /* rs is the hooks' now: freed by their stop */
		}
	}
	return 0;
}
