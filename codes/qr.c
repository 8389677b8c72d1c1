/* QR codes (libqrencode), Code 128 barcodes (zint) and the URIs they carry. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <qrencode.h>
#include <zint.h>

#include "codes/code.h"
#include "codes/internal.h"

static int is_b32(int c)
{
	c = toupper(c);
	return (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

static int token_ok(const char *t)
{
	for (size_t i = 0; i < CODE_TOKEN_LEN; i++)
		if (!is_b32((unsigned char)t[i]))
			return 0;
	return t[CODE_TOKEN_LEN] == '\0';
}

int code_uri(enum code_uri_kind kind, const char *token, const char *where, char *out,
             size_t outlen)
{
	size_t wl;
	int n;

	if (!token || !where || !out || !token_ok(token))
		return EINVAL;
	wl = strlen(where);
	if (wl == 0)
		return EINVAL;
	for (size_t i = 0; i < wl; i++)
		if ((unsigned char)where[i] <= ' ' || where[i] == '@' || where[i] == '"' ||
		    where[i] == '<' || where[i] == '>' || where[i] == 0x7f)
			return EINVAL;
	switch (kind) {
	case CODE_URI_SIP:
		n = snprintf(out, outlen, "sip:m.%s@%s", token, where);
		break;
	case CODE_URI_HTTPS:
		if (strncmp(where, "https://", 8) && strncmp(where, "http://", 7))
			return EINVAL;
		while (wl > 0 && where[wl - 1] == '/')
			wl--;
		n = snprintf(out, outlen, "%.*s/m/%s", (int)wl, where, token);
		break;
	default:
		return EINVAL;
	}
	if (n < 0 || (size_t)n >= outlen)
		return ENOSPC;
	/* The token is uppercase already; keep it so for QR alphanumeric mode. */
	return 0;
}

/* Copies CODE_TOKEN_LEN base32 chars at p if they end at a delimiter in stop (or NUL). */
static int take_token(const char *p, const char *stop, char *out, size_t outlen)
{
	if (outlen <= CODE_TOKEN_LEN)
		return ENOSPC;
	for (size_t i = 0; i < CODE_TOKEN_LEN; i++) {
		if (!is_b32((unsigned char)p[i]))
			return CODE_ENOTOURS;
		out[i] = (char)toupper((unsigned char)p[i]);
	}
	if (p[CODE_TOKEN_LEN] != '\0' && !strchr(stop, p[CODE_TOKEN_LEN]))
		return CODE_ENOTOURS;
	out[CODE_TOKEN_LEN] = '\0';
	return 0;
}

int code_uri_token(const char *text, char *out, size_t outlen)
{
	const char *p;

	if (!text || !out)
		return EINVAL;
	if (!strncasecmp(text, "sip:m.", 6) || !strncasecmp(text, "sips:m.", 7)) {
		p = strchr(text, '.') + 1;
		return take_token(p, "@", out, outlen);
	}
	if (!strncasecmp(text, "https://", 8) || !strncasecmp(text, "http://", 7)) {
		const char *host = strstr(text, "://") + 3;

		p = strchr(host, '/');
		if (!p || (p[1] != 'm' && p[1] != 'M') || p[2] != '/')
			return CODE_ENOTOURS;
		return take_token(p + 3, "?#/", out, outlen);
	}
	return take_token(text, "", out, outlen);
}

int code_qr_make(struct code_qr **qp, const char *text, enum code_ecc ecc)
{
	static const QRecLevel levels[] = {QR_ECLEVEL_L, QR_ECLEVEL_M, QR_ECLEVEL_Q, QR_ECLEVEL_H};
	struct code_qr *q = NULL;
	QRcode *c;
	size_t n;

	if (!qp || !text || !*text || (unsigned)ecc > CODE_ECC_H)
		return EINVAL;
	/* Case-sensitive with mode optimisation: the uppercase token goes in alphanumeric mode. */
	c = QRcode_encodeString(text, 0, levels[ecc], QR_MODE_8, 1);
	if (!c)
		return errno == ERANGE ? E2BIG : (errno ? errno : EINVAL);
	n = (size_t)c->width * (size_t)c->width;
	q = calloc(1, sizeof(*q));
	if (q)
		q->modules = malloc(n);
	if (!q || !q->modules) {
		free(q);
		QRcode_free(c);
		return ENOMEM;
	}
	for (size_t i = 0; i < n; i++)
		q->modules[i] = c->data[i] & 1;
	q->version = c->version;
	q->width = c->width;
	QRcode_free(c);
	*qp = q;
	return 0;
}

