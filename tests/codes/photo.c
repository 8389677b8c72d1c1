/*
 * Phone-photo-of-a-screen simulator: a code drawn on a screen (with its pixel grid), seen
 * through a perspective at an angle, unevenly lit, out of focus, noisy, gamma-shifted and
 * JPEG-compressed. Everything comes from one seeded generator, so a set is reproducible.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jpeglib.h>

#include "tests/codes/photo.h"

struct rng {
	uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

static double rng_uni(struct rng *r, double lo, double hi)
{
	return lo + (hi - lo) * (double)(rng_next(r) >> 11) / 9007199254740992.0;
}

static double rng_gauss(struct rng *r)
{
	double u = rng_uni(r, 1e-12, 1.0), v = rng_uni(r, 0.0, 1.0);

	return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

int photo_keyring(struct code_keyring **krp)
{
	static const uint8_t key[32] = "photo-set-key-0123456789abcdef!!";
	struct code_keyring *kr;
	int err;

	err = code_keyring_alloc(&kr);
	if (err)
		return err;
	err = code_keyring_add(kr, 9, key, sizeof(key));
	if (err) {
		code_keyring_free(kr);
		return err;
	}
	*krp = kr;
	return 0;
}

void photo_release(struct photo *p)
{
	free(p->jpeg);
	p->jpeg = NULL;
}

/* Solves the 8 unknowns of the homography mapping src[i] to dst[i]. */
static int homography(const double src[4][2], const double dst[4][2], double h[9])
{
	double a[8][9];

	for (int i = 0; i < 4; i++) {
		double x = src[i][0], y = src[i][1], u = dst[i][0], v = dst[i][1];
		double r0[9] = {x, y, 1, 0, 0, 0, -u * x, -u * y, u};
		double r1[9] = {0, 0, 0, x, y, 1, -v * x, -v * y, v};

		memcpy(a[2 * i], r0, sizeof(r0));
		memcpy(a[2 * i + 1], r1, sizeof(r1));
	}
	for (int c = 0; c < 8; c++) {
		int piv = c;

		for (int r = c + 1; r < 8; r++)
			if (fabs(a[r][c]) > fabs(a[piv][c]))
				piv = r;
		if (fabs(a[piv][c]) < 1e-12)
			return EINVAL;
		for (int k = 0; k < 9; k++) {
			double t = a[c][k];

			a[c][k] = a[piv][k];
			a[piv][k] = t;
		}
		for (int r = 0; r < 8; r++) {
			double f;

			if (r == c)
				continue;
			f = a[r][c] / a[c][c];
			for (int k = c; k < 9; k++)
				a[r][k] -= f * a[c][k];
		}
	}
	for (int i = 0; i < 8; i++)
		h[i] = a[i][8] / a[i][i];
	h[8] = 1;
	return 0;
}

/* One tap of a blur kernel. */
struct tap {
	int dx, dy;
	float w;
};

#define TAPS_MAX 512

/* Adds weight w at (x, y) spread over the four nearest taps (bilinear splat). */
static void splat(float *k, int r, double x, double y, double w)
{
	int n = 2 * r + 1, ix = (int)floor(x), iy = (int)floor(y);
	double fx = x - ix, fy = y - iy;

	for (int j = 0; j < 2; j++)
		for (int i = 0; i < 2; i++) {
			int kx = ix + i + r, ky = iy + j + r;

			if (kx >= 0 && ky >= 0 && kx < n && ky < n)
				k[ky * n + kx] +=
				    (float)(w * (i ? fx : 1 - fx) * (j ? fy : 1 - fy));
		}
}

/* The kernel of a motion blur (length size, angle a) or a defocus disc (diameter size). */
static int make_taps(int kind, double size, double a, struct tap *t)
{
	enum { R = 8, N = 2 * R + 1 };
	float k[N * N] = {0}, sum = 0;
	int n = 0;

	if (kind == PHOTO_BLUR_MOTION) {
		for (int i = 0; i <= 64; i++) {
			double s = (i / 64.0 - 0.5) * size;

			splat(k, R, s * cos(a), s * sin(a), 1.0);
		}
	} else {
		double rr = size / 2;

		/* Disc coverage of each px, 8x8 samples a px. */
		for (int y = -R; y <= R; y++)
			for (int x = -R; x <= R; x++)
				for (int j = 0; j < 8; j++)
					for (int i = 0; i < 8; i++) {
						double sx = x + (i + 0.5) / 8 - 0.5;
						double sy = y + (j + 0.5) / 8 - 0.5;

						if (sx * sx + sy * sy <= rr * rr)
							k[(y + R) * N + x + R] += 1.0f / 64;
					}
	}
	for (int i = 0; i < N * N; i++)
		sum += k[i];
	for (int i = 0; i < N * N && n < TAPS_MAX; i++)
		if (k[i] > 1e-4f * sum)
			t[n++] = (struct tap){i % N - R, i / N - R, k[i] / sum};
	return n;
}

