/* Scanning: zbar (QR and Code 128 only) over a few preprocessed versions of an image. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zbar.h>

#include "codes/code.h"
#include "codes/scan_int.h"

/* Passes in the order tried: cheapest and most often successful first (see bench-codes). */
enum pass {
	PASS_REGION_ADAPT,
	PASS_ADAPT_HALF,
	PASS_REGION_DENOISE,
	PASS_REGION_KEYSTONE,
	PASS_REGION,
	PASS_REGION_DEBLUR,
	PASS_BLUR_ADAPT,
	PASS_HALF,
	PASS_DESPECKLE,
	PASS_STRETCH,
	PASS_VSMOOTH,
	PASS_ADAPT_FULL,
	PASS_FULL,
	PASS_INVERT,
	PASS_N
};

static const char *const pass_names[PASS_N] = {
    "region-adaptive", "adaptive-half", "region-denoise", "region-keystone", "region",
    "region-deblur",   "blur-adaptive", "half",           "despeckle",       "stretch",
    "vsmooth-half",    "adaptive-full", "full",           "inverted",
};

const char *code_scan_pass_name(unsigned i)
{
	return i < PASS_N ? pass_names[i] : NULL;
}

void code_scan_opts_default(struct code_scan_opts *o)
{
	code_limits_default(&o->lim);
	/* A 1280x720 frame's passes fit in it on a busy 2-core machine (bench-codes: p99). */
	o->budget_ms = 85;
	o->pass_mask = 0;
	o->accept = code_scan_accept_ours;
	o->accept_arg = NULL;
}

