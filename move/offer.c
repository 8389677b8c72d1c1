/* Offering a code: making it, storing it, and the MESSAGE that shows it to A. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "move/move_int.h"
#include "util/buf.h"

static int numeric_new(struct move *m, struct store_move *sm);

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
	move_store_job(m, &job);
	return 0;
}

/*
 * The code MESSAGE to the near device, until it is delivered: a phone busy with a request of
 * its own answers 491 (RFC 3261 14.1: tried again after a random wait), one that takes no
 * images answers 415 (sent again as text only). What became of it is in the move's events.
 */
struct code_msg {
	LIST_ENTRY(code_msg) link;
	struct sip *sip;
	char move_id[17];
	char *ctype, *body, *text;
	size_t len;
	unsigned tries;
	su_timer_t *timer;
};

static void code_msg_free(struct code_msg *cm)
{
	LIST_REMOVE(cm, link);
	if (cm->timer)
		su_timer_destroy(cm->timer);
	free(cm->ctype);
	free(cm->body);
	free(cm->text);
	free(cm);
}

static void code_msg_send(struct code_msg *cm);

static void code_msg_retry(su_root_magic_t *rm, su_timer_t *t, void *arg)
{
	code_msg_send(arg);
}

static void code_msg_answered(void *arg, struct leg *leg, int status, const char *phrase,
                              const sip_t *sip)
{
	struct code_msg *cm = arg;
	struct move *m = move_by_id(cm->sip, cm->move_id);
	unsigned r = 0;

	if (!m) {
		code_msg_free(cm);
		return;
	}
	if (status < 300) {
		move_event(m, "code-delivered", "the near device took the code (%d)", status);
		code_msg_free(cm);
		return;
	}
	if (status == 491 && ++cm->tries <= MOVE_491_TRIES && cm->timer) {
		RAND_bytes((unsigned char *)&r, sizeof(r));
		move_event(m, "code-retry", "the near device answered 491: sent again");
		su_timer_set_interval(cm->timer, code_msg_retry, cm, 500 + r % 1500);
		return;
	}
	if (status == 415 && cm->text && strncmp(cm->ctype, "text/", 5)) {
		move_event(m, "code-retry", "the near device takes no images (415): text only");
		free(cm->body);
		free(cm->ctype);
		cm->body = cm->text;
		cm->text = NULL;
		cm->len = strlen(cm->body);
		cm->ctype = strdup("text/plain;charset=utf-8");
		if (cm->ctype) {
			code_msg_send(cm);
			return;
		}
	}
	move_event(m, "code-undelivered", "the near device answered %d %s to the code MESSAGE",
	           status, phrase ? phrase : "");
	code_msg_free(cm);
}

static void code_msg_send(struct code_msg *cm)
{
	struct move *m = move_by_id(cm->sip, cm->move_id);
	struct leg *leg = m && m->call ? m->call->near : NULL;
	sip_payload_t *pl;
	int err;

	if (!leg || !leg->dlg || leg->terminated || leg->ending) {
		code_msg_free(cm);
		return;
	}
	pl = sip_payload_create(leg->call->home, cm->body, (isize_t)cm->len);
	err = leg_send(leg, SIP_METHOD_MESSAGE, code_msg_answered, cm,
	               SIPTAG_CONTENT_TYPE_STR(cm->ctype), SIPTAG_PAYLOAD(pl), TAG_END());
	su_free(leg->call->home, pl);
	if (err) {
		move_event(m, "code-undelivered", "cannot send the code MESSAGE: %s",
		           strerror(err));
		code_msg_free(cm);
	}
}

/* Send the code to the near device: body as ctype, text the same without an image. */
void move_code_message(struct move *m, const char *ctype, const char *body, size_t len,
                       const char *text)
{
	struct code_msg *cm = calloc(1, sizeof(*cm));

	if (!cm)
		return;
	LIST_INSERT_HEAD(&move_stack(m->sip)->code_msgs, cm, link);
	cm->sip = m->sip;
	snprintf(cm->move_id, sizeof(cm->move_id), "%s", m->id);
	cm->ctype = strdup(ctype);
	cm->body = malloc(len + 1);
	cm->text = text ? strdup(text) : NULL;
	cm->len = len;
	cm->timer = su_timer_create(su_root_task(m->sip->root), 0);
	if (!cm->ctype || !cm->body) {
		code_msg_free(cm);
		return;
	}
	memcpy(cm->body, body, len);
	cm->body[len] = 0;
	code_msg_send(cm);
}

/* At the stack's stop: the code MESSAGEs still under way are let go of. */
void move_code_messages_free(struct move_stack *ms)
{
	while (!LIST_EMPTY(&ms->code_msgs))
		code_msg_free(LIST_FIRST(&ms->code_msgs));
}