/* Gaussian taps, one row (dy 0) or one column (dx 0), for a separable blur of sigma. */
static int gauss_taps(double sigma, int vertical, struct tap *t)
{
	int r = (int)ceil(3 * sigma), n = 0;
	double sum = 0;

	for (int i = -r; i <= r; i++)
		sum += exp(-i * i / (2 * sigma * sigma));
	for (int i = -r; i <= r; i++)
		t[n++] = (struct tap){vertical ? 0 : i, vertical ? i : 0,
		                      (float)(exp(-i * i / (2 * sigma * sigma)) / sum)};
	return n;
}

/* img = img convolved with taps (borders replicated); pad is a (w+2R)*(h+2R) scratch. */
static void convolve(float *img, float *pad, int w, int h, const struct tap *t, int n)
{
	enum { R = 12 };
	int pw = w + 2 * R;

	for (int y = -R; y < h + R; y++) {
		int yy = y < 0 ? 0 : y >= h ? h - 1 : y;
		float *row = pad + (size_t)(y + R) * pw;

		for (int x = -R; x < w + R; x++)
			row[x + R] = img[(size_t)yy * w + (x < 0 ? 0 : x >= w ? w - 1 : x)];
	}
	memset(img, 0, sizeof(*img) * (size_t)w * h);
	for (int i = 0; i < n; i++) {
		float wt = t[i].w;

		for (int y = 0; y < h; y++) {
			const float *s = pad + (size_t)(y + R + t[i].dy) * pw + R + t[i].dx;
			float *o = img + (size_t)y * w;

			for (int x = 0; x < w; x++)
				o[x] += wt * s[x];
		}
	}
}

static int jpeg_encode(const uint8_t *px, int w, int h, int quality, uint8_t **out, size_t *len)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr jerr;
	unsigned char *buf = NULL;
	unsigned long n = 0;

	c.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, &buf, &n);
	c.image_width = (JDIMENSION)w;
	c.image_height = (JDIMENSION)h;
	c.input_components = 1;
	c.in_color_space = JCS_GRAYSCALE;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	jpeg_start_compress(&c, TRUE);
	for (int y = 0; y < h; y++) {
		JSAMPROW row = (JSAMPROW)(px + (size_t)y * w);

		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	*out = buf;
	*len = n;
	return 0;
}

/* What is drawn on the screen: the code with its quiet zone, as 8-bit grey, 6 px a module. */
static int render_code(struct rng *r, unsigned index, const struct code_keyring *kr,
                       struct photo *p, struct code_grey *tex, unsigned *mpx)
{
	uint8_t *png = NULL;
	size_t len = 0;
	int err;

	p->barcode = index % 8 == 7;
	if (p->barcode) {
		/* Digits from the seeded generator, so barcode frames are reproducible. */
		for (int i = 0; i < 8; i++)
			p->expect[i] = (char)('0' + rng_next(r) % 10);
		p->expect[8] = '\0';
		err = code_barcode_png(p->expect, 4, 160, 10, &png, &len);
		*mpx = 4;
	} else {
		struct code_qr *q = NULL;

		err = code_token_make(kr, index + 1, 4000000000LL, p->token, sizeof(p->token));
		if (!err && index % 2)
			err = code_uri(CODE_URI_HTTPS, p->token, "https://pbx.example.net",
			               p->expect, sizeof(p->expect));
		else if (!err)
			err = code_uri(CODE_URI_SIP, p->token, "pbx.example.net", p->expect,
			               sizeof(p->expect));
		if (!err)
			err = code_qr_make(&q, p->expect, CODE_ECC_M);
		if (!err)
			err = code_qr_png(q, 6, 4, &png, &len);
		code_qr_free(q);
		*mpx = 6;
	}
	if (!err)
		err = code_image_decode(png, len, NULL, tex);
	free(png);
	return err;
}

