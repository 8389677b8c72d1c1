/*
 * A call's context: the far party's identity, when the call started, its moves and the notes
 * its users add (MESSAGE "note <text>"), kept in the store under the call's id and shown on a
 * page keyed by a secret of its own (/c/<secret>, 128 bits, only its hash stored). The device
 * that takes the call gets the page as Call-Info and a MESSAGE with a summary. Meetings
 * (meet.c) and resume codes (resume.c) build on it.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "move/context_int.h"

static struct context_stack *the_stack(struct sip *s);
static void summary_send(struct context_stack *cs, struct call *c, struct cctx *x, struct leg *leg);

struct cctx *context_of(struct call *c, int create)
{
	struct context_stack *cs = the_stack(c->sip);
	struct cctx *x;

	if (!cs)
		return NULL;
	x = c->slot[cs->slot];
	if (x || !create)
		return x;
	x = calloc(1, sizeof(*x));
	if (!x)
		return NULL;
	x->started = time(NULL);
	c->slot[cs->slot] = x;
	return x;
}

/* A name-addr's URI without its parameters (tags): what to call again, what to show. */
void context_addr_uri(const char *name_addr, char *out, size_t len)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	sip_from_t *a = name_addr ? sip_from_make(home, name_addr) : NULL;
	char *u = NULL;

	out[0] = '\0';
	if (a && a->a_url->url_type != url_unknown) {
		a->a_url->url_params = NULL;
		a->a_url->url_headers = NULL;
		u = url_as_string(home, a->a_url);
	}
	if (u)
		snprintf(out, len, "%s", u);
	su_home_deinit(home);
}

/* P-Asserted-Identity (an unknown header to sofia's parser), or NULL. */
static const char *asserted(const sip_t *sip)
{
	for (const sip_unknown_t *un = sip ? sip->sip_unknown : NULL; un; un = un->un_next)
		if (un->un_name && !strcasecmp(un->un_name, "P-Asserted-Identity") && un->un_value)
			return un->un_value;
	return NULL;
}

static void note_identity(struct call *c, const sip_t *sip)
{
	const char *pai = asserted(sip);
	struct cctx *x;

	if (!pai || !(x = context_of(c, 1)))
		return;
	/* Kept as text and shown escaped: whatever the PBX says, it is only shown. */
	snprintf(x->far_identity, sizeof(x->far_identity), "%s", pai);
}

static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	if (leg == c->far && leg == c->out && status >= 200 && status < 300 && !leg->answered)
		note_identity(c, sip);
	if (context_link_response(c, leg, status, sip))
		return 1;
	return context_bridge_response(c, leg, status, sip);
}

static int on_leg_gone(void *arg, struct call *c, struct leg *leg)
{
	return leg != c->near && leg != c->far && context_bridge_leg_gone(c, leg);
}

static int on_answering(void *arg, struct call *c)
{
	/* The far party called: its INVITE says who it is. */
	if (c->in && c->in == c->far && c->in->inv) {
		msg_t *req = nta_incoming_getrequest(c->in->inv);

		note_identity(c, req ? sip_object(req) : NULL);
		msg_destroy(req);
	}
	return 0;
}

/* Writes the context (and its page secret's hash when fresh) where every node finds it. */
static void context_put(struct call *c, struct cctx *x, int fresh)
{
	struct store_job job = {.op = STORE_OP_CONTEXT_PUT};
	struct store_context *sc;

	if (!c->sip->conf.store)
		return;
	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return;
	snprintf(sc->call_id, sizeof(sc->call_id), "%s", c->id);
	snprintf(sc->far_identity, sizeof(sc->far_identity), "%s", x->far_identity);
	if (c->far)
		context_addr_uri(c->far->remote, sc->far_uri, sizeof(sc->far_uri));
	if (c->near)
		context_addr_uri(c->near->remote, sc->near_uri, sizeof(sc->near_uri));
	snprintf(sc->resumed_from, sizeof(sc->resumed_from), "%s", x->resumed_from);
	sc->started_at = (int64_t)x->started * 1000;
	if (fresh)
		memcpy(job.hash, x->hash, sizeof(job.hash));
	job.context = sc;
	/* One statement: it goes with the calls' rows, in the next batch's transaction. */
	store_submit_later(c->sip->conf.store, &job);
}

