/*
 * codes: one-time move codes — make them, show them, read them back from images.
 * Depends on nothing of ours (OpenSSL, libqrencode, zint, zbar, libpng, libjpeg).
 *
 * Token format (what a QR code carries). 45 bytes, base32 encoded (RFC 4648 alphabet,
 * uppercase, no padding) into exactly CODE_TOKEN_LEN (72) characters:
 *
 *   offset size  field
 *   0      1     key id (0..255) of the keyring key that signed it
 *   1      4     expiry, seconds since the epoch, big endian (unsigned)
 *   5      8     move id, big endian
 *   13     16    nonce: 128 bits from RAND_bytes
 *   29     16    tag: HMAC-SHA256(key, bytes 0..28) truncated to 128 bits
 *
 * Parsing is case-insensitive. code_token_verify() checks length, alphabet, key id, tag
 * (CRYPTO_memcmp) and expiry; it does not know whether a token was already used: the store
 * keeps code_token_hash() (SHA-256 of the 45 decoded bytes) and redeems it once.
 *
 * Keyring file (code_keyring_load): one key a line, "ID:HEX", ID a decimal 0..255 and HEX
 * 32..128 hex digits (16..64 bytes of key). Blank lines and lines starting with '#' are
 * ignored. The first key is the current one (signs new tokens); the others only verify, so
 * a rotation puts the new key first and keeps the old one until its codes have expired.
 *
 * Errors: functions return 0 or a positive value, an errno value or one of CODE_E* below;
 * code_strerror() names either.
 */
#ifndef QRXFER_CODES_CODE_H
#define QRXFER_CODES_CODE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

enum {
	CODE_ENOTIMAGE = 1000, /* input is not a PNG, a JPEG or raw grey */
	CODE_ETRUNCATED,       /* image is truncated or corrupt */
	CODE_ETOOLARGE,        /* bytes, width, height or pixels over the caps */
	CODE_ENOCODE,          /* image decoded, but no QR code or barcode found */
	CODE_ENOTOURS,         /* a code was found, but it is not the expected one */
	CODE_EBADTOKEN,        /* token malformed: length or alphabet */
	CODE_EUNKNOWNKEY,      /* token signed by a key id not in the keyring */
	CODE_EBADSIG,          /* token tag does not verify */
	CODE_EEXPIRED,         /* token past its expiry */
};

/* Describes a 0/errno/CODE_E* value; never NULL. */
const char *code_strerror(int err);

/* ---- tokens ---- */

#define CODE_TOKEN_BYTES 45
#define CODE_TOKEN_LEN   72 /* base32 characters, no NUL */
#define CODE_HASH_LEN    32
#define CODE_KEY_MIN     16
#define CODE_KEY_MAX     64
#define CODE_KEYS_MAX    16

struct code_keyring;

/* Makes an empty keyring. */
int code_keyring_alloc(struct code_keyring **krp);
/* Reads a keyring file (format above); *krp is set only on success. On failure why (if not
 * NULL) says what was wrong, e.g. "line 3: duplicate key id"; codes/ prints nothing itself. */
int code_keyring_load(struct code_keyring **krp, const char *path, char *why, size_t whylen);
/* Appends a key; the first key added is current. EEXIST if the id is taken. */
int code_keyring_add(struct code_keyring *kr, unsigned id, const uint8_t *key, size_t len);
/* Makes key id the current one (it must be in the keyring). */
int code_keyring_set_current(struct code_keyring *kr, unsigned id);
/* Exchanges the keys of two keyrings: a reload puts new keys where every holder of a finds them. */
void code_keyring_swap(struct code_keyring *a, struct code_keyring *b);
/* A copy of kr (wiped by code_keyring_free), for a thread that must not see a reload. */
int code_keyring_dup(struct code_keyring **krp, const struct code_keyring *kr);
/* 1 if a and b hold the same keys in the same order with the same current one. */
int code_keyring_equal(const struct code_keyring *a, const struct code_keyring *b);
/* Number of keys. */
unsigned code_keyring_count(const struct code_keyring *kr);
/* Wipes and frees; NULL is fine. */
void code_keyring_free(struct code_keyring *kr);