void code_qr_free(struct code_qr *q)
{
	if (!q)
		return;
	free(q->modules);
	free(q);
}

int code_qr_png(const struct code_qr *q, unsigned module_px, unsigned quiet, uint8_t **out,
                size_t *outlen)
{
	if (!q || quiet > 100)
		return EINVAL;
	return code_png_bilevel(q->modules, (unsigned)q->width, (unsigned)q->width, module_px,
	                        module_px, quiet, quiet, out, outlen);
}

int code_qr_svg(const struct code_qr *q, unsigned module_px, unsigned quiet, char **out)
{
	if (!q)
		return EINVAL;
	return code_svg_bilevel(q->modules, (unsigned)q->width, (unsigned)q->width, module_px,
	                        module_px, quiet, quiet, out);
}

/* 1 if the module at (x, y) of the quiet-zoned symbol is light. */
static int light_at(const struct code_qr *q, unsigned quiet, int x, int y)
{
	int w = q->width;

	x -= (int)quiet;
	y -= (int)quiet;
	if (x < 0 || y < 0 || x >= w || y >= w)
		return 1;
	return !q->modules[y * w + x];
}

int code_qr_text(const struct code_qr *q, unsigned quiet, char **out)
{
	static const char *const cell[4] = {" ", "\xe2\x96\x84", "\xe2\x96\x80", "\xe2\x96\x88"};
	struct code_buf b = {0};
	int size, err = 0;

	if (!q || !out || quiet > 100)
		return EINVAL;
	size = q->width + 2 * (int)quiet;
	for (int y = 0; !err && y < size; y += 2) {
		for (int x = 0; !err && x < size; x++) {
			int top = light_at(q, quiet, x, y);
			/* Past the last row is the terminal's background: dark. */
			int bot = y + 1 < size ? light_at(q, quiet, x, y + 1) : 0;

			err = code_buf_put(&b, cell[top << 1 | bot], strlen(cell[top << 1 | bot]));
		}
		if (!err)
			err = code_buf_put(&b, "\n", 1);
	}
	if (!err)
		err = code_buf_put(&b, "", 1);
	if (err) {
		free(b.data);
		return err;
	}
	*out = (char *)b.data;
	return 0;
}

/* Encodes digits as Code 128 into a malloc'd row of modules (1 = bar). */
static int barcode_modules(const char *digits, uint8_t **mod, unsigned *width)
{
	struct zint_symbol *sym;
	size_t n;
	int err = 0;

	if (!digits)
		return EINVAL;
	n = strlen(digits);
	if (n == 0 || n > 64)
		return EINVAL;
	for (size_t i = 0; i < n; i++)
		if (digits[i] < '0' || digits[i] > '9')
			return EINVAL;
	sym = ZBarcode_Create();
	if (!sym)
		return ENOMEM;
	sym->symbology = BARCODE_CODE128;
	sym->show_hrt = 0;
	if (ZBarcode_Encode(sym, (const unsigned char *)digits, (int)n) >= 5 || sym->rows < 1 ||
	    sym->width < 1 || sym->width > 144 * 8) {
		err = EINVAL;
		goto out;
	}
	*mod = malloc((size_t)sym->width);
	if (!*mod) {
		err = ENOMEM;
		goto out;
	}
	/* zint keeps row 0 as a bit set, least significant bit first. */
	for (int x = 0; x < sym->width; x++)
		(*mod)[x] = (sym->encoded_data[0][x >> 3] >> (x & 7)) & 1;
	*width = (unsigned)sym->width;
out:
	ZBarcode_Delete(sym);
	return err;
}

int code_barcode_png(const char *digits, unsigned module_px, unsigned height_px, unsigned quiet,
                     uint8_t **out, size_t *outlen)
{
	uint8_t *mod = NULL;
	unsigned w = 0;
	int err;

	if (quiet > 100)
		return EINVAL;
	err = barcode_modules(digits, &mod, &w);
	if (!err)
		err = code_png_bilevel(mod, w, 1, module_px, height_px, quiet, 0, out, outlen);
	free(mod);
	return err;
}

int code_barcode_svg(const char *digits, unsigned module_px, unsigned height_px, unsigned quiet,
                     char **out)
{
	uint8_t *mod = NULL;
	unsigned w = 0;
	int err;

	err = barcode_modules(digits, &mod, &w);
	if (!err)
		err = code_svg_bilevel(mod, w, 1, module_px, height_px, quiet, 0, out);
	free(mod);
	return err;
}
