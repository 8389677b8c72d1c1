/*
 * Own devices across nodes: every call's near AOR goes with its row in the store, so that a
 * pull reaching any node learns the AOR's newest live call there (with the binding of the
 * device's flow, one round trip). When another node serves it, this node bridges the device's
 * INVITE there, as a code redeemed on the wrong node is, to sip:<pull_code>.<call>.<token>@node:
 * the token (codes/code.h, signed with the nodes' shared [codes] hmac_key_file, valid
 * OWN_NODE_TTL seconds, taken once) names the call and its AOR, so that the serving node pulls
 * that call for a device only another node saw, and nobody else can ask it to.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "move/own_int.h"

#define OWN_NODE_TTL  10 /* seconds a pull's token, node to node, is valid */
#define OWN_NODE_USED 64 /* tokens remembered as taken (they expire in OWN_NODE_TTL) */

/* Per process: a token names one call, which one stack serves. */
static struct {
	uint8_t hash[CODE_HASH_LEN];
	time_t until;
} used[OWN_NODE_USED];
static unsigned used_next;

/* The 64 bits a token signs: the call and its near AOR, so a token pulls that pair only. */
static uint64_t pull_id64(const char *call_id, const char *aor)
{
	unsigned char md[SHA256_DIGEST_LENGTH];
	char buf[16 + 64 + OWN_KEY_MAX];
	int n = snprintf(buf, sizeof(buf), "qrxfer pull %s %s", call_id, aor);
	uint64_t v = 0;

	SHA256((const unsigned char *)buf, n > 0 && (size_t)n < sizeof(buf) ? (size_t)n : 0, md);
	for (int i = 0; i < 8; i++)
		v = v << 8 | md[i];
	return v ? v : 1;
}

void own_node_call_aor(struct own *o, struct call *c)
{
	struct sip *s = o->sip;
	struct store_job *job;
	const char *aor;

	if (!s->conf.store || !o->conf.pull_code || !(aor = own_call_aor(o, c)))
		return;
	job = calloc(1, sizeof(*job));
	if (!job)
		return;
	job->op = STORE_OP_CALL_AOR;
	snprintf(job->id, sizeof(job->id), "%s", c->id);
	snprintf(job->binding.aor, sizeof(job->binding.aor), "%s", aor);
	/* batched with the call's row, after it (order is kept) */
	if (store_submit_later(s->conf.store, job))
		LOG_ERR("own", "%s: store: cannot queue the call's AOR", c->id);
	free(job);
}

int own_node_pull(struct own_ask *a, const struct store_job *job, const struct store_binding *b)
{
	struct own *o = a->own;
	struct sip *s = o->sip;
	const sip_t *sip = sip_object(a->req);
	char token[CODE_TOKEN_LEN + 1], user[256];
	nta_incoming_t *irq;
	url_t *target;
	int err;

	if (!job->call.node[0] || !strcmp(job->call.node, s->node) || !sip) {
		/* none, or this node's: served here, found by its id, not by a walk of the calls */
		snprintf(a->call_id, sizeof(a->call_id), "%.32s", job->call.id);
		return 0;
	}
	err = s->conf.keys ? code_token_make(s->conf.keys, pull_id64(job->call.id, b->aor),
	                                     time(NULL) + OWN_NODE_TTL, token, sizeof(token))
	                   : ENOTSUP;
	target = err ? NULL : url_make(s->home, job->call.node);
	if (!target || !target->url_host ||
	    snprintf(user, sizeof(user), "%s.%s.%s", o->conf.pull_code, job->call.id, token) >=
	        (int)sizeof(user)) {
		LOG_ERR("own", "pull by %s: cannot reach node %s: %s", a->flow, job->call.node,
		        err ? strerror(err) : "not a SIP URI");
		su_free(s->home, target);
		return 0;
	}
	target->url_user = user;
	LOG_INFO("own", "pull by %s of %s: call %s is on %s: bridging the INVITE there", b->contact,
	         b->aor, job->call.id, job->call.node);
	irq = a->irq;
	a->irq = NULL;
	nta_incoming_bind(irq, NULL, NULL);
	invite_bridge(s, irq, sip, 0, target, 0);
	su_free(s->home, target);
	own_ask_free(a);
	return 1;
}

struct call *own_node_local_call(struct own *o, const char *call_id, const char *aor)
{
	struct call *c = call_id && call_id[0] ? call_find(o->sip, call_id) : NULL;
	const char *key = c ? own_call_aor(o, c) : NULL;

