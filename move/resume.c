/*
 * Resume codes: when a call ends, its last near device gets a MESSAGE with a one-time code
 * (128 random bits, only its hash stored, [own] resume_ttl seconds) in three forms: an INVITE
 * to sip:r.<code>@<domain>, or to sip:*87<16 digits>@<domain> (a desk phone's; only the
 * digits' HMAC stored), calls the same far party again through the upstream, once; the link
 * {public_url}/r/<code> (web/context.c) has qrxfer call the device, then the far party.
 * Using one form uses all. The new call's context page (which shows the call it continues)
 * goes to the device, not to the far party (unless [context] far_call_info). A wrong, used
 * or expired code is one answer (404) and counts as a wrong guess from its source, as codes
 * do (wrong digits as a wrong numeric code: they spend the node-wide budget too).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "move/context_int.h"

/* A MESSAGE sent outside any dialog, until its final answer. */
struct ood_message {
	LIST_ENTRY(ood_message) link;
	nta_leg_t *dlg;
	nta_outgoing_t *orq;
};

/* An INVITE with a resume code (or a link's request), while the store looks it up. */
struct resume_wait {
	LIST_ENTRY(resume_wait) link;
	struct context_stack *cs;
	move_resume_h *cb; /* a link's: irq and req are NULL */
	void *cb_arg;
	int use;
	nta_incoming_t *irq; /* NULL once it is no longer ours (CANCEL, stop) */
	msg_t *req;
	char source[STORE_SOURCE_MAX];
};

static void ood_free(struct ood_message *m)
{
	LIST_REMOVE(m, link);
	if (m->orq)
		nta_outgoing_destroy(m->orq);
	if (m->dlg)
		nta_leg_destroy(m->dlg);
	free(m);
}

static int ood_answered(void *arg, nta_outgoing_t *orq, const sip_t *sip)
{
	struct ood_message *m = arg;
	int status = sip && sip->sip_status ? sip->sip_status->st_status : 408;

	if (status < 200)
		return 0;
	if (status >= 300)
		LOG_INFO("context", "MESSAGE out of dialog answered %d", status);
	ood_free(m);
	return 0;
}

void context_message_out(struct context_stack *cs, const char *target, const char *user,
                         const char *text)
{
	struct sip *s = cs->sip;
	struct ood_message *m = calloc(1, sizeof(*m));
	char from[300];

	if (!m)
		return;
	LIST_INSERT_HEAD(&cs->messages, m, link);
	snprintf(from, sizeof(from), "<sip:%s@%s>", user, s->conf.domain);
	m->dlg = nta_leg_tcreate(s->nta, NULL, NULL, SIPTAG_FROM_STR(from), SIPTAG_TO_STR(target),
	                         TAG_END());
	if (m->dlg && nta_leg_tag(m->dlg, NULL))
		m->orq = nta_outgoing_tcreate(
		    m->dlg, ood_answered, m, NULL, SIP_METHOD_MESSAGE, URL_STRING_MAKE(target),
		    SIPTAG_CONTENT_TYPE_STR("text/plain"), SIPTAG_PAYLOAD_STR(text), TAG_END());
	if (!m->orq) {
		LOG_ERR("context", "cannot send a MESSAGE to %s", target);
		ood_free(m);
	}
}

/* A resume code on its way into the store: its MESSAGE goes once the store has it. */
struct resume_keep {
	struct context_stack *cs;
	char target[256]; /* the device's Contact */
	char far[STORE_URI_MAX];
	char token[CODE_SECRET_LEN + 1];
	char digits[RESUME_DIGITS + 1];
};

static void keep_free(struct resume_keep *k)
{
	struct context_stack *cs = k->cs;

	OPENSSL_cleanse(k, sizeof(*k));
	free(k);
	context_pending_done(cs);
}

