/* Redeeming a code: an INVITE that presents it, or a dial request; the guess limits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "move/move_int.h"

void move_redeem_free(struct redeem *r)
{
	LIST_REMOVE(r, link);
	if (r->irq) {
		nta_incoming_bind(r->irq, NULL, NULL);
		if (nta_incoming_status(r->irq) < 200)
			nta_incoming_treply(r->irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		nta_incoming_destroy(r->irq);
	}
	msg_destroy(r->req);
	free(r->sdp);
	free(r->from_uri);
	free(r->call_id);
	free(r->target);
	free(r);
}

static void redeem_refuse(struct redeem *r, int status, const char *phrase, const char *why,
                          int err)
{
	char reason[160];

	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"%s\"", status, why);
	/* A guesser sends thousands a second: ten lines a second, then a count. */
	log_limited(&move_stack(r->sip)->refused_log, LOG_LEVEL_INFO, "move",
	            "code from %s refused: %d %s: %s", r->source, status, phrase, why);
	metric_inc(METRIC_CODES_REJECTED_TOTAL);
	if (r->irq && !r->cancelled) {
		nta_incoming_bind(r->irq, NULL, NULL);
		sip_reply(r->irq, status, phrase, SIPTAG_REASON_STR(reason), TAG_END());
		r->irq = NULL;
	}
	if (r->cb) {
		r->cb(err, NULL, r->cb_arg);
		r->cb = NULL;
	}
	move_redeem_free(r);
}

/*
 * The store refused to look: the source must wait (EAGAIN: 480, it guessed wrong too often) or
 * numeric codes are refused node-wide for a while (EBUSY: 503, the budget of wrong codes is
 * spent; tokens still work). Both say when to come back.
 */
static void redeem_wait(struct redeem *r, int err, int64_t wait_ms)
{
	char after[24];
	int busy = err == EBUSY;

	snprintf(after, sizeof(after), "%lld", (long long)(wait_ms + 999) / 1000);
	/* An HTTP caller (landing page, scans) says the same Retry-After as SIP does. */
	if (r->cb) {
		struct sip_move_info info = {.retry_after = (unsigned)((wait_ms + 999) / 1000)};

		r->cb(err, &info, r->cb_arg);
		r->cb = NULL;
	}
	if (r->irq && !r->cancelled) {
		nta_incoming_bind(r->irq, NULL, NULL);
		sip_reply(r->irq, busy ? 503 : 480,
		          busy ? "Service Unavailable" : "Temporarily Unavailable",
		          SIPTAG_RETRY_AFTER_STR(after),
		          SIPTAG_REASON_STR(busy ? "SIP;cause=503;text=\"Numeric codes paused\""
		                                 : "SIP;cause=480;text=\"Too many wrong codes\""),
		          TAG_END());
		r->irq = NULL;
		r->cancelled = 1;
	}
	if (busy)
		metric_inc(METRIC_CODES_PAUSED_TOTAL);
	redeem_refuse(r, busy ? 503 : 480, busy ? "Service Unavailable" : "Temporarily Unavailable",
	              busy ? "numeric codes paused node-wide: too many wrong codes"
	                   : "too many wrong codes from this source",
	              err);
}

