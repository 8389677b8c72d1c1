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

/* Box blur of radius r, horizontal then vertical, on a float image. */
static void box_blur(float *img, float *tmp, int w, int h, int r)
{
	float n = (float)(2 * r + 1);

	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			float s = 0;

			for (int k = -r; k <= r; k++) {
				int xx = x + k < 0 ? 0 : x + k >= w ? w - 1 : x + k;

				s += img[y * w + xx];
			}
			tmp[y * w + x] = s / n;
		}
	for (int y = 0; y < h; y++)
		for (int x = 0; x < w; x++) {
			float s = 0;

			for (int k = -r; k <= r; k++) {
				int yy = y + k < 0 ? 0 : y + k >= h ? h - 1 : y + k;

				s += tmp[yy * w + x];
			}
			img[y * w + x] = s / n;
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
                       struct photo *p, struct code_grey *tex, unsigned *quiet_px)
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
		*quiet_px = 40;
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
		*quiet_px = 24;
	}
	if (!err)
		err = code_image_decode(png, len, NULL, tex);
	free(png);
	return err;
}

int photo_make(unsigned index, uint32_t seed, const struct code_keyring *kr, struct photo *p)
{
	const int W = PHOTO_W, H = PHOTO_H;
	struct rng r = {(uint64_t)seed * 1000003u + index};
	struct code_grey tex = {0};
	double src[4][2], dst[4][2], hm[9];
	float *img = NULL, *tmp = NULL;
	uint8_t *out = NULL;
	unsigned quiet_px;
	int err;

	memset(p, 0, sizeof(*p));
	err = render_code(&r, index, kr, p, &tex, &quiet_px);
	if (err)
		goto out;
	/* Code (with quiet zone) covers 10..40% of the frame; its aspect is the texture's. */
	double cover = rng_uni(&r, 0.10, 0.40), aspect = (double)tex.w / tex.h;
	double ch = sqrt(cover * W * H / aspect), cw = ch * aspect;
	double maxrot = p->barcode ? 12 : 30, theta, c, s, bw, bh;

	for (;;) {
		theta = rng_uni(&r, -maxrot, maxrot) * M_PI / 180;
		c = fabs(cos(theta));
		s = fabs(sin(theta));
		bw = cw * c + ch * s;
		bh = cw * s + ch * c;
		if (bw < W * 0.97 && bh < H * 0.97)
			break;
		/* Too big to fit at this angle: shrink a little and draw again. */
		cw *= 0.97;
		ch *= 0.97;
	}
	p->coverage = cw * ch / (W * H);
	double cx = rng_uni(&r, bw / 2 + 4, W - bw / 2 - 4);
	double cy = rng_uni(&r, bh / 2 + 4, H - bh / 2 - 4);
	/* Keystone: each corner pulled up to 6% of the size, as a phone held off-axis. */
	double kx = 0.06 * cw, ky = 0.06 * ch;
	static const int corner[4][2] = {{0, 0}, {1, 0}, {1, 1}, {0, 1}};

	for (int i = 0; i < 4; i++) {
		double lx = (corner[i][0] - 0.5) * cw + rng_uni(&r, -kx, kx);
		double ly = (corner[i][1] - 0.5) * ch + rng_uni(&r, -ky, ky);

		dst[i][0] = corner[i][0] * (double)tex.w;
		dst[i][1] = corner[i][1] * (double)tex.h;
		src[i][0] = cx + lx * cos(theta) - ly * sin(theta);
		src[i][1] = cy + lx * sin(theta) + ly * cos(theta);
	}
	err = homography(src, dst, hm);
	if (err)
		goto out;

	/* Screen: light and dark levels, a margin of screen around the code, a pixel grid. */
	double light = rng_uni(&r, 160, 250), dark = rng_uni(&r, 15, 70);
	double margin = rng_uni(&r, 0.05, 0.5) * tex.w;
	double grid_pitch = rng_uni(&r, 2.0, 4.0) * tex.w / 300.0;
	double grid_amp = rng_uni(&r, 0.0, 0.3);
	double bezel = rng_uni(&r, 10, 90);
	double gx = rng_uni(&r, -0.35, 0.35), gy = rng_uni(&r, -0.35, 0.35);
	double glare = rng_uni(&r, 0, 1) < 0.3 ? rng_uni(&r, 20, 70) : 0;
	double glx = rng_uni(&r, 0, W), gly = rng_uni(&r, 0, H), glr = rng_uni(&r, 80, 260);
	double gamma = rng_uni(&r, 0.7, 1.6), noise = rng_uni(&r, 2, 10);
	int blur = (int)rng_uni(&r, 0, 3.999) - 1; /* -1: sharp; 0..2: box radius 1..3 */
	int quality = (int)rng_uni(&r, 30, 80.999);

	double coslut[1024], grid_k = 1024.0 / grid_pitch;

	for (int i = 0; i < 1024; i++)
		coslut[i] = 0.5 + 0.5 * cos(2 * M_PI * i / 1024.0);
	img = malloc(sizeof(*img) * W * H);
	tmp = malloc(sizeof(*tmp) * W * H);
	out = malloc((size_t)W * H);
	if (!img || !tmp || !out) {
		err = ENOMEM;
		goto out;
	}
	for (int y = 0; y < H; y++) {
		for (int x = 0; x < W; x++) {
			double d = hm[6] * x + hm[7] * y + hm[8];
			double u = (hm[0] * x + hm[1] * y + hm[2]) / d;
			double v = (hm[3] * x + hm[4] * y + hm[5]) / d;
			double val;

			if (u >= 0 && v >= 0 && u < tex.w - 1 && v < tex.h - 1) {
				int iu = (int)u, iv = (int)v;
				double fu = u - iu, fv = v - iv;
				const uint8_t *t = tex.px + (size_t)iv * tex.w + iu;
				double t0 = t[0] + (t[1] - t[0]) * fu;
				double t1 = t[tex.w] + (t[tex.w + 1] - t[tex.w]) * fu;

				val = (t0 + (t1 - t0) * fv) / 255.0;
			} else if (u > -margin && v > -margin && u < tex.w + margin &&
			           v < tex.h + margin) {
				val = 1.0;
			} else {
				val = -1;
			}
			if (val >= 0) {
				/* The screen's pixel grid, sampled without a filter: moiré. */
				double gu = coslut[(int)(u * grid_k) & 1023];
				double gv = coslut[(int)(v * grid_k) & 1023];

				val = dark + (light - dark) * val;
				val *= 1.0 - grid_amp * (1.0 - gu * gv);
			} else {
				val = bezel + 15 * sin(x * 0.013 + y * 0.007);
			}
			val *= 1.0 + gx * (x - W / 2.0) / W + gy * (y - H / 2.0) / H;
			if (glare > 0 && fabs(x - glx) < 3 * glr && fabs(y - gly) < 3 * glr) {
				double dx = x - glx, dy = y - gly;

				val += glare * exp(-(dx * dx + dy * dy) / (2 * glr * glr));
			}
			img[y * W + x] = (float)val;
		}
	}
	if (blur >= 0)
		box_blur(img, tmp, W, H, blur + 1);
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
	err = jpeg_encode(out, W, H, quality, &p->jpeg, &p->len);
out:
	(void)quiet_px;
	code_grey_release(&tex);
	free(img);
	free(tmp);
	free(out);
	return err;
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

	snprintf(header, sizeof(header), "# set %u %u\n", n, seed);
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
		snprintf(name, sizeof(name), "%03u.jpg", i);
		snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
		err = write_file(path, p.jpeg, p.len);
		fprintf(f, "%s\t%d\t%s\n", name, p.barcode, p.expect);
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
		char *a, *b;

		if (line[0] == '#')
			continue;
		line[strcspn(line, "\n")] = '\0';
		a = strchr(line, '\t');
		b = a ? strchr(a + 1, '\t') : NULL;
		if (!b)
			continue;
		*a = *b = '\0';
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
		snprintf(l[cnt].file, sizeof(l[cnt].file), "%.63s", line);
		l[cnt].barcode = atoi(a + 1);
		snprintf(l[cnt].expect, sizeof(l[cnt].expect), "%.255s", b + 1);
		cnt++;
	}
	fclose(f);
	*list = l;
	*n = cnt;
	return 0;
}