static void resume_kept(struct store_job *job, void *arg)
{
	struct resume_keep *k = arg;
	struct context_stack *cs = k->cs;
	struct sip *s = cs->sip;
	char text[900], digits[64] = "", link[400] = "";

	if (cs->stopped) {
		keep_free(k);
		return;
	}
	if (job->err) {
		LOG_ERR("context", "%s: store: keep a resume code: %s", job->id,
		        strerror(job->err));
		keep_free(k);
		return;
	}
	if (job->n)
		snprintf(digits, sizeof(digits), "%s%s, or ", RESUME_PREFIX, k->digits);
	if (s->conf.public_url && *s->conf.public_url)
		snprintf(link, sizeof(link), ", or open %s/r/%s", s->conf.public_url, k->token);
	snprintf(text, sizeof(text),
	         "To call %s again (once, within %u minutes): dial %ssip:r.%s@%s%s", k->far,
	         (cs->resume_ttl + 59) / 60, digits, k->token, s->conf.domain, link);
	context_message_out(cs, k->target, "resume", text);
	LOG_INFO("context", "%s: resume code sent to %s%s", job->id, k->target,
	         job->n ? "" : " (without digits: another code has them)");
	OPENSSL_cleanse(text, sizeof(text));
	OPENSSL_cleanse(digits, sizeof(digits));
	OPENSSL_cleanse(link, sizeof(link));
	keep_free(k);
}

/* A resume code's digits: RESUME_DIGITS uniform decimal digits (two draws of 8). */
static int digits_make(char *out, size_t len)
{
	int err = len > RESUME_DIGITS ? 0 : EINVAL;

	if (!err)
		err = code_numeric_make(8, out, len);
	if (!err)
		err = code_numeric_make(8, out + 8, len - 8);
	return err;
}

void context_resume_give(struct context_stack *cs, struct call *c)
{
	struct sip *s = cs->sip;
	struct store_job job = {.op = STORE_OP_RESUME_INSERT};
	struct leg_state st;
	struct resume_keep *k;
	int err;

	if (!cs->resume_ttl || !s->conf.store || !c->near || !c->far || !c->near->dlg ||
	    !context_tells(cs, c->near))
		return;
	context_addr_uri(c->far->remote, job.call.far.uri, sizeof(job.call.far.uri));
	if (!job.call.far.uri[0] || leg_state_get(c->near, &st) || !st.target[0])
		return;
	k = calloc(1, sizeof(*k));
	if (!k)
		return;
	k->cs = cs;
	snprintf(k->target, sizeof(k->target), "%s", st.target);
	snprintf(k->far, sizeof(k->far), "%s", job.call.far.uri);
	snprintf(job.call.near.uri, sizeof(job.call.near.uri), "%s", st.target);
	err = code_secret_make(k->token, sizeof(k->token)) || code_secret_hash(k->token, job.hash);
	/* Digits need the keyring (their hash is an HMAC): without one, SIP URI and link only. */
	if (!err && s->conf.keys && !digits_make(k->digits, sizeof(k->digits)) &&
	    !code_numeric_hash(s->conf.keys, 0, k->digits, job.redeem.hash))
		job.redeem.key = STORE_KEY_CODE;
	if (err) {
		LOG_ERR("context", "%s: cannot make a resume code", c->id);
		OPENSSL_cleanse(k, sizeof(*k));
		free(k);
		return;
	}
	snprintf(job.id, sizeof(job.id), "%s", c->id);
	job.at = store_now() + (int64_t)cs->resume_ttl * 1000;
	cs->pending++;
	/* The MESSAGE goes once the store has the code: nobody can dial it before. */
	if (store_submit(s->conf.store, &job, resume_kept, k)) {
		LOG_ERR("context", "%s: store: keep a resume code: cannot queue it", c->id);
		keep_free(k);
	}
	OPENSSL_cleanse(&job, sizeof(job));
}

static void wait_free(struct resume_wait *w)
{
	struct context_stack *cs = w->cs;

	LIST_REMOVE(w, link);
	cs->resume_waiting--;
	if (w->irq)
		nta_incoming_bind(w->irq, NULL, NULL);
	msg_destroy(w->req);
	free(w);
	context_pending_done(cs);
}

static int resume_cancelled(void *arg, nta_incoming_t *irq, const sip_t *sip)
{
	struct resume_wait *w = arg;

	if (!sip || sip->sip_request->rq_method == sip_method_cancel) {
		/* nta answers the INVITE 487 when this returns: it is no longer ours. */
		if (w->irq == irq) {
			nta_incoming_bind(irq, NULL, NULL);
			nta_incoming_destroy(irq);
			w->irq = NULL;
		}
	}
	return 0;
}