/* A part of the code MESSAGE: an image/png named name. */
static void add_png(struct buf *b, const char *name, const uint8_t *png, size_t len)
{
	buf_printf(b,
	           "\r\n--qrxfer-code\r\nContent-Type: image/png\r\n"
	           "Content-Disposition: inline; filename=%s\r\n\r\n",
	           name);
	buf_add(b, png, len);
}

static void send_code(struct move *m)
{
	struct sip *s = m->sip;
	char text[1024], link[512] = "";
	struct code_qr *qr = NULL;
	const uint8_t *png = NULL, *bar = NULL;
	uint8_t *png_here = NULL, *bar_here = NULL;
	size_t pnglen = 0, barlen = 0;
	long long left;

	if (!m->call || !m->call->near)
		return;
	/* The show link is the one secret only A is sent: without a fresh one, none. */
	if (s->conf.public_url && *s->conf.public_url && m->show[0])
		snprintf(link, sizeof(link), "\r\nShow the code: %s/m/%s/show", s->conf.public_url,
		         m->show);
	/* Sent again when A asks again: the time the code has left, not its whole life. */
	left = (long long)m->expires - (long long)time(NULL);
	snprintf(text, sizeof(text),
	         "Move this call: on the other phone dial *88%s or scan the code (%s). It works "
	         "once, for %lld seconds.%s\r\n",
	         m->code, m->qr_uri, left > 0 ? left : 1, link);
	/* The images made with the code (on the pool's worker), else made here. */
	if (s->conf.send_qr_image && m->qr_uri[0]) {
		if (m->made && m->made->qr_png) {
			png = m->made->qr_png;
			pnglen = m->made->qr_png_len;
		} else if (!code_qr_make(&qr, m->qr_uri, CODE_ECC_M) &&
		           !code_qr_png(qr, MOVE_QR_PX, 4, &png_here, &pnglen)) {
			png = png_here;
		}
	}
	if (s->conf.send_barcode_image && m->code[0]) {
		if (m->made && m->made->barcode_png && !strcmp(m->made->code, m->code)) {
			bar = m->made->barcode_png;
			barlen = m->made->barcode_png_len;
		} else if (!code_barcode_png(m->code, 3, 80, 10, &bar_here, &barlen)) {
			bar = bar_here;
		}
	}
	if (png || bar) {
		/* multipart/mixed (RFC 2046): the text, then the QR and the barcode as image/png.
		 */
		struct buf b = {0};

		buf_printf(&b, "--qrxfer-code\r\nContent-Type: text/plain;charset=utf-8\r\n\r\n%s",
		           text);
		if (png)
			add_png(&b, "move.png", png, pnglen);
		if (bar)
			add_png(&b, "move-barcode.png", bar, barlen);
		buf_puts(&b, "\r\n--qrxfer-code--\r\n");
		if (!b.failed)
			move_code_message(m, "multipart/mixed;boundary=qrxfer-code", b.data, b.len,
			                  text);
		buf_release(&b);
	} else {
		move_code_message(m, "text/plain;charset=utf-8", text, strlen(text), NULL);
	}
	free(png_here);
	free(bar_here);
	code_qr_free(qr);
}

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
	if (m->phase != MOVE_STORING)
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
		move_fail(m, 500, "the store refused the move");
		return;
	}
	move_to(m, MOVE_OFFERED, "the store took the code");
	move_event(m, "code-sent", "code sent to %s, expires in %u s",
	           m->call && m->call->near ? m->call->near->uri : "?", m->sip->conf.code_ttl);
	su_timer_set_interval(m->timer, move_offer_expired, m,
	                      (su_duration_t)m->sip->conf.code_ttl * 1000);
	move_notify_refer(m, 100, "Trying", 0);
	send_code(m);
	move_reply(m, 0);
	OPENSSL_cleanse(m->show, sizeof(m->show));
}

/* The number in a URI's user part ("+", digits, '-' and '.' between them), or "" when it
 * holds anything else or fewer than 4 digits: where an SMS goes (confirm, meeting links). */
const char *move_uri_number(const char *uri, char *out, size_t len)
{
	const char *p = uri ? strchr(uri, ':') : NULL;
	size_t n = 0;

	out[0] = '\0';
	if (!p)
		return out;
	/* E.164 keeps its '+': SMS gateways want it. */
	for (p++; *p && *p != '@' && *p != ';' && n + 1 < len; p++) {
		if (isdigit((unsigned char)*p) || (*p == '+' && n == 0))
			out[n++] = *p;
		else if (*p != '-' && *p != '.') {
			n = 0; /* "alice": no number */
			break;
		}
	}
	out[n] = '\0';
	if (n < 4)
		out[0] = '\0';
	return out;
}

/*
 * The move's numeric code and its hashes under every key: the one its made code has (fresh: a
 * new one), made again while another move on offer here has it (the store checks the other
 * nodes' codes on insert). The move must not be in the code table.
 */
