/* Scanning: bad images are refused with a clear error; the photo-like set reads back. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "codes/code.h"
#include "tests/codes/photo.h"
#include "tests/unit/leakcheck.h"

/*
 * Floors for generated_photo_set_read_rate: measured 75-77 of 100 (QR 65-67/88, Code 128
 * 10/12, legible 66/74) over three sets (the tokens' nonces differ between sets), less 3.
 */
#define PHOTO_TEST_FLOOR_ALL     72
#define PHOTO_TEST_FLOOR_QR      62
#define PHOTO_TEST_FLOOR_BC      8
#define PHOTO_TEST_FLOOR_LEGIBLE 63

TestSuite(code_scan, .fini = leakcheck);

static uint8_t *qr_png(size_t *len)
{
	struct code_qr *q;
	uint8_t *png;

	cr_assert_eq(
	    code_qr_make(&q, "sip:m.ABCDEFGHIJKLMNOPQRSTUVWXYZ234567@pbx.example.net", CODE_ECC_M),
	    0);
	cr_assert_eq(code_qr_png(q, 4, 4, &png, len), 0);
	code_qr_free(q);
	return png;
}

static uint32_t be32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

Test(code_scan, truncated_png_every_length)
{
	struct code_scan_result res;
	size_t len;
	uint8_t *png = qr_png(&len);

	for (size_t n = 1; n < len; n += (n < 64 ? 1 : 97)) {
		int err = code_scan_buffer(png, n, NULL, &res);

		cr_assert_eq(err, CODE_ETRUNCATED, "length %zu: %s", n, code_strerror(err));
	}
	cr_assert_eq(code_scan_buffer(png, len, NULL, &res), 0);
	free(png);
}

Test(code_scan, png_huge_dimensions_refused_before_allocating)
{
	struct code_scan_result res;
	struct code_grey g = {0};
	size_t len;
	uint8_t *png = qr_png(&len);

	/* IHDR starts at byte 8: length, "IHDR", width, height; fix its CRC so libpng reads it. */
	cr_assert_eq(memcmp(png + 12, "IHDR", 4), 0);
	put32(png + 16, 100000);
	put32(png + 20, 100000);
	put32(png + 29, (uint32_t)crc32(0, png + 12, 17));
	cr_assert_eq(be32(png + 16), 100000);
	cr_assert_eq(code_scan_buffer(png, len, NULL, &res), CODE_ETOOLARGE);
	/* Within width and height caps, over the pixel cap. */
	put32(png + 16, 8000);
	put32(png + 20, 8000);
	put32(png + 29, (uint32_t)crc32(0, png + 12, 17));
	cr_assert_eq(code_image_decode(png, len, NULL, &g), CODE_ETOOLARGE);
	cr_assert_null(g.px);
	free(png);
}

Test(code_scan, byte_cap)
{
	struct code_limits lim;
	struct code_grey g = {0};
	size_t len;
	uint8_t *png = qr_png(&len);

	code_limits_default(&lim);
	lim.max_bytes = len - 1;
	cr_assert_eq(code_image_decode(png, len, &lim, &g), CODE_ETOOLARGE);
	lim.max_bytes = len;
	cr_assert_eq(code_image_decode(png, len, &lim, &g), 0);
	code_grey_release(&g);
	free(png);
}

/* A baseline JPEG header (SOI, DQT, SOF0, DHT, SOS) claiming w x h, without scan data. */
static size_t jpeg_bomb(uint8_t *buf, unsigned w, unsigned h)
{
	uint8_t *p = buf;

	*p++ = 0xff, *p++ = 0xd8;
	*p++ = 0xff, *p++ = 0xdb, *p++ = 0, *p++ = 67, *p++ = 0;
	for (int i = 0; i < 64; i++)
		*p++ = 1;
	*p++ = 0xff, *p++ = 0xc0, *p++ = 0, *p++ = 11, *p++ = 8;
	*p++ = (uint8_t)(h >> 8), *p++ = (uint8_t)h, *p++ = (uint8_t)(w >> 8), *p++ = (uint8_t)w;
	*p++ = 1, *p++ = 1, *p++ = 0x11, *p++ = 0;
	/* One DC and one AC table, each a single 1-bit code for symbol 0. */
	for (int t = 0; t < 2; t++) {
		*p++ = 0xff, *p++ = 0xc4, *p++ = 0, *p++ = 20, *p++ = (uint8_t)(t << 4);
		*p++ = 1;
		for (int i = 1; i < 16; i++)
			*p++ = 0;
		*p++ = 0;
	}
	*p++ = 0xff, *p++ = 0xda, *p++ = 0, *p++ = 8, *p++ = 1, *p++ = 1, *p++ = 0;
	*p++ = 0, *p++ = 63, *p++ = 0;
	*p++ = 0, *p++ = 0;
	*p++ = 0xff, *p++ = 0xd9;
	return (size_t)(p - buf);
}