/* Where the camera sees texture point (tx, ty): the code turned by rot, tilted by tilt about an
 * axis at psi, at distance f (so the centre keeps scale s), centred on (0, 0). */
struct pose {
	double s, rot, tilt, psi, f, cx, cy, tw, th;
};

static void project(const struct pose *po, double tx, double ty, double out[2])
{
	double x = (tx - po->tw / 2) * po->s, y = (ty - po->th / 2) * po->s;
	double X = x * cos(po->rot) - y * sin(po->rot), Y = x * sin(po->rot) + y * cos(po->rot);
	double ax = cos(po->psi), ay = sin(po->psi), dot = ax * X + ay * Y;
	double ct = cos(po->tilt), st = sin(po->tilt);
	double px = X * ct + ax * dot * (1 - ct), py = Y * ct + ay * dot * (1 - ct);
	double pz = po->f + (ax * Y - ay * X) * st;

	out[0] = po->cx + po->f * px / pz;
	out[1] = po->cy + po->f * py / pz;
}

/* Camera px per texture px at the texture's centre: sqrt of the local area scale. */
static double centre_scale(const struct pose *po)
{
	double a[2], b[2], c[2];

	project(po, po->tw / 2, po->th / 2, a);
	project(po, po->tw / 2 + 1, po->th / 2, b);
	project(po, po->tw / 2, po->th / 2 + 1, c);
	return sqrt(fabs((b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])));
}

/*
 * The distribution, fixed before the reader was tuned (see bench/README.md): px per module
 * log-uniform 1.8..12, rotation uniform +-45 degrees, tilt 0..40 degrees about any axis,
 * blur none 20% / motion 30% (1..7 px, any direction) / defocus 25% (disc 1.5..6 px) /
 * Gaussian 25% (sigma 0.5..2 px), JPEG quality 20..85, screen px per module 2..8 with a grid
 * of depth 0..0.35, a glare spot on 30%, low light (dim, noisy) on 25%.
 */