static int numeric_take(struct move *m, struct store_move *sm, int fresh)
{
	struct sip *s = m->sip;
	struct move_code *c = m->made;
	int err = 0;

	if (fresh)
		err = move_code_renumber(c, s->conf.keys, s->conf.code_digits,
		                         s->conf.send_barcode_image);
	while (!err && move_by_code(s, c->code))
		err = move_code_renumber(c, s->conf.keys, s->conf.code_digits,
		                         s->conf.send_barcode_image);
	m->code_tries++;
	if (err)
		return err;
	snprintf(m->code, sizeof(m->code), "%s", c->code);
	memcpy(sm->code_hash, c->code_hash[0], sizeof(sm->code_hash));
	sm->ncode_alt = 0;
	for (unsigned i = 1; i < c->ncode_hash && i < STORE_HASHES_MAX; i++)
		memcpy(sm->code_alt[sm->ncode_alt++], c->code_hash[i], sizeof(sm->code_alt[0]));
	return 0;
}

static int numeric_new(struct move *m, struct store_move *sm)
{
	return m->made ? numeric_take(m, sm, 1) : ENOENT;
}

void move_pool_conf_of(struct sip *s, struct move_pool_conf *pc)
{
	memset(pc, 0, sizeof(*pc));
	pc->size = s->conf.code_pool;
	pc->keys = s->conf.keys;
	pc->ttl = s->conf.code_ttl;
	pc->uri_kind = s->conf.qr_uri_https ? CODE_URI_HTTPS : CODE_URI_SIP;
	pc->where = s->conf.qr_uri_https ? s->conf.public_url : s->conf.domain;
	pc->digits = s->conf.code_digits;
	pc->qr_px = s->conf.send_qr_image ? MOVE_QR_PX : 0;
	pc->barcode = s->conf.send_barcode_image ? 1 : 0;
}

/* The move's code, ready made if the pool has one: only copies are left for the loop. */
static int code_take(struct move *m, struct store_move *sm, uint8_t *token_hash)
{
	struct sip *s = m->sip;
	struct move_stack *ms = move_stack(s);
	struct move_pool_conf pc;
	struct move_code *c = NULL;
	int err, here = 0;

	move_pool_conf_of(s, &pc);
	do {
		move_code_free(c);
		err = move_pool_take(ms->pool, &pc, m->created, &c, &here);
		if (!err && here) {
			metric_inc(METRIC_CODES_MADE_ON_LOOP_TOTAL);
			if (ms->pool && !ms->pool_said) {
				ms->pool_said = 1;
				LOG_WARN("move",
				         "codes pool empty: a code was made on the loop "
				         "(qrxfer_codes_made_on_loop_total counts them; a larger "
				         "[codes] pool helps)");
			}
		}
	} while (!err && move_by_id64(s, c->id64));
	if (err)
		return err;
	m->made = c;
	m->id64 = c->id64;
	snprintf(m->id, sizeof(m->id), "%016llx", (unsigned long long)m->id64);
	memcpy(m->token, c->token, sizeof(m->token));
	snprintf(m->qr_uri, sizeof(m->qr_uri), "%s", c->qr_uri);
	memcpy(token_hash, c->token_hash, CODE_HASH_LEN);
	return numeric_take(m, sm, 0);
}

int move_start_on(struct call *c, const char *source, sip_move_h *cb, void *arg)
{
	struct sip *s = c->sip;
	struct move_stack *ms = move_stack(s);
	struct store_job *job;
	uint8_t token_hash[CODE_HASH_LEN];
	struct move *m;
	int err;

	if (call_move(c) && call_move(c)->phase == MOVE_OFFERED && !call_move(c)->code[0])
		/* Read back after a restart or a takeover: its digits and token were not kept
		 * (their hashes only), so it cannot be shown again. A new code replaces it. */
		move_fail(call_move(c), 480,
		          "replaced by a new code: this one was read back "
		          "from the store, where its digits are not kept");
	if (call_move(c) && call_move(c)->phase == MOVE_OFFERED) {
		/* Asked again: the same code again, rather than a second one. */
		m = call_move(c);
		/* The earlier show link stops working: only the hash was kept. */
		if (show_renew(m))
			LOG_ERR("move", "%s: cannot make a show secret", m->id);
		send_code(m);
		if (cb) {
			m->cb = cb;
			m->cb_arg = arg;
			move_reply(m, 0);
		}
		OPENSSL_cleanse(m->show, sizeof(m->show));
		return 0;
	}
	if (call_move(c))
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
	snprintf(m->call_id, sizeof(m->call_id), "%s", c->id);
	/* The code's time starts now, when it is bound to the move (a pooled token signs a
	 * later expiry: see move/pool.h). */
	m->created = time(NULL);
	m->expires = m->created + s->conf.code_ttl;
	err = code_take(m, &job->move, token_hash);
	if (!err)
		err = code_numeric_make(MOVE_NONCE_LEN, m->nonce, sizeof(m->nonce));
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
	m->cb = cb;
	m->cb_arg = arg;
	move_uri_number(c->near->uri, m->near_number, sizeof(m->near_number));
	move_uri_number(c->far->uri, m->far_number, sizeof(m->far_number));
	m->phase = MOVE_STORING; /* where every move starts */
	metric_inc(METRIC_MOVES_ACTIVE);
	move_index(m);
	LIST_INSERT_HEAD(&ms->moves, m, link);
	c->feature = m;
	/* A restart must know to read this move back. */
	call_touch(c, 1);

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
		    m->timer, move_offer_expired, m,
		    (su_duration_t)(s->conf.store_timeout ? s->conf.store_timeout : 5) * 1000);
	if (err) {
		m->jobs--;
		m->cb = NULL; /* the caller hears err; the callback must not run too */
		move_fail(m, 500, "the store is not reachable");
		return err;
	}
	metric_inc(METRIC_MOVES_TOTAL);
	LOG_INFO("move", "%s: asked by %s on call %s", m->id, source ? source : "?", c->id);
	return 0;
