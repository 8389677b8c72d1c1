/* Tokens, numeric codes and their keyring: format described in code.h. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "codes/code.h"

#define TAG_LEN    16
#define SIGNED_LEN (CODE_TOKEN_BYTES - TAG_LEN)

struct code_key {
	unsigned id;
	size_t len;
	uint8_t key[CODE_KEY_MAX];
};

/* Owner: the caller of code_keyring_alloc/load; keys are wiped on free. */
struct code_keyring {
	unsigned n;
	unsigned current;
	struct code_key keys[CODE_KEYS_MAX];
};

static const char b32_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

const char *code_strerror(int err)
{
	switch (err) {
	case 0:
		return "ok";
	case CODE_ENOTIMAGE:
		return "not an image (PNG, JPEG or raw grey expected)";
	case CODE_ETRUNCATED:
		return "image truncated or corrupt";
	case CODE_ETOOLARGE:
		return "image too large";
	case CODE_ENOCODE:
		return "no code found";
	case CODE_ENOTOURS:
		return "code is not ours";
	case CODE_EBADTOKEN:
		return "malformed token";
	case CODE_EUNKNOWNKEY:
		return "token signed by an unknown key";
	case CODE_EBADSIG:
		return "token signature does not verify";
	case CODE_EEXPIRED:
		return "token expired";
	default:
		return strerror(err);
	}
}

int code_keyring_alloc(struct code_keyring **krp)
{
	struct code_keyring *kr;

	if (!krp)
		return EINVAL;
	kr = calloc(1, sizeof(*kr));
	if (!kr)
		return ENOMEM;
	*krp = kr;
	return 0;
}

void code_keyring_free(struct code_keyring *kr)
{
	if (!kr)
		return;
	OPENSSL_cleanse(kr, sizeof(*kr));
	free(kr);
}

void code_keyring_swap(struct code_keyring *a, struct code_keyring *b)
{
	struct code_keyring t = *a;

	*a = *b;
	*b = t;
	OPENSSL_cleanse(&t, sizeof(t));
}

int code_keyring_dup(struct code_keyring **krp, const struct code_keyring *kr)
{
	struct code_keyring *c;

	if (!krp || !kr)
		return EINVAL;
	c = malloc(sizeof(*c));
	if (!c)
		return ENOMEM;
	*c = *kr;
	*krp = c;
	return 0;
}

int code_keyring_equal(const struct code_keyring *a, const struct code_keyring *b)
{
	if (!a || !b)
		return a == b;
	if (a->n != b->n || a->current != b->current)
		return 0;
	for (unsigned i = 0; i < a->n; i++)
		if (a->keys[i].id != b->keys[i].id || a->keys[i].len != b->keys[i].len ||
		    CRYPTO_memcmp(a->keys[i].key, b->keys[i].key, a->keys[i].len))
			return 0;
	return 1;
}

unsigned code_keyring_count(const struct code_keyring *kr)
{
	return kr ? kr->n : 0;
}

static const struct code_key *key_by_id(const struct code_keyring *kr, unsigned id)
{
	for (unsigned i = 0; i < kr->n; i++)
		if (kr->keys[i].id == id)
			return &kr->keys[i];
	return NULL;
}

int code_keyring_add(struct code_keyring *kr, unsigned id, const uint8_t *key, size_t len)
{
	struct code_key *k;

	if (!kr || !key || id > 255 || len < CODE_KEY_MIN || len > CODE_KEY_MAX)
		return EINVAL;
	if (key_by_id(kr, id))
		return EEXIST;
	if (kr->n == CODE_KEYS_MAX)
		return ENOSPC;
	k = &kr->keys[kr->n++];
	k->id = id;
	k->len = len;
	memcpy(k->key, key, len);
	return 0;
}

int code_keyring_set_current(struct code_keyring *kr, unsigned id)
{
	if (!kr)
		return EINVAL;
	for (unsigned i = 0; i < kr->n; i++) {
		if (kr->keys[i].id == id) {
			kr->current = i;
			return 0;
		}
	}
	return ENOENT;
}