int photo_make(unsigned index, uint32_t seed, const struct code_keyring *kr, struct photo *p)
{
	const int W = PHOTO_W, H = PHOTO_H;
	struct rng r = {(uint64_t)seed * 1000003u + index};
	struct code_grey tex = {0};
	struct photo_cond *cd = &p->cond;
	struct pose po;
	double src[4][2], dst[4][2], hm[9], bb[4];
	float *img = NULL, *pad = NULL;
	uint8_t *out = NULL;
	struct tap *taps = NULL;
	unsigned mpx = 1;
	int err;

	memset(p, 0, sizeof(*p));
	err = render_code(&r, index, kr, p, &tex, &mpx);
	if (err)
		goto out;
	cd->ppm = exp(rng_uni(&r, log(1.8), log(12.0)));
	cd->rot = rng_uni(&r, -45, 45);
	cd->tilt = rng_uni(&r, 0, 40);
	po = (struct pose){.s = cd->ppm / mpx,
	                   .rot = cd->rot * M_PI / 180,
	                   .tilt = cd->tilt * M_PI / 180,
	                   .psi = rng_uni(&r, 0, M_PI),
	                   .f = 900,
	                   .tw = tex.w,
	                   .th = tex.h};
	/* Too big to fit in the frame this way: shrink until it does. */
	for (;;) {
		bb[0] = bb[1] = 1e9;
		bb[2] = bb[3] = -1e9;
		for (int i = 0; i < 4; i++) {
			double q[2];

			project(&po, (i == 1 || i == 2) * (double)tex.w, (i >= 2) * (double)tex.h,
			        q);
			bb[0] = fmin(bb[0], q[0]);
			bb[1] = fmin(bb[1], q[1]);
			bb[2] = fmax(bb[2], q[0]);
			bb[3] = fmax(bb[3], q[1]);
		}
		if (bb[2] - bb[0] < W - 8 && bb[3] - bb[1] < H - 8)
			break;
		po.s *= 0.97;
	}
	po.cx = rng_uni(&r, 4 - bb[0], W - 4 - bb[2]);
	po.cy = rng_uni(&r, 4 - bb[1], H - 4 - bb[3]);
	cd->ppm = centre_scale(&po) * mpx;
	for (int i = 0; i < 4; i++) {
		dst[i][0] = (i == 1 || i == 2) * (double)tex.w;
		dst[i][1] = (i >= 2) * (double)tex.h;
		project(&po, dst[i][0], dst[i][1], src[i]);
	}
	err = homography(src, dst, hm);
	if (err)
		goto out;

	/* Screen and light. */
	cd->low_light = rng_uni(&r, 0, 1) < 0.25;
	double light = cd->low_light ? rng_uni(&r, 40, 100) : rng_uni(&r, 140, 250);
	double dark = cd->low_light ? rng_uni(&r, 3, 25) : rng_uni(&r, 10, 80);
	double noise = cd->low_light ? rng_uni(&r, 5, 14) : rng_uni(&r, 1, 8);
	double margin = rng_uni(&r, 0.05, 0.5) * tex.w;
	cd->moire = rng_uni(&r, 2, 8);
	double grid_pitch = mpx / cd->moire, grid_amp = rng_uni(&r, 0.0, 0.35);
	double bezel = rng_uni(&r, 10, 90);
	double gx = rng_uni(&r, -0.35, 0.35), gy = rng_uni(&r, -0.35, 0.35);
	cd->glare = rng_uni(&r, 0, 1) < 0.3;
	double glare = cd->glare ? rng_uni(&r, 30, 150) : 0;
	double glx = (po.cx + (bb[0] + bb[2]) / 2) + rng_uni(&r, -1, 1) * (bb[2] - bb[0]) / 2;
	double gly = (po.cy + (bb[1] + bb[3]) / 2) + rng_uni(&r, -1, 1) * (bb[3] - bb[1]) / 2;
	double glr = rng_uni(&r, 40, 250);
	double gamma = rng_uni(&r, 0.6, 1.8);
	double bk = rng_uni(&r, 0, 1);

	cd->blur_kind = bk < 0.2    ? PHOTO_BLUR_NONE
	                : bk < 0.5  ? PHOTO_BLUR_MOTION
	                : bk < 0.75 ? PHOTO_BLUR_DEFOCUS
	                            : PHOTO_BLUR_GAUSS;
	double blur_a = rng_uni(&r, 0, M_PI), sigma = rng_uni(&r, 0.5, 2.0);
	double motion = rng_uni(&r, 1, 7), disc = rng_uni(&r, 1.5, 6);

	cd->blur_px = cd->blur_kind == PHOTO_BLUR_MOTION    ? motion
	              : cd->blur_kind == PHOTO_BLUR_DEFOCUS ? disc
	              : cd->blur_kind == PHOTO_BLUR_GAUSS   ? 2.3548 * sigma
	                                                    : 0;
	cd->quality = (int)rng_uni(&r, 20, 85.999);

	double coslut[1024], grid_k = 1024.0 / grid_pitch;

	for (int i = 0; i < 1024; i++)
		coslut[i] = 0.5 + 0.5 * cos(2 * M_PI * i / 1024.0);
	img = malloc(sizeof(*img) * W * H);
	pad = malloc(sizeof(*pad) * (W + 24) * (H + 24));
	out = malloc((size_t)W * H);
	taps = malloc(sizeof(*taps) * TAPS_MAX);
	if (!img || !pad || !out || !taps) {
		err = ENOMEM;
		goto out;
	}
	for (int y = 0; y < H; y++) {
		for (int x = 0; x < W; x++) {
			double val = 0;
			int on_screen = 0;

			/* 2x2 samples a px: the sensor integrates, so fine detail aliases as it
			 * would. */
			for (int sj = 0; sj < 2; sj++)
				for (int si = 0; si < 2; si++) {
					double sx = x - 0.25 + 0.5 * si, sy = y - 0.25 + 0.5 * sj;
					double d = hm[6] * sx + hm[7] * sy + hm[8];
					double u = (hm[0] * sx + hm[1] * sy + hm[2]) / d;
					double v = (hm[3] * sx + hm[4] * sy + hm[5]) / d;
					double t = 1.0;

					if (u >= 0 && v >= 0 && u < tex.w - 1 && v < tex.h - 1) {
						int iu = (int)u, iv = (int)v;
						double fu = u - iu, fv = v - iv;
						const uint8_t *tp =
						    tex.px + (size_t)iv * tex.w + iu;
						double t0 = tp[0] + (tp[1] - tp[0]) * fu;
						double t1 =
						    tp[tex.w] + (tp[tex.w + 1] - tp[tex.w]) * fu;

						t = (t0 + (t1 - t0) * fv) / 255.0;
					} else if (!(u > -margin && v > -margin &&
					             u < tex.w + margin && v < tex.h + margin)) {
						val += bezel + 15 * sin(sx * 0.013 + sy * 0.007);
						continue;
					}
					on_screen = 1;
					/* The screen's pixel grid. */
					double gu = coslut[(int)((u + 4096) * grid_k) & 1023];
					double gv = coslut[(int)((v + 4096) * grid_k) & 1023];

					val += (dark + (light - dark) * t) *
					       (1.0 - grid_amp * (1.0 - gu * gv));
				}
			val /= 4;
			(void)on_screen;
			val *= 1.0 + gx * (x - W / 2.0) / W + gy * (y - H / 2.0) / H;
			if (glare > 0 && fabs(x - glx) < 3 * glr && fabs(y - gly) < 3 * glr) {
				double dx = x - glx, dy = y - gly;

				val += glare * exp(-(dx * dx + dy * dy) / (2 * glr * glr));
			}
			img[y * W + x] = (float)val;
		}
	}
	if (cd->blur_kind == PHOTO_BLUR_GAUSS) {
		int n = gauss_taps(sigma, 0, taps);

		convolve(img, pad, W, H, taps, n);
		n = gauss_taps(sigma, 1, taps);
		convolve(img, pad, W, H, taps, n);
	} else if (cd->blur_kind != PHOTO_BLUR_NONE) {
		int n = make_taps(cd->blur_kind, cd->blur_px, blur_a, taps);

		convolve(img, pad, W, H, taps, n);
	}
	/* Gamma through a table, sensor noise from a table of Gaussian draws: same result, fast. */
	float glut[1025], gauss[4096];

	for (int i = 0; i <= 1024; i++)
		glut[i] = (float)(pow(i / 1024.0, gamma) * 255.0);
	for (int i = 0; i < 4096; i++)
		gauss[i] = (float)(noise * rng_gauss(&r));
	for (int i = 0; i < W * H; i++) {
		float v = img[i] * (1024.0f / 255.0f);
		uint64_t rn = rng_next(&r);

		v = v <= 0 ? 0 : glut[v >= 1024 ? 1024 : (int)v];
		v += gauss[rn & 4095];
		out[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5f);
	}
	err = jpeg_encode(out, W, H, cd->quality, &p->jpeg, &p->len);
out:
	code_grey_release(&tex);
	free(img);
	free(pad);
	free(out);
	free(taps);
	return err;
}

