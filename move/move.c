/*
 * The move: put a new device (B) in place of the near device (A) while the far dialog with C
 * stays as it is. This file: a move's life (tables, state, events, failure, the end).
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "move/move_int.h"
#include "util/hash.h"

long long move_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *sip_move_state_name(enum sip_move_state st)
{
	static const char *const names[] = {"storing", "offered", "redeemed", "confirming",
	                                    "moving",  "done",    "failed"};

	return st <= SIP_MOVE_FAILED ? names[st] : "unknown";
}

void move_info_fill(const struct move *m, struct sip_move_info *i)
{
	int offered = m->phase == MOVE_OFFERED || m->phase == MOVE_STORING;

	memset(i, 0, sizeof(*i));
	i->id = m->id;
	i->call_id = m->call_id;
	i->state = move_state(m);
	i->token = offered ? m->token : NULL;
	i->code = offered ? m->code : NULL;
	i->qr_uri = offered ? m->qr_uri : NULL;
	i->reason = m->reason[0] ? m->reason : NULL;
	i->taken_by = m->taken_by;
	i->created = m->created;
	i->expires = m->expires;
	i->ms_redeem_to_reinvite =
	    m->t_redeem && m->t_reinvite ? (m->t_reinvite - m->t_redeem) / 1000 : -1;
	i->ms_redeem_to_answer =
	    m->t_redeem && m->t_answer ? (m->t_answer - m->t_redeem) / 1000 : -1;
	i->show = m->show[0] ? m->show : NULL;
}

void move_reply(struct move *m, int err)
{
	struct sip_move_info info;
	sip_move_h *cb = m->cb;

	if (!cb)
		return;
	m->cb = NULL;
	move_info_fill(m, &info);
	cb(err, err ? NULL : &info, m->cb_arg);
}

/* One event line: in the log and in the move's stored history. */
void move_event(struct move *m, const char *step, const char *fmt, ...)
{
	struct store_job job = {.op = STORE_OP_MOVE_EVENT};
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(job.text, sizeof(job.text), fmt, ap);
	va_end(ap);
	LOG_INFO("move", "%s: %s: %s", m->id, step, job.text);
	snprintf(job.id, sizeof(job.id), "%s", m->id);
	snprintf(job.step, sizeof(job.step), "%s", step);
	job.at = store_now();
	move_store_job(m, &job);
}

static const char *const phase_names[] = {
    [MOVE_STORING] = "storing",
    [MOVE_OFFERED] = "offered",
    [MOVE_REDEEMED] = "redeemed",
    [MOVE_CONFIRMING] = "confirming",
    [MOVE_DIALING] = "dialing",
    [MOVE_REINVITING] = "reinviting",
    [MOVE_GLARE] = "glare",
    [MOVE_ANSWERING] = "answering",
    [MOVE_DONE] = "done",
    [MOVE_FAILED] = "failed",
    [MOVE_ROLLING_BACK] = "rolling-back",
    [MOVE_VERIFYING] = "verifying",
    [MOVE_UNDONE] = "undone",
};

#define TO(p) (1u << (p))

/* Where each phase may go. Every phase but the ends may fail. */
static const unsigned next_phases[] = {
    [MOVE_STORING] = TO(MOVE_OFFERED) | TO(MOVE_FAILED),
    [MOVE_OFFERED] = TO(MOVE_REDEEMED) | TO(MOVE_FAILED),
    [MOVE_REDEEMED] =
        TO(MOVE_CONFIRMING) | TO(MOVE_DIALING) | TO(MOVE_REINVITING) | TO(MOVE_FAILED),
    [MOVE_CONFIRMING] = TO(MOVE_DIALING) | TO(MOVE_REINVITING) | TO(MOVE_FAILED),
    [MOVE_DIALING] = TO(MOVE_REINVITING) | TO(MOVE_FAILED),
    [MOVE_REINVITING] = TO(MOVE_GLARE) | TO(MOVE_ANSWERING) | TO(MOVE_FAILED),
    [MOVE_GLARE] = TO(MOVE_REINVITING) | TO(MOVE_FAILED),
    [MOVE_ANSWERING] = TO(MOVE_DONE) | TO(MOVE_FAILED) | TO(MOVE_VERIFYING),
    [MOVE_VERIFYING] = TO(MOVE_DONE) | TO(MOVE_FAILED),
    [MOVE_DONE] = TO(MOVE_UNDONE),
    [MOVE_UNDONE] = 0,
    [MOVE_FAILED] = TO(MOVE_ROLLING_BACK),
    [MOVE_ROLLING_BACK] = TO(MOVE_FAILED),
};