int context_secret_new(struct cctx *x)
{
	int err = code_secret_make(x->secret, sizeof(x->secret));

	if (!err)
		err = code_secret_hash(x->secret, x->hash);
	if (err)
		OPENSSL_cleanse(x->secret, sizeof(x->secret));
	return err;
}

static void on_active(void *arg, struct call *c)
{
	struct context_stack *cs = arg;
	struct cctx *x = context_of(c, 1);
	int fresh = 0;

	if (!x)
		return;
	if (!x->far_identity[0] && c->far && c->far->remote)
		snprintf(x->far_identity, sizeof(x->far_identity), "%s", c->far->remote);
	if (!x->secret[0] && context_secret_new(x)) {
		LOG_ERR("context", "%s: cannot make the page's secret", c->id);
		return;
	}
	fresh = !x->saved;
	x->saved = 1;
	context_put(c, x, fresh);
	/* A resumed call's page goes to the device that dialled the code (it is our own), not
	 * to the far party (unless [context] far_call_info). */
	if (fresh && x->resumed_from[0] && c->near)
		summary_send(cs, c, x, c->near);
}

/* A call read back after a restart: the secret was never stored, so its page gets a new one. */
static void on_restored(void *arg, struct call *c)
{
	struct cctx *x = context_of(c, 1);

	if (x)
		context_bridge_restore(arg, c);
	if (!x || context_secret_new(x))
		return;
	x->saved = 1;
	if (c->far && c->far->remote)
		snprintf(x->far_identity, sizeof(x->far_identity), "%s", c->far->remote);
	context_put(c, x, 1);
}

static void on_gone(void *arg, struct call *c)
{
	struct context_stack *cs = arg;
	struct cctx *x = c->slot[cs->slot];

	if (x) {
		context_bridge_free(x);
		free(x->link_offer);
		OPENSSL_cleanse(x, sizeof(*x));
		free(x);
	}
	c->slot[cs->slot] = NULL;
}

void context_link(struct sip *s, const struct cctx *x, char *out, size_t len)
{
	const char *pub = s->conf.public_url;

	if (pub && *pub && x && x->secret[0])
		snprintf(out, len, "%s/c/%s", pub, x->secret);
	else
		out[0] = '\0';
}

/* ---- the device that takes the call ---- */

static void new_device_headers(void *arg, struct call *c, char *out, size_t len)
{
	char link[512];

	context_link(c->sip, context_of(c, 0), link, sizeof(link));
	if (link[0])
		snprintf(out, len, "Call-Info: <%s>;purpose=info", link);
}

/* The summary MESSAGE to the device on leg, which takes the call (a move, a resume code). */
static void summary_send(struct context_stack *cs, struct call *c, struct cctx *x, struct leg *leg)
{
	char link[512], text[1024], since[32];
	struct tm tm;

	if (!context_tells(cs, leg))
		return;
	context_link(c->sip, x, link, sizeof(link));
	gmtime_r(&x->started, &tm);
	strftime(since, sizeof(since), "%H:%M UTC", &tm);
	snprintf(text, sizeof(text), "Call with %s since %s; moved %u time%s; %u note%s.%s%s",
	         x->far_identity[0] ? x->far_identity : "the other party", since, x->moves,
	         x->moves == 1 ? "" : "s", x->notes, x->notes == 1 ? "" : "s",
	         link[0] ? " Context: " : "", link);
	move_leg_message(leg, "text/plain", text, strlen(text));
}

static void moved(void *arg, struct call *c, struct leg *leg)
{
	struct cctx *x = context_of(c, 0);

	if (!x)
		return;
	x->moves++;
	summary_send(arg, c, x, leg);
}

/* ---- notes ---- */

/* A note MESSAGE waits for the store's answer. */
struct note_wait {
	LIST_ENTRY(note_wait) link;
	nta_incoming_t *irq; /* NULL once answered (the stack stopped) */
	struct context_stack *cs;
	char call_id[33];
};

