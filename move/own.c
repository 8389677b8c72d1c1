/*
 * Own devices: the bindings the registrar's 2xx gives (written on the store's worker), the
 * proximity hints (kept in the store: own_hint.c), and what asks for a pull or a push: an INVITE to
 * [own] pull_code, a MESSAGE "mine", a REFER to sip:mine@, a DTMF code, the HTTP API. The moves
 * themselves: own_move.c.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/own_int.h"

static const struct sip_call_hooks own_hooks;

struct own *own_of(struct sip *s)
{
	return sip_call_hooks_arg(s, &own_hooks);
}

/* An AOR as we compare them: user@host, the host in lower case. */
int own_aor_key(const url_t *u, char *out, size_t len)
{
	size_t n;
	int w;

	if (!u || !u->url_user || !u->url_host || !u->url_user[0])
		return EINVAL;
	w = snprintf(out, len, "%s@%s", u->url_user, u->url_host);
	if (w < 0 || (size_t)w >= len)
		return EINVAL;
	n = strlen(u->url_user) + 1;
	for (char *p = out + n; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return 0;
}

/* The AOR of a leg's peer: its From when it called us, the To we gave it when we called. */
int own_leg_aor(struct leg *leg, char *out, size_t len)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	sip_from_t *a = leg && leg->remote ? sip_from_make(home, leg->remote) : NULL;
	int err = a ? own_aor_key(a->a_url, out, len) : EINVAL;

	su_home_deinit(home);
	return err;
}

static void on_call_active(void *arg, struct call *c)
{
	own_call_aor(arg, c); /* asked now, at the call's set-up, not at the first pull */
}

/* A move put another device on the call: who owns it is asked again. */
static void on_call_changed(void *arg, struct call *c)
{
	struct own *o = arg;
	struct own_aor *a = c->slot[o->aor_slot];

	if (a && a->leg != c->near)
		own_call_aor(o, c);
}