/* What the API and the store call the move's phase. */
enum sip_move_state move_state(const struct move *m)
{
	switch (m->phase) {
	case MOVE_STORING:
		return SIP_MOVE_STORING;
	case MOVE_OFFERED:
		return SIP_MOVE_OFFERED;
	case MOVE_REDEEMED:
		return SIP_MOVE_REDEEMED;
	case MOVE_CONFIRMING:
		return SIP_MOVE_CONFIRMING;
	case MOVE_DIALING:
	case MOVE_REINVITING:
	case MOVE_GLARE:
	case MOVE_ANSWERING:
	case MOVE_VERIFYING:
		return SIP_MOVE_MOVING;
	case MOVE_DONE:
		return SIP_MOVE_DONE;
	case MOVE_FAILED:
	case MOVE_ROLLING_BACK:
	case MOVE_UNDONE:
		break;
	}
	return SIP_MOVE_FAILED;
}

/* The outside sees a new state: count it, tell the pages, write it (with the reason). */
static void state_changed(struct move *m, enum sip_move_state was)
{
	enum sip_move_state st = move_state(m);
	struct store_job job = {.op = STORE_OP_MOVE_STATE};

	if ((st == SIP_MOVE_DONE || st == SIP_MOVE_FAILED) && was != SIP_MOVE_DONE &&
	    was != SIP_MOVE_FAILED && metric_get(METRIC_MOVES_ACTIVE))
		metric_dec(METRIC_MOVES_ACTIVE);
	/* The store makes offered by insert and redeemed by redeem itself. */
	if (st == SIP_MOVE_STORING || st == SIP_MOVE_OFFERED || st == SIP_MOVE_REDEEMED)
		return;
	snprintf(job.id, sizeof(job.id), "%s", m->id);
	job.move_state = move_store_state(st);
	job.at = store_now();
	snprintf(job.text, sizeof(job.text), "%s", m->reason);
	move_store_job(m, &job);
}

/*
 * The one way a move changes phase: a transition the table does not know is a bug, logged and
 * refused (EPERM) so that the move stays where it was.
 */
int move_to(struct move *m, enum move_phase to, const char *why)
{
	enum sip_move_state was = move_state(m);

	if (!(next_phases[m->phase] & TO(to))) {
		LOG_WARN("move", "%s: %s to %s refused (%s)", m->id, phase_names[m->phase],
		         phase_names[to], why);
		return EPERM;
	}
	m->phase = to;
	if (move_state(m) != was)
		state_changed(m, was);
	return 0;
}

unsigned move_code_bucket(const char *code)
{
	return hash_str(code) % MOVE_BUCKETS;
}

struct move *move_by_id64(struct sip *s, uint64_t id64)
{
	for (struct move *m = move_stack(s)->move_table[id64 % MOVE_BUCKETS]; m; m = m->hnext)
		if (m->id64 == id64)
			return m;
	return NULL;
}

struct move *move_by_id(struct sip *s, const char *id)
{
	char *end;
	unsigned long long v;
	struct move *m;

	if (strlen(id) != 16)
		return NULL;
	v = strtoull(id, &end, 16);
	m = *end ? NULL : move_by_id64(s, v);
	return m && !strcmp(m->id, id) ? m : NULL;
}

/* A move whose numeric code is digits and that is still on offer, or NULL. */
struct move *move_by_code(struct sip *s, const char *digits)
{
	size_t n = strlen(digits);

	for (struct move *m = move_stack(s)->code_table[move_code_bucket(digits)]; m; m = m->cnext)
		if ((m->phase == MOVE_OFFERED || m->phase == MOVE_STORING) &&
		    strlen(m->code) == n && !CRYPTO_memcmp(m->code, digits, n))
			return m;
	return NULL;
}

