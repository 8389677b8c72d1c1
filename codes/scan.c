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

/* Local-mean binarisation: dark where a pixel is below the mean of its (2r+1)^2 square. */
static int adaptive_r(struct code_grey *g, unsigned r)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

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

static int adaptive(struct code_grey *g)
{
	unsigned r = (g->w < g->h ? g->w : g->h) / 40;

	return adaptive_r(g, r < 6 ? 6 : r);
}

/*
 * 3x3 majority on a binarised image (borders kept): a screen's pixel grid leaves dots in the
 * quiet zone that zbar takes for bars; bars and QR modules are wider and stay.
 */
static int despeckle(struct code_grey *g)
{
	unsigned w = g->w, h = g->h;
	uint8_t *src;

	/* The window reads columns 0 and 1 before the loop looks at the width. */
	if (w < 3 || h < 3)
		return 0;
	src = malloc((size_t)w * h);
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

/*
 * Unsharp mask in place: p + amount% of (p - the mean of its (2r+1)^2 square). Undoes some of
 * a blur about r px wide; amount -100 is the mean itself (smooths noise).
 */
static int sharpen(struct code_grey *g, unsigned r, int amount)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

	/* Sums of up to 2^24 px of 255 fit in 32 bits; larger images are not sharpened. */
	if ((uint64_t)w * h > (1u << 24))
		return 0;
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
			int cnt = (int)((x1 - x0) * (y1 - y0)), p = g->px[(size_t)y * w + x];
			int v = p + amount * (p * cnt - (int)s) / (100 * cnt);

			g->px[(size_t)y * w + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
	}
	free(ii);
	return 0;
}

/* Sum of the (2r+1)^2 square around (x, y) in integral image ii (w+1 wide), and its px count. */
static uint32_t box_sum(const uint32_t *ii, unsigned w, unsigned h, unsigned x, unsigned y,
                        unsigned r, uint32_t *cnt)
{
	unsigned x0 = x > r ? x - r : 0, x1 = x + r + 1 < w ? x + r + 1 : w;
	unsigned y0 = y > r ? y - r : 0, y1 = y + r + 1 < h ? y + r + 1 : h;

	*cnt = (x1 - x0) * (y1 - y0);
	return ii[(size_t)y1 * (w + 1) + x1] - ii[(size_t)y0 * (w + 1) + x1] -
	       ii[(size_t)y1 * (w + 1) + x0] + ii[(size_t)y0 * (w + 1) + x0];
}

/*
 * sharpen(g, r1, amount) then adaptive_r(g, r2) in one go, from one integral image: the wide
 * mean of the sharpened image is, r2 being several times r1, the wide mean of the image.
 */
static int sharp_adaptive(struct code_grey *g, unsigned r1, int amount, unsigned r2)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

	if ((uint64_t)w * h > (1u << 24))
		return 0;
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
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++) {
			uint32_t c1, c2, s1 = box_sum(ii, w, h, x, y, r1, &c1);
			uint32_t s2 = box_sum(ii, w, h, x, y, r2, &c2);
			int p = g->px[(size_t)y * w + x];
			int v = p + amount * (p * (int)c1 - (int)s1) / (100 * (int)c1);

			v = v < 0 ? 0 : v > 255 ? 255 : v;
			g->px[(size_t)y * w + x] = (uint32_t)v * c2 + 4 * c2 < s2 ? 0 : 255;
		}
	free(ii);
	return 0;
}

/* Where a code may be: a square of side px around (cx, cy) in the full image, to be read at
 * scale times its size, turned by angle (radians) so a barcode's bars stand upright. */
struct region {
	double cx, cy, side, scale, angle;
	/* Keystone: offsets from the centre are divided by 1 + kx dx + ky dy (dx, dy in half
	 * sides), so one side of the view takes in more of the image than the opposite one. */
	double kx, ky;
	double score;
};

