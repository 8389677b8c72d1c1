/*
 * Pull and push as moves: a move without a code (its record has random hashes no device can
 * present), redeemed at once by the binding check, then the move's own media switch: the
 * pulling device is B as a code's INVITE would be; a push dials the user's devices without an
 * offer (RFC 3725) and the first that answers is B. The others are cancelled; nobody answering
 * leaves the call with A.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "move/own_int.h"

static void on_inserted(struct store_job *job, void *arg)
{
	struct move *m = arg;

	m->jobs--;
	if (m->sip->detached)
		return;
	if (m->linger && !m->jobs) {
		move_free(m);
		return;
	}
	if (job->err)
		LOG_ERR("own", "%s: store: insert: %s", m->id, strerror(job->err));
}

/* A move on c that no code can redeem, already redeemed (how: "pull", "push"). */
static struct move *own_move_new(struct own *o, struct call *c, const char *how, const char *source)
{
	struct sip *s = o->sip;
	struct move_stack *ms = move_stack(s);
	struct store_job job = {.op = STORE_OP_MOVE_INSERT};
	struct move *m = calloc(1, sizeof(*m));

	if (!m)
		return NULL;
	m->sip = s;
	m->call = c;
	snprintf(m->call_id, sizeof(m->call_id), "%s", c->id);
	m->created = time(NULL);
	m->expires = m->created + o->conf.ring_timeout;
	do {
		if (RAND_bytes((unsigned char *)&m->id64, sizeof(m->id64)) != 1) {
			free(m);
			return NULL;
		}
	} while (!m->id64 || move_by_id64(s, m->id64));
	snprintf(m->id, sizeof(m->id), "%016llx", (unsigned long long)m->id64);
	m->timer = su_timer_create(su_root_task(s->root), 0);
	if (!m->timer || RAND_bytes(job.move.token_hash, sizeof(job.move.token_hash)) != 1 ||
	    RAND_bytes(job.move.code_hash, sizeof(job.move.code_hash)) != 1) {
		if (m->timer)
			su_timer_destroy(m->timer);
		free(m);
		return NULL;
	}
	m->phase = MOVE_STORING;
	metric_inc(METRIC_MOVES_ACTIVE);
	metric_inc(METRIC_MOVES_TOTAL);
	move_index(m);
	LIST_INSERT_HEAD(&ms->moves, m, link);
	c->feature = m;
	call_touch(c, 1);
	snprintf(job.move.id, sizeof(job.move.id), "%s", m->id);
	snprintf(job.move.call_id, sizeof(job.move.call_id), "%s", c->id);
	job.move.created_at = store_now();
	job.move.expires_at = job.move.created_at + (int64_t)o->conf.ring_timeout * 1000;
	job.move.state = STORE_MOVE_REDEEMED;
	snprintf(job.move.redeemed_by, sizeof(job.move.redeemed_by), "%s", source ? source : "?");
	m->jobs++;
	if (store_submit(s->conf.store, &job, on_inserted, m))
		m->jobs--;
	move_to(m, MOVE_OFFERED, how);
	move_to(m, MOVE_REDEEMED, how);
	snprintf(m->taken_from, sizeof(m->taken_from), "%s", source ? source : "?");
	LOG_INFO("move", "%s: %s asked by %s on call %s", m->id, how, source ? source : "?", c->id);
	return m;
}

/* The most recent call whose near party is aor and that may move now. */
static struct call *aor_call(struct own *o, const char *aor)
{
	struct call *c, *found = NULL;
	const char *key;

	TAILQ_FOREACH(c, &o->sip->calls, link)
	{
		if (c->state != SIP_CALL_ANSWERED || !c->near || !c->far || c->ack_pending ||
		    call_move(c) || c->slot[o->slot])
			continue;
		key = own_call_aor_peek(o, c);
		if (key && !strcmp(key, aor))
			found = c;
	}
	return found;
}

