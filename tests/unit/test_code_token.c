/* Tokens, numeric codes, keyrings and the hashes the store keeps. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ctype.h>
#include <unistd.h>

#include <criterion/criterion.h>
#include <criterion/redirect.h>

#include "codes/code.h"
#include "tests/unit/leakcheck.h"

static struct code_keyring *kr;
static const uint8_t key1[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14, 15, 16,
                                 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
static const uint8_t key2[32] = {0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 1,  2,  3,  4,  5,
                                 6,    7,    8,    9,    10,   11,   12, 13, 14, 15, 16,
                                 17,   18,   19,   20,   21,   22,   23, 24, 25, 26};

static void setup(void)
{
	cr_assert_eq(code_keyring_alloc(&kr), 0);
	cr_assert_eq(code_keyring_add(kr, 1, key1, sizeof(key1)), 0);
}

static void teardown(void)
{
	code_keyring_free(kr);
	kr = NULL;
	leakcheck();
}

TestSuite(code_token, .init = setup, .fini = teardown);

Test(code_token, make_verify_round_trip)
{
	char tok[CODE_TOKEN_LEN + 1];
	uint64_t move = 0;
	time_t exp = 0;

	cr_assert_eq(code_token_make(kr, 0x123456789abcdefULL, 2000000000, tok, sizeof(tok)), 0);
	cr_assert_eq(strlen(tok), CODE_TOKEN_LEN);
	for (size_t i = 0; i < CODE_TOKEN_LEN; i++)
		cr_assert(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", tok[i]), "char %c", tok[i]);
	cr_assert_eq(code_token_verify(kr, tok, 1999999999, &move, &exp), 0);
	cr_assert_eq(move, 0x123456789abcdefULL);
	cr_assert_eq(exp, 2000000000);
}

Test(code_token, two_tokens_differ)
{
	char a[CODE_TOKEN_LEN + 1], b[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_token_make(kr, 7, 2000000000, a, sizeof(a)), 0);
	cr_assert_eq(code_token_make(kr, 7, 2000000000, b, sizeof(b)), 0);
	cr_assert_str_neq(a, b);
}

Test(code_token, lowercase_verifies_and_hashes_alike)
{
	char tok[CODE_TOKEN_LEN + 1], low[CODE_TOKEN_LEN + 1];
	uint8_t h1[CODE_HASH_LEN], h2[CODE_HASH_LEN];

	cr_assert_eq(code_token_make(kr, 9, 2000000000, tok, sizeof(tok)), 0);
	for (size_t i = 0; i <= CODE_TOKEN_LEN; i++)
		low[i] = (char)tolower((unsigned char)tok[i]);
	cr_assert_eq(code_token_verify(kr, low, 1000, NULL, NULL), 0);
	cr_assert_eq(code_token_hash(tok, h1), 0);
	cr_assert_eq(code_token_hash(low, h2), 0);
	cr_assert_arr_eq(h1, h2, CODE_HASH_LEN);
}

Test(code_token, expired)
{
	char tok[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_token_make(kr, 1, 1000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_token_verify(kr, tok, 999, NULL, NULL), 0);
	cr_assert_eq(code_token_verify(kr, tok, 1000, NULL, NULL), CODE_EEXPIRED);
	cr_assert_eq(code_token_verify(kr, tok, 5000, NULL, NULL), CODE_EEXPIRED);
}

Test(code_token, tampered_every_position)
{
	char tok[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_token_make(kr, 42, 2000000000, tok, sizeof(tok)), 0);
	for (size_t i = 0; i < CODE_TOKEN_LEN; i++) {
		char t[CODE_TOKEN_LEN + 1];
		int err;

		memcpy(t, tok, sizeof(t));
		t[i] = t[i] == 'A' ? 'B' : 'A';
		err = code_token_verify(kr, t, 1000, NULL, NULL);
		/* The first two characters hold the key id: a change there may name no key. */
		cr_assert(err == CODE_EBADSIG || (i < 2 && err == CODE_EUNKNOWNKEY),
		          "position %zu: %s", i, code_strerror(err));
	}
}