#define REGION_MAX    2   /* regions tried, the busiest first (a third read none of 600) */
#define REGION_BLOCK  8   /* px of the image regions are looked for in, a block */
#define REGION_OUT    512 /* cap on the side of a region as read */
#define REGION_TARGET 300 /* a region's code as read, px: ~6.7 a module for 45 modules */
#define KEY_OUT       320 /* cap on the side of a keystone view */
#define KEY_STRENGTH  0.3 /* a keystone view's divisor runs 0.7 .. 1.3 side to side */

/* Edge activity of each block: mean |dx| + |dy| over its px. */
static void block_activity(const struct code_grey *g, unsigned bw, unsigned bh, float *act)
{
	for (unsigned by = 0; by < bh; by++)
		for (unsigned bx = 0; bx < bw; bx++) {
			uint32_t sum = 0;

			for (unsigned y = by * REGION_BLOCK; y < (by + 1) * REGION_BLOCK; y++) {
				const uint8_t *p = g->px + (size_t)y * g->w;
				const uint8_t *q = y + 1 < g->h ? p + g->w : p;

				for (unsigned x = bx * REGION_BLOCK; x < (bx + 1) * REGION_BLOCK;
				     x++) {
					unsigned x1 = x + 1 < g->w ? x + 1 : x;

					sum += (unsigned)abs(p[x1] - p[x]) +
					       (unsigned)abs(q[x] - p[x]);
				}
			}
			act[(size_t)by * bw + bx] = (float)sum / (REGION_BLOCK * REGION_BLOCK);
		}
}

/* The dominant gradient direction over a box of g, and how dominant it is (0..1). */
static double orientation(const struct code_grey *g, unsigned x0, unsigned y0, unsigned x1,
                          unsigned y1, double *coherence)
{
	double jxx = 0, jyy = 0, jxy = 0, d;

	for (unsigned y = y0 + 1; y + 1 < y1; y++)
		for (unsigned x = x0 + 1; x + 1 < x1; x++) {
			const uint8_t *p = g->px + (size_t)y * g->w + x;
			double gx = p[1] - p[-1], gy = p[g->w] - p[-(ptrdiff_t)g->w];

			jxx += gx * gx;
			jyy += gy * gy;
			jxy += gx * gy;
		}
	d = sqrt((jxx - jyy) * (jxx - jyy) + 4 * jxy * jxy);
	*coherence = jxx + jyy > 0 ? d / (jxx + jyy) : 0;
	return 0.5 * atan2(2 * jxy, jxx - jyy);
}

/* What a block's activity must pass to count: well above the frame's typical (median) block;
 * noise and screen grids stay under a few times that, a code's edges do not. */
static float activity_floor(const float *act, unsigned nb)
{
	unsigned hist[256] = {0}, acc = 0, med = 0;
	float thr;

	/* Quarter steps: a smoothed dim frame's typical block is well under 1. */
	for (unsigned i = 0; i < nb; i++)
		hist[act[i] < 63.75f ? (unsigned)(act[i] * 4) : 255]++;
	while (med < 255 && (acc += hist[med]) < nb / 2)
		med++;
	thr = 3.0f * (float)(med + 1) / 4;
	return thr < 1 ? 1 : thr;
}

/*
 * Finds up to REGION_MAX regions of g (the image reduced by f) busy with edges: blocks well
 * above the frame's typical activity, joined 8-connected, the largest sums first.
 */