unsigned photo_size_bucket(const struct photo_cond *c)
{
	return c->ppm < 2.5 ? 0 : c->ppm < 3.5 ? 1 : c->ppm < 5 ? 2 : 3;
}

unsigned photo_blur_bucket(const struct photo_cond *c)
{
	double m = c->blur_px / c->ppm;

	return m < 0.25 ? 0 : m <= 1.0 ? 1 : 2;
}

const char *photo_size_name(unsigned b)
{
	static const char *const n[] = {"<2.5 px/mod", "2.5-3.5", "3.5-5", ">=5"};

	return b < PHOTO_SIZE_BUCKETS ? n[b] : "?";
}

const char *photo_blur_name(unsigned b)
{
	static const char *const n[] = {"none", "light", "heavy"};

	return b < PHOTO_BLUR_BUCKETS ? n[b] : "?";
}

int photo_legible(const struct photo_cond *c)
{
	return c->ppm >= 2.5 && c->blur_px <= c->ppm;
}

static int write_file(const char *path, const void *buf, size_t len)
{
	FILE *f = fopen(path, "wb");
	int err = 0;

	if (!f)
		return errno;
	if (fwrite(buf, 1, len, f) != len)
		err = EIO;
	if (fclose(f) && !err)
		err = errno;
	return err;
}

static int mkdir_p(const char *path)
{
	char tmp[1024];

	if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int)sizeof(tmp))
		return ENAMETOOLONG;
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return errno;
		*p = '/';
	}
	if (mkdir(tmp, 0755) && errno != EEXIST)
		return errno;
	return 0;
}

