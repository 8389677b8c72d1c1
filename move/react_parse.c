/*
 * What strangers send to the reactions, checked (react.h): one emoji grapheme, a reaction's
 * JSON body, a URL to share. No state, nothing of the stack: the unit suite and the fuzz
 * replay take this file alone.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/*
 * The WHATWG URL parser's IPv4 host (what a browser makes of "127.1", "0x7f.0.0.1",
 * "2130706433", "0177.0.0.1"): 1 with *addr when host (len bytes, no trailing dot) is one,
 * 0 when its last label is not a number (a name), -1 when it is a number but not an address
 * (a browser refuses that URL).
 */
static int ipv4_whatwg(const char *host, size_t len, uint32_t *addr)
{
	uint64_t part[4], v;
	size_t n = 0, i = 0, last = len;

	while (last && host[last - 1] != '.')
		last--;
	/* a name unless the last label is a number */
	if (last == len)
		return 0;
	{
		const char *l = host + last;
		size_t ll = len - last;

		if (ll > 1 && l[0] == '0' && (l[1] == 'x' || l[1] == 'X')) {
			if (strspn(l + 2, "0123456789abcdefABCDEF") != ll - 2)
				return 0;
		} else if (strspn(l, "0123456789") != ll) {
			return 0;
		}
	}
	while (i <= len) {
		size_t e = i, d;
		int base = 10;

		while (e < len && host[e] != '.')
			e++;
		d = i;
		if (e - d > 1 && host[d] == '0' && (host[d + 1] == 'x' || host[d + 1] == 'X'))
			base = 16, d += 2;
		else if (e - d > 1 && host[d] == '0')
			base = 8, d += 1;
		if (n == 4 || (e == i && base == 10))
			return -1; /* five parts, or an empty one */
		for (v = 0; d < e; d++) {
			int k = isdigit((unsigned char)host[d]) ? host[d] - '0'
			        : isxdigit((unsigned char)host[d])
			            ? tolower((unsigned char)host[d]) - 'a' + 10
			            : 99;

			if (k >= base)
				return -1;
			v = v * base + k;
			if (v > 0xffffffffULL)
				return -1;
		}
		part[n++] = v;
		i = e + 1;
	}
	for (i = 0; i + 1 < n; i++)
		if (part[i] > 255)
			return -1;
	if (part[n - 1] >= 1ULL << (8 * (5 - n)))
		return -1;
	for (v = part[n - 1], i = 0; i + 1 < n; i++)
		v += part[i] << (8 * (3 - i));
	*addr = (uint32_t)v;
	return 1;
}

/* Addresses a browser must not be sent to by a stranger: this host, private networks,
 * link-local (cloud metadata), shared, reserved, documentation, multicast, broadcast. */
static const char *ipv4_private(uint32_t a)
{
	static const struct {
		uint32_t net, mask;
		const char *what;
	} nets[] = {
	    {0x00000000, 0xff000000, "\"this network\" (0.0.0.0/8)"},
	    {0x0a000000, 0xff000000, "private (10.0.0.0/8)"},
	    {0x64400000, 0xffc00000, "shared (100.64.0.0/10)"},
	    {0x7f000000, 0xff000000, "loopback (127.0.0.0/8)"},
	    {0xa9fe0000, 0xffff0000, "link-local (169.254.0.0/16)"},
	    {0xac100000, 0xfff00000, "private (172.16.0.0/12)"},
	    {0xc0000000, 0xffffff00, "reserved (192.0.0.0/24)"},
	    {0xc0000200, 0xffffff00, "documentation (192.0.2.0/24)"},
	    {0xc0a80000, 0xffff0000, "private (192.168.0.0/16)"},
	    {0xc6120000, 0xfffe0000, "benchmarking (198.18.0.0/15)"},
	    {0xc6336400, 0xffffff00, "documentation (198.51.100.0/24)"},
	    {0xcb007100, 0xffffff00, "documentation (203.0.113.0/24)"},
	    {0xe0000000, 0xe0000000, "multicast or reserved (224.0.0.0/3)"},
	};

	for (size_t i = 0; i < sizeof(nets) / sizeof(nets[0]); i++)
		if ((a & nets[i].mask) == nets[i].net)
			return nets[i].what;
	return NULL;
}