static int find_regions(const struct code_grey *g, unsigned f, struct region *out, unsigned *np)
{
	unsigned bw = g->w / REGION_BLOCK, bh = g->h / REGION_BLOCK, nb = bw * bh, n = 0;
	struct code_grey soft = {0};
	float *act = NULL, *act2 = NULL, thr;
	uint8_t *mark = NULL;
	unsigned *queue = NULL;
	int err = 0;

	*np = 0;
	if (bw < 3 || bh < 3)
		return 0;
	act = malloc(sizeof(*act) * nb);
	act2 = malloc(sizeof(*act2) * nb);
	mark = calloc(nb, 1);
	queue = malloc(sizeof(*queue) * nb);
	if (!act || !act2 || !mark || !queue) {
		err = ENOMEM;
		goto out;
	}
	block_activity(g, bw, bh, act);
	thr = activity_floor(act, nb);
	for (unsigned i = 0; i < nb; i++)
		act[i] /= thr;
	/* Again on a smoothed copy, where a dim code's edges stand above the sensor noise. */
	err = copy_grey(g, &soft);
	if (!err)
		err = blur(&soft);
	if (!err)
		err = blur(&soft);
	if (err)
		goto out;
	block_activity(&soft, bw, bh, act2);
	thr = activity_floor(act2, nb);
	for (unsigned i = 0; i < nb; i++) {
		act[i] = act[i] > act2[i] / thr ? act[i] : act2[i] / thr;
		mark[i] = act[i] > 1;
	}
	for (unsigned seed = 0; seed < nb; seed++) {
		unsigned head = 0, tail = 0, x0, y0, x1, y1;
		double sum = 0;
		struct region r;

		if (mark[seed] != 1)
			continue;
		mark[seed] = 2;
		queue[tail++] = seed;
		x0 = x1 = seed % bw;
		y0 = y1 = seed / bw;
		while (head < tail) {
			unsigned b = queue[head++], bx = b % bw, by = b / bw;

			sum += act[b];
			x0 = bx < x0 ? bx : x0;
			x1 = bx > x1 ? bx : x1;
			y0 = by < y0 ? by : y0;
			y1 = by > y1 ? by : y1;
			for (int dy = -1; dy <= 1; dy++)
				for (int dx = -1; dx <= 1; dx++) {
					long nx = (long)bx + dx, ny = (long)by + dy;
					unsigned nbk;

					if (nx < 0 || ny < 0 || nx >= (long)bw || ny >= (long)bh)
						continue;
					nbk = (unsigned)ny * bw + (unsigned)nx;
					if (mark[nbk] == 1) {
						mark[nbk] = 2;
						queue[tail++] = nbk;
					}
				}
		}
		/* A code at 2 px a module is still some 4 x 4 blocks of the half image. */
		if (tail < 4)
			continue;
		double core =
		    (double)((x1 - x0 > y1 - y0 ? x1 - x0 : y1 - y0) + 1) * REGION_BLOCK * f;
		double coh;

		r.cx = (x0 + x1 + 1) * REGION_BLOCK * f / 2.0;
		r.cy = (y0 + y1 + 1) * REGION_BLOCK * f / 2.0;
		r.score = sum;
		r.angle = orientation(g, x0 * REGION_BLOCK, y0 * REGION_BLOCK,
		                      (x1 + 1) * REGION_BLOCK, (y1 + 1) * REGION_BLOCK, &coh);
		/* Bars: one gradient direction dominates; turn it to the x axis. QR: leave it. */
		if (coh < 0.5)
			r.angle = 0;
		/* The quiet zone and what the blocks cut off; turned, the corners need more. */
		r.side = core * (r.angle != 0 ? 1.5 : 1.3) + 2.0 * REGION_BLOCK * f;
		r.scale = REGION_TARGET / core;
		r.scale = r.scale < 0.5 ? 0.5 : r.scale > 4 ? 4 : r.scale;
		if (r.side * r.scale > REGION_OUT)
			r.scale = REGION_OUT / r.side;
		/* Keep the REGION_MAX busiest, in order. */
		unsigned k = n < REGION_MAX ? n++ : REGION_MAX;

		while (k > 0 && out[k - 1].score < r.score) {
			if (k < REGION_MAX)
				out[k] = out[k - 1];
			k--;
		}
		if (k < REGION_MAX)
			out[k] = r;
	}
	*np = n;
out:
	code_grey_release(&soft);
	free(act2);
	free(act);
	free(mark);
	free(queue);
	return err;
}

/* Catmull-Rom weights for fraction t. */
static void cubic(double t, float w[4])
{
	double t2 = t * t, t3 = t2 * t;

	w[0] = (float)((-t3 + 2 * t2 - t) / 2);
	w[1] = (float)((3 * t3 - 5 * t2 + 2) / 2);
	w[2] = (float)((-3 * t3 + 4 * t2 + t) / 2);
	w[3] = (float)((t3 - t2) / 2);
}