int code_scan_accept_ours(const struct code_symbol *s, void *arg)
{
	char tok[CODE_TOKEN_LEN + 1];
	size_t n;

	(void)arg;
	if (s->kind == CODE_SYM_QR)
		return code_uri_token(s->text, tok, sizeof(tok)) == 0;
	n = strlen(s->text);
	return n >= 6 && n <= 10 && strspn(s->text, "0123456789") == n;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int accepted(const struct code_scan_opts *o, const struct code_symbol *s)
{
	return !o->accept || o->accept(s, o->accept_arg);
}

static void add_symbol(struct code_scan_result *res, const struct code_scan_opts *o,
                       enum code_sym_kind kind, const char *data, unsigned len)
{
	struct code_symbol sym;
	unsigned slot = res->n;

	if (len >= CODE_TEXT_MAX || memchr(data, '\0', len))
		return;
	for (unsigned i = 0; i < res->n; i++)
		if (res->sym[i].kind == kind && strlen(res->sym[i].text) == len &&
		    !memcmp(res->sym[i].text, data, len))
			return;
	sym.kind = kind;
	memcpy(sym.text, data, len);
	sym.text[len] = '\0';
	/* Full: a symbol worth stopping for takes the place of one that is not. */
	if (slot == CODE_SCAN_MAX) {
		if (!accepted(o, &sym))
			return;
		while (slot > 0 && accepted(o, &res->sym[slot - 1]))
			slot--;
		if (slot-- == 0)
			return;
	} else {
		res->n++;
	}
	res->sym[slot] = sym;
}

/* Runs zbar over g; 1 if a symbol o accepts is now in res, 0 if not, -1 on failure. */
static int zscan(zbar_image_scanner_t *sc, const struct code_grey *g,
                 const struct code_scan_opts *o, struct code_scan_result *res)
{
	zbar_image_t *img = zbar_image_create();
	const zbar_symbol_t *s;
	int n;

	if (!img)
		return -1;
	zbar_image_set_format(img, zbar_fourcc('Y', '8', '0', '0'));
	zbar_image_set_size(img, g->w, g->h);
	zbar_image_set_data(img, g->px, (unsigned long)g->w * g->h, NULL);
	n = zbar_scan_image(sc, img);
	for (s = n > 0 ? zbar_image_first_symbol(img) : NULL; s; s = zbar_symbol_next(s)) {
		zbar_symbol_type_t t = zbar_symbol_get_type(s);

		if (t == ZBAR_QRCODE || t == ZBAR_CODE128)
			add_symbol(res, o, t == ZBAR_QRCODE ? CODE_SYM_QR : CODE_SYM_CODE128,
			           zbar_symbol_get_data(s), zbar_symbol_get_data_length(s));
	}
	zbar_image_destroy(img);
	if (n < 0)
		return -1;
	for (unsigned i = 0; i < res->n; i++)
		if (accepted(o, &res->sym[i]))
			return 1;
	return 0;
}

/* One scan's state: the image, its half, the regions found (once) and read (once each). */
struct scan {
	const struct code_grey *g;
	struct code_grey small;
	const struct code_scan_opts *o;
	struct code_scan_result *res;
	zbar_image_scanner_t *sc;
	struct region reg[REGION_MAX];
	struct code_grey up[REGION_MAX];
	unsigned nreg;
	int regions_done;
};

/* Finds the regions once per scan, in the half image when there is one. */
static int regions(struct scan *s)
{
	if (s->regions_done)
		return 0;
	s->regions_done = 1;
	return region_find(s->small.px ? &s->small : s->g, s->small.px ? 2 : 1, s->reg, &s->nreg);
}

/*
 * A region read at less than its size is taken from the half image, whose 2x2 means average
 * the sensor noise that resampling alone would keep.
 */
static int resample_from(const struct scan *s, const struct region *r, struct code_grey *out)
{
	struct region h = *r;

	if (r->scale >= 1 || !s->small.px)
		return region_resample(s->g, r, out);
	h.cx = r->cx / 2;
	h.cy = r->cy / 2;
	h.side = r->side / 2;
	h.scale = r->scale * 2;
	return region_resample(&s->small, &h, out);
}

/* A prepared image read by zbar (unless preparing it failed with err), then let go of: 1 when
 * it gave a symbol o accepts, 0 if not, -errno. */
static int scan_work(struct scan *s, struct code_grey *work, int err)
{
	int found = 0;

	if (!err) {
		s->res->tries++;
		found = zscan(s->sc, work, s->o, s->res);
	}
	code_grey_release(work);
	return err ? -err : found > 0;
}

/* Reads each region in turn, prepared by pass p; 1 when one gives a symbol o accepts. */
static int scan_regions(struct scan *s, enum pass p, double t0)
{
	int err;

	err = regions(s);
	if (err)
		return -err;
	for (unsigned i = 0; i < s->nreg; i++) {
		struct code_grey work = {0};
		unsigned px = (unsigned)(s->reg[i].scale + 0.5);
		int found;

		if (i > 0 && s->o->budget_ms && now_ms() - t0 > s->o->budget_ms)
			return 0;
		if (!s->up[i].px) {
			err = resample_from(s, &s->reg[i], &s->up[i]);
			if (err)
				return -err;
		}
		err = prep_copy(&s->up[i], &work);
		if (err)
			return -err;
		/* px: one source px as read; a sharpening that wide undoes a px or two of blur. */
		if (p == PASS_REGION)
			err = prep_sharpen(&work, px, 100);
		else if (p == PASS_REGION_ADAPT)
			err = prep_sharp_adaptive(&work, px, 100, 4 * px + 8);
		else if (p == PASS_REGION_DENOISE && !(err = prep_sharpen(&work, px, -100)))
			err = prep_adaptive_r(&work, 4 * px + 8);
		else if (p == PASS_REGION_DEBLUR)
			err = prep_sharpen(&work, 2 * px, 250);
		found = scan_work(s, &work, err);
		if (found)
			return found;
	}
	return 0;
}

/*
 * The busiest region seen from eight sides at an angle: a code photographed obliquely and
 * close has one side much shorter than the opposite one, which zbar's QR reader rarely takes.
 */
static int scan_keystone(struct scan *s, double t0)
{
	int err;

	err = regions(s);
	if (err)
		return -err;
	if (!s->nreg)
		return 0;
	for (unsigned d = 0; d < 8; d++) {
		struct region r = s->reg[0];
		struct code_grey work = {0};
		unsigned px = (unsigned)(r.scale + 0.5);
		int found;

		if (d > 0 && s->o->budget_ms && now_ms() - t0 > s->o->budget_ms)
			return 0;
		r.kx = KEY_STRENGTH * cos(d * M_PI / 4);
		r.ky = KEY_STRENGTH * sin(d * M_PI / 4);
		if (r.side * r.scale > KEY_OUT)
			r.scale = KEY_OUT / r.side;
		err = resample_from(s, &r, &work);
		/* A 3x3 mean first: the oblique views are the dim frames' last chance too. */
		if (!err)
			err = prep_sharpen(&work, 1, -100);
		if (!err)
			err = prep_adaptive_r(&work, 4 * px + 8);
		found = scan_work(s, &work, err);
		if (found)
			return found;
	}
	return 0;
}

/* Runs one full-image pass; 1 when it gives a symbol o accepts, 0 if not, -errno. */
static int scan_full(struct scan *s, enum pass p)
{
	int half_pass = p == PASS_HALF || p == PASS_STRETCH || p == PASS_ADAPT_HALF ||
	                p == PASS_INVERT || p == PASS_DESPECKLE;
	const struct code_grey *base;
	struct code_grey work = {0};
	int e = 0;

	if (half_pass && !s->small.px && p == PASS_HALF)
		return 0;
	base = half_pass && s->small.px ? &s->small : s->g;
	if (p == PASS_HALF || p == PASS_FULL) {
		s->res->tries++;
		return zscan(s->sc, base, s->o, s->res) > 0;
	}
	e = prep_copy(base, &work);
	if (!e && p == PASS_STRETCH)
		prep_stretch(&work);
	if (!e && (p == PASS_ADAPT_HALF || p == PASS_ADAPT_FULL))
		e = prep_adaptive(&work);
	if (!e && p == PASS_VSMOOTH)
		e = prep_vsmooth(&work);
	if (!e && (p == PASS_BLUR_ADAPT || p == PASS_DESPECKLE))
		e = prep_blur(&work);
	if (!e && (p == PASS_BLUR_ADAPT || p == PASS_DESPECKLE))
		e = prep_adaptive(&work);
	/* A second round clears the grid dots that the first one only thins. */
	if (!e && p == PASS_DESPECKLE)
		e = prep_despeckle(&work);
	if (!e && p == PASS_DESPECKLE)
		e = prep_despeckle(&work);
	if (!e && p == PASS_INVERT)
		for (size_t i = 0; i < (size_t)work.w * work.h; i++)
			work.px[i] = (uint8_t)~work.px[i];
	return scan_work(s, &work, e);
}

int code_scan_grey(const struct code_grey *g, const struct code_scan_opts *o,
                   struct code_scan_result *res)
{
	struct code_scan_opts def;
	struct scan s = {0};
	double t0 = now_ms(), slowest = 0;
	int err = CODE_ENOCODE;

	if (!g || !g->px || !res || !g->w || !g->h)
		return EINVAL;
	if (!o) {
		code_scan_opts_default(&def);
		o = &def;
	}
	memset(res, 0, sizeof(*res));
	res->pass = -1;
	s.g = g;
	s.o = o;
	s.res = res;
	s.sc = zbar_image_scanner_create();
	if (!s.sc)
		return ENOMEM;
	zbar_image_scanner_set_config(s.sc, 0, ZBAR_CFG_ENABLE, 0);
	zbar_image_scanner_set_config(s.sc, ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1);
	zbar_image_scanner_set_config(s.sc, ZBAR_CODE128, ZBAR_CFG_ENABLE, 1);
	/* Small images gain nothing from halving. */
	if (g->w >= 640 && g->h >= 360) {
		err = prep_half(g, &s.small);
		if (err)
			goto out;
		err = CODE_ENOCODE;
	}
	for (unsigned p = 0; p < PASS_N; p++) {
		double tp = now_ms();
		int r;

		if (o->pass_mask && !(o->pass_mask & (1u << p)))
			continue;
		/* The slowest pass so far says what the next may cost: stop before, not after. */
		if (res->tries > 0 && o->budget_ms && tp - t0 + slowest > o->budget_ms)
			break;
		if (p == PASS_REGION || p == PASS_REGION_ADAPT || p == PASS_REGION_DENOISE ||
		    p == PASS_REGION_DEBLUR)
			r = scan_regions(&s, p, t0);
		else if (p == PASS_REGION_KEYSTONE)
			r = scan_keystone(&s, t0);
		else
			r = scan_full(&s, p);
		if (r < 0) {
			err = -r;
			goto out;
		}
		if (r > 0) {
			res->pass = (int)p;
			break;
		}
		if (now_ms() - tp > slowest)
			slowest = now_ms() - tp;
	}
	/* Symbols nobody accepted still answer the question "what is in this image". */
	err = res->n > 0 ? 0 : CODE_ENOCODE;
out:
	for (unsigned i = 0; i < REGION_MAX; i++)
		code_grey_release(&s.up[i]);
	code_grey_release(&s.small);
	zbar_image_scanner_destroy(s.sc);
	return err;
}

int code_scan_buffer(const void *buf, size_t len, const struct code_scan_opts *o,
                     struct code_scan_result *res)
{
	struct code_scan_opts def;
	struct code_grey g = {0};
	int err;

	if (!o) {
		code_scan_opts_default(&def);
		o = &def;
	}
	err = code_image_decode(buf, len, &o->lim, &g);
	if (!err)
		err = code_scan_grey(&g, o, res);
	code_grey_release(&g);
	return err;
}

int code_scan_file(const char *path, const struct code_scan_opts *o, struct code_scan_result *res)
{
	struct code_scan_opts def;
	uint8_t *buf = NULL;
	size_t len = 0, cap;
	FILE *f;
	int err = 0;

	if (!path || !res)
		return EINVAL;
	if (!o) {
		code_scan_opts_default(&def);
		o = &def;
	}
	f = fopen(path, "rb");
	if (!f)
		return errno;
	/* Read at most one byte past the cap, to tell "too large" without trusting stat. */
	cap = o->lim.max_bytes + 1;
	buf = malloc(cap ? cap : 1);
	if (!buf) {
		err = ENOMEM;
		goto out;
	}
	len = fread(buf, 1, cap, f);
	if (ferror(f)) {
		err = EIO;
		goto out;
	}
	if (len > o->lim.max_bytes) {
		err = CODE_ETOOLARGE;
		goto out;
	}
	err = code_scan_buffer(buf, len, o, res);
out:
	free(buf);
	fclose(f);
	return err;
}

int code_scan_match(const struct code_scan_result *res, const char *token, const char *numeric)
{
	char tok[CODE_TOKEN_LEN + 1];

	if (!res)
		return EINVAL;
	if (res->n == 0)
		return CODE_ENOCODE;
	for (unsigned i = 0; i < res->n; i++) {
		const struct code_symbol *s = &res->sym[i];

		if (token && code_uri_token(s->text, tok, sizeof(tok)) == 0 &&
		    strlen(token) == CODE_TOKEN_LEN && !strcasecmp(tok, token))
			return 0;
		if (numeric && *numeric && !strcmp(s->text, numeric))
			return 0;
	}
	return CODE_ENOTOURS;
}

/* Takes nothing: every pass runs, and what each finds is kept. */
static int accept_none(const struct code_symbol *s, void *arg)
{
	(void)s;
	(void)arg;
	return 0;
}

int code_scan_describe(const char *path, const struct code_keyring *kr, time_t now, FILE *out)
{
	struct code_scan_result res;
	struct code_scan_opts o;
	int err;

	/* "What is in this image": every symbol any pass finds (a page may show a QR code and a
	 * barcode), not only the first code of ours, and no time budget (not on the SIP loop). */
	code_scan_opts_default(&o);
	o.accept = accept_none;
	o.budget_ms = 0;
	err = code_scan_file(path, &o, &res);
	if (err) {
		fprintf(out, "%s: error: %s\n", path, code_strerror(err));
		return err;
	}
	for (unsigned i = 0; i < res.n; i++) {
		const struct code_symbol *s = &res.sym[i];
		char tok[CODE_TOKEN_LEN + 1];
		uint64_t move = 0;
		time_t exp = 0;
		int v;

		fprintf(out, "%s: %s %s", path, s->kind == CODE_SYM_QR ? "qr" : "code128", s->text);
		if (s->kind == CODE_SYM_CODE128) {
			fputs(" [numeric code]\n", out);
			continue;
		}
		if (code_uri_token(s->text, tok, sizeof(tok))) {
			fputs(" [not ours]\n", out);
			continue;
		}
		if (!kr) {
			fputs(" [token, not verified]\n", out);
			continue;
		}
		v = code_token_verify(kr, tok, now, &move, &exp);
		if (v)
			fprintf(out, " [token: %s]\n", code_strerror(v));
		else
			fprintf(out, " [token ok, move %" PRIu64 ", expires in %llds]\n", move,
			        (long long)(exp - now));
	}
	return 0;
}
