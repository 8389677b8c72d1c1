/* Where a code may be in an image, and the code read resampled (codes/scan_int.h). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codes/scan_int.h"

/* Edge activity of each block: mean |dx| + |dy| over its px. */
static void region_block_activity(const struct code_grey *g, unsigned bw, unsigned bh, float *act)
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
static double region_orientation(const struct code_grey *g, unsigned x0, unsigned y0, unsigned x1,
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
static float region_activity_floor(const float *act, unsigned nb)
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
int region_find(const struct code_grey *g, unsigned f, struct region *out, unsigned *np)
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
	region_block_activity(g, bw, bh, act);
	thr = region_activity_floor(act, nb);
	for (unsigned i = 0; i < nb; i++)
		act[i] /= thr;
	/* Again on a smoothed copy, where a dim code's edges stand above the sensor noise. */
	err = prep_copy(g, &soft);
	if (!err)
		err = prep_blur(&soft);
	if (!err)
		err = prep_blur(&soft);
	if (err)
		goto out;
	region_block_activity(&soft, bw, bh, act2);
	thr = region_activity_floor(act2, nb);
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
		r.angle =
		    region_orientation(g, x0 * REGION_BLOCK, y0 * REGION_BLOCK,
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
static void region_cubic(double t, float w[4])
{
	double t2 = t * t, t3 = t2 * t;

	w[0] = (float)((-t3 + 2 * t2 - t) / 2);
	w[1] = (float)((3 * t3 - 5 * t2 + 2) / 2);
	w[2] = (float)((-3 * t3 + 4 * t2 + t) / 2);
	w[3] = (float)((t3 - t2) / 2);
}

static long region_clampl(long v, long hi)
{
	return v < 0 ? 0 : v > hi ? hi : v;
}

/* Axis-aligned: bicubic, separable (columns' taps once, then rows). */
static int region_resample_cubic(const struct code_grey *g, const struct region *r,
                                 struct code_grey *out)
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

		region_cubic(sx - fx, cw + 4 * x);
		for (int i = 0; i < 4; i++)
			cx[4 * x + i] = region_clampl((long)fx - 1 + i, (long)g->w - 1);
	}
	for (unsigned y = 0; y < n; y++) {
		double sy = r->cy + (y - n / 2.0) / r->scale, fy = floor(sy);
		const float *rows[4];
		float wy[4];

		region_cubic(sy - fy, wy);
		/* The four source rows, each filtered across once: slot sr % 4 keeps row sr. */
		for (int j = 0; j < 4; j++) {
			long sr = region_clampl((long)fy - 1 + j, (long)g->h - 1);
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
int region_resample(const struct code_grey *g, const struct region *r, struct code_grey *out)
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
		err = region_resample_cubic(g, r, out);
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