static long clampl(long v, long hi)
{
	return v < 0 ? 0 : v > hi ? hi : v;
}

/* Axis-aligned: bicubic, separable (columns' taps once, then rows). */
static int resample_cubic(const struct code_grey *g, const struct region *r, struct code_grey *out)
{
	unsigned n = out->w;
	long *cx = malloc(sizeof(*cx) * n * 4);
	float *cw = malloc(sizeof(*cw) * n * 4), *row = malloc(sizeof(*row) * n * 4);
	long have[4] = {-1, -1, -1, -1};
	int err = 0;

	if (!cx || !cw || !row) {
		err = ENOMEM;
		goto out;
	}
	for (unsigned x = 0; x < n; x++) {
		double sx = r->cx + (x - n / 2.0) / r->scale, fx = floor(sx);

		cubic(sx - fx, cw + 4 * x);
		for (int i = 0; i < 4; i++)
			cx[4 * x + i] = clampl((long)fx - 1 + i, (long)g->w - 1);
	}
	for (unsigned y = 0; y < n; y++) {
		double sy = r->cy + (y - n / 2.0) / r->scale, fy = floor(sy);
		const float *rows[4];
		float wy[4];

		cubic(sy - fy, wy);
		/* The four source rows, each filtered across once: slot sr % 4 keeps row sr. */
		for (int j = 0; j < 4; j++) {
			long sr = clampl((long)fy - 1 + j, (long)g->h - 1);
			float *o = row + (size_t)(sr & 3) * n;

			rows[j] = o;
			if (have[sr & 3] == sr)
				continue;
			have[sr & 3] = sr;
			for (unsigned x = 0; x < n; x++) {
				const uint8_t *p = g->px + (size_t)sr * g->w;
				const long *ix = cx + 4 * x;
				const float *w = cw + 4 * x;

				o[x] = w[0] * p[ix[0]] + w[1] * p[ix[1]] + w[2] * p[ix[2]] +
				       w[3] * p[ix[3]];
			}
		}
		for (unsigned x = 0; x < n; x++) {
			float v = wy[0] * rows[0][x] + wy[1] * rows[1][x] + wy[2] * rows[2][x] +
			          wy[3] * rows[3][x];

			out->px[(size_t)y * n + x] = (uint8_t)(v < 0     ? 0
			                                       : v > 255 ? 255
			                                                 : v + 0.5f);
		}
	}
out:
	free(cx);
	free(cw);
	free(row);
	return err;
}

/*
 * The region as read: r->side * r->scale px square from g, turned by r->angle and seen with
 * r's keystone: bilinear then (cheap, and the turned cases are the rarer ones), bicubic if not.
 */
static int resample(const struct code_grey *g, const struct region *r, struct code_grey *out)
{
	unsigned n = (unsigned)(r->side * r->scale);
	double c = cos(r->angle) / r->scale, s = sin(r->angle) / r->scale;
	int err;

	if (g->w < 2 || g->h < 2)
		return EINVAL;
	if (n < 16)
		n = 16;
	if (n > REGION_OUT)
		n = REGION_OUT;
	out->px = malloc((size_t)n * n);
	if (!out->px)
		return ENOMEM;
	out->w = out->h = n;
	if (r->angle == 0 && r->kx == 0 && r->ky == 0) {
		err = resample_cubic(g, r, out);
		if (err)
			code_grey_release(out);
		return err;
	}
	/* Along a row, the keystone's divisor and both numerators are linear in x. */
	for (unsigned y = 0; y < n; y++) {
		double dy = y - n / 2.0, h = n / 2.0;
		double k0 = 1 + (r->ky * dy - r->kx * h) / h, kd = r->kx / h;
		double x0 = -c * h - s * dy, y0 = -s * h + c * dy;
		float maxx = (float)g->w - 1.001f, maxy = (float)g->h - 1.001f;

		for (unsigned x = 0; x < n; x++) {
			double inv = 1 / (k0 + kd * x);
			float sx = (float)(r->cx + (x0 + c * x) * inv);
			float sy = (float)(r->cy + (y0 + s * x) * inv);
			unsigned ix, iy;
			float fx, fy, v;
			const uint8_t *p;

			sx = sx < 0 ? 0 : sx > maxx ? maxx : sx;
			sy = sy < 0 ? 0 : sy > maxy ? maxy : sy;
			ix = (unsigned)sx;
			iy = (unsigned)sy;
			fx = sx - (float)ix;
			fy = sy - (float)iy;
			p = g->px + (size_t)iy * g->w + ix;
			v = (p[0] + (p[1] - p[0]) * fx) * (1 - fy) +
			    (p[g->w] + (p[g->w + 1] - p[g->w]) * fx) * fy;
			out->px[(size_t)y * n + x] = (uint8_t)(v + 0.5f);
		}
	}
	return 0;
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
	return find_regions(s->small.px ? &s->small : s->g, s->small.px ? 2 : 1, s->reg, &s->nreg);
}