	if (!key || strcmp(key, aor) || c->state != SIP_CALL_ANSWERED || !c->near || !c->far ||
	    c->ack_pending || call_move(c) || c->slot[o->slot])
		return NULL;
	return c;
}

/* Whether a token was taken already; if not, it is from now on. */
static int token_taken(const char *token, time_t until)
{
	uint8_t h[CODE_HASH_LEN];
	time_t now = time(NULL);

	if (code_token_hash(token, h))
		return 1;
	for (unsigned i = 0; i < OWN_NODE_USED; i++)
		if (used[i].until >= now && !CRYPTO_memcmp(used[i].hash, h, sizeof(h)))
			return 1;
	memcpy(used[used_next].hash, h, sizeof(h));
	used[used_next].until = until;
	used_next = (used_next + 1) % OWN_NODE_USED;
	return 0;
}

static void refuse(struct sip *s, nta_incoming_t *irq, const char *source, const char *why)
{
	LOG_INFO("own", "pull from another node (%s) refused: %s", source, why);
	metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
	sip_reply(irq, 403, "No Call Of Yours Here", TAG_END());
}

int own_node_invite(struct own *o, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	const url_t *u = sip->sip_request->rq_url;
	size_t pn = o->conf.pull_code ? strlen(o->conf.pull_code) : 0;
	char source[STORE_SOURCE_MAX], call_id[33], token[CODE_TOKEN_LEN + 1];
	struct store_binding b = {.expires_at = 0};
	const char *p, *aor;
	struct own_ask *a;
	struct call *c;
	uint64_t id64 = 0;
	time_t exp = 0;
	char *contact;

	if (!pn || !u->url_user || strncmp(u->url_user, o->conf.pull_code, pn) ||
	    u->url_user[pn] != '.' || !move_for_us(s, u) || sip->sip_to->a_tag)
		return 0;
	move_source_of(req, source, sizeof(source));
	p = u->url_user + pn + 1;
	if (strlen(p) != 32 + 1 + CODE_TOKEN_LEN || p[32] != '.' ||
	    strspn(p, "0123456789abcdef") != 32) {
		move_guess_failed(s, source, STORE_KEY_TOKEN, NULL);
		refuse(s, irq, source, "malformed");
		return 1;
	}
	memcpy(call_id, p, 32);
	call_id[32] = 0;
	snprintf(token, sizeof(token), "%s", p + 33);
	if (!s->conf.keys || code_token_verify(s->conf.keys, token, time(NULL), &id64, &exp)) {
		move_guess_failed(s, source, STORE_KEY_TOKEN, NULL);
		refuse(s, irq, source, "its token does not verify or expired");
		return 1;
	}
	c = call_find(s, call_id);
	aor = c ? own_call_aor(o, c) : NULL;
	if (!aor || pull_id64(call_id, aor) != id64) {
		refuse(s, irq, source, "no such call here, or its user changed");
		return 1;
	}
	if (token_taken(token, exp)) {
		refuse(s, irq, source, "its token was used");
		return 1;
	}
	a = calloc(1, sizeof(*a));
	if (!a) {
		sip_reply(irq, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		return 1;
	}
	a->own = o;
	a->arrived = move_now_us();
	snprintf(a->source, sizeof(a->source), "%s", source);
	snprintf(a->flow, sizeof(a->flow), "node %.100s", source);
	snprintf(a->call_id, sizeof(a->call_id), "%s", call_id); /* the token's call */
	LIST_INSERT_HEAD(&o->asks, a, link);
	a->irq = irq;
	a->req = msg_ref_create(req);
	snprintf(b.aor, sizeof(b.aor), "%s", aor);
	contact =
	    url_as_string(NULL, sip->sip_contact ? sip->sip_contact->m_url : sip->sip_from->a_url);
	snprintf(b.contact, sizeof(b.contact), "%s", contact ? contact : "?");
	free(contact);
	snprintf(b.flow, sizeof(b.flow), "%s", a->flow);
	own_pull_found(a, &b);
	return 1;
}

/* A move gave the call a new near device: its AOR goes with the call's row from now on. */
static void on_moved(void *arg, struct call *c, struct leg *leg)
{
	own_node_call_aor(arg, c);
}

static const struct move_observer own_node_observer = {.moved = on_moved};

int own_node_init(struct own *o)
{
	return move_observer_add(o->sip, &own_node_observer, o);
}
