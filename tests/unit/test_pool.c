/* move/pool: codes made ahead on a worker, taken once each, in time, and freed at shutdown. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <criterion/criterion.h>
#include <sofia-sip/su_wait.h>

#include "codes/code.h"
#include "move/pool.h"
#include "tests/unit/leakcheck.h"

static su_root_t *root;
static struct code_keyring *kr;

static void setup(void)
{
	static const uint8_t key[32] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

	cr_assert_eq(su_init(), 0);
	root = su_root_create(NULL);
	cr_assert_not_null(root);
	cr_assert_eq(code_keyring_alloc(&kr), 0);
	cr_assert_eq(code_keyring_add(kr, 7, key, sizeof(key)), 0);
}

static void teardown(void)
{
	code_keyring_free(kr);
	su_root_destroy(root);
	root = NULL;
	su_deinit();
	leakcheck();
}

TestSuite(pool, .init = setup, .fini = teardown);

static void conf_of(struct move_pool_conf *c, unsigned size)
{
	memset(c, 0, sizeof(*c));
	c->size = size;
	c->keys = kr;
	c->ttl = 120;
	c->uri_kind = CODE_URI_SIP;
	c->where = "pbx.example.net";
	c->digits = 8;
	c->qr_px = 6;
	c->barcode = 1;
}

/* Runs the loop until the pool holds n ready codes (or 20 s pass). */
static void wait_ready(struct move_pool *p, unsigned n)
{
	struct move_pool_stats st;
	time_t end = time(NULL) + 20;

	do {
		su_root_step(root, 10);
		move_pool_stats(p, &st);
	} while (st.ready < n && time(NULL) < end);
	cr_assert_geq(st.ready, n, "ready %u, wanted %u", st.ready, n);
}

Test(pool, fills_takes_and_refills)
{
	struct move_pool_conf c;
	struct move_pool_stats st;
	struct move_pool *p;
	struct move_code *code;
	int here;

	conf_of(&c, 4);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	wait_ready(p, 4);
	for (int i = 0; i < 4; i++) {
		cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
		cr_assert_eq(here, 0, "code %d was made on the loop", i);
		move_code_free(code);
	}
	move_pool_stats(p, &st);
	cr_assert_eq(st.taken, 4);
	cr_assert_eq(st.made_here, 0);
	wait_ready(p, 4);
	move_pool_free(p);
}

Test(pool, empty_pool_makes_on_the_loop)
{
	struct move_pool_conf c;
	struct move_pool_stats st;
	struct move_pool *p;
	struct move_code *code;
	int here = 0;

	conf_of(&c, 2);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	/* The first refill cannot be on the loop yet: nothing ran it. */
	cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
	cr_assert_eq(here, 1);
	cr_assert_not_null(code->qr_png);
	move_code_free(code);
	move_pool_stats(p, &st);
	cr_assert_eq(st.made_here, 1);
	move_pool_free(p);

	/* No pool at all: every code is made here. */
	cr_assert_eq(move_pool_take(NULL, &c, time(NULL), &code, &here), 0);
	cr_assert_eq(here, 1);
	move_code_free(code);
}

/* What a taken code holds verifies, and expires no earlier than ttl after it was bound. */
Test(pool, codes_verify_and_expire)
{
	struct move_pool_conf c;
	struct move_pool *p;
	struct move_code *code;
	struct code_scan_opts o;
	struct code_scan_result res;
	uint8_t h[CODE_HASH_LEN];
	uint64_t id = 0;
	time_t exp = 0, now;
	int here;

	conf_of(&c, 2);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	wait_ready(p, 2);
	now = time(NULL);
	cr_assert_eq(move_pool_take(p, &c, now, &code, &here), 0);
	cr_assert_eq(here, 0);
	cr_assert_eq(code_token_verify(kr, code->token, now, &id, &exp), 0);
	cr_assert_eq(id, code->id64);
	cr_assert_eq(exp, code->expires);
	cr_assert_geq(exp, now + (time_t)c.ttl, "a bound code must live its ttl");
	cr_assert_leq(exp, code->made + (time_t)c.ttl + 30, "no more than ttl + 30 s from making");
	cr_assert_eq(code_token_verify(kr, code->token, exp + 1, NULL, NULL), CODE_EEXPIRED);
	cr_assert_eq(code_token_hash(code->token, h), 0);
	cr_assert_arr_eq(h, code->token_hash, sizeof(h));
	cr_assert_eq(strlen(code->code), 8);
	cr_assert_eq(code->ncode_hash, 1);
	cr_assert_eq(code_numeric_hash(kr, 0, code->code, h), 0);
	cr_assert_arr_eq(h, code->code_hash[0], sizeof(h));
	cr_assert_not_null(strstr(code->qr_uri, code->token));
	code_scan_opts_default(&o);
	cr_assert_eq(code_scan_buffer(code->qr_png, code->qr_png_len, &o, &res), 0);
	cr_assert_eq(code_scan_match(&res, code->token, NULL), 0);
	cr_assert_eq(code_scan_buffer(code->barcode_png, code->barcode_png_len, &o, &res), 0);
	cr_assert_eq(code_scan_match(&res, NULL, code->code), 0);
	/* Renumbered: new digits, their hash and barcode. */
	cr_assert_eq(move_code_renumber(code, kr, 6, 1), 0);
	cr_assert_eq(strlen(code->code), 6);
	cr_assert_eq(code_numeric_hash(kr, 0, code->code, h), 0);
	cr_assert_arr_eq(h, code->code_hash[0], sizeof(h));
	cr_assert_eq(code_scan_buffer(code->barcode_png, code->barcode_png_len, &o, &res), 0);
	cr_assert_eq(code_scan_match(&res, NULL, code->code), 0);
	move_code_free(code);
	move_pool_free(p);
}