fail:
	free(job);
	move_code_free(m->made);
	free(m->refer_event);
	OPENSSL_cleanse(m->show, sizeof(m->show));
	free(m);
	return err;
}

/*
 * A move of a call read back from the store (a restart, a dead node's call). A code on offer
 * works again until it expires (the store redeems it; its digits and token are not kept, so
 * they are not shown again). A move caught further on fails, the call staying with the near
 * device: if C may have had the new device's media, it gets the near device's back.
 */
void move_revive(struct call *c, const struct store_move *sm)
{
	struct sip *s = c->sip;
	struct move_stack *ms = move_stack(s);
	struct move *m;
	char *end;
	unsigned long long id64 = strtoull(sm->id, &end, 16);
	time_t now = time(NULL);

	if (strlen(sm->id) != 16 || *end || !id64 || move_by_id64(s, id64) || !ms)
		return;
	m = calloc(1, sizeof(*m));
	if (!m)
		return;
	m->sip = s;
	m->call = c;
	m->id64 = id64;
	snprintf(m->id, sizeof(m->id), "%s", sm->id);
	snprintf(m->call_id, sizeof(m->call_id), "%s", c->id);
	m->created = (time_t)(sm->created_at / 1000);
	m->expires = (time_t)(sm->expires_at / 1000);
	m->timer = su_timer_create(su_root_task(s->root), 0);
	if (!m->timer || code_numeric_make(MOVE_NONCE_LEN, m->nonce, sizeof(m->nonce))) {
		if (m->timer)
			su_timer_destroy(m->timer);
		free(m);
		return;
	}
	move_uri_number(c->near->uri, m->near_number, sizeof(m->near_number));
	move_uri_number(c->far->uri, m->far_number, sizeof(m->far_number));
	m->phase = MOVE_STORING;
	metric_inc(METRIC_MOVES_ACTIVE);
	move_index(m);
	LIST_INSERT_HEAD(&ms->moves, m, link);
	c->feature = m;
	if (sm->state == STORE_MOVE_OFFERED && m->expires > now) {
		move_to(m, MOVE_OFFERED, "read back from the store");
		move_event(m, "revived",
		           "code on offer again after a restart or a takeover, %lld s left",
		           (long long)(m->expires - now));
		su_timer_set_interval(m->timer, move_offer_expired, m,
		                      (su_duration_t)(m->expires - now) * 1000);
		LOG_INFO("move", "%s: code on offer again on call %s", m->id, c->id);
		return;
	}
	if (sm->state == STORE_MOVE_OFFERED) {
		move_fail(m, 408, "the code expired unused");
		return;
	}
	if (sm->state != STORE_MOVE_MOVING) {
		move_fail(m, 503,
		          "qrxfer restarted during the move: the call stays with the near "
		          "device");
		return;
	}
	/* C may have been re-INVITEd with B's media: it gets A's back (a new o= version). */
	snprintf(m->reason, sizeof(m->reason),
	         "qrxfer restarted while the media moved: the call stays with the near device");
	metric_inc(METRIC_MOVES_FAILED_TOTAL);
	LOG_INFO("move", "%s: failed: %s", m->id, m->reason);
	move_to(m, MOVE_FAILED, m->reason);
	move_rollback(m);
}

int sip_move_start(struct sip *s, const char *call_id, const char *source, sip_move_h *cb,
                   void *arg)
{
	struct call *c = call_find(s, call_id);

	if (!c)
		return ENOENT;
	return move_start_on(c, source, cb, arg);
}
