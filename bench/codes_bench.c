/*
 * codes_bench [DIR | --encode]: read rate and decode time on the phone-photo-like set (made in DIR
 * if missing), what each preprocessing pass contributes, and the time to make a token + QR PNG.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sofia-sip/su_wait.h>

#include "codes/code.h"
#include "move/pool.h"
#include "tests/codes/photo.h"

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double pct(double *v, unsigned n, double p)
{
	unsigned i = (unsigned)(p * (n - 1) + 0.5);

	qsort(v, n, sizeof(*v), cmp_double);
	return v[i];
}

struct img {
	uint8_t *buf;
	size_t len;
};

static int load(const char *dir, const struct photo_entry *e, struct img *im)
{
	char path[1400];
	FILE *f;
	long n;

	snprintf(path, sizeof(path), "%s/%s", dir, e->file);
	f = fopen(path, "rb");
	if (!f)
		return errno;
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	im->buf = malloc((size_t)n);
	im->len = im->buf ? fread(im->buf, 1, (size_t)n, f) : 0;
	fclose(f);
	return im->buf && im->len == (size_t)n ? 0 : EIO;
}

static int matches(const struct photo_entry *e, const struct code_scan_result *res)
{
	char tok[CODE_TOKEN_LEN + 1];

	if (e->barcode)
		return code_scan_match(res, NULL, e->expect) == 0;
	if (code_uri_token(e->expect, tok, sizeof(tok)))
		return 0;
	return code_scan_match(res, tok, NULL) == 0;
}

struct tally {
	unsigned n, ok;
};

static void count(struct tally *t, int ok)
{
	t->n++;
	t->ok += ok != 0;
}

static void print_tally(const char *label, const struct tally *t)
{
	if (t->n)
		printf("  %-24s %4u/%-4u = %5.1f%%\n", label, t->ok, t->n, 100.0 * t->ok / t->n);
}

/* The per-bucket table, the rates by condition and the misses' list (verbose). */
static void report(const struct photo_entry *e, const unsigned char *ok, unsigned n)
{
	struct tally b[PHOTO_SIZE_BUCKETS][PHOTO_BLUR_BUCKETS] = {{{0}}}, leg = {0}, ill = {0};
	struct tally kind[4] = {{0}}, rot[3] = {{0}}, tilt[2] = {{0}}, q[3] = {{0}}, low[2] = {{0}},
	             glare[2] = {{0}}, moire[3] = {{0}}, code[2] = {{0}};
	static const char *const kinds[] = {"blur none", "blur motion", "blur defocus",
	                                    "blur gaussian"};
	double worst = 101;
	unsigned wi = 0, wj = 0;

	for (unsigned i = 0; i < n; i++) {
		const struct photo_cond *c = &e[i].cond;
		double ar = c->rot < 0 ? -c->rot : c->rot;

		count(&b[photo_size_bucket(c)][photo_blur_bucket(c)], ok[i]);
		count(photo_legible(c) ? &leg : &ill, ok[i]);
		count(&kind[c->blur_kind & 3], ok[i]);
		count(&rot[ar < 15 ? 0 : ar < 30 ? 1 : 2], ok[i]);
		count(&tilt[c->tilt >= 20], ok[i]);
		count(&q[c->quality < 40 ? 0 : c->quality < 60 ? 1 : 2], ok[i]);
		count(&low[c->low_light != 0], ok[i]);
		count(&glare[c->glare != 0], ok[i]);
		count(&moire[c->moire < 4 ? 0 : c->moire < 6 ? 1 : 2], ok[i]);
		count(&code[e[i].barcode != 0], ok[i]);
	}
	printf("per bucket (px per module x blur kernel in modules; * = legible):\n");
	printf("  %-12s", "");
	for (unsigned j = 0; j < PHOTO_BLUR_BUCKETS; j++)
		printf(" %-22s", photo_blur_name(j));
	printf("\n");
	for (unsigned i = 0; i < PHOTO_SIZE_BUCKETS; i++) {
		printf("  %-12s", photo_size_name(i));
		for (unsigned j = 0; j < PHOTO_BLUR_BUCKETS; j++) {
			const struct tally *t = &b[i][j];
			/* A bucket is legible by the same rule photo_legible applies per frame. */
			int lg = i >= 1 && j <= 1;
			char cell[40];

			if (!t->n) {
				printf(" %-22s", "-");
				continue;
			}
			snprintf(cell, sizeof(cell), "%4u/%-4u %5.1f%%%s", t->ok, t->n,
			         100.0 * t->ok / t->n, lg ? " *" : "");
			printf(" %-22s", cell);
			if (lg && 100.0 * t->ok / t->n < worst) {
				worst = 100.0 * t->ok / t->n;
				wi = i;
				wj = j;
			}
		}
		printf("\n");
	}
	print_tally("legible frames", &leg);
	print_tally("below legibility", &ill);
	if (worst <= 100)
		printf("  hardest legible bucket: %s x %s blur, %.1f%%\n", photo_size_name(wi),
		       photo_blur_name(wj), worst);
	printf("by condition:\n");
	print_tally("QR", &code[0]);
	print_tally("Code 128", &code[1]);
	for (unsigned i = 0; i < 4; i++)
		print_tally(kinds[i], &kind[i]);
	print_tally("rotation 0-15", &rot[0]);
	print_tally("rotation 15-30", &rot[1]);
	print_tally("rotation 30-45", &rot[2]);
	print_tally("tilt 0-20", &tilt[0]);
	print_tally("tilt 20-40", &tilt[1]);
	print_tally("JPEG q20-39", &q[0]);
	print_tally("JPEG q40-59", &q[1]);
	print_tally("JPEG q60-85", &q[2]);
	print_tally("normal light", &low[0]);
	print_tally("low light", &low[1]);
	print_tally("no glare", &glare[0]);
	print_tally("glare", &glare[1]);
	print_tally("screen 2-4 px/module", &moire[0]);
	print_tally("screen 4-6 px/module", &moire[1]);
	print_tally("screen 6-8 px/module", &moire[2]);
}