void own_pull_found(struct own_ask *a, const struct store_binding *b)
{
	struct own *o = a->own;
	struct call *c = own_node_local_call(o, a->call_id, b->aor);
	const sip_t *sip = sip_object(a->req);
	const sip_payload_t *pl = body_pl(sip);
	struct move *m;
	struct leg *leg;

	if (!c)
		c = aor_call(o, b->aor);
	if (!c) {
		LOG_INFO("own", "pull by %s (flow %s) refused: no call of %s to take", b->contact,
		         a->flow, b->aor);
		metric_inc(METRIC_SIP_REQUESTS_REJECTED_TOTAL);
		nta_incoming_bind(a->irq, NULL, NULL);
		sip_reply(a->irq, 403, "No Call Of Yours Here", TAG_END());
		a->irq = NULL;
		own_ask_free(a);
		return;
	}
	m = own_move_new(o, c, "pull", a->source);
	if (!m) {
		own_ask_free(a); /* answers 500 */
		return;
	}
	m->t_redeem = a->arrived;
	nta_incoming_bind(a->irq, NULL, NULL);
	leg = leg_accept(c, 1, a->irq, sip);
	if (!leg) {
		move_fail(m, 500, "out of memory");
		own_ask_free(a);
		return;
	}
	a->irq = NULL;
	lookup_found(o->pulls, a->source); /* a pull that takes a call costs no budget */
	own_call_aor_next(o, c, leg, b->aor);
	m->b = leg;
	m->b_sdp = pl && pl->pl_len ? strndup(pl->pl_data, pl->pl_len) : NULL;
	m->b_offered = m->b_sdp != NULL;
	m->taken_by = strdup(b->contact);
	move_event(m, "presented", "pulled by %s of %s on %s", b->contact, b->aor, a->flow);
	own_ask_free(a);
	if (o->conf.confirm)
		move_after_redeem(m);
	else
		move_go(m);
}

void own_push_free(struct own_push *p)
{
	if (p->timer)
		su_timer_destroy(p->timer);
	if (p->give_up)
		su_timer_destroy(p->give_up);
	free(p->later);
	free(p);
}

/*
 * Dial one device without an offer (RFC 3725 flow I), as the moving user: to its registered
 * flow (the address and transport its REGISTER came from: RFC 5626 5.3, the edge proxy rule),
 * with its contact as the Request-URI. A binding whose flow is no address we send to is not
 * rung: its Contact alone is what its REGISTER said, and would let it make us call anywhere.
 */
static int ring(struct own_push *p, const struct store_binding *b)
{
	struct call *c = p->call;
	char from[STORE_URI_MAX + 16];
	const char *why = NULL;
	url_t *tu, *hop;
	sip_addr_t *to, *fr;
	struct leg *leg;

	if (p->nring >= OWN_RING_MAX)
		return ENOSPC;
	hop = own_flow_url(c->home, b->flow, &why);
	if (!hop) {
		move_event(p->m, "ring", "%s not rung: its flow %s is %s", b->contact, b->flow,
		           why);
		LOG_INFO("own", "%s: %s not rung: its flow %s is %s", c->id, b->contact, b->flow,
		         why);
		return EPERM;
	}
	snprintf(from, sizeof(from), "<sip:%s>", p->aor);
	tu = url_make(c->home, b->contact);
	if (tu && tu->url_type != url_sip && tu->url_type != url_sips)
		tu = NULL;
	if (tu) {
		tu->url_headers = NULL; /* a contact's headers are no business of ours */
		if (tu->url_params)     /* nor where it says to send: that is its flow */
			tu->url_params =
			    url_strip_param_string(su_strdup(c->home, tu->url_params), "maddr");
	}
	/* To names the user (the AOR), the Request-URI the device's contact. */
	to = sip_to_make(c->home, from);
	fr = sip_from_make(c->home, from);
	leg = tu && to && fr ? leg_dial(c, 1, tu, fr, to, 0) : NULL;
	if (!leg)
		return ENOMEM;
	leg->next_hop = hop;
	leg->tcp = !strncmp(b->flow, "tcp:", 4);
	leg->secure = !strncmp(b->flow, "tls:", 4);
	leg->uri = su_strdup(c->home, b->contact);
	if (leg_invite(leg, NULL, NULL, TAG_END())) {
		call_leg_terminated(leg);
		return EIO;
	}
	p->ring[p->nring++] = leg;
	move_event(p->m, "ring", "INVITE without an offer to %s through its flow %s", b->contact,
	           b->flow);
	return 0;
}