Test(code_scan, jpeg_bomb_dimensions_refused)
{
	uint8_t buf[256];
	struct code_grey g = {0};
	size_t n = jpeg_bomb(buf, 65000, 65000);

	cr_assert_eq(code_image_decode(buf, n, NULL, &g), CODE_ETOOLARGE);
	cr_assert_null(g.px);
	n = jpeg_bomb(buf, 8000, 8000);
	cr_assert_eq(code_image_decode(buf, n, NULL, &g), CODE_ETOOLARGE);
	/* Small dimensions pass the cap and then fail for want of data. */
	n = jpeg_bomb(buf, 64, 64);
	cr_assert_eq(code_image_decode(buf, n, NULL, &g), CODE_ETRUNCATED);
	cr_assert_null(g.px);
}

/* Camera caps: the header's size is read without decoding, and checked against them. */
Test(code_scan, header_size_and_caps)
{
	struct code_limits lim;
	uint8_t buf[256], *png;
	unsigned w = 0, h = 0;
	size_t len, n;

	png = qr_png(&len);
	cr_assert_eq(code_image_size(png, len, &w, &h), 0);
	cr_assert_gt(w, 0);
	cr_assert_eq(w, h);
	put32(png + 16, 8192);
	put32(png + 20, 4882);
	cr_assert_eq(code_image_size(png, len, &w, &h), 0);
	cr_assert_eq(w, 8192);
	cr_assert_eq(h, 4882);
	cr_assert_eq(code_image_size(png, 20, &w, &h), CODE_ETRUNCATED);
	free(png);
	n = jpeg_bomb(buf, 4000, 3001);
	cr_assert_eq(code_image_size(buf, n, &w, &h), 0);
	cr_assert_eq(w, 4000);
	cr_assert_eq(h, 3001);
	cr_assert_eq(code_image_size(buf, 10, &w, &h), CODE_ETRUNCATED);
	cr_assert_eq(code_image_size("hello", 5, &w, &h), CODE_ENOTIMAGE);
	code_limits_default(&lim);
	lim.max_bytes = 4u << 20;
	lim.max_pixels = 12000000;
	cr_assert_eq(code_image_check(1000, 4000, 3000, &lim), 0);
	cr_assert_eq(code_image_check(1000, 4000, 3001, &lim), CODE_ETOOLARGE);
	cr_assert_eq(code_image_check(1000, 8192, 4882, &lim), CODE_ETOOLARGE);
	cr_assert_eq(code_image_check((4u << 20) + 1, 10, 10, &lim), CODE_ETOOLARGE);
}

static size_t encode_jpeg(const struct code_grey *g, int quality, uint8_t **out)
{
	struct jpeg_compress_struct c;
	struct jpeg_error_mgr jerr;
	unsigned long len = 0;

	*out = NULL;
	c.err = jpeg_std_error(&jerr);
	jpeg_create_compress(&c);
	jpeg_mem_dest(&c, out, &len);
	c.image_width = g->w;
	c.image_height = g->h;
	c.input_components = 1;
	c.in_color_space = JCS_GRAYSCALE;
	jpeg_set_defaults(&c);
	jpeg_set_quality(&c, quality, TRUE);
	jpeg_start_compress(&c, TRUE);
	for (unsigned y = 0; y < g->h; y++) {
		JSAMPROW row = g->px + (size_t)y * g->w;

		jpeg_write_scanlines(&c, &row, 1);
	}
	jpeg_finish_compress(&c);
	jpeg_destroy_compress(&c);
	return len;
}

Test(code_scan, jpeg_round_trip_and_truncated)
{
	struct code_grey g = {0};
	struct code_scan_result res;
	uint8_t *jpg;
	size_t len, n;
	uint8_t *png = qr_png(&len);

	cr_assert_eq(code_image_decode(png, len, NULL, &g), 0);
	n = encode_jpeg(&g, 75, &jpg);
	cr_assert_eq(code_scan_buffer(jpg, n, NULL, &res), 0);
	cr_assert_str_eq(res.sym[0].text, "sip:m.ABCDEFGHIJKLMNOPQRSTUVWXYZ234567@pbx.example.net");
	cr_assert_eq(code_scan_buffer(jpg, n / 2, NULL, &res), CODE_ETRUNCATED);
	cr_assert_eq(code_scan_buffer(jpg, 2, NULL, &res), CODE_ETRUNCATED);
	free(jpg);
	code_grey_release(&g);
	free(png);
}