int photo_set_ensure(const char *dir, unsigned n, uint32_t seed)
{
	struct code_keyring *kr = NULL;
	char path[1200], tmpdir[1100], header[64];
	FILE *f = NULL;
	int err;

	snprintf(header, sizeof(header), "# set2 %u %u\n", n, seed);
	snprintf(path, sizeof(path), "%s/set.txt", dir);
	f = fopen(path, "r");
	if (f) {
		char line[64];
		int same = fgets(line, sizeof(line), f) && !strcmp(line, header);

		fclose(f);
		f = NULL;
		if (same)
			return 0;
	}
	snprintf(tmpdir, sizeof(tmpdir), "%s.tmp%ld", dir, (long)getpid());
	err = mkdir_p(tmpdir);
	if (err)
		return err;
	err = photo_keyring(&kr);
	if (err)
		goto out;
	snprintf(path, sizeof(path), "%s/set.txt", tmpdir);
	f = fopen(path, "w");
	if (!f) {
		err = errno;
		goto out;
	}
	fputs(header, f);
	for (unsigned i = 0; i < n && !err; i++) {
		struct photo p;
		char name[32];

		err = photo_make(i, seed, kr, &p);
		if (err)
			break;
		snprintf(name, sizeof(name), "%04u.jpg", i);
		snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
		err = write_file(path, p.jpeg, p.len);
		fprintf(f, "%s\t%d\t%.3f\t%.3f\t%d\t%d\t%.2f\t%.2f\t%.2f\t%d\t%d\t%s\n", name,
		        p.barcode, p.cond.ppm, p.cond.blur_px, p.cond.blur_kind, p.cond.quality,
		        p.cond.rot, p.cond.tilt, p.cond.moire, p.cond.low_light, p.cond.glare,
		        p.expect);
		photo_release(&p);
	}
	if (fclose(f) && !err)
		err = errno;
	f = NULL;
	if (err)
		goto out;
	/* Whoever renames first wins; an older set in the way is moved aside first. */
	snprintf(path, sizeof(path), "%s.old%ld", dir, (long)getpid());
	if (rename(dir, path) == 0) {
		char cmd[2600];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", path);
		if (system(cmd) != 0)
			fprintf(stderr, "photo: could not remove %s\n", path);
	}
	if (rename(tmpdir, dir) != 0 && errno != ENOTEMPTY && errno != EEXIST)
		err = errno;
out:
	if (f)
		fclose(f);
	{
		char cmd[1200];

		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
		if (system(cmd) != 0)
			fprintf(stderr, "photo: could not remove %s\n", tmpdir);
	}
	code_keyring_free(kr);
	return err;
}

int photo_set_load(const char *dir, struct photo_entry **list, unsigned *n)
{
	struct photo_entry *l = NULL;
	unsigned cnt = 0, cap = 0;
	char path[1200], line[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/set.txt", dir);
	f = fopen(path, "r");
	if (!f)
		return errno;
	while (fgets(line, sizeof(line), f)) {
		struct photo_entry en;
		char *tail;
		int k = 0;

		if (line[0] == '#')
			continue;
		line[strcspn(line, "\n")] = '\0';
		memset(&en, 0, sizeof(en));
		/* The expected text comes last: it is the rest of the line after the 11th tab. */
		tail = line;
		for (int t = 0; t < 11 && tail; t++) {
			tail = strchr(tail, '\t');
			if (tail)
				tail++;
		}
		if (!tail ||
		    sscanf(line, "%63s %d %lf %lf %d %d %lf %lf %lf %d %d%n", en.file, &en.barcode,
		           &en.cond.ppm, &en.cond.blur_px, &en.cond.blur_kind, &en.cond.quality,
		           &en.cond.rot, &en.cond.tilt, &en.cond.moire, &en.cond.low_light,
		           &en.cond.glare, &k) != 11 ||
		    k == 0)
			continue;
		snprintf(en.expect, sizeof(en.expect), "%.255s", tail);
		if (cnt == cap) {
			struct photo_entry *nl;

			cap = cap ? cap * 2 : 64;
			nl = realloc(l, sizeof(*l) * cap);
			if (!nl) {
				free(l);
				fclose(f);
				return ENOMEM;
			}
			l = nl;
		}
		l[cnt++] = en;
	}
	fclose(f);
	*list = l;
	*n = cnt;
	return 0;
}
