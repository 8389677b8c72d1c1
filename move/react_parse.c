/*
 * What strangers send to the reactions, checked (react.h): one emoji grapheme, a reaction's
 * JSON body, a URL to share. No state, nothing of the stack: the unit suite and the fuzz
 * replay take this file alone.
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>

#include "move/react.h"

/* One UTF-8 code point at p (n bytes left): its length, or 0 if malformed. */
static size_t utf8_next(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t len, i;
	uint32_t c;

	if (!n)
		return 0;
	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if ((p[0] & 0xe0) == 0xc0)
		len = 2, c = p[0] & 0x1f;
	else if ((p[0] & 0xf0) == 0xe0)
		len = 3, c = p[0] & 0x0f;
	else if ((p[0] & 0xf8) == 0xf0)
		len = 4, c = p[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[i] & 0x3f);
	}
	/* overlong forms, surrogates, past U+10FFFF */
	if ((len == 2 && c < 0x80) || (len == 3 && c < 0x800) || (len == 4 && c < 0x10000) ||
	    (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
		return 0;
	*cp = c;
	return len;
}

static int emoji_base(uint32_t c)
{
	if ((c >= 0x2060 && c <= 0x206f) || c == 0x3000)
		return 0; /* invisible and bidirectional controls, the ideographic space */
	return c == 0xa9 || c == 0xae || (c >= 0x203c && c <= 0x3299) ||
	       (c >= 0x1f000 && c <= 0x1faff);
}

/* why goes into a SIP reason phrase and a log line: printable ASCII only. */
static void why_clean(char *why)
{
	for (unsigned char *p = (unsigned char *)why; *p; p++)
		if (*p < 0x20 || *p >= 0x7f)
			*p = '?';
}

static int regional(uint32_t c)
{
	return c >= 0x1f1e6 && c <= 0x1f1ff;
}

int react_emoji_ok(const char *text, size_t len)
{
	const unsigned char *p = (const unsigned char *)text;
	uint32_t c;
	size_t k;
	int keycap = 0, after_zwj = 0;

	if (!len || len > REACT_EMOJI_MAX || !(k = utf8_next(p, len, &c)))
		return 0;
	p += k, len -= k;
	if (regional(c)) /* a flag: exactly two regional indicators */
		return utf8_next(p, len, &c) == len && len && regional(c);
	if (c == '#' || c == '*' || (c >= '0' && c <= '9'))
		keycap = 1; /* only as a keycap: 1 U+FE0F U+20E3 */
	else if (!emoji_base(c))
		return 0;
	while (len) {
		if (!(k = utf8_next(p, len, &c)))
			return 0;
		p += k, len -= k;
		if (after_zwj) {
			if (!emoji_base(c))
				return 0;
			after_zwj = 0;
		} else if (c == 0x200d && !keycap) {
			after_zwj = 1;
		} else if (c == 0x20e3 && keycap) {
			keycap = 2;
		} else if (!(c == 0xfe0f || c == 0xfe0e || (c >= 0x1f3fb && c <= 0x1f3ff) ||
		             (c >= 0xe0020 && c <= 0xe007f))) {
			return 0; /* a second character: not one grapheme */
		}
	}
	return !after_zwj && keycap != 1;
}

int react_parse(const char *body, size_t len, char *emoji, double *x, double *y, char *why,
                size_t whylen)
{
	json_error_t jerr;
	json_t *o, *e, *v;
	const char *key, *s;
	double *dst;
	int err = EINVAL;

	if (len > REACT_BODY_MAX) {
		snprintf(why, whylen, "reaction over %d bytes", REACT_BODY_MAX);
		return EINVAL;
	}
	o = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (!o) {
		snprintf(why, whylen, "not JSON: %s at %d", jerr.text, jerr.position);
		why_clean(why);
		return EINVAL;
	}
	if (!json_is_object(o)) {
		snprintf(why, whylen, "not a JSON object");
		goto out;
	}
	json_object_foreach(o, key, v)
	{
		if (strcmp(key, "emoji") && strcmp(key, "x") && strcmp(key, "y")) {
			snprintf(why, whylen, "unknown member \"%.32s\"", key);
			goto out;
		}
	}
	e = json_object_get(o, "emoji");
	s = json_string_value(e);
	if (!s || !react_emoji_ok(s, json_string_length(e))) {
		snprintf(why, whylen, "emoji is not one emoji of at most %d bytes",
		         REACT_EMOJI_MAX);
		goto out;
	}
	for (int i = 0; i < 2; i++) {
		key = i ? "y" : "x";
		dst = i ? y : x;
		v = json_object_get(o, key);
		if (!json_is_number(v) || !isfinite(json_number_value(v)) ||
		    json_number_value(v) < 0 || json_number_value(v) > 1) {
			snprintf(why, whylen, "%s is not a number in [0,1]", key);
			goto out;
		}
		*dst = json_number_value(v);
	}
	snprintf(emoji, REACT_EMOJI_MAX + 1, "%s", s);
	err = 0;
out:
	json_decref(o);
	if (err)
		why_clean(why);
	return err;
}

int react_url_ok(const char *url, char *why, size_t whylen)
{
	size_t n = url ? strlen(url) : 0, i, host;
	const char *auth;

	if (!n || n > REACT_URL_MAX) {
		snprintf(why, whylen, "URL is empty or over %d bytes", REACT_URL_MAX);
		return EINVAL;
	}
	if (strncasecmp(url, "https://", 8)) {
		snprintf(why, whylen, "only https:// URLs can be shared");
		return EINVAL;
	}
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)url[i];

		if (c <= 0x20 || c >= 0x7f || strchr("\"<>\\^`{|}", c)) {
			snprintf(why, whylen, "URL has a character not allowed at %zu", i);
			return EINVAL;
		}
	}
	auth = url + 8;
	host = strcspn(auth, "/?#");
	if (!host) {
		snprintf(why, whylen, "URL has no host");
		return EINVAL;
	}
	if (memchr(auth, '@', host)) {
		snprintf(why, whylen, "URL carries credentials (user@host)");
		return EINVAL;
	}
	for (i = 0; i < host; i++)
		if (!isalnum((unsigned char)auth[i]) && !strchr(".-:[]", auth[i])) {
			snprintf(why, whylen, "URL's host has a character not allowed");
			return EINVAL;
		}
	return 0;
}