/* A resumed call's context: it continues old_id; info gets the Call-Info naming its page. */
static struct cctx *resumed_context(struct call *c, const char *old_id, char *info, size_t len)
{
	struct cctx *x = context_of(c, 1);
	char link[512];

	info[0] = '\0';
	if (!x || context_secret_new(x))
		return NULL;
	snprintf(x->resumed_from, sizeof(x->resumed_from), "%s", old_id);
	context_link(c->sip, x, link, sizeof(link));
	if (link[0])
		snprintf(info, len, "Call-Info: <%s>;purpose=info", link);
	return x;
}

/* The code was good: a new call from the device to the far party, through the upstream. */
static void resume_call(struct context_stack *cs, struct resume_wait *w, const char *old_id,
                        const char *far_uri)
{
	struct sip *s = cs->sip;
	nta_incoming_t *irq = w->irq;
	const sip_t *sip = sip_object(w->req);
	struct call *c;
	struct leg *in, *out;
	sip_addr_t *from, *to;
	url_t *target;
	sip_payload_t *pl;
	char info[600] = "";

	nta_incoming_bind(irq, NULL, NULL);
	w->irq = NULL;
	if (call_alloc(&c, s)) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return;
	}
	in = leg_accept(c, 1, irq, sip);
	if (!in) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return;
	}
	/* Without a context the call goes on without its page. */
	resumed_context(c, old_id, info, sizeof(info));
	target = url_make(c->home, far_uri);
	to = sip_to_make(c->home, far_uri);
	from = invite_addr_untagged(c->home, sip->sip_from);
	out = target && to && from ? leg_dial(c, 0, target, from, to, 1) : NULL;
	c->in = in;
	c->out = out;
	c->near = in;
	c->far = out;
	if (!out) {
		LOG_ERR("context", "%s: resume: cannot call %s", c->id, far_uri);
		leg_answer(in, SIP_500_INTERNAL_SERVER_ERROR, NULL, NULL, TAG_END());
		in->ending = 1;
		call_leg_terminated(in);
		return;
	}
	invite_note_near_sdp(in, sip);
	invite_max_timer(c);
	LOG_INFO("context", "%s: resumes call %s: calling %s again", c->id, old_id, far_uri);
	nta_incoming_treply(irq, SIP_100_TRYING, TAG_END());
	pl = body_for(out, sip);
	/* The page holds the caller's notes: the far party sees it only when [context] says. */
	if (leg_invite(out, w->req, NULL, SIPTAG_MAX_FORWARDS_STR("69"),
	               TAG_IF(info[0] && cs->far_call_info, SIPTAG_HEADER_STR(info)),
	               BODY_TAGS_PL(sip, pl), TAG_END())) {
		leg_answer(in, SIP_503_SERVICE_UNAVAILABLE, NULL, NULL, TAG_END());
		call_leg_terminated(in);
		call_leg_terminated(out);
	}
}

static int link_call(struct context_stack *cs, const char *old_id, const char *far_uri,
                     const char *device);

/* A link's answer: the page's (peek) or the call's (use). */
static void link_taken(struct context_stack *cs, struct resume_wait *w, struct store_job *job)
{
	int err = cs->stopped ? ECANCELED : job->err;
	unsigned after = 0;

	if (err == EAGAIN || err == EBUSY)
		after = (unsigned)((job->redeem.wait_ms + 999) / 1000);
	else if (err == ENOENT)
		log_limited(&cs->refused_log, LOG_LEVEL_INFO, "context",
		            "resume link from %s refused: unknown, used or expired", w->source);
	/* A code kept before devices were (no device to call): as good as none. */
	if (!err && !job->call.near.uri[0])
		err = ENOENT;
	if (!err && w->use)
		err = link_call(cs, job->id, job->call.far.uri, job->call.near.uri);
	w->cb(w->cb_arg, err, job->call.far.uri, job->call.near.uri, after);
	w->cb = NULL;
	wait_free(w);
}

