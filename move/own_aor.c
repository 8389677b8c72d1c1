/*
 * Who owns a call: the AOR of a live binding on the near device's flow (the flow its INVITE
 * came on, or the one its answer came from when we called it), asked of the store when the
 * call is set up and again when another device takes it; never what From/To say alone. And
 * the flows we send a push to.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "move/own_int.h"

static void on_verified(struct store_job *job, void *arg);

long own_binding_pick(const struct store_binding *v, size_t n, const char *claim)
{
	for (size_t i = 0; claim && claim[0] && i < n; i++)
		if (!strcmp(v[i].aor, claim))
			return (long)i;
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i].aor, v[0].aor))
			return -1; /* several AORs on the flow, none the one claimed */
	return n ? 0 : -1;
}

/* The call's place for who owns it, made on first use (freed with the call). */
static struct own_aor *aor_slot(struct own *o, struct call *c)
{
	struct own_aor *a = c->slot[o->aor_slot];

	if (!a) {
		a = su_zalloc(c->home, sizeof(*a));
		c->slot[o->aor_slot] = a;
	}
	return a;
}

/* Ask the store which AOR the near device's flow is registered for. */
static void verify_start(struct own *o, struct call *c, struct own_aor *a)
{
	struct store_job job = {.op = STORE_OP_BINDING_ON_FLOW};
	struct own_ask *q;

	a->leg = c->near;
	a->key[0] = 0;
	a->gen++;
	a->state = OWN_AOR_NONE;
	if (!o->sip->conf.store || !c->near->flow)
		return; /* no store, or a leg read back from it: nothing to check against */
	q = own_ask_new(o, NULL);
	if (!q)
		return;
	q->kind = OWN_ASK_VERIFY;
	q->gen = a->gen;
	snprintf(q->call_id, sizeof(q->call_id), "%s", c->id);
	snprintf(q->flow, sizeof(q->flow), "%s", c->near->flow);
	if (own_leg_aor(c->near, q->claim, sizeof(q->claim)))
		q->claim[0] = 0;
	snprintf(job.binding.flow, sizeof(job.binding.flow), "%s", q->flow);
	snprintf(job.binding.aor, sizeof(job.binding.aor), "%s", q->claim);
	job.at = store_now();
	if (store_submit_read(o->sip->conf.store, &job, on_verified, q)) {
		own_ask_free(q);
		return;
	}
	a->state = OWN_AOR_ASKING;
}

/* The call's AOR as far as it is known for its near leg now; a lookup if not asked yet. */
struct own_aor *own_call_who(struct own *o, struct call *c)
{
	struct own_aor *a;

	if (!c->near || c->state != SIP_CALL_ANSWERED || !(a = aor_slot(o, c)))
		return NULL;
	if (a->leg == c->near && a->state != OWN_AOR_UNKNOWN)
		return a;
	if (a->next && a->next == c->near) {
		/* a pull's or a push's device: its AOR was checked when it came */
		a->leg = c->near;
		a->next = NULL;
		a->gen++;
		a->state = OWN_AOR_VERIFIED;
		snprintf(a->key, sizeof(a->key), "%s", a->next_key);
		return a;
	}
	verify_start(o, c, a);
	return a;
}

const char *own_call_aor_peek(struct own *o, struct call *c)
{
	struct own_aor *a = c->near && c->state == SIP_CALL_ANSWERED ? c->slot[o->aor_slot] : NULL;

	if (a && a->next && a->next == c->near)
		return own_call_aor(o, c); /* promotes it: no lookup */
	return a && a->leg == c->near && a->state == OWN_AOR_VERIFIED ? a->key : NULL;
}

const char *own_call_aor(struct own *o, struct call *c)
{
	struct own_aor *a = own_call_who(o, c);

	return a && a->state == OWN_AOR_VERIFIED ? a->key : NULL;
}

void own_call_aor_next(struct own *o, struct call *c, const struct leg *leg, const char *aor)
{
	struct own_aor *a = aor_slot(o, c);

	if (!a)
		return;
	a->next = leg;
	snprintf(a->next_key, sizeof(a->next_key), "%s", aor);
}

static void on_verified(struct store_job *job, void *arg)
{
	struct own_ask *q = arg;
	struct own *o = q->own;
	struct call *c;
	struct own_aor *a;
	long i;

	if (o->sip->detached)
		return; /* exiting: the stop frees it */
	c = call_find(o->sip, q->call_id);
	a = c ? c->slot[o->aor_slot] : NULL;
	if (a && a->gen == q->gen && a->leg == c->near) {
		i = job->err ? -1 : own_binding_pick(job->bindings, job->n, q->claim);
		if (i >= 0) {
			a->state = OWN_AOR_VERIFIED;
			snprintf(a->key, sizeof(a->key), "%s", job->bindings[i].aor);
			own_node_call_aor(o, c); /* with its row, for a pull on any node */
		} else {
			a->state = OWN_AOR_NONE;
		}
		LOG_DEBUG("own", "%s: the near device (%s) is %s", c->id, q->flow,
		          i >= 0 ? a->key : "of no live binding: no own-device moves");
	}
	own_ask_free(q);
}

void own_call_aor_set(struct own *o, struct call *c, const char *aor)
{
	struct own_aor *a = aor_slot(o, c);

	if (!a)
		return;
	a->leg = c->near;
	a->gen++; /* a lookup still under way answers for nothing */
	a->state = OWN_AOR_VERIFIED;
	snprintf(a->key, sizeof(a->key), "%s", aor);
	own_node_call_aor(o, c);
}

url_t *own_flow_url(su_home_t *home, const char *flow, const char **why)
{
	char proto[4], host[INET6_ADDRSTRLEN], buf[INET6_ADDRSTRLEN + 48];
	unsigned char a[16];
	const char *p = flow ? strchr(flow, ':') : NULL, *h, *e;
	unsigned long port;
	char *end;
	size_t n;

	*why = "not a flow";
	if (!p || (size_t)(p - flow) >= sizeof(proto))
		return NULL;
	memcpy(proto, flow, (size_t)(p - flow));
	proto[p - flow] = 0;
	if (strcmp(proto, "udp") && strcmp(proto, "tcp") && strcmp(proto, "tls"))
		return NULL;
	h = p + 1;
	if (*h == '[') {
		e = strchr(++h, ']');
		if (!e || e[1] != ':')
			return NULL;
		p = e + 1;
	} else {
		e = p = strrchr(h, ':');
		if (!e)
			return NULL;
	}
	n = (size_t)(e - h);
	if (!n || n >= sizeof(host))
		return NULL;
	memcpy(host, h, n);
	host[n] = 0;
	port = strtoul(p + 1, &end, 10);
	if (*end || !port || port > 65535)
		return NULL;
	*why = "not an address we send to";
	if (inet_pton(AF_INET, host, a) == 1) {
		if (!a[0] || a[0] >= 224) /* 0/8 unspecified, multicast, reserved, broadcast */
			return NULL;
		snprintf(buf, sizeof(buf), "sip:%s:%lu;transport=%s", host, port, proto);
	} else if (inet_pton(AF_INET6, host, a) == 1) {
		static const unsigned char zero[16];

		if (a[0] == 0xff || !memcmp(a, zero, 16)) /* multicast, unspecified */
			return NULL;
		snprintf(buf, sizeof(buf), "sip:[%s]:%lu;transport=%s", host, port, proto);
	} else {
		return NULL;
	}
	*why = NULL;
	return url_make(home, buf);
}