Test(code_scan, random_bytes_and_empty)
{
	struct code_scan_result res;
	uint8_t buf[4096];
	uint32_t s = 12345;

	cr_assert_eq(code_scan_buffer("", 0, NULL, &res), CODE_ENOTIMAGE);
	cr_assert_eq(code_scan_buffer(NULL, 0, NULL, &res), CODE_ENOTIMAGE);
	for (int round = 0; round < 50; round++) {
		for (size_t i = 0; i < sizeof(buf); i++) {
			s = s * 1103515245u + 12345u;
			buf[i] = (uint8_t)(s >> 16);
		}
		/* Keep the first byte away from the PNG and JPEG signatures. */
		buf[0] = (uint8_t)(buf[0] % 0x80);
		cr_assert_eq(code_scan_buffer(buf, sizeof(buf), NULL, &res), CODE_ENOTIMAGE);
	}
	memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
	cr_assert_eq(code_scan_buffer(buf, sizeof(buf), NULL, &res), CODE_ETRUNCATED);
	memcpy(buf, "\xff\xd8\xff", 3);
	cr_assert_eq(code_scan_buffer(buf, sizeof(buf), NULL, &res), CODE_ETRUNCATED);
}

Test(code_scan, blank_image_has_no_code)
{
	struct code_grey g = {0};
	struct code_scan_result res;
	uint8_t *px = malloc(1280 * 720);

	memset(px, 200, 1280 * 720);
	cr_assert_eq(code_image_raw(px, 1280 * 720, 1280, 720, NULL, &g), 0);
	cr_assert_eq(code_scan_grey(&g, NULL, &res), CODE_ENOCODE);
	cr_assert_eq(res.n, 0);
	cr_assert_eq(code_scan_match(&res, "X", NULL), CODE_ENOCODE);
	cr_assert_eq(code_image_raw(px, 1000, 1280, 720, NULL, &g), CODE_ETRUNCATED);
	code_grey_release(&g);
	free(px);
}

Test(code_scan, scan_file_errors)
{
	struct code_scan_result res;

	cr_assert_eq(code_scan_file("/nonexistent/x.png", NULL, &res), ENOENT);
}

Test(code_scan, describe_prints_verdicts)
{
	static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
	char path[] = "/tmp/qrxfer-scan-XXXXXX", tok[CODE_TOKEN_LEN + 1], uri[200];
	struct code_keyring *kr;
	struct code_qr *q;
	uint8_t *png;
	size_t len;
	char *text = NULL;
	size_t tlen = 0;
	FILE *f, *mem;
	int fd;

	cr_assert_eq(code_keyring_alloc(&kr), 0);
	cr_assert_eq(code_keyring_add(kr, 1, key, sizeof(key)), 0);
	cr_assert_eq(code_token_make(kr, 99, 5000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "example.net", uri, sizeof(uri)), 0);
	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_png(q, 4, 4, &png, &len), 0);
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "wb");
	cr_assert_eq(fwrite(png, 1, len, f), len);
	fclose(f);
	mem = open_memstream(&text, &tlen);
	cr_assert_eq(code_scan_describe(path, kr, 1000, mem), 0);
	cr_assert_eq(code_scan_describe(path, kr, 6000, mem), 0);
	cr_assert_eq(code_scan_describe("/nonexistent.png", kr, 1000, mem), ENOENT);
	fclose(mem);
	cr_assert(strstr(text, "token ok, move 99, expires in 4000s"), "%s", text);
	cr_assert(strstr(text, "[token: token expired]"), "%s", text);
	cr_assert(strstr(text, "/nonexistent.png: error: "), "%s", text);
	unlink(path);
	free(text);
	free(png);
	code_qr_free(q);
	code_keyring_free(kr);
}

/*
 * Every pass alone, on images too small, flat or thin for it: nothing found, nothing read out
 * of bounds (ASan), no error. The noise and corner-block images make the region passes find,
 * turn and resample regions touching the image's edges.
 */