/* Signs a new token for move_id valid until expires; out gets CODE_TOKEN_LEN chars + NUL. */
int code_token_make(const struct code_keyring *kr, uint64_t move_id, time_t expires, char *out,
                    size_t outlen);
/* Checks a token's form, key, tag and expiry at now; move_id/expires may be NULL. */
int code_token_verify(const struct code_keyring *kr, const char *token, time_t now,
                      uint64_t *move_id, time_t *expires);
/* What the store keeps for a token: SHA-256 of its decoded bytes (case does not matter). */
int code_token_hash(const char *token, uint8_t out[CODE_HASH_LEN]);

/* Makes a numeric code of digits (6..10) digits, uniform from the CSPRNG; out >= digits+1. */
int code_numeric_make(unsigned digits, char *out, size_t outlen);
/*
 * What the store keeps for a numeric code: HMAC-SHA256 under keyring key number idx
 * (0 = current), so a leaked store cannot be brute-forced without the key. A lookup tries
 * idx = 0 .. code_keyring_count()-1. EINVAL unless code is 6..20 digits (a move's code has
 * 6..10; a resume code's digits are longer).
 */
int code_numeric_hash(const struct code_keyring *kr, unsigned idx, const char *code,
                      uint8_t out[CODE_HASH_LEN]);

/* ---- show secrets ---- */

/* A show page's secret: 128 bits from the CSPRNG as unpadded base64url (22 characters). */
#define CODE_SECRET_LEN 22

/* Makes a fresh secret: out gets CODE_SECRET_LEN characters + NUL (outlen > CODE_SECRET_LEN). */
int code_secret_make(char *out, size_t outlen);
/* SHA-256 of a secret's text; CODE_EBADTOKEN if it is not CODE_SECRET_LEN base64url characters. */
int code_secret_hash(const char *secret, uint8_t out[CODE_HASH_LEN]);

/* ---- URIs ---- */

enum code_uri_kind {
	CODE_URI_SIP,   /* sip:m.<TOKEN>@<domain> */
	CODE_URI_HTTPS, /* <public_url>/m/<TOKEN>, public_url like https://host[:port] */
};

/* Builds the URI a QR code holds; where is the SIP domain or the public URL. */
int code_uri(enum code_uri_kind kind, const char *token, const char *where, char *out,
             size_t outlen);
/*
 * Pulls a token out of decoded text: either URI form (any case) or a bare token.
 * out gets the uppercase token + NUL (outlen > CODE_TOKEN_LEN). CODE_ENOTOURS otherwise.
 */
int code_uri_token(const char *text, char *out, size_t outlen);

/* ---- QR codes ---- */

enum code_ecc { CODE_ECC_L, CODE_ECC_M, CODE_ECC_Q, CODE_ECC_H };

/* A QR symbol: width x width modules, 1 = dark. */
struct code_qr {
	int version;
	int width;
	uint8_t *modules;
};

/* Encodes text in the smallest version that fits (alphanumeric mode where it can). */
int code_qr_make(struct code_qr **qp, const char *text, enum code_ecc ecc);
void code_qr_free(struct code_qr *q);
/* PNG (1-bit grey) in a malloc'd buffer; module_px >= 1, quiet in modules (4 is standard). */
int code_qr_png(const struct code_qr *q, unsigned module_px, unsigned quiet, uint8_t **out,
                size_t *outlen);
/* SVG document (malloc'd string): one <rect> a dark run, viewBox in pixels. */
int code_qr_svg(const struct code_qr *q, unsigned module_px, unsigned quiet, char **out);
/*
 * UTF-8 half-block text (malloc'd): two module rows a line. The blocks draw the LIGHT
 * modules, so it reads right on a terminal with light text on a dark background.
 */
int code_qr_text(const struct code_qr *q, unsigned quiet, char **out);

/* ---- barcodes (numeric code as Code 128) ---- */

/* PNG (1-bit) of digits as Code 128: module_px per narrow bar, height_px tall, quiet modules. */
int code_barcode_png(const char *digits, unsigned module_px, unsigned height_px, unsigned quiet,
                     uint8_t **out, size_t *outlen);
int code_barcode_svg(const char *digits, unsigned module_px, unsigned height_px, unsigned quiet,
                     char **out);

/* ---- images ---- */

/* An 8-bit grey image, stride == w; px is malloc'd. */
struct code_grey {
	unsigned w, h;
	uint8_t *px;
};

