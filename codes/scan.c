/* Scanning: zbar (QR and Code 128 only) over a few preprocessed versions of an image. */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <zbar.h>

#include "codes/code.h"

/* Passes in the order tried: cheapest and most often successful first (see bench-codes). */
enum pass {
	PASS_ADAPT_HALF,
	PASS_HALF,
	PASS_DESPECKLE,
	PASS_BLUR_ADAPT,
	PASS_VSMOOTH,
	PASS_STRETCH,
	PASS_FULL,
	PASS_ADAPT_FULL,
	PASS_INVERT,
	PASS_N
};

static const char *const pass_names[PASS_N] = {
    "adaptive-half", "half", "despeckle",     "blur-adaptive", "vsmooth-half",
    "stretch",       "full", "adaptive-full", "inverted",
};

const char *code_scan_pass_name(unsigned i)
{
	return i < PASS_N ? pass_names[i] : NULL;
}

void code_scan_opts_default(struct code_scan_opts *o)
{
	code_limits_default(&o->lim);
	o->budget_ms = 400;
	o->pass_mask = 0;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* 2x2 box downscale. */
static int half(const struct code_grey *in, struct code_grey *out)
{
	unsigned w = in->w / 2, h = in->h / 2;

	out->px = malloc((size_t)w * h);
	if (!out->px)
		return ENOMEM;
	out->w = w;
	out->h = h;
	for (unsigned y = 0; y < h; y++) {
		const uint8_t *a = in->px + (size_t)2 * y * in->w, *b = a + in->w;
		uint8_t *o = out->px + (size_t)y * w;

		for (unsigned x = 0; x < w; x++)
			o[x] =
			    (uint8_t)((a[2 * x] + a[2 * x + 1] + b[2 * x] + b[2 * x + 1] + 2) >> 2);
	}
	return 0;
}

/* Stretches the 1st..99th percentile to 0..255 in place. */
static void stretch(struct code_grey *g)
{
	size_t n = (size_t)g->w * g->h, hist[256] = {0}, acc = 0;
	unsigned lo = 0, hi = 255;
	uint8_t lut[256];

	for (size_t i = 0; i < n; i++)
		hist[g->px[i]]++;
	for (lo = 0; lo < 255 && (acc += hist[lo]) < n / 100; lo++)
		;
	acc = 0;
	for (hi = 255; hi > 0 && (acc += hist[hi]) < n / 100; hi--)
		;
	if (hi <= lo)
		return;
	for (unsigned v = 0; v < 256; v++)
		lut[v] = v <= lo ? 0 : v >= hi ? 255 : (uint8_t)((v - lo) * 255 / (hi - lo));
	for (size_t i = 0; i < n; i++)
		g->px[i] = lut[g->px[i]];
}

/* 3x3 box blur in place (borders kept). */
static int blur(struct code_grey *g)
{
	unsigned w = g->w, h = g->h;
	ptrdiff_t s = (ptrdiff_t)w;
	uint8_t *src = malloc((size_t)w * h);

	if (!src)
		return ENOMEM;
	memcpy(src, g->px, (size_t)w * h);
	for (unsigned y = 1; y + 1 < h; y++)
		for (unsigned x = 1; x + 1 < w; x++) {
			const uint8_t *p = src + (size_t)y * w + x;
			unsigned sum = p[-s - 1] + p[-s] + p[-s + 1] + p[-1] + p[0] + p[1] +
			               p[s - 1] + p[s] + p[s + 1];

			g->px[(size_t)y * w + x] = (uint8_t)((sum + 4) / 9);
		}
	free(src);
	return 0;
}

/* Vertical 9-tap mean: smooths along a barcode's bars (near upright) without blurring them. */
static int vsmooth(struct code_grey *g)
{
	unsigned w = g->w, h = g->h;
	uint8_t *src = malloc((size_t)w * h);

	if (!src)
		return ENOMEM;
	memcpy(src, g->px, (size_t)w * h);
	for (unsigned y = 4; y + 4 < h; y++)
		for (unsigned x = 0; x < w; x++) {
			unsigned sum = 0;

			for (unsigned k = y - 4; k <= y + 4; k++)
				sum += src[(size_t)k * w + x];
			g->px[(size_t)y * w + x] = (uint8_t)((sum + 4) / 9);
		}
	free(src);
	return 0;
}

/* Local-mean binarisation: dark where a pixel is below its neighbourhood's mean. */
static int adaptive(struct code_grey *g)
{
	unsigned w = g->w, h = g->h, r;
	uint32_t *ii;

	r = (w < h ? w : h) / 40;
	if (r < 6)
		r = 6;
	ii = malloc(sizeof(*ii) * (size_t)(w + 1) * (h + 1));
	if (!ii)
		return ENOMEM;
	memset(ii, 0, sizeof(*ii) * (w + 1));
	for (unsigned y = 0; y < h; y++) {
		uint32_t row = 0;

		ii[(size_t)(y + 1) * (w + 1)] = 0;
		for (unsigned x = 0; x < w; x++) {
			row += g->px[(size_t)y * w + x];
			ii[(size_t)(y + 1) * (w + 1) + x + 1] =
			    ii[(size_t)y * (w + 1) + x + 1] + row;
		}
	}
	for (unsigned y = 0; y < h; y++) {
		unsigned y0 = y > r ? y - r : 0, y1 = y + r + 1 < h ? y + r + 1 : h;

		for (unsigned x = 0; x < w; x++) {
			unsigned x0 = x > r ? x - r : 0, x1 = x + r + 1 < w ? x + r + 1 : w;
			uint32_t s = ii[(size_t)y1 * (w + 1) + x1] - ii[(size_t)y0 * (w + 1) + x1] -
			             ii[(size_t)y1 * (w + 1) + x0] + ii[(size_t)y0 * (w + 1) + x0];
			uint32_t cnt = (x1 - x0) * (y1 - y0);
			uint8_t *p = &g->px[(size_t)y * w + x];

			/* A small offset keeps flat areas (quiet zone, background) light. */
			*p = (uint32_t)*p * cnt + 4 * cnt < s ? 0 : 255;
		}
	}
	free(ii);
	return 0;
}

/*
 * 3x3 majority on a binarised image (borders kept): a screen's pixel grid leaves dots in the
 * quiet zone that zbar takes for bars; bars and QR modules are wider and stay.
 */
static int despeckle(struct code_grey *g)
{
	unsigned w = g->w, h = g->h;
	uint8_t *src = malloc((size_t)w * h);

	if (!src)
		return ENOMEM;
	memcpy(src, g->px, (size_t)w * h);
	for (unsigned y = 1; y + 1 < h; y++) {
		const uint8_t *a = src + (size_t)(y - 1) * w, *b = a + w, *c = b + w;
		uint8_t *o = g->px + (size_t)y * w;
		/* Dark pixels in the 3-pixel columns at x-1 and x. */
		unsigned left = !a[0] + !b[0] + !c[0], mid = !a[1] + !b[1] + !c[1];

		for (unsigned x = 1; x + 1 < w; x++) {
			unsigned right = !a[x + 1] + !b[x + 1] + !c[x + 1];

			o[x] = left + mid + right > 4 ? 0 : 255;
			left = mid;
			mid = right;
		}
	}
	free(src);
	return 0;
}

static void add_symbol(struct code_scan_result *res, enum code_sym_kind kind, const char *data,
                       unsigned len)
{
	if (len >= CODE_TEXT_MAX || res->n == CODE_SCAN_MAX || memchr(data, '\0', len))
		return;
	for (unsigned i = 0; i < res->n; i++)
		if (res->sym[i].kind == kind && strlen(res->sym[i].text) == len &&
		    !memcmp(res->sym[i].text, data, len))
			return;
	res->sym[res->n].kind = kind;
	memcpy(res->sym[res->n].text, data, len);
	res->sym[res->n].text[len] = '\0';
	res->n++;
}

/* Runs zbar over g; the number of symbols kept, or -1 on failure. */
static int zscan(zbar_image_scanner_t *sc, const struct code_grey *g, struct code_scan_result *res)
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
			add_symbol(res, t == ZBAR_QRCODE ? CODE_SYM_QR : CODE_SYM_CODE128,
			           zbar_symbol_get_data(s), zbar_symbol_get_data_length(s));
	}
	zbar_image_destroy(img);
	return n < 0 ? -1 : (int)res->n;
}