static const char *ipv6_private(const unsigned char *a)
{
	static const unsigned char zero[16], v4mapped[12] = {[10] = 0xff, [11] = 0xff},
	                                     nat64[12] = {0x00, 0x64, 0xff, 0x9b};
	uint32_t v4 = (uint32_t)a[12] << 24 | (uint32_t)a[13] << 16 | (uint32_t)a[14] << 8 | a[15];

	if (!memcmp(a, zero, 15) && a[15] <= 1)
		return a[15] ? "loopback (::1)" : "unspecified (::)";
	if (!memcmp(a, v4mapped, 12) || !memcmp(a, zero, 12) || !memcmp(a, nat64, 12))
		return ipv4_private(v4) ? "an IPv4 address inside, not public" : NULL;
	if ((a[0] & 0xfe) == 0xfc)
		return "unique local (fc00::/7)";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0x80)
		return "link-local (fe80::/10)";
	if (a[0] == 0xfe && (a[1] & 0xc0) == 0xc0)
		return "site-local (fec0::/10)";
	if (a[0] == 0xff)
		return "multicast (ff00::/8)";
	if (a[0] == 0x20 && a[1] == 0x01 && a[2] == 0x0d && a[3] == 0xb8)
		return "documentation (2001:db8::/32)";
	return NULL;
}

/* Names that lead inside: this host, mDNS, and the suffixes kept for private networks. */
static const char *name_private(const char *host, size_t len)
{
	static const char *const inside[] = {"localhost", "local",     "internal", "intranet",
	                                     "lan",       "home.arpa", "corp",     "private"};

	for (size_t i = 0; i < sizeof(inside) / sizeof(inside[0]); i++) {
		size_t n = strlen(inside[i]);

		if (len >= n && !strncasecmp(host + len - n, inside[i], n) &&
		    (len == n || host[len - n - 1] == '.'))
			return "a local name";
	}
	if (!memchr(host, '.', len))
		return "a single-label name (a local one, by the resolver's search list)";
	return NULL;
}

/* Whether host (len bytes of the authority, port cut) is one a stranger may point every
 * viewer's browser at: 0, or EINVAL with why. */
static int host_ok(const char *host, size_t len, char *why, size_t whylen)
{
	const char *what = NULL;
	uint32_t v4;
	int r;

	if (len && host[0] == '[') {
		char text[64];
		unsigned char a[16];

		if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof(text)) {
			snprintf(why, whylen, "URL's host is not an [IPv6] address");
			return EINVAL;
		}
		memcpy(text, host + 1, len - 2);
		text[len - 2] = '\0';
		if (inet_pton(AF_INET6, text, a) != 1) {
			snprintf(why, whylen, "URL's host is not an [IPv6] address");
			return EINVAL;
		}
		what = ipv6_private(a);
	} else {
		if (len && host[len - 1] == '.')
			len--; /* "localhost." is localhost */
		if (!len || memchr(host, ':', len) || memchr(host, '[', len) ||
		    memchr(host, ']', len)) {
			snprintf(why, whylen, "URL has no host, or a host not allowed");
			return EINVAL;
		}
		r = ipv4_whatwg(host, len, &v4);
		if (r < 0) {
			snprintf(why, whylen, "URL's host is not an IPv4 address a browser takes");
			return EINVAL;
		}
		what = r ? ipv4_private(v4) : name_private(host, len);
	}
	if (what) {
		snprintf(why, whylen, "URL's host %.*s is %s: only public hosts can be shared",
		         (int)(len > 64 ? 64 : len), host, what);
		return EINVAL;
	}
	return 0;
}

int react_url_ok(const char *url, char *why, size_t whylen)
{
	size_t n = url ? strlen(url) : 0, i, auth_len, host_len;
	const char *auth, *port;

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
	auth_len = strcspn(auth, "/?#");
	if (!auth_len) {
		snprintf(why, whylen, "URL has no host");
		return EINVAL;
	}
	if (memchr(auth, '@', auth_len)) {
		snprintf(why, whylen, "URL carries credentials (user@host)");
		return EINVAL;
	}
	for (i = 0; i < auth_len; i++)
		if (!isalnum((unsigned char)auth[i]) && !strchr(".-:[]", auth[i])) {
			snprintf(why, whylen, "URL's host has a character not allowed");
			return EINVAL;
		}
	/* the port: after the last ':' outside the [IPv6] brackets */
	port = NULL;
	for (i = auth_len; i > 0; i--) {
		if (auth[i - 1] == ']')
			break;
		if (auth[i - 1] == ':') {
			port = auth + i;
			break;
		}
	}
	host_len = port ? (size_t)(port - 1 - auth) : auth_len;
	if (port) {
		size_t pl = auth_len - (size_t)(port - auth);

		if (pl && (pl > 5 || strspn(port, "0123456789") < pl || atoi(port) > 65535)) {
			snprintf(why, whylen, "URL's port is not a number up to 65535");
			return EINVAL;
		}
	}
	return host_ok(auth, host_len, why, whylen);
}