Test(code_token, wrong_key)
{
	struct code_keyring *other;
	char tok[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_keyring_alloc(&other), 0);
	cr_assert_eq(code_keyring_add(other, 1, key2, sizeof(key2)), 0);
	cr_assert_eq(code_token_make(other, 5, 2000000000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_token_verify(kr, tok, 1000, NULL, NULL), CODE_EBADSIG);
	code_keyring_free(other);
	cr_assert_eq(code_keyring_alloc(&other), 0);
	cr_assert_eq(code_keyring_add(other, 2, key2, sizeof(key2)), 0);
	cr_assert_eq(code_token_make(other, 5, 2000000000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_token_verify(kr, tok, 1000, NULL, NULL), CODE_EUNKNOWNKEY);
	code_keyring_free(other);
}

Test(code_token, rotated_key_old_still_verifies)
{
	char old[CODE_TOKEN_LEN + 1], new[CODE_TOKEN_LEN + 1];
	struct code_keyring *newonly;
	uint64_t move;

	cr_assert_eq(code_token_make(kr, 11, 2000000000, old, sizeof(old)), 0);
	cr_assert_eq(code_keyring_add(kr, 2, key2, sizeof(key2)), 0);
	cr_assert_eq(code_keyring_set_current(kr, 2), 0);
	cr_assert_eq(code_token_make(kr, 12, 2000000000, new, sizeof(new)), 0);
	cr_assert_eq(code_token_verify(kr, old, 1000, &move, NULL), 0);
	cr_assert_eq(move, 11);
	cr_assert_eq(code_token_verify(kr, new, 1000, &move, NULL), 0);
	cr_assert_eq(move, 12);
	/* New tokens are signed by the new key: a keyring without the old key still reads them. */
	cr_assert_eq(code_keyring_alloc(&newonly), 0);
	cr_assert_eq(code_keyring_add(newonly, 2, key2, sizeof(key2)), 0);
	cr_assert_eq(code_token_verify(newonly, new, 1000, NULL, NULL), 0);
	cr_assert_eq(code_token_verify(newonly, old, 1000, NULL, NULL), CODE_EUNKNOWNKEY);
	code_keyring_free(newonly);
}

Test(code_token, garbage)
{
	static const char *bad[] = {
	    "",
	    "A",
	    "ABC",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA1",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
	    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA A",
	};
	uint8_t h[CODE_HASH_LEN];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		cr_assert_eq(code_token_verify(kr, bad[i], 0, NULL, NULL), CODE_EBADTOKEN, "%zu",
		             i);
		cr_assert_eq(code_token_hash(bad[i], h), CODE_EBADTOKEN, "%zu", i);
	}
	cr_assert_eq(code_token_verify(kr, NULL, 0, NULL, NULL), CODE_EBADTOKEN);
	/* Well formed, key id 0 which the keyring lacks. */
	cr_assert_eq(code_token_verify(kr, bad[3 + 0] /* 71 chars */, 0, NULL, NULL),
	             CODE_EBADTOKEN);
	cr_assert_eq(code_token_verify(kr,
	                               "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	                               "AAAAAAAAAAAAAA",
	                               0, NULL, NULL),
	             CODE_EUNKNOWNKEY);
}

Test(code_token, hash_distinguishes_tokens)
{
	char a[CODE_TOKEN_LEN + 1], b[CODE_TOKEN_LEN + 1];
	uint8_t ha[CODE_HASH_LEN], hb[CODE_HASH_LEN];

	cr_assert_eq(code_token_make(kr, 1, 2000000000, a, sizeof(a)), 0);
	cr_assert_eq(code_token_make(kr, 1, 2000000000, b, sizeof(b)), 0);
	cr_assert_eq(code_token_hash(a, ha), 0);
	cr_assert_eq(code_token_hash(b, hb), 0);
	cr_assert_arr_neq(ha, hb, CODE_HASH_LEN);
}

Test(code_token, make_refuses_bad_args)
{
	char tok[CODE_TOKEN_LEN + 1];
	struct code_keyring *empty;

	cr_assert_eq(code_token_make(kr, 1, 2000000000, tok, CODE_TOKEN_LEN), EINVAL);
	cr_assert_eq(code_token_make(kr, 1, -1, tok, sizeof(tok)), EINVAL);
	cr_assert_eq(code_keyring_alloc(&empty), 0);
	cr_assert_eq(code_token_make(empty, 1, 2000000000, tok, sizeof(tok)), ENOENT);
	code_keyring_free(empty);
}

Test(code_token, keyring_add_checks)
{
	uint8_t shortkey[8] = {0};

	cr_assert_eq(code_keyring_add(kr, 1, key2, sizeof(key2)), EEXIST);
	cr_assert_eq(code_keyring_add(kr, 3, shortkey, sizeof(shortkey)), EINVAL);
	cr_assert_eq(code_keyring_add(kr, 256, key2, sizeof(key2)), EINVAL);
	cr_assert_eq(code_keyring_set_current(kr, 99), ENOENT);
	cr_assert_eq(code_keyring_count(kr), 1);
}

static char *write_tmp(const char *text)
{
	char *path = strdup("/tmp/qrxfer-keyring-XXXXXX");
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return path;
}

Test(code_token, keyring_file_first_is_current)
{
	char *path =
	    write_tmp("# rotated 2026-01-01\n"
	              "7:0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20\n"
	              "\n"
	              "3:AABBCCDDEEFF0102030405060708090A0B0C0D0E0F101112131415161718191A\n");
	struct code_keyring *fk;
	char tok[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_keyring_load(&fk, path, NULL, 0), 0);
	cr_assert_eq(code_keyring_count(fk), 2);
	cr_assert_eq(code_token_make(fk, 3, 2000000000, tok, sizeof(tok)), 0);
	/* Key 7 is key1: the test keyring (id 1) has the same bytes under another id. */
	cr_assert_eq(code_token_verify(kr, tok, 0, NULL, NULL), CODE_EUNKNOWNKEY);
	cr_assert_eq(code_keyring_add(kr, 7, key1, sizeof(key1)), 0);
	cr_assert_eq(code_token_verify(kr, tok, 0, NULL, NULL), 0);
	code_keyring_free(fk);
	unlink(path);
	free(path);
}

Test(code_token, keyring_file_errors)
{
	static const char *bad[] = {
	    "",
	    "# only a comment\n",
	    "1:0102\n",
	    "x:0102030405060708090a0b0c0d0e0f10\n",
	    "1:0102030405060708090a0b0c0d0e0f1g\n",
	    "300:0102030405060708090a0b0c0d0e0f10\n",
	    "1:0102030405060708090a0b0c0d0e0f10\n1:0102030405060708090a0b0c0d0e0f10\n",
	};
	static const char *said[] = {
	    "no key in it",
	    "no key in it",
	    "line 1: expected ID:HEX with 32..128 hex digits",
	    "line 1: expected ID:HEX with 32..128 hex digits",
	    "line 1: expected ID:HEX with 32..128 hex digits",
	    "line 1: expected ID:HEX with 32..128 hex digits",
	    "line 2: duplicate key id",
	};
	struct code_keyring *fk = NULL;
	char why[160];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *path = write_tmp(bad[i]);

		why[0] = '\0';
		cr_assert_neq(code_keyring_load(&fk, path, why, sizeof(why)), 0, "case %zu", i);
		cr_assert_null(fk);
		cr_assert_str_eq(why, said[i], "case %zu", i);
		cr_assert_neq(code_keyring_load(&fk, path, NULL, 0), 0, "case %zu without why", i);
		unlink(path);
		free(path);
	}
	cr_assert_eq(code_keyring_load(&fk, "/nonexistent/keyring", why, sizeof(why)), ENOENT);
	cr_assert_str_eq(why, "cannot open it: No such file or directory");
}