static int copy_grey(const struct code_grey *in, struct code_grey *out)
{
	size_t n = (size_t)in->w * in->h;

	out->px = malloc(n);
	if (!out->px)
		return ENOMEM;
	memcpy(out->px, in->px, n);
	out->w = in->w;
	out->h = in->h;
	return 0;
}

int code_scan_grey(const struct code_grey *g, const struct code_scan_opts *o,
                   struct code_scan_result *res)
{
	struct code_scan_opts def;
	struct code_grey small = {0}, work = {0};
	const struct code_grey *base;
	zbar_image_scanner_t *sc = NULL;
	double t0 = now_ms();
	int err = CODE_ENOCODE;

	if (!g || !g->px || !res || !g->w || !g->h)
		return EINVAL;
	if (!o) {
		code_scan_opts_default(&def);
		o = &def;
	}
	memset(res, 0, sizeof(*res));
	res->pass = -1;
	sc = zbar_image_scanner_create();
	if (!sc)
		return ENOMEM;
	zbar_image_scanner_set_config(sc, 0, ZBAR_CFG_ENABLE, 0);
	zbar_image_scanner_set_config(sc, ZBAR_QRCODE, ZBAR_CFG_ENABLE, 1);
	zbar_image_scanner_set_config(sc, ZBAR_CODE128, ZBAR_CFG_ENABLE, 1);
	/* Small images gain nothing from halving. */
	if (g->w >= 640 && g->h >= 360) {
		err = half(g, &small);
		if (err)
			goto out;
		err = CODE_ENOCODE;
	}
	for (unsigned p = 0; p < PASS_N; p++) {
		int half_pass = p == PASS_HALF || p == PASS_STRETCH || p == PASS_ADAPT_HALF ||
		                p == PASS_INVERT || p == PASS_DESPECKLE;
		int e = 0;

		if (o->pass_mask && !(o->pass_mask & (1u << p)))
			continue;
		if (half_pass && !small.px && p == PASS_HALF)
			continue;
		if (res->tries > 0 && o->budget_ms && now_ms() - t0 > o->budget_ms)
			break;
		base = half_pass && small.px ? &small : g;
		code_grey_release(&work);
		if (p == PASS_HALF || p == PASS_FULL) {
			work = *base; /* read only: scanned in place, not released */
		} else {
			e = copy_grey(base, &work);
			if (!e && p == PASS_STRETCH)
				stretch(&work);
			if (!e && (p == PASS_ADAPT_HALF || p == PASS_ADAPT_FULL))
				e = adaptive(&work);
			if (!e && p == PASS_VSMOOTH)
				e = vsmooth(&work);
			if (!e && (p == PASS_BLUR_ADAPT || p == PASS_DESPECKLE))
				e = blur(&work);
			if (!e && (p == PASS_BLUR_ADAPT || p == PASS_DESPECKLE))
				e = adaptive(&work);
			/* A second round clears the grid dots that the first one only thins. */
			if (!e && p == PASS_DESPECKLE)
				e = despeckle(&work);
			if (!e && p == PASS_DESPECKLE)
				e = despeckle(&work);
			if (!e && p == PASS_INVERT)
				for (size_t i = 0; i < (size_t)work.w * work.h; i++)
					work.px[i] = (uint8_t)~work.px[i];
		}
		if (e) {
			err = e;
			goto out;
		}
		res->tries++;
		if (zscan(sc, &work, res) > 0) {
			res->pass = (int)p;
			err = 0;
		}
		if (p == PASS_HALF || p == PASS_FULL)
			work.px = NULL;
		if (!err)
			break;
	}
out:
	if (work.px && work.px != g->px && work.px != small.px)
		code_grey_release(&work);
	code_grey_release(&small);
	zbar_image_scanner_destroy(sc);
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

int code_scan_describe(const char *path, const struct code_keyring *kr, time_t now, FILE *out)
{
	struct code_scan_result res;
	int err;

	err = code_scan_file(path, NULL, &res);
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