Test(code_scan, passes_on_degenerate_images)
{
	static const unsigned dims[][2] = {{1, 1},     {2, 2},    {3, 3},    {23, 23},
	                                   {24, 24},   {25, 17},  {8192, 1}, {1, 8192},
	                                   {640, 360}, {700, 24}, {24, 700}, {641, 361}};
	uint32_t s = 777;

	for (unsigned d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
		unsigned w = dims[d][0], h = dims[d][1];
		uint8_t *px = malloc((size_t)w * h);

		for (unsigned fill = 0; fill < 4; fill++) {
			struct code_grey g = {0};

			for (size_t i = 0; i < (size_t)w * h; i++) {
				s = s * 1103515245u + 12345u;
				/* white, black, noise, a high-contrast block in each corner */
				px[i] = fill == 0   ? 255
				        : fill == 1 ? 0
				        : fill == 2 ? (uint8_t)(s >> 16)
				                    : (uint8_t)(((i % w < 40 || i % w + 40 >= w) &&
				                                 (i / w < 40 || i / w + 40 >= h) &&
				                                 ((i % w / 3 + i / w / 3) & 1))
				                                    ? 0
				                                    : 230);
			}
			cr_assert_eq(code_image_raw(px, (size_t)w * h, w, h, NULL, &g), 0);
			for (unsigned p = 0; code_scan_pass_name(p); p++) {
				struct code_scan_opts o;
				struct code_scan_result res;
				int err;

				code_scan_opts_default(&o);
				o.budget_ms = 0;
				o.pass_mask = 1u << p;
				err = code_scan_grey(&g, &o, &res);
				cr_assert(err == CODE_ENOCODE || err == 0,
				          "%ux%u fill %u pass %s: %s", w, h, fill,
				          code_scan_pass_name(p), code_strerror(err));
			}
			code_grey_release(&g);
		}
		free(px);
	}
}

/* A code drawn up to the frame's edge and at 2 px a module: the region passes read it. */
Test(code_scan, region_pass_reads_a_small_code_at_the_edge)
{
	static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";
	char tok[CODE_TOKEN_LEN + 1], uri[200];
	struct code_keyring *kr;
	struct code_qr *q;
	struct code_grey g = {0};
	struct code_scan_opts o;
	struct code_scan_result res;
	unsigned w = 1280, h = 720, mod = 2, x0, y0;

	cr_assert_eq(code_keyring_alloc(&kr), 0);
	cr_assert_eq(code_keyring_add(kr, 1, key, sizeof(key)), 0);
	cr_assert_eq(code_token_make(kr, 5, 5000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "example.net", uri, sizeof(uri)), 0);
	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	g.w = w;
	g.h = h;
	g.px = malloc((size_t)w * h);
	memset(g.px, 120, (size_t)w * h);
	/* Bottom-right corner, quiet zone of 4 modules on the frame's side cut to 2. */
	x0 = w - (unsigned)(q->width + 2) * mod;
	y0 = h - (unsigned)(q->width + 2) * mod;
	for (unsigned y = y0 - 8; y < h; y++)
		for (unsigned x = x0 - 8; x < w; x++) {
			int mx = ((int)x - (int)x0) / (int)mod, my = ((int)y - (int)y0) / (int)mod;
			int dark = x >= x0 && y >= y0 && mx < q->width && my < q->width &&
			           q->modules[my * q->width + mx];

			g.px[(size_t)y * w + x] = dark ? 30 : 220;
		}
	code_scan_opts_default(&o);
	o.budget_ms = 0;
	o.pass_mask = 1u << 0; /* region-adaptive */
	cr_assert_str_eq(code_scan_pass_name(0), "region-adaptive");
	cr_assert_eq(code_scan_grey(&g, &o, &res), 0);
	cr_assert_eq(code_scan_match(&res, tok, NULL), 0);
	cr_assert_eq(res.pass, 0);
	code_grey_release(&g);
	code_qr_free(q);
	code_keyring_free(kr);
}

/* The accept predicate: a foreign QR code is kept but does not stop the passes. */
static int accept_none(const struct code_symbol *s, void *arg)
{
	(void)s;
	++*(unsigned *)arg;
	return 0;
}