/* Runs the set with opts; prints and returns the read count. */
static unsigned run(const char *label, const struct img *im, const struct photo_entry *e,
                    unsigned n, const struct code_scan_opts *o, int detail, int verbose)
{
	double *t = malloc(sizeof(*t) * n);
	unsigned char *okv = calloc(n, 1);
	unsigned ok = 0, bypass[32] = {0}, qr = 0, qr_ok = 0;

	for (unsigned i = 0; i < n; i++) {
		struct code_scan_result res;
		double t0 = now_us();
		int err = code_scan_buffer(im[i].buf, im[i].len, o, &res);

		t[i] = now_us() - t0;
		if (!e[i].barcode)
			qr++;
		if (!err && matches(&e[i], &res)) {
			ok++;
			okv[i] = 1;
			if (!e[i].barcode)
				qr_ok++;
			if (res.pass >= 0 && res.pass < 32)
				bypass[res.pass]++;
		} else if (verbose) {
			const struct photo_cond *c = &e[i].cond;

			printf("  miss %s (%s) %s ppm %.2f blur %d %.1f px (%.2f mod) q%d rot %.0f "
			       "tilt %.0f screen %.1f%s%s\n",
			       e[i].file, err ? code_strerror(err) : "wrong text",
			       e[i].barcode ? "code128" : "qr", c->ppm, c->blur_kind, c->blur_px,
			       c->blur_px / c->ppm, c->quality, c->rot, c->tilt, c->moire,
			       c->low_light ? " low-light" : "", c->glare ? " glare" : "");
		}
	}
	printf("%-22s read %4u/%u = %5.1f%% (QR %u/%u, barcode %u/%u)  decode median %6.1f ms  ",
	       label, ok, n, 100.0 * ok / n, qr_ok, qr, ok - qr_ok, n - qr, pct(t, n, 0.5) / 1e3);
	if (detail)
		printf("p95 %6.1f ms  ", pct(t, n, 0.95) / 1e3);
	printf("p99 %6.1f ms\n", pct(t, n, 0.99) / 1e3);
	if (detail) {
		printf("  read by pass:");
		for (unsigned p = 0; code_scan_pass_name(p); p++)
			printf(" %s=%u", code_scan_pass_name(p), bypass[p]);
		printf("\n");
		report(e, okv, n);
	}
	free(okv);
	free(t);
	return ok;
}