static void resume_taken(struct store_job *job, void *arg)
{
	struct resume_wait *w = arg;
	struct context_stack *cs = w->cs;
	char secs[24];

	if (w->cb) {
		link_taken(cs, w, job);
		return;
	}
	if (!w->irq || cs->stopped) {
		wait_free(w);
		return;
	}
	if (!job->err) {
		resume_call(cs, w, job->id, job->call.far.uri);
	} else if (job->err == EAGAIN) {
		snprintf(secs, sizeof(secs), "%lld", (long long)(job->redeem.wait_ms + 999) / 1000);
		log_limited(&cs->refused_log, LOG_LEVEL_INFO, "context",
		            "resume code from %s refused: it must wait %s s", w->source, secs);
		sip_reply(w->irq, 480, "Too Many Wrong Codes", SIPTAG_RETRY_AFTER_STR(secs),
		          TAG_END());
	} else if (job->err == EBUSY) {
		snprintf(secs, sizeof(secs), "%lld", (long long)(job->redeem.wait_ms + 999) / 1000);
		log_limited(&cs->refused_log, LOG_LEVEL_INFO, "context",
		            "resume digits from %s refused: numeric codes paused node-wide",
		            w->source);
		sip_reply(w->irq, 503, "Numeric Codes Paused", SIPTAG_RETRY_AFTER_STR(secs),
		          TAG_END());
	} else if (job->err == ENOENT) {
		log_limited(&cs->refused_log, LOG_LEVEL_INFO, "context",
		            "resume code from %s refused: unknown, used or expired", w->source);
		sip_reply(w->irq, 404, "No Such Resume Code", TAG_END());
	} else {
		LOG_ERR("context", "store: use a resume code: %s", strerror(job->err));
		sip_reply(w->irq, SIP_503_SERVICE_UNAVAILABLE, SIPTAG_RETRY_AFTER_STR("5"),
		          TAG_END());
	}
	w->irq = NULL;
	wait_free(w);
}

/* The digits' HMAC under every key (a code made before a rotation has an older one's), and
 * the kind of guess they are: a numeric code's, which spends the node-wide budget too. */
static void resume_digits_hashes(struct sip *s, const char *digits, struct store_job *job)
{
	size_t n = strlen(digits);
	unsigned keys = s->conf.keys ? code_keyring_count(s->conf.keys) : 0;

	job->redeem.key = STORE_KEY_CODE;
	if (n != RESUME_DIGITS || strspn(digits, "0123456789") != n || !keys ||
	    code_numeric_hash(s->conf.keys, 0, digits, job->hash)) {
		memset(job->hash, 0xff, sizeof(job->hash));
		return;
	}
	for (unsigned i = 1; i < keys && job->redeem.nalt < STORE_HASHES_MAX - 1; i++)
		if (!code_numeric_hash(s->conf.keys, i, digits, job->redeem.alt[job->redeem.nalt]))
			job->redeem.nalt++;
}

/* Whether one more store job for a resume code from source fits the budget. */
static int resume_budget(struct context_stack *cs, const char *source)
{
	const struct resume_wait *w;
	unsigned mine = 0;

	if (cs->pending >= CONTEXT_PENDING_MAX || cs->resume_waiting >= CONTEXT_RESUME_MAX)
		return 0;
	LIST_FOREACH(w, &cs->resume_waits, link)
	if (!strcmp(w->source, source) && ++mine >= CONTEXT_RESUME_PER_SOURCE)
		return 0;
	return 1;
}