/* Odd-length, over-long and upper-case hex: only whole bytes of 16..64 are keys. */
Test(code_token, keyring_hex_lengths)
{
	char *odd = write_tmp("1:0102030405060708090a0b0c0d0e0f101\n"),
	     *upper = write_tmp("2:0102030405060708090A0B0C0D0E0F10\n"), big[200];
	struct code_keyring *fk = NULL;
	char *over;

	cr_assert_eq(code_keyring_load(&fk, odd, NULL, 0), EINVAL);
	cr_assert_eq(code_keyring_load(&fk, upper, NULL, 0), 0);
	cr_assert_eq(code_keyring_count(fk), 1);
	code_keyring_free(fk);
	fk = NULL;
	snprintf(big, sizeof(big), "3:");
	for (int i = 0; i < 65; i++)
		strcat(big, "ab");
	strcat(big, "\n");
	over = write_tmp(big);
	cr_assert_eq(code_keyring_load(&fk, over, NULL, 0), EINVAL);
	unlink(odd);
	unlink(upper);
	unlink(over);
	free(odd);
	free(upper);
	free(over);
}

Test(code_token, numeric_digits_and_range)
{
	char out[16];

	for (unsigned d = 6; d <= 10; d++) {
		cr_assert_eq(code_numeric_make(d, out, sizeof(out)), 0);
		cr_assert_eq(strlen(out), d);
		for (unsigned i = 0; i < d; i++)
			cr_assert(out[i] >= '0' && out[i] <= '9');
	}
	cr_assert_eq(code_numeric_make(5, out, sizeof(out)), EINVAL);
	cr_assert_eq(code_numeric_make(11, out, sizeof(out)), EINVAL);
	cr_assert_eq(code_numeric_make(8, out, 8), EINVAL);
}

