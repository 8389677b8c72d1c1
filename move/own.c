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

/* The call's near AOR, read once per near leg: a pull compares it with every live call's. */
const char *own_call_aor(struct own *o, struct call *c)
{
	struct own_aor *a = c->slot[o->aor_slot];

	if (!c->near)
		return NULL;
	if (a && a->leg == c->near)
		return a->key[0] ? a->key : NULL;
	if (!a) {
		a = su_zalloc(c->home, sizeof(*a)); /* freed with the call */
		if (!a)
			return NULL;
		c->slot[o->aor_slot] = a;
	}
	a->leg = c->near;
	if (own_leg_aor(c->near, a->key, sizeof(a->key)))
		a->key[0] = 0;
	return a->key[0] ? a->key : NULL;
}

static void on_call_active(void *arg, struct call *c)
{
	own_call_aor(arg, c); /* read now, at the call's set-up, not at the first pull */
	own_node_call_aor(arg, c);
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

static struct own_ask *ask_new(struct own *o, const char *source)
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

/* The registrar's 2xx lists the AOR's bindings: each contact the REGISTER carried is kept with
 * the expiry the registrar gave it, or removed when the 2xx no longer lists it. */
static void on_registered(void *arg, struct sip *s, const sip_t *req, const sip_t *resp,
                          const char *flow)
{
	struct own *o = arg;
	struct store_job job = {.op = STORE_OP_BINDING_PUT};
	char aor[OWN_KEY_MAX];
	int64_t now = store_now();

	if (!s->conf.store || !req->sip_to || own_aor_key(req->sip_to->a_url, aor, sizeof(aor)))
		return;
	for (const sip_contact_t *m = req->sip_contact; m; m = m->m_next) {
		const sip_contact_t *r;
		long expires = 0;
		char *uri;

		if (!m->m_url->url_host)
			continue; /* "*": what it removed expires here in its time */
		for (r = resp->sip_contact; r; r = r->m_next)
			if (!url_cmp(r->m_url, m->m_url))
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
		free(uri);
		if (store_submit_later(s->conf.store, &job))
			LOG_ERR("own", "store: cannot queue the binding of %s", aor);
	}
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

static void on_flow(struct store_job *job, void *arg)
{
	struct own_ask *a = arg;

	if (a->own->sip->detached)
		return; /* exiting: the stop frees it */
	if (a->cancelled || !a->irq) {
		own_ask_free(a);
		return;
	}
	if (!job->err && own_node_pull(a, job))
		return; /* the AOR's newest call is on another node: bridged there */
	if (job->err) {
		LOG_INFO("own", "pull from %s refused: %s", a->flow,
		         job->err == ENOENT ? "no live binding on that flow" : strerror(job->err));
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		nta_incoming_bind(a->irq, NULL, NULL);
		sip_reply(a->irq, 403, "Not A Registered Device",
		          SIPTAG_REASON_STR("SIP;cause=403;text=\"No live binding on this flow\""),
		          TAG_END());
		a->irq = NULL;
		own_ask_free(a);
		return;
	}
	own_pull_found(a, &job->binding);
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
	a = ask_new(o, NULL);
	if (!a) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	move_source_of(req, a->source, sizeof(a->source));
	if (sip_flow_key(s, irq, req, a->flow, sizeof(a->flow))) {
		own_ask_free(a);
		sip_reply(irq, 403, "Not A Registered Device", TAG_END());
		return 1;
	}
	a->irq = irq;
	a->req = msg_ref_create(req);
	nta_incoming_bind(irq, ask_cancelled, a);
	snprintf(job.text, sizeof(job.text), "%s", a->flow);
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

/* Asks the store for the AOR's bindings; the push goes on in own_push_found(). irq: the
 * MESSAGE or REFER that asked, answered once the devices ring (or why not). */
static int push_ask(struct own *o, struct call *c, const char *source, nta_incoming_t *irq,
                    struct leg *refer_leg, const char *event, sip_move_h *cb, void *arg)
{
	struct sip *s = o->sip;
	struct store_job job = {.op = STORE_OP_BINDING_LIST};
	struct leg_state st;
	struct own_ask *a;

	if (call_move(c) || c->slot[o->slot])
		return EBUSY;
	if (c->state != SIP_CALL_ANSWERED || !c->near || !c->far || c->ack_pending)
		return EAGAIN;
	if (!s->conf.store)
		return ENOTSUP;
	if (own_leg_aor(c->near, job.binding.aor, sizeof(job.binding.aor)))
		return ENODEV;
	a = ask_new(o, source);
	if (!a)
		return ENOMEM;
	snprintf(a->call_id, sizeof(a->call_id), "%s", c->id);
	if (!leg_state_get(c->near, &st))
		snprintf(a->near_contact, sizeof(a->near_contact), "%s", st.target);
	a->irq = irq;
	a->refer_leg = refer_leg;
	snprintf(a->refer_event, sizeof(a->refer_event), "%s", event ? event : "");
	a->cb = cb;
	a->cb_arg = arg;
	job.at = store_now();
	if (store_submit(s->conf.store, &job, on_list, a)) {
		a->irq = NULL;
		a->cb = NULL;
		own_ask_free(a);
		return EIO;
	}
	return 0;
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
		         err == EBUSY ? "a move is under way" : "the call cannot move now");
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
	free((char *)o->conf.pull_code);
	free((char *)o->conf.push_code);
	free(o);
}

static const struct sip_call_hooks own_hooks = {
    .invite = on_invite,
    .invite_response = on_invite_response,
    .call_active = on_call_active,
    .call_gone = on_call_gone,
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
	o->slot = sip_call_slot_new(s);
	o->aor_slot = o->slot < 0 ? -1 : sip_call_slot_new(s);
	if (o->slot < 0 || o->aor_slot < 0) {
		free((char *)o->conf.pull_code);
		free((char *)o->conf.push_code);
		free(o);
		return ENOSPC;
	}
	err = sip_call_hooks_add(s, &own_hooks, o);
	if (err) {
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