/* The store said who won: attach the winner to the call as its new near leg. */
static void on_redeemed(struct store_job *job, void *arg)
{
	struct redeem *r = arg;
	struct sip *s = r->sip;
	struct move *m;
	struct call *c;
	struct leg *b;

	if (s->detached)
		return; /* exiting: move_free_all() frees it */
	if (job->err == EAGAIN || job->err == EBUSY) {
		redeem_wait(r, job->err, job->redeem.wait_ms);
		return;
	}
	if (job->err) {
		redeem_refuse(r, 404, "Not Found", "code not valid, used or expired", ENOENT);
		return;
	}
	m = move_by_id(s, job->redeem.move_id);
	c = m ? m->call : NULL;
	if (!m || !c || m->phase != MOVE_OFFERED) {
		redeem_refuse(r, 404, "Not Found", "the call is not on this node", ENOENT);
		return;
	}
	if (r->cancelled) {
		move_fail(m, 487, "the new device gave up before its code was checked");
		move_redeem_free(r);
		return;
	}
	su_timer_reset(m->timer);
	m->t_redeem = r->arrived;
	snprintf(m->taken_from, sizeof(m->taken_from), "%s", r->source);
	move_to(m, MOVE_REDEEMED, "the store redeemed the code");
	if (r->irq) {
		nta_incoming_bind(r->irq, NULL, NULL);
		b = leg_accept(c, 1, r->irq, sip_object(r->req));
		if (!b) {
			move_fail(m, 500, "out of memory");
			move_redeem_free(r);
			return;
		}
		if (sip_flow_key(s, r->irq, r->req, m->b_flow, sizeof(m->b_flow)))
			m->b_flow[0] = '\0';
		r->irq = NULL;
		m->b = b;
		m->b_offered = r->sdp != NULL;
		m->b_sdp = r->sdp;
		r->sdp = NULL;
		m->taken_by = r->from_uri ? strdup(r->from_uri) : NULL;
		move_event(m, "presented", "by %s from %s", r->from_uri ? r->from_uri : "?",
		           r->source);
	} else {
		m->third_party = 1;
		m->target = r->target;
		r->target = NULL;
		m->taken_by = strdup(m->target);
		m->cb = r->cb;
		m->cb_arg = r->cb_arg;
		r->cb = NULL;
		move_event(m, "presented", "to dial %s, from %s", m->target, r->source);
	}
	move_redeem_free(r);
	move_after_redeem(m);
	if (m->third_party && move_state(m) != SIP_MOVE_FAILED)
		move_reply(m, 0);
}

static struct redeem *redeem_new(struct sip *s, const char *source)
{
	struct move_stack *ms = move_stack(s);
	struct redeem *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->sip = s;
	snprintf(r->source, sizeof(r->source), "%s", source);
	r->arrived = move_now_us();
	LIST_INSERT_HEAD(&ms->redeems, r, link);
	return r;
}

static int redeem_submit(struct redeem *r, enum store_key key, const uint8_t *hash)
{
	struct store_job *job = calloc(1, sizeof(*job));
	int err;

	if (!job)
		return ENOMEM;
	job->op = STORE_OP_MOVE_REDEEM;
	job->redeem.key = key;
	memcpy(job->redeem.hash, hash, CODE_HASH_LEN);
	memcpy(job->redeem.alt, r->alt, sizeof(job->redeem.alt));
	job->redeem.nalt = r->nalt;
	snprintf(job->redeem.named, sizeof(job->redeem.named), "%s", r->named);
	job->redeem.now = store_now();
	snprintf(job->redeem.by, sizeof(job->redeem.by), "%s", r->source);
	err = store_submit(r->sip->conf.store, job, on_redeemed, r);
	free(job);
	return err;
}

/* Whether this node offers the code: then there is no need to ask the store where it is. */
static int offered_here(struct sip *s, enum store_key key, uint64_t id64, const char *digits)
{
	struct move *m = key == STORE_KEY_TOKEN ? move_by_id64(s, id64) : move_by_code(s, digits);

	return m && (m->phase == MOVE_OFFERED || m->phase == MOVE_STORING);
}

/* The store knows which node holds the code's call: another one gets the INVITE bridged. */
static void on_node(struct store_job *job, void *arg)
{
	struct redeem *r = arg;
	struct sip *s = r->sip;
	const sip_t *sip = r->req ? sip_object(r->req) : NULL;
	url_t *target;
	nta_incoming_t *irq;
	int err;

	if (r->sip->detached)
		return; /* exiting: move_free_all() frees it */

	if (r->cancelled || !sip) {
		move_redeem_free(r);
		return;
	}
	if (job->err == EAGAIN || job->err == EBUSY) {
		redeem_wait(r, job->err, job->redeem.wait_ms);
		return;
	}
	if (job->err || !job->text[0] || !strcmp(job->text, s->node)) {
		err = redeem_submit(r, r->key, r->hash);
		if (err)
			redeem_refuse(r, 500, "Server Internal Error", "the store is not reachable",
			              err);
		return;
	}
	target = url_make(s->home, job->text);
	if (!target || !target->url_host) {
		su_free(s->home, target);
		redeem_refuse(r, 404, "Not Found", "the code's node has no SIP address", ENOENT);
		return;
	}
	target->url_user = sip->sip_request->rq_url->url_user;
	LOG_INFO("move", "code from %s is for a call on %s: bridging the INVITE there", r->source,
	         job->text);
	irq = r->irq;
	r->irq = NULL;
	nta_incoming_bind(irq, NULL, NULL);
	invite_bridge(s, irq, sip, 0, target, 0);
	su_free(s->home, target);
	move_redeem_free(r);
}