Test(code_scan, accept_predicate)
{
	struct code_scan_opts o;
	struct code_scan_result res;
	struct code_symbol sym = {CODE_SYM_CODE128, "12345678"};
	unsigned asked = 0;
	size_t len;
	uint8_t *png = qr_png(&len);

	code_scan_opts_default(&o);
	o.budget_ms = 0;
	o.accept = accept_none;
	o.accept_arg = &asked;
	cr_assert_eq(code_scan_buffer(png, len, &o, &res), 0);
	cr_assert_eq(res.n, 1);
	cr_assert_eq(res.pass, -1, "nothing accepted, so no pass is credited");
	cr_assert_gt(res.tries, 1, "the passes went on");
	cr_assert_gt(asked, 0);
	/* The default takes our forms only: the test URI's token is too short to be one. */
	code_scan_opts_default(&o);
	cr_assert_eq(o.accept(&res.sym[0], NULL), 0);
	cr_assert_eq(o.accept(&sym, NULL), 1);
	snprintf(sym.text, sizeof(sym.text), "12345");
	cr_assert_eq(o.accept(&sym, NULL), 0);
	snprintf(sym.text, sizeof(sym.text), "1234a678");
	cr_assert_eq(o.accept(&sym, NULL), 0);
	free(png);
}

/*
 * The first PHOTO_TEST_COUNT frames of the bench's set (tests/codes/photo.c) read back through
 * the passes a frame reaches within the time budget in bench-codes (PHOTO_TEST_PASSES), so
 * the outcome does not depend on the machine's speed. 100 frames and these passes keep the
 * suite within the time the 320 frames of the earlier, easier set took under ASan.
 */
#define PHOTO_TEST_COUNT  100
#define PHOTO_TEST_PASSES 0x0f /* region-adaptive .. region-keystone */
Test(code_scan, generated_photo_set_read_rate, .timeout = 900)
{
	const char *top = getenv("top_builddir");
	struct photo_entry *e = NULL;
	struct code_keyring *kr;
	struct code_scan_opts o;
	unsigned n = 0, ok = 0, qr = 0, qr_ok = 0, bc = 0, bc_ok = 0, leg = 0, leg_ok = 0;
	char dir[1024];

	snprintf(dir, sizeof(dir), "%s/tests/codes/set", top ? top : ".");
	cr_assert_eq(photo_set_ensure(dir, PHOTO_TEST_COUNT, PHOTO_SEED), 0);
	cr_assert_eq(photo_set_load(dir, &e, &n), 0);
	cr_assert_eq(n, PHOTO_TEST_COUNT);
	cr_assert_eq(photo_keyring(&kr), 0);
	code_scan_opts_default(&o);
	o.budget_ms = 0;
	o.pass_mask = PHOTO_TEST_PASSES;
	for (unsigned i = 0; i < n; i++) {
		struct code_scan_result res;
		char path[1200], tok[CODE_TOKEN_LEN + 1];
		int err, read = 0;

		snprintf(path, sizeof(path), "%s/%s", dir, e[i].file);
		err = code_scan_file(path, &o, &res);
		if (!e[i].barcode)
			qr++;
		else
			bc++;
		if (!err && e[i].barcode) {
			read = code_scan_match(&res, NULL, e[i].expect) == 0;
			bc_ok += read;
		} else if (!err) {
			cr_assert_eq(code_uri_token(e[i].expect, tok, sizeof(tok)), 0);
			read = code_scan_match(&res, tok, NULL) == 0;
			/* What was read is a token of ours, signed and in date. */
			if (read)
				cr_assert_eq(code_token_verify(kr, tok, 1000000000, NULL, NULL), 0);
			qr_ok += read;
		}
		ok += read;
		if (photo_legible(&e[i].cond)) {
			leg++;
			leg_ok += read;
		}
	}
	cr_log_info("photo set: read %u/%u (QR %u/%u, Code 128 %u/%u, legible %u/%u)\n", ok, n,
	            qr_ok, qr, bc_ok, bc, leg_ok, leg);
	/* Each kind has its own floor: an overall one let Code 128 fall to a third unseen. */
	cr_assert_geq(bc, 10);
	cr_assert_geq(ok, PHOTO_TEST_FLOOR_ALL, "read %u of %u", ok, n);
	cr_assert_geq(qr_ok, PHOTO_TEST_FLOOR_QR, "QR read %u of %u", qr_ok, qr);
	cr_assert_geq(bc_ok, PHOTO_TEST_FLOOR_BC, "Code 128 read %u of %u", bc_ok, bc);
	cr_assert_geq(leg_ok, PHOTO_TEST_FLOOR_LEGIBLE, "legible read %u of %u", leg_ok, leg);
	code_keyring_free(kr);
	free(e);
}