/* Stop ringing: every device still ringing gets CANCEL. */
static void hang_up_others(struct own_push *p, struct leg *keep)
{
	for (unsigned i = 0; i < p->nring; i++)
		if (p->ring[i] != keep && !p->ring[i]->terminated)
			call_leg_end(p->ring[i], "SIP;cause=200;text=\"Call completed elsewhere\"");
}

static void push_end(struct own_push *p)
{
	struct call *c = p->call;

	p->done = 1;
	if (c->slot[p->own->slot] == p)
		c->slot[p->own->slot] = NULL;
	own_push_free(p);
}

static void push_fail(struct own_push *p, const char *why)
{
	struct move *m = p->m;
	struct call *c = p->call;

	hang_up_others(p, NULL);
	if (call_move(c) == m)
		move_fail(m, 480, "%s", why);
	push_end(p);
}

static void ring_later(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct own_push *p = arg;

	if (call_move(p->call) != p->m || p->m->phase != MOVE_DIALING ||
	    p->call->state != SIP_CALL_ANSWERED) {
		LOG_INFO("own", "%s: the push is over: its devices are let go", p->call->id);
		hang_up_others(p, NULL);
		push_end(p);
		return;
	}
	for (size_t i = 0; i < p->nlater; i++)
		ring(p, &p->later[i]);
	free(p->later);
	p->later = NULL;
	p->nlater = 0;
	if (!p->nring || p->nfailed == p->nring)
		push_fail(p, "no device of the user answered");
}

static void give_up(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct own_push *p = arg;

	push_fail(p, "no device of the user answered in time");
}

int own_push_response(struct own *o, struct call *c, struct leg *leg, int status, const sip_t *sip)
{
	struct own_push *p = c->slot[o->slot];
	struct move *m;
	unsigned i;

	if (!p || p->done)
		return 0;
	for (i = 0; i < p->nring && p->ring[i] != leg; i++)
		;
	if (i == p->nring)
		return 0;
	m = p->m;
	if (call_move(c) != m || m->phase != MOVE_DIALING) {
		/* Not ours any more (the move ended, the call moved): no device rings on. One
		 * that answered is ACKed and hung up by the core (a leg nobody takes). */
		LOG_INFO("own", "%s: the push is over: its devices are let go", c->id);
		hang_up_others(p, status >= 200 && status < 300 ? leg : NULL);
		push_end(p);
		return 0;
	}
	if (status < 200)
		return 1;
	if (status >= 300) {
		p->nfailed++;
		move_event(m, "ring", "%s answered %d", leg->uri ? leg->uri : "?", status);
		if (p->nfailed == p->nring && !p->nlater) {
			push_fail(p, "no device of the user answered");
		} else if (p->nfailed == p->nring) {
			su_timer_reset(p->timer); /* the nearest refused: the others now */
			ring_later(NULL, NULL, p);
		}
		return 0; /* the core lets go of the leg */
	}
	/* The first to answer takes the call: it is B from here, as a dialled code's device. */
	hang_up_others(p, leg);
	own_call_aor_next(p->own, c, leg, p->aor);
	m->b = leg;
	free(m->target);
	m->target = leg->uri ? strdup(leg->uri) : NULL;
	push_end(p);
	return move_invite_response(m, leg, status, NULL, sip);
}

void own_push_answer(struct own_ask *a, int err, struct move *m)
{
	struct sip *s = a->own->sip;

	if (a->irq) {
		if (err)
			own_push_refused(a->irq, err);
		else
			sip_reply(a->irq, a->by_refer ? 202 : 200, a->by_refer ? "Accepted" : "OK",
			          TAG_END());
		a->irq = NULL;
	}
	if (m && m->call && a->by_refer && a->refer_event[0]) {
		/* The REFER's leg, found again: it may have gone during the store's round trip. */
		struct leg *rl = leg_by_dialog(s, a->refer_call_id, a->refer_ltag, a->refer_rtag);

		if (rl && rl->call == m->call && rl == m->call->near) {
			m->refer_leg = rl;
			m->refer_event = strdup(a->refer_event);
		}
	}
	if (err && a->cb)
		a->cb(err, NULL, a->cb_arg);
	else if (m && a->cb) {
		m->cb = a->cb;
		m->cb_arg = a->cb_arg;
		move_reply(m, 0);
	}
	a->cb = NULL;
	own_ask_free(a);
}

