/*
 * The move: put a new device (B) in place of the near device (A) while the far dialog with C
 * stays as it is. A code is offered, redeemed once, optionally confirmed, then C gets a
 * re-INVITE with B's media on the unchanged far dialog; A gets a BYE. Any failure leaves A
 * on the call.
 */
#define _GNU_SOURCE /* memmem */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <sofia-sip/hostdomain.h>
#include <sofia-sip/msg_addr.h>

#include "codes/code.h"
#include "sql/store.h"
#include "sip/b2bua.h"
#include "sip/move.h"
#include "util/hash.h"

#define MOVE_LINGER_MS  60000 /* an ended move stays readable this long */
#define MOVE_RETRY_MS   20    /* waiting for the far leg to be free */
#define MOVE_RETRY_MAX  250
#define MOVE_491_TRIES  3
#define MOVE_REFER_HOLD 64000 /* how long we wait for a referred phone's final NOTIFY */
#define MOVE_SILENT_MS  16000 /* a re-INVITE with no answer at all in this time: C is gone */
#define MOVE_CODE_TRIES 8     /* numeric codes made before giving up on a unique one */
#define MOVE_NONCE_LEN  8     /* digits an answer out of dialog must carry */

struct move {
	struct move *next, *prev;
	struct move *hnext, *cnext; /* in the sip's tables by id64 and by numeric code */
	struct sip *sip;
	struct call *call; /* NULL once the move has let go of it */
	char id[17];
	char call_id[33]; /* the call's id, kept after the move lets go of it */
	uint64_t id64;
	char token[CODE_TOKEN_LEN + 1];
	char code[12];
	uint8_t show_hash[CODE_HASH_LEN]; /* of the show page's secret */
	char show[CODE_SECRET_LEN + 1];   /* the secret itself, only until it is sent */
	char qr_uri[512];
	char reason[128];
	char *taken_by;
	char taken_from[STORE_SOURCE_MAX]; /* the source that presented the code */
	char *target;                      /* the device we dial (RFC 3725), or NULL */
	char nonce[MOVE_NONCE_LEN + 1];    /* what an answer sent out of dialog must repeat */
	unsigned code_tries;               /* numeric codes made: each must be unique on offer */
	unsigned answered_near : 1, answered_far : 1; /* each side answers once */
	time_t created, expires;
	enum sip_move_state state;
	struct leg *b; /* the new near leg while it joins */
	unsigned third_party : 1, b_offered : 1, c_answered : 1, b_gone : 1, a_gone : 1;
	unsigned reinviting : 1, rolling_back : 1, linger : 1, b_acking : 1;
	unsigned need_near : 1, need_far : 1, yes_near : 1, yes_far : 1;
	unsigned need_scans : 1, scan_near : 1, scan_new : 1;
	char *b_sdp; /* B's offer (or its answer, in RFC 3725 order) */
	nua_handle_t *refer_nh;
	char *refer_event;
	su_timer_t *timer;
	unsigned tries;       /* waits for the far leg to be free */
	unsigned glare_tries; /* re-INVITEs C answered 491 */
	unsigned jobs;        /* store jobs that will call back with this move */
	long long t_redeem, t_reinvite, t_answer; /* monotonic microseconds */
	sip_move_h *cb;
	void *cb_arg;
	unsigned long sms_ref[2]; /* near, far */
	char near_number[32], far_number[32];
};

/* An INVITE or a dial request waiting for the store to redeem its code. */
struct redeem {
	struct bound b;
	struct redeem *next, *prev;
	struct sip *sip;
	nua_handle_t *nh; /* the new device's INVITE, or NULL when we are to dial */
	char source[STORE_SOURCE_MAX];
	char *sdp, *from_uri, *call_id, *target;
	long long arrived;
	unsigned cancelled : 1, saved_it : 1;
	nua_saved_event_t saved[1]; /* the INVITE, while we ask which node has the call */
	enum store_key key;
	uint8_t hash[CODE_HASH_LEN];
	uint8_t alt[STORE_HASHES_MAX - 1][CODE_HASH_LEN]; /* numeric: under older keys */
	unsigned nalt;
	char named[17]; /* the move a signed token names */
	sip_move_h *cb;
	void *cb_arg;
};

/* An out-of-dialog REFER asking a known phone to dial a code. */
struct refer_out {
	struct bound b;
	struct refer_out *next, *prev; /* in the sip's list, so shutdown frees it */
	struct sip *sip;
	nua_handle_t *nh;
	su_timer_t *timer;
	sip_move_h *cb;
	void *cb_arg;
	char move_id[17];
};

static long long now_us(void)
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

static enum store_move_state store_state(enum sip_move_state st)
{
	switch (st) {
	case SIP_MOVE_REDEEMED:
		return STORE_MOVE_REDEEMED;
	case SIP_MOVE_CONFIRMING:
		return STORE_MOVE_CONFIRMING;
	case SIP_MOVE_MOVING:
		return STORE_MOVE_MOVING;
	case SIP_MOVE_DONE:
		return STORE_MOVE_DONE;
	case SIP_MOVE_FAILED:
		return STORE_MOVE_FAILED;
	default:
		return STORE_MOVE_OFFERED;
	}
}

