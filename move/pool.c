/* Codes made ahead on a worker (the contract is in pool.h). */
#define _GNU_SOURCE /* SCHED_BATCH */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <sofia-sip/su_wait.h>

#include "move/pool.h"
#include "util/queue.h"

#define BARCODE_PX     3
#define BARCODE_HEIGHT 80
#define BARCODE_QUIET  10
#define QR_QUIET       4

/* What codes are made under, shared by the pool and its refills. Owner: its references, which
 * are taken and let go of on the loop only; the worker only reads it. */
struct params {
	unsigned refs;
	unsigned gen;
	struct move_pool_conf conf; /* conf.keys and conf.where point at the copies below */
	struct code_keyring *keys;
	char *where;
};

/* One refill: n codes made on the worker under pr. Owner: the queue, then refill_done(). */
struct refill {
	struct move_pool *p;
	struct params *pr;
	unsigned n, slack;
	struct move_code *made; /* a list, by next */
};

struct move_pool {
	su_root_t *root;
	struct queue *q;
	su_timer_t *tick;
	struct params *cur;
	struct move_code *head, *tail; /* ready, oldest first */
	struct refill *refill;         /* the one under way, or NULL */
	unsigned gen;
	int stopping;
	struct move_pool_stats st;
};

/* How long a pooled code may wait: the most its token outlives the move that binds it. */
static unsigned max_age(unsigned ttl)
{
	unsigned a = ttl / 4;

	return a < 4 ? 4 : a > 30 ? 30 : a;
}

void move_code_free(struct move_code *c)
{
	if (!c)
		return;
	/* The QR holds the token, the barcode the digits: wiped like them. */
	if (c->qr_png)
		OPENSSL_cleanse(c->qr_png, c->qr_png_len);
	if (c->barcode_png)
		OPENSSL_cleanse(c->barcode_png, c->barcode_png_len);
	free(c->qr_png);
	free(c->barcode_png);
	OPENSSL_cleanse(c, sizeof(*c));
	free(c);
}

int move_code_renumber(struct move_code *c, const struct code_keyring *keys, unsigned digits,
                       int barcode)
{
	unsigned nkeys = code_keyring_count(keys);
	int err;

	if (c->barcode_png) {
		OPENSSL_cleanse(c->barcode_png, c->barcode_png_len);
		free(c->barcode_png);
		c->barcode_png = NULL;
		c->barcode_png_len = 0;
	}
	c->ncode_hash = 0;
	err = code_numeric_make(digits, c->code, sizeof(c->code));
	for (unsigned i = 0; !err && i < nkeys && i < MOVE_POOL_HASHES; i++) {
		err = code_numeric_hash(keys, i, c->code, c->code_hash[i]);
		if (!err)
			c->ncode_hash++;
	}
	if (!err && barcode)
		err = code_barcode_png(c->code, BARCODE_PX, BARCODE_HEIGHT, BARCODE_QUIET,
		                       &c->barcode_png, &c->barcode_png_len);
	return err;
}

int move_code_make(const struct move_pool_conf *conf, time_t now, unsigned slack,
                   struct move_code **cp)
{
	struct code_qr *qr = NULL;
	struct move_code *c;
	int err = 0;

	if (!conf || !conf->keys || !conf->where || !cp)
		return EINVAL;
	c = calloc(1, sizeof(*c));
	if (!c)
		return ENOMEM;
	while (!c->id64) {
		if (RAND_bytes((unsigned char *)&c->id64, sizeof(c->id64)) != 1) {
			err = EIO;
			goto out;
		}
	}
	c->made = now;
	c->expires = now + (time_t)conf->ttl + (time_t)slack;
	err = code_token_make(conf->keys, c->id64, c->expires, c->token, sizeof(c->token));
	if (!err)
		err = code_token_hash(c->token, c->token_hash);
	if (!err)
		err = code_uri(conf->uri_kind, c->token, conf->where, c->qr_uri, sizeof(c->qr_uri));
	if (!err && conf->qr_px) {
		err = code_qr_make(&qr, c->qr_uri, CODE_ECC_M);
		if (!err)
			err = code_qr_png(qr, conf->qr_px, QR_QUIET, &c->qr_png, &c->qr_png_len);
	}
	if (!err)
		err = move_code_renumber(c, conf->keys, conf->digits, (int)conf->barcode);
out:
	code_qr_free(qr);
	if (err) {
		move_code_free(c);
		return err;
	}
	*cp = c;
	return 0;
}