void move_index(struct move *m)
{
	struct sip *s = m->sip;
	struct move_stack *ms = move_stack(s);

	m->hnext = ms->move_table[m->id64 % MOVE_BUCKETS];
	ms->move_table[m->id64 % MOVE_BUCKETS] = m;
	m->cnext = ms->code_table[move_code_bucket(m->code)];
	ms->code_table[move_code_bucket(m->code)] = m;
}

void move_unindex(struct move *m)
{
	struct sip *s = m->sip;
	struct move_stack *ms = move_stack(s);
	struct move **mp;

	for (mp = &ms->move_table[m->id64 % MOVE_BUCKETS]; *mp; mp = &(*mp)->hnext)
		if (*mp == m) {
			*mp = m->hnext;
			break;
		}
	for (mp = &ms->code_table[move_code_bucket(m->code)]; *mp; mp = &(*mp)->cnext)
		if (*mp == m) {
			*mp = m->cnext;
			break;
		}
}

void move_free(struct move *m)
{
	LIST_REMOVE(m, link);
	move_unindex(m);
	if (m->call && call_move(m->call) == m)
		m->call->feature = NULL;
	if (m->timer)
		su_timer_destroy(m->timer);
	free(m->taken_by);
	free(m->target);
	free(m->b_sdp);
	free(m->a_sdp);
	free(m->a_sdp_out);
	free(m->refer_event);
	move_code_free(m->made);
	OPENSSL_cleanse(m->token, sizeof(m->token));
	OPENSSL_cleanse(m->code, sizeof(m->code));
	OPENSSL_cleanse(m->show, sizeof(m->show));
	free(m);
}

static void linger_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;

	m->linger = 1;
	if (!m->jobs)
		move_free(m);
}

/* The move is over: let go of the call and keep the record readable for a while. */
void move_detach(struct move *m)
{
	if (m->call && call_move(m->call) == m)
		m->call->feature = NULL;
	m->call = NULL;
	m->b = NULL;
	move_code_free(m->made);
	m->made = NULL;
	su_timer_set_interval(m->timer, linger_expired, m, MOVE_LINGER_MS);
}

/* Progress for A's REFER, as message/sipfrag (RFC 3515 section 2.4.5). */
void move_notify_refer(struct move *m, int status, const char *phrase, int final)
{
	char frag[96];
	struct leg *l, *to = NULL;

	if (!m->refer_leg || !m->refer_event || !m->call)
		return;
	SLIST_FOREACH(l, &m->call->legs, link)
	if (l == m->refer_leg && !l->terminated)
		to = l;
	if (!to)
		return;
	snprintf(frag, sizeof(frag), "SIP/2.0 %d %s\r\n", status, phrase);
	leg_send(to, SIP_METHOD_NOTIFY, NULL, NULL, SIPTAG_EVENT_STR(m->refer_event),
	         SIPTAG_SUBSCRIPTION_STATE_STR(final ? "terminated;reason=noresource"
	                                             : "active;expires=60"),
	         SIPTAG_CONTACT(b2bua_contact(m->sip, to->secure, to->tcp)),
	         SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(frag),
	         TAG_END());
	if (final)
		m->refer_leg = NULL;
}

/* Our own MESSAGE on a leg; its answer goes nowhere. */
void move_leg_message(struct leg *leg, const char *ctype, const char *body, size_t len)
{
	sip_payload_t *pl;

	if (!leg->dlg || leg->terminated || leg->ending)
		return;
	pl = sip_payload_create(leg->call->home, body, (isize_t)len);
	leg_send(leg, SIP_METHOD_MESSAGE, NULL, NULL, SIPTAG_CONTENT_TYPE_STR(ctype),
	         SIPTAG_PAYLOAD(pl), TAG_END());
	su_free(leg->call->home, pl);
}