static void info_fill(const struct move *m, struct sip_move_info *i)
{
	int offered = m->state == SIP_MOVE_OFFERED || m->state == SIP_MOVE_STORING;

	memset(i, 0, sizeof(*i));
	i->id = m->id;
	i->call_id = m->call_id;
	i->state = m->state;
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

static void reply(struct move *m, int err)
{
	struct sip_move_info info;
	sip_move_h *cb = m->cb;

	if (!cb)
		return;
	m->cb = NULL;
	info_fill(m, &info);
	cb(err, err ? NULL : &info, m->cb_arg);
}

static void changed(struct move *m)
{
	struct sip_hooks *h = m->sip->conf.hooks;

	if (h && h->move_changed)
		h->move_changed(h->arg, m->id);
}

static void store_job(struct move *m, struct store_job *job)
{
	if (m->sip->conf.store && store_submit(m->sip->conf.store, job, NULL, NULL))
		LOG_ERR("move", "%s: store: cannot queue", m->id);
}

/* One event line: in the log and in the move's stored history. */
static void event(struct move *m, const char *step, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void event(struct move *m, const char *step, const char *fmt, ...)
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
	store_job(m, &job);
}

static void set_state(struct move *m, enum sip_move_state st)
{
	struct store_job job = {.op = STORE_OP_MOVE_STATE};

	if ((st == SIP_MOVE_DONE || st == SIP_MOVE_FAILED) && m->state != SIP_MOVE_DONE &&
	    m->state != SIP_MOVE_FAILED && metric_get(METRIC_MOVES_ACTIVE))
		metric_dec(METRIC_MOVES_ACTIVE);
	m->state = st;
	changed(m);
	/* The store makes offered by insert and redeemed by redeem itself. */
	if (st == SIP_MOVE_STORING || st == SIP_MOVE_OFFERED || st == SIP_MOVE_REDEEMED)
		return;
	snprintf(job.id, sizeof(job.id), "%s", m->id);
	job.move_state = store_state(st);
	job.at = store_now();
	snprintf(job.text, sizeof(job.text), "%s", m->reason);
	store_job(m, &job);
}

static unsigned code_bucket(const char *code)
{
	return hash_str(code) % MOVE_BUCKETS;
}

static struct move *move_by_id64(struct sip *s, uint64_t id64)
{
	for (struct move *m = s->move_table[id64 % MOVE_BUCKETS]; m; m = m->hnext)
		if (m->id64 == id64)
			return m;
	return NULL;
}

static struct move *move_by_id(struct sip *s, const char *id)
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
static struct move *move_by_code(struct sip *s, const char *digits)
{
	size_t n = strlen(digits);

	for (struct move *m = s->code_table[code_bucket(digits)]; m; m = m->cnext)
		if ((m->state == SIP_MOVE_OFFERED || m->state == SIP_MOVE_STORING) &&
		    strlen(m->code) == n && !CRYPTO_memcmp(m->code, digits, n))
			return m;
	return NULL;
}

static void move_index(struct move *m)
{
	struct sip *s = m->sip;

	m->hnext = s->move_table[m->id64 % MOVE_BUCKETS];
	s->move_table[m->id64 % MOVE_BUCKETS] = m;
	m->cnext = s->code_table[code_bucket(m->code)];
	s->code_table[code_bucket(m->code)] = m;
}

static void move_unindex(struct move *m)
{
	struct sip *s = m->sip;
	struct move **mp;

	for (mp = &s->move_table[m->id64 % MOVE_BUCKETS]; *mp; mp = &(*mp)->hnext)
		if (*mp == m) {
			*mp = m->hnext;
			break;
		}
	for (mp = &s->code_table[code_bucket(m->code)]; *mp; mp = &(*mp)->cnext)
		if (*mp == m) {
			*mp = m->cnext;
			break;
		}
}

static void move_free(struct move *m)
{
	struct sip *s = m->sip;

	if (m->prev)
		m->prev->next = m->next;
	else
		s->moves = m->next;
	if (m->next)
		m->next->prev = m->prev;
	move_unindex(m);
	if (m->call && m->call->move == m)
		m->call->move = NULL;
	if (m->timer)
		su_timer_destroy(m->timer);
	free(m->taken_by);
	free(m->target);
	free(m->b_sdp);
	free(m->refer_event);
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
static void move_detach(struct move *m)
{
	if (m->call && m->call->move == m)
		m->call->move = NULL;
	m->call = NULL;
	m->b = NULL;
	su_timer_set_interval(m->timer, linger_expired, m, MOVE_LINGER_MS);
}

/* Progress for A's REFER, as message/sipfrag (RFC 3515 section 2.4.5). */
static void notify_refer(struct move *m, int status, const char *phrase, int final)
{
	char frag[96];

	if (!m->refer_nh || !m->refer_event)
		return;
	snprintf(frag, sizeof(frag), "SIP/2.0 %d %s\r\n", status, phrase);
	for (struct leg *l = m->call ? m->call->legs : NULL; l; l = l->next)
		if (l->nh == m->refer_nh)
			l->pending++;
	nua_notify(m->refer_nh,
	           NUTAG_SUBSTATE(final ? nua_substate_terminated : nua_substate_active),
	           SIPTAG_EVENT_STR(m->refer_event),
	           SIPTAG_CONTENT_TYPE_STR("message/sipfrag;version=2.0"), SIPTAG_PAYLOAD_STR(frag),
	           TAG_END());
	if (final)
		m->refer_nh = NULL;
}

/* Send our own MESSAGE on a leg, keeping the leg's answer order with relayed ones. */
static void leg_message(struct leg *leg, const char *ctype, const char *body, size_t len)
{
	struct relay *r = su_zalloc(leg->call->home, sizeof(*r));
	sip_payload_t *pl;

	if (!r || !leg->nh || leg->terminated || leg->ending)
		return;
	r->method = nua_i_message; /* from_nh NULL: the answer is ours and goes nowhere */
	*leg->relays_tail = r;
	leg->relays_tail = &r->next;
	pl = sip_payload_create(leg->call->home, body, (isize_t)len);
	leg->pending++;
	nua_message(leg->nh, SIPTAG_CONTENT_TYPE_STR(ctype), SIPTAG_PAYLOAD(pl), TAG_END());
	su_free(leg->call->home, pl);
}

/* A fresh show secret: its hash replaces the old one here and in the store. */
static int show_renew(struct move *m)
{
	struct store_job job = {.op = STORE_OP_MOVE_SHOW_SET};
	int err = code_secret_make(m->show, sizeof(m->show));

	if (!err)
		err = code_secret_hash(m->show, m->show_hash);
	if (err) {
		OPENSSL_cleanse(m->show, sizeof(m->show));
		return err;
	}
	snprintf(job.id, sizeof(job.id), "%s", m->id);
	memcpy(job.hash, m->show_hash, sizeof(job.hash));
	store_job(m, &job);
	return 0;
}

static void send_code(struct move *m)
{
	struct sip *s = m->sip;
	char text[1024], link[512] = "";
	struct code_qr *qr = NULL;
	uint8_t *png = NULL;
	size_t pnglen = 0;

	if (!m->call || !m->call->near)
		return;
	/* The show link is the one secret only A is sent: without a fresh one, none. */
	if (s->conf.public_url && *s->conf.public_url && m->show[0])
		snprintf(link, sizeof(link), "\r\nShow the code: %s/m/%s/show", s->conf.public_url,
		         m->show);
	snprintf(text, sizeof(text),
	         "Move this call: on the other phone dial *88%s or scan the code (%s). It works "
	         "once, for %u seconds.%s\r\n",
	         m->code, m->qr_uri, s->conf.code_ttl, link);
	if (s->conf.send_qr_image && !code_qr_make(&qr, m->qr_uri, CODE_ECC_M) &&
	    !code_qr_png(qr, 6, 4, &png, &pnglen)) {
		/* multipart/mixed (RFC 2046): the text, then the QR as image/png. */
		char head[1200];
		static const char tail[] = "\r\n--qrxfer-code--\r\n";
		int hn =
		    snprintf(head, sizeof(head),
		             "--qrxfer-code\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n%s"
		             "\r\n--qrxfer-code\r\nContent-Type: image/png\r\n"
		             "Content-Disposition: inline; filename=move.png\r\n\r\n",
		             text);
		size_t total = (size_t)hn + pnglen + sizeof(tail) - 1;
		char *body = malloc(total);

		if (body) {
			memcpy(body, head, (size_t)hn);
			memcpy(body + hn, png, pnglen);
			memcpy(body + hn + pnglen, tail, sizeof(tail) - 1);
			leg_message(m->call->near, "multipart/mixed;boundary=qrxfer-code", body,
			            total);
			free(body);
		}
	} else {
		leg_message(m->call->near, "text/plain;charset=utf-8", text, strlen(text));
	}
	free(png);
	code_qr_free(qr);
}

static void offer_expired(su_root_magic_t *rm, su_timer_t *t, void *arg);
static int numeric_new(struct move *m, struct store_move *sm);
static void fail(struct move *m, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void on_inserted(struct store_job *job, void *arg)
{
	struct move *m = arg;

	m->jobs--;
	if (m->sip->detached)
		return; /* exiting: move_free_all() frees it */
	if (m->linger && !m->jobs) {
		move_free(m);
		return;
	}
	if (m->state != SIP_MOVE_STORING)
		return;
	if (job->err == EEXIST && m->code_tries < MOVE_CODE_TRIES) {
		/* Another node offers these digits: make others. */
		int err;
		move_unindex(m);
		err = numeric_new(m, &job->move);
		move_index(m);
		job->err = 0;
		m->jobs++;
		if (!err)
			err = store_submit(m->sip->conf.store, job, on_inserted, m);
		if (!err) {
			LOG_INFO("move", "%s: numeric code taken elsewhere, made another", m->id);
			return;
		}
		m->jobs--;
		job->err = err;
	}
	if (job->err) {
		LOG_ERR("move", "%s: store: insert: %s", m->id, strerror(job->err));
		OPENSSL_cleanse(m->show, sizeof(m->show));
		fail(m, 500, "the store refused the move");
		return;
	}
	m->state = SIP_MOVE_OFFERED;
	changed(m);
	event(m, "code-sent", "code sent to %s, expires in %u s",
	      m->call && m->call->near ? m->call->near->uri : "?", m->sip->conf.code_ttl);
	su_timer_set_interval(m->timer, offer_expired, m,
	                      (su_duration_t)m->sip->conf.code_ttl * 1000);
	notify_refer(m, 100, "Trying", 0);
	send_code(m);
	reply(m, 0);
	OPENSSL_cleanse(m->show, sizeof(m->show));
}

/* The number in a URI's user part ("+" and digits): where a confirmation SMS goes. */
static const char *uri_number(const char *uri, char *out, size_t len)
{
	const char *p = uri ? strchr(uri, ':') : NULL;
	size_t n = 0;

	out[0] = 0;
	if (!p)
		return out;
	/* E.164 keeps its '+': SMS gateways want it. */
	for (p++; *p && *p != '@' && *p != ';' && n + 1 < len; p++)
		if (isdigit((unsigned char)*p) || (*p == '+' && n == 0))
			out[n++] = *p;
	out[n] = 0;
	return out;
}

/* A numeric code no other move on offer here has, and its hashes under every key (the store
 * checks the other nodes' codes on insert). The move must not be in the code table. */
static int numeric_new(struct move *m, struct store_move *sm)
{
	struct sip *s = m->sip;
	unsigned nkeys = code_keyring_count(s->conf.keys);
	int err;

	do
		err = code_numeric_make(s->conf.code_digits, m->code, sizeof(m->code));
	while (!err && move_by_code(s, m->code));
	m->code_tries++;
	if (!err)
		err = code_numeric_hash(s->conf.keys, 0, m->code, sm->code_hash);
	sm->ncode_alt = 0;
	for (unsigned i = 1; !err && i < nkeys && i < STORE_HASHES_MAX; i++)
		err = code_numeric_hash(s->conf.keys, i, m->code, sm->code_alt[sm->ncode_alt++]);
	return err;
}

static int move_start_on(struct call *c, const char *source, nua_handle_t *refer_nh,
                         const char *refer_event, sip_move_h *cb, void *arg)
{
	struct sip *s = c->sip;
	struct store_job *job;
	uint8_t token_hash[CODE_HASH_LEN];
	struct move *m;
	int err;

	if (c->move && c->move->state == SIP_MOVE_OFFERED) {
		/* Asked again: the same code again, rather than a second one. */
		m = c->move;
		if (refer_nh && !m->refer_nh) {
			m->refer_nh = refer_nh;
			m->refer_event = refer_event ? strdup(refer_event) : NULL;
			notify_refer(m, 100, "Trying", 0);
		}
		/* The earlier show link stops working: only the hash was kept. */
		if (show_renew(m))
			LOG_ERR("move", "%s: cannot make a show secret", m->id);
		send_code(m);
		if (cb) {
			m->cb = cb;
			m->cb_arg = arg;
			reply(m, 0);
		}
		OPENSSL_cleanse(m->show, sizeof(m->show));
		return 0;
	}
	if (c->move)
		return EBUSY;
	if (c->state != SIP_CALL_ANSWERED || !c->near || !c->far || c->ack_pending)
		return EAGAIN;
	if (!s->conf.keys || !s->conf.store)
		return ENOTSUP;
	m = calloc(1, sizeof(*m));
	job = calloc(1, sizeof(*job));
	if (!m || !job) {
		free(m);
		free(job);
		return ENOMEM;
	}
	m->sip = s;
	m->call = c;
	do {
		if (RAND_bytes((unsigned char *)&m->id64, sizeof(m->id64)) != 1) {
			err = EIO;
			goto fail;
		}
	} while (!m->id64 || move_by_id64(s, m->id64));
	snprintf(m->id, sizeof(m->id), "%016llx", (unsigned long long)m->id64);
	snprintf(m->call_id, sizeof(m->call_id), "%s", c->id);
	m->created = time(NULL);
	m->expires = m->created + s->conf.code_ttl;
	err = code_token_make(s->conf.keys, m->id64, m->expires, m->token, sizeof(m->token));
	if (!err)
		err = numeric_new(m, &job->move);
	if (!err)
		err = code_numeric_make(MOVE_NONCE_LEN, m->nonce, sizeof(m->nonce));
	if (!err)
		err = code_uri(s->conf.qr_uri_https ? CODE_URI_HTTPS : CODE_URI_SIP, m->token,
		               s->conf.qr_uri_https ? s->conf.public_url : s->conf.domain,
		               m->qr_uri, sizeof(m->qr_uri));
	if (!err)
		err = code_token_hash(m->token, token_hash);
	if (!err)
		err = code_secret_make(m->show, sizeof(m->show));
	if (!err)
		err = code_secret_hash(m->show, m->show_hash);
	if (err) {
		LOG_ERR("move", "cannot make a code: %s", code_strerror(err));
		goto fail;
	}
	m->timer = su_timer_create(su_root_task(s->root), 0);
	if (!m->timer) {
		err = ENOMEM;
		goto fail;
	}
	m->refer_nh = refer_nh;
	m->refer_event = refer_event ? strdup(refer_event) : NULL;
	m->cb = cb;
	m->cb_arg = arg;
	uri_number(c->near->uri, m->near_number, sizeof(m->near_number));
	uri_number(c->far->uri, m->far_number, sizeof(m->far_number));
	m->state = SIP_MOVE_STORING;
	metric_inc(METRIC_MOVES_ACTIVE);
	move_index(m);
	m->next = s->moves;
	if (s->moves)
		s->moves->prev = m;
	s->moves = m;
	c->move = m;

	job->op = STORE_OP_MOVE_INSERT;
	snprintf(job->move.id, sizeof(job->move.id), "%s", m->id);
	snprintf(job->move.call_id, sizeof(job->move.call_id), "%s", c->id);
	memcpy(job->move.token_hash, token_hash, sizeof(token_hash));
	job->move.created_at = store_now();
	job->move.expires_at = job->move.created_at + (int64_t)s->conf.code_ttl * 1000;
	m->jobs++;
	err = store_submit(s->conf.store, job, on_inserted, m);
	if (!err) {
		/* Runs after the insert: the store's jobs run in order. */
		memset(job, 0, sizeof(*job));
		job->op = STORE_OP_MOVE_SHOW_SET;
		snprintf(job->id, sizeof(job->id), "%s", m->id);
		memcpy(job->hash, m->show_hash, sizeof(job->hash));
		store_submit(s->conf.store, job, NULL, NULL);
	}
	free(job);
	/* A store that does not answer must not hold the call: the move fails, the call is free. */
	if (!err)
		su_timer_set_interval(
		    m->timer, offer_expired, m,
		    (su_duration_t)(s->conf.store_timeout ? s->conf.store_timeout : 5) * 1000);
	if (err) {
		m->jobs--;
		m->cb = NULL; /* the caller hears err; the callback must not run too */
		fail(m, 500, "the store is not reachable");
		return err;
	}
	metric_inc(METRIC_MOVES_TOTAL);
	LOG_INFO("move", "%s: asked by %s on call %s", m->id, source ? source : "?", c->id);
	return 0;
fail:
	free(job);
	free(m->refer_event);
	OPENSSL_cleanse(m->show, sizeof(m->show));
	free(m);
	return err;
}

int sip_move_start(struct sip *s, const char *call_id, const char *source, sip_move_h *cb,
                   void *arg)
{
	struct call *c = call_find(s, call_id);

	if (!c)
		return ENOENT;
	return move_start_on(c, source, NULL, NULL, cb, arg);
}

int sip_move_get(struct sip *s, const char *move_id, sip_move_h *cb, void *arg)
{
	struct sip_move_info info;
	struct move *m = move_by_id(s, move_id);

	if (!m)
		return ENOENT;
	info_fill(m, &info);
	cb(0, &info, arg);
	return 0;
}

/* ---- ending a move ---- */

static void rollback(struct move *m);
static void reinvite_silent(su_root_magic_t *rm, su_timer_t *t, void *arg);

static void fail(struct move *m, int status, const char *fmt, ...)
{
	struct call *c = m->call;
	struct leg *b = m->b;
	char reason[160];
	va_list ap;

	if (m->state == SIP_MOVE_DONE || m->state == SIP_MOVE_FAILED)
		return;
	va_start(ap, fmt);
	vsnprintf(m->reason, sizeof(m->reason), fmt, ap);
	va_end(ap);
	if (!status)
		status = 480;
	metric_inc(METRIC_MOVES_FAILED_TOTAL);
	LOG_INFO("move", "%s: failed: %s", m->id, m->reason);
	set_state(m, SIP_MOVE_FAILED); /* the store's event line carries the reason */
	su_timer_reset(m->timer);
	snprintf(reason, sizeof(reason), "SIP;cause=%d;text=\"Move failed\"", status);
	if (b && b->nh && !b->terminated && !b->ending) {
		if (b->incoming && !b->answered) {
			b->ending = 1;
			nua_respond(b->nh, status, call_copy_phrase(b->call, status, NULL),
			            SIPTAG_REASON_STR(reason), TAG_END());
		} else {
			call_leg_end(b, reason);
		}
	}
	m->b = NULL;
	notify_refer(m, status, sip_status_phrase(status) ? sip_status_phrase(status) : "Failed",
	             1);
	reply(m, EPROTO);
	if (c && m->c_answered && !m->rolling_back && !m->a_gone) {
		rollback(m);
		return;
	}
	if (c && m->a_gone)
		call_end(c, status, "SIP;cause=200;text=\"Near device left during a failed move\"");
	move_detach(m);
}

/* C took B's media but the move cannot finish: give C the near device's media back. */
static void rollback(struct move *m)
{
	struct call *c = m->call;
	sip_payload_t *pl = NULL;

	if (!c || !c->far || !c->near_sdp || c->far->terminated) {
		move_detach(m);
		return;
	}
	m->rolling_back = 1;
	m->reinviting = 1;
	c->offer_busy = 1;
	event(m, "rollback", "re-INVITE to far with the near device's media");
	pl = sip_payload_create(c->home, c->near_sdp, (isize_t)strlen(c->near_sdp));
	pl = sdp_to_far(c, pl);
	c->far->pending++;
	nua_invite(c->far->nh, SIPTAG_CONTENT_TYPE_STR("application/sdp"), SIPTAG_PAYLOAD(pl),
	           TAG_END());
	su_timer_set_interval(m->timer, reinvite_silent, m, MOVE_SILENT_MS);
}

static void offer_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;

	if (m->state == SIP_MOVE_STORING)
		fail(m, 503, "the store did not take the move in time");
	else if (m->state == SIP_MOVE_OFFERED)
		fail(m, 408, "the code expired unused");
	else if (m->state == SIP_MOVE_CONFIRMING)
		fail(m, 408, "no answer to the confirmation in time");
}

static void complete(struct move *m)
{
	struct call *c = m->call;
	struct leg *old = c->near, *b = m->b;

	c->near = b;
	b->near = 1;
	if (c->in == old)
		c->in = b;
	if (c->out == old)
		c->out = b;
	c->offer_busy = 0;
	su_free(c->home, c->near_sdp);
	c->near_sdp = m->b_sdp ? su_strdup(c->home, m->b_sdp) : NULL;
	m->b = NULL;
	metric_inc(METRIC_MOVES_COMPLETED_TOTAL);
	free(m->taken_by);
	m->taken_by = b->uri ? strdup(b->uri) : NULL;
	event(m, "moved", "near leg moved to %s; redeem to re-INVITE %lld us, to answer %lld us",
	      b->uri ? b->uri : "?", m->t_reinvite - m->t_redeem, m->t_answer - m->t_redeem);
	set_state(m, SIP_MOVE_DONE);
	su_timer_reset(m->timer);
	notify_refer(m, 200, "OK", 1);
	reply(m, 0);
	if (old->terminated || old->ending) {
		/* A hung up during the move; the stack has let go of it, or will. */
	}
	call_leg_end(old, "SIP;cause=200;text=\"Call moved\"");
	if (old->terminated)
		call_leg_terminated(old);
	call_record_near(c);
	move_detach(m);
}

void move_call_ending(struct move *m)
{
	if (m->state != SIP_MOVE_DONE && m->state != SIP_MOVE_FAILED) {
		snprintf(m->reason, sizeof(m->reason), "the call ended");
		metric_inc(METRIC_MOVES_FAILED_TOTAL);
		LOG_INFO("move", "%s: failed: %s", m->id, m->reason);
		set_state(m, SIP_MOVE_FAILED);
		su_timer_reset(m->timer);
		notify_refer(m, 487, "Request Terminated", 1);
		reply(m, EPROTO);
	}
	/* call_end() ends every leg, B included. */
	move_detach(m);
}

void move_call_gone(struct move *m)
{
	move_detach(m);
}

/* ---- the media moves ---- */

static void reinvite_far(struct move *m);

static void retry_reinvite(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	reinvite_far(arg);
}

/*
 * C has not answered the re-INVITE at all (RFC 3261 14.1: the dialog ends). sofia's NUA would
 * drop C's session without a BYE at the transaction timeout (32 s), leaving C with a dead call:
 * end it ourselves first, while the BYE can still be sent.
 */
static void reinvite_silent(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	struct move *m = arg;
	struct call *c = m->call;

	if (!c || !m->reinviting)
		return;
	fail(m, 488, "the far party refused the new media: 408 no answer to the re-INVITE in %d s",
	     MOVE_SILENT_MS / 1000);
	call_end(c, 408, "SIP;cause=408;text=\"No answer to a re-INVITE\"");
}

static void reinvite_far(struct move *m)
{
	struct call *c = m->call;
	sip_payload_t *pl = NULL;

	if (!c || !c->far || c->far->terminated || c->state != SIP_CALL_ANSWERED) {
		fail(m, 480, "the far leg is gone");
		return;
	}
	/* Requests on one leg are serialised: wait for what is in flight. */
	if (c->offer_busy || c->ack_pending || c->reinvite_ack) {
		if (++m->tries > MOVE_RETRY_MAX) {
			fail(m, 491, "the far leg stayed busy");
			return;
		}
		su_timer_set_interval(m->timer, retry_reinvite, m, MOVE_RETRY_MS);
		return;
	}
	if (m->state != SIP_MOVE_MOVING)
		set_state(m, SIP_MOVE_MOVING);
	c->offer_busy = 1;
	m->reinviting = 1;
	m->t_reinvite = now_us();
	if (m->b_sdp) {
		pl = sip_payload_create(c->home, m->b_sdp, (isize_t)strlen(m->b_sdp));
		pl = sdp_to_far(c, pl);
	}
	c->far->pending++;
	nua_invite(c->far->nh, TAG_IF(pl, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
	           TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_END());
	su_timer_set_interval(m->timer, reinvite_silent, m, MOVE_SILENT_MS);
	event(m, "reinvite", "re-INVITE to far %s %s", c->far->uri ? c->far->uri : "",
	      pl ? "with the new device's offer" : "without an offer");
}

static void dial_b(struct move *m)
{
	struct call *c = m->call;
	struct sip *s = m->sip;
	struct leg *b = call_leg_new(c, 1, 0);

	if (!b) {
		fail(m, 500, "out of memory");
		return;
	}
	b->uri = su_strdup(c->home, m->target);
	/* B sees the moving user calling (RFC 3725 flow I: an INVITE without an offer). Only a
	 * domain of [move] dial_domains is called directly; our users are the PBX's to reach. */
	char target[320], from[300];
	int direct = 0;
	if (move_dial_target(s, m->target, target, sizeof(target), &direct)) {
		fail(m, 403, "the target %s is not one we may call", m->target);
		return;
	}
	url_t *nu = c->near && c->near->uri ? url_make(c->home, c->near->uri) : NULL;
	snprintf(from, sizeof(from), "<sip:%s@%s>",
	         nu && nu->url_user && !strpbrk(nu->url_user, "<>\"@ ") ? nu->url_user : "move",
	         s->conf.domain);
	b->nh = nua_handle(s->nua, &b->b, NUTAG_URL(target), SIPTAG_TO_STR(target),
	                   SIPTAG_FROM_STR(from),
	                   TAG_IF(!direct, NUTAG_INITIAL_ROUTE_STR(s->upstream_route)), TAG_END());
	su_free(c->home, nu);
	if (!b->nh) {
		fail(m, 500, "cannot make a handle for %s", m->target);
		return;
	}
	m->b = b;
	set_state(m, SIP_MOVE_MOVING);
	event(m, "dial", "INVITE without an offer to %s", m->target);
	b->pending++;
	nua_invite(b->nh, TAG_END());
}

static void go(struct move *m)
{
	if (m->third_party && !m->b)
		dial_b(m);
	else
		reinvite_far(m);
}

static int confirmed(const struct move *m)
{
	return (!m->need_near || m->yes_near) && (!m->need_far || m->yes_far) &&
	       (!m->need_scans || (m->scan_near && m->scan_new));
}

static void ask(struct move *m, struct leg *leg, int sms, const char *number)
{
	struct sip_hooks *h = m->sip->conf.hooks;
	char text[512], who[200] = "", claim[80], *p;
	const char *from = m->taken_from;

	/* What the new device says of itself is its own choice: show it as a claim, with the
	 * address it came from, and nothing that could pass for another instruction. */
	if (m->taken_by) {
		snprintf(claim, sizeof(claim), "%s", m->taken_by);
		for (p = claim; *p; p++)
			if (!isprint((unsigned char)*p))
				*p = '?';
		if (!strncmp(from, "ip:", 3))
			from += 3;
		snprintf(who, sizeof(who), " (it says it is %s%s%.60s)", claim,
		         *from ? ", from " : "", from);
	}
	if (sms)
		snprintf(text, sizeof(text), "Move this call to a new device%s? Reply yes or no.",
		         who);
	else
		snprintf(
		    text, sizeof(text),
		    "Move this call to a new device%s? Reply yes or no (in a new chat: yes %s or "
		    "no %s).",
		    who, m->nonce, m->nonce);
	if (sms) {
		if (!h || !h->sms_send || !number[0] ||
		    h->sms_send(h->arg, number, text, ++m->sip->sms_seq)) {
			fail(m, 480, "cannot send the confirmation SMS to %s",
			     number[0] ? number : "(no number)");
			return;
		}
		m->sms_ref[leg == m->call->far] = m->sip->sms_seq;
		event(m, "ask", "SMS to %s", number);
		return;
	}
	leg_message(leg, "text/plain;charset=utf-8", text, strlen(text));
	event(m, "ask", "MESSAGE to %s", leg->uri ? leg->uri : call_side(leg));
}

static void after_redeem(struct move *m)
{
	struct sip *s = m->sip;
	struct call *c = m->call;

	m->need_near = s->conf.confirm == SIP_CONFIRM_NEAR || s->conf.confirm == SIP_CONFIRM_BOTH;
	m->need_far = s->conf.confirm == SIP_CONFIRM_FAR || s->conf.confirm == SIP_CONFIRM_BOTH;
	m->need_scans = s->conf.scans_both;
	if (confirmed(m)) {
		go(m);
		return;
	}
	set_state(m, SIP_MOVE_CONFIRMING);
	su_timer_set_interval(m->timer, offer_expired, m,
	                      (su_duration_t)s->conf.confirm_timeout * 1000);
	if (m->need_near && !m->yes_near)
		ask(m, c->near, s->conf.confirm_sms_near, m->near_number);
	if (m->state == SIP_MOVE_CONFIRMING && m->need_far && !m->yes_far)
		ask(m, c->far, s->conf.confirm_sms_far, m->far_number);
	if (m->need_scans && !(m->scan_near && m->scan_new))
		event(m, "scans", "waiting for images from %s%s%s", m->scan_near ? "" : "near",
		      !m->scan_near && !m->scan_new ? " and " : "", m->scan_new ? "" : "new");
}

static void check_confirmed(struct move *m)
{
	if (m->state == SIP_MOVE_CONFIRMING && confirmed(m)) {
		su_timer_reset(m->timer);
		go(m);
	}
}

/* Splits "yes", "no 12345678", ... into the word (lower case) and what follows it (trimmed). */
static int answer_words(const char *body, size_t len, char word[8], char rest[16])
{
	size_t n = 0, r = 0;

	while (len && isspace((unsigned char)*body))
		body++, len--;
	while (len && isspace((unsigned char)body[len - 1]))
		len--;
	for (; n < len && !isspace((unsigned char)body[n]); n++) {
		if (n + 1 >= 8)
			return -1;
		word[n] = (char)tolower((unsigned char)body[n]);
	}
	word[n] = 0;
	while (n < len && isspace((unsigned char)body[n]))
		n++;
	for (; n < len; n++) {
		if (r + 1 >= 16)
			return -1;
		rest[r++] = body[n];
	}
	rest[r] = 0;
	return 0;
}

/*
 * yes or no from one side; 1 if it was an answer this move waited for. Each side answers
 * once. An answer that did not come on the asked party's own dialog (a MESSAGE out of dialog,
 * whose From anyone can write) counts only with the question's nonce.
 */
static int answer(struct move *m, int near, const char *body, size_t len, int in_dialog)
{
	char word[8], rest[16];
	int yes;

	if (answer_words(body, len, word, rest))
		return 0;
	if (!strcmp(word, "yes") || !strcmp(word, "y"))
		yes = 1;
	else if (!strcmp(word, "no") || !strcmp(word, "n"))
		yes = 0;
	else
		return 0;
	if (m->state != SIP_MOVE_CONFIRMING || !(near ? m->need_near : m->need_far) ||
	    (near ? m->answered_near : m->answered_far))
		return 0;
	if (rest[0] &&
	    (strlen(rest) != MOVE_NONCE_LEN || CRYPTO_memcmp(rest, m->nonce, MOVE_NONCE_LEN)))
		return 0;
	if (!in_dialog && !rest[0])
		return 0;
	if (near)
		m->answered_near = 1;
	else
		m->answered_far = 1;
	metric_inc(METRIC_CONFIRMS_TOTAL);
	event(m, "answer", "%s said %s", near ? "near" : "far", yes ? "yes" : "no");
	if (!yes) {
		fail(m, 603, "%s declined", near ? "the near party" : "the far party");
		return 1;
	}
	if (near)
		m->yes_near = 1;
	else
		m->yes_far = 1;
	check_confirmed(m);
	return 1;
}

static void copy_payload(char **dst, const sip_t *sip)
{
	const sip_payload_t *pl = body_pl(sip);

	free(*dst);
	*dst = pl && pl->pl_len ? strndup(pl->pl_data, pl->pl_len) : NULL;
}

static void backoff_491(struct move *m)
{
	struct call *c = m->call;
	unsigned r = 0, ms;

	RAND_bytes((unsigned char *)&r, sizeof(r));
	/* RFC 3261 section 14.1: the Call-ID's owner waits 2.1-4 s, the other 0-2 s. */
	if (!c->far->incoming)
		ms = 2100 + (r % 191) * 10;
	else
		ms = (r % 201) * 10;
	event(m, "glare", "491 from far: retry in %u ms", ms);
	m->tries = 0;
	su_timer_set_interval(m->timer, retry_reinvite, m, ms);
}

int move_invite_response(struct move *m, struct leg *leg, int status, const char *phrase,
                         const sip_t *sip)
{
	struct call *c = m->call;
	sip_payload_t *pl;

	if (leg == m->b && m->third_party && !leg->answered) {
		if (status < 200)
			return 1;
		if (status >= 300) {
			fail(m, status, "the new device answered %d", status);
			return 1;
		}
		leg->answered = 1;
		call_leg_tags(leg, sip);
		leg->call_id =
		    sip && sip->sip_call_id ? su_strdup(c->home, sip->sip_call_id->i_id) : NULL;
		copy_payload(&m->b_sdp, sip);
		m->t_redeem = now_us();
		if (!m->b_sdp) {
			fail(m, 488, "the new device answered without an offer");
			return 1;
		}
		event(m, "answered", "the new device answered with its offer");
		reinvite_far(m);
		return 1;
	}
	if (leg != c->far || !m->reinviting)
		return 0;
	su_timer_reset(m->timer); /* C answered: it is there */
	if (status < 200)
		return 1;
	m->reinviting = 0;
	if (status >= 300) {
		c->offer_busy = 0;
		if (m->rolling_back) {
			event(m, "rollback", "far answered %d to the rollback", status);
			move_detach(m);
			return 1;
		}
		if (status == 491 && m->b && ++m->glare_tries <= MOVE_491_TRIES && !m->b_gone) {
			backoff_491(m);
			return 1;
		}
		fail(m, status == 491 ? 491 : 488, "the far party refused the new media: %d %s",
		     status, phrase ? phrase : "");
		if (status == 408 || status == 481)
			call_end(c, status, "SIP;cause=481;text=\"Dialog gone\"");
		return 1;
	}
	m->t_answer = now_us();
	m->c_answered = 1;
	if (m->rolling_back) {
		nua_ack(c->far->nh, TAG_END());
		c->offer_busy = 0;
		event(m, "rollback", "far has the near device's media again");
		move_detach(m);
		return 1;
	}
	if (m->b_gone || !m->b) {
		nua_ack(c->far->nh, TAG_END());
		c->offer_busy = 0;
		fail(m, 487, "the new device left during the move");
		return 1;
	}
	if (m->third_party) {
		nua_ack(c->far->nh, TAG_END());
		nua_ack(m->b->nh, BODY_TAGS(sip), TAG_END());
		complete(m);
		return 1;
	}
	if (m->b_offered)
		nua_ack(c->far->nh, TAG_END());
	else
		m->b_acking = 1; /* C offered: its ACK waits for B's answer */
	pl = body_pl(sip);
	m->b->answered = 1;
	nua_respond(m->b->nh, SIP_200_OK, BODY_TAGS_PL(sip, pl), TAG_END());
	return 1;
}

int move_ack(struct move *m, struct leg *leg, const sip_t *sip)
{
	struct call *c = m->call;
	sip_payload_t *pl;

	if (leg != m->b)
		return 0;
	if (m->state != SIP_MOVE_MOVING || !m->c_answered || m->third_party)
		return 1;
	if (m->b_acking) {
		m->b_acking = 0;
		copy_payload(&m->b_sdp, sip);
		pl = m->b_sdp ? sip_payload_create(c->home, m->b_sdp, (isize_t)strlen(m->b_sdp))
		              : NULL;
		pl = pl ? sdp_to_far(c, pl) : NULL;
		nua_ack(c->far->nh, TAG_IF(pl, SIPTAG_CONTENT_TYPE_STR("application/sdp")),
		        TAG_IF(pl, SIPTAG_PAYLOAD(pl)), TAG_END());
	}
	complete(m);
	return 1;
}

int move_leg_left(struct move *m, struct leg *leg)
{
	struct call *c = m->call;

	if (!c)
		return 0;
	if (leg == m->b) {
		if (m->reinviting) {
			m->b_gone = 1; /* finish with C first, then give it A's media back */
			return 1;
		}
		fail(m, 487, "the new device left");
		return 1;
	}
	if (leg == c->near && m->b &&
	    (m->state == SIP_MOVE_MOVING || (m->state == SIP_MOVE_CONFIRMING && !m->need_near) ||
	     m->state == SIP_MOVE_REDEEMED)) {
		/* A hung up, but B is on its way in: the call goes on for B. */
		m->a_gone = 1;
		event(m, "near-left", "the near device hung up; the move goes on");
		return 1;
	}
	return 0;
}

int move_leg_terminated(struct move *m, struct leg *leg)
{
	struct call *c = m->call;

	if (!c)
		return 0;
	if (leg == m->b && m->state != SIP_MOVE_DONE) {
		if (m->reinviting)
			m->b_gone = 1;
		else
			fail(m, 487, "the new device left");
		return 0;
	}
	return leg == c->near && m->a_gone;
}

/* ---- redeeming a code ---- */

/* Who sent req, as guesses are counted: its address, never its port (store_source_key). */
static void source_of(msg_t *req, char *out, size_t len)
{
	su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;

	if (!ai || !ai->ai_addr || store_source_key(ai->ai_addr, out, len))
		snprintf(out, len, "ip:?");
}

/* Counts a wrong guess of kind from source (against the move named, if any), on the worker. */
static void guess_failed(struct sip *s, const char *source, enum store_key kind, const char *named)
{
	struct store_job job = {.op = STORE_OP_FAILURE_ADD, .at = store_now()};

	if (!s->conf.store)
		return;
	snprintf(job.source, sizeof(job.source), "%s", source);
	snprintf(job.id, sizeof(job.id), "%s", named ? named : "");
	job.redeem.key = kind;
	store_submit(s->conf.store, &job, NULL, NULL);
}

static void redeem_free(struct redeem *r)
{
	struct sip *s = r->sip;

	if (r->prev)
		r->prev->next = r->next;
	else if (s->redeems == r)
		s->redeems = r->next;
	if (r->next)
		r->next->prev = r->prev;
	if (r->nh) {
		nua_handle_bind(r->nh, NULL);
		nua_handle_destroy(r->nh);
	}
	if (r->saved_it)
		nua_destroy_event(r->saved);
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
	log_limited(&r->sip->refused_log, LOG_LEVEL_INFO, "move", "code from %s refused: %d %s: %s",
	            r->source, status, phrase, why);
	metric_inc(METRIC_CODES_REJECTED_TOTAL);
	if (r->nh && !r->cancelled)
		nua_respond(r->nh, status, phrase, SIPTAG_REASON_STR(reason), TAG_END());
	if (r->cb) {
		r->cb(err, NULL, r->cb_arg);
		r->cb = NULL;
	}
	redeem_free(r);
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
	if (r->nh && !r->cancelled) {
		nua_respond(r->nh, busy ? 503 : 480,
		            busy ? "Service Unavailable" : "Temporarily Unavailable",
		            SIPTAG_RETRY_AFTER_STR(after),
		            SIPTAG_REASON_STR(busy ? "SIP;cause=503;text=\"Numeric codes paused\""
		                                   : "SIP;cause=480;text=\"Too many wrong codes\""),
		            TAG_END());
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
	if (!m || !c || m->state != SIP_MOVE_OFFERED) {
		redeem_refuse(r, 404, "Not Found", "the call is not on this node", ENOENT);
		return;
	}
	if (r->nh && r->cancelled) {
		fail(m, 487, "the new device gave up before its code was checked");
		redeem_free(r);
		return;
	}
	su_timer_reset(m->timer);
	m->t_redeem = r->arrived;
	snprintf(m->taken_from, sizeof(m->taken_from), "%s", r->source);
	set_state(m, SIP_MOVE_REDEEMED);
	if (r->nh) {
		b = call_leg_new(c, 1, 1);
		if (!b) {
			fail(m, 500, "out of memory");
			redeem_free(r);
			return;
		}
		b->nh = r->nh;
		r->nh = NULL;
		nua_handle_bind(b->nh, &b->b);
		b->call_id = su_strdup(c->home, r->call_id);
		b->uri = su_strdup(c->home, r->from_uri);
		m->b = b;
		m->b_offered = r->sdp != NULL;
		m->b_sdp = r->sdp;
		r->sdp = NULL;
		m->taken_by = r->from_uri ? strdup(r->from_uri) : NULL;
		event(m, "presented", "by %s from %s", r->from_uri ? r->from_uri : "?", r->source);
	} else {
		m->third_party = 1;
		m->target = r->target;
		r->target = NULL;
		m->taken_by = strdup(m->target);
		m->cb = r->cb;
		m->cb_arg = r->cb_arg;
		r->cb = NULL;
		event(m, "presented", "to dial %s, from %s", m->target, r->source);
	}
	redeem_free(r);
	after_redeem(m);
	if (m->third_party && m->state != SIP_MOVE_FAILED)
		reply(m, 0);
}

static struct redeem *redeem_new(struct sip *s, const char *source)
{
	struct redeem *r = calloc(1, sizeof(*r));

	if (!r)
		return NULL;
	r->b.kind = BOUND_REDEEM;
	r->sip = s;
	snprintf(r->source, sizeof(r->source), "%s", source);
	r->arrived = now_us();
	r->next = s->redeems;
	if (s->redeems)
		s->redeems->prev = r;
	s->redeems = r;
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

	return m && (m->state == SIP_MOVE_OFFERED || m->state == SIP_MOVE_STORING);
}

/* The store knows which node holds the code's call: another one gets the INVITE bridged. */
static void on_node(struct store_job *job, void *arg)
{
	struct redeem *r = arg;
	struct sip *s = r->sip;
	const nua_event_data_t *ed = nua_event_data(r->saved);
	const sip_t *sip = ed && ed->e_msg ? sip_object(ed->e_msg) : NULL;
	url_t *target;
	nua_handle_t *nh;
	int err;

	if (r->sip->detached)
		return; /* exiting: move_free_all() frees it */

	if (r->cancelled || !sip) {
		redeem_free(r);
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
	nh = r->nh;
	r->nh = NULL;
	nua_handle_bind(nh, NULL);
	invite_bridge(s, nh, sip, 0, target, 0);
	su_free(s->home, target);
	redeem_free(r);
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

static int for_us(struct sip *s, const url_t *u)
{
	return u->url_host && ((s->conf.domain && !strcasecmp(u->url_host, s->conf.domain)) ||
	                       route_is_self(s, u));
}

int move_invite(struct sip *s, nua_handle_t *nh, const sip_t *sip, msg_t *req)
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

	if (!user || !for_us(s, u)) {
		if (sip->sip_replaces) {
			nua_respond(nh, 403, "Replaces Needs A Move Code", TAG_END());
			nua_handle_destroy(nh);
			return 1;
		}
		return 0;
	}
	source_of(req, source, sizeof(source));
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
				guess_failed(s, source, STORE_KEY_TOKEN, named);
				nua_respond(nh, SIP_481_NO_TRANSACTION,
				            SIPTAG_REASON_STR("SIP;cause=481;text=\"Replaces names "
				                              "no dialog of this code's call\""),
				            TAG_END());
				nua_handle_destroy(nh);
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
		if (sip->sip_replaces) {
			nua_respond(nh, 403, "Replaces Needs A Move Code", TAG_END());
			nua_handle_destroy(nh);
			return 1;
		}
		return 0;
	}
	if (!s->conf.keys || !s->conf.store) {
		nua_respond(nh, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		nua_handle_destroy(nh);
		return 1;
	}
	r = redeem_new(s, source);
	if (!r) {
		nua_respond(nh, SIP_500_INTERNAL_SERVER_ERROR, TAG_END());
		nua_handle_destroy(nh);
		return 1;
	}
	r->nh = nh;
	nua_handle_bind(nh, &r->b);
	if (err) {
		/* A malformed or forged code still counts as a wrong guess from its source. */
		guess_failed(s, source, key, NULL);
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
		nua_save_event(s->nua, r->saved);
		r->saved_it = 1;
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

/* Whether name is in the comma or space separated list (case does not matter). */
static int in_list(const char *list, const char *name)
{
	size_t n = strlen(name), k;

	while (list && *list) {
		list += strspn(list, ", \t");
		k = strcspn(list, ", \t");
		if (k == n && !strncasecmp(list, name, n))
			return 1;
		list += k;
	}
	return 0;
}

/*
 * Where a code holder may have us call (landing page, images, REFER out): a user at our domain,
 * reached through the upstream (*direct = 0), or at a host of [move] dial_domains, reached
 * directly (*direct = 1). An address literal or a port only where the administrator listed
 * exactly that host[:port]; never URI parameters but user=phone, or headers: the target names
 * a user, not a route. out gets the URI to dial. EPERM or EINVAL.
 */
int move_dial_target(struct sip *s, const char *target, char *out, size_t len, int *direct)
{
	su_home_t home[1] = {SU_HOME_INIT(home)};
	url_t *u;
	int err = 0;

	/* A tel: number is dialled in our domain, through the PBX. */
	if (!strncasecmp(target, "tel:", 4)) {
		size_t n = strcspn(target + 4, ";");
		if (!n || n > 32 || strspn(target + 4, "+0123456789-.()") < n)
			return EINVAL;
		snprintf(out, len, "sip:%.*s@%s;user=phone", (int)n, target + 4, s->conf.domain);
		*direct = 0;
		return 0;
	}
	char hostport[300];

	u = url_make(home, target);
	if (!u || (u->url_type != url_sip && u->url_type != url_sips) || !u->url_host ||
	    !u->url_user || !*u->url_user || u->url_password)
		err = EINVAL;
	else if (u->url_headers || (u->url_params && strcasecmp(u->url_params, "user=phone")))
		err = EPERM;
	if (!err)
		snprintf(hostport, sizeof(hostport), "%s%s%s", u->url_host, u->url_port ? ":" : "",
		         u->url_port ? u->url_port : "");
	if (err)
		;
	else if (in_list(s->conf.dial_domains, hostport))
		*direct = 1;
	else if (u->url_port || host_is_ip_address(u->url_host))
		err = EPERM;
	else if (s->conf.domain && !strcasecmp(u->url_host, s->conf.domain))
		*direct = 0;
	else
		err = EPERM;
	if (!err && (size_t)snprintf(out, len, "%s", target) >= len)
		err = EINVAL;
	su_home_deinit(home);
	return err;
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
		guess_failed(s, source ? source : "ip:?", STORE_KEY_TOKEN, NULL);
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
		redeem_free(r);
	}
	return err;
}

/* ---- images ---- */

#define SCAN_SLOTS 1024 /* sources whose image rate is remembered (4-way sets) */
#define SCAN_WAYS  4

/* One source's token bucket: an IPv4 address or an IPv6 /64. */
struct scan_slot {
	uint8_t key[9]; /* family, then 4 or 8 bytes */
	double tokens;
	long long at; /* monotonic microseconds of the last refill */
};

/* Images in the decoder and each source's rate. Owned by the sip; freed by move_free_all. */
struct scan_limit {
	unsigned queued; /* submitted and not yet done */
	struct scan_slot slot[SCAN_SLOTS];
};

struct scan {
	struct sip *sip;
	void *image;
	size_t len;
	char who[8];
	char *target;     /* for "new": where to dial; by MESSAGE, its sender */
	char call_id[33]; /* for "near" by MESSAGE: the call it came on */
	uint8_t show_hash[CODE_HASH_LEN];
	uint64_t id64;         /* the move the image showed, while the store is asked */
	unsigned has_show : 1; /* for "near" by HTTP: the move whose secret came with it */
	unsigned own_nh : 1;   /* nh is an out-of-dialog MESSAGE's handle, ours to destroy */
	char source[STORE_SOURCE_MAX]; /* the sender, as guesses are counted (store_source_key) */
	enum store_key kind;           /* what the image showed: a token, or a numeric code */
	nua_handle_t *nh;              /* a MESSAGE answered once decoded, or NULL */
	nua_saved_event_t saved[1];
	sip_move_h *cb;
	void *cb_arg;
	struct code_scan_opts opts;
	struct code_scan_result res;
	int err;
};

static void scan_run(void *arg)
{
	struct scan *sc = arg;

	sc->err = code_scan_buffer(sc->image, sc->len, &sc->opts, &sc->res);
}

/* A move whose code an image may still show: on offer, or waiting for scans. */
static int scannable(const struct move *m)
{
	return m->state == SIP_MOVE_OFFERED || m->state == SIP_MOVE_CONFIRMING;
}

static struct move *move_by_show(struct sip *s, const uint8_t hash[CODE_HASH_LEN])
{
	struct move *found = NULL;

	/* Every move is compared, in constant time, so the time tells nothing. */
	for (struct move *m = s->moves; m; m = m->next)
		if (!CRYPTO_memcmp(m->show_hash, hash, CODE_HASH_LEN))
			found = m;
	return found;
}

int sip_move_show(struct sip *s, const char *secret, sip_move_h *cb, void *arg)
{
	uint8_t hash[CODE_HASH_LEN];
	struct sip_move_info info;
	struct move *m;

	if (code_secret_hash(secret, hash))
		return ENOENT;
	m = move_by_show(s, hash);
	if (!m)
		return ENOENT;
	info_fill(m, &info);
	cb(0, &info, arg);
	return 0;
}

/* The move an image's symbols name; *kind says whether a barcode (a numeric code, under the
 * node-wide budget) was read, which also makes a miss a numeric guess. */
static struct move *scan_find(struct sip *s, const struct code_scan_result *res, int *errp,
                              enum store_key *kind)
{
	char tok[CODE_TOKEN_LEN + 1];
	uint64_t id64;
	int err = CODE_ENOTOURS;

	*kind = STORE_KEY_TOKEN;
	for (unsigned i = 0; i < res->n; i++) {
		const struct code_symbol *sym = &res->sym[i];
		if (sym->kind == CODE_SYM_QR && !code_uri_token(sym->text, tok, sizeof(tok))) {
			err = code_token_verify(s->conf.keys, tok, time(NULL), &id64, NULL);
			struct move *m = err ? NULL : move_by_id64(s, id64);
			if (m && scannable(m) && !CRYPTO_memcmp(m->token, tok, CODE_TOKEN_LEN)) {
				*kind = STORE_KEY_TOKEN;
				return m;
			}
			if (!err)
				err = ENOENT;
		} else if (sym->kind == CODE_SYM_CODE128) {
			*kind = STORE_KEY_CODE;
			for (struct move *m = s->code_table[code_bucket(sym->text)]; m;
			     m = m->cnext)
				if (scannable(m) && strlen(sym->text) == strlen(m->code) &&
				    !CRYPTO_memcmp(sym->text, m->code, strlen(m->code)))
					return m;
		}
	}
	*errp = err;
	return NULL;
}

/*
 * The answer to the sender: taken (0), must wait (EAGAIN: the source is over its budget of
 * wrong guesses) or no code; nothing else leaves, by SIP or HTTP.
 */
static void scan_answer(struct scan *sc, int err, const struct sip_move_info *info)
{
	struct sip *s = sc->sip;
	int wait = err == EAGAIN;

	if (sc->cb)
		sc->cb(!err ? 0 : wait ? EAGAIN : CODE_ENOCODE, err ? NULL : info, sc->cb_arg);
	sc->cb = NULL;
	if (sc->nh) {
		if (!s->detached)
			nua_respond(sc->nh,
			            !err   ? 200
			            : wait ? 480
			                   : 404,
			            !err   ? "Taken"
			            : wait ? "Too Many Wrong Codes"
			                   : "No Code",
			            TAG_IF(wait, SIPTAG_RETRY_AFTER_STR("1")),
			            NUTAG_WITH_SAVED(sc->saved), TAG_END());
		nua_destroy_event(sc->saved);
		if (sc->own_nh)
			nua_handle_destroy(sc->nh);
		else
			nua_handle_unref(sc->nh);
		sc->nh = NULL;
	}
}

static void scan_free(struct scan *sc)
{
	free(sc->image);
	free(sc->target);
	free(sc);
}

/* The image holds m's code, from the right sender, and the source may still guess. */
static void scan_accept(struct scan *sc, struct move *m)
{
	struct sip *s = sc->sip;
	struct sip_move_info info;
	int err, near = !strcmp(sc->who, "near");

	event(m, "scan", "image from the %s device (%s) holds the code", near ? "near" : "new",
	      sc->source);
	if (near)
		m->scan_near = 1;
	else
		m->scan_new = 1;
	if (!near && sc->target && m->state == SIP_MOVE_OFFERED) {
		err = sip_move_dial(s, m->token, sc->target, sc->source, sc->cb, sc->cb_arg);
		if (!err)
			sc->cb = NULL; /* the dial answers the caller */
		scan_answer(sc, err, NULL);
		return;
	}
	check_confirmed(m);
	memset(&info, 0, sizeof(info));
	info.state = m->state; /* nothing else: no id, call, code or token */
	info.ms_redeem_to_reinvite = info.ms_redeem_to_answer = -1;
	scan_answer(sc, 0, &info);
}

/* The store told whether the image's source is over its budget of wrong guesses. */
static void on_scan_source(struct store_job *job, void *arg)
{
	struct scan *sc = arg;
	struct sip *s = sc->sip;
	struct move *m;

	if (s->detached) {
		sc->cb = NULL; /* exiting: only let go */
		scan_answer(sc, ESHUTDOWN, NULL);
	} else if (!job->err && (job->failure.wait_ms > 0 || job->failure.budget_wait_ms > 0)) {
		LOG_INFO("move", "image from %s refused: %s", sc->source,
		         job->failure.wait_ms > 0 ? "it must wait after wrong codes"
		                                  : "numeric codes are paused node-wide");
		metric_inc(METRIC_CODES_REJECTED_TOTAL);
		scan_answer(sc, EAGAIN, NULL);
	} else if (!(m = move_by_id64(s, sc->id64)) || !scannable(m)) {
		scan_answer(sc, ENOENT, NULL); /* the code went while the store was asked */
	} else {
		scan_accept(sc, m);
	}
	scan_free(sc);
}

static void scan_done(void *arg)
{
	struct scan *sc = arg;
	struct sip *s = sc->sip;
	struct move *m = NULL;
	int err = sc->err, near = !strcmp(sc->who, "near");

	if (s->scan && s->scan->queued)
		s->scan->queued--;
	if (s->detached) {
		sc->cb = NULL; /* exiting: only let go */
		scan_answer(sc, ESHUTDOWN, NULL);
		goto out;
	}
	metric_inc(METRIC_SCANS_TOTAL);
	if (!err)
		m = scan_find(s, &sc->res, &err, &sc->kind);
	if (!m) {
		metric_inc(METRIC_SCANS_FAILED_TOTAL);
		/* A symbol that is no live code is a wrong guess, as a wrong dialled code is. */
		if (s->conf.store && err != CODE_ENOCODE && err != CODE_ENOTIMAGE &&
		    err != CODE_ETRUNCATED && err != CODE_ETOOLARGE && err != ENOMEM) {
			guess_failed(s, sc->source, sc->kind, NULL);
			metric_inc(METRIC_CODES_REJECTED_TOTAL);
		}
		LOG_INFO("move", "image from %s (%s): %s", sc->source, sc->who, code_strerror(err));
		scan_answer(sc, err ? err : ENOENT, NULL);
		goto out;
	}
	/* The near half must come from this move's near device (its dialog, or the secret only
	 * it was sent), the new half from the device that presented the code (when one has). */
	if (near && ((sc->call_id[0] && (!m->call || strcmp(m->call->id, sc->call_id))) ||
	             (sc->has_show && CRYPTO_memcmp(m->show_hash, sc->show_hash, CODE_HASH_LEN)))) {
		LOG_INFO("move", "%s: image from another move's near device (%s) ignored", m->id,
		         sc->source);
		scan_answer(sc, CODE_ENOTOURS, NULL);
		goto out;
	}
	if (!near && m->state != SIP_MOVE_OFFERED && m->taken_by &&
	    (!sc->target || strcmp(sc->target, m->taken_by))) {
		LOG_INFO("move", "%s: image from %s, not from the device that took the code (%s)",
		         m->id, sc->target ? sc->target : sc->source, m->taken_by);
		scan_answer(sc, CODE_ENOTOURS, NULL);
		goto out;
	}
	if (s->conf.store) {
		/* A source over its budget of wrong guesses waits, whatever the guess; a barcode
		 * (a numeric code) also waits while the node-wide budget is spent. */
		struct store_job job = {.op = STORE_OP_SOURCE_CHECK, .at = store_now()};
		snprintf(job.source, sizeof(job.source), "%s", sc->source);
		job.redeem.key = sc->kind;
		sc->id64 = m->id64;
		if (!store_submit(s->conf.store, &job, on_scan_source, sc))
			return;
	}
	scan_accept(sc, m);
out:
	scan_free(sc);
}

/* The rate key (IPv4 address, IPv6 /64) and the address as text, from a peer. */
static int scan_peer(const struct sockaddr *sa, uint8_t key[9], char *text, size_t len)
{
	memset(key, 0, 9);
	snprintf(text, len, "?");
	if (!sa)
		return EINVAL;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
		key[0] = 4;
		memcpy(key + 1, &a->sin_addr, 4);
		inet_ntop(AF_INET, &a->sin_addr, text, (socklen_t)len);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
		if (IN6_IS_ADDR_V4MAPPED(&a->sin6_addr)) {
			key[0] = 4;
			memcpy(key + 1, a->sin6_addr.s6_addr + 12, 4);
			inet_ntop(AF_INET, a->sin6_addr.s6_addr + 12, text, (socklen_t)len);
		} else {
			key[0] = 6;
			memcpy(key + 1, a->sin6_addr.s6_addr, 8);
			inet_ntop(AF_INET6, &a->sin6_addr, text, (socklen_t)len);
		}
		return 0;
	}
	return EINVAL;
}

/* One image from the source key: 0 if its bucket has a token, EAGAIN if not. */
static int scan_rate_take(struct sip *s, const uint8_t key[9])
{
	struct scan_limit *l = s->scan;
	unsigned set = (hash_bytes(key, 9) % (SCAN_SLOTS / SCAN_WAYS)) * SCAN_WAYS;
	long long now = now_us();
	double rate = s->conf.scan_rate ? s->conf.scan_rate : 2,
	       burst = s->conf.scan_burst ? s->conf.scan_burst : 5;
	struct scan_slot *slot = NULL, *oldest = NULL;

	for (unsigned i = set; i < set + SCAN_WAYS && !slot; i++) {
		if (!memcmp(l->slot[i].key, key, 9))
			slot = &l->slot[i];
		else if (!oldest || l->slot[i].at < oldest->at)
			oldest = &l->slot[i];
	}
	if (!slot) {
		/* The set's least recently seen source is forgotten: a newcomer starts full. */
		slot = oldest;
		memcpy(slot->key, key, 9);
		slot->tokens = burst;
		slot->at = now;
	}
	slot->tokens += (double)(now - slot->at) * rate / 1e6;
	if (slot->tokens > burst)
		slot->tokens = burst;
	slot->at = now;
	if (slot->tokens < 1)
		return EAGAIN;
	slot->tokens -= 1;
	return 0;
}

/* Whether an image could count now: 0 if a code is on offer here for this sender, ENOENT if
 * none is, EPERM if the show secret names no move. */
static int scan_on_offer(struct sip *s, const char *call_id, const uint8_t *show_hash)
{
	if (call_id) {
		struct call *c = call_find(s, call_id);
		return c && c->move && scannable(c->move) ? 0 : ENOENT;
	}
	if (show_hash) {
		struct move *m = move_by_show(s, show_hash);
		return !m ? EPERM : scannable(m) ? 0 : ENOENT;
	}
	for (struct move *m = s->moves; m; m = m->next)
		if (scannable(m))
			return 0;
	return ENOENT;
}

/*
 * Checks an image before any decoding (on offer, rate, header, queue), then queues it. With
 * nh, the current MESSAGE is saved and answered once the image is decoded.
 */
static int scan_submit(struct sip *s, const void *image, size_t len, const char *who,
                       const char *target, const char *call_id, const uint8_t *show_hash,
                       const struct sockaddr *peer, nua_handle_t *nh, int own_nh, sip_move_h *cb,
                       void *arg)
{
	struct scan *sc;
	uint8_t key[9];
	char addr[INET6_ADDRSTRLEN];
	unsigned w = 0, h = 0;
	int err;

	if (strcmp(who, "near") && strcmp(who, "new"))
		return EINVAL;
	if (!s->work || !s->conf.keys)
		return ENOTSUP;
	if (!s->scan && !(s->scan = calloc(1, sizeof(*s->scan))))
		return ENOMEM;
	scan_peer(peer, key, addr, sizeof(addr));
	err = scan_on_offer(s, call_id, show_hash);
	if (err)
		return err;
	if (scan_rate_take(s, key)) {
		LOG_INFO("move", "image from %s refused: over [move] scan_rate", addr);
		return EAGAIN;
	}
	err = code_image_size(image, len, &w, &h);
	if (err)
		return err;
	sc = calloc(1, sizeof(*sc));
	if (!sc)
		return ENOMEM;
	code_scan_opts_default(&sc->opts);
	if (s->conf.scan_max_bytes)
		sc->opts.lim.max_bytes = s->conf.scan_max_bytes;
	if (s->conf.scan_max_pixels)
		sc->opts.lim.max_pixels = s->conf.scan_max_pixels;
	err = code_image_check(len, w, h, &sc->opts.lim);
	if (err) {
		LOG_INFO("move", "image from %s refused: %u x %u, %zu bytes: over the caps", addr,
		         w, h, len);
		free(sc);
		return err;
	}
	if (s->scan->queued >= (s->conf.scan_queue ? s->conf.scan_queue : 8)) {
		LOG_INFO("move", "image from %s refused: the decode queue is full", addr);
		free(sc);
		return ENOSPC;
	}
	sc->image = malloc(len ? len : 1);
	sc->target = target && *target ? strdup(target) : NULL;
	if (!sc->image || (target && *target && !sc->target)) {
		free(sc->image);
		free(sc);
		return ENOMEM;
	}
	memcpy(sc->image, image, len);
	sc->len = len;
	sc->sip = s;
	snprintf(sc->who, sizeof(sc->who), "%s", who);
	snprintf(sc->call_id, sizeof(sc->call_id), "%s", call_id ? call_id : "");
	if (show_hash) {
		memcpy(sc->show_hash, show_hash, CODE_HASH_LEN);
		sc->has_show = 1;
	}
	/* The same key as a dialled code's: images and dialled codes share one budget. */
	if (!peer || store_source_key(peer, sc->source, sizeof(sc->source)))
		snprintf(sc->source, sizeof(sc->source), "ip:%s", addr);
	sc->cb = cb;
	sc->cb_arg = arg;
	err = sip_work_submit(s->work, scan_run, scan_done, sc);
	if (err) {
		free(sc->image);
		free(sc->target);
		free(sc);
		return err;
	}
	s->scan->queued++;
	if (nh) {
		/* The loop is here until this returns: scan_done cannot have run yet. */
		nua_save_event(s->nua, sc->saved);
		sc->nh = own_nh ? nh : nua_handle_ref(nh);
		sc->own_nh = own_nh ? 1 : 0;
	}
	return 0;
}

int sip_move_scan(struct sip *s, const void *image, size_t len, const char *who, const char *target,
                  const char *show, const struct sockaddr *peer, sip_move_h *cb, void *arg)
{
	uint8_t hash[CODE_HASH_LEN];

	if (!strcmp(who, "near")) {
		/* A's half needs the secret only A was sent; anyone may send B's. */
		if (!show || code_secret_hash(show, hash))
			return EPERM;
		return scan_submit(s, image, len, who, NULL, NULL, hash, peer, NULL, 0, cb, arg);
	}
	return scan_submit(s, image, len, who, target, NULL, NULL, peer, NULL, 0, cb, arg);
}

/* ---- asking for a move, and answers, from the phones ---- */

static int is_image(const sip_t *sip)
{
	const char *t = sip->sip_content_type ? sip->sip_content_type->c_type : NULL;

	return t && body_pl(sip) && (!strcasecmp(t, "image/png") || !strcasecmp(t, "image/jpeg"));
}

static int body_is(const sip_t *sip, const char *word)
{
	const sip_payload_t *pl = body_pl(sip);
	const char *p;
	size_t len, n = strlen(word);

	if (!pl)
		return 0;
	p = pl->pl_data;
	len = pl->pl_len;
	while (len && isspace((unsigned char)*p))
		p++, len--;
	while (len && isspace((unsigned char)p[len - 1]))
		len--;
	return len == n && !strncasecmp(p, word, n);
}

int move_refer(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip, tagi_t tags[])
{
	const sip_refer_to_t *rt = sip->sip_refer_to;
	sip_event_t const *ev = NULL;
	char *event_str = NULL, source[STORE_SOURCE_MAX];
	int err;

	if (!leg || leg != leg->call->near || !rt || !rt->r_url->url_user ||
	    strcasecmp(rt->r_url->url_user, "move") || !for_us(s, rt->r_url))
		return 0;
	tl_gets(tags, NUTAG_REFER_EVENT_REF(ev), TAG_END());
	if (ev)
		event_str = sip_header_as_string(s->home, (const sip_header_t *)ev);
	source_of(nua_current_request(s->nua), source, sizeof(source));
	err = move_start_on(leg->call, source, NULL, NULL, NULL, NULL);
	if (err) {
		nua_respond(nh, err == EBUSY ? 491 : 488,
		            err == EBUSY ? "A Move Is Under Way" : "Call Cannot Move Now",
		            NUTAG_WITH_THIS(s->nua), TAG_END());
	} else {
		nua_respond(nh, SIP_202_ACCEPTED, NUTAG_WITH_THIS(s->nua), TAG_END());
		if (leg->call->move) {
			leg->call->move->refer_nh = nh;
			free(leg->call->move->refer_event);
			leg->call->move->refer_event =
			    event_str ? strdup(event_str) : strdup("refer");
		}
	}
	su_free(s->home, event_str);
	return 1;
}

static void scan_answered(int err, const struct sip_move_info *info, void *arg)
{
	/* The MESSAGE was answered already; the log line says what the image held. */
}

int move_message(struct sip *s, struct leg *leg, nua_handle_t *nh, const sip_t *sip)
{
	struct call *c = leg ? leg->call : NULL;
	char source[STORE_SOURCE_MAX];
	const sip_payload_t *pl = body_pl(sip);

	source_of(nua_current_request(s->nua), source, sizeof(source));
	if (leg && (leg == c->near || leg == c->far) && c->move && pl &&
	    answer(c->move, leg == c->near, pl->pl_data, pl->pl_len, 1)) {
		nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(s->nua), TAG_END());
		return 1;
	}
	if (leg && leg == c->near && body_is(sip, "move")) {
		int err = move_start_on(c, source, NULL, NULL, NULL, NULL);
		nua_respond(nh, err ? 488 : 200, err ? "Call Cannot Move Now" : "OK",
		            NUTAG_WITH_THIS(s->nua), TAG_END());
		return 1;
	}
	if (is_image(sip) && (leg ? leg == c->near : for_us(s, sip->sip_request->rq_url))) {
		msg_t *req = nua_current_request(s->nua);
		su_addrinfo_t *ai = req ? msg_addrinfo(req) : NULL;
		char *from = leg ? NULL : url_as_string(NULL, sip->sip_from->a_url);
		int err = scan_submit(s, pl->pl_data, pl->pl_len, leg ? "near" : "new", from,
		                      leg ? c->id : NULL, NULL, ai ? ai->ai_addr : NULL, nh, !leg,
		                      scan_answered, NULL);
		free(from);
		if (err) {
			/* Refused before decoding: nothing to scan, too fast, too big, or busy. */
			int st = err == ENOENT                    ? 480
			         : err == EAGAIN || err == ENOSPC ? 503
			         : err == CODE_ETOOLARGE          ? 413
			         : err == ENOTSUP                 ? 501
			         : err == ENOMEM                  ? 500
			                                          : 415;
			const char *ph = err == ENOENT           ? "No Code On Offer"
			                 : err == EAGAIN         ? "Too Many Images"
			                 : err == ENOSPC         ? "Busy Decoding Images"
			                 : err == CODE_ETOOLARGE ? "Image Too Large"
			                 : err == ENOTSUP        ? "Cannot Read Images Here"
			                 : err == ENOMEM         ? "Out Of Memory"
			                                         : "Not A PNG Or JPEG Image";
			nua_respond(nh, st, ph, TAG_IF(st == 503, SIPTAG_RETRY_AFTER_STR("1")),
			            NUTAG_WITH_THIS(s->nua), TAG_END());
			if (!leg)
				nua_handle_destroy(nh);
		}
		return 1;
	}
	if (!leg && pl) {
		/* An answer from a phone that replies out of dialog: its From names the party, and
		 * only the question's nonce shows it is that party. */
		char *from = url_as_string(NULL, sip->sip_from->a_url);
		int taken = 0;
		for (struct move *m = s->moves; m && from && !taken; m = m->next) {
			struct call *mc = m->call;
			if (!mc || m->state != SIP_MOVE_CONFIRMING)
				continue;
			if (mc->near && mc->near->uri && !strcmp(mc->near->uri, from))
				taken = answer(m, 1, pl->pl_data, pl->pl_len, 0);
			else if (mc->far && mc->far->uri && !strcmp(mc->far->uri, from))
				taken = answer(m, 0, pl->pl_data, pl->pl_len, 0);
			else
				continue;
			if (!taken)
				LOG_INFO("move",
				         "%s: MESSAGE out of dialog from %s (%s) not taken as an "
				         "answer: no nonce, a wrong one, or not asked",
				         m->id, from, source);
		}
		free(from);
		if (taken) {
			nua_respond(nh, SIP_200_OK, NUTAG_WITH_THIS(s->nua), TAG_END());
			nua_handle_destroy(nh);
			return 1;
		}
	}
	return 0;
}

/* DTMF as SIP INFO: the feature code asks for a move. The digits are still relayed. */
int move_info(struct sip *s, struct leg *leg, const sip_t *sip)
{
	const char *feature = s->conf.move_feature;
	const sip_payload_t *pl = body_pl(sip);
	const char *t = sip->sip_content_type ? sip->sip_content_type->c_type : "";
	char digit = 0;
	size_t n, fl;
	long long now = now_us();

	if (!leg || leg != leg->call->near || !pl || !feature || !*feature)
		return 0;
	if (!strcasecmp(t, "application/dtmf-relay")) {
		const char *p = memmem(pl->pl_data, pl->pl_len, "Signal", 6);
		const char *end = pl->pl_data + pl->pl_len;
		if (!p)
			return 0;
		for (p += 6; p < end && (*p == ' ' || *p == '='); p++)
			;
		digit = p < end ? *p : 0;
	} else if (!strcasecmp(t, "application/dtmf")) {
		for (n = 0; n < pl->pl_len && isspace((unsigned char)pl->pl_data[n]); n++)
			;
		digit = n < pl->pl_len ? pl->pl_data[n] : 0;
		if (isdigit((unsigned char)digit) && n + 1 < pl->pl_len &&
		    isdigit((unsigned char)pl->pl_data[n + 1])) {
			/* RFC 2833 event numbers: 10 is '*', 11 is '#'. */
			int ev = atoi(pl->pl_data + n);
			digit = ev == 10 ? '*' : ev == 11 ? '#' : (char)('0' + ev % 10);
		}
	} else {
		return 0;
	}
	if (!digit || !strchr("0123456789*#ABCDabcd", digit))
		return 0;
	/* Digits more than 3 s apart do not make one code. */
	if (now - leg->dtmf_at > 3000000)
		leg->dtmf_len = 0;
	leg->dtmf_at = now;
	if (leg->dtmf_len + 1 >= sizeof(leg->dtmf)) {
		memmove(leg->dtmf, leg->dtmf + 1, sizeof(leg->dtmf) - 2);
		leg->dtmf_len--;
	}
	leg->dtmf[leg->dtmf_len++] = digit;
	leg->dtmf[leg->dtmf_len] = 0;
	fl = strlen(feature);
	if (leg->dtmf_len >= fl && !strcmp(leg->dtmf + leg->dtmf_len - fl, feature)) {
		char source[STORE_SOURCE_MAX];
		leg->dtmf_len = 0;
		source_of(nua_current_request(s->nua), source, sizeof(source));
		if (move_start_on(leg->call, source, NULL, NULL, NULL, NULL))
			LOG_INFO("move", "call %s: feature code %s, but the call cannot move now",
			         leg->call->id, feature);
	}
	return 0;
}

/* ---- REFER to a known phone ---- */

static void refer_out_free(struct refer_out *ro)
{
	struct sip *s = ro->sip;

	if (ro->prev)
		ro->prev->next = ro->next;
	else if (s->refers == ro)
		s->refers = ro->next;
	if (ro->next)
		ro->next->prev = ro->prev;
	if (ro->timer)
		su_timer_destroy(ro->timer);
	if (ro->nh) {
		nua_handle_bind(ro->nh, NULL);
		nua_handle_destroy(ro->nh);
	}
	if (ro->cb)
		ro->cb(ETIMEDOUT, NULL, ro->cb_arg);
	free(ro);
}

static void refer_out_expired(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	refer_out_free(arg);
}

int sip_move_refer(struct sip *s, const char *move_id, const char *target, sip_move_h *cb,
                   void *arg)
{
	struct move *m = move_by_id(s, move_id);
	struct refer_out *ro;
	char refer_to[256], uri[320];
	int direct = 0, err;

	if (!m)
		return ENOENT;
	if (m->state != SIP_MOVE_OFFERED)
		return EALREADY;
	if (strncasecmp(target, "sip:", 4) && strncasecmp(target, "sips:", 5))
		return EINVAL;
	err = move_dial_target(s, target, uri, sizeof(uri), &direct);
	if (err)
		return err;
	target = uri;
	ro = calloc(1, sizeof(*ro));
	if (!ro)
		return ENOMEM;
	ro->b.kind = BOUND_REFER;
	ro->sip = s;
	ro->next = s->refers;
	if (s->refers)
		s->refers->prev = ro;
	s->refers = ro;
	ro->cb = cb;
	ro->cb_arg = arg;
	snprintf(ro->move_id, sizeof(ro->move_id), "%s", m->id);
	snprintf(refer_to, sizeof(refer_to), "<sip:m.%s@%s>", m->token, s->conf.domain);
	ro->timer = su_timer_create(su_root_task(s->root), 0);
	ro->nh = nua_handle(s->nua, &ro->b, NUTAG_URL(target), SIPTAG_TO_STR(target),
	                    TAG_IF(!direct, NUTAG_INITIAL_ROUTE_STR(s->upstream_route)), TAG_END());
	if (!ro->nh || !ro->timer) {
		ro->cb = NULL;
		refer_out_free(ro);
		return ENOMEM;
	}
	su_timer_set_interval(ro->timer, refer_out_expired, ro, MOVE_REFER_HOLD);
	event(m, "refer", "REFER to %s to dial the code", target);
	nua_refer(ro->nh, SIPTAG_REFER_TO_STR(refer_to), TAG_END());
	return 0;
}

void move_bound_event(struct sip *s, nua_event_t ev, int status, const char *phrase,
                      nua_handle_t *nh, struct bound *b, const sip_t *sip, tagi_t tags[])
{
	if (b->kind == BOUND_REDEEM) {
		struct redeem *r = (struct redeem *)b;
		if (ev == nua_i_cancel)
			r->cancelled = 1;
		else if (ev == nua_i_state) {
			int cs = -1;
			tl_gets(tags, NUTAG_CALLSTATE_REF(cs), TAG_END());
			if (cs == nua_callstate_terminated)
				r->cancelled = 1;
		}
		return;
	}
	if (b->kind == BOUND_REFER) {
		struct refer_out *ro = (struct refer_out *)b;
		if (ev == nua_r_refer && status >= 200) {
			struct move *m = move_by_id(s, ro->move_id);
			struct sip_move_info info;
			if (m)
				event(m, "refer", "the phone answered %d to the REFER", status);
			if (ro->cb) {
				if (m)
					info_fill(m, &info);
				ro->cb(status < 300 ? 0 : EPROTO, status < 300 && m ? &info : NULL,
				       ro->cb_arg);
				ro->cb = NULL;
			}
			if (status >= 300)
				refer_out_free(ro);
		} else if (ev == nua_i_notify) {
			int ss = -1;
			tl_gets(tags, NUTAG_SUBSTATE_REF(ss), TAG_END());
			if (ss == nua_substate_terminated)
				refer_out_free(ro);
		}
	}
}

/* ---- SMS ---- */

/* Numbers compare as their digits: "+1 555-0100" is "15550100". */
static int same_number(const char *a, const char *b)
{
	for (;;) {
		while (*a && !isdigit((unsigned char)*a))
			a++;
		while (*b && !isdigit((unsigned char)*b))
			b++;
		if (*a != *b)
			return 0;
		if (!*a)
			return 1;
		a++, b++;
	}
}

int sip_sms_reply(struct sip *s, const char *number, const char *body, const char *message_id)
{
	char want[32];

	if (!number || !body)
		return EINVAL;
	if (message_id && *message_id) {
		/* A gateway may deliver a message twice; a replay must not answer again. */
		for (unsigned i = 0; i < sizeof(s->sms_seen) / sizeof(s->sms_seen[0]); i++)
			if (!strncmp(s->sms_seen[i], message_id, sizeof(s->sms_seen[i]) - 1))
				return EALREADY;
		snprintf(s->sms_seen[s->sms_seen_next], sizeof(s->sms_seen[0]), "%s", message_id);
		s->sms_seen_next =
		    (s->sms_seen_next + 1) % (sizeof(s->sms_seen) / sizeof(s->sms_seen[0]));
	}
	size_t n = 0;
	for (const char *p = number; *p && n + 1 < sizeof(want); p++)
		if (isdigit((unsigned char)*p))
			want[n++] = *p;
	want[n] = 0;
	if (!n)
		return EINVAL;
	for (struct move *m = s->moves; m; m = m->next) {
		if (m->state != SIP_MOVE_CONFIRMING)
			continue;
		if (m->need_near && s->conf.confirm_sms_near && same_number(m->near_number, want))
			return answer(m, 1, body, strlen(body), 1) ? 0 : EINVAL;
		if (m->need_far && s->conf.confirm_sms_far && same_number(m->far_number, want))
			return answer(m, 0, body, strlen(body), 1) ? 0 : EINVAL;
	}
	return ENOENT;
}

void sip_sms_result(struct sip *s, unsigned long ref, int ok)
{
	for (struct move *m = s->moves; m; m = m->next)
		if (m->sms_ref[0] == ref || m->sms_ref[1] == ref) {
			if (ok)
				event(m, "sms", "the gateway took the SMS");
			else if (m->state == SIP_MOVE_CONFIRMING)
				fail(m, 480, "the SMS gateway did not take the confirmation SMS");
			return;
		}
}

void move_free_all(struct sip *s)
{
	while (s->refers) {
		s->refers->cb = NULL;
		refer_out_free(s->refers);
	}
	while (s->redeems) {
		if (s->redeems->nh && !s->redeems->cancelled)
			nua_respond(s->redeems->nh, SIP_503_SERVICE_UNAVAILABLE, TAG_END());
		redeem_free(s->redeems);
	}
	while (s->moves) {
		s->moves->call = NULL;
		s->moves->jobs = 0;
		move_free(s->moves);
	}
	free(s->scan);
	s->scan = NULL;
}