void own_ask_free(struct own_ask *a)
{
	LIST_REMOVE(a, link);
	if (a->irq) {
		nta_incoming_bind(a->irq, NULL, NULL);
		if (nta_incoming_status(a->irq) < 200)
			nta_incoming_treply(a->irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		nta_incoming_destroy(a->irq);
	}
	msg_destroy(a->req);
	free(a);
}

struct own_ask *own_ask_new(struct own *o, const char *source)
{
	struct own_ask *a = calloc(1, sizeof(*a));

	if (!a)
		return NULL;
	a->own = o;
	a->arrived = move_now_us();
	snprintf(a->source, sizeof(a->source), "%s", source ? source : "?");
	LIST_INSERT_HEAD(&o->asks, a, link);
	return a;
}

/* ---- bindings ---- */

/* Adds uri as a line of *blob (*len long); ENOMEM leaves it as it was. */
static int keep_add(char **blob, size_t *len, const char *uri)
{
	size_t n = strlen(uri);
	char *grown = realloc(*blob, *len + n + 2);

	if (!grown)
		return ENOMEM;
	*blob = grown;
	memcpy(grown + *len, uri, n);
	*len += n;
	grown[(*len)++] = '\n';
	grown[*len] = 0;
	return 0;
}

/* The registrar's 2xx lists the AOR's bindings: each contact the REGISTER carried is kept with
 * the expiry the registrar gave it; those of that AOR and flow it no longer lists are removed
 * (a "Contact: *" removes the AOR's bindings on every flow but those it still lists). */
static void on_registered(void *arg, struct sip *s, const sip_t *req, const sip_t *resp,
                          const char *flow)
{
	struct own *o = arg;
	struct store_job job = {.op = STORE_OP_BINDING_PUT};
	struct store_job sync = {.op = STORE_OP_BINDING_SYNC};
	char aor[OWN_KEY_MAX];
	int64_t now = store_now();
	int star = 0, lost = 0;
	size_t klen = 0;

	if (!s->conf.store || !req->sip_to || own_aor_key(req->sip_to->a_url, aor, sizeof(aor)))
		return;
	for (const sip_contact_t *m = req->sip_contact; m; m = m->m_next) {
		const sip_contact_t *r;
		long expires = 0;
		char *uri;

		if (!m->m_url->url_host) {
			star = 1; /* "*" */
			continue;
		}
		/* url_cmp() ignores parameters only one side has (RFC 3261 19.1.4): ;line=1 and
		 * ;line=2 would be one contact. Bindings are told apart by their parameters too. */
		for (r = resp->sip_contact; r; r = r->m_next)
			if (!url_cmp(r->m_url, m->m_url) &&
			    !strcmp(r->m_url->url_params ? r->m_url->url_params : "",
			            m->m_url->url_params ? m->m_url->url_params : ""))
				break;
		if (r && r->m_expires)
			expires = strtol(r->m_expires, NULL, 10);
		else if (r)
			expires = resp->sip_expires ? (long)resp->sip_expires->ex_delta : 3600;
		uri = url_as_string(NULL, m->m_url);
		if (!uri)
			continue;
		memset(&job.binding, 0, sizeof(job.binding));
		snprintf(job.binding.aor, sizeof(job.binding.aor), "%s", aor);
		snprintf(job.binding.contact, sizeof(job.binding.contact), "%s", uri);
		snprintf(job.binding.flow, sizeof(job.binding.flow), "%s", flow);
		job.binding.updated_at = now;
		job.binding.expires_at = expires > 0 ? now + (int64_t)expires * 1000 : 0;
		job.at = now;
		LOG_DEBUG("own", "binding %s -> %s on %s for %ld s", aor, uri, flow, expires);
		/* kept as the REGISTER wrote it (what the row holds), however the 2xx spells it */
		if (expires > 0 && keep_add(&sync.blob, &klen, uri))
			lost = 1;
		free(uri);
		if (store_submit_later(s->conf.store, &job))
			LOG_ERR("own", "store: cannot queue the binding of %s", aor);
	}
	/* What the 2xx lists (with a positive expiry) stays; the rest of that AOR+flow goes. */
	for (const sip_contact_t *r = resp->sip_contact; r; r = r->m_next) {
		char *uri = r->m_url->url_host ? url_as_string(NULL, r->m_url) : NULL;

		if (r->m_url->url_host && !uri)
			lost = 1;
		else if (uri && !(r->m_expires && strtol(r->m_expires, NULL, 10) <= 0) &&
		         keep_add(&sync.blob, &klen, uri))
			lost = 1;
		free(uri);
	}
	if (lost) {
		/* a keep list with a hole would remove a live binding: remove nothing this time */
		LOG_ERR("own", "%s: out of memory for the bindings kept: none removed", aor);
		free(sync.blob);
		return;
	}
	snprintf(sync.binding.aor, sizeof(sync.binding.aor), "%s", aor);
	snprintf(sync.binding.flow, sizeof(sync.binding.flow), "%s", star ? "" : flow);
	sync.at = now;
	/* with the puts, in their transaction: a REGISTER costs no job of its own */
	if (store_submit_later(s->conf.store, &sync)) /* owns sync.blob from here */
		LOG_ERR("own", "store: cannot queue the removals of %s", aor);
	(void)o;
}

/* ---- pull: a device dials [own] pull_code ---- */

static int ask_cancelled(void *arg, nta_incoming_t *irq, const sip_t *sip)
{
	struct own_ask *a = arg;

	if (!sip || sip->sip_request->rq_method == sip_method_cancel) {
		a->cancelled = 1;
		if (a->irq == irq) {
			nta_incoming_bind(irq, NULL, NULL);
			nta_incoming_destroy(irq);
			a->irq = NULL;
		}
	}
	return 0;
}

/* The budget of *11 lookups: a token a pull, back when it took a call. A source (an address,
 * an IPv6 /64) gets PULL_BURST at once and PULL_RATE a second; all together PULL_BURST_ALL and
 * PULL_RATE_ALL. Over it: 503 with Retry-After, no store job. */
#define PULL_RATE      1
#define PULL_BURST     10
#define PULL_RATE_ALL  50
#define PULL_BURST_ALL 200
#define PULL_RETRY     "2"

static void pull_refused(struct own_ask *a, const char *why)
{
	LOG_INFO("own", "pull from %s refused: %s", a->flow, why);
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	nta_incoming_bind(a->irq, NULL, NULL);
	sip_reply(a->irq, 403, "Not A Registered Device",
	          SIPTAG_REASON_STR("SIP;cause=403;text=\"No live binding on this flow\""),
	          TAG_END());
	a->irq = NULL;
	own_ask_free(a);
}

static void on_flow(struct store_job *job, void *arg)
{
	struct own_ask *a = arg;
	long i;

	if (a->own->sip->detached)
		return; /* exiting: the stop frees it */
	if (a->cancelled || !a->irq) {
		own_ask_free(a);
		return;
	}
	if (job->err) {
		pull_refused(a, job->err == ENOENT ? "no live binding on that flow"
		                                   : strerror(job->err));
		return;
	}
	i = own_binding_pick(job->bindings, job->n, a->claim);
	if (i < 0) {
		pull_refused(a, "its flow carries other AORs than the one its From names");
		return;
	}
	if (own_node_pull(a, job, &job->bindings[i]))
		return; /* the AOR's newest call is on another node: bridged there */
	own_pull_found(a, &job->bindings[i]);
}

static int on_invite(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	struct own *o = arg;
	const url_t *u = sip->sip_request->rq_url;
	struct store_job job = {.op = STORE_OP_PULL_FIND};
	struct own_ask *a;

	if (own_node_invite(o, s, irq, sip, req))
		return 1; /* a pull another node bridged here */
	if (!o->conf.pull_code || !u->url_user || strcmp(u->url_user, o->conf.pull_code) ||
	    !move_for_us(s, u) || sip->sip_to->a_tag)
		return 0;
	if (!s->conf.store) {
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		return 1;
	}
	a = own_ask_new(o, NULL);
	if (!a) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	a->kind = OWN_ASK_PULL;
	move_source_of(req, a->source, sizeof(a->source));
	if (!lookup_allowed(o->pulls, a->source)) {
		own_ask_free(a);
		sip_reply(irq, 503, "Too Many Pulls", SIPTAG_RETRY_AFTER_STR(PULL_RETRY),
		          SIPTAG_REASON_STR("SIP;cause=503;text=\"Over the budget of pulls\""),
		          TAG_END());
		return 1;
	}
	if (sip_flow_key(s, irq, req, a->flow, sizeof(a->flow))) {
		own_ask_free(a);
		sip_reply(irq, 403, "Not A Registered Device",
		          SIPTAG_REASON_STR("SIP;cause=403;text=\"No device flow: the request came "
		                            "through a proxy\""),
		          TAG_END());
		return 1;
	}
	if (!sip->sip_from || own_aor_key(sip->sip_from->a_url, a->claim, sizeof(a->claim)))
		a->claim[0] = 0;
	a->irq = irq;
	a->req = msg_ref_create(req);
	nta_incoming_bind(irq, ask_cancelled, a);
	snprintf(job.binding.flow, sizeof(job.binding.flow), "%s", a->flow);
	snprintf(job.binding.aor, sizeof(job.binding.aor), "%s", a->claim);
	snprintf(job.node, sizeof(job.node), "%s", s->node);
	job.at = store_now();
	if (store_submit(s->conf.store, &job, on_flow, a)) {
		nta_incoming_bind(irq, NULL, NULL);
		sip_reply(irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		a->irq = NULL;
		own_ask_free(a);
	}
	return 1;
}

/* ---- push: the user asks for the call on another of their devices ---- */

static void on_list(struct store_job *job, void *arg)
{
	struct own_ask *a = arg;

	if (a->own->sip->detached)
		return;
	if (job->err) {
		LOG_ERR("own", "store: list bindings: %s", strerror(job->err));
		job->n = 0;
	}
	own_push_found(a, job->bindings, job->n, job->hints, job->nhints);
}

static int push_list(struct own_ask *a)
{
	struct store_job job = {.op = STORE_OP_BINDING_LIST};

	snprintf(job.binding.aor, sizeof(job.binding.aor), "%s", a->aor);
	job.at = store_now();
	return store_submit(a->own->sip->conf.store, &job, on_list, a) ? EIO : 0;
}

/* A push whose call's owner was not known yet: the near device's flow says it. */
static void on_push_flow(struct store_job *job, void *arg)
{
	struct own_ask *a = arg;
	struct own *o = a->own;
	struct call *c;
	long i;

	if (o->sip->detached)
		return;
	i = job->err ? -1 : own_binding_pick(job->bindings, job->n, a->claim);
	c = call_find(o->sip, a->call_id);
	if (i >= 0 && c && c->near && c->near->flow && !strcmp(c->near->flow, a->flow))
		own_call_aor_set(o, c, job->bindings[i].aor); /* what its own lookup would find */
	if (i < 0) {
		LOG_INFO("own",
		         "push on %s refused: the near device (%s) has no live binding "
		         "of its AOR on its flow",
		         a->call_id, a->flow);
		own_push_answer(a, EPERM, NULL);
		return;
	}
	snprintf(a->aor, sizeof(a->aor), "%s", job->bindings[i].aor);
	if (push_list(a))
		own_push_answer(a, EIO, NULL);
}

/* Asks the store for the AOR's bindings; the push goes on in own_push_found(). irq: the
 * MESSAGE or REFER that asked, answered once the devices ring (or why not). The call's AOR
 * is the one registered on the near device's flow, asked of the store if not known yet. */
static int push_ask(struct own *o, struct call *c, const char *source, nta_incoming_t *irq,
                    struct leg *refer_leg, const char *event, sip_move_h *cb, void *arg)
{
	struct sip *s = o->sip;
	struct store_job job = {.op = STORE_OP_BINDING_ON_FLOW};
	struct own_aor *who;
	struct own_ask *a;
	int err;

	if (call_move(c) || c->slot[o->slot])
		return EBUSY;
	if (c->state != SIP_CALL_ANSWERED || !c->near || !c->far || c->ack_pending)
		return EAGAIN;
	if (!s->conf.store)
		return ENOTSUP;
	who = own_call_who(o, c);
	if (!who)
		return ENOMEM;
	if (who->state == OWN_AOR_NONE || !c->near->flow) {
		LOG_INFO("own",
		         "push on %s refused: the near device (%s) has no live binding of "
		         "its AOR on its flow",
		         c->id, c->near->flow ? c->near->flow : "flow unknown");
		return EPERM;
	}
	a = own_ask_new(o, source);
	if (!a)
		return ENOMEM;
	a->kind = OWN_ASK_PUSH;
	snprintf(a->call_id, sizeof(a->call_id), "%s", c->id);
	snprintf(a->flow, sizeof(a->flow), "%s", c->near->flow);
	if (own_leg_aor(c->near, a->claim, sizeof(a->claim)))
		a->claim[0] = 0;
	a->irq = irq;
	if (refer_leg) {
		a->by_refer = 1;
		snprintf(a->refer_call_id, sizeof(a->refer_call_id), "%s",
		         refer_leg->call_id ? refer_leg->call_id : "");
		snprintf(a->refer_ltag, sizeof(a->refer_ltag), "%s",
		         refer_leg->ltag ? refer_leg->ltag : "");
		snprintf(a->refer_rtag, sizeof(a->refer_rtag), "%s",
		         refer_leg->rtag ? refer_leg->rtag : "");
	}
	snprintf(a->refer_event, sizeof(a->refer_event), "%s", event ? event : "");
	a->cb = cb;
	a->cb_arg = arg;
	if (who->state == OWN_AOR_VERIFIED) {
		snprintf(a->aor, sizeof(a->aor), "%s", who->key);
		err = push_list(a);
	} else {
		snprintf(job.binding.flow, sizeof(job.binding.flow), "%s", a->flow);
		snprintf(job.binding.aor, sizeof(job.binding.aor), "%s", a->claim);
		job.at = store_now();
		err = store_submit(s->conf.store, &job, on_push_flow, a) ? EIO : 0;
	}
	if (err) {
		a->irq = NULL;
		a->cb = NULL;
		own_ask_free(a);
	}
	return err;
}

int own_push(struct sip *s, const char *call_id, const char *source, sip_move_h *cb, void *arg)
{
	struct own *o = own_of(s);
	struct call *c = call_id ? call_find(s, call_id) : NULL;

	if (!o)
		return ENOTSUP;
	if (!c)
		return ENOENT;
	return push_ask(o, c, source, NULL, NULL, NULL, cb, arg);
}

void own_push_refused(nta_incoming_t *irq, int err)
{
	if (err == EPERM) {
		sip_reply(irq, 403, "Not A Registered Device",
		          SIPTAG_REASON_STR("SIP;cause=403;text=\"No live binding of the call's "
		                            "AOR on the near device's flow\""),
		          TAG_END());
		return;
	}
	sip_reply(irq,
	          err == EBUSY    ? 491
	          : err == ENODEV ? 480
	                          : 488,
	          err == EBUSY    ? "A Move Is Under Way"
	          : err == ENODEV ? "No Other Device"
	                          : "Call Cannot Move Now",
	          TAG_END());
}

static int on_message(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                      const sip_t *sip, msg_t *req)
{
	struct own *o = arg;
	char source[STORE_SOURCE_MAX];
	int err;

	if (!leg || leg != leg->call->near || !move_body_is(sip, "mine"))
		return 0;
	move_source_of(req, source, sizeof(source));
	err = push_ask(o, leg->call, source, irq, NULL, NULL, NULL, NULL);
	if (err)
		own_push_refused(irq, err);
	return 1;
}

static int on_refer(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                    const sip_t *sip, msg_t *req)
{
	struct own *o = arg;
	char source[STORE_SOURCE_MAX], event[40];
	int err, ours = move_refer_ours(s, leg, irq, sip, req, "mine", source, event);

	if (ours <= 0)
		return ours != 0;
	err = push_ask(o, leg->call, source, irq, leg, event, NULL, NULL);
	if (err)
		own_push_refused(irq, err);
	return 1;
}

static void on_dtmf(void *arg, struct leg *leg, const char *code, const char *source)
{
	struct own *o = arg;
	int err;

	if (!leg || leg != leg->call->near)
		return;
	err = push_ask(o, leg->call, source, NULL, NULL, NULL, NULL, NULL);
	if (err)
		LOG_INFO("own", "%s: push by %s refused: %s", leg->call->id, code,
		         err == EBUSY   ? "a move is under way"
		         : err == EPERM ? "no verified AOR"
		                        : "the call cannot move now");
}

static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	return own_push_response(arg, c, leg, status, sip);
}

static void on_call_gone(void *arg, struct call *c)
{
	struct own *o = arg;
	struct own_push *p = c->slot[o->slot];

	if (p) {
		c->slot[o->slot] = NULL;
		own_push_free(p);
	}
}

static void on_stop(void *arg, struct sip *s)
{
	struct own *o = arg;

	while (!LIST_EMPTY(&o->asks))
		own_ask_free(LIST_FIRST(&o->asks));
	lookups_free(o->pulls);
	free((char *)o->conf.pull_code);
	free((char *)o->conf.push_code);
	free(o);
}

static const struct sip_call_hooks own_hooks = {
    .invite = on_invite,
    .invite_response = on_invite_response,
    .call_active = on_call_active,
    .call_gone = on_call_gone,
    .call_changed = on_call_changed,
    .refer = on_refer,
    .message = on_message,
    .stop = on_stop,
    .registered = on_registered,
};

int own_init(struct sip *s, const struct own_conf *conf)
{
	struct own *o = calloc(1, sizeof(*o));
	int err;

	if (!o)
		return ENOMEM;
	o->sip = s;
	o->conf = *conf;
	o->conf.pull_code = conf->pull_code && conf->pull_code[0] ? strdup(conf->pull_code) : NULL;
	o->conf.push_code = conf->push_code && conf->push_code[0] ? strdup(conf->push_code) : NULL;
	LIST_INIT(&o->asks);
	if (lookups_alloc_rates(&o->pulls, "pulls", PULL_RATE, PULL_BURST, PULL_RATE_ALL,
	                        PULL_BURST_ALL, METRIC_SIP_REQUESTS_REJECTED_TOTAL)) {
		free((char *)o->conf.pull_code);
		free((char *)o->conf.push_code);
		free(o);
		return ENOMEM;
	}
	o->slot = sip_call_slot_new(s);
	o->aor_slot = o->slot < 0 ? -1 : sip_call_slot_new(s);
	if (o->slot < 0 || o->aor_slot < 0) {
		lookups_free(o->pulls);
		free((char *)o->conf.pull_code);
		free((char *)o->conf.push_code);
		free(o);
		return ENOSPC;
	}
	err = sip_call_hooks_add(s, &own_hooks, o);
	if (err) {
		lookups_free(o->pulls);
		free((char *)o->conf.pull_code);
		free((char *)o->conf.push_code);
		free(o);
		return err;
	}
	/* From here the stop hook frees o. */
	if (own_node_init(o))
		LOG_ERR("own", "no room to hear of moves: a moved call's AOR is not rewritten");
	if (o->conf.push_code) {
		err = move_dtmf_add(s, o->conf.push_code, MOVE_DTMF_NEAR, on_dtmf, o);
		if (err)
			LOG_ERR("own", "cannot listen for %s: %s", o->conf.push_code,
			        strerror(err));
	}
	return err;
}