static void note_stored(struct store_job *job, void *arg)
{
	struct note_wait *w = arg;
	struct call *c;
	struct cctx *x;

	if (w->irq) {
		if (!job->err) {
			c = call_find(w->cs->sip, w->call_id);
			if (c && (x = context_of(c, 0)))
				x->notes++;
			sip_reply(w->irq, 200, "Note Kept", TAG_END());
		} else if (job->err == ENOSPC) {
			sip_reply(w->irq, 403, "Too Many Notes", TAG_END());
		} else {
			LOG_ERR("context", "%s: store: add a note: %s", w->call_id,
			        strerror(job->err));
			sip_reply(w->irq, 503, "Notes Not Available", SIPTAG_RETRY_AFTER_STR("5"),
			          TAG_END());
		}
	}
	struct context_stack *cs = w->cs;

	LIST_REMOVE(w, link);
	free(w);
	context_pending_done(cs);
}

void context_pending_done(struct context_stack *cs)
{
	if (cs->pending)
		cs->pending--;
	if (cs->stopped && !cs->pending)
		free(cs);
}

static void note_message(struct context_stack *cs, struct call *c, nta_incoming_t *irq,
                         const char *text, size_t n)
{
	struct store_job job = {.op = STORE_OP_NOTE_ADD, .limit = STORE_NOTES_MAX};
	char clean[STORE_NOTE_MAX];
	struct note_wait *w;
	int err = store_note_clean(text, n, clean, sizeof(clean));

	if (err) {
		sip_reply(irq, err == EMSGSIZE ? 413 : 400,
		          err == EMSGSIZE ? "Note Too Long" : "Note Empty Or Not UTF-8", TAG_END());
		return;
	}
	if (cs->pending >= CONTEXT_PENDING_MAX) {
		log_limited(&cs->refused_log, LOG_LEVEL_WARN, "context",
		            "%s: note: over the budget of store jobs in flight: 503", c->id);
		sip_reply(irq, 503, "Notes Not Available", SIPTAG_RETRY_AFTER_STR("1"), TAG_END());
		return;
	}
	if (!c->sip->conf.store || !(w = calloc(1, sizeof(*w)))) {
		sip_reply(irq, 503, "Notes Not Available", TAG_END());
		return;
	}
	w->irq = irq;
	w->cs = cs;
	snprintf(w->call_id, sizeof(w->call_id), "%s", c->id);
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	job.at = store_now();
	job.blob = strdup(clean);
	LIST_INSERT_HEAD(&cs->note_waits, w, link);
	cs->pending++;
	if (!job.blob || store_submit(c->sip->conf.store, &job, note_stored, w)) {
		cs->pending--;
		LIST_REMOVE(w, link);
		free(w);
		sip_reply(irq, 503, "Notes Not Available", TAG_END());
	}
}

static int on_message(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                      const sip_t *sip, msg_t *req)
{
	struct context_stack *cs = arg;
	struct call *c = leg ? leg->call : NULL;
	const sip_payload_t *pl = body_pl(sip);
	const char *rest;
	size_t n;

	if (!c || (leg != c->near && leg != c->far) || c->state != SIP_CALL_ANSWERED || !pl)
		return 0;
	if (sip->sip_content_type && strncasecmp(sip->sip_content_type->c_type, "text/", 5))
		return 0;
	/* Notes are the near user's: the far party's "note ..." is a message for A (it could
	 * otherwise fill the context's STORE_NOTES_MAX). */
	if (leg == c->near && (rest = move_body_word(sip, "note", &n))) {
		note_message(cs, c, irq, rest, n);
		return 1;
	}
	if ((rest = move_body_word(sip, "meet", &n))) {
		char link[512];
		int err;

		/* "meet me at noon", or no meetings here: a message for the other party. */
		if (n || !cs->url_template)
			return 0;
		/* Answered first: the join link MESSAGE comes after, as its sender expects. */
		sip_reply(irq, SIP_200_OK, TAG_END());
		err = move_meet(s, c->id, link, sizeof(link));
		if (err && err != EALREADY)
			LOG_ERR("meet", "%s: cannot start a meeting: %s", c->id, strerror(err));
		return 1;
	}
	return 0;
}