void own_push_found(struct own_ask *a, struct store_binding *v, size_t n,
                    const struct store_hint *h, size_t nh)
{
	struct own *o = a->own;
	struct call *c = call_find(o->sip, a->call_id);
	struct store_binding *cand = NULL;
	int *rank = NULL;
	const char *near_flow = NULL;
	struct own_push *p = NULL;
	size_t nc = 0, first;
	int err = 0;

	if (!c || c->state != SIP_CALL_ANSWERED || !c->near || !c->far)
		err = ENOENT;
	else if (call_move(c) || c->slot[o->slot])
		err = EBUSY;
	else if (!c->near->flow || strcmp(c->near->flow, a->flow))
		err = EAGAIN;             /* another device took the call meanwhile */
	near_flow = err ? NULL : a->flow; /* the near device's: not rung */
	if (!err) {
		cand = calloc(n ? n : 1, sizeof(*cand));
		rank = calloc(n ? n : 1, sizeof(*rank));
		p = calloc(1, sizeof(*p));
		if (!cand || !rank || !p)
			err = ENOMEM;
	}
	/* The user's other devices, nearest first (a stable insertion: newest first within). */
	for (size_t i = 0; !err && i < n; i++) {
		int r;
		size_t j;

		if (near_flow && !strcmp(v[i].flow, near_flow))
			continue;
		r = own_hint_rank(o, h, nh, v[i].aor, &v[i], near_flow);
		for (j = nc; j > 0 && rank[j - 1] < r; j--) {
			cand[j] = cand[j - 1];
			rank[j] = rank[j - 1];
		}
		cand[j] = v[i];
		rank[j] = r;
		nc++;
	}
	if (!err && !nc)
		err = ENODEV;
	if (err) {
		LOG_INFO("own", "push on %s refused: %s", a->call_id,
		         err == ENODEV  ? "no other live device of the user"
		         : err == EBUSY ? "a move is under way"
		                        : "the call cannot move now");
		free(cand);
		free(rank);
		free(p);
		own_push_answer(a, err, NULL);
		return;
	}
	p->own = o;
	p->call = c;
	snprintf(p->aor, sizeof(p->aor), "%s", a->aor);
	p->m = own_move_new(o, c, "push", a->source);
	p->timer = su_timer_create(su_root_task(o->sip->root), 0);
	p->give_up = su_timer_create(su_root_task(o->sip->root), 0);
	if (!p->m || !p->timer || !p->give_up) {
		if (p->m)
			move_fail(p->m, 500, "out of memory");
		own_push_free(p);
		free(cand);
		free(rank);
		own_push_answer(a, ENOMEM, NULL);
		return;
	}
	c->slot[o->slot] = p;
	p->m->third_party = 1;
	p->m->taken_by = strdup("mine");
	move_to(p->m, MOVE_DIALING, "ringing the user's other devices");
	/* A hint: the nearest rings alone for a while; without one (or with a tie), all at once. */
	first = rank[0] > 0 && nc > 1 && rank[0] > rank[1] && o->conf.near_ring ? 1 : nc;
	if (first < nc) {
		move_event(p->m, "near", "%s first: %s", cand[0].contact,
		           rank[0] > 1 ? "seen near its user" : "on the near device's network");
		p->later = malloc((nc - 1) * sizeof(*p->later));
		if (p->later) {
			memcpy(p->later, cand + 1, (nc - 1) * sizeof(*p->later));
			p->nlater = nc - 1;
		}
		su_timer_set_interval(p->timer, ring_later, p,
		                      (su_duration_t)o->conf.near_ring * 1000);
	}
	for (size_t i = 0; i < first; i++)
		ring(p, &cand[i]);
	free(cand);
	free(rank);
	su_timer_set_interval(p->give_up, give_up, p, (su_duration_t)o->conf.ring_timeout * 1000);
	own_push_answer(a, 0, p->m);
	if (!p->nring && !p->nlater)
		push_fail(p, "no device of the user could be called");
}