int context_resume_invite(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip,
                          msg_t *req)
{
	char source[STORE_SOURCE_MAX];
	struct context_stack *cs = arg;
	const url_t *u = sip->sip_request->rq_url;
	struct store_job job = {.op = STORE_OP_RESUME_TAKE};
	struct resume_wait *w;
	const char *user = u->url_user;
	int by_digits;

	/* Without resume codes, r.<anything> and *87<anything> are nobody's here: they go on
	 * like any call. */
	if (!cs->resume_ttl || !user)
		return 0;
	by_digits = !strncmp(user, RESUME_PREFIX, strlen(RESUME_PREFIX));
	if ((!by_digits && strncasecmp(user, "r.", 2)) || !move_for_us(s, u))
		return 0;
	if (!s->conf.store) {
		sip_reply(irq, 404, "No Such Resume Code", TAG_END());
		return 1;
	}
	move_source_of(req, source, sizeof(source));
	if (!resume_budget(cs, source)) {
		log_limited(&cs->refused_log, LOG_LEVEL_WARN, "context",
		            "resume code from %s: over the budget of store jobs in flight (%u): "
		            "503 without a lookup",
		            source, cs->resume_waiting);
		sip_reply(irq, 503, "Service Unavailable", SIPTAG_RETRY_AFTER_STR("1"), TAG_END());
		return 1;
	}
	/* A malformed code is looked up all the same (as a hash nothing has): it counts. */
	if (by_digits)
		resume_digits_hashes(s, user + strlen(RESUME_PREFIX), &job);
	else if (code_secret_hash(user + 2, job.hash))
		memset(job.hash, 0xff, sizeof(job.hash));
	w = calloc(1, sizeof(*w));
	if (!w) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	w->cs = cs;
	w->irq = irq;
	w->req = nta_incoming_getrequest(irq);
	snprintf(w->source, sizeof(w->source), "%s", source);
	snprintf(job.source, sizeof(job.source), "%s", w->source);
	job.at = store_now();
	LIST_INSERT_HEAD(&cs->resume_waits, w, link);
	cs->pending++;
	cs->resume_waiting++;
	nta_incoming_bind(irq, resume_cancelled, w);
	if (store_submit(s->conf.store, &job, resume_taken, w)) {
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		w->irq = NULL;
		wait_free(w);
	}
	return 1;
}