struct code_limits {
	size_t max_bytes;    /* encoded input */
	unsigned max_width;  /* pixels */
	unsigned max_height; /* pixels */
	uint64_t max_pixels; /* width * height */
};

/* Defaults: 16 MiB, 8192 x 8192, 40 Mpixel. */
void code_limits_default(struct code_limits *lim);
/* Decodes PNG or JPEG (by signature) to grey; dimensions are checked before allocating. */
int code_image_decode(const void *buf, size_t len, const struct code_limits *lim,
                      struct code_grey *out);
/* Reads a PNG's or JPEG's dimensions from its header, decoding no pixels; 0, CODE_ENOTIMAGE
 * or CODE_ETRUNCATED. */
int code_image_size(const void *buf, size_t len, unsigned *w, unsigned *h);
/* CODE_ETOOLARGE if an image of len bytes and w x h pixels is over lim, else 0. */
int code_image_check(size_t len, unsigned w, unsigned h, const struct code_limits *lim);
/* Copies raw 8-bit grey (len must be w*h). */
int code_image_raw(const void *buf, size_t len, unsigned w, unsigned h,
                   const struct code_limits *lim, struct code_grey *out);
void code_grey_release(struct code_grey *g);
/* Encodes grey (8-bit) as PNG in a malloc'd buffer. */
int code_grey_png(const struct code_grey *g, uint8_t **out, size_t *outlen);

/* ---- scanning ---- */

enum code_sym_kind { CODE_SYM_QR, CODE_SYM_CODE128 };

#define CODE_SCAN_MAX 4
#define CODE_TEXT_MAX 256

struct code_symbol {
	enum code_sym_kind kind;
	char text[CODE_TEXT_MAX];
};

struct code_scan_result {
	unsigned n;
	struct code_symbol sym[CODE_SCAN_MAX];
	int pass;       /* preprocessing pass that read it (index in code_scan_pass_name), or -1 */
	unsigned tries; /* passes run */
};

/* Whether a symbol read is one worth stopping for (1) or scanning should go on (0). */
typedef int code_scan_accept_h(const struct code_symbol *s, void *arg);

struct code_scan_opts {
	struct code_limits lim;
	unsigned budget_ms; /* no pass is started that may end past this; 0 = all passes */
	unsigned pass_mask; /* bit i enables pass i; 0 = all */
	/* Passes stop at the first symbol accept() takes; NULL takes any. Others are kept too. */
	code_scan_accept_h *accept;
	void *accept_arg;
};

/* Defaults: code_limits_default, 85 ms, all passes, accept = code_scan_accept_ours. */
void code_scan_opts_default(struct code_scan_opts *o);
/* Takes a QR holding a token (code_uri_token; not verified) or a Code 128 of 6..10 digits. */
int code_scan_accept_ours(const struct code_symbol *s, void *arg);
/* Name of preprocessing pass i, or NULL past the last. */
const char *code_scan_pass_name(unsigned i);
/* Looks for QR and Code 128 symbols; CODE_ENOCODE if none after all passes. */
int code_scan_grey(const struct code_grey *g, const struct code_scan_opts *o,
                   struct code_scan_result *res);
/* Decodes an encoded image (PNG, JPEG) then scans it. */
int code_scan_buffer(const void *buf, size_t len, const struct code_scan_opts *o,
                     struct code_scan_result *res);
/* Reads a file (capped at o->lim.max_bytes) then scans it; what `qrxferctl scan` calls. */
int code_scan_file(const char *path, const struct code_scan_opts *o, struct code_scan_result *res);
/*
 * 0 if a scanned symbol is the expected code: a QR whose text holds token (either URI form
 * or bare), or a Code 128 equal to numeric. Either expectation may be NULL.
 * CODE_ENOCODE if res holds nothing, CODE_ENOTOURS if it holds something else.
 */
int code_scan_match(const struct code_scan_result *res, const char *token, const char *numeric);
/*
 * Prints one line for an image file: "PATH: qr TEXT [token ok, move N | why]" per symbol or
 * "PATH: error: why". kr may be NULL (no verification). Returns the scan's error value.
 */
int code_scan_describe(const char *path, const struct code_keyring *kr, time_t now, FILE *out);

#endif