/* Runs the loop until no refill is under way, as between two moves. */
static void pool_wait(su_root_t *root, struct move_pool *p)
{
	struct move_pool_stats st;

	do {
		su_root_step(root, 5);
		move_pool_stats(p, &st);
	} while (st.refilling || !st.ready);
}

/*
 * Making a move's code. Before the pool the loop made the token and the QR PNG itself; now a
 * worker makes them (the whole code: token, hash, URI, QR PNG, numeric code and its HMAC) and
 * the loop takes one ready and later frees it: that is what the loop's figure times.
 */
static void bench_encode(void)
{
	struct code_keyring *kr;
	enum { N = 3000, NL = 2000, POOL = 8 };
	double *t = malloc(sizeof(*t) * N), *tq = malloc(sizeof(*tq) * N);
	double *tw = malloc(sizeof(*tw) * N), *tl = malloc(sizeof(*tl) * NL);
	double *tf = malloc(sizeof(*tf) * NL);
	struct move_pool_conf pc = {.size = POOL,
	                            .ttl = 120,
	                            .uri_kind = CODE_URI_SIP,
	                            .where = "pbx.example.net",
	                            .digits = 8,
	                            .qr_px = 6};
	struct move_pool_stats st;
	struct move_pool *pool;
	su_root_t *root;
	size_t bytes = 0;
	int version = 0, here = 0;

	photo_keyring(&kr);
	pc.keys = kr;
	for (int i = 0; i < N; i++) {
		char tok[CODE_TOKEN_LEN + 1], uri[200];
		struct code_qr *q = NULL;
		uint8_t *png = NULL;
		size_t len = 0;
		double t0 = now_us(), t1;

		code_token_make(kr, (uint64_t)i, 2000000000, tok, sizeof(tok));
		code_uri(CODE_URI_SIP, tok, "pbx.example.net", uri, sizeof(uri));
		code_qr_make(&q, uri, CODE_ECC_M);
		t1 = now_us();
		code_qr_png(q, 6, 4, &png, &len);
		t[i] = now_us() - t0;
		tq[i] = t1 - t0;
		bytes = len;
		version = q->version;
		free(png);
		code_qr_free(q);
	}
	printf("encode token+URI+QR (v%d, M)      median %6.1f us  p99 %6.1f us\n", version,
	       pct(tq, N, 0.5), pct(tq, N, 0.99));
	printf("encode token+QR PNG (6 px/module) median %6.1f us  p99 %6.1f us  (%zu bytes): "
	       "on the loop before [codes] pool\n",
	       pct(t, N, 0.5), pct(t, N, 0.99), bytes);
	for (int i = 0; i < N; i++) {
		struct move_code *c = NULL;
		double t0 = now_us();

		move_code_make(&pc, time(NULL), 30, &c);
		tw[i] = now_us() - t0;
		move_code_free(c);
	}
	printf("make one code on the worker       median %6.1f us  p99 %6.1f us  (token, hash, "
	       "URI, QR PNG, numeric code + HMAC)\n",
	       pct(tw, N, 0.5), pct(tw, N, 0.99));
	su_init();
	root = su_root_create(NULL);
	if (!root || move_pool_alloc(&pool, root, &pc)) {
		fprintf(stderr, "codes_bench: cannot start a pool\n");
		exit(1);
	}
	for (int i = 0; i < NL; i++) {
		struct move_code *c = NULL;
		double t0, t1;

		pool_wait(root, pool);
		t0 = now_us();
		move_pool_take(pool, &pc, time(NULL), &c, &here);
		t1 = now_us();
		tl[i] = t1 - t0;
		/* A move frees its code when it ends, seconds later: the worker is idle again. */
		pool_wait(root, pool);
		t0 = now_us();
		move_code_free(c);
		tf[i] = now_us() - t0;
	}
	move_pool_stats(pool, &st);
	printf("token + QR PNG ready on the loop  median %6.1f us  p99 %6.1f us  (taken from a "
	       "warm pool of %u; %lu of %d made on the loop)\n",
	       pct(tl, NL, 0.5), pct(tl, NL, 0.99), POOL, st.made_here, NL);
	printf("  and freeing it when the move ends median %6.1f us  p99 %6.1f us\n",
	       pct(tf, NL, 0.5), pct(tf, NL, 0.99));
	move_pool_free(pool);
	su_root_destroy(root);
	su_deinit();
	free(t);
	free(tq);
	free(tw);
	free(tl);
	free(tf);
	code_keyring_free(kr);
}