Test(code_token, numeric_digits_roughly_uniform)
{
	unsigned count[10] = {0};
	char out[16];

	/* 2000 codes x 8 digits: each digit expects 1600; 1400..1800 is over 5 sigma wide. */
	for (int i = 0; i < 2000; i++) {
		cr_assert_eq(code_numeric_make(8, out, sizeof(out)), 0);
		for (int j = 0; j < 8; j++)
			count[out[j] - '0']++;
	}
	for (int d = 0; d < 10; d++)
		cr_assert(count[d] > 1400 && count[d] < 1800, "digit %d: %u", d, count[d]);
}

Test(code_token, numeric_hash_keyed)
{
	uint8_t a[CODE_HASH_LEN], b[CODE_HASH_LEN], c[CODE_HASH_LEN];

	cr_assert_eq(code_numeric_hash(kr, 0, "12345678", a), 0);
	cr_assert_eq(code_numeric_hash(kr, 0, "12345678", b), 0);
	cr_assert_arr_eq(a, b, CODE_HASH_LEN);
	cr_assert_eq(code_numeric_hash(kr, 0, "12345679", c), 0);
	cr_assert_arr_neq(a, c, CODE_HASH_LEN);
	cr_assert_eq(code_numeric_hash(kr, 1, "12345678", c), ENOENT);
	cr_assert_eq(code_numeric_hash(kr, 0, "1234a678", c), EINVAL);
	cr_assert_eq(code_numeric_hash(kr, 0, "12345", c), EINVAL);
	/* A resume code's 16 digits hash too; 21 do not. */
	cr_assert_eq(code_numeric_hash(kr, 0, "1234567890123456", c), 0);
	cr_assert_arr_neq(a, c, CODE_HASH_LEN);
	cr_assert_eq(code_numeric_hash(kr, 0, "123456789012345678901", c), EINVAL);
	/* After a rotation, index 1 is the old key: a code hashed before still matches there. */
	cr_assert_eq(code_keyring_add(kr, 2, key2, sizeof(key2)), 0);
	cr_assert_eq(code_keyring_set_current(kr, 2), 0);
	cr_assert_eq(code_numeric_hash(kr, 0, "12345678", b), 0);
	cr_assert_arr_neq(a, b, CODE_HASH_LEN);
	cr_assert_eq(code_numeric_hash(kr, 1, "12345678", b), 0);
	cr_assert_arr_eq(a, b, CODE_HASH_LEN);
}