static void on_stop(void *arg, struct sip *s)
{
	struct context_stack *cs = arg;
	struct note_wait *w;

	/* The store still calls back: those free themselves. */
	LIST_FOREACH(w, &cs->note_waits, link)
	if (w->irq) {
		sip_reply(w->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		w->irq = NULL;
	}
	context_resume_stop(cs);
	/* Calls the stop leaves up (on_stop = keep) are let go of without call_gone. */
	for (struct call *c = TAILQ_FIRST(&s->calls); c; c = TAILQ_NEXT(c, link))
		on_gone(cs, c);
	free(cs->url_template);
	free(cs->conference_uri);
	cs->stopped = 1;
	if (!cs->pending)
		free(cs);
}

static void on_ending(void *arg, struct call *c)
{
	struct context_stack *cs = arg;
	struct store_job job = {.op = STORE_OP_CONTEXT_END};

	if (!context_of(c, 0) || c->state == SIP_CALL_EARLY || !c->answered)
		return;
	if (c->sip->conf.store) {
		snprintf(job.id, sizeof(job.id), "%s", c->id);
		job.at = store_now();
		store_submit_later(c->sip->conf.store, &job);
	}
	context_resume_give(cs, c);
}

static const struct sip_call_hooks context_hooks = {
    .invite = context_resume_invite,
    .invite_response = on_invite_response,
    .leg_left = on_leg_gone,
    .leg_terminated = on_leg_gone,
    .call_answering = on_answering,
    .call_active = on_active,
    .call_ending = on_ending,
    .call_gone = on_gone,
    .message = on_message,
    .call_restored = on_restored,
    .stop = on_stop,
};

static const struct move_observer context_observer = {
    .new_device_headers = new_device_headers,
    .moved = moved,
};

static struct context_stack *the_stack(struct sip *s)
{
	return sip_call_hooks_arg(s, &context_hooks);
}

struct context_stack *context_stack_of(struct sip *s)
{
	return the_stack(s);
}

static void meet_dtmf(void *arg, struct leg *leg, const char *code, const char *source)
{
	char link[512];
	int err = move_meet(leg->call->sip, leg->call->id, link, sizeof(link));

	if (err && err != EALREADY)
		LOG_INFO("meet", "%s: %s from %s: %s", leg->call->id, code, source,
		         err == ENOTSUP ? "no [meet] url_template" : strerror(err));
}

int move_context_init(struct sip *s, const struct move_context_conf *conf)
{
	struct context_stack *cs = calloc(1, sizeof(*cs));
	int err;

	if (!cs)
		return ENOMEM;
	cs->sip = s;
	cs->slot = sip_call_slot_new(s);
	cs->resume_ttl = conf ? conf->resume_ttl : 0;
	cs->meet_sms = conf ? conf->meet_sms : 0;
	cs->summary = conf ? conf->summary : 0;
	cs->far_call_info = conf ? conf->far_call_info : 0;
	if (conf && conf->meet_url_template && *conf->meet_url_template)
		cs->url_template = strdup(conf->meet_url_template);
	if (conf && conf->meet_conference_uri && *conf->meet_conference_uri)
		cs->conference_uri = strdup(conf->meet_conference_uri);
	if (cs->slot < 0) {
		free(cs->url_template);
		free(cs->conference_uri);
		free(cs);
		return ENOSPC;
	}
	err = sip_call_hooks_add(s, &context_hooks, cs);
	if (err) {
		free(cs->url_template);
		free(cs->conference_uri);
		free(cs);
		return err;
	}
	/* From here on the hooks' stop frees cs. */
	err = move_observer_add(s, &context_observer, cs);
	if (!err)
		err = move_dtmf_add(s, "*9", MOVE_DTMF_NEAR | MOVE_DTMF_FAR, meet_dtmf, cs);
	return err;
}