static void usage(void)
{
	fprintf(stderr,
	        "usage: codes_bench [-v] [-p] [-n N] [-b MS] [DIR]\n"
	        "  -v  list the misses   -p  also run each pass alone (first 320 frames)\n"
	        "  -n  frames (default %u)   -b  time budget (default: the scanner's)\n",
	        PHOTO_COUNT);
}

int main(int argc, char **argv)
{
	const char *dir = "tests/codes/bench-set";
	struct photo_entry *e = NULL;
	struct code_scan_opts o;
	struct img *im;
	unsigned n = 0, want = PHOTO_COUNT, budget = 0;
	int set_budget = 0;
	int err, verbose = 0, passes = 0;

	if (argc > 1 && !strcmp(argv[1], "--encode")) {
		bench_encode();
		return 0;
	}
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (!strcmp(argv[i], "-p"))
			passes = 1;
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			want = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (!strcmp(argv[i], "-b") && i + 1 < argc) {
			budget = (unsigned)strtoul(argv[++i], NULL, 10);
			set_budget = 1;
		} else if (argv[i][0] == '-') {
			usage();
			return 2;
		} else
			dir = argv[i];
	}
	err = photo_set_ensure(dir, PHOTO_COUNT, PHOTO_SEED);
	if (!err)
		err = photo_set_load(dir, &e, &n);
	if (err || n == 0) {
		fprintf(stderr, "codes_bench: set %s: %s\n", dir,
		        code_strerror(err ? err : ENOENT));
		return 1;
	}
	if (want < n)
		n = want;
	im = calloc(n, sizeof(*im));
	for (unsigned i = 0; i < n; i++)
		if (load(dir, &e[i], &im[i])) {
			fprintf(stderr, "codes_bench: cannot read %s\n", e[i].file);
			return 1;
		}
	printf("set: %u images %dx%d (JPEG q20-85), seed %u\n", n, PHOTO_W, PHOTO_H, PHOTO_SEED);
	code_scan_opts_default(&o);
	if (set_budget)
		o.budget_ms = budget;
	printf("time budget %u ms%s\n", o.budget_ms, o.budget_ms ? "" : " (none: every pass)");
	run("all passes (default)", im, e, n, &o, 1, verbose);
	for (unsigned p = 0; passes && code_scan_pass_name(p); p++) {
		char label[64];

		snprintf(label, sizeof(label), "only %s", code_scan_pass_name(p));
		o.pass_mask = 1u << p;
		run(label, im, e, n < 320 ? n : 320, &o, 0, 0);
	}
	bench_encode();
	for (unsigned i = 0; i < n; i++)
		free(im[i].buf);
	free(im);
	free(e);
	return 0;
}