int sip_move_get(struct sip *s, const char *move_id, sip_move_h *cb, void *arg)
{
	struct sip_move_info info;
	struct move *m = move_by_id(s, move_id);

	if (!m)
		return ENOENT;
	move_info_fill(m, &info);
	cb(0, &info, arg);
	return 0;
}

void move_fail(struct move *m, int status, const char *fmt, ...)
{
	struct call *c = m->call;
	struct leg *b = m->b;
	char reason[160];
	va_list ap;

	enum move_phase was = m->phase;

	if (m->phase == MOVE_DONE || move_state(m) == SIP_MOVE_FAILED)
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	if (!status)
		status = 480;
	metric_inc(METRIC_MOVES_FAILED_TOTAL);
	LOG_INFO("move", "%s: failed: %s", m->id, m->reason);
	move_to(m, MOVE_FAILED, m->reason); /* the store's event line carries the reason */
	su_timer_reset(m->timer);
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"Move failed\"", status);
	if (b && b->dlg && !b->terminated && !b->ending) {
		if (b->incoming && !b->answered) {
			b->ending = 1;
			leg_answer(b, status, NULL, NULL, NULL, SIPTAG_REASON_STR(reason),
			           TAG_END());
			call_leg_terminated(b);
		} else {
			call_leg_end(b, reason);
		}
	}
	m->b = NULL;
	move_notify_refer(m, status,
	                  sip_status_phrase(status) ? sip_status_phrase(status) : "Failed", 1);
	move_reply(m, EPROTO);
	if (c && (was == MOVE_ANSWERING || (was == MOVE_VERIFYING && m->xr)) && !m->a_gone) {
		move_rollback(m);
		return;
	}
	if (c && m->a_gone)
		call_end(c, status, "SIP;cause=200;text=\"Near device left during a failed move\"");
	move_detach(m);
}

void move_offer_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;

	if (m->phase == MOVE_STORING)
		move_fail(m, 503, "the store did not take the move in time");
	else if (m->phase == MOVE_OFFERED)
		move_fail(m, 408, "the code expired unused");
	else if (m->phase == MOVE_CONFIRMING)
		move_fail(m, 408, "no answer to the confirmation in time");
}

void move_call_ending(struct move *m)
{
	if (m->phase != MOVE_DONE && move_state(m) != SIP_MOVE_FAILED) {
		snprintf(m->reason, sizeof(m->reason), "the call ended");
		metric_inc(METRIC_MOVES_FAILED_TOTAL);
		LOG_INFO("move", "%s: failed: %s", m->id, m->reason);
		move_to(m, MOVE_FAILED, m->reason);
		su_timer_reset(m->timer);
		move_notify_refer(m, 487, "Request Terminated", 1);
		move_reply(m, EPROTO);
	}
	/* call_end() ends every leg, B included. */
	move_detach(m);
}

void move_call_gone(struct move *m)
{
	move_detach(m);
}

/* ---- the move's part of a stack: its hooks, its tables ---- */

static int on_invite(void *arg, struct sip *s, nta_incoming_t *irq, const sip_t *sip, msg_t *req)
{
	return move_invite(s, irq, sip, req);
}

static int on_invite_response(void *arg, struct call *c, struct leg *leg, int status,
                              const char *phrase, const sip_t *sip)
{
	return call_move(c) && move_invite_response(call_move(c), leg, status, phrase, sip);
}

static int on_ack(void *arg, struct call *c, struct leg *leg, const sip_t *sip)
{
	return call_move(c) && move_ack(call_move(c), leg, sip);
}

static int on_leg_left(void *arg, struct call *c, struct leg *leg)
{
	return call_move(c) && move_leg_left(call_move(c), leg);
}

static int on_reinvite(void *arg, struct call *c, struct leg *leg, nta_incoming_t *irq,
                       const sip_t *sip)
{
	return call_move(c) && move_verify_reinvite(call_move(c), leg, irq, sip);
}

static int on_leg_terminated(void *arg, struct call *c, struct leg *leg)
{
	return call_move(c) && move_leg_terminated(call_move(c), leg);
}

static void on_call_active(void *arg, struct call *c)
{
	move_early_asks_run(c->sip, c, 1);
}

