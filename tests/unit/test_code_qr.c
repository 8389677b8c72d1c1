/* QR codes and barcodes: made, rendered (PNG, SVG, terminal text), then read back by zbar. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>

#include "codes/code.h"
#include "tests/unit/leakcheck.h"

static struct code_keyring *kr;
static char tok[CODE_TOKEN_LEN + 1];
static char uri[256];

static void setup(void)
{
	static const uint8_t key[32] = "0123456789abcdef0123456789abcdef";

	cr_assert_eq(code_keyring_alloc(&kr), 0);
	cr_assert_eq(code_keyring_add(kr, 4, key, sizeof(key)), 0);
	cr_assert_eq(code_token_make(kr, 77, 2000000000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "pbx.example.net", uri, sizeof(uri)), 0);
}

static void teardown(void)
{
	code_keyring_free(kr);
	leakcheck();
}

TestSuite(code_qr, .init = setup, .fini = teardown);

/* Scans g and asserts it holds our token (and that it verifies). */
static void assert_scans_to_token(const struct code_grey *g)
{
	struct code_scan_result res;
	char got[CODE_TOKEN_LEN + 1];
	uint64_t move = 0;

	cr_assert_eq(code_scan_grey(g, NULL, &res), 0, "scan: %s",
	             code_strerror(code_scan_grey(g, NULL, &res)));
	cr_assert_eq(res.n, 1);
	cr_assert_eq(res.sym[0].kind, CODE_SYM_QR);
	cr_assert_eq(code_scan_match(&res, tok, NULL), 0, "read %s", res.sym[0].text);
	cr_assert_eq(code_uri_token(res.sym[0].text, got, sizeof(got)), 0);
	cr_assert_eq(code_token_verify(kr, got, 1000, &move, NULL), 0);
	cr_assert_eq(move, 77);
}

Test(code_qr, png_round_trip)
{
	struct code_qr *q;
	struct code_grey g = {0};
	uint8_t *png;
	size_t len;

	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_png(q, 4, 4, &png, &len), 0);
	cr_assert_eq(code_image_decode(png, len, NULL, &g), 0);
	cr_assert_eq(g.w, (unsigned)(q->width + 8) * 4);
	cr_assert_eq(g.h, g.w);
	assert_scans_to_token(&g);
	/* The same buffer through the one-call path. */
	struct code_scan_result res;
	cr_assert_eq(code_scan_buffer(png, len, NULL, &res), 0);
	cr_assert_eq(code_scan_match(&res, tok, NULL), 0);
	code_grey_release(&g);
	free(png);
	code_qr_free(q);
}

Test(code_qr, https_uri_round_trip)
{
	char u[256];
	struct code_qr *q;
	uint8_t *png;
	size_t len;
	struct code_scan_result res;

	cr_assert_eq(code_uri(CODE_URI_HTTPS, tok, "https://pbx.example.net:8443", u, sizeof(u)),
	             0);
	cr_assert_eq(code_qr_make(&q, u, CODE_ECC_Q), 0);
	cr_assert_eq(code_qr_png(q, 3, 4, &png, &len), 0);
	cr_assert_eq(code_scan_buffer(png, len, NULL, &res), 0);
	cr_assert_str_eq(res.sym[0].text, u);
	cr_assert_eq(code_scan_match(&res, tok, NULL), 0);
	free(png);
	code_qr_free(q);
}

Test(code_qr, smallest_version_uses_alphanumeric_mode)
{
	struct code_qr *m, *h;

	cr_assert_eq(code_qr_make(&m, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_make(&h, uri, CODE_ECC_H), 0);
	/*
	 * 94 characters in byte mode need version 6 at M; with the token in alphanumeric mode
	 * it fits version 5.
	 */
	cr_assert_leq(m->version, 5, "version %d", m->version);
	cr_assert_gt(h->version, m->version);
	cr_assert_eq(m->width, 17 + 4 * m->version);
	code_qr_free(m);
	code_qr_free(h);
}

Test(code_qr, other_token_does_not_match)
{
	char other[CODE_TOKEN_LEN + 1];
	struct code_qr *q;
	uint8_t *png;
	size_t len;
	struct code_scan_result res;

	cr_assert_eq(code_token_make(kr, 77, 2000000000, other, sizeof(other)), 0);
	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_png(q, 4, 4, &png, &len), 0);
	cr_assert_eq(code_scan_buffer(png, len, NULL, &res), 0);
	cr_assert_eq(code_scan_match(&res, other, NULL), CODE_ENOTOURS);
	cr_assert_eq(code_scan_match(&res, NULL, "12345678"), CODE_ENOTOURS);
	free(png);
	code_qr_free(q);
}

/* A rasteriser for the SVG we write: a white canvas, then black rects inside <g>. */
static void rasterise_svg(const char *svg, struct code_grey *g)
{
	const char *p;
	unsigned w, h, rects = 0;

	p = strstr(svg, "<svg ");
	cr_assert_not_null(p);
	cr_assert_eq(sscanf(strstr(p, "width=\""), "width=\"%u\"", &w), 1);
	cr_assert_eq(sscanf(strstr(p, "height=\""), "height=\"%u\"", &h), 1);
	g->w = w;
	g->h = h;
	g->px = malloc((size_t)w * h);
	cr_assert_not_null(g->px);
	memset(g->px, 255, (size_t)w * h);
	p = strstr(p, "<g fill=\"#000000\">");
	cr_assert_not_null(p);
	while ((p = strstr(p, "<rect "))) {
		unsigned x, y, rw, rh;

		cr_assert_eq(sscanf(p, "<rect x=\"%u\" y=\"%u\" width=\"%u\" height=\"%u\"/>", &x,
		                    &y, &rw, &rh),
		             4);
		cr_assert_leq(x + rw, w);
		cr_assert_leq(y + rh, h);
		for (unsigned yy = y; yy < y + rh; yy++)
			memset(g->px + (size_t)yy * w + x, 0, rw);
		rects++;
		p++;
	}
	cr_assert_gt(rects, 10);
}