void context_resume_stop(struct context_stack *cs)
{
	struct resume_wait *w;

	LIST_FOREACH(w, &cs->resume_waits, link)
	if (w->irq) {
		nta_incoming_bind(w->irq, NULL, NULL);
		sip_reply(w->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		w->irq = NULL;
	}
	while (!LIST_EMPTY(&cs->messages))
		ood_free(LIST_FIRST(&cs->messages));
}

/* ---- resume by link: qrxfer calls the device, then the far party (RFC 3725 flow I) ---- */

/* The link's call cannot go on: what is left of it ends (gone, if nothing is: c with it). */
static void link_fail(struct call *c, struct cctx *x, struct leg *refused, const char *why)
{
	LOG_INFO("context", "%s: resume by link: %s", c->id, why);
	free(x->link_offer);
	x->link_offer = NULL;
	x->link = LINK_NONE;
	/* The core may end the call when a party's leg goes: hold it until we are done. */
	su_home_ref(c->home);
	if (refused)
		call_leg_terminated(refused);
	if (c->state != SIP_CALL_ENDING)
		call_end(c, 480, "SIP;cause=480;text=\"Resume failed\"");
	su_home_unref(c->home);
}

int context_link_response(struct call *c, struct leg *leg, int status, const sip_t *sip)
{
	struct cctx *x = context_of(c, 0);
	const sip_payload_t *pl = body_pl(sip);

	if (!x || x->link == LINK_NONE || x->link == LINK_DONE || status < 200)
		return x && x->link != LINK_NONE && x->link != LINK_DONE;
	if (x->link == LINK_DEVICE && leg == c->near) {
		if (status >= 300) {
			link_fail(c, x, leg, "the device did not answer");
			return 1;
		}
		leg->answered = 1;
		call_leg_tags(leg, sip);
		if (!pl || !pl->pl_len || !(x->link_offer = strndup(pl->pl_data, pl->pl_len))) {
			link_fail(c, x, NULL, "the device answered without an offer");
			return 1;
		}
		x->link = LINK_FAR;
		/* The far party gets the device's offer, through the upstream. */
		if (leg_invite(c->far, NULL,
		               sdp_to_far(c, sip_payload_create(c->home, x->link_offer,
		                                                (isize_t)strlen(x->link_offer))),
		               SIPTAG_MAX_FORWARDS_STR("69"), TAG_END()))
			link_fail(c, x, NULL, "cannot call the far party");
		return 1;
	}
	if (x->link == LINK_FAR && leg == c->far) {
		if (status >= 300) {
			/* The device's 2xx is owed an ACK before its BYE. */
			leg_ack(c->near, NULL, NULL);
			link_fail(c, x, leg, "the far party did not answer");
			return 1;
		}
		leg->answered = 1;
		call_leg_tags(leg, sip);
		leg_ack(c->far, NULL, NULL);
		leg_ack(c->near, NULL,
		        pl && pl->pl_len ? sip_payload_create(c->home, pl->pl_data, pl->pl_len)
		                         : NULL);
		free(x->link_offer);
		x->link_offer = NULL;
		x->link = LINK_DONE;
		c->state = SIP_CALL_ANSWERED;
		c->answered = time(NULL);
		LOG_INFO("context", "%s: resume by link: the device and %s are talking", c->id,
		         c->far->uri);
		return 1;
	}
	return 0;
}

/* The link's code was good: a new call, qrxfer's INVITE to the device without an offer. */
static int link_call(struct context_stack *cs, const char *old_id, const char *far_uri,
                     const char *device)
{
	struct sip *s = cs->sip;
	char target[320], from[400], info[600] = "";
	int direct = 0, err;
	struct call *c;
	struct cctx *x;
	url_t *du, *fu;
	sip_addr_t *dfrom, *dto, *ffrom, *fto;

	err = move_dial_target(s, device, target, sizeof(target), &direct);
	if (err) {
		LOG_INFO("context", "resume by link: the device %s is not one qrxfer may call (%s)",
		         device, err == EPERM ? "[move] dial_domains" : "not a SIP user URI");
		return err;
	}
	if (call_alloc(&c, s))
		return ENOMEM;
	x = resumed_context(c, old_id, info, sizeof(info));
	if (!x) {
		call_end(c, 500, NULL);
		return ENOMEM;
	}
	/* The device sees the far party calling; the far party sees the device's user at our
	 * domain (never the device's address). */
	du = url_make(c->home, target);
	fu = url_make(c->home, far_uri);
	snprintf(from, sizeof(from), "<sip:%s@%s>", du && du->url_user ? du->url_user : "resume",
	         s->conf.domain);
	dfrom = sip_from_make(c->home, far_uri);
	dto = sip_to_make(c->home, target);
	ffrom = sip_from_make(c->home, from);
	fto = sip_to_make(c->home, far_uri);
	c->near = du && dfrom && dto ? leg_dial(c, 1, du, dfrom, dto, !direct) : NULL;
	c->far = c->near && fu && ffrom && fto ? leg_dial(c, 0, fu, ffrom, fto, 1) : NULL;
	c->out = c->near;
	c->in = c->far;
	x->link = LINK_DEVICE;
	if (!c->far ||
	    leg_invite(c->near, NULL, NULL, TAG_IF(info[0], SIPTAG_HEADER_STR(info)), TAG_END())) {
		LOG_ERR("context", "%s: resume by link: cannot call %s", c->id, target);
		x->link = LINK_NONE;
		call_end(c, 500, NULL);
		return EIO;
	}
	invite_max_timer(c);
	LOG_INFO("context", "%s: resumes call %s by link: calling the device %s, then %s", c->id,
	         old_id, target, far_uri);
	return 0;
}

int move_resume_link(struct sip *s, const char *secret, const char *source, int use,
                     move_resume_h *cb, void *arg)
{
	struct context_stack *cs = s ? context_stack_of(s) : NULL;
	struct store_job job = {.op = STORE_OP_RESUME_TAKE, .limit = use ? 0 : 1};
	struct resume_wait *w;

	if (!cs || !cs->resume_ttl || !s->conf.store)
		return ENOTSUP;
	if (!resume_budget(cs, source)) {
		log_limited(&cs->refused_log, LOG_LEVEL_WARN, "context",
		            "resume link from %s: over the budget of store jobs in flight", source);
		return EBUSY;
	}
	/* A malformed secret is looked up all the same (as a hash nothing has): it counts. */
	if (!secret || code_secret_hash(secret, job.hash))
		memset(job.hash, 0xff, sizeof(job.hash));
	w = calloc(1, sizeof(*w));
	if (!w)
		return ENOMEM;
	w->cs = cs;
	w->cb = cb;
	w->cb_arg = arg;
	w->use = use;
	snprintf(w->source, sizeof(w->source), "%s", source);
	snprintf(job.source, sizeof(job.source), "%s", source);
	job.at = store_now();
	LIST_INSERT_HEAD(&cs->resume_waits, w, link);
	cs->pending++;
	cs->resume_waiting++;
	if (store_submit(s->conf.store, &job, resume_taken, w)) {
		w->cb = NULL;
		wait_free(w);
		return EIO;
	}
	return 0;
}