static void on_call_ending(void *arg, struct call *c)
{
	move_early_asks_run(c->sip, c, 0);
	if (call_move(c))
		move_call_ending(call_move(c));
}

static void on_call_gone(void *arg, struct call *c)
{
	move_early_asks_run(c->sip, c, 0);
	if (call_move(c))
		move_call_gone(call_move(c));
}

static int on_refer(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                    const sip_t *sip, msg_t *req)
{
	return move_refer(s, leg, irq, sip, req);
}

static int on_message(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq,
                      const sip_t *sip, msg_t *req)
{
	return move_message(s, leg, irq, sip, req);
}

static int on_info(void *arg, struct sip *s, struct leg *leg, nta_incoming_t *irq, const sip_t *sip,
                   msg_t *req)
{
	return move_info(s, leg, irq, sip, req);
}

/* Free every move and what waits for one (at sip_free). */
static void on_stop(void *arg, struct sip *s)
{
	struct move_stack *ms = arg;

	while (!LIST_EMPTY(&ms->refers)) {
		LIST_FIRST(&ms->refers)->cb = NULL;
		move_refer_out_free(LIST_FIRST(&ms->refers));
	}
	while (!LIST_EMPTY(&ms->redeems)) {
		struct redeem *r = LIST_FIRST(&ms->redeems);

		if (r->irq && !r->cancelled)
			sip_reply(r->irq, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		r->irq = NULL;
		move_redeem_free(r);
	}
	move_code_messages_free(ms);
	move_early_asks_run(s, NULL, 0);
	while (!LIST_EMPTY(&ms->moves)) {
		struct move *m = LIST_FIRST(&ms->moves);

		m->call = NULL;
		m->jobs = 0;
		move_free(m);
	}
	move_pool_free(ms->pool);
	move_dtmf_free(ms);
	free(ms->scan);
	free(ms->move_table);
	free(ms->code_table);
	free(ms);
}

static const struct sip_call_hooks move_hooks = {
    .invite = on_invite,
    .invite_response = on_invite_response,
    .ack = on_ack,
    .leg_left = on_leg_left,
    .leg_terminated = on_leg_terminated,
    .call_active = on_call_active,
    .call_ending = on_call_ending,
    .call_gone = on_call_gone,
    .refer = on_refer,
    .message = on_message,
    .info = on_info,
    .stop = on_stop,
    .reinvite = on_reinvite,
};

struct move_stack *move_stack(struct sip *s)
{
	return sip_call_hooks_arg(s, &move_hooks);
}

int move_observer_add(struct sip *s, const struct move_observer *o, void *arg)
{
	struct move_stack *ms = move_stack(s);

	if (!ms || !o)
		return EINVAL;
	if (ms->nobservers >= MOVE_OBSERVERS_MAX)
		return ENOSPC;
	ms->observers[ms->nobservers].o = o;
	ms->observers[ms->nobservers++].arg = arg;
	return 0;
}

int move_init(struct sip *s)
{
	struct move_stack *ms = calloc(1, sizeof(*ms));
	int err;

	if (!ms)
		return ENOMEM;
	ms->move_table = calloc(MOVE_BUCKETS, sizeof(*ms->move_table));
	ms->code_table = calloc(MOVE_BUCKETS, sizeof(*ms->code_table));
	ms->sip = s;
	/* The calls' rows first: at a call's answer its row is in before a move asked early is
	 * (a move's row names its call's). */
	err = ms->move_table && ms->code_table ? move_record_init(s) : ENOMEM;
	if (!err)
		err = move_survive_init(s);
	if (!err)
		err = sip_call_hooks_add(s, &move_hooks, ms);
	if (!err && s->conf.code_pool && s->conf.keys) {
		struct move_pool_conf pc;
		int perr;

		move_pool_conf_of(s, &pc);
		perr = move_pool_alloc(&ms->pool, s->root, &pc);
		if (perr)
			LOG_ERR("move",
			        "codes pool: cannot start it (codes are made on the loop): %s",
			        strerror(perr));
	}
	if (err) {
		free(ms->move_table);
		free(ms->code_table);
		free(ms);
		return err;
	}
	return 0;
}