Test(code_qr, svg_round_trip)
{
	struct code_qr *q;
	struct code_grey g = {0};
	char *svg;

	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_svg(q, 5, 4, &svg), 0);
	cr_assert(strstr(svg, "</svg>"));
	rasterise_svg(svg, &g);
	cr_assert_eq(g.w, (unsigned)(q->width + 8) * 5);
	assert_scans_to_token(&g);
	code_grey_release(&g);
	free(svg);
	code_qr_free(q);
}

/* Parses half-block text back to modules (block = light), then draws it 4 px a module. */
static void text_to_grey(const char *text, struct code_grey *g)
{
	unsigned cols = 0, lines = 0, col = 0, scale = 4;
	uint8_t *mod = NULL;
	const unsigned char *p;

	for (p = (const unsigned char *)text; *p; p++) {
		if (*p == '\n') {
			cr_assert(cols == 0 || cols == col, "ragged line %u", lines);
			cols = col;
			col = 0;
			lines++;
		} else if (*p == ' ') {
			col++;
		} else {
			cr_assert(p[0] == 0xe2 && p[1] == 0x96, "unexpected byte 0x%x", *p);
			p += 2;
			col++;
		}
	}
	mod = calloc((size_t)cols * lines * 2, 1);
	cr_assert_not_null(mod);
	col = 0;
	lines = 0;
	for (p = (const unsigned char *)text; *p; p++) {
		int top = 0, bot = 0;

		if (*p == '\n') {
			col = 0;
			lines++;
			continue;
		}
		if (*p != ' ') {
			top = p[2] == 0x80 || p[2] == 0x88;
			bot = p[2] == 0x84 || p[2] == 0x88;
			cr_assert(top || bot);
			p += 2;
		}
		/* A light block is a light module: mod holds 1 for light. */
		mod[(size_t)(2 * lines) * cols + col] = (uint8_t)top;
		mod[(size_t)(2 * lines + 1) * cols + col] = (uint8_t)bot;
		col++;
	}
	g->w = cols * scale;
	g->h = lines * 2 * scale;
	g->px = malloc((size_t)g->w * g->h);
	cr_assert_not_null(g->px);
	for (unsigned y = 0; y < g->h; y++)
		for (unsigned x = 0; x < g->w; x++)
			g->px[(size_t)y * g->w + x] =
			    mod[(size_t)(y / scale) * cols + x / scale] ? 255 : 0;
	free(mod);
}

Test(code_qr, terminal_text_round_trip)
{
	struct code_qr *q;
	struct code_grey g = {0};
	char *text;

	cr_assert_eq(code_qr_make(&q, uri, CODE_ECC_M), 0);
	cr_assert_eq(code_qr_text(q, 2, &text), 0);
	text_to_grey(text, &g);
	/* Light-on-dark terminal: the module rows read back as the symbol plus quiet zone. */
	cr_assert_eq(g.w, (unsigned)(q->width + 4) * 4);
	assert_scans_to_token(&g);
	code_grey_release(&g);
	free(text);
	code_qr_free(q);
}

Test(code_qr, make_refuses)
{
	struct code_qr *q = NULL;
	char big[8000];

	cr_assert_eq(code_qr_make(&q, "", CODE_ECC_M), EINVAL);
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	cr_assert_neq(code_qr_make(&q, big, CODE_ECC_H), 0);
	cr_assert_null(q);
	cr_assert_eq(code_qr_make(&q, "x", (enum code_ecc)9), EINVAL);
}

static void assert_barcode_scans(const struct code_grey *g, const char *digits)
{
	struct code_scan_result res;

	cr_assert_eq(code_scan_grey(g, NULL, &res), 0);
	cr_assert_eq(res.sym[0].kind, CODE_SYM_CODE128);
	cr_assert_str_eq(res.sym[0].text, digits);
	cr_assert_eq(code_scan_match(&res, NULL, digits), 0);
	cr_assert_eq(code_scan_match(&res, tok, "00000000"), CODE_ENOTOURS);
}

Test(code_qr, barcode_png_round_trip)
{
	char digits[16];
	uint8_t *png;
	size_t len;
	struct code_grey g = {0};

	for (unsigned d = 6; d <= 10; d++) {
		cr_assert_eq(code_numeric_make(d, digits, sizeof(digits)), 0);
		cr_assert_eq(code_barcode_png(digits, 3, 80, 10, &png, &len), 0);
		cr_assert_eq(code_image_decode(png, len, NULL, &g), 0);
		cr_assert_eq(g.h, 80);
		assert_barcode_scans(&g, digits);
		code_grey_release(&g);
		free(png);
	}
}

Test(code_qr, barcode_svg_round_trip)
{
	struct code_grey g = {0};
	char *svg;

	cr_assert_eq(code_barcode_svg("09876543", 2, 60, 10, &svg), 0);
	rasterise_svg(svg, &g);
	assert_barcode_scans(&g, "09876543");
	code_grey_release(&g);
	free(svg);
	cr_assert_eq(code_barcode_svg("12a4", 2, 60, 10, &svg), EINVAL);
	cr_assert_eq(code_barcode_svg("", 2, 60, 10, &svg), EINVAL);
}