/* A ready code too old to be bound now is let go of, never handed out. */
Test(pool, old_codes_are_dropped)
{
	struct move_pool_conf c;
	struct move_pool_stats st;
	struct move_pool *p;
	struct move_code *code;
	time_t later;
	int here;

	conf_of(&c, 3);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	wait_ready(p, 3);
	later = time(NULL) + 31;
	cr_assert_eq(move_pool_take(p, &c, later, &code, &here), 0);
	cr_assert_eq(here, 1);
	cr_assert_geq(code->expires, later + (time_t)c.ttl);
	move_code_free(code);
	move_pool_stats(p, &st);
	cr_assert_eq(st.dropped, 3);
	cr_assert_eq(st.taken, 0);
	move_pool_free(p);
}

/* Other settings (a reload): the ready codes go, the next ones follow the new settings. */
Test(pool, reconfigured)
{
	static const uint8_t key2[32] = {9, 9, 9};
	struct code_keyring *kr2;
	struct move_pool_conf c;
	struct move_pool_stats st;
	struct move_pool *p;
	struct move_code *code;
	time_t now;
	int here;

	conf_of(&c, 2);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	wait_ready(p, 2);
	c.ttl = 60;
	c.barcode = 0;
	now = time(NULL);
	cr_assert_eq(move_pool_take(p, &c, now, &code, &here), 0);
	cr_assert_eq(here, 1);
	cr_assert_eq(code->expires, now + 60);
	cr_assert_null(code->barcode_png);
	move_code_free(code);
	move_pool_stats(p, &st);
	cr_assert_eq(st.dropped, 2);
	wait_ready(p, 2);
	cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
	cr_assert_eq(here, 0);
	cr_assert_null(code->barcode_png);
	cr_assert_leq(code->expires, code->made + 60 + 30);
	move_code_free(code);

	/* A new current key: codes signed by the old one are not handed out. */
	wait_ready(p, 2);
	cr_assert_eq(code_keyring_alloc(&kr2), 0);
	cr_assert_eq(code_keyring_add(kr2, 8, key2, sizeof(key2)), 0);
	c.keys = kr2;
	cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
	cr_assert_eq(here, 1);
	cr_assert_eq(code_token_verify(kr2, code->token, time(NULL), NULL, NULL), 0);
	cr_assert_eq(code_token_verify(kr, code->token, time(NULL), NULL, NULL), CODE_EUNKNOWNKEY);
	move_code_free(code);
	move_pool_free(p);
	code_keyring_free(kr2);
}

static int cmp_tok(const void *a, const void *b)
{
	return memcmp(a, b, CODE_TOKEN_LEN);
}

Test(pool, no_code_twice)
{
	enum { N = 120 };
	static char toks[N][CODE_TOKEN_LEN + 1];
	uint64_t ids[N];
	struct move_pool_conf c;
	struct move_pool *p;
	struct move_code *code;
	int here, pooled = 0;

	conf_of(&c, 8);
	c.qr_px = 1; /* fast: the test is about handing out, not images */
	c.barcode = 0;
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	for (int i = 0; i < N; i++) {
		su_root_step(root, i % 3 ? 0 : 5);
		cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
		pooled += !here;
		memcpy(toks[i], code->token, sizeof(toks[i]));
		ids[i] = code->id64;
		move_code_free(code);
	}
	cr_assert_gt(pooled, 0);
	qsort(toks, N, sizeof(toks[0]), cmp_tok);
	for (int i = 1; i < N; i++)
		cr_assert_neq(memcmp(toks[i - 1], toks[i], CODE_TOKEN_LEN), 0, "token twice");
	for (int i = 0; i < N; i++)
		for (int j = i + 1; j < N; j++)
			cr_assert_neq(ids[i], ids[j], "move id twice");
	move_pool_free(p);
}

/* A refill under way when the pool stops: its codes are freed (the ASan build finds leaks). */
Test(pool, shutdown_with_refill_in_flight)
{
	struct move_pool_conf c;
	struct move_pool *p;
	struct move_code *code;
	int here;

	conf_of(&c, 16);
	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	move_pool_free(p);

	cr_assert_eq(move_pool_alloc(&p, root, &c), 0);
	wait_ready(p, 9);
	for (int i = 0; i < 10; i++) {
		cr_assert_eq(move_pool_take(p, &c, time(NULL), &code, &here), 0);
		move_code_free(code);
	}
	/* Ready codes and a refill of the rest under way. */
	move_pool_free(p);
}