/* Whether a Replaces header names the near dialog of c (tags in either order). */
static int replaces_near(struct call *c, const sip_replaces_t *rp)
{
	const char *lt = c->near ? c->near->ltag : NULL, *rt = c->near ? c->near->rtag : NULL;

	if (!rp || !c->near || !c->near->call_id || strcmp(rp->rp_call_id, c->near->call_id) ||
	    !lt || !rt || !rp->rp_to_tag || !rp->rp_from_tag)
		return 0;
	return (!strcmp(rp->rp_to_tag, lt) && !strcmp(rp->rp_from_tag, rt)) ||
	       (!strcmp(rp->rp_to_tag, rt) && !strcmp(rp->rp_from_tag, lt));
}

int move_for_us(struct sip *s, const url_t *u)
{
	return u->url_host && ((s->conf.domain && !strcasecmp(u->url_host, s->conf.domain)) ||
	                       route_is_self(s, u));
}

/* The new device gave up (CANCEL) while its code was being checked. */
static int redeem_cancelled(void *arg, nta_incoming_t *irq, const sip_t *sip)
{
	struct redeem *r = arg;

	if (!sip || sip->sip_request->rq_method == sip_method_cancel) {
		/* nta answers the INVITE 487 when this returns: it is no longer ours. */
		r->cancelled = 1;
		if (r->irq == irq) {
			nta_incoming_bind(irq, NULL, NULL);
			nta_incoming_destroy(irq);
			r->irq = NULL;
		}
	}
	return 0;
}