Test(code_token, uri_forms_and_extraction)
{
	char tok[CODE_TOKEN_LEN + 1], uri[256], got[CODE_TOKEN_LEN + 1];

	cr_assert_eq(code_token_make(kr, 1, 2000000000, tok, sizeof(tok)), 0);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "pbx.example.net", uri, sizeof(uri)), 0);
	cr_assert_eq(strncmp(uri, "sip:m.", 6), 0);
	cr_assert_str_eq(uri + 6 + CODE_TOKEN_LEN, "@pbx.example.net");
	cr_assert_eq(code_uri_token(uri, got, sizeof(got)), 0);
	cr_assert_str_eq(got, tok);
	cr_assert_eq(code_uri(CODE_URI_HTTPS, tok, "https://pbx.example.net/", uri, sizeof(uri)),
	             0);
	cr_assert_eq(strncmp(uri, "https://pbx.example.net/m/", 26), 0);
	cr_assert_eq(code_uri_token(uri, got, sizeof(got)), 0);
	cr_assert_str_eq(got, tok);
	for (char *p = uri; *p; p++)
		*p = (char)tolower((unsigned char)*p);
	cr_assert_eq(code_uri_token(uri, got, sizeof(got)), 0);
	cr_assert_str_eq(got, tok);
	cr_assert_eq(code_uri_token(tok, got, sizeof(got)), 0);
	cr_assert_eq(code_uri_token("sip:alice@example.net", got, sizeof(got)), CODE_ENOTOURS);
	cr_assert_eq(code_uri_token("https://x/n/AAAA", got, sizeof(got)), CODE_ENOTOURS);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "bad domain", uri, sizeof(uri)), EINVAL);
	cr_assert_eq(code_uri(CODE_URI_HTTPS, tok, "ftp://x", uri, sizeof(uri)), EINVAL);
	cr_assert_eq(code_uri(CODE_URI_SIP, "short", "x", uri, sizeof(uri)), EINVAL);
	cr_assert_eq(code_uri(CODE_URI_SIP, tok, "x", uri, 20), ENOSPC);
}

Test(code_token, strerror_names_codes)
{
	cr_assert_str_eq(code_strerror(CODE_EEXPIRED), "token expired");
	cr_assert_str_eq(code_strerror(CODE_ENOCODE), "no code found");
	cr_assert_str_eq(code_strerror(ENOENT), strerror(ENOENT));
}

/* Show secrets: 22 base64url characters, fresh each time, hashed with SHA-256. */
Test(code_token, show_secret)
{
	char a[CODE_SECRET_LEN + 1], b[CODE_SECRET_LEN + 1];
	uint8_t ha[CODE_HASH_LEN], hb[CODE_HASH_LEN];

	cr_assert_eq(code_secret_make(a, sizeof(a)), 0);
	cr_assert_eq(code_secret_make(b, sizeof(b)), 0);
	cr_assert_eq(strlen(a), CODE_SECRET_LEN);
	cr_assert_eq(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
	             CODE_SECRET_LEN);
	cr_assert_str_neq(a, b);
	cr_assert_eq(code_secret_make(a, CODE_SECRET_LEN), EINVAL);
	cr_assert_eq(code_secret_hash(a, ha), 0);
	cr_assert_eq(code_secret_hash(b, hb), 0);
	cr_assert_neq(memcmp(ha, hb, sizeof(ha)), 0);
	cr_assert_eq(code_secret_hash("00112233aabbccdd", ha), CODE_EBADTOKEN, "a move id");
	cr_assert_eq(code_secret_hash("Qx7_kP2-vZ9mN4rT8sW1y!", ha), CODE_EBADTOKEN);
	cr_assert_eq(code_secret_hash("Qx7_kP2-vZ9mN4rT8sW1yAA", ha), CODE_EBADTOKEN);
}
