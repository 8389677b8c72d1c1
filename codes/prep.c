/* The scanner's whole-image preprocessing passes (codes/scan_int.h). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codes/scan_int.h"

int prep_copy(const struct code_grey *in, struct code_grey *out)
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
int prep_half(const struct code_grey *in, struct code_grey *out)
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
void prep_stretch(struct code_grey *g)
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
int prep_blur(struct code_grey *g)
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
int prep_vsmooth(struct code_grey *g)
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

/* Sums of up to 2^24 px of 255 fit in 32 bits: the integral image's bound. */
#define INTEGRAL_MAX_PX (1u << 24)

/* g's integral image, (w + 1) x (h + 1), from malloc; NULL without memory. */
static uint32_t *integral(const struct code_grey *g)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii = malloc(sizeof(*ii) * (size_t)(w + 1) * (h + 1));

	if (!ii)
		return NULL;
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
	return ii;
}

/* Sum of the (2r+1)^2 square around (x, y) cut to the image, from its integral image ii, and
 * how many px it holds. */
static uint32_t box_sum(const uint32_t *ii, unsigned w, unsigned h, unsigned x, unsigned y,
                        unsigned r, uint32_t *cnt)
{
	unsigned x0 = x > r ? x - r : 0, x1 = x + r + 1 < w ? x + r + 1 : w;
	unsigned y0 = y > r ? y - r : 0, y1 = y + r + 1 < h ? y + r + 1 : h;

	*cnt = (x1 - x0) * (y1 - y0);
	return ii[(size_t)y1 * (w + 1) + x1] - ii[(size_t)y0 * (w + 1) + x1] -
	       ii[(size_t)y1 * (w + 1) + x0] + ii[(size_t)y0 * (w + 1) + x0];
}

/* Local-mean binarisation: dark where a pixel is below the mean of its (2r+1)^2 square. */
int prep_adaptive_r(struct code_grey *g, unsigned r)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

	if ((uint64_t)w * h > INTEGRAL_MAX_PX)
		return 0; /* its sums would not fit: left as it is */
	ii = integral(g);
	if (!ii)
		return ENOMEM;
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++) {
			uint32_t cnt, s = box_sum(ii, w, h, x, y, r, &cnt);
			uint8_t *p = &g->px[(size_t)y * w + x];

			/* A small offset keeps flat areas (quiet zone, background) light. */
			*p = (uint32_t)*p * cnt + 4 * cnt < s ? 0 : 255;
		}
	free(ii);
	return 0;
}

int prep_adaptive(struct code_grey *g)
{
	unsigned r = (g->w < g->h ? g->w : g->h) / 40;

	return prep_adaptive_r(g, r < 6 ? 6 : r);
}

/*
 * 3x3 majority on a binarised image (borders kept): a screen's pixel grid leaves dots in the
 * quiet zone that zbar takes for bars; bars and QR modules are wider and stay.
 */
int prep_despeckle(struct code_grey *g)
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
int prep_sharpen(struct code_grey *g, unsigned r, int amount)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

	if ((uint64_t)w * h > INTEGRAL_MAX_PX)
		return 0; /* its sums would not fit: not sharpened */
	ii = integral(g);
	if (!ii)
		return ENOMEM;
	for (unsigned y = 0; y < h; y++)
		for (unsigned x = 0; x < w; x++) {
			uint32_t c, s = box_sum(ii, w, h, x, y, r, &c);
			int cnt = (int)c, p = g->px[(size_t)y * w + x];
			int v = p + amount * (p * cnt - (int)s) / (100 * cnt);

			g->px[(size_t)y * w + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
		}
	free(ii);
	return 0;
}

/*
 * prep_sharpen(g, r1, amount) then prep_adaptive_r(g, r2) in one go, from one integral image: the
 * wide mean of the sharpened image is, r2 being several times r1, the wide mean of the image.
 */
int prep_sharp_adaptive(struct code_grey *g, unsigned r1, int amount, unsigned r2)
{
	unsigned w = g->w, h = g->h;
	uint32_t *ii;

	if ((uint64_t)w * h > INTEGRAL_MAX_PX)
		return 0;
	ii = integral(g);
	if (!ii)
		return ENOMEM;
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