static void params_put(struct params *pr)
{
	if (!pr || --pr->refs)
		return;
	code_keyring_free(pr->keys);
	free(pr->where);
	free(pr);
}

static int params_new(struct params **prp, const struct move_pool_conf *conf, unsigned gen)
{
	struct params *pr;
	int err;

	if (!conf->keys || !conf->where)
		return EINVAL;
	pr = calloc(1, sizeof(*pr));
	if (!pr)
		return ENOMEM;
	pr->refs = 1;
	pr->gen = gen;
	pr->conf = *conf;
	if (pr->conf.size > MOVE_POOL_MAX)
		pr->conf.size = MOVE_POOL_MAX;
	err = code_keyring_dup(&pr->keys, conf->keys);
	pr->where = strdup(conf->where);
	if (err || !pr->where) {
		params_put(pr);
		return err ? err : ENOMEM;
	}
	pr->conf.keys = pr->keys;
	pr->conf.where = pr->where;
	*prp = pr;
	return 0;
}

static int conf_same(const struct move_pool_conf *a, const struct move_pool_conf *b)
{
	return a->size == b->size && a->ttl == b->ttl && a->uri_kind == b->uri_kind &&
	       a->digits == b->digits && a->qr_px == b->qr_px && a->barcode == b->barcode &&
	       a->where && b->where && !strcmp(a->where, b->where) &&
	       code_keyring_equal(a->keys, b->keys);
}

static struct move_code *pop(struct move_pool *p)
{
	struct move_code *c = p->head;

	if (c) {
		p->head = c->next;
		if (!p->head)
			p->tail = NULL;
		c->next = NULL;
		p->st.ready--;
	}
	return c;
}

static void drop_ready(struct move_pool *p)
{
	struct move_code *c;

	while ((c = pop(p))) {
		p->st.dropped++;
		move_code_free(c);
	}
}

/*
 * The worker yields to the loop: a woken SCHED_BATCH thread does not preempt a running one, so
 * the loop that submits a refill is not put off its CPU by it (on a busy two-core machine the
 * loop's p99 went from milliseconds to microseconds: see make bench-codes). Asked once; a
 * refusal only costs that.
 */
static void worker_yields(void)
{
	static __thread int asked;
	struct sched_param sp = {0};

	if (asked)
		return;
	asked = 1;
	pthread_setschedparam(pthread_self(), SCHED_BATCH, &sp);
}

/* On the worker: only the refill and its params are touched. */
static void refill_work(void *arg)
{
	struct refill *r = arg;

	worker_yields();
	for (unsigned i = 0; i < r->n; i++) {
		struct move_code *c = NULL;

		if (move_code_make(&r->pr->conf, time(NULL), r->slack, &c))
			break; /* the loop makes what is missing, and says so */
		c->gen = r->pr->gen;
		c->next = r->made;
		r->made = c;
	}
}

static void fill(struct move_pool *p);

static void refill_done(void *arg)
{
	struct refill *r = arg;
	struct move_pool *p = r->p;
	struct move_code *c;
	int keep = !p->stopping && r->pr->gen == p->cur->gen;

	p->refill = NULL;
	p->st.refilling = 0;
	while ((c = r->made)) {
		r->made = c->next;
		c->next = NULL;
		p->st.made++;
		if (!keep) {
			p->st.dropped++;
			move_code_free(c);
			continue;
		}
		if (p->tail)
			p->tail->next = c;
		else
			p->head = c;
		p->tail = c;
		p->st.ready++;
	}
	params_put(r->pr);
	free(r);
	if (keep)
		fill(p);
}