/* Parses "ID:HEX" (trailing blanks allowed) into id and key. */
static int parse_key_line(const char *s, unsigned *id, uint8_t *key, size_t *len)
{
	char *end, hex[2 * CODE_KEY_MAX + 1];
	unsigned long v;
	size_t n;

	if (!isdigit((unsigned char)*s))
		return EINVAL;
	errno = 0;
	v = strtoul(s, &end, 10);
	if (errno || v > 255 || *end != ':')
		return EINVAL;
	s = end + 1;
	n = strspn(s, "0123456789abcdefABCDEF");
	if (n % 2 || n > 2 * CODE_KEY_MAX)
		return EINVAL;
	memcpy(hex, s, n);
	hex[n] = '\0';
	s += n;
	n = 0;
	if (hex[0] && OPENSSL_hexstr2buf_ex(key, CODE_KEY_MAX, &n, hex, '\0') != 1)
		n = 0;
	OPENSSL_cleanse(hex, sizeof(hex));
	while (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n')
		s++;
	if (*s || n < CODE_KEY_MIN)
		return EINVAL;
	*id = (unsigned)v;
	*len = n;
	return 0;
}

int code_keyring_load(struct code_keyring **krp, const char *path, char *why, size_t whylen)
{
	struct code_keyring *kr = NULL;
	FILE *f = NULL;
	char line[512];
	unsigned lineno = 0;
	int err;

	if (!krp || !path)
		return EINVAL;
	f = fopen(path, "r");
	if (!f) {
		err = errno;
		if (why)
			snprintf(why, whylen, "cannot open it: %s", strerror(err));
		return err;
	}
	err = code_keyring_alloc(&kr);
	if (err)
		goto out;
	while (fgets(line, sizeof(line), f)) {
		const char *p = line;
		uint8_t key[CODE_KEY_MAX];
		size_t len;
		unsigned id;

		lineno++;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '#' || *p == '\n' || *p == '\r' || *p == '\0')
			continue;
		err = parse_key_line(p, &id, key, &len);
		if (!err)
			err = code_keyring_add(kr, id, key, len);
		OPENSSL_cleanse(key, sizeof(key));
		if (err) {
			if (why)
				snprintf(why, whylen, "line %u: %s", lineno,
				         err == EEXIST ? "duplicate key id"
				                       : "expected ID:HEX with 32..128 hex digits");
			goto out;
		}
	}
	if (ferror(f)) {
		err = EIO;
		if (why)
			snprintf(why, whylen, "read error");
		goto out;
	}
	if (kr->n == 0) {
		if (why)
			snprintf(why, whylen, "no key in it");
		err = ENOENT;
		goto out;
	}
	*krp = kr;
	kr = NULL;
out:
	OPENSSL_cleanse(line, sizeof(line));
	code_keyring_free(kr);
	fclose(f);
	return err;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
	for (int i = n - 1; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void b32_encode(const uint8_t *in, size_t n, char *out)
{
	uint32_t acc = 0;
	int bits = 0;

	for (size_t i = 0; i < n; i++) {
		acc = acc << 8 | in[i];
		bits += 8;
		while (bits >= 5) {
			bits -= 5;
			*out++ = b32_alpha[(acc >> bits) & 31];
		}
	}
	if (bits > 0)
		*out++ = b32_alpha[(acc << (5 - bits)) & 31];
	*out = '\0';
}

static int b32_val(int c)
{
	if (c >= 'a' && c <= 'z')
		return c - 'a';
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= '2' && c <= '7')
		return c - '2' + 26;
	return -1;
}

/* Decodes exactly CODE_TOKEN_LEN characters into CODE_TOKEN_BYTES; the string must end there. */
static int token_decode(const char *s, uint8_t *out)
{
	uint32_t acc = 0;
	int bits = 0;
	size_t n = 0;

	if (!s)
		return CODE_EBADTOKEN;
	for (size_t i = 0; i < CODE_TOKEN_LEN; i++) {
		int v = b32_val((unsigned char)s[i]);

		if (v < 0)
			return CODE_EBADTOKEN;
		acc = acc << 5 | (uint32_t)v;
		bits += 5;
		if (bits >= 8) {
			bits -= 8;
			out[n++] = (uint8_t)(acc >> bits);
		}
	}
	if (s[CODE_TOKEN_LEN] != '\0' || n != CODE_TOKEN_BYTES)
		return CODE_EBADTOKEN;
	return 0;
}

static int token_tag(const struct code_key *k, const uint8_t *msg, uint8_t *tag)
{
	uint8_t md[EVP_MAX_MD_SIZE];
	unsigned mdlen = 0;

	if (!HMAC(EVP_sha256(), k->key, (int)k->len, msg, SIGNED_LEN, md, &mdlen) ||
	    mdlen < TAG_LEN)
		return EIO;
	memcpy(tag, md, TAG_LEN);
	return 0;
}

int code_token_make(const struct code_keyring *kr, uint64_t move_id, time_t expires, char *out,
                    size_t outlen)
{
	uint8_t raw[CODE_TOKEN_BYTES];
	const struct code_key *k;
	int err;

	if (!kr || !out || outlen < CODE_TOKEN_LEN + 1 || expires < 0 ||
	    (uint64_t)expires > UINT32_MAX)
		return EINVAL;
	if (kr->n == 0)
		return ENOENT;
	k = &kr->keys[kr->current];
	raw[0] = (uint8_t)k->id;
	put_be(raw + 1, (uint64_t)expires, 4);
	put_be(raw + 5, move_id, 8);
	if (RAND_bytes(raw + 13, 16) != 1)
		return EIO;
	err = token_tag(k, raw, raw + SIGNED_LEN);
	if (!err)
		b32_encode(raw, sizeof(raw), out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return err;
}

int code_token_verify(const struct code_keyring *kr, const char *token, time_t now,
                      uint64_t *move_id, time_t *expires)
{
	uint8_t raw[CODE_TOKEN_BYTES], tag[TAG_LEN];
	const struct code_key *k;
	time_t exp;
	int err;

	if (!kr)
		return EINVAL;
	err = token_decode(token, raw);
	if (err)
		return err;
	k = key_by_id(kr, raw[0]);
	if (!k)
		return CODE_EUNKNOWNKEY;
	err = token_tag(k, raw, tag);
	if (err)
		return err;
	if (CRYPTO_memcmp(tag, raw + SIGNED_LEN, TAG_LEN) != 0)
		return CODE_EBADSIG;
	exp = (time_t)get_be(raw + 1, 4);
	if (now >= exp)
		return CODE_EEXPIRED;
	if (move_id)
		*move_id = get_be(raw + 5, 8);
	if (expires)
		*expires = exp;
	return 0;
}

int code_token_hash(const char *token, uint8_t out[CODE_HASH_LEN])
{
	uint8_t raw[CODE_TOKEN_BYTES];
	int err;

	if (!out)
		return EINVAL;
	err = token_decode(token, raw);
	if (err)
		return err;
	SHA256(raw, sizeof(raw), out);
	return 0;
}

int code_numeric_make(unsigned digits, char *out, size_t outlen)
{
	uint64_t limit = 1, v, zone;
	uint8_t rnd[8];

	if (digits < 6 || digits > 10 || !out || outlen < digits + 1)
		return EINVAL;
	for (unsigned i = 0; i < digits; i++)
		limit *= 10;
	/* Rejection sampling: draws at or above the largest multiple of limit are retried. */
	zone = UINT64_MAX - UINT64_MAX % limit;
	do {
		if (RAND_bytes(rnd, sizeof(rnd)) != 1)
			return EIO;
		v = get_be(rnd, 8);
	} while (v >= zone);
	v %= limit;
	for (int i = (int)digits - 1; i >= 0; i--, v /= 10)
		out[i] = (char)('0' + v % 10);
	out[digits] = '\0';
	OPENSSL_cleanse(rnd, sizeof(rnd));
	return 0;
}

int code_numeric_hash(const struct code_keyring *kr, unsigned idx, const char *code,
                      uint8_t out[CODE_HASH_LEN])
{
	static const char label[] = "qrxfer numeric code\n";
	uint8_t msg[sizeof(label) + 20];
	const struct code_key *k;
	unsigned mdlen = 0;
	size_t n;

	if (!kr || !code || !out)
		return EINVAL;
	n = strlen(code);
	if (n < 6 || n > 20)
		return EINVAL;
	for (size_t i = 0; i < n; i++)
		if (code[i] < '0' || code[i] > '9')
			return EINVAL;
	if (idx >= kr->n)
		return ENOENT;
	/* idx 0 is the current key, then the others in keyring order. */
	if (idx == 0)
		k = &kr->keys[kr->current];
	else
		k = &kr->keys[idx <= kr->current ? idx - 1 : idx];
	memcpy(msg, label, sizeof(label) - 1);
	memcpy(msg + sizeof(label) - 1, code, n);
	if (!HMAC(EVP_sha256(), k->key, (int)k->len, msg, sizeof(label) - 1 + n, out, &mdlen) ||
	    mdlen != CODE_HASH_LEN)
		return EIO;
	return 0;
}

int code_secret_make(char *out, size_t outlen)
{
	static const char b64url[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	uint8_t raw[16];
	uint32_t acc = 0;
	unsigned bits = 0, n = 0;

	if (!out || outlen <= CODE_SECRET_LEN)
		return EINVAL;
	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return EIO;
	for (size_t i = 0; i < sizeof(raw); i++) {
		acc = (acc << 8) | raw[i];
		bits += 8;
		while (bits >= 6) {
			bits -= 6;
			out[n++] = b64url[(acc >> bits) & 63];
		}
	}
	if (bits)
		out[n++] = b64url[(acc << (6 - bits)) & 63];
	out[n] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

int code_secret_hash(const char *secret, uint8_t out[CODE_HASH_LEN])
{
	size_t n;

	if (!secret || !out)
		return EINVAL;
	for (n = 0; secret[n]; n++)
		if (!isalnum((unsigned char)secret[n]) && secret[n] != '-' && secret[n] != '_')
			return CODE_EBADTOKEN;
	if (n != CODE_SECRET_LEN)
		return CODE_EBADTOKEN;
	SHA256((const unsigned char *)secret, n, out);
	return 0;
}