int move_invite(struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	const url_t *u = sip->sip_request->rq_url;
	const char *user = u->url_user;
	char source[STORE_SOURCE_MAX], token[CODE_TOKEN_LEN + 1], digits[16], named[17] = "";
	uint8_t hash[CODE_HASH_LEN], alt[STORE_HASHES_MAX - 1][CODE_HASH_LEN];
	unsigned nalt = 0;
	enum store_key key;
	struct redeem *r;
	uint64_t id64 = 0;
	int err;
	size_t n;

	if (!user || !move_for_us(s, u))
		return 0;
	move_source_of(req, source, sizeof(source));
	if (!strncasecmp(user, "m.", 2)) {
		err = strlen(user + 2) == CODE_TOKEN_LEN ? 0 : CODE_EBADTOKEN;
		if (!err)
			snprintf(token, sizeof(token), "%s", user + 2);
		if (!err)
			err = code_token_verify(s->conf.keys, token, time(NULL), &id64, NULL);
		if (!err)
			snprintf(named, sizeof(named), "%016llx", (unsigned long long)id64);
		if (!err && sip->sip_replaces) {
			struct move *m = move_by_id64(s, id64);
			if (!m || !m->call || !replaces_near(m->call, sip->sip_replaces)) {
				move_guess_failed(s, source, STORE_KEY_TOKEN, named);
				sip_reply(irq, SIP_481_NO_TRANSACTION,
				          SIPTAG_REASON_STR("SIP;cause=481;text=\"Replaces names "
				                            "no dialog of this code's call\""),
				          TAG_END());
				return 1;
			}
		}
		if (!err)
			err = code_token_hash(token, hash);
		key = STORE_KEY_TOKEN;
	} else if (!strncmp(user, "*88", 3)) {
		n = strlen(user + 3);
		err = n >= 6 && n <= 10 && strspn(user + 3, "0123456789") == n ? 0 : EINVAL;
		if (!err) {
			snprintf(digits, sizeof(digits), "%s", user + 3);
			err = code_numeric_hash(s->conf.keys, 0, digits, hash);
		}
		/* A code made before a key rotation was hashed with an older key. */
		for (unsigned i = 1; !err && s->conf.keys && i < code_keyring_count(s->conf.keys) &&
		                     i < STORE_HASHES_MAX;
		     i++)
			err = code_numeric_hash(s->conf.keys, i, digits, alt[nalt++]);
		key = STORE_KEY_CODE;
	} else {
		return 0;
	}
	/* The held near device dialling its code again in the undo window takes the call back. */
	if (!err && move_verify_redial(s, irq, sip, key == STORE_KEY_TOKEN ? id64 : 0,
	                               key == STORE_KEY_CODE ? digits : NULL))
		return 1;
	if (!s->conf.keys || !s->conf.store) {
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		return 1;
	}
	r = redeem_new(s, source);
	if (!r) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	r->irq = irq;
	r->req = msg_ref_create(req);
	nta_incoming_bind(irq, redeem_cancelled, r);
	if (err) {
		/* A malformed or forged code still counts as a wrong guess from its source. */
		move_guess_failed(s, source, key, NULL);
		redeem_refuse(r, 404, "Not Found", code_strerror(err), ENOENT);
		return 1;
	}
	r->key = key;
	memcpy(r->hash, hash, sizeof(hash));
	memcpy(r->alt, alt, sizeof(alt));
	r->nalt = nalt;
	snprintf(r->named, sizeof(r->named), "%s", named);
	if (body_pl(sip) && sip->sip_payload->pl_len)
		r->sdp = strndup(sip->sip_payload->pl_data, sip->sip_payload->pl_len);
	r->from_uri = url_as_string(NULL, sip->sip_from->a_url); /* NULL home: malloc */
	r->call_id = strdup(sip->sip_call_id->i_id);
	LOG_DEBUG("move", "code presented by %s from %s", r->from_uri ? r->from_uri : "?", source);
	if (!offered_here(s, key, id64, key == STORE_KEY_CODE ? digits : NULL)) {
		struct store_job job = {.op = STORE_OP_MOVE_NODE};
		job.redeem.key = key;
		memcpy(job.redeem.hash, hash, sizeof(hash));
		memcpy(job.redeem.alt, alt, sizeof(alt));
		job.redeem.nalt = nalt;
		snprintf(job.redeem.by, sizeof(job.redeem.by), "%s", source);
		job.redeem.now = store_now();
		err = store_submit(s->conf.store, &job, on_node, r);
		if (err)
			redeem_refuse(r, 500, "Server Internal Error", "the store is not reachable",
			              err);
		return 1;
	}
	err = redeem_submit(r, key, hash);
	if (err)
		redeem_refuse(r, 500, "Server Internal Error", "the store is not reachable", err);
	return 1;
}

int sip_move_dial(struct sip *s, const char *token, const char *target, const char *source,
                  sip_move_h *cb, void *arg)
{
	uint8_t hash[CODE_HASH_LEN];
	char tok[CODE_TOKEN_LEN + 1], uri[320];
	struct redeem *r;
	uint64_t id64 = 0;
	int err, direct = 0;

	if (!s->conf.keys || !s->conf.store)
		return ENOTSUP;
	err = move_dial_target(s, target, uri, sizeof(uri), &direct);
	if (err) {
		LOG_INFO("move", "dial %s from %s refused: %s", target, source ? source : "?",
		         err == EPERM ? "not a user of an allowed domain" : "not a SIP user URI");
		return err;
	}
	err = code_uri_token(token, tok, sizeof(tok));
	if (!err)
		err = code_token_verify(s->conf.keys, tok, time(NULL), &id64, NULL);
	if (!err)
		err = code_token_hash(tok, hash);
	if (err) {
		move_guess_failed(s, source ? source : "ip:?", STORE_KEY_TOKEN, NULL);
		metric_inc(METRIC_CODES_REJECTED_TOTAL);
		return err;
	}
	r = redeem_new(s, source ? source : "ip:?");
	if (!r)
		return ENOMEM;
	snprintf(r->named, sizeof(r->named), "%016llx", (unsigned long long)id64);
	r->target = strdup(uri);
	r->cb = cb;
	r->cb_arg = arg;
	err = redeem_submit(r, STORE_KEY_TOKEN, hash);
	if (err) {
		r->cb = NULL;
		move_redeem_free(r);
	}
	return err;
}