/*
 * A region read at less than its size is taken from the half image, whose 2x2 means average
 * the sensor noise that resampling alone would keep.
 */
static int resample_from(const struct scan *s, const struct region *r, struct code_grey *out)
{
	struct region h = *r;

	if (r->scale >= 1 || !s->small.px)
		return resample(s->g, r, out);
	h.cx = r->cx / 2;
	h.cy = r->cy / 2;
	h.side = r->side / 2;
	h.scale = r->scale * 2;
	return resample(&s->small, &h, out);
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
		int found = 0;

		if (i > 0 && s->o->budget_ms && now_ms() - t0 > s->o->budget_ms)
			return 0;
		if (!s->up[i].px) {
			err = resample_from(s, &s->reg[i], &s->up[i]);
			if (err)
				return -err;
		}
		err = copy_grey(&s->up[i], &work);
		if (err)
			return -err;
		/* px: one source px as read; a sharpening that wide undoes a px or two of blur. */
		if (p == PASS_REGION)
			err = sharpen(&work, px, 100);
		else if (p == PASS_REGION_ADAPT)
			err = sharp_adaptive(&work, px, 100, 4 * px + 8);
		else if (p == PASS_REGION_DENOISE && !(err = sharpen(&work, px, -100)))
			err = adaptive_r(&work, 4 * px + 8);
		else if (p == PASS_REGION_DEBLUR)
			err = sharpen(&work, 2 * px, 250);
		if (!err) {
			s->res->tries++;
			found = zscan(s->sc, &work, s->o, s->res);
		}
		code_grey_release(&work);
		if (err)
			return -err;
		if (found > 0)
			return 1;
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
		int found = 0;

		if (d > 0 && s->o->budget_ms && now_ms() - t0 > s->o->budget_ms)
			return 0;
		r.kx = KEY_STRENGTH * cos(d * M_PI / 4);
		r.ky = KEY_STRENGTH * sin(d * M_PI / 4);
		if (r.side * r.scale > KEY_OUT)
			r.scale = KEY_OUT / r.side;
		err = resample_from(s, &r, &work);
		/* A 3x3 mean first: the oblique views are the dim frames' last chance too. */
		if (!err)
			err = sharpen(&work, 1, -100);
		if (!err)
			err = adaptive_r(&work, 4 * px + 8);
		if (!err) {
			s->res->tries++;
			found = zscan(s->sc, &work, s->o, s->res);
		}
		code_grey_release(&work);
		if (err)
			return -err;
		if (found > 0)
			return 1;
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
	int e = 0, found;

	if (half_pass && !s->small.px && p == PASS_HALF)
		return 0;
	base = half_pass && s->small.px ? &s->small : s->g;
	if (p == PASS_HALF || p == PASS_FULL) {
		s->res->tries++;
		return zscan(s->sc, base, s->o, s->res) > 0;
	}
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
	if (e) {
		code_grey_release(&work);
		return -e;
	}
	s->res->tries++;
	found = zscan(s->sc, &work, s->o, s->res);
	code_grey_release(&work);
	return found > 0;
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
		err = half(g, &s.small);
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