/* Below the low-water mark (half the size), a refill to the full size, one at a time. */
static void fill(struct move_pool *p)
{
	unsigned size = p->cur->conf.size;
	struct refill *r;

	if (p->stopping || p->refill || !size || p->st.ready > size / 2)
		return;
	r = calloc(1, sizeof(*r));
	if (!r)
		return;
	r->p = p;
	r->pr = p->cur;
	r->pr->refs++;
	r->n = size - p->st.ready;
	r->slack = max_age(p->cur->conf.ttl);
	if (queue_submit(p->q, 0, refill_work, refill_done, r)) {
		params_put(r->pr);
		free(r);
		return;
	}
	p->refill = r;
	p->st.refilling = r->n;
}

/* Drops the codes that would be too old by the next tick, then refills. */
static void on_tick(su_root_magic_t *magic, su_timer_t *t, su_timer_arg_t *arg)
{
	struct move_pool *p = (struct move_pool *)arg;
	time_t now = time(NULL), keep = (time_t)max_age(p->cur->conf.ttl) - 2;

	while (p->head && now - p->head->made > keep) {
		p->st.dropped++;
		move_code_free(pop(p));
	}
	fill(p);
}

int move_pool_alloc(struct move_pool **pp, su_root_t *root, const struct move_pool_conf *conf)
{
	struct move_pool *p;
	int err;

	if (!pp || !root || !conf)
		return EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return ENOMEM;
	p->root = root;
	err = params_new(&p->cur, conf, p->gen);
	if (!err)
		err = queue_alloc(&p->q, root, 1, 0);
	if (!err) {
		p->tick = su_timer_create(su_root_task(root), 1000);
		if (!p->tick || su_timer_run(p->tick, on_tick, (su_timer_arg_t *)p) < 0)
			err = ENOMEM;
	}
	if (err) {
		move_pool_free(p);
		return err;
	}
	fill(p);
	*pp = p;
	return 0;
}

int move_pool_take(struct move_pool *p, const struct move_pool_conf *conf, time_t now,
                   struct move_code **cp, int *here)
{
	struct move_code *c;
	struct params *pr;

	if (!conf || !cp)
		return EINVAL;
	if (here)
		*here = 1;
	if (!p)
		return move_code_make(conf, now, 0, cp);
	if (!conf_same(conf, &p->cur->conf)) {
		/* A reload: what is ready was made under the old settings. */
		if (params_new(&pr, conf, p->gen + 1)) {
			p->st.made_here++;
			return move_code_make(conf, now, 0, cp);
		}
		p->gen++;
		drop_ready(p);
		params_put(p->cur);
		p->cur = pr;
	}
	while ((c = pop(p))) {
		if (c->gen == p->cur->gen && now - c->made <= (time_t)max_age(p->cur->conf.ttl) &&
		    now >= c->made)
			break;
		p->st.dropped++;
		move_code_free(c);
	}
	fill(p);
	if (!c) {
		p->st.made_here++;
		return move_code_make(conf, now, 0, cp);
	}
	p->st.taken++;
	if (here)
		*here = 0;
	*cp = c;
	return 0;
}

void move_pool_stats(const struct move_pool *p, struct move_pool_stats *st)
{
	if (p)
		*st = p->st;
	else
		memset(st, 0, sizeof(*st));
}

void move_pool_free(struct move_pool *p)
{
	if (!p)
		return;
	p->stopping = 1;
	/* Runs a refill still queued and hands it to refill_done(), which lets go of it. */
	queue_free(p->q);
	if (p->tick)
		su_timer_destroy(p->tick);
	drop_ready(p);
	params_put(p->cur);
	free(p);
}
