/* Camera images: checked before decoding, decoded on the worker, compared with the codes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <openssl/crypto.h>

#include "move/move_int.h"
#include "util/hash.h"

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
	uint64_t id64;                 /* the move the image showed, while the store is asked */
	unsigned has_show : 1;         /* for "near" by HTTP: the move whose secret came with it */
	char source[STORE_SOURCE_MAX]; /* the sender, as guesses are counted (store_source_key) */
	enum store_key kind;           /* what the image showed: a token, or a numeric code */
	nta_incoming_t *irq;           /* a MESSAGE answered once decoded, or NULL */
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
	return m->phase == MOVE_OFFERED || m->phase == MOVE_CONFIRMING;
}

static struct move *move_by_show(struct sip *s, const uint8_t hash[CODE_HASH_LEN])
{
	struct move *found = NULL;

	/* Every move is compared, in constant time, so the time tells nothing. */
	for (struct move *m = LIST_FIRST(&move_stack(s)->moves); m; m = LIST_NEXT(m, link))
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
	move_info_fill(m, &info);
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
			for (struct move *m =
			         move_stack(s)->code_table[move_code_bucket(sym->text)];
			     m; m = m->cnext)
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
	if (sc->irq) {
		if (!s->detached)
			sip_reply(sc->irq,
			          !err   ? 200
			          : wait ? 480
			                 : 404,
			          !err   ? "Taken"
			          : wait ? "Too Many Wrong Codes"
			                 : "No Code",
			          TAG_IF(wait, SIPTAG_RETRY_AFTER_STR("1")), TAG_END());
		else
			nta_incoming_destroy(sc->irq);
		sc->irq = NULL;
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

	move_event(m, "scan", "image from the %s device (%s) holds the code", near ? "near" : "new",
	           sc->source);
	if (near)
		m->scan_near = 1;
	else
		m->scan_new = 1;
	if (!near && sc->target && m->phase == MOVE_OFFERED) {
		err = sip_move_dial(s, m->token, sc->target, sc->source, sc->cb, sc->cb_arg);
		if (!err)
			sc->cb = NULL; /* the dial answers the caller */
		scan_answer(sc, err, NULL);
		return;
	}
	move_check_confirmed(m);
	memset(&info, 0, sizeof(info));
	info.state = move_state(m); /* nothing else: no id, call, code or token */
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
	struct move_stack *ms = move_stack(s);
	struct move *m = NULL;
	int err = sc->err, near = !strcmp(sc->who, "near");

	if (ms->scan && ms->scan->queued)
		ms->scan->queued--;
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
			move_guess_failed(s, sc->source, sc->kind, NULL);
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
	if (!near && m->phase != MOVE_OFFERED && m->taken_by &&
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
	struct scan_limit *l = move_stack(s)->scan;
	unsigned set = (hash_bytes(key, 9) % (SCAN_SLOTS / SCAN_WAYS)) * SCAN_WAYS;
	long long now = move_now_us();
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
		return c && call_move(c) && scannable(call_move(c)) ? 0 : ENOENT;
	}
	if (show_hash) {
		struct move *m = move_by_show(s, show_hash);
		return !m ? EPERM : scannable(m) ? 0 : ENOENT;
	}
	for (struct move *m = LIST_FIRST(&move_stack(s)->moves); m; m = LIST_NEXT(m, link))
		if (scannable(m))
			return 0;
	return ENOENT;
}

/*
 * Checks an image before any decoding (on offer, rate, header, queue), then queues it. With
 * irq, the MESSAGE is answered once the image is decoded.
 */
int move_scan_submit(struct sip *s, const void *image, size_t len, const char *who,
                     const char *target, const char *call_id, const uint8_t *show_hash,
                     const struct sockaddr *peer, nta_incoming_t *irq, sip_move_h *cb, void *arg)
{
	struct move_stack *ms = move_stack(s);
	struct scan *sc;
	uint8_t key[9];
	char addr[INET6_ADDRSTRLEN];
	unsigned w = 0, h = 0;
	int err;

	if (strcmp(who, "near") && strcmp(who, "new"))
		return EINVAL;
	if (!s->work || !s->conf.keys)
		return ENOTSUP;
	if (!ms->scan && !(ms->scan = calloc(1, sizeof(*ms->scan))))
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
	if (ms->scan->queued >= (s->conf.scan_queue ? s->conf.scan_queue : 8)) {
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
	ms->scan->queued++;
	sc->irq = irq;
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
		return move_scan_submit(s, image, len, who, NULL, NULL, hash, peer, NULL, cb, arg);
	}
	return move_scan_submit(s, image, len, who, target, NULL, NULL, peer, NULL, cb, arg);
}
